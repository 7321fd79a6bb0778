//! How shmstore works: design notes.
//!
//! This module holds documentation only. It is for readers who want to
//! know why the guarantees hold before they rely on them, and for
//! contributors.
//!
//! 1. [The lock](lock): one 64-bit word with the owner's identity, futex
//!    sleeping across processes, dead owners and poisoning.
//! 2. [Snapshots and waiting](seqlock): the write counter beside the lock,
//!    lock-free copies that are never torn, waking watchers.
//! 3. [Segments](segment): what a segment holds, and how it is created and
//!    opened safely on every backend, System V included; shrunk segments
//!    and SIGBUS.
//! 4. [The store](store): the directory and heap of many entries, and how
//!    they are rebuilt after a crash.
//! 5. [Trust](trust): what another process that maps a segment can and
//!    cannot do to this one, and what is not guaranteed.
//! 6. [Reliability](reliability): how the guarantees are tested, in short.
//! 7. [Platforms](platforms): what shmstore runs on and what it refuses,
//!    where its Linux code is, and the plan for macOS and FreeBSD.
//! 8. [Memory ordering](ordering): every atomic and fence of the lock,
//!    the snapshots, the segments and the store, reviewed for ARM's weaker
//!    memory model, and what emulation on x86 cannot show.
//!
//! # The layers
//!
//! The typed handles ([`Shared`](crate::Shared),
//! [`SharedReader`](crate::SharedReader),
//! [`SharedAtomic`](crate::SharedAtomic)) and the [`Store`](crate::Store)
//! reach their values through a *slot*: a lock, its write counter and the
//! value they guard, at known places in a mapping, so the locking and the
//! lock-free reads exist once whatever the handle. Below them, the segment
//! layer creates and opens segments, writes and checks their header; below
//! it, the backends only open, seal and unlink objects of their kind; at
//! the bottom, a small layer of operating-system calls (futexes, mappings,
//! the SIGBUS handler, System V calls, descriptor passing) holds the
//! crate's `unsafe` code, each block with the argument for its soundness;
//! what in it is Linux's own sits in files a port replaces (see
//! [platforms]).
//! The lock sits beside the segment layer and knows nothing of it.

pub mod lock;
pub mod ordering;
pub mod platforms;
pub mod reliability;
pub mod segment;
pub mod seqlock;
pub mod store;
pub mod trust;
