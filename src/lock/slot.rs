//! A slot: a lock, its write counter and the value they guard, at known
//! places in a mapping. Every handle reaches its value through one, so the
//! lock-free reads (snapshots, generations, waiting) exist once, whatever
//! the handle.

use std::mem::MaybeUninit;
use std::ptr::NonNull;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{LockResult, PoisonError};
use std::time::Duration;

use crate::lock::seqlock::{Read, Versions};
use crate::lock::RawLock;
use crate::sys::mapping::Mapping;
use crate::types::shareable::Shareable;

/// The cut flag of mappings nobody can shrink.
static NEVER_CUT: AtomicBool = AtomicBool::new(false);

/// Pointers to a lock, its [`Versions`] and a `T` inside one mapping.
pub(crate) struct Slot<T> {
    lock: NonNull<RawLock>,
    versions: NonNull<Versions>,
    value: NonNull<T>,
    /// Set if another process shrank the mapping under us and a missing
    /// page was touched (see `sys::sigbus`); a flag that is never set
    /// where nobody can (one load and no test for `None` on every lock).
    cut: &'static AtomicBool,
}

impl<T: Shareable> Slot<T> {
    /// The slot whose lock, versions and value are at these offsets of
    /// `map` (each bounds- and alignment-checked).
    ///
    /// # Safety
    ///
    /// The slot must not be used after `map` is dropped: its holder keeps
    /// both and drops the slot no later than the mapping (a handle holding
    /// both fields, for example).
    pub(crate) unsafe fn new(
        map: &Mapping,
        lock_offset: usize,
        versions_offset: usize,
        value_offset: usize,
    ) -> Slot<T> {
        Slot {
            lock: NonNull::from(map.raw_lock(lock_offset)),
            versions: NonNull::from(map.versions(versions_offset)),
            value: map.at::<T>(value_offset),
            cut: map.cut_flag().unwrap_or(&NEVER_CUT),
        }
    }

    /// The slot of a single-value segment (a [`Shared`](crate::Shared) or
    /// [`SharedReader`](crate::SharedReader)): the lock, its versions and
    /// the value where the header's layout puts them.
    ///
    /// # Safety
    ///
    /// As for [`new`](Slot::new).
    pub(crate) unsafe fn single(map: &Mapping) -> Slot<T> {
        let value_offset = crate::segment::header::Layout::value_offset_of::<T>();
        // SAFETY: passed on from the caller.
        unsafe {
            Slot::new(
                map,
                crate::segment::header::LOCK_OFFSET,
                crate::segment::header::VERSIONS_OFFSET,
                value_offset,
            )
        }
    }

    /// The lock.
    #[inline]
    pub(crate) fn raw(&self) -> &RawLock {
        // SAFETY: `lock` came from `Mapping::raw_lock`, which says why a
        // reference to it is sound; the mapping outlives the slot (`new`'s
        // contract), so it is live for as long as `&self`.
        unsafe { self.lock.as_ref() }
    }

    /// The write counter and flags.
    #[inline]
    pub(crate) fn versions(&self) -> &Versions {
        // SAFETY: as for `raw`, through `Mapping::versions`.
        unsafe { self.versions.as_ref() }
    }

    /// Where the value is: in bounds, aligned, valid while the slot is.
    #[inline]
    pub(crate) fn value(&self) -> NonNull<T> {
        self.value
    }

    /// Whether the mapping was found shrunk under us: every later answer
    /// from it is unreliable (see [`Error::Truncated`](crate::Error::Truncated)).
    #[inline]
    pub(crate) fn is_cut(&self) -> bool {
        self.cut.load(Ordering::Acquire)
    }

    /// A consistent copy of the value into `out`, without the lock; whether
    /// it is clean and unpoisoned, and its generation. Only loads.
    #[inline(always)]
    fn read(&self, out: &mut MaybeUninit<T>) -> (bool, u64) {
        let lock = self.raw();
        // SAFETY: `value` points at the T these versions guard, aligned
        // (checked by Mapping::at) and inside the mapping, which outlives
        // the slot.
        match unsafe { self.versions().read(lock, self.value.as_ptr(), out) } {
            // Checked after the copy: a page found missing during it was
            // replaced by zeros, which must not pass for the value.
            Read::Clean(g) => (!lock.is_poisoned() && !self.is_cut(), g),
            Read::Interrupted(g) => (false, g),
        }
    }

    /// See [`Shared::snapshot`](crate::Shared::snapshot).
    #[inline]
    pub(crate) fn snapshot(&self) -> LockResult<T> {
        let mut out = MaybeUninit::<T>::uninit();
        let (ok, _) = self.read(&mut out);
        // SAFETY: `read` wrote every byte of `out`, and any bytes are a
        // valid T (Shareable).
        let value = unsafe { out.assume_init() };
        if ok {
            Ok(value)
        } else {
            Err(PoisonError::new(value))
        }
    }

    /// See [`Shared::snapshot_with_generation`](crate::Shared::snapshot_with_generation).
    pub(crate) fn snapshot_with_generation(&self) -> LockResult<(T, u64)> {
        let mut out = MaybeUninit::<T>::uninit();
        let (ok, generation) = self.read(&mut out);
        // SAFETY: as in `snapshot`.
        let value = unsafe { out.assume_init() };
        if ok {
            Ok((value, generation))
        } else {
            Err(PoisonError::new((value, generation)))
        }
    }

    /// See [`Shared::snapshot_into`](crate::Shared::snapshot_into).
    #[inline]
    pub(crate) fn snapshot_into(&self, out: &mut T) -> LockResult<u64> {
        // SAFETY: MaybeUninit<T> has T's layout; `read` writes every byte of
        // it with bytes copied from a T, and any bytes are a valid T
        // (Shareable), so `out` holds a valid T afterwards, and at every
        // moment in between (it never writes uninitialised bytes).
        let slot = unsafe { &mut *(out as *mut T).cast::<MaybeUninit<T>>() };
        let (ok, generation) = self.read(slot);
        if ok {
            Ok(generation)
        } else {
            Err(PoisonError::new(generation))
        }
    }

    /// The number of committed writes.
    #[inline]
    pub(crate) fn generation(&self) -> u64 {
        self.versions().generation()
    }

    /// Sleeps until the generation differs from `seen` (see
    /// [`Versions::wait`]); `writable` says whether this handle may mark the
    /// lock word as watched (read-only mappings must not write).
    pub(crate) fn wait_for_change(
        &self,
        seen: u64,
        timeout: Duration,
        writable: bool,
    ) -> Option<u64> {
        let lock = writable.then(|| self.raw());
        self.versions().wait(seen, timeout, lock)
    }
}

/// The lock area's typed views of a mapping.
impl Mapping {
    /// The write sequence counter and flags at `offset`.
    pub(crate) fn versions(&self, offset: usize) -> &Versions {
        // SAFETY: as for `raw_lock`: Versions consists of atomics only and
        // any bit pattern is a valid state (an odd counter is a write in
        // progress, see seqlock.rs).
        unsafe { self.at::<Versions>(offset).as_ref() }
    }

    /// The lock at `offset`.
    pub(crate) fn raw_lock(&self, offset: usize) -> &RawLock {
        // SAFETY: `at` checked bounds and alignment; the mapping lives as
        // long as the returned borrow of `self`; RawLock consists of atomics
        // only (every access is atomic) and every bit pattern is a valid
        // RawLock state (see lock.rs).
        unsafe { self.at::<RawLock>(offset).as_ref() }
    }
}
