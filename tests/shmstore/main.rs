//! The integration tests of shmstore, one module per feature: run one
//! feature's tests with `cargo test --release --test shmstore <module>::`
//! (for example `store::` or `backends::sysv::`).
//!
//! Three test binaries stand apart: tests/cli.rs (the `shmstore` command,
//! feature `cli`), tests/mirror.rs (the mirror, feature `mirror`) and
//! tests/compiletest.rs (what `#[derive(Shareable)]` refuses, with
//! trybuild).
//!
//! Modules that start child processes run this binary again (see
//! `common`), each in its own `child_entry` test. Tests that keep every core
//! busy take [`common::heavy`], so that no two of them run at once.

#[path = "../common/mod.rs"]
mod common;

// The typed handle and its lock.
/// `changed(seen).await` and `changes(seen)`: async waits across processes,
/// cancellation, 10,000 futures, the thread-per-waiter fallback.
mod async_wait;
/// `SharedAtomic` on structs of atomics, from processes and threads.
mod lockfree;
/// Changing a segment's type while processes use it: `open_or_migrate`,
/// `replace_on_mismatch`.
mod migrate;
/// What poisoned a lock (`poison_info`), clearing it, handles that opt out
/// of poisoning.
mod poison;
/// `SharedReader` and snapshots: copies never torn, waiting for changes,
/// read-only opens.
mod readers;
/// `Shared<T>` between processes: the lock, holders that die or panic,
/// races to create, modes, owners, refusals of damaged or foreign objects.
mod shared;

// The types that may live in shared memory.
/// `#[derive(Shareable)]`: what it implements, what the fingerprint sees.
mod derive;
/// `ShmStr`, `ShmVec`, `ShmBool` whatever bytes they hold.
mod fixed;
/// The bytes another program sees: header, value, schema.
mod layout;
/// A segment or entry of another layout: the error names what differs.
mod mismatch;
/// Schemas: encoding, decoding, printing values, damaged encodings.
mod schema;

/// Where segments come from, besides POSIX shared memory (which every other
/// module uses).
mod backends {
    /// memfd, anonymous and file-backed segments.
    mod fd;
    /// System V segments.
    mod sysv;
}

/// `Store`: many named, typed entries in one segment.
mod store {
    /// A store that grows online: 100,000 entries from 64 KiB across
    /// processes, kills in the middle of growth, handles and readers that
    /// live through it, `max_capacity`, hostile sizes and tables.
    mod growth;
    /// Hostile bytes in a store's directory and heap.
    mod hostile;
    /// `entries()` of a large store while other processes change it and
    /// look entries up: none missed or repeated, nobody stalled.
    mod listing;
    /// `get_or_migrate`: an entry changing type while processes use it,
    /// migrators racing, kills in the middle of migrations.
    mod migrate;
    /// Within one process: round trips, errors, space, waiting, capacity.
    mod one_process;
    /// Between processes: races, kills in the middle of inserts and
    /// removes, dead holders.
    mod processes;
    /// `StoreReader`: look-ups without the lock, removed entries, another
    /// user reading, look-ups while another process changes the directory.
    mod readers;
}

/// The crate's layout rules, on its sources: where `unsafe` is allowed,
/// handles that never reach a backend, a `sys` layer that imports nothing
/// above it.
mod structure;

/// Segments and other users: permissions, owners, squatted names.
mod users;

/// Segments shared across PID namespaces (containers) and user namespaces:
/// counting, dead holders taken over, a restarted container, kill storms.
mod namespaces;

/// FIFOs, sockets, directories, links and other programs' files under a
/// segment's name: every opening call answers at once and writes nothing.
mod squatters;

/// What must hold whatever happens to a segment.
mod reliability {
    /// Lock words, store handle slots and System V stand-ins written by a
    /// peer that does not own them: no hang, at worst a poisoned take-over.
    mod forged;
    /// A model check of holds on store entries taken and let go without
    /// the directory lock.
    mod holds_model;
    /// Hostile bytes written over any part of a segment or store.
    mod hostile;
    /// Forked children, memfd descriptors sent to other processes, and the
    /// descriptors handles keep.
    mod inherited;
    /// Sixteen processes on one lock and on one store: nothing lost,
    /// everyone served, nothing grows.
    mod load;
    /// A model check of the lock word protocol and the seqlock.
    mod model;
    /// Segments shrunk under their mappings (SIGBUS), full file systems.
    mod space;
    /// Kill storms: workers SIGKILLed at random while they update values.
    mod storm;
}
