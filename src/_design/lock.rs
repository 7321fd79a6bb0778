//! The lock: a process-shared, crash-robust word inside every segment.
//!
//! The lock is one 64-bit word in the shared mapping, plus a sleeper count
//! and a poison record (32 bytes in all: see *Who poisoned it* below). Zero means unlocked, so the zeroed pages of
//! a new segment hold an unlocked lock with no initialisation step.
//!
//! # The word
//!
//! A held lock stores its owner's *identity* in the word:
//!
//! ```text
//!  63                    32 31 30        22 21            0
//! +------------------------+--+--+---------+---------------+
//! | owner start time (low) | W| V|  (zero) | owner thread id|
//! +------------------------+--+--+---------+---------------+
//! ```
//!
//! - the owner's kernel thread id (`gettid`, below 2^22 on Linux), so
//!   threads of one process exclude each other just as processes do;
//! - `W`, set while some thread may be asleep in the kernel on this lock;
//! - `V` ("watched"), set by a thread about to sleep until the value changes
//!   ([`Shared::wait_for_change`](crate::Shared::wait_for_change)); it may
//!   be set on a free lock too, and the next unlock clears it and reports it
//!   so that the caller wakes the watchers. Unlocks with no watcher pay
//!   nothing for this;
//! - the low 32 bits of the owner's start time (`/proc/.../stat` field 22),
//!   so a thread id that the kernel recycled after the owner died is never
//!   taken for the owner.
//!
//! Identity and lock state change in one compare-and-swap, so there is no
//! moment at which a lock is held by nobody anyone could check.
//!
//! # Fast path
//!
//! `lock` is one compare-and-swap from 0 to the caller's identity (cached
//! per thread); `unlock` is one compare-and-swap back to 0. Two atomic
//! read-modify-writes, no system call. Beside them, each thread notes the
//! address of every lock it takes in a thread-local list, and strikes it off
//! on unlock (a few plain instructions; see below); the guard loads the
//! poison cause once and records its holder with one store; it keeps the
//! write counter it read, so a write costs two stores and no load. The
//! guard's drop is inlined where it dies: anything unusual (a panic, locks
//! released out of order, a segment that time-stamps or wakes every commit,
//! a sleeper's or watcher's bit in the word) is one cold call. What each
//! part costs, in instructions, is in [costs](crate::_guide::costs).
//!
//! # Contended path
//!
//! Yield the CPU up to ten times, checking the word in between
//! (busy-waiting on the word slows the holder down: measured, it made
//! contended runs 1.5-3x slower), then announce a sleeper, set `W` and sleep
//! with a *shared* `FUTEX_WAIT` on the word's low half (std's and
//! parking_lot's locks use process-private waiting and deadlock across
//! processes). An unlock that sees `W` wakes one sleeper. A woken thread
//! that takes the lock sets `W` again only if others are still asleep, so an
//! uncontended stretch makes no wake calls at all.
//!
//! # Dead owners and poisoning
//!
//! Sleepers never sleep longer than 50 ms. A waiter that has seen the same
//! owner for that long asks the kernel whether the owner still runs
//! (`kill(tid, 0)`, then `/proc/TID/task/TID/stat`): no such thread, a
//! zombie, or a thread with another start time all mean dead. The waiter
//! then takes the lock over with a compare-and-swap (only one waiter can win
//! it) and sets the poison flag, which the typed layer reports as a
//! [`PoisonError`](std::sync::PoisonError), as `std::sync::Mutex` does for a
//! panic. The data the dead owner wrote stays as it left it. (These are
//! Linux's calls, in `sys/linux/thread.rs`; what macOS and FreeBSD offer
//! instead, and what a port would lose, is in [platforms](super::platforms).)
//!
//! A guard dropped while its thread panics sets the same flag. The flag
//! lives in the segment, so every process sees the poison until one calls
//! [`clear_poison`](crate::Shared::clear_poison). A write the dead owner
//! left unfinished (see [snapshots](super::seqlock)) becomes the new
//! holder's, committed when its guard drops.
//!
//! # Who poisoned it
//!
//! The flag is a cause code (0: not poisoned; 1 killed, 2 panicked, 3
//! superseded by a migration; any other value a peer wrote reads as
//! poisoned for an unknown reason), and beside it the lock keeps a record:
//! `holder`, `pid << 32 | tid` of the thread that last acquired the lock
//! while it was not poisoned (stored after acquiring, a plain store to the
//! cache line the acquiring compare-and-swap made this thread's), and
//! `poisoned_at`, when the poison was recorded. While the lock is poisoned
//! `holder` is left alone, so it names the poisoner. A waiter that takes
//! the lock over from a dead holder records it only if the lock was not
//! poisoned already (the first cause stays until cleared, as with std): the
//! recorded holder when its thread id is the dead word's, else the word's
//! thread id with the pid unknown. A panicking guard records its own
//! thread. A migration's supersede overrides any earlier cause. Clearing
//! sets the cause to 0 and leaves the rest, which means nothing then.
//! [`Shared::poison_info`](crate::Shared::poison_info) reads it.
//!
//! `std::sync::Mutex` and `parking_lot` deadlock across processes (their
//! sleepers park process-privately), and glibc's robust mutexes, which the
//! kernel hands over at once when their owner dies, differ in layout
//! between glibc versions and musl; this design needs neither, at the price
//! of the 50 ms.
//!
//! # This thread's identity in a lock it does not hold
//!
//! Thread ids and start times are world-readable in `/proc`, so another
//! process can write the identity of a thread of ours into a lock word.
//! Taken at its word, that would make the thread's next `lock` a relock (a
//! panic) and its snapshots wait for itself. So a word naming the calling
//! thread counts as this thread's only if the thread's list has the lock:
//! at this address, or at another address that reaches the same memory (the
//! same segment mapped twice; told apart through `/proc/self/maps`, only in
//! this rare case). Otherwise the word names no holder, like a dead
//! holder's: the lock is taken over, poisoned. A word naming *another* live
//! thread, of this process or any other, is a holder: waiting for it is
//! right, as for any holder.
//!
//! # Fork
//!
//! A process that `fork`s gets a new identity in the child through a
//! `pthread_atfork` handler, and an empty list of held locks. A guard the
//! child inherited (the parent held the lock when it forked) does nothing
//! when the child drops it: the lock, and any write in progress, stay the
//! parent's.
//!
//! # Limits
//!
//! - A dead owner is noticed by a waiter within about 50 ms, not at once as
//!   a kernel robust futex would; nobody notices while nobody waits.
//! - Thread ids only mean something within one PID namespace: segments
//!   record the namespace of their creator and refuse openers from another
//!   one ([`Error::OtherPidNamespace`](crate::Error::OtherPidNamespace)).
//! - Where `/proc` hides other users' processes, an owner that cannot be
//!   seen counts as alive (its lock is never stolen; it may then never
//!   recover).
//! - A raw `clone` system call would bypass the fork handler: a process must
//!   not hand a lock to a raw `clone()`d child.
//! - A peer with write access can always hold a lock: a word naming a live
//!   thread is a holder, whether that thread took the lock or a peer wrote
//!   its identity there, so `lock()` waits for it as it would for a peer
//!   that never unlocks (`try_lock_for()` gives up when its time is up).
//!
//! The model check of this protocol, and what it abstracts away, is
//! summarised in [reliability](super::reliability).
