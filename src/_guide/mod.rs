//! The guide: using shmstore, chapter by chapter.
//!
//! This module holds documentation only. Every example in it is a doc test
//! that creates real segments under names of its own and removes them.
//!
//! 1. [Handles](handles): creating, opening and removing a segment, the
//!    lock, poisoning, options.
//! 2. [What the derive accepts](mod@derive): the types that may live in shared
//!    memory, and the layout fingerprint.
//! 3. [Backends](backends): POSIX shared memory, System V, sealed memfds,
//!    anonymous memory for forked children, and files.
//! 4. [Readers and watchers](readers): lock-free snapshots, generations,
//!    waiting for changes, the read-only handle.
//! 5. [Lock-free atomics](atomics): structs of atomics without any lock.
//! 6. [Text, lists and flags](fixed): `ShmStr`, `ShmVec`, `ShmBool`.
//! 7. [The store](store): many named, typed entries in one segment.
//! 8. [The `shmstore` command](command): what is inside a segment, from the
//!    shell.
//! 9. [Mirroring](mirror): one value kept in step across hosts through
//!    Redis.
//! 10. [Costs](costs): what readers, the store and the mirror cost,
//!     measured.
//! 11. [Crashes and change](change): a poisoned lock and who poisoned it,
//!     what `open_or_create` did, changing a shared type while the service
//!     runs.
//! 12. [Containers](containers): processes in different PID namespaces
//!     (a Kubernetes pod, Docker's `--ipc=container:`), rootless containers.
//!
//! How all of this works inside, and what is and is not guaranteed, is in
//! [`_design`](crate::_design).

pub mod atomics;
pub mod backends;
pub mod change;
pub mod command;
pub mod containers;
pub mod costs;
pub mod derive;
pub mod fixed;
pub mod handles;
pub mod mirror;
pub mod readers;
pub mod store;
