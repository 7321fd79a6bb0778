//! [`SharedReader<T>`], the read-only handle.

use std::fmt;
use std::sync::{LockResult, PoisonError};
use std::time::Duration;

use crate::error::{Error, Result};
use crate::lock::notify::Changed;
#[cfg(feature = "stream")]
use crate::lock::notify::Changes;
use crate::lock::slot::Slot;
use crate::segment::location::IntoLocation;
use crate::segment::options::{OpenMode, SharedOptions};
use crate::sys::mapping::Mapping;
use crate::types::shareable::Shareable;
use std::future::Future;

/// A read-only handle on a segment holding a `T`: for processes that must
/// not, or cannot, write it, such as readers of a configuration segment with
/// mode `0o640` opened by the group.
///
/// The segment is opened for reading only (`O_RDONLY`, or `SHM_RDONLY` for
/// System V) and mapped `PROT_READ`, so only read permission is needed and
/// nothing this process does can change it. It offers lock-free
/// [`snapshot`](SharedReader::snapshot)s and
/// [`wait_for_change`](SharedReader::wait_for_change), and has no `lock()`:
/// a read-only mapping cannot take the lock.
///
/// The same checks as [`Shared::open`](crate::Shared::open) apply (owner,
/// size, magic, version, type and layout).
///
/// ```
/// use shmstore::{Shareable, Shared, SharedOptions, SharedReader};
///
/// #[derive(Shareable, Clone, Copy, Default, Debug)]
/// #[repr(C)]
/// struct Limits { max_clients: u32, timeout_ms: u32 }
///
/// # let name = format!("doc-reader-{}", std::process::id());
/// let writer = SharedOptions::new()
///     .mode(0o640)              // the group may read it
///     .wake_read_only(true)     // writes wake waiting readers
///     .create(&name, Limits { max_clients: 10, timeout_ms: 500 })?;
///
/// let reader = SharedReader::<Limits>::open(&name)?;
/// let seen = reader.generation();
/// writer.lock().unwrap().max_clients = 20;
/// let now = reader.wait_for_change(seen, std::time::Duration::from_secs(1))?;
/// assert_eq!(now, Some(seen + 1));
/// assert_eq!(reader.snapshot().unwrap().max_clients, 20);
/// # shmstore::unlink(&name)?;
/// # Ok::<(), shmstore::Error>(())
/// ```
pub struct SharedReader<T: Shareable> {
    /// The lock, versions and value, in a read-only mapping: through it
    /// this handle only loads (snapshots, generations, FUTEX_WAIT, and the
    /// lock's is_poisoned / is_locked / liveness).
    slot: Slot<T>,
    label: String,
    /// For an entry of a store ([`StoreReader::get`](crate::StoreReader::get)):
    /// how to tell that the entry is still in the store. `None` for a
    /// segment of its own.
    entry: Option<Box<dyn Membership>>,
}

/// What a read-only handle on a store's entry asks of its store, which
/// cannot keep the entry from being removed and its bytes reused (a
/// read-only mapping cannot mark the entry as held).
pub(crate) trait Membership: Send + Sync {
    /// Whether the entry is still where the handle found it, asked after
    /// each read of its value: the read was made while it was.
    fn confirm(&self) -> Presence;
    /// Whether the entry was found gone (a sticky answer, without a
    /// look-up).
    fn is_gone(&self) -> bool;
    /// `Ok` while the entry is in the store, [`Error::NotFound`] once it
    /// is not, or the error that kept the store from saying.
    fn check(&self) -> Result<()>;
}

/// An entry's presence in its store, as [`Membership::confirm`] finds it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Presence {
    /// No change to the store's directory since the entry was last
    /// confirmed: a read made since then read the entry.
    Unchanged,
    /// The directory changed, and the entry was found again in the same
    /// place: a read made before this answer must be made again.
    Confirmed,
    /// The entry is no longer in the store (or cannot be confirmed).
    Gone,
}

impl<T: Shareable> SharedReader<T> {
    /// Opens the existing segment at `at` for reading only, checking that it
    /// holds a `T` of this build's layout. Needs only read permission on it.
    pub fn open(at: impl IntoLocation) -> Result<SharedReader<T>> {
        SharedOptions::new().open_read_only(at)
    }

    pub(crate) fn from_map(map: Mapping, label: String, poisoning: bool) -> SharedReader<T> {
        let mut slot = crate::segment::header::value_slot(map);
        slot.set_poisoning(poisoning);
        SharedReader {
            slot,
            label,
            entry: None,
        }
    }

    /// The handle of a store's entry, whose slot is `slot`, called `label`
    /// in errors, whose presence `entry` confirms.
    pub(crate) fn from_entry(
        mut slot: Slot<T>,
        label: String,
        poisoning: bool,
        entry: Box<dyn Membership>,
    ) -> SharedReader<T> {
        slot.set_poisoning(poisoning);
        SharedReader {
            slot,
            label,
            entry: Some(entry),
        }
    }

    /// `read(true)`, and for a store's entry, confirmed to have read the
    /// entry: read again after the directory changed, and `Err(PoisonError)`
    /// once the entry is gone, holding what `read(false)` copies then
    /// without waiting on a write counter that nobody may keep any more.
    #[inline]
    fn confirmed<R>(&self, mut read: impl FnMut(bool) -> LockResult<R>) -> LockResult<R> {
        let Some(entry) = &self.entry else {
            return read(true);
        };
        let poisoned = |got: LockResult<R>| {
            Err(PoisonError::new(
                got.unwrap_or_else(PoisonError::into_inner),
            ))
        };
        if entry.is_gone() {
            return poisoned(read(false));
        }
        loop {
            let got = read(true);
            match entry.confirm() {
                Presence::Unchanged => return got,
                Presence::Confirmed => continue,
                Presence::Gone => return poisoned(got),
            }
        }
    }

    /// A consistent copy of the value, taken without the lock; see
    /// [`Shared::snapshot`](crate::Shared::snapshot), which behaves the same.
    ///
    /// On the entry of a store (from [`StoreReader::get`](crate::StoreReader::get)),
    /// also `Err(PoisonError)` once the entry has been removed from the
    /// store: see [Removed entries](crate::StoreReader#removed-entries).
    #[inline]
    pub fn snapshot(&self) -> LockResult<T> {
        self.confirmed(|counted| match counted {
            true => self.slot.snapshot(),
            false => Ok(self.slot.copy_unchecked()),
        })
    }

    /// [`snapshot`](SharedReader::snapshot), with the generation of the copy.
    pub fn snapshot_with_generation(&self) -> LockResult<(T, u64)> {
        self.confirmed(|counted| match counted {
            true => self.slot.snapshot_with_generation(),
            false => Ok((self.slot.copy_unchecked(), self.slot.generation())),
        })
    }

    /// [`snapshot`](SharedReader::snapshot) into a value the caller already has,
    /// for large values read often: the copy is written straight into
    /// `out`, with no move afterwards. Returns the copy's generation;
    /// `Err(PoisonError)` (holding the generation) in the cases where
    /// `snapshot` returns it. `out` holds the copy either way.
    #[inline]
    pub fn snapshot_into(&self, out: &mut T) -> LockResult<u64> {
        self.confirmed(|counted| match counted {
            true => self.slot.snapshot_into(out),
            false => {
                *out = self.slot.copy_unchecked();
                Ok(self.slot.generation())
            }
        })
    }

    /// How many writes have been committed (see
    /// [`Shared::generation`](crate::Shared::generation)). On the entry of
    /// a store removed since, a number without meaning:
    /// [`check`](SharedReader::check) says whether it is still there.
    pub fn generation(&self) -> u64 {
        self.slot.generation()
    }

    /// Sleeps in the kernel until a write is committed that makes the
    /// generation differ from `seen`; returns the new generation, or
    /// `Ok(None)` when `timeout` passes first (see
    /// [`Shared::wait_for_change`](crate::Shared::wait_for_change)).
    ///
    /// A read-only handle cannot tell writers that it waits, so this works
    /// only on segments created with
    /// [`SharedOptions::wake_read_only`](crate::SharedOptions::wake_read_only),
    /// whose writers wake on every commit; on others it fails at once with
    /// [`Error::NotWatchable`]. Also `Err` ([`Error::Truncated`]) once the
    /// segment was shrunk under this handle, as on
    /// [`Shared::wait_for_change`](crate::Shared::wait_for_change). On the
    /// entry of a store, [`Error::NotFound`] once the entry was removed:
    /// at once if it was removed before the call, else when the wait ends.
    pub fn wait_for_change(&self, seen: u64, timeout: Duration) -> Result<Option<u64>> {
        self.entry_check()?;
        if !self.wakes() {
            return Err(Error::NotWatchable {
                name: self.label.clone(),
            });
        }
        // Checked after the wait, as on `Shared`.
        let changed = self.slot.wait_for_change(seen, timeout);
        self.check().map(|()| changed)
    }

    /// Waits, as a future, until the generation differs from `seen`; the
    /// async form of [`wait_for_change`](SharedReader::wait_for_change),
    /// with the same errors ([`Error::NotWatchable`] at once on a segment
    /// whose writers do not wake read-only handles), served as
    /// [`Shared::changed`](crate::Shared::changed) is.
    // Not an `async fn`: the signature promises `Send`, as `Shared`'s does.
    #[allow(clippy::manual_async_fn)]
    pub fn changed(&self, seen: u64) -> impl Future<Output = Result<u64>> + Send + '_ {
        async move {
            self.entry_check()?;
            if !self.wakes() {
                return Err(Error::NotWatchable {
                    name: self.label.clone(),
                });
            }
            Changed::new(self.slot.waiting(seen), &self.label, move || self.check()).await
        }
    }

    /// [`changed`](SharedReader::changed) again and again, as a
    /// [`futures_core::Stream`] (feature `stream`); see
    /// [`Shared::changes`](crate::Shared::changes). On a segment whose
    /// writers do not wake read-only handles, its one item is
    /// [`Error::NotWatchable`].
    #[cfg(feature = "stream")]
    pub fn changes(&self, seen: u64) -> impl futures_core::Stream<Item = Result<u64>> + Send + '_ {
        let wakes = self.wakes();
        Changes::new(self.slot.waiting(seen), &self.label, move || {
            if wakes {
                self.check()
            } else {
                Err(Error::NotWatchable {
                    name: self.label.clone(),
                })
            }
        })
        .refusing(!wakes)
    }

    /// Whether writers of this segment wake read-only handles, so that
    /// [`wait_for_change`](SharedReader::wait_for_change) works.
    pub fn wakes(&self) -> bool {
        self.slot.versions().wakes_all()
    }

    /// Whether a holder panicked or died while holding the lock (since the
    /// poison was last cleared by a handle that may write).
    pub fn is_poisoned(&self) -> bool {
        self.slot.raw().is_poisoned() || self.slot.is_cut() || self.entry_check().is_err()
    }

    /// What poisoned the lock, if it is poisoned (see
    /// [`Shared::poison_info`](crate::Shared::poison_info)). A read-only
    /// handle cannot clear it: a handle that may write does that
    /// ([`Shared::clear_poison`](crate::Shared::clear_poison), or `shmstore
    /// unpoison NAME`).
    pub fn poison_info(&self) -> Option<crate::PoisonInfo> {
        let raw = self.slot.raw().raw_poison()?;
        Some(crate::PoisonInfo::from_raw(self.label.clone(), None, raw))
    }

    /// `Err(`[`Error::Truncated`]`)` if another process shrank the segment
    /// while it was mapped here and this process touched a missing page;
    /// snapshots then return `Err(PoisonError)` (see
    /// [`Shared::check`](crate::Shared::check)).
    ///
    /// On the entry of a store, also [`Error::NotFound`] once the entry
    /// has been removed from the store (see
    /// [Removed entries](crate::StoreReader#removed-entries)).
    pub fn check(&self) -> Result<()> {
        self.slot.check(&self.label)?;
        self.entry_check()
    }

    /// For a store's entry, `Ok` while it is in the store (see
    /// [`check`](SharedReader::check)); `Ok` for a segment.
    fn entry_check(&self) -> Result<()> {
        self.entry.as_ref().map_or(Ok(()), |e| e.check())
    }

    /// Whether some thread (of any process) holds the lock now.
    pub fn is_locked(&self) -> bool {
        self.slot.raw().is_locked()
    }

    /// The segment's name as errors give it.
    pub fn name(&self) -> &str {
        &self.label
    }
}

impl<T: Shareable> fmt::Debug for SharedReader<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SharedReader")
            .field("name", &self.label)
            .field("type", &T::TYPE_NAME)
            .field("size", &self.slot.map().len())
            .field("generation", &self.generation())
            .finish_non_exhaustive()
    }
}

/// Opening with options: the [`SharedOptions`] builder's final calls for
/// this handle.
impl SharedOptions {
    /// Opens an existing segment that holds a `T` for reading only, as a
    /// [`SharedReader`](crate::SharedReader); honours
    /// [`allow_foreign_owner`](SharedOptions::allow_foreign_owner).
    pub fn open_read_only<T: Shareable>(
        &self,
        at: impl IntoLocation,
    ) -> Result<crate::SharedReader<T>> {
        let loc = at.into_location()?;
        let seg = crate::segment::establish::<T>(&loc, self, OpenMode::ReadOnly, None)?;
        Ok(crate::SharedReader::from_map(
            seg.map,
            loc.label(),
            self.poisoning,
        ))
    }
}
