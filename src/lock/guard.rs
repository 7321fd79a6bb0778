//! The one guard of a held lock: [`Held`] releases it when dropped,
//! committing the write its holder began (or adopted from a dead holder)
//! and poisoning it if the thread is panicking. [`Guard`] adds the value.
//! `SharedGuard`, the store's directory and the mirror's writes all hold
//! their lock through one of these.

use std::marker::PhantomData;
use std::ops::{Deref, DerefMut};
use std::ptr::NonNull;

use crate::lock::seqlock::{Rest, Versions};
use crate::lock::RawLock;
use crate::types::shareable::Shareable;

/// A lock this thread holds, with its write counter; unlocks when dropped.
/// Not `Send`: the lock belongs to the thread that took it.
pub(crate) struct Held<'a> {
    lock: &'a RawLock,
    versions: &'a Versions,
    /// The holder's identity, as the lock word names it.
    me: u64,
    /// The write counter as this holder keeps it: read once when the lock
    /// was taken (nobody else writes it while the lock is held), odd once
    /// this holder has begun a write or if it adopted one (see
    /// `seqlock.rs`). Beginning and committing a write then store it
    /// without loading it again.
    seq: u64,
    /// Whether the thread was panicking already when it took the lock (a
    /// guard taken during unwinding does not poison on its way out).
    panicking: bool,
    _not_send: PhantomData<*const ()>,
}

impl<'a> Held<'a> {
    /// The guard of `lock`, which this thread (identity `me`) has just
    /// acquired. A write that a dead holder left unfinished becomes this
    /// guard's, committed when it drops.
    #[inline(always)]
    pub(crate) fn new(lock: &'a RawLock, versions: &'a Versions, me: u64) -> Held<'a> {
        Held {
            lock,
            versions,
            me,
            seq: versions.seq_held(),
            panicking: std::thread::panicking(),
            _not_send: PhantomData,
        }
    }

    /// Marks a write as begun (once): the generation counts one more when
    /// the lock is released, and lock-free readers throw away copies that
    /// overlap it. Call before the first store to what the lock guards.
    #[inline(always)]
    pub(crate) fn begin_write(&mut self) {
        if self.seq & 1 == 0 {
            self.seq = self.seq.wrapping_add(1);
            self.versions.begin_write(self.seq);
        }
    }

    /// Whether this holder is writing (began a write, or adopted one).
    pub(crate) fn is_writing(&self) -> bool {
        self.seq & 1 != 0
    }

    /// Whether this is the guard of `lock`.
    pub(crate) fn guards(&self, lock: &RawLock) -> bool {
        std::ptr::eq(self.lock, lock)
    }
}

/// The drop of a guard (of `lock`, `versions`, `me`, `seq` and
/// `panicking` as in [`Held`]) off its usual path. With no `rest`, nothing
/// is done yet: the thread panics (which poisons the lock unless the guard
/// was taken during the unwinding), or the lock is not the last one the
/// thread took (or not on its list at all: a guard a forked child
/// inherited). Otherwise the lock is struck off the list, and `rest` is
/// what remains.
///
/// Out of line and in one call, so that the usual drop stays small enough
/// to be inlined where the guard dies; it takes the guard's fields as
/// values, since a reference to the guard would keep the guard in memory
/// on the usual path too, where its fields can stay in registers.
#[cold]
#[inline(never)]
fn drop_slow(
    lock: &RawLock,
    versions: &Versions,
    me: u64,
    seq: u64,
    panicking: bool,
    rest: Option<Rest>,
) {
    match rest {
        None => {
            let poison = !panicking && std::thread::panicking();
            versions.unlock(lock, me, seq, poison);
        }
        Some(rest) => versions.release_rest(lock, me, seq, rest),
    }
}

impl Drop for Held<'_> {
    #[inline(always)]
    fn drop(&mut self) {
        let (lock, versions, me, seq) = (self.lock, self.versions, self.me, self.seq);
        let rest = if std::thread::panicking() || !lock.strike_off_last() {
            None
        } else {
            match versions.release_plain(lock, me, seq) {
                Rest::Done => return,
                rest => Some(rest),
            }
        };
        drop_slow(lock, versions, me, seq, self.panicking, rest);
    }
}

/// A held lock and the `T` it guards: `&T` and `&mut T` while it lives.
pub(crate) struct Guard<'a, T> {
    held: Held<'a>,
    value: NonNull<T>,
    _value: PhantomData<&'a mut T>,
}

// SAFETY: a `&Guard` only gives `&T`, and T: Shareable is Sync; the lock
// stays with the thread that holds it (Guard is not Send).
unsafe impl<T: Shareable> Sync for Guard<'_, T> {}

impl<'a, T: Shareable> Guard<'a, T> {
    /// The guard of the `T` at `value`, which `held`'s lock guards.
    ///
    /// # Safety
    ///
    /// `value` is in bounds of a live mapping, aligned for `T`, valid for
    /// `'a`, and is the value that `held`'s lock guards (a
    /// [`Slot`](crate::lock::slot::Slot) makes both from one place).
    #[inline]
    pub(crate) unsafe fn new(held: Held<'a>, value: NonNull<T>) -> Guard<'a, T> {
        Guard {
            held,
            value,
            _value: PhantomData,
        }
    }
}

impl<T: Shareable> Deref for Guard<'_, T> {
    type Target = T;

    #[inline]
    fn deref(&self) -> &T {
        // SAFETY: the pointer is in bounds, aligned and valid for the
        // guard's lifetime (`new`'s contract). This thread holds the lock,
        // so no other thread or process following the protocol writes the
        // value meanwhile. Every bit pattern is a valid T (Shareable), so
        // whatever a peer left there is a valid value.
        unsafe { self.value.as_ref() }
    }
}

impl<T: Shareable> DerefMut for Guard<'_, T> {
    #[inline(always)]
    fn deref_mut(&mut self) -> &mut T {
        self.held.begin_write();
        // SAFETY: as in `deref`; the lock gives this thread exclusive
        // access, and `&mut self` makes this the only reference through
        // this guard.
        unsafe { self.value.as_mut() }
    }
}
