//! Snapshots and waiting: the write counter beside each lock.
//!
//! Next to the lock sits a 64-bit sequence counter `seq` (and a word of
//! flags). A lock holder that is about to change the value (the first
//! `DerefMut` of its guard) makes `seq` odd; dropping the guard makes it
//! even again. So `seq / 2` counts committed writes: that is the
//! *generation* ([`Shared::generation`](crate::Shared::generation)), and an
//! odd `seq` means a write is in progress.
//!
//! # Snapshots
//!
//! Snapshots take no lock and write nothing (a read-only mapping is
//! enough): read `seq`; if it is even, copy the value with volatile loads,
//! then read `seq` again; equal means no write overlapped the copy. An odd
//! or changed `seq` means retry. Writers never wait for readers.
//!
//! ```
//! use shmstore::{Shareable, Shared};
//!
//! #[derive(Shareable, Clone, Copy, Default)]
//! #[repr(C)]
//! struct Pair { a: u64, b: u64 }   // a writer keeps a == b
//!
//! # let name = format!("doc-design-seqlock-{}", std::process::id());
//! let pair = Shared::<Pair>::create(&name, Pair::default())?;
//! std::thread::scope(|s| {
//!     s.spawn(|| for i in 1..=10_000 {
//!         let mut g = pair.lock().unwrap();
//!         g.a = i;
//!         g.b = i;
//!     });
//!     for _ in 0..10_000 {
//!         let p = pair.snapshot().unwrap();   // never half a write
//!         assert_eq!(p.a, p.b);
//!     }
//! });
//! assert_eq!(pair.generation(), 10_000);
//! # shmstore::unlink(&name)?;
//! # Ok::<(), shmstore::Error>(())
//! ```
//!
//! The copy reads memory that another process may be writing at the same
//! moment, with volatile loads (and, for large values on x86-64, one
//! `rep movsb` in inline assembly), which the compiler neither elides,
//! merges nor invents. A copy that raced with a write is thrown away, and
//! even a torn copy is a valid `T`, since every byte pattern of a
//! [`Shareable`](crate::Shareable) type is. What remains is the known gap
//! of seqlocks in Rust: the language's memory model does not define a
//! non-atomic read that races with a write, and offers no per-byte atomic
//! copy yet; volatile loads close the gap in practice (they compile to plain
//! loads, as relaxed atomic loads would), not in the model. The counter's
//! loads and stores, and the fences around the copy that make this hold on
//! ARM as on x86, are in [memory ordering](super::ordering).
//!
//! # Waiting
//!
//! Waiting sleeps in the kernel on `seq` (a shared futex on its low 32
//! bits) until it changes. A writer must know that somebody sleeps, or
//! every write would cost a system call: a watcher with write access sets
//! the `V` bit in the [lock word](super::lock) before sleeping, and the
//! unlock that commits a write clears it and wakes every watcher; unlocks
//! with no watcher pay nothing. Read-only handles cannot write that bit, so
//! a segment whose creator asked for it
//! ([`SharedOptions::wake_read_only`](crate::SharedOptions::wake_read_only))
//! makes every committed write wake the futex, watched or not.
//!
//! Each sleep lasts at most 50 ms before the waiter looks again: the model
//! check found a rare interleaving of marking and unlocking in which a
//! watcher could miss the wake of a committed write, and with the 50 ms a
//! watcher still sees every committed write, at most that much later.
//!
//! # Crashes
//!
//! A holder that dies mid-write leaves `seq` odd. The next locker, which
//! takes the lock over (poisoned), adopts the unfinished write and commits
//! it when its guard drops. Until then a snapshot waits; once it sees that
//! the holder is dead it returns what is there, reported as poisoned, since
//! no lock holder will finish that write for it. It checks the writer's
//! liveness as soon as it starts napping (after spinning and yielding), so
//! a writer that is dead already is reported within a few ms, then every
//! 50 ms, so one that dies while it waits is reported within about 50 ms.
