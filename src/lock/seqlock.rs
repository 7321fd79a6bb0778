//! The commit counter beside each lock ([`Versions`]): lock-free snapshots
//! that are never torn, generations, and waiting for changes.
//!
//! The design and why it is sound: `shmstore::_design::seqlock`
//! (src/_design/seqlock.rs).

use std::sync::atomic::{fence, AtomicU32, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use std::mem::MaybeUninit;

use crate::lock::{RawLock, Watchers, CHECK_INTERVAL};
use crate::sys::futex;
use crate::sys::racy;
use crate::types::shareable::Shareable;

/// Flag: every committed write wakes the futex, for read-only watchers.
pub(crate) const WAKE_ALL: u32 = 1;
/// Flag: every committed write records the time (`changed`), for tools.
pub(crate) const TIMED: u32 = 2;

/// The sequence counter and flags, 32 bytes after the lock (right after it).
#[repr(C)]
#[derive(Debug)]
pub(crate) struct Versions {
    seq: AtomicU64,
    flags: AtomicU32,
    /// When the last write was committed, in seconds since the Unix epoch
    /// (0: never, or not recorded), if the segment records it ([`TIMED`]).
    changed: AtomicU32,
}

/// What [`Versions::release_plain`] left to do.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Rest {
    /// Nothing: the write (if any) is committed and the lock released.
    Done,
    /// Everything: the segment time stamps or wakes every commit, and
    /// this holder wrote (nothing is committed or released yet).
    Flagged,
}

/// What a lock-free read found.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Read {
    /// A copy no write overlapped, of this generation.
    Clean(u64),
    /// A copy taken while a write that its dead writer left unfinished was
    /// pending (so possibly torn); the last committed generation.
    Interrupted(u64),
}

impl Versions {
    /// `seq`, with acquire ordering: a relaxed load and an acquire fence,
    /// which read-only mappings allow (see `Mapping::atomic_u32`).
    #[inline(always)]
    fn seq_acquire(&self) -> u64 {
        let s = self.seq.load(Ordering::Relaxed);
        fence(Ordering::Acquire);
        s
    }

    /// The counter's word, which commits wake (async waiters sleep on it).
    pub(crate) fn futex_word(&self) -> &AtomicU64 {
        &self.seq
    }

    /// The sequence counter (odd while a write is in progress), acquired.
    pub(crate) fn seq_now(&self) -> u64 {
        self.seq_acquire()
    }

    /// Sets generation 0 and `flags`, in a segment being initialised.
    pub(crate) fn reset(&self, flags: u32) {
        self.seq.store(0, Ordering::Relaxed);
        self.flags.store(flags, Ordering::Relaxed);
        self.changed.store(0, Ordering::Relaxed);
    }

    /// The number of committed writes (a write in progress not counted).
    #[inline]
    pub(crate) fn generation(&self) -> u64 {
        self.seq_acquire() >> 1
    }

    /// The sequence counter itself (odd while a write is in progress).
    #[cfg(feature = "mirror")]
    pub(crate) fn raw_seq(&self) -> u64 {
        self.seq_acquire()
    }

    /// One try at a copy that no write overlapped, for what this process
    /// reads as bytes (the mirror's values, `inspect`'s values and store
    /// directories): if no write is in progress, runs `copy`, which must
    /// read with racy loads ([`racy`](crate::sys::racy)), and returns the
    /// generation it copied if no write began meanwhile; `None` if the copy
    /// must be thrown away.
    #[inline]
    pub(crate) fn copy_quiet(&self, copy: impl FnOnce()) -> Option<u64> {
        let s1 = self.seq_acquire();
        if s1 & 1 != 0 {
            return None;
        }
        copy();
        // Orders the copy's loads before the second load of `seq`.
        fence(Ordering::Acquire);
        (self.seq.load(Ordering::Relaxed) == s1).then_some(s1 >> 1)
    }

    /// The sequence counter (odd while a write is in progress), loaded
    /// after every load this thread made before the call: what a reader
    /// compares with the count it started from once it has read what the
    /// counter guards.
    pub(crate) fn seq_after_reads(&self) -> u64 {
        // Orders the caller's earlier loads before the load of `seq`.
        fence(Ordering::Acquire);
        self.seq_acquire()
    }

    /// The counter as its lock's holder sees it (odd: a write is in
    /// progress, or was left unfinished by a holder that died). Only
    /// meaningful to the lock holder, who keeps it for
    /// [`begin_write`](Versions::begin_write) and
    /// [`end_write`](Versions::end_write): nobody else writes the counter
    /// while the lock is held.
    #[inline(always)]
    pub(crate) fn seq_held(&self) -> u64 {
        // Relaxed: read after the lock's acquire, which shows the last
        // holder's commit (made before its releasing unlock).
        self.seq.load(Ordering::Relaxed)
    }

    /// Whether every committed write must wake the futex.
    #[inline]
    pub(crate) fn wakes_all(&self) -> bool {
        self.flags.load(Ordering::Relaxed) & WAKE_ALL != 0
    }

    /// Marks a write as begun: stores `odd`, the counter the holder read
    /// ([`seq_held`](Versions::seq_held)) plus one. Called by the lock
    /// holder only, before its first store to the value.
    #[inline(always)]
    pub(crate) fn begin_write(&self, odd: u64) {
        debug_assert!(odd & 1 == 1);
        self.seq.store(odd, Ordering::Relaxed);
        // Orders the odd `seq` before the stores to the value that follow.
        fence(Ordering::Release);
    }

    /// Commits the write begun by [`begin_write`](Versions::begin_write)
    /// (or adopted from a dead holder), whose odd counter is `odd`. Called
    /// by the lock holder only.
    ///
    /// Returns the flags, for the caller to see whether it must wake.
    #[inline(always)]
    fn end_write(&self, odd: u64) -> u32 {
        let flags = self.flags.load(Ordering::Relaxed);
        if flags & TIMED != 0 {
            self.stamp();
        }
        self.seq.store(odd.wrapping_add(1), Ordering::Release);
        flags
    }

    #[cold]
    #[inline(never)]
    fn stamp(&self) {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs() as u32);
        self.changed.store(now, Ordering::Relaxed);
    }

    /// When the last write was committed (seconds since the Unix epoch),
    /// if the segment records it.
    pub(crate) fn changed(&self) -> Option<u32> {
        let t = self.changed.load(Ordering::Relaxed);
        (self.flags.load(Ordering::Relaxed) & TIMED != 0 && t != 0).then_some(t)
    }

    /// Releases `lock`, held by `me`, committing the write this holder
    /// began if `seq` (the counter as the holder keeps it) is odd, and wakes
    /// the watchers that must know: those who marked the lock word, or every
    /// one if the segment wakes read-only watchers. What every guard does
    /// when it drops (in two steps on its usual path, see `Held`'s drop).
    ///
    /// `poison` (the holder is panicking) poisons the lock first, as
    /// `std::sync::Mutex` does. A guard that a forked child inherited does
    /// nothing, whether or not it panics: the lock and the write in
    /// progress are its parent's, whose thread still holds them.
    pub(crate) fn unlock(&self, lock: &RawLock, me: u64, seq: u64, poison: bool) {
        if !lock.strike_off() {
            return;
        }
        if poison {
            lock.poison();
        }
        let rest = self.release_plain(lock, me, seq);
        if rest != Rest::Done {
            self.release_rest(lock, me, seq, rest);
        }
    }

    /// The usual rest of [`unlock`](Versions::unlock) once the lock is
    /// struck off the thread's list (and poisoned if it had to be): commits
    /// the write if `seq` is odd and releases the lock, unless there is
    /// more to do; then [`release_rest`](Versions::release_rest) does it.
    ///
    /// Always inlined: what it costs is a test of `seq`, one load of the
    /// flags and the commit's store if it is odd, and the unlocking swap.
    /// Time stamps and wake-ups are left to the cold rest, and a word that
    /// others marked (`W`, `V`) to a cold call here.
    #[inline(always)]
    pub(crate) fn release_plain(&self, lock: &RawLock, me: u64, seq: u64) -> Rest {
        let wrote = seq & 1 != 0;
        // Nothing to stamp or wake for every commit: the usual case.
        if wrote && self.flags.load(Ordering::Relaxed) != 0 {
            return Rest::Flagged;
        }
        if wrote {
            // `end_write` without flags to act on.
            self.seq.store(seq.wrapping_add(1), Ordering::Release);
        }
        let old = lock.release_swap();
        if old != me {
            self.release_marked(lock, old, me, seq);
        }
        Rest::Done
    }

    /// The rest of a release whose swap gave back `old`, a word others
    /// marked (`W`, `V`) or not `me`'s (see [`RawLock::release_marked`]).
    #[cold]
    #[inline(never)]
    fn release_marked(&self, lock: &RawLock, old: u64, me: u64, seq: u64) {
        let watchers = lock.release_marked(old, me, seq & 1 != 0);
        self.wake_watchers(watchers, seq, 0);
    }

    /// What [`release_plain`](Versions::release_plain) left to do, which it
    /// said (never [`Rest::Done`]).
    #[cold]
    #[inline(never)]
    pub(crate) fn release_rest(&self, lock: &RawLock, me: u64, seq: u64, rest: Rest) {
        let wrote = seq & 1 != 0;
        match rest {
            Rest::Done => {}
            Rest::Flagged => {
                let flags = self.end_write(seq);
                self.wake_watchers(lock.release_watchers(me, wrote), seq, flags);
            }
        }
    }

    /// Wakes the watchers if `watchers` (what the release of a guard that
    /// kept the counter `seq` found) or the segment's `flags` say so.
    fn wake_watchers(&self, watchers: Watchers, seq: u64, flags: u32) {
        let wake = match watchers {
            Watchers::None => false,
            Watchers::Wake => true,
            // This holder committed nothing: the counter is still `seq`
            // unless another holder committed since (see `Watchers`).
            Watchers::Restored => self.seq.load(Ordering::Relaxed) != seq,
        };
        if wake || flags & WAKE_ALL != 0 {
            self.wake();
        }
    }

    /// Wakes every thread asleep in [`wait`](Versions::wait).
    #[cold]
    #[inline(never)]
    pub(crate) fn wake(&self) {
        futex::wake(&self.seq, i32::MAX);
    }

    /// Copies the `T` at `src` into `out` while no write is in progress,
    /// retrying until a copy is clean (see the module docs). Never writes to
    /// shared memory. On return every byte of `out` is written.
    ///
    /// # Safety
    ///
    /// `src` is aligned for `T` and valid for reads for the whole call (it
    /// points at the value guarded by `self`, inside a live mapping).
    #[inline(always)]
    pub(crate) unsafe fn read<T: Shareable>(
        &self,
        lock: &RawLock,
        src: *const T,
        out: &mut MaybeUninit<T>,
    ) -> Read {
        // SAFETY: passed on from the caller.
        match unsafe { self.try_read(src, out) } {
            Ok(generation) => Read::Clean(generation),
            // SAFETY: passed on from the caller.
            Err(_) => unsafe { self.read_slow(lock, src, out) },
        }
    }

    /// One attempt: the generation of a clean copy in `out`, or the `seq`
    /// seen when a write was in progress or overlapped the copy.
    ///
    /// # Safety
    ///
    /// As for `read`.
    #[inline(always)]
    unsafe fn try_read<T: Shareable>(
        &self,
        src: *const T,
        out: &mut MaybeUninit<T>,
    ) -> Result<u64, u64> {
        let s1 = self.seq_acquire();
        if s1 & 1 != 0 {
            return Err(s1);
        }
        // SAFETY: `src` is valid (the caller's promise) and `out` is a
        // separate, writable `T`.
        unsafe { racy::copy_into(src, out.as_mut_ptr()) };
        // Orders the copy's loads before the second load of `seq`.
        fence(Ordering::Acquire);
        if self.seq.load(Ordering::Relaxed) == s1 {
            Ok(s1 >> 1)
        } else {
            Err(s1)
        }
    }

    /// [`read`](Versions::read) when a write was in progress or overlapped.
    ///
    /// # Safety
    ///
    /// As for `read`.
    #[cold]
    #[inline(never)]
    unsafe fn read_slow<T: Shareable>(
        &self,
        lock: &RawLock,
        src: *const T,
        out: &mut MaybeUninit<T>,
    ) -> Read {
        let mut busy = 0u32;
        let mut since: Option<Instant> = None;
        loop {
            // SAFETY: as in `read`.
            let s1 = match unsafe { self.try_read(src, out) } {
                Ok(generation) => return Read::Clean(generation),
                // A write overlapped the copy and is done: copy again.
                Err(s1) if s1 & 1 == 0 => continue,
                Err(s1) => s1,
            };
            // A write is in progress: writes are short, so spin briefly,
            // then give the CPU away (the writer may be waiting for it),
            // then nap; check that the writer lives as soon as the naps
            // begin (a writer already dead is reported in a few ms), then
            // every CHECK_INTERVAL (one that dies meanwhile, within ~50 ms).
            busy += 1;
            if busy < 32 {
                std::hint::spin_loop();
                continue;
            }
            if busy == 32 && lock.held_by_me() {
                panic!("shmstore: snapshot() called by the thread that is writing this value through its lock guard (it would wait for itself); drop the guard first, or read through it");
            }
            if busy < 128 {
                std::thread::yield_now();
                continue;
            }
            futex::wait(&self.seq, s1 as u32, Duration::from_millis(1));
            let now = Instant::now();
            let due = match since {
                None => true,
                Some(last) => now.duration_since(last) >= CHECK_INTERVAL,
            };
            if due {
                since = Some(now);
                // The counter is loaded again after the lock word: a writer
                // that committed and unlocked between the first load and
                // the lock check was not interrupted (found by the model
                // check, tests/shmstore/reliability/model.rs). "After" must
                // hold on weakly ordered CPUs too: the lock word is loaded
                // relaxed, so an acquire fence comes between it and the
                // second load (`seq_after_reads`); a word found free by an
                // unlock's release then shows that unlock's commit.
                if self.seq_acquire() == s1
                    && (lock.holder_died() || !lock.is_locked())
                    && self.seq_after_reads() == s1
                {
                    // Nobody alive is finishing this write: take what is
                    // there.
                    // SAFETY: as in `read`.
                    unsafe { racy::copy_into(src, out.as_mut_ptr()) };
                    return Read::Interrupted(s1 >> 1);
                }
            }
        }
    }

    /// Sleeps until the generation differs from `seen` or `timeout` passes;
    /// returns the new generation, or `None` on timeout.
    ///
    /// `lock` is `Some` for a handle that may write: it marks the lock word
    /// so that the next committing unlock wakes it. Without it, only
    /// segments with [`WAKE_ALL`] wake sleepers (the caller checks).
    pub(crate) fn wait(&self, seen: u64, timeout: Duration, lock: Option<&RawLock>) -> Option<u64> {
        let deadline = Instant::now().checked_add(timeout);
        loop {
            let g = self.generation();
            if g != seen {
                return Some(g);
            }
            if let Some(lock) = lock {
                lock.mark_watched();
            }
            // The mark (an Acquire read-modify-write of the lock word) was
            // made either before the committing unlock, which then wakes us,
            // or after it, and then this load sees the committed `seq`.
            let s = self.seq_acquire();
            if s >> 1 != seen {
                return Some(s >> 1);
            }
            let left = match deadline {
                Some(d) => match d.checked_duration_since(Instant::now()) {
                    Some(left) if !left.is_zero() => left,
                    _ => return None,
                },
                None => Duration::from_secs(3600),
            };
            // Never longer than CHECK_INTERVAL per sleep: a watcher that
            // marks the word just before an unlock that clears the mark can
            // miss that unlock's wake, and the next commit's (tests/shmstore/reliability/model.rs
            // finds the interleaving); looking again every 50 ms bounds the
            // delay as the lock's sleepers bound theirs.
            futex::wait(&self.seq, s as u32, left.min(CHECK_INTERVAL));
        }
    }
}

/// Reads a generation with `now` every `interval` until it differs from
/// `seen` (returns the new one) or `timeout` has passed (`None`): how a
/// watcher waits that cannot sleep on the counter's futex. An error from
/// `now` ends the wait.
pub(crate) fn poll<E>(
    seen: u64,
    timeout: Duration,
    interval: Duration,
    mut now: impl FnMut() -> std::result::Result<u64, E>,
) -> std::result::Result<Option<u64>, E> {
    let deadline = Instant::now().checked_add(timeout);
    loop {
        let g = now()?;
        if g != seen {
            return Ok(Some(g));
        }
        let left = match deadline {
            Some(d) => match d.checked_duration_since(Instant::now()) {
                Some(left) if !left.is_zero() => left,
                _ => return Ok(None),
            },
            None => interval,
        };
        std::thread::sleep(left.min(interval));
    }
}
