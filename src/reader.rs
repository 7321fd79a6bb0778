//! [`SharedReader<T>`], the read-only handle.

use std::fmt;
use std::mem::MaybeUninit;
use std::ptr::NonNull;
use std::sync::{LockResult, PoisonError};
use std::time::Duration;

use crate::error::{Error, Result};
use crate::header::{Layout, LOCK_OFFSET, VERSIONS_OFFSET};
use crate::location::IntoLocation;
use crate::lock::RawLock;
use crate::options::SharedOptions;
use crate::seqlock::Versions;
use crate::shareable::Shareable;
use crate::shared::read_value;
use crate::sys::mapping::Mapping;

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
/// # Shared::<Limits>::unlink(&name)?;
/// # Ok::<(), shmstore::Error>(())
/// ```
pub struct SharedReader<T: Shareable> {
    map: Mapping,
    raw_lock: NonNull<RawLock>,
    versions: NonNull<Versions>,
    value: NonNull<T>,
    label: String,
}

// SAFETY: the handle owns its mapping (Mapping is Send + Sync); it only ever
// loads from it (atomics, and volatile copies in `snapshot`), and
// T: Shareable is Send + Sync.
unsafe impl<T: Shareable> Send for SharedReader<T> {}
// SAFETY: as for Send: `&SharedReader<T>` only loads.
unsafe impl<T: Shareable> Sync for SharedReader<T> {}

impl<T: Shareable> SharedReader<T> {
    /// Opens the existing segment at `at` for reading only, checking that it
    /// holds a `T` of this build's layout. Needs only read permission on it.
    pub fn open(at: impl IntoLocation) -> Result<SharedReader<T>> {
        SharedOptions::new().open_read_only(at)
    }

    pub(crate) fn from_map(map: Mapping, label: String) -> SharedReader<T> {
        let value = map.at::<T>(Layout::of::<T>().value_offset);
        let raw_lock = NonNull::from(map.raw_lock(LOCK_OFFSET));
        let versions = NonNull::from(map.versions(VERSIONS_OFFSET));
        SharedReader {
            map,
            raw_lock,
            versions,
            value,
            label,
        }
    }

    fn raw(&self) -> &RawLock {
        // SAFETY: `raw_lock` came from `Mapping::raw_lock` on `self.map`, which
        // lives as long as `self`. Only loads are made through it (the
        // mapping is read-only): is_poisoned, is_locked, holder checks.
        unsafe { self.raw_lock.as_ref() }
    }

    fn versions(&self) -> &Versions {
        // SAFETY: as for `raw`; only loads and FUTEX_WAIT (which reads) are
        // made through it.
        unsafe { self.versions.as_ref() }
    }

    /// A consistent copy of the value, taken without the lock; see
    /// [`Shared::snapshot`](crate::Shared::snapshot), which behaves the same.
    #[inline]
    pub fn snapshot(&self) -> LockResult<T> {
        let mut out = MaybeUninit::<T>::uninit();
        let (ok, _) = read_value(self.raw(), self.versions(), self.value, &mut out);
        // SAFETY: `read_value` wrote every byte of `out`, and any bytes are
        // a valid T (Shareable).
        let value = unsafe { out.assume_init() };
        if ok {
            Ok(value)
        } else {
            Err(PoisonError::new(value))
        }
    }

    /// [`snapshot`](SharedReader::snapshot), with the generation of the copy.
    pub fn snapshot_with_generation(&self) -> LockResult<(T, u64)> {
        let mut out = MaybeUninit::<T>::uninit();
        let (ok, generation) = read_value(self.raw(), self.versions(), self.value, &mut out);
        // SAFETY: as in `snapshot`.
        let value = unsafe { out.assume_init() };
        if ok {
            Ok((value, generation))
        } else {
            Err(PoisonError::new((value, generation)))
        }
    }

    /// [`snapshot`](SharedReader::snapshot) into a value the caller already has,
    /// for large values read often: the copy is written straight into
    /// `out`, with no move afterwards. Returns the copy's generation;
    /// `Err(PoisonError)` (holding the generation) in the cases where
    /// `snapshot` returns it. `out` holds the copy either way.
    #[inline]
    pub fn snapshot_into(&self, out: &mut T) -> LockResult<u64> {
        // SAFETY: MaybeUninit<T> has T's layout; `read_value` writes every
        // byte of it with bytes copied from a T, and any bytes are a valid
        // T (Shareable), so `out` holds a valid T afterwards, and at every
        // moment in between (it never writes uninitialised bytes).
        let slot = unsafe { &mut *(out as *mut T).cast::<MaybeUninit<T>>() };
        let (ok, generation) = read_value(self.raw(), self.versions(), self.value, slot);
        if ok {
            Ok(generation)
        } else {
            Err(PoisonError::new(generation))
        }
    }

    /// How many writes have been committed (see
    /// [`Shared::generation`](crate::Shared::generation)).
    pub fn generation(&self) -> u64 {
        self.versions().generation()
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
    /// [`Error::NotWatchable`].
    pub fn wait_for_change(&self, seen: u64, timeout: Duration) -> Result<Option<u64>> {
        if !self.wakes() {
            return Err(Error::NotWatchable {
                name: self.label.clone(),
            });
        }
        Ok(self.versions().wait(seen, timeout, None))
    }

    /// Whether writers of this segment wake read-only handles, so that
    /// [`wait_for_change`](SharedReader::wait_for_change) works.
    pub fn wakes(&self) -> bool {
        self.versions().wakes_all()
    }

    /// Whether a holder panicked or died while holding the lock (since the
    /// poison was last cleared by a handle that may write).
    pub fn is_poisoned(&self) -> bool {
        self.raw().is_poisoned()
    }

    /// Whether some thread (of any process) holds the lock now.
    pub fn is_locked(&self) -> bool {
        self.raw().is_locked()
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
            .field("size", &self.map.len())
            .field("generation", &self.generation())
            .finish_non_exhaustive()
    }
}
