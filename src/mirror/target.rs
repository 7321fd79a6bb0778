//! The local side of a mirror: a segment or a store entry, without its
//! type. Everything a mirror does to local memory is here: lock-free reads
//! of the value with its generation, waiting for commits, and writing a
//! whole value under the segment's lock as one committed write.

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use crate::lock;
use crate::lock::slot::RawSlot;
use crate::segment::header::{
    self, Unusable, KIND_STORE, KIND_VALUE, LOCK_OFFSET, VERSIONS_OFFSET,
};
use crate::segment::location::IntoLocation;
use crate::segment::Handle;
use crate::shared::Shared;
use crate::store::Store;
use crate::types::shareable::Shareable;

use super::{Error, Result};

/// A local value to mirror: a [`Shared<T>`](crate::Shared), a segment
/// opened by name without its type, or an entry of a [`Store`].
///
/// A target knows its value's layout fingerprint, type name and size, read
/// from the type (`From<Shared<T>>`) or from the segment's header
/// ([`open`](Target::open), [`entry`](Target::entry)). A remote value is
/// written into it only if all three match.
pub struct Target {
    /// The lock, versions and value; keeps them mapped (and a store entry
    /// held).
    slot: RawSlot,
    fingerprint: u64,
    type_name: String,
    label: String,
    /// The rest of the [`Shared<T>`](crate::Shared) a target was made from
    /// (its name's removal on drop, a memfd's descriptor).
    _handle: Option<Handle>,
}

impl<T: Shareable> From<Shared<T>> for Target {
    fn from(shared: Shared<T>) -> Target {
        let Shared { slot, handle } = shared;
        Target {
            slot: slot.into_raw(),
            fingerprint: T::FINGERPRINT,
            type_name: T::TYPE_NAME.to_owned(),
            label: handle.label.as_str().to_owned(),
            _handle: Some(handle),
        }
    }
}

impl Target {
    /// Opens the single-value segment at `at` (a POSIX name, a
    /// [`SysvKey`](crate::SysvKey) or a file path) without knowing its type:
    /// the fingerprint, type name and size come from its header, which is
    /// checked as `shmstore inspect` checks it. Read-write if permitted,
    /// else read-only (enough to publish, not to subscribe). A store is
    /// refused: name one of its entries with [`open_entry`](Target::open_entry).
    pub fn open(at: impl IntoLocation) -> Result<Target> {
        let loc = at.into_location()?;
        let label = loc.label();
        let map = crate::inspect::map_any(&loc)?;
        let unusable = |reason: String| Error::Unusable {
            name: label.clone(),
            reason,
        };
        // The one header check every untyped reader makes, on the header
        // the slot is made from.
        let mapped = match header::read_mapped(&map) {
            Ok(mapped) => mapped,
            Err(Unusable::Foreign(reason)) => {
                return Err(unusable(format!("not a shmstore segment: {reason}")))
            }
            Err(Unusable::Damaged { reason, .. }) => {
                return Err(unusable(format!("damaged: {reason}")))
            }
            Err(other) => return Err(Error::Shm(other.into_error(&label))),
        };
        let Some(layout) = mapped.layout else {
            return Err(unusable("its creator has not finished creating it".into()));
        };
        let h = mapped.header;
        match h.kind {
            KIND_VALUE => {}
            KIND_STORE => return Err(unusable("it is a store: name one of its entries".into())),
            other => return Err(unusable(format!("damaged: unknown kind {other}"))),
        }
        let size = h.value_size as usize;
        let type_name = h.type_name();
        check_type_name(&label, &type_name)?;
        // The value's `size` bytes end at or before the mapping's end
        // (`read_mapped` checked the layout against the mapping).
        Ok(Target {
            slot: RawSlot::new(
                Box::new(map),
                LOCK_OFFSET,
                VERSIONS_OFFSET,
                layout.value_offset,
                size,
            ),
            fingerprint: h.fingerprint,
            type_name,
            label,
            _handle: None,
        })
    }

    /// The entry `key` of `store`, without knowing its type (its
    /// fingerprint, type name and size come from the entry). The target
    /// holds the entry, as a handle does: a removed entry's memory stays
    /// while the target lives.
    pub fn entry(store: &Store, key: &str) -> Result<Target> {
        // The store checked that the entry's value lies inside its block.
        let held = store.raw_entry(key)?;
        check_type_name(&held.label, &held.type_name)?;
        Ok(Target {
            slot: held.slot,
            fingerprint: held.fingerprint,
            type_name: held.type_name,
            label: held.label,
            _handle: None,
        })
    }

    /// Opens the store at `at` and takes its entry `key` (see
    /// [`entry`](Target::entry)).
    pub fn open_entry(at: impl IntoLocation, key: &str) -> Result<Target> {
        let store = Store::open(at)?;
        Target::entry(&store, key)
    }

    /// The type name of the value, as its type or header records it.
    pub fn type_name(&self) -> &str {
        &self.type_name
    }

    /// The value's layout fingerprint.
    pub fn fingerprint(&self) -> u64 {
        self.fingerprint
    }

    /// The value's size in bytes.
    pub fn size(&self) -> usize {
        self.slot.len()
    }

    /// The segment's (or entry's) name, as errors give it.
    pub fn name(&self) -> &str {
        &self.label
    }

    /// Whether remote values can be written into it.
    pub fn is_writable(&self) -> bool {
        self.slot.is_writable()
    }

    /// The number of committed writes.
    pub(crate) fn generation(&self) -> u64 {
        self.slot.generation()
    }

    /// Sleeps until the generation differs from `seen`, at most `timeout`
    /// (see [`RawSlot::wait_for_change`]: a read-only mapping of a segment
    /// that does not wake read-only watchers is looked at every 50 ms).
    pub(crate) fn wait(&self, seen: u64, timeout: Duration) -> Option<u64> {
        self.slot.wait_for_change(seen, timeout)
    }

    /// Copies the value's bytes, whatever other processes write meanwhile.
    fn copy_out(&self, out: &mut [u8]) {
        self.slot.copy_out(out);
    }

    /// A copy of the value that no write overlapped, and its generation.
    ///
    /// Without the lock first; a writable target whose copies keep
    /// overlapping writes (a local writer that commits without pause) then
    /// takes the lock for one copy, so that the mirror keeps up.
    pub(crate) fn read(&self) -> std::result::Result<(Vec<u8>, u64), Unreadable> {
        let versions = self.slot.versions();
        let mut out = vec![0u8; self.slot.len()];
        for attempt in 0..2000u32 {
            if self.slot.is_writable() && attempt == 32 {
                return self.read_locked(out);
            }
            if let Some(generation) = versions.copy_quiet(|| self.copy_out(&mut out)) {
                if self.slot.raw().is_poisoned() {
                    return Err(Unreadable::Poisoned);
                }
                if self.slot.is_cut() {
                    return Err(Unreadable::Cut);
                }
                return Ok((out, generation));
            }
            if attempt >= 100 {
                std::thread::sleep(Duration::from_millis(1));
            } else {
                std::thread::yield_now();
            }
        }
        Err(Unreadable::Busy)
    }

    /// [`read`](Target::read) under the lock.
    fn read_locked(&self, mut out: Vec<u8>) -> std::result::Result<(Vec<u8>, u64), Unreadable> {
        // As a guard does, the guard commits a write a dead holder left
        // when we unlock (the lock is poisoned then, see below).
        let held = self.slot.held(self.slot.raw().acquire());
        self.copy_out(&mut out);
        let generation = self.slot.generation();
        let poisoned = self.slot.raw().is_poisoned();
        drop(held);
        if poisoned {
            return Err(Unreadable::Poisoned);
        }
        if self.slot.is_cut() {
            return Err(Unreadable::Cut);
        }
        Ok((out, generation))
    }

    /// Takes the lock, waiting until it is free (or its holder is found
    /// dead) or `stop` is set.
    pub(crate) fn lock_unless(&self, stop: &AtomicBool) -> Option<Held<'_>> {
        assert!(self.is_writable(), "writing through a read-only target");
        loop {
            if stop.load(Ordering::Relaxed) {
                return None;
            }
            let deadline = Instant::now() + Duration::from_millis(100);
            if let Some(me) = self.slot.raw().acquire_until(deadline) {
                // A write that a dead holder left unfinished becomes ours,
                // committed when we unlock, as a guard does.
                return Some(Held {
                    target: self,
                    held: self.slot.held(me),
                });
            }
        }
    }
}

/// Why the value could not be read.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Unreadable {
    /// The lock is poisoned: a writer panicked or died.
    Poisoned,
    /// The segment was shrunk under this process.
    Cut,
    /// A write stayed in progress for seconds.
    Busy,
}

impl std::fmt::Display for Unreadable {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Unreadable::Poisoned => {
                "the local lock is poisoned (a writer panicked or died): nothing is sent \
                 until clear_poison()"
            }
            Unreadable::Cut => "the local segment was shrunk under this process",
            Unreadable::Busy => "a local write has been in progress for seconds",
        })
    }
}

/// The target's lock, held; released (committing a write, if one was
/// made) when dropped, as a [`SharedGuard`](crate::SharedGuard) is.
pub(crate) struct Held<'a> {
    target: &'a Target,
    held: lock::guard::Held<'a>,
}

impl Held<'_> {
    /// Whether the value holds exactly `bytes` now.
    pub(crate) fn holds(&self, bytes: &[u8]) -> bool {
        let mut now = vec![0u8; self.target.size()];
        self.target.copy_out(&mut now);
        now == bytes
    }

    /// Writes `bytes` (exactly the value's size) as the value; returns the
    /// generation the write will have once the lock is released.
    pub(crate) fn write(&mut self, bytes: &[u8]) -> u64 {
        self.target.slot.write_under(&mut self.held, bytes)
    }
}

/// Type names travel as one line of the announcement.
fn check_type_name(label: &str, name: &str) -> Result<()> {
    if name.is_empty() || name.len() > 256 || name.chars().any(char::is_control) {
        return Err(Error::Unusable {
            name: label.to_owned(),
            reason: format!("its type name {name:?} cannot be sent"),
        });
    }
    Ok(())
}
