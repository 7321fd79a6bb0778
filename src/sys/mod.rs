//! The crate's only contact with the operating system that needs `unsafe`:
//! futex calls, memory mappings, the SIGBUS handler for segments shrunk
//! under us, and the per-thread identity cache. Each file
//! exposes safe `pub(crate)` functions; every `unsafe` block says why it is sound.
//!
//! The files here use POSIX calls that a port could keep (`mmap`, `shmat`,
//! `sigaction`, `SCM_RIGHTS`) or depend on the architecture only (`racy`).
//! What is Linux's own lives in `linux/`, behind the `os` module, one file
//! per mechanism: futexes and `futex_waitv`, thread ids and what `/proc`
//! says of threads and mappings, memfds and their seals, and System V
//! (`IPC_INFO`, `SHM_INFO`, `/proc/sysvipc/shm`, Linux's `shmid_ds`). A port
//! to another system adds a folder with the same files and functions and
//! one `cfg_attr` line below; the design note `_design::platforms` says
//! what each system offers for each of them.

#![allow(unsafe_code)] // the crate's FFI: see the crate docs

pub(crate) mod fdpass;
pub(crate) mod mapping;
pub(crate) mod racy;
pub(crate) mod sigbus;

#[cfg_attr(target_os = "linux", path = "linux/mod.rs")]
mod os;
pub(crate) use os::{futex, maps, memfd, presence, sysv, thread};
