//! The one guard of a held lock: [`Held`] releases it when dropped,
//! committing the write its holder began (or adopted from a dead holder)
//! and poisoning it if the thread is panicking. [`Guard`] adds the value.
//! `SharedGuard`, the store's directory and the mirror's writes all hold
//! their lock through one of these.

use std::marker::PhantomData;
use std::ops::{Deref, DerefMut};
use std::ptr::NonNull;

use crate::lock::seqlock::Versions;
use crate::lock::RawLock;
use crate::types::shareable::Shareable;

/// A lock this thread holds, with its write counter; unlocks when dropped.
/// Not `Send`: the lock belongs to the thread that took it.
pub(crate) struct Held<'a> {
    lock: &'a RawLock,
    versions: &'a Versions,
    /// The holder's identity, as the lock word names it.
    me: u64,
    /// Whether the thread was panicking already when it took the lock (a
    /// guard taken during unwinding does not poison on its way out).
    panicking: bool,
    /// Whether this holder has begun a write (see `seqlock.rs`).
    writing: bool,
    _not_send: PhantomData<*const ()>,
}

impl<'a> Held<'a> {
    /// The guard of `lock`, which this thread (identity `me`) has just
    /// acquired. A write that a dead holder left unfinished becomes this
    /// guard's, committed when it drops.
    #[inline]
    pub(crate) fn new(lock: &'a RawLock, versions: &'a Versions, me: u64) -> Held<'a> {
        Held {
            lock,
            versions,
            me,
            panicking: std::thread::panicking(),
            writing: versions.write_pending(),
            _not_send: PhantomData,
        }
    }

    /// Marks a write as begun (once): the generation counts one more when
    /// the lock is released, and lock-free readers throw away copies that
    /// overlap it. Call before the first store to what the lock guards.
    #[inline]
    pub(crate) fn begin_write(&mut self) {
        if !self.writing {
            self.writing = true;
            self.versions.begin_write();
        }
    }

    /// Whether this holder is writing (began a write, or adopted one).
    pub(crate) fn is_writing(&self) -> bool {
        self.writing
    }

    /// Whether this is the guard of `lock`.
    pub(crate) fn guards(&self, lock: &RawLock) -> bool {
        std::ptr::eq(self.lock, lock)
    }
}

impl Drop for Held<'_> {
    #[inline]
    fn drop(&mut self) {
        let poison = !self.panicking && std::thread::panicking();
        self.versions
            .unlock(self.lock, self.me, self.writing, poison);
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
    #[inline]
    fn deref_mut(&mut self) -> &mut T {
        self.held.begin_write();
        // SAFETY: as in `deref`; the lock gives this thread exclusive
        // access, and `&mut self` makes this the only reference through
        // this guard.
        unsafe { self.value.as_mut() }
    }
}
