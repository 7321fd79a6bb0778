//! Typed state shared between processes through shared memory, behind a
//! process-shared lock that survives a holder being killed.
//!
//! ```
//! use shmstore::{Shareable, Shared};
//!
//! #[derive(Shareable, Clone, Copy, Default)]
//! #[repr(C)]
//! struct Counter { value: u64, last_pid: u32, _pad: u32 }
//!
//! # let name = format!("doc-crate-{}", std::process::id());
//! // Every process that runs this line ends up on the same Counter.
//! let c = Shared::<Counter>::open_or_create(&name, Counter::default())?;
//! {
//!     let mut g = c.lock().unwrap();  // Err only if a holder died or panicked
//!     g.value += 1;
//!     g.last_pid = std::process::id();
//! }
//! assert_eq!(c.lock().unwrap().value, 1);
//! shmstore::unlink(&name)?;  // segments outlive processes until unlinked
//! # Ok::<(), shmstore::Error>(())
//! ```
//!
//! # What may be shared
//!
//! `#[derive(Shareable)]` accepts a `#[repr(C)]` or `#[repr(transparent)]`
//! struct whose fields are all [`Shareable`]: fixed-width integers and floats,
//! their atomics, arrays of them, and other derived structs. It refuses at
//! compile time padding, `bool`, `char`, `usize`/`isize`, enums, unions,
//! references, pointers, heap types and types with drop glue: another process
//! may write any bytes, and every byte pattern must be a valid value. It also
//! computes a layout fingerprint, and a segment created by a build whose `T`
//! differs in name, size, alignment or any field is refused at open with
//! [`Error::LayoutMismatch`].
//!
//! For text, lists and flags, fields can be [`ShmStr<N>`](ShmStr) (UTF-8 of
//! at most `N` bytes), [`ShmVec<T, N>`](ShmVec) (at most `N` items) and
//! [`ShmBool`]: stored inline, without padding, and sound whatever bytes a
//! peer writes, because their accessors validate on every read (lengths are
//! clamped to `N`, UTF-8 is checked, any non-zero byte is `true`).
//!
//! # Where segments live
//!
//! By default segments are POSIX shared-memory objects (`shm_open`, in
//! /dev/shm). The same handle, lock and checks work on System V segments
//! ([`SysvKey`]), regular files (a `&Path`: state that survives reboots),
//! sealed memfds shared by descriptor ([`Shared::memfd`], [`Shared::from_fd`],
//! [`send_fd`], [`recv_fd`]) and anonymous memory shared with forked children
//! ([`Shared::anonymous`]). See [`Location`].
//!
//! # Opening safely
//!
//! Creation writes a header and allocates every page before anyone can map
//! the segment, so a full /dev/shm gives [`Error::NoSpace`] at creation and
//! never a SIGBUS later. Opening checks, before mapping, the owner (a segment
//! of another user is [`Error::ForeignOwner`]), the size, the magic, the
//! format version and the fingerprint, and maps exactly the object's size.
//! A file that is not a shmstore segment is [`Error::Corrupt`] and is never
//! written over. See `segment.rs` for the protocol (a `flock` serialises
//! initialisation), which also covers a creator killed halfway; System V,
//! which has no descriptor to lock, uses the segment's own robust lock
//! instead (`backend/sysv.rs`).

//! # The lock and poisoning
//!
//! [`Shared::lock`] behaves like [`std::sync::Mutex::lock`], across threads
//! and processes alike. When a holder panics, or its process dies (SIGKILL
//! included), the next locker gets `Err(PoisonError)`; `into_inner()` on it
//! gives a usable guard over whatever the holder left, and every locker sees
//! the poison until [`Shared::clear_poison`]. A waiter already asleep in
//! `lock()` when the holder dies wakes and takes over within about 50 ms.
//!
//! The lock is a 64-bit word holding the owner's thread id and start time
//! (so recycled ids are not mistaken for the dead owner), with futex sleeping
//! that works across processes. Uncontended, lock plus unlock is two atomic
//! instructions. Its design and limits are described in [`RawLock`]'s module
//! (`src/lock.rs`) and in the README.
//!
//! # Readers and watchers
//!
//! [`Shared::snapshot`] copies the value without the lock: a sequence
//! counter beside the lock is odd while a guard writes, and a copy that
//! overlapped a write is taken again, so a snapshot is never torn and
//! writers never wait for readers. [`Shared::generation`] counts committed
//! writes and [`Shared::wait_for_change`] sleeps in the kernel until the
//! next one, in any process. [`SharedReader`] is the read-only handle
//! (read permission suffices; the mapping is read-only), with snapshots and
//! waiting but no `lock()`. A struct made only of atomics is [`LockFree`]
//! and a [`SharedAtomic`] gives it without any lock. See `src/seqlock.rs` for
//! the design, and `examples/config.rs`.
//!
//! # Many entries in one segment
//!
//! A [`Store`] holds many named entries of different types in one segment,
//! each a [`Shared<T>`] with its own lock ([`Store::get`],
//! [`Store::get_or_create`], [`Store::insert`], [`Store::remove`],
//! [`Store::entries`]). Getting an entry as the wrong type is
//! [`Error::LayoutMismatch`]; a full store is [`Error::StoreFull`]. Its
//! directory survives processes killed in the middle of a change; see
//! `src/store/heap.rs` for the layout and the recovery.
//!
//! # Trust
//!
//! Other processes that map a segment can write anything into it. Nothing
//! they write makes this crate read outside the mapping or produce an
//! invalid value: headers are copied out and checked, the lock word is only
//! accessed atomically, and every bit pattern of a `Shareable` type is valid.
//! A peer that writes the value *without* taking the lock races with the
//! holder and can make it read inconsistent numbers; only peers that follow
//! the locking protocol get consistency.

#![warn(missing_docs)]

// Generated code names `::shmstore::...`; this makes those paths resolve
// inside the crate itself too.
extern crate self as shmstore;

mod error;
pub mod inspect;
mod lock;
#[cfg(feature = "mirror")]
pub mod mirror;
mod reader;
pub mod schema;
mod segment;
mod shared;
mod store;
mod sys;
mod types;

pub use error::{Error, Result};
pub use lock::{RawLock, CHECK_INTERVAL};
pub use reader::SharedReader;
pub use schema::{Schema, Value};
pub use segment::location::{IntoLocation, Location, SysvInfo, SysvKey};
pub use segment::name::MAX_SEGMENT_NAME_LEN;
pub use segment::options::SharedOptions;
pub use segment::unlink;
pub use shared::{Shared, SharedGuard};
pub use shmstore_derive::Shareable;
pub use store::{EntryInfo, Store, MAX_KEY_LEN};
pub use sys::fdpass::{recv_fd, send_fd};
pub use types::fixed::{CapacityError, ShmBool, ShmStr, ShmVec};
pub use types::lockfree::{LockFree, SharedAtomic};
pub use types::shareable::Shareable;

/// Helpers that `#[derive(Shareable)]` expands to. Not a public API.
#[doc(hidden)]
pub mod __private {
    pub use crate::types::lockfree::{AtomicField, LockFree};
    pub use crate::types::shareable::Fingerprint;
    pub use crate::types::shareable::Shareable;

    /// `schema` if it has this size and alignment, an opaque schema with
    /// them otherwise: what the derive records for a field whose type it
    /// names only as `<F as Shareable>`.
    pub fn checked_schema(
        schema: crate::Schema,
        type_name: &str,
        size: usize,
        align: usize,
    ) -> crate::Schema {
        crate::Schema::checked(schema, type_name, size, align)
    }
    pub use core;
    pub use std::vec::Vec;
}
