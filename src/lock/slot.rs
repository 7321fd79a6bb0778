//! Slots: a lock, its write counter and the value they guard, at known
//! places in a mapping that the slot keeps alive. Every handle reaches its
//! value through one, so the lock-free reads (snapshots, generations,
//! waiting) and the guards exist once, whatever the handle.
//!
//! A [`RawSlot`] knows the value only as bytes (the mirror, `inspect`); a
//! [`Slot<T>`] is one with its type; an [`AtomicSlot<T>`] hands out `&T`
//! without the lock, for values made of atomics only.

use std::convert::Infallible;
use std::marker::PhantomData;
use std::mem::MaybeUninit;
use std::ptr::NonNull;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{LockResult, PoisonError};
use std::time::Duration;

use crate::error::{Error, Result};
use crate::lock::guard::{Guard, Held};
use crate::lock::notify::Waiting;
use crate::lock::seqlock::{self, Read, Versions};
use crate::lock::{RawLock, CHECK_INTERVAL, POISON_SUPERSEDED};
use crate::sys::mapping::{KeepsMapped, Mapping};
use crate::types::lockfree::LockFree;
use crate::types::shareable::Shareable;

/// The cut flag of mappings nobody can shrink.
static NEVER_CUT: AtomicBool = AtomicBool::new(false);

/// A lock, its [`Versions`] and `len` bytes of value inside one mapping,
/// which the slot keeps alive.
pub(crate) struct RawSlot {
    lock: NonNull<RawLock>,
    versions: NonNull<Versions>,
    value: NonNull<u8>,
    #[cfg_attr(not(feature = "mirror"), allow(dead_code))]
    len: usize,
    /// Set if another process shrank the mapping under us and a missing
    /// page was touched (see `sys::sigbus`); a flag that is never set
    /// where nobody can (one load and no test for `None` on every lock).
    cut: &'static AtomicBool,
    /// What keeps the mapping alive: the pointers above lead into it.
    memory: Box<dyn KeepsMapped>,
}

// SAFETY: the pointers lead into the mapping that `memory` keeps alive for
// as long as the slot (and `memory` is Send + Sync); the lock and versions
// are atomics only; the value is read with racy copies and written only by
// the thread that holds the lock, through a guard that is not Send. Nothing
// here is tied to the thread that made the slot.
unsafe impl Send for RawSlot {}
// SAFETY: as for Send: every access through `&RawSlot` is atomic, a racy
// copy, or made under the process-shared lock.
unsafe impl Sync for RawSlot {}

impl RawSlot {
    /// The slot whose lock, versions and `len` bytes of value are at these
    /// offsets of the mapping `memory` keeps alive. Panics if any of them
    /// is out of the mapping or misaligned: callers place them from a
    /// checked header or directory.
    pub(crate) fn new(
        memory: Box<dyn KeepsMapped>,
        lock_offset: usize,
        versions_offset: usize,
        value_offset: usize,
        len: usize,
    ) -> RawSlot {
        let map = memory.map();
        let end = value_offset.checked_add(len);
        assert!(
            end.is_some_and(|end| end <= map.len()),
            "a value at {value_offset}+{len} out of a {}-byte mapping",
            map.len()
        );
        RawSlot {
            lock: NonNull::from(map.raw_lock(lock_offset)),
            versions: NonNull::from(map.versions(versions_offset)),
            value: map.at::<u8>(value_offset),
            len,
            cut: map.cut_flag().unwrap_or(&NEVER_CUT),
            memory,
        }
    }

    /// The lock.
    #[inline]
    pub(crate) fn raw(&self) -> &RawLock {
        // SAFETY: `lock` came from `Mapping::raw_lock`, which says why a
        // reference to it is sound, for the mapping `memory` keeps alive
        // as long as `self`.
        unsafe { self.lock.as_ref() }
    }

    /// The write counter and flags.
    #[inline]
    pub(crate) fn versions(&self) -> &Versions {
        // SAFETY: as for `raw`, through `Mapping::versions`.
        unsafe { self.versions.as_ref() }
    }

    /// The mapping the slot lies in.
    pub(crate) fn map(&self) -> &Mapping {
        self.memory.map()
    }

    /// The value's length in bytes.
    #[cfg_attr(not(feature = "mirror"), allow(dead_code))]
    pub(crate) fn len(&self) -> usize {
        self.len
    }

    /// Whether the mapping was found shrunk under us: every later answer
    /// from it is unreliable (see [`Error::Truncated`](crate::Error::Truncated)).
    #[inline]
    pub(crate) fn is_cut(&self) -> bool {
        self.cut.load(Ordering::Acquire)
    }

    /// The number of committed writes.
    #[inline]
    pub(crate) fn generation(&self) -> u64 {
        self.versions().generation()
    }

    /// `Ok` unless the mapping was found shrunk under us: then
    /// [`Error::Truncated`] for the segment called `name`.
    pub(crate) fn check(&self, name: &str) -> Result<()> {
        if self.is_cut() {
            return Err(Error::Truncated {
                name: name.to_owned(),
                mapped: self.map().len() as u64,
            });
        }
        Ok(())
    }

    /// Copies the value's bytes into `out` (exactly [`len`](RawSlot::len)
    /// bytes), whatever other processes write meanwhile: a racy copy, to be
    /// checked with [`Versions::copy_quiet`] or made under the lock.
    #[cfg_attr(not(feature = "mirror"), allow(dead_code))]
    pub(crate) fn copy_out(&self, out: &mut [u8]) {
        assert_eq!(out.len(), self.len, "a buffer of the wrong size");
        // SAFETY: the value's `len` bytes lie inside the mapping (checked in
        // `new`), which `memory` keeps alive as long as `self`.
        unsafe { crate::sys::racy::copy_to_slice(self.value.as_ptr().cast_const(), out) };
    }

    /// Sleeps until the generation differs from `seen`; the new generation,
    /// or `None` once `timeout` has passed. Returns at once if it differs
    /// already.
    ///
    /// The one way every handle waits: a writable mapping marks the lock
    /// word as watched and sleeps on the counter's futex (the next commit
    /// wakes it); a read-only one sleeps on the futex if the segment wakes
    /// read-only watchers (it cannot write the mark), and otherwise looks
    /// at the generation every 50 ms.
    pub(crate) fn wait_for_change(&self, seen: u64, timeout: Duration) -> Option<u64> {
        let versions = self.versions();
        if self.is_writable() {
            return versions.wait(seen, timeout, Some(self.raw()));
        }
        if versions.wakes_all() {
            return versions.wait(seen, timeout, None);
        }
        let generation = || Ok::<_, Infallible>(versions.generation());
        match seqlock::poll(seen, timeout, CHECK_INTERVAL, generation) {
            Ok(changed) => changed,
            Err(never) => match never {},
        }
    }

    /// [`wait_for_change`](RawSlot::wait_for_change) as a future, served by
    /// the background threads of [`notify`](crate::lock::notify).
    pub(crate) fn waiting(&self, seen: u64) -> Waiting<'_> {
        let lock = self.is_writable().then(|| self.raw());
        Waiting::new(self.versions(), lock, Some(self.cut), seen)
    }

    /// Whether this handle may write the value (and mark the lock word).
    pub(crate) fn is_writable(&self) -> bool {
        self.map().is_writable()
    }

    /// The guard for the lock this thread (identity `me`) has just acquired.
    #[inline]
    pub(crate) fn held(&self, me: u64) -> Held<'_> {
        Held::new(self.raw(), self.versions(), me)
    }

    /// Writes `bytes` (exactly [`len`](RawSlot::len) bytes) as the value,
    /// as the holder of `held`, this slot's lock: the write is committed
    /// when the guard is dropped. Returns the generation it will have.
    #[cfg(feature = "mirror")]
    pub(crate) fn write_under(&self, held: &mut Held<'_>, bytes: &[u8]) -> u64 {
        assert!(held.guards(self.raw()), "a guard of another lock");
        assert!(self.is_writable(), "writing through a read-only mapping");
        assert_eq!(bytes.len(), self.len, "a value of the wrong size");
        held.begin_write();
        // SAFETY: this thread holds the lock (`held` guards it), so no
        // process that follows the protocol writes the value meanwhile, and
        // no reference to it exists in this process (typed guards, the only
        // holders of one, hold this very lock); lock-free readers copy it
        // with racy loads and throw away copies that overlap a write (the
        // counter is odd from `begin_write` on). The `len` bytes lie in the
        // writable mapping `memory` keeps; `bytes` is this process's own
        // memory, so the ranges do not overlap.
        unsafe { std::ptr::copy_nonoverlapping(bytes.as_ptr(), self.value.as_ptr(), bytes.len()) };
        (self.versions().raw_seq() | 1).wrapping_add(1) >> 1
    }
}

/// A [`RawSlot`] whose value is a `T`.
pub(crate) struct Slot<T> {
    raw: RawSlot,
    /// Whether this handle reports poison (`SharedOptions::poisoning`);
    /// if not, it recovers from it where it may (see [`Slot::recovers`]).
    poisoning: bool,
    _value: PhantomData<T>,
}

impl<T: Shareable> Slot<T> {
    /// The slot whose lock, versions and `T` are at these offsets of the
    /// mapping `memory` keeps alive (each bounds- and alignment-checked:
    /// panics otherwise).
    pub(crate) fn new(
        memory: Box<dyn KeepsMapped>,
        lock_offset: usize,
        versions_offset: usize,
        value_offset: usize,
    ) -> Slot<T> {
        let size = std::mem::size_of::<T>();
        Slot::from_raw(RawSlot::new(
            memory,
            lock_offset,
            versions_offset,
            value_offset,
            size,
        ))
    }

    /// The typed slot of `raw`, whose value must be a `T`: exactly `T`'s
    /// size, aligned for it (panics otherwise).
    pub(crate) fn from_raw(raw: RawSlot) -> Slot<T> {
        assert_eq!(raw.len, std::mem::size_of::<T>(), "a value of another size");
        assert!(
            raw.value.cast::<T>().as_ptr().is_aligned(),
            "a value misaligned for its type"
        );
        Slot {
            raw,
            poisoning: true,
            _value: PhantomData,
        }
    }

    /// Sets whether this handle reports poison (default `true`); see
    /// `SharedOptions::poisoning`.
    pub(crate) fn set_poisoning(&mut self, on: bool) {
        self.poisoning = on;
    }

    /// Whether a poison found after acquiring the lock is cleared rather
    /// than reported: on handles that opted out of poisoning, unless the
    /// segment was superseded (writes to a migrated segment need an
    /// explicit `clear_poison`). Clears it if so. Called only on the
    /// poisoned path, kept out of line so that the guard of the clean path
    /// stays in registers.
    #[cold]
    #[inline(never)]
    pub(crate) fn recovers(&self) -> bool {
        if self.poisoning || self.is_cut() {
            return false;
        }
        let lock = self.raw();
        match lock.poison_cause() {
            0 => true,
            POISON_SUPERSEDED => false,
            _ => {
                lock.clear_poison();
                true
            }
        }
    }

    /// The slot without its type (it keeps the mapping alive).
    #[cfg_attr(not(feature = "mirror"), allow(dead_code))]
    pub(crate) fn into_raw(self) -> RawSlot {
        self.raw
    }

    /// The lock.
    #[inline]
    pub(crate) fn raw(&self) -> &RawLock {
        self.raw.raw()
    }

    /// The write counter and flags.
    #[inline]
    pub(crate) fn versions(&self) -> &Versions {
        self.raw.versions()
    }

    /// Where the value is: in bounds, aligned, valid while the slot is.
    #[inline]
    fn value(&self) -> NonNull<T> {
        self.raw.value.cast::<T>()
    }

    /// See [`RawSlot::is_cut`].
    #[inline]
    pub(crate) fn is_cut(&self) -> bool {
        self.raw.is_cut()
    }

    /// See [`RawSlot::waiting`].
    pub(crate) fn waiting(&self, seen: u64) -> Waiting<'_> {
        self.raw.waiting(seen)
    }

    /// The mapping the slot lies in.
    pub(crate) fn map(&self) -> &Mapping {
        self.raw.map()
    }

    /// See [`RawSlot::check`].
    pub(crate) fn check(&self, name: &str) -> Result<()> {
        self.raw.check(name)
    }

    /// A copy of whatever bytes the value holds now, without the lock and
    /// without the write counter, so possibly torn: for a handle that knows
    /// its value is no longer kept by anyone (a store entry removed and
    /// perhaps reused), whose counter it must not wait on. Only loads.
    pub(crate) fn copy_unchecked(&self) -> T {
        let mut out = MaybeUninit::<T>::uninit();
        // SAFETY: `value` points at `size_of::<T>()` bytes inside the
        // mapping and aligned for `T` (checked in `RawSlot::new` and
        // `from_raw`), which the slot keeps alive; `out` is a separate,
        // writable `T`; the racy copy reads bytes other processes may be
        // writing without making a reference to them.
        unsafe { crate::sys::racy::copy_into(self.value().as_ptr(), out.as_mut_ptr()) };
        // SAFETY: the copy wrote every byte of `out`, and any bytes are a
        // valid `T` (Shareable).
        unsafe { out.assume_init() }
    }

    /// A consistent copy of the value into `out`, without the lock; whether
    /// it is clean and unpoisoned, and its generation. Only loads.
    #[inline(always)]
    fn read(&self, out: &mut MaybeUninit<T>) -> (bool, u64) {
        let lock = self.raw();
        // SAFETY: `value` points at the T these versions guard, inside the
        // mapping and aligned (checked in `RawSlot::new` and `from_raw`),
        // which the slot keeps alive.
        let (ok, g) = match unsafe { self.versions().read(lock, self.value().as_ptr(), out) } {
            // Checked after the copy: a page found missing during it was
            // replaced by zeros, which must not pass for the value.
            Read::Clean(g) => (!lock.is_poisoned() && !self.is_cut(), g),
            Read::Interrupted(g) => (false, g),
        };
        if ok || self.poisoning || self.is_cut() {
            return (ok, g);
        }
        self.read_recovering(out, g)
    }

    /// [`read`](Slot::read) on a handle that opted out of poisoning, when
    /// the copy in `out` (of generation `g`) was poisoned: takes the lock
    /// (which commits a dead writer's unfinished write), clears the poison
    /// and copies under the lock. A read-only handle cannot take the lock:
    /// it keeps its copy, which is what the next holder would commit. A
    /// superseded segment stays poisoned.
    #[cold]
    #[inline(never)]
    fn read_recovering(&self, out: &mut MaybeUninit<T>, g: u64) -> (bool, u64) {
        let lock = self.raw();
        if lock.poison_cause() == POISON_SUPERSEDED {
            return (false, g);
        }
        if !self.raw.is_writable() || lock.held_by_me() {
            return (true, g);
        }
        let me = lock.acquire();
        let held = self.raw.held(me);
        if !self.recovers() {
            return (false, g);
        }
        // SAFETY: `value` is this slot's `T` (as in `read`); this thread
        // holds the lock, so no process that follows the protocol writes it
        // meanwhile; the copy is racy all the same, as a peer may not.
        unsafe { crate::sys::racy::copy_into(self.value().as_ptr(), out.as_mut_ptr()) };
        let generation = self.versions().generation() + u64::from(held.is_writing());
        drop(held);
        (!self.is_cut(), generation)
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
        self.raw.generation()
    }

    /// See [`RawSlot::wait_for_change`].
    pub(crate) fn wait_for_change(&self, seen: u64, timeout: Duration) -> Option<u64> {
        self.raw.wait_for_change(seen, timeout)
    }

    /// A copy of the value, made by the holder of `held`, this slot's
    /// lock: no process that follows the protocol writes the value
    /// meanwhile, so the copy needs no write counter (and works while the
    /// counter says a write is pending, as after taking the lock over from
    /// a holder that died writing).
    pub(crate) fn copy_locked(&self, held: &Held<'_>) -> T {
        assert!(held.guards(self.raw()), "a guard of another lock");
        let mut out = MaybeUninit::<T>::uninit();
        // SAFETY: `value` is this slot's `T`, in bounds and aligned (checked
        // in `RawSlot::new` and `from_raw`), in the mapping the slot keeps
        // alive; `out` is a separate, writable `T`. The copy is racy (a
        // peer that ignores the lock may write meanwhile), which
        // `copy_into` allows; it writes every byte of `out`, and any bytes
        // are a valid T (Shareable).
        unsafe {
            crate::sys::racy::copy_into(self.value().as_ptr().cast_const(), out.as_mut_ptr());
            out.assume_init()
        }
    }

    /// The guard for the lock this thread (identity `me`) has just
    /// acquired: it hands out the value.
    #[inline]
    pub(crate) fn guard(&self, me: u64) -> Guard<'_, T> {
        // SAFETY: `value` is this slot's `T`, in bounds and aligned (checked
        // in `RawSlot::new` and `from_raw`), in the mapping the slot keeps
        // alive for as long as the borrow of `self` the guard holds; `held`
        // is this slot's lock.
        unsafe { Guard::new(self.raw.held(me), self.value()) }
    }
}

/// A slot whose value is made of atomics only, handed out as `&T` without
/// the lock. Made from a [`Slot`] by value and giving no guard, so no `&mut
/// T` to the value can exist through it while the `&T`s do.
pub(crate) struct AtomicSlot<T> {
    slot: Slot<T>,
}

impl<T: LockFree> AtomicSlot<T> {
    /// Takes the slot over: from now on its value is used without the lock.
    pub(crate) fn new(slot: Slot<T>) -> AtomicSlot<T> {
        AtomicSlot { slot }
    }

    /// The value, without any lock.
    #[inline]
    pub(crate) fn get(&self) -> &T {
        // SAFETY: the pointer is in bounds and aligned for `T` (checked in
        // `RawSlot::new` and `Slot::from_raw`), and stays valid as long as
        // `self` (the slot keeps the mapping), which the returned reference
        // cannot outlive. Every
        // byte of a `LockFree` value is inside an atomic (an `UnsafeCell`),
        // so a shared reference to it is sound while other threads and
        // processes write it through their own shared references or
        // mappings; any bit pattern is a valid `T` (`Shareable`), whatever
        // they wrote. No `&mut T` to these bytes can exist in this process
        // through this slot: it was taken by value and gives no guard, and
        // it is given back only by value (`into_slot`), which needs every
        // `&T` from here to be gone.
        unsafe { self.slot.value().as_ref() }
    }

    /// See [`RawSlot::check`].
    pub(crate) fn check(&self, name: &str) -> Result<()> {
        self.slot.check(name)
    }

    /// The slot back, with its lock.
    pub(crate) fn into_slot(self) -> Slot<T> {
        self.slot
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
