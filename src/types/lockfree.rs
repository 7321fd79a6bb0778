//! Lock-free access to values made only of atomics.
//!
//! A value whose every byte is inside an atomic can be used through `&T` by
//! any number of threads and processes at once, with no lock: each atomic
//! operation is indivisible on its own. [`LockFree`] marks such types, and
//! [`SharedAtomic`] (from [`Shared::into_atomic`]) hands them out. `#[derive(Shareable)]` implements
//! `LockFree` for a struct exactly when every field is `LockFree`, with no
//! attribute to write and no error for the other structs, which remain
//! plain [`Shareable`] types reached through the lock.
//!
//! # How the derive decides
//!
//! A macro cannot know whether a field's type is made of atomics (the type
//! is only a name to it), so for every struct it writes
//!
//! ```text
//! unsafe impl LockFree for S where for<'a> F1: AtomicField<S>, for<'a> F2: AtomicField<S>, ... {}
//! unsafe impl<X> AtomicField<X> for S where for<'a> S: LockFree {}
//! ```
//!
//! and lets the compiler decide: when a bound fails, the impl exists but
//! never applies. The `for<'a>` is what makes rustc accept the impl at all,
//! since a plain bound on concrete types that does not hold is an error.
//! The bounds name the hidden [`AtomicField<S>`] rather than `LockFree` so
//! that the error on `into_atomic()` names the struct: rustc reports the innermost
//! unmet bound, here `u64: AtomicField<S>`, whose message can name `S`,
//! while `u64: LockFree` could only name `u64`.

use core::sync::atomic::{
    AtomicI16, AtomicI32, AtomicI64, AtomicI8, AtomicU16, AtomicU32, AtomicU64, AtomicU8,
};

use std::fmt;
use std::ops::Deref;

use crate::error::Result;
use crate::segment::location::IntoLocation;
use crate::shared::Shared;
use crate::types::shareable::Shareable;

/// A [`Shareable`] type made of atomics only, which [`SharedAtomic`] hands
/// out without the lock.
///
/// Every byte of the value is inside an atomic, so any number of threads and
/// processes may use it through `&T` at once. It is implemented for
/// `AtomicU8`..`AtomicU64`, `AtomicI8`..`AtomicI64` and arrays of `LockFree`
/// types, and `#[derive(Shareable)]` implements it for every struct whose
/// fields are all `LockFree` (nested structs included). A struct with any
/// other field is still `Shareable`, just not `LockFree`.
///
/// ```
/// use core::sync::atomic::{AtomicU32, AtomicU64};
/// use shmstore::{LockFree, Shareable};
///
/// #[derive(Shareable)]
/// #[repr(C)]
/// struct Stats { requests: AtomicU64, errors: AtomicU32, per_shard: [AtomicU32; 3] }
///
/// fn lock_free<T: LockFree>() {}
/// lock_free::<Stats>();
/// lock_free::<[Stats; 4]>();
/// ```
///
/// # Safety
///
/// Implementing it by hand (only needed for a type that implements
/// `Shareable` by hand) promises, beyond `Shareable`'s promises:
///
/// - **Every byte is inside an atomic** (an `UnsafeCell` that is only read
///   and written atomically): no byte is plain data or padding, so shared
///   references to the value stay sound while other threads and processes
///   write it through their own.
///
/// Derived structs see such a type as a lock-free field only if it also
/// implements the hidden `AtomicField` trait; types that are not derived
/// cannot be relied on to, so a struct holding one is not `LockFree`.
#[diagnostic::on_unimplemented(
    message = "`{Self}` is not made of atomics only, so it cannot be used without the lock",
    label = "not made of atomics only",
    note = "use `lock()`, or use an atomic, an array of atomics, or a struct of atomics with `#[derive(Shareable)]`"
)]
pub unsafe trait LockFree: Shareable {}

/// A type made of atomics only, as a field of the struct `S`: what the
/// derived `LockFree` impl of `S` asks of each field. Not a public API.
///
/// It is `LockFree` with the struct as a parameter, so that the error for a
/// struct with a plain field can name the struct (see the module docs).
///
/// # Safety
///
/// As for [`LockFree`]: every byte of `Self` is inside an atomic.
#[doc(hidden)]
#[diagnostic::on_unimplemented(
    message = "`{S}` has fields that are not atomics: use `lock()`, or make every field an atomic",
    label = "`{S}` holds a `{Self}`, which is not an atomic",
    note = "`SharedAtomic` hands out `&{S}` without the lock, for structs of atomics only (`AtomicU8`..`AtomicU64`, `AtomicI8`..`AtomicI64`, arrays of them, and derived structs of them)"
)]
pub unsafe trait AtomicField<S> {}

macro_rules! atomics {
    ($($t:ty),* $(,)?) => {$(
        // SAFETY: an atomic is an `UnsafeCell` over its integer that is only
        // ever accessed atomically; it has no padding.
        unsafe impl LockFree for $t {}
        // SAFETY: as for `LockFree`.
        unsafe impl<S> AtomicField<S> for $t {}
    )*};
}

atomics!(AtomicU8, AtomicU16, AtomicU32, AtomicU64, AtomicI8, AtomicI16, AtomicI32, AtomicI64);

// SAFETY: an array's bytes are its elements' bytes (no padding between
// elements), each of which is inside an atomic.
unsafe impl<T: LockFree, const N: usize> LockFree for [T; N] {}
// SAFETY: as for `LockFree`.
unsafe impl<S, T: AtomicField<S>, const N: usize> AtomicField<S> for [T; N] {}

impl<T: Shareable> Shared<T> {
    /// Turns this handle into a [`SharedAtomic`], which hands out the value
    /// without the lock; for types made of atomics only ([`LockFree`]).
    ///
    /// The handle is consumed, so no guard of it can hand out `&mut T` while
    /// the lock-free `&T`s exist (that would be a data race in this
    /// process); [`SharedAtomic::into_shared`] turns it back.
    pub fn into_atomic(self) -> SharedAtomic<T>
    where
        // A bound here rather than on the impl block: an unmet bound then
        // gives `LockFree`'s message (E0277) rather than "method exists but
        // its trait bounds were not satisfied" (E0599), which shows none.
        T: LockFree,
    {
        SharedAtomic { shared: self }
    }
}

/// A handle on a segment whose value is made of atomics only, used without
/// any lock: the fastest way to keep counters and statistics that many
/// processes bump at once. It dereferences to `&T`.
///
/// Each atomic operation is indivisible, in this process and in every
/// other that maps the segment; operations on different fields are not
/// ordered with each other beyond what their `Ordering`s say, so a reader
/// may see one field updated and the next not yet.
///
/// ```
/// use core::sync::atomic::{AtomicU64, Ordering::Relaxed};
/// use shmstore::{Shareable, SharedAtomic};
///
/// #[derive(Shareable, Default)]
/// #[repr(C)]
/// struct Stats { requests: AtomicU64, bytes: AtomicU64 }
///
/// # let name = format!("doc-atomic-{}", std::process::id());
/// let stats = SharedAtomic::<Stats>::open_or_create(&name, Stats::default())?;
/// stats.requests.fetch_add(1, Relaxed);
/// stats.bytes.fetch_add(512, Relaxed);
/// assert_eq!(stats.requests.load(Relaxed), 1);
/// # shmstore::unlink(&name)?;
/// # Ok::<(), shmstore::Error>(())
/// ```
///
/// # And the lock
///
/// This handle has no `lock()`: a guard hands out `&mut T`, and writing the
/// value as plain data through it (assigning it or a field, `get_mut`)
/// while another thread of this process uses the atomics would be a data
/// race. Other handles on the same segment (other processes, or another
/// `open` in this one: another mapping) may still lock it; updates made
/// here do not wait for them, do not count as a new generation and wake no
/// one waiting for a change, and a snapshot copies each field as it finds
/// it. Such peers should change the value through the atomics too.
pub struct SharedAtomic<T: LockFree> {
    shared: Shared<T>,
}

impl<T: LockFree> SharedAtomic<T> {
    /// Creates a new segment at `at` holding `value` (see [`Shared::create`]).
    pub fn create(at: impl IntoLocation, value: T) -> Result<SharedAtomic<T>> {
        Ok(Shared::create(at, value)?.into_atomic())
    }

    /// Opens the existing segment at `at` (see [`Shared::open`]).
    pub fn open(at: impl IntoLocation) -> Result<SharedAtomic<T>> {
        Ok(Shared::open(at)?.into_atomic())
    }

    /// Opens the segment at `at`, creating it with `value` if there is none
    /// (see [`Shared::open_or_create`]).
    pub fn open_or_create(at: impl IntoLocation, value: T) -> Result<SharedAtomic<T>> {
        Ok(Shared::open_or_create(at, value)?.into_atomic())
    }

    /// The value, without any lock (what `Deref` gives too).
    #[inline]
    pub fn get(&self) -> &T {
        // SAFETY: `value_ptr` is in bounds and aligned for `T`, and stays
        // valid as long as `self` (the mapping lives in the inner handle),
        // which the returned reference cannot outlive. Every byte of a
        // `LockFree` value is inside an atomic (an `UnsafeCell`), so a shared
        // reference to it is sound while other threads and processes write
        // it through their own shared references or mappings; any bit
        // pattern is a valid `T` (`Shareable`), whatever they wrote. No
        // `&mut T` to these bytes can exist in this process through this
        // mapping: the inner handle, the only way to its lock guards, is
        // private and given back only by value (`into_shared`), which needs
        // every `&T` from here to be gone.
        unsafe { self.shared.value_ptr().as_ref() }
    }

    /// `Err(`[`Error::Truncated`](crate::Error::Truncated)`)` if another
    /// process shrank the segment under this handle and this process touched
    /// a missing page (see [`Shared::check`]): the atomics there are then
    /// zeroed private memory, and what was read from them since is not the
    /// segment's.
    pub fn check(&self) -> Result<()> {
        self.shared.check()
    }

    /// Turns this handle back into a [`Shared`], with `lock()`.
    pub fn into_shared(self) -> Shared<T> {
        self.shared
    }

    /// The segment's name as errors give it (see [`Shared::name`]).
    pub fn name(&self) -> &str {
        self.shared.name()
    }
}

impl<T: LockFree> Deref for SharedAtomic<T> {
    type Target = T;

    #[inline]
    fn deref(&self) -> &T {
        self.get()
    }
}

impl<T: LockFree> fmt::Debug for SharedAtomic<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SharedAtomic")
            .field("name", &self.shared.name())
            .field("type", &T::TYPE_NAME)
            .finish_non_exhaustive()
    }
}
