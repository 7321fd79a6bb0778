//! What may live in shared memory: the [`Shareable`](crate::Shareable) and
//! [`LockFree`](crate::LockFree) traits, and the fixed-capacity field types
//! ([`ShmStr`](crate::ShmStr), [`ShmVec`](crate::ShmVec),
//! [`ShmBool`](crate::ShmBool)) whose every byte pattern is a valid value.

#![allow(unsafe_code)] // unsafe traits and their impls: see the crate docs

pub(crate) mod fixed;
pub(crate) mod lockfree;
pub(crate) mod shareable;
