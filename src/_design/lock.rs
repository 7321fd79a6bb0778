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
//!  63                           32 31 30 29      22 21            0
//! +-------------------------------+--+--+----------+---------------+
//! |  incarnation (high 32 bits)   | W| V| inc. low | owner thread id|
//! +-------------------------------+--+--+----------+---------------+
//! ```
//!
//! - the owner's kernel thread id (`gettid`, below 2^22 on Linux), so
//!   threads of one process exclude each other just as processes do;
//! - the owner process's *incarnation*: 40 random bits the process draws
//!   when it first needs them (and a forked child draws anew), which name
//!   the process to every process that maps the segment, in whatever PID
//!   namespace (see *Who is alive* below);
//! - `W`, set while some thread may be asleep in the kernel on this lock;
//! - `V` ("watched"), set by a thread about to sleep until the value changes
//!   ([`Shared::wait_for_change`](crate::Shared::wait_for_change)); it may
//!   be set on a free lock too, and the next unlock that commits a write
//!   clears it and reports it so that the caller wakes the watchers (an
//!   unlock that commits nothing puts it back). Unlocks with no watcher pay
//!   nothing for this.
//!
//! Identity and lock state change in one compare-and-swap, so there is no
//! moment at which a lock is held by nobody anyone could check.
//!
//! # Fast path
//!
//! `lock` is one compare-and-swap from 0 to the caller's identity (cached
//! per thread); `unlock` is one swap of the word for 0, which gives back
//! what the word was: exactly the caller's identity is the usual case, and
//! then nothing is left to do. Two atomic read-modify-writes, no system
//! call. A word that was anything else goes to one cold call: a sleeper's
//! `W` is woken, a watcher's `V` reported (or put back), and a word that
//! names someone else (a peer wrote over it) is put back as it was, unless
//! a thread took the free lock in between. The swap costs about 5% less per
//! lock and unlock than the compare-and-swap from the caller's identity it
//! replaced (see [costs](crate::_guide::costs)). Beside them, each thread notes the
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
//! owner for that long asks whether the owner still runs (see *Who is
//! alive*). If not, the waiter takes the lock over with a compare-and-swap
//! (only one waiter can win it) and sets the poison flag, which the typed
//! layer reports as a [`PoisonError`](std::sync::PoisonError), as
//! `std::sync::Mutex` does for a panic. The data the dead owner wrote stays
//! as it left it.
//!
//! # Who is alive
//!
//! Every process that maps a segment holds an *open file description lock*
//! (`fcntl(F_OFD_SETLK)`) on one byte of the segment's object, far past its
//! end, at an offset given by its incarnation: a write lock if it maps the
//! segment for writing (only those can hold the segment's locks), a read
//! lock if it only reads. Byte-range locks past the end of a file change
//! nothing in it. The kernel drops the lock when the process dies, while
//! it exits, before it is a zombie, whatever PID namespace it ran in; a
//! waiter asks with `F_OFD_GETLK` through its own description of the same
//! object. So a holder is dead when:
//!
//! - its incarnation is this process's and its thread id is no running
//!   thread of this process (`/proc/self/task/TID`): a thread that ended
//!   holding the lock (a guard forgotten with `mem::forget`) is noticed at
//!   once by the other threads of its process;
//! - otherwise, no process holds its incarnation's byte for writing (a read
//!   lock there, which any reader could place, does not count).
//!
//! Each process keeps one description per object (a registry keyed by
//! device and inode), opened anew through `/proc/self/fd`, so a descriptor
//! a user hands to another process never carries this process's lock with
//! it, and a forked child replaces every description it inherited with a
//! fresh one in a fork handler: the parent's lock dies with the parent, not
//! with the last of its children. A System V segment, which has no
//! descriptor, has a *stand-in*: an empty file in /dev/shm named after the
//! IPC namespace and the segment's id, made by the segment's owner with its
//! permission bits, and removed with the segment. (These are Linux's calls,
//! in `sys/linux/presence.rs`; what macOS and FreeBSD offer instead is in
//! [platforms](super::platforms).)
//!
//! ## Why this mechanism
//!
//! The mechanism had to work across PID namespaces, where thread ids and
//! `/proc` mean nothing: containers of one Kubernetes pod share IPC and
//! /dev/shm but each has its own PID namespace, as do Docker containers
//! joined with `--ipc=container:NAME`. Three candidates, measured on the
//! 2-CPU machine the benchmarks run on:
//!
//! | candidate | across namespaces | cost of asking | cost on the fast path | a peer's bytes |
//! |---|---|---|---|---|
//! | `/proc/TID/task/TID/stat` and `kill(tid, 0)` (before) | no: ids are per namespace | 2.0 µs + 0.16 µs | none | harmless |
//! | the kernel's robust futex list (`set_robust_list`) | yes | none (the kernel marks the word) | list insert and removal on every lock and unlock | unsafe: see below |
//! | open file description locks | yes | 0.15 µs (`F_OFD_GETLK`) | none | harmless |
//!
//! The robust list is what glibc's robust mutexes use: at a thread's exit
//! the kernel walks a list of held locks the thread registered and marks
//! each word `FUTEX_OWNER_DIED`. A thread has only one list, and glibc
//! registers it for its own mutexes, so shmstore's locks would have to be
//! nodes of glibc's list, in glibc's layout, *in the shared segment*: glibc
//! follows and writes through those nodes' pointers when it locks and
//! unlocks its own mutexes, so a peer that writes the segment could make
//! this process write wherever it chose, which the crate's first rule
//! forbids (nothing a peer writes may cause undefined behaviour). It would
//! also tie the word to the kernel's format (the thread id alone in 30
//! bits, which cannot be told apart across namespaces) and add list
//! operations to the uncontended path. File description locks cost
//! nothing until someone asks, answer in 0.15 µs (13 times faster than the
//! `/proc` read they replace), and a peer can only place locks of its own,
//! which at worst makes a dead holder look alive (as a peer that writes a
//! live holder's identity can already do). Opening a segment costs one
//! `open` of `/proc/self/fd/N` and one `fcntl` more (1.4 µs), and a process
//! keeps one descriptor per segment it has open (a memfd handle lends that
//! same descriptor for sharing, so it still has one).
//!
//! The counter's uncontended lock, increment and unlock took 11.8 ns with
//! this mechanism and 12.0 ns without it, in one run (2 and 4 processes:
//! 26.9 and 16.3 ns against 25.8 and 15.7, within the runs' spread); a
//! holder killed in one PID namespace is taken over from another within the
//! same 50 ms check interval as before (tests: `tests/shmstore/namespaces.rs`).
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
//! between glibc versions and musl (and see *Why this mechanism*); this
//! design needs neither, at the price of the 50 ms.
//!
//! # This thread's identity in a lock it does not hold
//!
//! Lock words are world-readable to whoever maps the segment, so another
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
//! `pthread_atfork` handler (a new incarnation, drawn when the child first
//! needs one, and fresh descriptions of every segment: see *Who is
//! alive*), and an empty list of held locks. A guard the child inherited
//! (the parent held the lock when it forked) does nothing when the child
//! drops it: the lock, and any write in progress, stay the parent's.
//!
//! # Limits
//!
//! - A dead owner is noticed by a waiter within about 50 ms, not at once as
//!   a kernel robust futex would; nobody notices while nobody waits.
//! - A thread of another process that ends holding a lock while its
//!   process lives (a forgotten guard) is a holder until its process ends
//!   or closes the segment: other processes cannot see threads across PID
//!   namespaces. Within its own process it is noticed at once.
//! - Two processes draw the same 40-bit incarnation once in 2^40; a process
//!   that finds its incarnation's byte taken in a segment draws again
//!   (before it holds any lock), or, if it already uses other segments,
//!   fails to open that one (`Error::Io`).
//! - A process that receives a memfd's descriptor and keeps it, or maps it
//!   itself with `mmap`, keeps the sender's presence alive while it holds
//!   it ([`Shared::from_fd`](crate::Shared::from_fd) maps a description of
//!   its own and closes the one it was given).
//! - Removing a System V segment's stand-in from /dev/shm while the segment
//!   is in use (only its owner or root can) splits its users into two
//!   groups that cannot see each other's liveness: don't.
//! - A raw `clone` system call would bypass the fork handler: a process must
//!   not hand a lock to a raw `clone()`d child.
//! - A peer with write access can always hold a lock: a word naming a live
//!   process's incarnation is a holder, whether that process took the lock
//!   or a peer wrote its identity there, so `lock()` waits for it as it
//!   would for a peer that never unlocks (`try_lock_for()` gives up when
//!   its time is up).
//!
//! The model check of this protocol, and what it abstracts away, is
//! summarised in [reliability](super::reliability).
