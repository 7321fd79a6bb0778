//! Lock-free atomics: counters and statistics without any lock.
//!
//! A struct whose fields are all atomics (or arrays of them, or such
//! structs) is [`LockFree`](crate::LockFree), which the derive works out by
//! itself. A [`SharedAtomic<T>`](crate::SharedAtomic) hands it out as `&T`
//! without any lock, for the fastest counters and statistics:
//!
//! ```
//! use std::sync::atomic::{AtomicU64, Ordering};
//! use shmstore::{Shareable, Shared, SharedAtomic};
//!
//! #[derive(Shareable, Default)]
//! #[repr(C)]
//! struct Stats { requests: AtomicU64, errors: AtomicU64 }
//!
//! # let name = format!("doc-guide-atomics-{}", std::process::id());
//! let stats = SharedAtomic::<Stats>::open_or_create(&name, Stats::default())?;
//! stats.requests.fetch_add(1, Ordering::Relaxed);   // no lock, no system call
//!
//! let locked: Shared<Stats> = stats.into_shared();   // and back: `into_atomic()`
//! assert_eq!(locked.lock().unwrap().requests.load(Ordering::Relaxed), 1);
//! let stats = locked.into_atomic();
//! # drop(stats);
//! # shmstore::unlink(&name)?;
//! # Ok::<(), shmstore::Error>(())
//! ```
//!
//! [`Shared::into_atomic()`](crate::Shared::into_atomic) turns a handle into
//! one (and [`into_shared()`](crate::SharedAtomic::into_shared) back); a
//! struct with a plain field is a compile error there:
//!
//! ```compile_fail,E0277
//! # use std::sync::atomic::AtomicU64;
//! # use shmstore::{Shareable, Shared};
//! #[derive(Shareable, Default)]
//! #[repr(C)]
//! struct Mixed { hits: AtomicU64, plain: u64 }
//!
//! # fn f(s: Shared<Mixed>) {
//! let atomic = s.into_atomic();   // `u64` is not made of atomics
//! # }
//! ```
//!
//! A `SharedAtomic` has no `lock()`: a guard's `&mut T` next to lock-free
//! `&T`s in one process would be a data race. Updates through it do not
//! count as generations and wake nobody. Each atomic operation is
//! indivisible in every process that maps the segment; operations on
//! different fields are ordered only as their `Ordering`s say.
//! `cargo run --release --example counter -- --atomic` runs the
//! [comparison](crate::_guide::costs)'s counter this way.
