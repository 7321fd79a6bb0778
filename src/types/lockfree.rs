//! Lock-free access to values made only of atomics.
//!
//! A value whose every byte is inside an atomic can be used through `&T` by
//! any number of threads and processes at once, with no lock: each atomic
//! operation is indivisible on its own. [`LockFree`] marks such types, and
//! [`SharedAtomic`](crate::SharedAtomic) (from
//! [`Shared::into_atomic`](crate::Shared::into_atomic)) hands them out. `#[derive(Shareable)]` implements
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

use crate::types::shareable::Shareable;

/// A [`Shareable`] type made of atomics only, which [`SharedAtomic`](crate::SharedAtomic) hands
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
