//! The store: many named, typed entries in one segment.
//!
//! One segment can hold many named objects of different types, each with its
//! own lock: [`Store`](crate::Store) is to [`Shared<T>`](crate::Shared) what
//! Boost.Interprocess's `managed_shared_memory` (`construct`, `find`,
//! `find_or_construct`) is to one object, with shmstore's type checks and
//! crash-robust locks on every entry.
//!
//! ```
//! use shmstore::{Error, Shareable, Store};
//!
//! #[derive(Shareable, Clone, Copy, Default)]
//! #[repr(C)]
//! struct Stats { jobs: u64, busy_us: u64 }
//!
//! # let name = format!("doc-guide-store-{}", std::process::id());
//! let store = Store::open_or_create(&name, 1 << 20)?;                // 1 MiB for entries
//! let next = store.get_or_create::<u64>("jobs/next", 0)?;           // a Shared<u64>
//! let mine = store.get_or_create::<Stats>("worker/1", Stats::default())?;
//! let job = { let mut n = next.lock().unwrap(); *n += 1; *n };       // the entry's own lock
//! mine.lock().unwrap().jobs += 1;
//! assert_eq!(job, 1);
//!
//! assert_eq!(store.get::<Stats>("worker/1")?.lock().unwrap().jobs, 1);
//! assert!(matches!(store.get::<Stats>("worker/2"), Err(Error::NotFound { .. })));
//! assert!(matches!(store.get::<u32>("worker/1"), Err(Error::LayoutMismatch { .. })));  // a Stats
//! assert!(matches!(store.insert::<u64>("jobs/next", 0), Err(Error::AlreadyExists { .. })));
//! for e in store.entries()? {   // key, type name, size, fingerprint, generation, lock state
//!     println!("{:<12} {:<8} {:>4} bytes  generation {}", e.key, e.type_name, e.size, e.generation);
//! }
//! store.remove("worker/1")?;    // open handles keep working; space freed when they drop
//! assert_eq!(store.len()?, 1);
//! store.check()?;               // every invariant of the directory and the heap
//! # drop((next, mine, store));
//! # Store::unlink(&name)?;
//! # Ok::<(), shmstore::Error>(())
//! ```
//!
//! - **An entry is a `Shared<T>`**: `lock()` with poisoning, `snapshot()`,
//!   `generation()`, `wait_for_change()`, everything a single-value segment
//!   has, through the same slot (lock, write counter, value). Entries never
//!   contend with each other; the store's directory has a lock of its own,
//!   taken by `insert`, `remove` and `entries` (and by `get` only when a
//!   change overlaps it), not by `lock()` on an entry.
//! - **Backends**: [`Store::create`](crate::Store::create) / `open` /
//!   `open_or_create` take a name, a `SysvKey` or a `Path`, as `Shared`
//!   does; [`SharedOptions::create_store`](crate::SharedOptions::create_store)
//!   and friends take the options (mode, `remove_on_drop`,
//!   `allow_foreign_owner`, `wake_read_only`). Opening a store as a
//!   `Shared<T>`, or a `Shared<T>` segment as a store, is
//!   `Error::LayoutMismatch`.
//! - **Keys**: 1 to [`MAX_KEY_LEN`](crate::MAX_KEY_LEN) (128) bytes of ASCII
//!   letters, digits and `_ - . / : @ +`; anything else is
//!   `Error::InvalidName`.
//! - **`insert`, not `create`**: Rust does not allow a type both an
//!   associated function `Store::create(name, capacity)` and a method
//!   `store.create(key, value)`, so creating an entry that must be new is
//!   [`insert`](crate::Store::insert).
//! - **Growth**: a store grows in place when an entry does not fit, up to
//!   [`SharedOptions::max_capacity`](crate::SharedOptions::max_capacity)
//!   (default: 64 times its capacity, at most 1 GiB, or the capacity if
//!   larger: a bound on a runaway writer); past it, inserts fail with `StoreFull`. Entries never move,
//!   so every handle stays valid, and other processes use the new room
//!   without reopening. [`capacity`](crate::Store::capacity) is the size
//!   now, [`max_capacity`](crate::Store::max_capacity) the most. POSIX and
//!   file stores grow; System V stores do not (`shmget` fixes a segment's
//!   size: their most is their capacity). What it costs: the insert that
//!   grows the store allocates the new room (`posix_fallocate`, a full
//!   `/dev/shm` is `Error::NoSpace`) and, when the key index fills, moves
//!   it to a table four times larger (a pass over the entries); lookups
//!   pay one more load and compare. Each process reserves address space
//!   for the store at its most when it opens it (address space, not
//!   memory: pages come only as the store grows). Use
//!   `max_capacity(capacity)` for a store that never grows.
//! - **Space**: a store starts with the capacity given at creation. An entry takes one block:
//!   a 64-byte header, its key and type name, its lock and write counter
//!   (48 bytes), its value and its schema, rounded up to 64 bytes (at
//!   least 128). A `u64` entry with a short key takes 256 bytes. Removing an entry frees
//!   its block, merged with free neighbours, and any later entry may use it.
//!   What fragmentation can cost: free space split into pieces smaller than
//!   a new entry's block; [`Error::StoreFull`](crate::Error::StoreFull) then
//!   says how many bytes were needed, how many are free and the largest free
//!   piece. Stores whose entries are all of a few sizes do not fragment in
//!   practice (freed blocks fit the next entry of the same size exactly); a
//!   churn test of 100,000 creates and removes of mixed sizes, with live
//!   data under half the capacity, never fails and ends with every byte free
//!   again. Besides the capacity, the segment holds a table of 8 bytes per
//!   64 bytes of capacity (the key index; a store that grew moves it into
//!   its heap), the handle table (64 KiB, given
//!   memory only as slots are used) and 0.5 KiB of headers. A `Store`
//!   handle holding entries takes 4 bytes of the capacity per entry held,
//!   at least 128 (see Handles).
//! - **Removal**: `remove` takes the key out at once (the key can be created
//!   again, even with another type). Handles that are open keep working on
//!   the removed entry, as with `shmstore::unlink`, and its space is freed
//!   when the last one is dropped.
//! - **Handles**: a `Store` handle takes one of 4,096 slots in the store
//!   (clone it to share it between threads; up to 4,096 open at once over
//!   all processes, else [`Error::HandleLimit`](crate::Error::HandleLimit);
//!   a read-only [`StoreReader`](crate::StoreReader) takes none). The
//!   table is 64 KiB of the segment, but memory is given to it only for
//!   the slots ever used (tmpfs allocates pages as they are touched). Each
//!   handle keeps the list of the entries it holds in the store's space (4
//!   bytes an entry, in a 128-byte block at first; an emptied list is kept
//!   for the next `get` until `free_bytes` or a store short of room frees
//!   it), and each entry a count of the handles holding it, so a
//!   removed entry held by a killed process is freed once that process is
//!   found dead (by `free_bytes`, an insert that finds no room, or the
//!   rebuild after a crash), at a cost that depends on the dead handles'
//!   holds, not on the number of slots. A forked child must open the store
//!   itself.
//! - **Crashes**: a process killed in the middle of `insert`, `remove` or
//!   `get_or_migrate` leaves the directory lock to the next caller, who rebuilds the
//!   directory from the entries themselves. A half-made entry is gone; a
//!   half-done removal is undone (the entry is still there); a migration is
//!   finished if its new entry was complete, undone otherwise. Every change to
//!   the shape of the heap is a single 8-byte store, so the rebuild always
//!   finds whole blocks. [`store.check()`](crate::Store::check) verifies
//!   every invariant (tests and tools use it).
//! - **Changing an entry's type while processes use it**:
//!   [`store.get_or_migrate(key, init, |old: V1| -> V2 { .. })`](crate::Store::get_or_migrate)
//!   creates the entry from `init` if the key is free, opens a `V2` found
//!   there, and migrates a `V1`: under the old entry's lock the closure
//!   turns a copy of the old value into the new one, and one step of the
//!   directory puts the new entry in the key's place (a crash at any point
//!   leaves the key with the complete old entry or the complete new one).
//!   Exactly one of many racing processes migrates; the others open its
//!   result. The old entry is *superseded*: its lock is poisoned and a
//!   write committed, so old-build processes get `Err` from their next
//!   `lock()` (and `wait_for_change` wakes them); they should drop the
//!   handle and open the key again. A closure that panics, or a store with
//!   no room for the new entry (`StoreFull`), changes nothing.
//!
//!   ```
//!   use shmstore::{Shareable, Store};
//!
//!   #[derive(Shareable, Clone, Copy)]
//!   #[repr(C)]
//!   struct JobsV1 { done: u64 }
//!   #[derive(Shareable, Clone, Copy)]
//!   #[repr(C)]
//!   struct JobsV2 { done: u64, failed: u64 }
//!
//!   # let name = format!("doc-guide-migrate-{}", std::process::id());
//!   let store = Store::open_or_create(&name, 64 * 1024)?;
//!   let old = store.insert("jobs", JobsV1 { done: 3 })?;          // the old build's entry
//!   let new = store.get_or_migrate("jobs", JobsV2 { done: 0, failed: 0 },
//!       |v1: JobsV1| JobsV2 { done: v1.done, failed: 0 })?;
//!   assert_eq!(new.lock().unwrap().done, 3);
//!   assert!(old.lock().is_err());                                 // superseded
//!   # drop((old, new, store));
//!   # Store::unlink(&name)?;
//!   # Ok::<(), shmstore::Error>(())
//!   ```
//! - [`store.generation()`](crate::Store::generation) /
//!   [`store.wait_for_change(seen, timeout)`](crate::Store::wait_for_change)
//!   follow entries being created and removed; changes to values are
//!   followed on the entries.
//!
//! # Reading a store with read permission only
//!
//! [`StoreReader::open(name)`](crate::StoreReader::open) (or
//! [`SharedOptions::open_store_read_only`](crate::SharedOptions::open_store_read_only))
//! opens a store for reading only, as [`SharedReader`](crate::SharedReader)
//! opens a single value: mapped `PROT_READ`, so read permission on the
//! segment is enough (a store created with `SharedOptions::mode(0o640)`
//! for its group), and it takes none of the store's handle slots. It has
//! [`get::<T>(key)`](crate::StoreReader::get), which gives the entry as a
//! `SharedReader<T>` (snapshots and waits, no lock), `contains`, `entries`,
//! `len`, `generation`, `wait_for_change` and `check`. Its waits, and its
//! entries', need a store created with
//! [`wake_read_only(true)`](crate::SharedOptions::wake_read_only).
//!
//! ```
//! use shmstore::{SharedOptions, StoreReader};
//!
//! # let name = format!("doc-guide-store-reader-{}", std::process::id());
//! let store = SharedOptions::new().mode(0o640).create_store(&name, 64 * 1024)?;
//! store.insert::<u64>("jobs", 7)?;
//!
//! // In a process of the group:
//! let reader = StoreReader::open(&name)?;
//! let jobs = reader.get::<u64>("jobs")?;
//! assert_eq!(jobs.snapshot().unwrap(), 7);
//! store.remove("jobs")?;
//! assert!(jobs.snapshot().is_err());    // removed: never another entry's bytes
//! assert!(jobs.check().is_err());       // Error::NotFound
//! # drop((jobs, reader, store));
//! # shmstore::unlink(&name)?;
//! # Ok::<(), shmstore::Error>(())
//! ```
//!
//! A reader takes no lock: it reads the directory again when a change
//! overlapped its read, and an entry's handle notices that the entry was
//! removed (a `Store`'s handles keep a removed entry alive; a reader
//! cannot), as [Removed entries](crate::StoreReader#removed-entries) says.
//!
//! `cargo run --release --example store` runs three worker processes that
//! take jobs from a shared counter and keep per-worker statistics beside it
//! in one store, then a viewer process that lists and decodes the entries,
//! and checks that every job was taken exactly once (`-- view NAME --watch`
//! follows a store as entries come and go).
//!
//! What the store costs is in [costs](super::costs); how its directory and
//! heap are laid out and rebuilt after a crash, in
//! [`_design::store`](crate::_design::store).
