//! Handles: creating, opening and removing a segment, and its lock.
//!
//! A [`Shared<T>`](crate::Shared) is a `T` in shared memory behind a lock
//! that works across processes. Three ways to get one, and one to remove
//! the name:
//!
//! ```
//! use shmstore::{Error, Shareable, Shared};
//!
//! #[derive(Shareable, Clone, Copy, Default)]
//! #[repr(C)]
//! struct Counter { value: u64, last_pid: u32, _pad: u32 }
//!
//! # let name = format!("doc-guide-handles-{}", std::process::id());
//! let a = Shared::<Counter>::create(&name, Counter::default())?;   // a new segment
//! let b = Shared::<Counter>::open(&name)?;                         // an existing one
//! let c = Shared::<Counter>::open_or_create(&name, Counter::default())?;  // race-free
//!
//! assert!(matches!(Shared::<Counter>::create(&name, Counter::default()),
//!                  Err(Error::AlreadyExists { .. })));
//! a.lock().unwrap().value += 1;
//! assert_eq!(b.lock().unwrap().value, 1);       // one Counter, three handles
//!
//! shmstore::unlink(&name)?;             // open handles keep working
//! c.lock().unwrap().value += 1;
//! assert!(matches!(Shared::<Counter>::open(&name), Err(Error::NotFound { .. })));
//! # Ok::<(), shmstore::Error>(())
//! ```
//!
//! - Names: `"my-counter"` and `"/my-counter"` are the same object
//!   (`/dev/shm/my-counter`). Empty names, names with another `/`, `.`,
//!   `..` and names over [`MAX_SEGMENT_NAME_LEN`](crate::MAX_SEGMENT_NAME_LEN) (255) bytes
//!   are [`Error::InvalidName`](crate::Error::InvalidName).
//! - `Shared<T>` is `Send + Sync`: share one handle between threads as you
//!   would an `Arc<Mutex<T>>`; the lock excludes threads of one process as
//!   well as other processes.
//! - Dropping a handle unmaps it. The segment lives until its name is
//!   unlinked and the last handle is gone, as files do.
//! - Locking again from the thread that holds the lock panics (it would
//!   deadlock), also through a second handle on the same segment.
//!
//! # Options
//!
//! [`SharedOptions`](crate::SharedOptions) sets what differs from the
//! defaults, as [`std::fs::OpenOptions`] does:
//!
//! ```
//! # use shmstore::{Shareable, SharedOptions};
//! # #[derive(Shareable, Clone, Copy, Default)]
//! # #[repr(C)]
//! # struct Counter { value: u64, last_pid: u32, _pad: u32 }
//! # let name = format!("doc-guide-options-{}", std::process::id());
//! let c = SharedOptions::new()
//!     .mode(0o640)                 // exactly these bits, whatever the umask (default 0o600)
//!     .remove_on_drop(true)        // unlink the name when this handle is dropped
//!     .allow_foreign_owner(false)  // the default: refuse segments owned by another user
//!     .open_or_create(&name, Counter::default())?;
//! # drop(c);
//! # Ok::<(), shmstore::Error>(())
//! ```
//!
//! [`wake_read_only`](crate::SharedOptions::wake_read_only) is explained
//! with [readers](super::readers),
//! [`record_change_time`](crate::SharedOptions::record_change_time) with
//! [the command](super::command).
//!
//! # Locking and poisoning
//!
//! ```
//! # use shmstore::{Shareable, Shared};
//! # #[derive(Shareable, Clone, Copy, Default)]
//! # #[repr(C)]
//! # struct Counter { value: u64, last_pid: u32, _pad: u32 }
//! # let name = format!("doc-guide-lock-{}", std::process::id());
//! use std::time::Duration;
//!
//! let c = Shared::<Counter>::create(&name, Counter::default())?;
//! drop(c.lock().unwrap());                                 // LockResult<SharedGuard<Counter>>
//! drop(c.try_lock().unwrap());                             // TryLockResult, never waits
//! drop(c.try_lock_for(Duration::from_secs(1)).unwrap());   // waits at most 1 s
//!
//! // A holder that panics poisons the lock, as with std::sync::Mutex.
//! std::thread::scope(|s| {
//!     s.spawn(|| {
//!         let _g = c.lock().unwrap();
//!         panic!("while holding the lock");
//!     }).join().unwrap_err();
//! });
//! assert!(c.is_poisoned());
//! let g = c.lock().unwrap_or_else(|poisoned| poisoned.into_inner());  // a working guard
//! drop(g);
//! c.clear_poison();                                      // for every process
//! assert!(c.lock().is_ok());
//! # shmstore::unlink(&name)?;
//! # Ok::<(), shmstore::Error>(())
//! ```
//!
//! Poisoning follows [`std::sync::Mutex`]: after a holder panicked or died,
//! every `lock()` returns `Err(PoisonError)` until
//! [`clear_poison`](crate::Shared::clear_poison); `into_inner()` gives a
//! working guard over what the holder left, and
//! [`poison_info`](crate::Shared::poison_info) says who poisoned it, how
//! and when. Handles opened with
//! [`SharedOptions::poisoning(false)`](crate::SharedOptions::poisoning)
//! take such a lock over and clear the poison themselves, for values any
//! partial write of which is acceptable. A holder killed by any signal
//! (SIGKILL included) or that exited while holding the lock is noticed by
//! the next locker within about 50 ms, also by a waiter already asleep in
//! `lock()`. [`try_lock`](crate::Shared::try_lock) checks whether a holder
//! is alive, which takes a few microseconds: do not spin on it, use
//! [`try_lock_for`](crate::Shared::try_lock_for).
//!
//! A `Shared<T>` also offers [`is_locked`](crate::Shared::is_locked),
//! [`holder_tid`](crate::Shared::holder_tid) and
//! [`check`](crate::Shared::check) (whether another process shrank the
//! segment under this handle; see [`_design::segment`](crate::_design::segment)).
