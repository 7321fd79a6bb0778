//! The local side of a mirror: a segment or a store entry, without its
//! type. Everything a mirror does to local memory is here: lock-free reads
//! of the value with its generation, waiting for commits, and writing a
//! whole value under the segment's lock as one committed write.

use std::ptr::NonNull;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use crate::inspect::State;
use crate::lock::seqlock::Versions;
use crate::lock::RawLock;
use crate::segment::header::{Layout, KIND_VALUE, LOCK_OFFSET, STATE_READY, VERSIONS_OFFSET};
use crate::segment::location::IntoLocation;
use crate::shared::Shared;
use crate::store::{HeldEntry, Store};
use crate::sys::mapping::Mapping;
use crate::types::shareable::Shareable;

use super::{Error, Result};

/// What keeps a target's memory mapped, and says whether the segment was
/// found shrunk under this process (its bytes are then not the value).
trait Keep: Send + Sync {
    fn is_cut(&self) -> bool;
}

impl<T: Shareable> Keep for Shared<T> {
    fn is_cut(&self) -> bool {
        self.check().is_err()
    }
}

impl Keep for Mapping {
    fn is_cut(&self) -> bool {
        Mapping::is_cut(self)
    }
}

impl Keep for HeldEntry {
    fn is_cut(&self) -> bool {
        self.map().is_cut()
    }
}

/// A local value to mirror: a [`Shared<T>`](crate::Shared), a segment
/// opened by name without its type, or an entry of a [`Store`].
///
/// A target knows its value's layout fingerprint, type name and size, read
/// from the type (`From<Shared<T>>`) or from the segment's header
/// ([`open`](Target::open), [`entry`](Target::entry)). A remote value is
/// written into it only if all three match.
pub struct Target {
    lock: NonNull<RawLock>,
    versions: NonNull<Versions>,
    value: NonNull<u8>,
    size: usize,
    fingerprint: u64,
    type_name: String,
    label: String,
    writable: bool,
    keep: Box<dyn Keep>,
}

// SAFETY: the pointers lead into the mapping that `keep` owns (and `keep`
// is Send + Sync); the lock and versions are atomics only; the value is
// read with volatile loads and written only under the lock. Nothing here is
// tied to the thread that made it.
unsafe impl Send for Target {}
// SAFETY: as for Send: every access through `&Target` is atomic, volatile
// or under the process-shared lock.
unsafe impl Sync for Target {}

impl<T: Shareable> From<Shared<T>> for Target {
    fn from(shared: Shared<T>) -> Target {
        let slot = shared.slot();
        let lock = NonNull::from(slot.raw());
        let versions = NonNull::from(slot.versions());
        let value = slot.value().cast::<u8>();
        Target {
            lock,
            versions,
            value,
            size: std::mem::size_of::<T>(),
            fingerprint: T::FINGERPRINT,
            type_name: T::TYPE_NAME.to_owned(),
            label: shared.name().to_owned(),
            writable: true,
            // The handle moves, its mapping does not: the pointers stay
            // valid for as long as the box lives.
            keep: Box::new(shared),
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
        let (map, writable) = crate::inspect::map_any(&loc)?;
        let unusable = |reason: String| Error::Unusable {
            name: label.clone(),
            reason,
        };
        match crate::inspect::read_state(&map) {
            State::Value { .. } => {}
            State::Store { .. } => {
                return Err(unusable("it is a store: name one of its entries".into()))
            }
            State::Incomplete { .. } => {
                return Err(unusable("its creator has not finished creating it".into()))
            }
            State::Damaged { reason, .. } => return Err(unusable(format!("damaged: {reason}"))),
            State::Foreign { reason } => {
                return Err(unusable(format!("not a shmstore segment: {reason}")))
            }
            State::Unreadable { reason } => return Err(unusable(reason)),
        }
        // Checked again here, on the header these pointers are made from.
        let h = crate::inspect::read_header(&map)
            .ok_or_else(|| unusable("its header changed while it was opened".into()))?;
        let size = usize::try_from(h.value_size).unwrap_or(usize::MAX);
        let align = h.value_align;
        if h.kind != KIND_VALUE
            || h.state != STATE_READY
            || !align.is_power_of_two()
            || align > 4096
            || size > map.len()
        {
            return Err(unusable("its header changed while it was opened".into()));
        }
        let layout = Layout::new(size, align as usize, h.schema_len as usize);
        if layout.total_size != map.len() || h.value_offset != layout.value_offset as u64 {
            return Err(unusable("its header changed while it was opened".into()));
        }
        let type_name = h.type_name();
        check_type_name(&label, &type_name)?;
        let lock = NonNull::from(map.raw_lock(LOCK_OFFSET));
        let versions = NonNull::from(map.versions(VERSIONS_OFFSET));
        // The value's `size` bytes end at or before the mapping's end
        // (total_size == len, checked above).
        let value = map.at::<u8>(layout.value_offset);
        Ok(Target {
            lock,
            versions,
            value,
            size,
            fingerprint: h.fingerprint,
            type_name,
            label,
            writable,
            keep: Box::new(map),
        })
    }

    /// The entry `key` of `store`, without knowing its type (its
    /// fingerprint, type name and size come from the entry). The target
    /// holds the entry, as a handle does: a removed entry's memory stays
    /// while the target lives.
    pub fn entry(store: &Store, key: &str) -> Result<Target> {
        let held = store.raw_entry(key)?;
        check_type_name(&held.label, &held.type_name)?;
        let map = held.map();
        let end = held.value.checked_add(held.size);
        if end.is_none_or(|end| end > map.len()) {
            return Err(Error::Unusable {
                name: held.label.clone(),
                reason: "its value runs past the end of the store".into(),
            });
        }
        let lock = NonNull::from(map.raw_lock(held.slot));
        let versions = NonNull::from(map.versions(held.slot + 16));
        let value = map.at::<u8>(held.value);
        Ok(Target {
            lock,
            versions,
            value,
            size: held.size,
            fingerprint: held.fingerprint,
            type_name: held.type_name.clone(),
            label: held.label.clone(),
            writable: true,
            keep: Box::new(held),
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
        self.size
    }

    /// The segment's (or entry's) name, as errors give it.
    pub fn name(&self) -> &str {
        &self.label
    }

    /// Whether remote values can be written into it.
    pub fn is_writable(&self) -> bool {
        self.writable
    }

    fn lock(&self) -> &RawLock {
        // SAFETY: made from a `&RawLock` that `Mapping::raw_lock` (or the
        // handle's slot) gave for the mapping `keep` owns, which lives as
        // long as `self`.
        unsafe { self.lock.as_ref() }
    }

    fn versions(&self) -> &Versions {
        // SAFETY: as for `lock`, through `Mapping::versions`.
        unsafe { self.versions.as_ref() }
    }

    /// The number of committed writes.
    pub(crate) fn generation(&self) -> u64 {
        self.versions().generation()
    }

    /// Sleeps until the generation differs from `seen`, at most `timeout`.
    /// A read-only mapping of a segment that does not wake read-only
    /// watchers is looked at every 50 ms instead.
    pub(crate) fn wait(&self, seen: u64, timeout: Duration) -> Option<u64> {
        let versions = self.versions();
        if self.writable {
            return versions.wait(seen, timeout, Some(self.lock()));
        }
        if versions.wakes_all() {
            return versions.wait(seen, timeout, None);
        }
        let g = versions.generation();
        if g != seen {
            return Some(g);
        }
        std::thread::sleep(timeout.min(Duration::from_millis(50)));
        let g = versions.generation();
        (g != seen).then_some(g)
    }

    /// Copies the value's bytes, whatever other processes write meanwhile.
    fn copy_out(&self, out: &mut [u8]) {
        assert_eq!(out.len(), self.size, "a buffer of the wrong size");
        // SAFETY: the value's `size` bytes lie inside the mapping `keep`
        // owns (checked when the target was made), which lives as long as
        // `self`.
        unsafe { crate::lock::racy::copy_to_slice(self.value.as_ptr().cast_const(), out) };
    }

    /// A copy of the value that no write overlapped, and its generation.
    ///
    /// Without the lock first; a writable target whose copies keep
    /// overlapping writes (a local writer that commits without pause) then
    /// takes the lock for one copy, so that the mirror keeps up.
    pub(crate) fn read(&self) -> std::result::Result<(Vec<u8>, u64), Unreadable> {
        let versions = self.versions();
        let mut out = vec![0u8; self.size];
        for attempt in 0..2000u32 {
            if self.writable && attempt == 32 {
                return self.read_locked(out);
            }
            if let Some(generation) = versions.copy_quiet(|| self.copy_out(&mut out)) {
                if self.lock().is_poisoned() {
                    return Err(Unreadable::Poisoned);
                }
                if self.keep.is_cut() {
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
        let me = self.lock().acquire();
        let held = Held {
            target: self,
            me,
            panicking: std::thread::panicking(),
            // As a guard does: a write a dead holder left is committed
            // when we unlock (the lock is poisoned then, see below).
            writing: self.versions().write_pending(),
        };
        self.copy_out(&mut out);
        let generation = self.versions().generation();
        let poisoned = self.lock().is_poisoned();
        drop(held);
        if poisoned {
            return Err(Unreadable::Poisoned);
        }
        if self.keep.is_cut() {
            return Err(Unreadable::Cut);
        }
        Ok((out, generation))
    }

    /// Takes the lock, waiting until it is free (or its holder is found
    /// dead) or `stop` is set.
    pub(crate) fn lock_unless(&self, stop: &AtomicBool) -> Option<Held<'_>> {
        assert!(self.writable, "writing through a read-only target");
        loop {
            if stop.load(Ordering::Relaxed) {
                return None;
            }
            let deadline = Instant::now() + Duration::from_millis(100);
            if let Some(me) = self.lock().acquire_until(deadline) {
                return Some(Held {
                    target: self,
                    me,
                    panicking: std::thread::panicking(),
                    // A write that a dead holder left unfinished becomes
                    // ours, committed when we unlock, as a guard does.
                    writing: self.versions().write_pending(),
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
    me: u64,
    panicking: bool,
    writing: bool,
}

impl Held<'_> {
    /// Whether the value holds exactly `bytes` now.
    pub(crate) fn holds(&self, bytes: &[u8]) -> bool {
        let mut now = vec![0u8; self.target.size];
        self.target.copy_out(&mut now);
        now == bytes
    }

    /// Writes `bytes` (exactly the value's size) as the value; returns the
    /// generation the write will have once the lock is released.
    pub(crate) fn write(&mut self, bytes: &[u8]) -> u64 {
        assert_eq!(bytes.len(), self.target.size, "a value of the wrong size");
        let versions = self.target.versions();
        if !self.writing {
            self.writing = true;
            versions.begin_write();
        }
        // SAFETY: this thread holds the lock, so no process that follows
        // the protocol writes the value meanwhile; lock-free readers copy it
        // with volatile loads and throw away copies that overlap a write
        // (the counter is odd from `begin_write` on). The `size` bytes lie
        // in the mapping the target keeps; `bytes` is this process's own
        // memory, so the ranges do not overlap.
        unsafe {
            std::ptr::copy_nonoverlapping(bytes.as_ptr(), self.target.value.as_ptr(), bytes.len())
        };
        (versions.raw_seq() | 1).wrapping_add(1) >> 1
    }
}

impl Drop for Held<'_> {
    fn drop(&mut self) {
        let poison = !self.panicking && std::thread::panicking();
        self.target
            .versions()
            .unlock(self.target.lock(), self.me, self.writing, poison);
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
