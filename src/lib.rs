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
//! # Where to start
//!
//! - [`_guide`]: using shmstore, chapter by chapter: handles, what the
//!   derive accepts, backends, readers and watchers, lock-free atomics,
//!   text, lists and flags, the store, the `shmstore` command, mirroring,
//!   and what each costs.
//! - [`_design`]: how it works: the lock and poisoning, snapshots, the
//!   segment protocol, the store's heap and its recovery, trust, how the
//!   guarantees are tested, and the memory-ordering review.
//!
//! # The types
//!
//! - [`Shareable`] (and `#[derive(Shareable)]`): a type that may live in
//!   shared memory, with a layout fingerprint checked at open.
//! - [`Shared<T>`]: a `T` in a segment, locked like a
//!   [`std::sync::Mutex`] across threads and processes, poisoned when a
//!   holder panics or dies; with lock-free [`snapshot`](Shared::snapshot)s
//!   and [`wait_for_change`](Shared::wait_for_change).
//! - [`SharedReader<T>`]: the read-only handle. [`SharedAtomic<T>`]: a
//!   [`LockFree`] value without any lock.
//! - [`SharedOptions`]: mode, removal on drop, foreign owners, waking
//!   read-only watchers. [`Location`] and [`SysvKey`]: where a segment
//!   lives.
//! - [`Store`]: many named, typed entries in one segment; [`StoreReader`]:
//!   a store opened for reading only.
//! - [`ShmStr`], [`ShmVec`], [`ShmBool`]: text, lists and flags that may
//!   live in shared memory.
//! - [`Error`]: one variant for each thing a caller can act on.
//! - [`inspect`] and [`schema`]: segments read without their types, as the
//!   `shmstore` command (feature `cli`) does. `mirror` (feature `mirror`):
//!   values kept in step across hosts through Redis.
//!
//! Linux only, 64-bit: tested on x86_64 and aarch64, compiled for
//! riscv64gc, powerpc64le and s390x; it relies on futexes, `/proc` and
//! tmpfs semantics, and other systems and 32-bit targets are refused at
//! compile time. [`_design::platforms`] says why, and what a port to macOS
//! or FreeBSD would use.
//!
//! # Where `unsafe` is allowed
//!
//! The crate root denies `unsafe_code`. These modules allow it, each for
//! one job, and every `unsafe` block says why it is sound:
//!
//! | module | what it does with `unsafe` |
//! |---|---|
//! | `sys` | the crate's FFI: memory mappings (`mmap`, `shmat`) and the atomic and raw views of their bytes, copies of bytes other processes may be writing (volatile loads, `rep movsb`), futex calls, System V calls, descriptor passing, the SIGBUS handler that replaces a shrunk object's missing pages |
//! | `lock::slot` | slots: a lock, its write counter and the value they guard in a mapping the slot keeps alive; lock-free snapshots into a `T`, `&T` for values made of atomics (`SharedAtomic`), whole-value writes under the lock (the mirror), copies made under the lock (store entries' migrations), unchecked copies of a removed entry's bytes (its read-only handle) |
//! | `lock::guard` | the guard of a held lock, which hands out `&T` and `&mut T` |
//! | `lock::notify` | async waits: registrations of counter words in mappings their futures' handles keep alive, read by the background threads that sleep on them |
//! | `lock::seqlock` | the snapshot protocol: copies checked against the write counter |
//! | `lock::held` | the per-thread lock owner identity and list of held locks (a thread-local borrowed in place) |
//! | `types` | the unsafe traits [`Shareable`] and [`LockFree`] and their impls for primitives, atomics, arrays and the fixed-capacity types |
//! | `segment::init` | writing a new segment's value and schema before it is published |
//!
//! Three functions outside them allow it for one call each: anonymous
//! memory in `segment` and the System V create protocol in `segment::sysv`
//! call `segment::init`'s body writer (POSIX, file and memfd segments are
//! written by `segment::init` itself), and the
//! store's `heap` writes a new entry's key, value and schema into a block
//! no directory link reaches yet. The handles ([`Shared`],
//! [`SharedReader`], [`SharedAtomic`], [`Store`], [`StoreReader`],
//! `mirror::Target`) hold
//! slots and contain no `unsafe` code. The `shmstore` command denies it too,
//! but for one call to `localtime_r`.

#![warn(missing_docs)]
#![deny(unsafe_code)]

// Generated code names `::shmstore::...`; this makes those paths resolve
// inside the crate itself too.
extern crate self as shmstore;

// The one place that says which targets shmstore builds for, and why the
// others are refused: see `_design::platforms`. On a refused target the
// crate's items are left out (`on_accepted_targets!`), so that the refusal
// is the only error a user sees, not whatever Linux-only call fails first.
#[cfg(not(target_os = "linux"))]
compile_error!(
    "shmstore supports Linux only (tested on x86_64 and aarch64, compiled for riscv64gc, \
     powerpc64le and s390x). It relies on Linux's futexes shared between processes (the \
     lock, change waits, futex_waitv for async waits), open file description locks and /proc for \
     a lock holder's liveness, memfd seals, System V limits (SHM_INFO) and /dev/shm to list \
     segments. macOS and FreeBSD have equivalents for most of these but no port exists \
     yet: the port plan is the design note shmstore::_design::platforms \
     (src/_design/platforms.rs)."
);
#[cfg(all(target_os = "linux", not(target_pointer_width = "64")))]
compile_error!(
    "shmstore needs a 64-bit target: its lock word is one 64-bit atomic (owner thread id and \
     process incarnation) taken with an 8-byte compare-exchange, and read-only handles make relaxed \
     8-byte atomic loads from read-only mappings, which 32-bit targets may implement with a \
     read-modify-write (cmpxchg8b on i686) that faults there. 32-bit Linux (i686, armv7) is \
     refused: see the design note shmstore::_design::platforms (src/_design/platforms.rs)."
);

/// The crate's items, each only on the targets shmstore accepts: Linux,
/// 64-bit, on the architectures listed where the macro is used, whose
/// relaxed 8-byte atomic loads work on read-only memory; on other 64-bit
/// Linux architectures, one `compile_error!` that says so.
macro_rules! on_accepted_targets {
    (architectures $archs:tt, $($item:item)*) => {
        #[cfg(all(target_os = "linux", target_pointer_width = "64", not(any $archs)))]
        compile_error!(
            "shmstore builds only for 64-bit targets whose relaxed 8-byte atomic loads work on \
             read-only memory (x86_64, aarch64, riscv64, powerpc64, s390x, loongarch64): \
             read-only handles make such loads from read-only mappings. See the design note \
             shmstore::_design::platforms (src/_design/platforms.rs)."
        );
        $(
            #[cfg(all(target_os = "linux", target_pointer_width = "64", any $archs))]
            $item
        )*
    };
}

on_accepted_targets! {
architectures (
    target_arch = "x86_64",
    target_arch = "aarch64",
    target_arch = "loongarch64",
    target_arch = "powerpc64",
    target_arch = "riscv64",
    target_arch = "s390x"
),
pub mod _design;
pub mod _guide;
mod atomic;
mod error;
pub mod inspect;
mod lock;
#[cfg(feature = "mirror")]
pub mod mirror;
mod poison;
mod reader;
pub mod schema;
mod segment;
mod shared;
mod store;
mod sys;
mod types;

pub use atomic::SharedAtomic;
pub use error::{ByteOrder, Error, Result};
pub use poison::{PoisonCause, PoisonInfo};
pub use reader::SharedReader;
pub use schema::{LayoutChange, Schema, Value};
pub use segment::location::{IntoLocation, Location, SysvInfo, SysvKey};
pub use segment::name::MAX_SEGMENT_NAME_LEN;
pub use segment::options::SharedOptions;
pub use segment::unlink;
pub use shared::{Shared, SharedGuard};
pub use shmstore_derive::Shareable;
pub use store::{EntryInfo, Store, StoreReader, MAX_KEY_LEN};
pub use sys::fdpass::{recv_fd, send_fd};
pub use types::fixed::{CapacityError, ShmBool, ShmStr, ShmVec};
pub use types::lockfree::LockFree;
pub use types::shareable::Shareable;

/// The zerocopy crate this build uses (feature `zerocopy`), so that
/// `#[derive(shmstore::zerocopy::FromBytes, ...)]` with
/// `#[zerocopy(crate = "shmstore::zerocopy")]` needs no dependency of yours:
/// see [the guide](crate::_guide::derive#bytemuck-and-zerocopy).
#[cfg(feature = "zerocopy")]
pub use zerocopy;

/// Compiles and runs every Rust snippet of README.md as a doc test.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
pub struct ReadmeDoctests;

/// Helpers that `#[derive(Shareable)]` expands to. Not a public API.
#[doc(hidden)]
pub mod __private {
    /// The async waiters' registry, for tests and benchmarks.
    pub mod async_wait {
        /// Serve every later async wait of this process as on a kernel
        /// without `futex_waitv` (a thread per awaited counter); only
        /// before the process's first async wait.
        pub fn force_thread_per_waiter() {
            crate::lock::notify::force_fallback()
        }
        /// Pending async waits (futures registered) in this process.
        pub fn registrations() -> usize {
            crate::lock::notify::registrations()
        }
        /// The counters the pending async waits of this process wait on.
        pub fn words() -> usize {
            crate::lock::notify::words()
        }
        /// Background threads started for async waits in this process.
        pub fn threads() -> usize {
            crate::lock::notify::threads()
        }
        /// Whether async waits use `futex_waitv` (`None`: none yet).
        pub fn uses_waitv() -> Option<bool> {
            crate::lock::notify::uses_waitv()
        }
    }
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
    pub use crate::types::shareable::{
        OpaqueEither, OpaqueFeature, OpaquePod, OpaqueProbe, OpaqueZerocopy, ViaPod, ViaZerocopy,
    };
    /// What the derive's `Zeroable` and `Pod` impls name (feature `bytemuck`).
    #[cfg(feature = "bytemuck")]
    pub use bytemuck;
    pub use core;
    pub use std::vec::Vec;

    /// Year, month and day of a day count since 1970-01-01: how the
    /// `shmstore` command and `PoisonInfo` print times, without a
    /// dependency.
    pub use crate::poison::civil;
}
}
