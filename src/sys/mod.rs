//! The crate's only contact with the operating system that needs `unsafe`:
//! futex calls, memory mappings, the SIGBUS handler for segments shrunk
//! under us, and the per-thread identity cache. Each file
//! exposes safe `pub(crate)` functions; every `unsafe` block says why it is sound.

#![allow(unsafe_code)] // the crate's FFI: see the crate docs

pub(crate) mod fdpass;
pub(crate) mod futex;
pub(crate) mod mapping;
pub(crate) mod racy;
pub(crate) mod sigbus;
pub(crate) mod sysv;
