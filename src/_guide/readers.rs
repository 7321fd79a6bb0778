//! Readers and watchers: lock-free snapshots and waiting for changes.
//!
//! One process owns a configuration or live state; many processes read it
//! constantly. Readers never take the lock, never slow the writer, never see
//! half a write, and sleep instead of polling:
//!
//! ```
//! use std::time::Duration;
//! use shmstore::{Shareable, SharedOptions, SharedReader};
//!
//! #[derive(Shareable, Clone, Copy, Default, Debug)]
//! #[repr(C)]
//! struct Config { max_connections: u32, port: u32 }
//!
//! # let name = format!("doc-guide-readers-{}", std::process::id());
//! // The writer: group-readable, and read-only handles may wait for changes.
//! let config = SharedOptions::new().mode(0o640).wake_read_only(true)
//!     .remove_on_drop(true)
//!     .open_or_create(&name, Config::default())?;
//!
//! // A reader, in another process; needs read permission only.
//! let reader = SharedReader::<Config>::open(&name)?;   // O_RDONLY + PROT_READ
//! let (now, generation) = reader.snapshot_with_generation().unwrap();  // lock-free copy
//! assert_eq!(now.max_connections, 0);
//!
//! std::thread::scope(|s| {
//!     s.spawn(|| config.lock().unwrap().max_connections = 250);  // one committed write
//!     // Sleeps in the kernel until a write is committed, in any process.
//!     let next = reader.wait_for_change(generation, Duration::from_secs(30))?;
//!     assert_eq!(next, Some(generation + 1));
//!     assert_eq!(reader.snapshot().unwrap().max_connections, 250);
//!     Ok::<(), shmstore::Error>(())
//! })?;
//! # Ok::<(), shmstore::Error>(())
//! ```
//!
//! # Snapshots
//!
//! [`snapshot()`](crate::Shared::snapshot) (on `Shared` and
//! [`SharedReader`](crate::SharedReader)) returns a consistent copy without
//! the lock: a sequence counter beside the lock turns odd at a guard's first
//! `DerefMut` and even when the guard drops; the reader copies with volatile
//! loads between two reads of the counter and retries if a write
//! overlapped. Writers never wait for readers; a snapshot waits while a
//! write is in progress, so keep the writing part of a guard short.
//!
//! A snapshot returns `Err(PoisonError)` (with the copy inside) when the
//! lock is poisoned, or when a writer died mid-write and nobody has locked
//! since. [`snapshot_into(&mut value)`](crate::Shared::snapshot_into) copies
//! into a value you already have: for large values and hot loops it costs
//! what a `memcpy` does, where the by-value `snapshot()` also pays for
//! moving its result ([figures](super::costs)).
//!
//! # Generations and waiting
//!
//! [`generation()`](crate::Shared::generation) counts committed writes: a
//! guard counts when it was dereferenced mutably, so `lock()` just to read
//! changes nothing.
//! [`wait_for_change(seen, timeout)`](crate::Shared::wait_for_change)
//! returns the new generation as soon as a write is committed in any
//! process (a futex on the counter, not a poll), or `Ok(None)` on timeout.
//! Its return type is `Result<Option<u64>>` on every handle
//! ([`Shared`](crate::Shared), [`SharedReader`](crate::SharedReader),
//! [`Store`](crate::Store)): `Err` means the handle cannot watch (a segment
//! shrunk under it; for a reader, one that does not wake read-only
//! watchers), `None` that nothing changed in time.
//! Each sleep lasts at most 50 ms before the waiter looks again, so a wake
//! lost in a rare interleaving of marking and unlocking (found by the model
//! check, see [`_design::reliability`](crate::_design::reliability)) delays
//! a waiter by at most that. Several commits during one wait are one
//! change: read the value after waking.
//!
//! In async code, await [`changed(seen)`](crate::Shared::changed) (on
//! every handle above): a plain `std::future::Future`, so any executor,
//! with the errors of `wait_for_change` and no timeout of its own (wrap it
//! in your runtime's). No thread waits per future: one background thread
//! per 127 awaited counters of the process (futures on one counter share
//! it) sleeps on all of them at once (`futex_waitv`, Linux 5.16 and later;
//! before that, a thread per awaited counter) and wakes the tasks whose
//! generation moved. Dropping a
//! future unregisters it. With the feature `stream`,
//! [`changes(seen)`](crate::Shared::changes) is a `futures_core::Stream`
//! of generations. Its cost against the blocking wait is in
//! [`_guide::costs`](crate::_guide::costs). From `examples/async_watch.rs`,
//! reader tasks under tokio following a writer in another process:
//!
//! ```no_run
//! # use std::sync::Arc;
//! # use shmstore::Shared;
//! # async fn readers(shared: Arc<Shared<u64>>) -> shmstore::Result<()> {
//! for task in 0..4 {
//!     let shared = shared.clone();
//!     let mut seen = shared.generation();
//!     tokio::spawn(async move {
//!         loop {
//!             seen = shared.changed(seen).await?;
//!             println!("task {task}: {:?}", shared.snapshot());
//!         }
//!         #[allow(unreachable_code)]
//!         Ok::<_, shmstore::Error>(())
//!     });
//! }
//! # Ok(())
//! # }
//! ```
//!
//! ```
//! # use shmstore::Shared;
//! # let name = format!("doc-guide-generation-{}", std::process::id());
//! let n = Shared::<u64>::create(&name, 0)?;
//! assert_eq!(n.generation(), 0);
//! let _ = *n.lock().unwrap();           // read only: no write committed
//! assert_eq!(n.generation(), 0);
//! *n.lock().unwrap() += 1;               // a mutable dereference: one commit
//! assert_eq!(n.generation(), 1);
//! assert_eq!(n.wait_for_change(0, std::time::Duration::ZERO)?, Some(1));  // at once
//! # shmstore::unlink(&name)?;
//! # Ok::<(), shmstore::Error>(())
//! ```
//!
//! Waking costs writers nothing when nobody waits: a waiter with write
//! access sets a "watched" bit in the lock word, and only the unlock that
//! commits a write while the bit is set makes the wake system call. A
//! read-only handle cannot set that bit, so its `wait_for_change` works on
//! segments created with
//! [`wake_read_only(true)`](crate::SharedOptions::wake_read_only), whose
//! every committed write makes one `FUTEX_WAKE`; on others it returns
//! [`Error::NotWatchable`](crate::Error::NotWatchable).
//!
//! # The read-only handle
//!
//! [`SharedReader<T>`](crate::SharedReader) opens with read permission only
//! (`O_RDONLY`, `PROT_READ`; System V `SHM_RDONLY`), so nothing it does can
//! change the segment. It has `snapshot`, `generation`, `wait_for_change`,
//! `is_poisoned`, and no `lock()`:
//!
//! ```compile_fail,E0599
//! # fn f(reader: shmstore::SharedReader<u64>) {
//! let g = reader.lock();   // no such method: a reader cannot write
//! # }
//! ```
//!
//! The same checks as `open` apply; a segment owned by another user, the
//! usual case for a group reader, needs
//! `SharedOptions::new().allow_foreign_owner(true).open_read_only(..)`.
//!
//! `examples/config.rs`: a writer changes a config struct (strings, numbers,
//! a list, flags) from stdin or on a timer; reader processes print every
//! new version. `cargo run --release --example config` runs a writer and
//! three readers.
//!
//! How snapshots and waking work, and why a snapshot is never torn, is in
//! [`_design::seqlock`](crate::_design::seqlock).
