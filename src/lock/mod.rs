//! The process-shared, crash-robust lock that lives inside every segment:
//! a 64-bit word naming its holder (thread id and process incarnation), a sleeper
//! count and a poison record (cause, last holder, time: [`RawLock`]); holders are tracked per thread in
//! [`held`], their liveness checked in [`owner`], guards are in [`guard`],
//! slots (lock, counter, value) in [`slot`], snapshots in [`seqlock`].
//!
//! The design, its reasons and its limits: `shmstore::_design::lock`
//! (src/_design/lock.rs), which docs.rs shows.

use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::time::{Duration, Instant};

#[allow(unsafe_code)]
pub(crate) mod guard;
#[allow(unsafe_code)]
pub(crate) mod held;
#[allow(unsafe_code)]
pub(crate) mod notify;
pub(crate) mod owner;
#[allow(unsafe_code)]
pub(crate) mod seqlock;
#[allow(unsafe_code)]
pub(crate) mod slot;

use crate::sys::futex;
use crate::sys::presence::{self, Presence};
use held::Holding;

/// How long a waiter sees the same owner before it checks whether the owner is
/// still alive; also the longest single sleep in the kernel.
pub(crate) const CHECK_INTERVAL: Duration = Duration::from_millis(50);

/// Set in the word while a thread may be asleep waiting for it.
const WAITERS: u64 = 1 << 31;
/// Set in the word while a thread may be asleep waiting for the value to
/// change; kept by lockers, cleared and reported by the next unlock.
const WATCHED: u64 = 1 << 30;
/// The flag bits of a word; the rest is the owner's identity.
const FLAGS: u64 = WAITERS | WATCHED;
/// `sched_yield` rounds before sleeping in the kernel.
const YIELDS: u32 = 10;

/// The identity part of a lock word (without `W` and `V`); 0 when free.
fn identity(word: u64) -> u64 {
    word & !FLAGS
}

/// Poison causes as the lock's `poisoned` word stores them (0: not
/// poisoned; any other value a peer wrote: poisoned, cause unknown).
pub(crate) const POISON_KILLED: u32 = 1;
/// A holder panicked (its guard was dropped while its thread unwound).
pub(crate) const POISON_PANICKED: u32 = 2;
/// The segment was migrated to a new layout and this one left behind.
pub(crate) const POISON_SUPERSEDED: u32 = 3;

/// A lock's poison record, as stored: the cause code (never 0 here), the
/// poisoner (`pid << 32 | tid`, pid 0 when unknown) and when it was
/// recorded (Unix time in ns). Any values a peer wrote may be in it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct RawPoison {
    pub cause: u32,
    pub holder: u64,
    pub at_ns: u64,
}

/// The time now, in ns since the Unix epoch (0 before it).
fn now_ns() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_nanos()).unwrap_or(u64::MAX))
}

/// How a lock was acquired.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Acquired {
    /// From a holder that unlocked it.
    Clean,
    /// Taken over from a holder that died holding it; the poison flag is set.
    OwnerDied,
}

/// What a release that found the word marked leaves to the caller for the
/// watchers of [`Shared::wait_for_change`](crate::Shared::wait_for_change)
/// ([`RawLock::release_marked`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Watchers {
    /// Nothing.
    None,
    /// Wake them.
    Wake,
    /// A watcher's mark (`V`) went back on the word after this release
    /// committed nothing. Wake them if the value's counter moved since the
    /// lock was taken: a holder that took the lock and committed before
    /// the mark was back did not see it.
    Restored,
}

/// A process-shared, crash-robust mutual-exclusion word.
///
/// This is the raw lock under [`Shared<T>`](crate::Shared): it guards no
/// data and knows nothing of types. It is placed inside shared memory by the
/// library (all zeroes is an unlocked lock). A lock taken over from a dead
/// holder is poisoned ([`is_poisoned`](RawLock::is_poisoned)).
///
/// Any bytes another process writes over it leave it well defined: a word
/// that names no living thread is a lock whose holder died.
///
/// Beside the word it records who poisoned it and how: `poisoned` is the
/// cause (0: not poisoned), `holder` names (`pid << 32 | tid`) the thread
/// that last acquired the lock while it was not poisoned, and, while it is
/// poisoned, the poisoner (it is left alone then), `poisoned_at` when the
/// poison was recorded (Unix time in ns).
#[repr(C)]
#[derive(Debug)]
pub(crate) struct RawLock {
    word: AtomicU64,
    sleepers: AtomicU32,
    poisoned: AtomicU32,
    holder: AtomicU64,
    poisoned_at: AtomicU64,
}

/// The lock's size in a segment: its [`Versions`](seqlock::Versions) follow.
pub(crate) const LOCK_SIZE: usize = std::mem::size_of::<RawLock>();
const _: () = assert!(LOCK_SIZE == 32);

impl RawLock {
    /// An unlocked, unpoisoned lock (all zeroes).
    pub const fn new() -> RawLock {
        RawLock {
            word: AtomicU64::new(0),
            sleepers: AtomicU32::new(0),
            poisoned: AtomicU32::new(0),
            holder: AtomicU64::new(0),
            poisoned_at: AtomicU64::new(0),
        }
    }

    /// Makes the lock unlocked and unpoisoned again (all zeroes), in a
    /// segment being initialised by the only process that may use it.
    pub(crate) fn reset(&self) {
        self.word.store(0, Ordering::Relaxed);
        self.sleepers.store(0, Ordering::Relaxed);
        self.poisoned.store(0, Ordering::Relaxed);
        self.holder.store(0, Ordering::Relaxed);
        self.poisoned_at.store(0, Ordering::Relaxed);
    }

    /// Records the calling thread (`mine`, its `pid << 32 | tid`), which has
    /// just acquired the lock, as its holder, unless the lock is poisoned
    /// (then `holder` names the poisoner); says whether it is poisoned.
    ///
    /// One relaxed load of the cause serves both: it is read after the
    /// lock's acquire, so it shows every poison recorded by earlier holders
    /// (who poison only while holding the lock); nothing else is read on
    /// its word's account (the record has its own acquiring reads,
    /// `raw_poison`). The store is unconditional: the lock word's cache
    /// line is this thread's already, and a store costs less than the load
    /// and test that would avoid it.
    #[inline(always)]
    fn note_holder(&self, mine: u64) -> bool {
        let poisoned = self.poisoned.load(Ordering::Relaxed) != 0;
        if !poisoned {
            self.holder.store(mine, Ordering::Relaxed);
        }
        poisoned
    }

    /// Acquires the lock, waiting as long as it takes. Returns the caller's
    /// identity, which [`release`](RawLock::release) takes back.
    ///
    /// # Panics
    ///
    /// If the calling thread holds the lock already (it would deadlock).
    #[inline(always)]
    pub(crate) fn acquire(&self) -> u64 {
        self.acquire_checked().0
    }

    /// [`acquire`](RawLock::acquire), and whether the lock is poisoned (as
    /// [`is_poisoned`](RawLock::is_poisoned) would say right after): the
    /// uncontended path of every guard, one compare-and-swap, the note in
    /// the thread's list of held locks and one load of the poison cause.
    ///
    /// # Panics
    ///
    /// As `acquire`.
    // Always inlined: called out of line (it grew with `note_holder`), an
    // uncontended lock and unlock cost a fifth more (measured with the
    // counter example).
    #[inline(always)]
    pub(crate) fn acquire_checked(&self) -> (u64, bool) {
        let (me, mine) = held::ident_and_mine();
        if self
            .word
            .compare_exchange(0, me, Ordering::Acquire, Ordering::Relaxed)
            .is_err()
        {
            self.acquire_contended(me);
        }
        held::acquired(self.at());
        (me, self.note_holder(mine))
    }

    /// The slow path of `acquire_checked`, out of line so that its
    /// `Option` and panic stay off the fast path.
    #[cold]
    #[inline(never)]
    fn acquire_contended(&self, me: u64) {
        self.acquire_slow(me, None)
            .expect("no deadline, so acquire_slow cannot time out");
    }

    /// Acquires the lock unless `deadline` passes first.
    pub(crate) fn acquire_until(&self, deadline: Instant) -> Option<u64> {
        let me = self.acquire_until_unrecorded(deadline)?;
        self.note_holder(held::mine());
        Some(me)
    }

    /// [`acquire_until`](RawLock::acquire_until) without recording the
    /// caller as the last holder: for a lock in memory not yet known to be
    /// a shmstore segment's, which must be left as it was found once the
    /// lock is released (a foreign System V segment).
    pub(crate) fn acquire_until_unrecorded(&self, deadline: Instant) -> Option<u64> {
        let me = held::ident();
        if self
            .word
            .compare_exchange(0, me, Ordering::Acquire, Ordering::Relaxed)
            .is_err()
        {
            self.acquire_slow(me, Some(deadline))?;
        }
        held::acquired(self.at());
        Some(me)
    }

    /// Acquires the lock if it is free or its holder is dead, without waiting.
    pub(crate) fn try_acquire(&self) -> Option<u64> {
        let me = held::ident();
        let mut v = 0;
        loop {
            match self.word.compare_exchange(
                v,
                me | (v & WATCHED),
                Ordering::Acquire,
                Ordering::Relaxed,
            ) {
                Ok(_) => break,
                // Free, but watched or with a stale `W`: try again with it.
                Err(now) if identity(now) == 0 => v = now,
                Err(now) => {
                    self.take_over_if_dead(now, me, false)?;
                    break;
                }
            }
        }
        held::acquired(self.at());
        self.note_holder(held::mine());
        Some(me)
    }

    /// This lock's address, as the calling thread's record of held locks
    /// knows it.
    #[inline]
    fn at(&self) -> usize {
        self as *const RawLock as usize
    }

    /// Whether the calling thread holds this lock: it took it at this
    /// address, or at another address that reaches the same memory (a
    /// second mapping of the segment). When that cannot be told, the answer
    /// is yes, the answer that never lets two holders in.
    fn held_by_this_thread(&self) -> bool {
        match held::holding(self.at()) {
            Holding::Here => true,
            Holding::Others(held) => held
                .into_iter()
                .any(|other| crate::sys::maps::same_memory(other, self.at()).unwrap_or(true)),
        }
    }

    #[cold]
    fn acquire_slow(&self, me: u64, deadline: Option<Instant>) -> Option<Acquired> {
        let mut v = self.word.load(Ordering::Relaxed);
        if identity(v) == me {
            if self.held_by_this_thread() {
                panic!("shmstore: lock() called by the thread that already holds this lock (it would deadlock)");
            }
            // This thread's identity in a lock it does not hold: a peer wrote
            // it. Nobody holds the lock.
            if let Some(got) = self.take_over(v, me, false) {
                return Some(got);
            }
            v = self.word.load(Ordering::Relaxed);
        }
        // Before sleeping, yield the CPU a few times, checking the word in
        // between. A waiter in `sched_yield` leaves the cache line alone for
        // a whole system call (busy-waiting on it slowed the holder down
        // more than anything else, measured), lets a preempted holder run
        // when processes outnumber CPUs, and has not set `W` yet, so the
        // holder's unlocks stay free of wake calls.
        for _ in 0..YIELDS {
            if identity(v) == 0 {
                match self.word.compare_exchange(
                    v,
                    me | (v & WATCHED),
                    Ordering::Acquire,
                    Ordering::Relaxed,
                ) {
                    Ok(_) => return Some(Acquired::Clean),
                    Err(now) => v = now,
                }
                continue;
            }
            std::thread::yield_now();
            v = self.word.load(Ordering::Relaxed);
        }

        self.sleepers.fetch_add(1, Ordering::SeqCst);
        let got = self.sleep_until_acquired(me, deadline);
        self.sleepers.fetch_sub(1, Ordering::SeqCst);
        got
    }

    /// The sleeping part of the slow path; the caller counts itself in
    /// `sleepers` around it.
    fn sleep_until_acquired(&self, me: u64, deadline: Option<Instant>) -> Option<Acquired> {
        let mut seen_owner = 0;
        let mut seen_since = Instant::now();
        loop {
            let v = self.word.load(Ordering::Relaxed);
            if identity(v) == 0 {
                // Others still asleep need the next unlock to wake them.
                let flag = if self.sleepers.load(Ordering::SeqCst) > 1 {
                    WAITERS
                } else {
                    0
                };
                if self
                    .word
                    .compare_exchange(
                        v,
                        me | flag | (v & WATCHED),
                        Ordering::Acquire,
                        Ordering::Relaxed,
                    )
                    .is_ok()
                {
                    return Some(Acquired::Clean);
                }
                continue;
            }

            let now = Instant::now();
            if identity(v) != seen_owner {
                seen_owner = identity(v);
                seen_since = now;
            } else if now.duration_since(seen_since) >= CHECK_INTERVAL {
                seen_since = now;
                if let Some(got) = self.take_over_if_dead(v, me, true) {
                    return Some(got);
                }
            }

            let mut nap = CHECK_INTERVAL;
            if let Some(d) = deadline {
                match d.checked_duration_since(now) {
                    Some(left) if !left.is_zero() => nap = nap.min(left),
                    _ => {
                        // The wake an unlock sent may have come to us, who
                        // give up now: pass it on, or another sleeper waits
                        // for its own timeout on a free lock (found by the
                        // model check, tests/shmstore/reliability/model.rs).
                        if self.sleepers.load(Ordering::SeqCst) > 1 {
                            futex::wake(&self.word, 1);
                        }
                        return None;
                    }
                }
            }

            if v & WAITERS == 0
                && self
                    .word
                    .compare_exchange(v, v | WAITERS, Ordering::Relaxed, Ordering::Relaxed)
                    .is_err()
            {
                continue;
            }
            futex::wait(&self.word, (v | WAITERS) as u32, nap);
        }
    }

    /// Takes the lock over from the holder named in `v` if that holder is
    /// dead. `counted` says whether the caller is counted in `sleepers`.
    fn take_over_if_dead(&self, v: u64, me: u64, counted: bool) -> Option<Acquired> {
        if !self.is_dead_holder(v) {
            return None;
        }
        self.take_over(v, me, counted)
    }

    /// Takes the lock over from the holder named in `v`, which is known to
    /// hold it no more, unless the word has changed since; poisons it.
    fn take_over(&self, v: u64, me: u64, counted: bool) -> Option<Acquired> {
        let others = self.sleepers.load(Ordering::SeqCst) > u32::from(counted);
        // Keep waking sleepers that were waiting for the dead holder.
        let flag = if others || v & WAITERS != 0 {
            WAITERS
        } else {
            0
        };
        self.word
            .compare_exchange(
                v,
                me | flag | (v & WATCHED),
                Ordering::Acquire,
                Ordering::Relaxed,
            )
            .ok()?;
        // Poison is sticky until cleared: the first record stays.
        if self.poisoned.load(Ordering::Relaxed) == 0 {
            let tid = owner::tid_of(v);
            let last = self.holder.load(Ordering::Relaxed);
            // The last recorded holder is the dead one if its thread id is
            // the word's; otherwise the dead holder's pid is unknown.
            let holder = if last as u32 == tid {
                last
            } else {
                u64::from(tid)
            };
            self.record(POISON_KILLED, holder);
        }
        Some(Acquired::OwnerDied)
    }

    /// Whether the word `v` names a holder that is dead (a word naming no
    /// live thread, garbage included); `false` for a free word. A word that
    /// names the calling thread, which does not hold the lock, names no
    /// holder either: a peer wrote it.
    fn is_dead_holder(&self, v: u64) -> bool {
        if identity(v) == 0 {
            return false;
        }
        let me = held::ident();
        if identity(v) == me {
            return !self.held_by_this_thread();
        }
        let x = owner::incarnation_of(v);
        if x == owner::incarnation_of(me) {
            // Another thread of this process: is it still running?
            return !owner::thread_runs(owner::tid_of(v));
        }
        // Another process: does it still show itself in this segment?
        presence::presence(self.at(), x) == Presence::Absent
    }

    /// The holder's thread id and whether it is alive, if the lock is held
    /// (a momentary answer).
    pub(crate) fn holder(&self) -> Option<(u32, bool)> {
        let v = self.word.load(Ordering::Relaxed);
        if identity(v) == 0 {
            return None;
        }
        Some((owner::tid_of(v), !self.is_dead_holder(v)))
    }

    /// The lock word and the holder record (`pid << 32 | tid`, see
    /// [`RawLock`]), one momentary look at each: what inspection tells of
    /// the holder beyond [`holder`](RawLock::holder).
    pub(crate) fn holder_words(&self) -> (u64, u64) {
        (
            self.word.load(Ordering::Relaxed),
            self.holder.load(Ordering::Relaxed),
        )
    }

    /// Whether the calling thread holds the lock (took it and has not
    /// released it, whatever a peer wrote over the word since).
    pub(crate) fn held_by_me(&self) -> bool {
        match held::holding(self.at()) {
            Holding::Here => true,
            _ if identity(self.word.load(Ordering::Relaxed)) != held::ident() => false,
            _ => self.held_by_this_thread(),
        }
    }

    /// Whether the lock is held by a thread that has died (the answer for
    /// this moment; `false` when the lock is free or its holder lives).
    pub(crate) fn holder_died(&self) -> bool {
        self.is_dead_holder(self.word.load(Ordering::Relaxed))
    }

    /// Releases the lock that the caller, identified by `me` (what the
    /// acquiring call returned), holds.
    ///
    /// `wrote` says whether the holder committed a change to the guarded
    /// value. If it did and a watcher had marked the word (`V`), this clears
    /// the mark and returns `true`: the caller then wakes the sleepers of
    /// [`Shared::wait_for_change`](crate::Shared::wait_for_change). If it did
    /// not, the mark goes back on the word for the next unlock, so watchers
    /// are not woken for nothing; `true` then means that the caller must
    /// look whether another holder committed in between, and wake them if
    /// so (see [`Watchers::Restored`]).
    ///
    /// If the lock is no longer the caller's (another process wrote over the
    /// word), nothing of the caller's is released: the word is put back as
    /// it was, unless another thread took the free lock in between. Nor is
    /// anything released in a forked child, for a guard it inherited: see
    /// [`strike_off`](RawLock::strike_off).
    #[inline]
    pub(crate) fn release(&self, me: u64, wrote: bool) -> bool {
        self.strike_off() && self.release_word(me, wrote)
    }

    /// Strikes this lock off the calling thread's list of held locks, as the
    /// first step of releasing it. `false` if it was not on the list: the
    /// caller is a guard that a forked child inherited, whose lock (and
    /// write in progress) belongs to the parent's thread, which still holds
    /// it; the child must then leave the lock alone.
    #[inline(always)]
    pub(crate) fn strike_off(&self) -> bool {
        held::released(self.at())
    }

    /// [`strike_off`](RawLock::strike_off) if this lock is the last one
    /// the thread took (`true`); otherwise `false`, nothing done.
    #[inline(always)]
    pub(crate) fn strike_off_last(&self) -> bool {
        held::released_last(self.at())
    }

    /// The rest of [`release`](RawLock::release), after
    /// [`strike_off`](RawLock::strike_off) returned `true`.
    #[inline]
    pub(crate) fn release_word(&self, me: u64, wrote: bool) -> bool {
        self.release_watchers(me, wrote) != Watchers::None
    }

    /// [`release_word`](RawLock::release_word), saying what the watchers
    /// need.
    #[inline]
    pub(crate) fn release_watchers(&self, me: u64, wrote: bool) -> Watchers {
        match self.release_swap() {
            old if old == me => Watchers::None,
            old => self.release_marked(old, me, wrote),
        }
    }

    /// Releases the lock: one swap of the word for 0, which gives back what
    /// the word was. Exactly `me` (nobody waits or watches) is the usual
    /// case, and then nothing is left to do; otherwise
    /// [`release_marked`](RawLock::release_marked) does the rest.
    ///
    /// A swap rather than a compare-and-swap from `me`: both are one atomic
    /// read-modify-write, but the swap needs no comparison and cost about
    /// 5% less per lock and unlock, measured (`_guide::costs`).
    #[inline(always)]
    pub(crate) fn release_swap(&self) -> u64 {
        self.word.swap(0, Ordering::Release)
    }

    /// The rest of a release whose [`release_swap`](RawLock::release_swap)
    /// gave back `old`, which was not exactly `me`: others marked the word
    /// (`W`, `V`), or it was not `me`'s. Says what the watchers need.
    #[cold]
    #[inline(never)]
    pub(crate) fn release_marked(&self, old: u64, me: u64, wrote: bool) -> Watchers {
        if identity(old) != me {
            // Not this holder's word: a peer wrote over it. Put it back as
            // it was, unless another thread took the lock meanwhile.
            let _ = self
                .word
                .compare_exchange(0, old, Ordering::Relaxed, Ordering::Relaxed);
            return Watchers::None;
        }
        // `W` and `V` are the only bits others may change while we hold the
        // lock; the swap cleared both. A sleeper is woken (it sets `W` again
        // when it goes back to sleep).
        if old & WAITERS != 0 {
            futex::wake(&self.word, 1);
        }
        if old & WATCHED == 0 {
            Watchers::None
        } else if wrote {
            Watchers::Wake
        } else {
            // Nothing committed: the mark goes back for the next unlock
            // that commits, on whatever the word is by now (free, or
            // another holder's). An Acquire read-modify-write: a holder that
            // came and went since the swap, and did not see the mark, is
            // seen here, and its commit then by the caller's look at the
            // counter.
            self.mark_watched();
            Watchers::Restored
        }
    }

    /// Marks the word as watched (`V`), so that the next unlock reports it.
    /// The marking is a read-modify-write with Acquire ordering: a watcher
    /// that marks after an unlock sees everything written before that unlock.
    pub(crate) fn mark_watched(&self) {
        let mut v = self.word.load(Ordering::Relaxed);
        loop {
            match self.word.compare_exchange_weak(
                v,
                v | WATCHED,
                Ordering::Acquire,
                Ordering::Relaxed,
            ) {
                Ok(_) => return,
                Err(now) => v = now,
            }
        }
    }

    /// Whether some thread holds the lock (a momentary answer).
    #[inline]
    pub fn is_locked(&self) -> bool {
        identity(self.word.load(Ordering::Relaxed)) != 0
    }

    /// The thread id of the holder, if the lock is held.
    pub fn holder_tid(&self) -> Option<u32> {
        let v = self.word.load(Ordering::Relaxed);
        (identity(v) != 0).then_some(owner::tid_of(v))
    }

    /// Whether a holder died or panicked while holding the lock since the
    /// poison was last cleared.
    #[inline]
    pub fn is_poisoned(&self) -> bool {
        // A relaxed load and an acquire fence: read-only mappings allow
        // it (see `Mapping::atomic_u32`).
        let poisoned = self.poisoned.load(Ordering::Relaxed) != 0;
        std::sync::atomic::fence(Ordering::Acquire);
        poisoned
    }

    /// Marks the data as possibly inconsistent: the holder, the calling
    /// thread, is panicking. An earlier poison stays as it was recorded.
    #[inline]
    pub(crate) fn poison(&self) {
        if self.poisoned.load(Ordering::Relaxed) == 0 {
            self.record(POISON_PANICKED, held::mine());
        }
    }

    /// Records a poison of `cause` by `holder`, now. Called by the holder.
    fn record(&self, cause: u32, holder: u64) {
        self.holder.store(holder, Ordering::Relaxed);
        self.poisoned_at.store(now_ns(), Ordering::Relaxed);
        // Release: who reads the cause with Acquire reads this record.
        self.poisoned.store(cause, Ordering::Release);
    }

    /// Poisons the lock as superseded (the segment was migrated to a new
    /// layout), naming the calling thread, which holds the lock: this
    /// overrides any earlier cause.
    pub(crate) fn supersede(&self) {
        self.record(POISON_SUPERSEDED, held::mine());
    }

    /// The poison record, if the lock is poisoned.
    pub(crate) fn raw_poison(&self) -> Option<RawPoison> {
        // A relaxed load and an acquire fence, as in `is_poisoned`.
        let cause = self.poisoned.load(Ordering::Relaxed);
        std::sync::atomic::fence(Ordering::Acquire);
        (cause != 0).then(|| RawPoison {
            cause,
            holder: self.holder.load(Ordering::Relaxed),
            at_ns: self.poisoned_at.load(Ordering::Relaxed),
        })
    }

    /// Puts back a poison record [`raw_poison`](RawLock::raw_poison) gave,
    /// e.g. to undo a [`supersede`](RawLock::supersede) a migration could
    /// not finish (where `raw_poison` gave `None`, call
    /// [`clear_poison`](RawLock::clear_poison) instead). Called by the
    /// holder.
    pub(crate) fn restore_poison(&self, saved: RawPoison) {
        self.holder.store(saved.holder, Ordering::Relaxed);
        self.poisoned_at.store(saved.at_ns, Ordering::Relaxed);
        self.poisoned.store(saved.cause, Ordering::Release);
    }

    /// The poison cause code (0: not poisoned; see [`RawPoison`]).
    pub(crate) fn poison_cause(&self) -> u32 {
        let cause = self.poisoned.load(Ordering::Relaxed);
        std::sync::atomic::fence(Ordering::Acquire);
        cause
    }

    /// Clears the poison (the cause; the rest of the record is ignored
    /// while the cause is 0).
    pub fn clear_poison(&self) {
        self.poisoned.store(0, Ordering::Release);
    }
}

impl Default for RawLock {
    fn default() -> Self {
        RawLock::new()
    }
}

#[cfg(test)]
#[allow(unsafe_code)] // a counter the lock guards, to test mutual exclusion
mod tests {
    use super::*;
    use std::os::fd::AsFd;
    use std::sync::Arc;

    #[test]
    fn zero_is_unlocked() {
        let l = RawLock::new();
        assert!(!l.is_locked());
        let me = l.acquire();
        assert!(l.is_locked());
        assert_eq!(l.holder_tid(), Some(nix::unistd::gettid().as_raw() as u32));
        assert!(l.try_acquire().is_none());
        l.release(me, false);
        assert!(!l.is_locked());
    }

    #[test]
    fn threads_exclude_each_other() {
        struct Counted {
            lock: RawLock,
            value: std::cell::UnsafeCell<u64>,
        }
        // SAFETY: `value` is only touched while `lock` is held.
        unsafe impl Sync for Counted {}
        let c = Arc::new(Counted {
            lock: RawLock::new(),
            value: 0.into(),
        });
        let threads: Vec<_> = (0..4)
            .map(|_| {
                let c = c.clone();
                std::thread::spawn(move || {
                    for _ in 0..50_000 {
                        let me = c.lock.acquire();
                        // SAFETY: the lock is held.
                        unsafe { *c.value.get() += 1 };
                        c.lock.release(me, false);
                    }
                })
            })
            .collect();
        for t in threads {
            t.join().unwrap();
        }
        // SAFETY: all threads joined.
        assert_eq!(unsafe { *c.value.get() }, 200_000);
        assert!(!c.lock.is_locked());
    }

    #[test]
    fn a_word_naming_no_live_thread_is_taken_over_and_poisons() {
        let (map, _) = two_mappings();
        let l = map.raw_lock(64);
        // An incarnation nobody shows in this segment, as a dead holder or a
        // damaged word leaves it.
        let x = presence::incarnation().unwrap() ^ 1;
        l.word
            .store(owner::compose_ident(7, x), Ordering::Relaxed);
        let me = l.try_acquire().expect("taken over");
        assert!(l.is_poisoned());
        l.release(me, false);
        l.clear_poison();
        l.word.store(u64::MAX, Ordering::Relaxed); // garbage
        let me = l.acquire();
        assert!(l.is_poisoned());
        l.release(me, false);
        assert!(!l.is_locked());
        // A thread of this process that no longer runs.
        let gone = std::thread::spawn(crate::sys::thread::current_tid)
            .join()
            .unwrap();
        l.clear_poison();
        l.word.store(
            owner::compose_ident(gone, presence::incarnation().unwrap()),
            Ordering::Relaxed,
        );
        // Waited for: a joined thread may still be on its way out.
        let me = l
            .acquire_until(Instant::now() + Duration::from_secs(2))
            .expect("taken over from an ended thread");
        assert!(l.is_poisoned());
        l.release(me, false);
    }

    #[test]
    fn a_holder_another_process_shows_is_alive_until_it_goes() {
        let (fd, map, _) = segment();
        let l = map.raw_lock(64);
        // Another process, as the kernel sees it: another description of
        // the object holding an incarnation's byte.
        let x = presence::incarnation().unwrap() ^ 2;
        let other = presence::tests::show(fd.as_fd(), x);
        l.word.store(owner::compose_ident(7, x), Ordering::Relaxed);
        assert!(l.try_acquire().is_none(), "a live holder keeps its lock");
        assert!(l.acquire_until(Instant::now() + Duration::from_millis(120)).is_none());
        assert_eq!(l.holder(), Some((7, true)));
        drop(other); // the process dies
        assert_eq!(l.holder(), Some((7, false)));
        let me = l.try_acquire().expect("taken over from a dead process");
        assert!(l.is_poisoned());
        l.release(me, false);
    }

    #[test]
    fn timed_acquire_gives_up_on_a_live_holder() {
        let l = Arc::new(RawLock::new());
        let me = l.acquire();
        let l2 = l.clone();
        let t0 = Instant::now();
        let got = std::thread::spawn(move || {
            l2.acquire_until(Instant::now() + Duration::from_millis(120))
        })
        .join()
        .unwrap();
        assert_eq!(got, None);
        assert!(t0.elapsed() >= Duration::from_millis(120));
        l.release(me, false);
    }

    #[test]
    #[should_panic(expected = "already holds")]
    fn relocking_from_the_holder_panics() {
        let l = RawLock::new();
        l.acquire();
        l.acquire();
    }

    #[test]
    fn an_unlock_that_commits_nothing_puts_the_watchers_mark_back() {
        let l = RawLock::new();
        let me = l.acquire();
        l.mark_watched();
        assert!(l.strike_off());
        assert_eq!(l.release_watchers(me, false), Watchers::Restored);
        assert_eq!(l.word.load(Ordering::Relaxed), WATCHED, "free, still watched");
        assert!(!l.is_locked());
        // The next holder takes the mark with the lock; its committing
        // unlock reports it and clears it.
        let me = l.acquire();
        assert_eq!(l.word.load(Ordering::Relaxed), me | WATCHED);
        assert!(l.release(me, true), "a commit wakes the watchers");
        assert_eq!(l.word.load(Ordering::Relaxed), 0);
    }

    #[test]
    fn an_unlock_puts_back_a_word_a_peer_wrote_over_its_own() {
        let l = RawLock::new();
        let me = l.acquire();
        // Another live identity, written over the word by a peer.
        let peer = (me ^ (1 << 40)) & !FLAGS;
        l.word.store(peer | WAITERS, Ordering::Relaxed);
        assert!(!l.release(me, true), "nothing of the caller's released");
        assert_eq!(l.word.load(Ordering::Relaxed), peer | WAITERS);
        l.word.store(0, Ordering::Relaxed);
    }

    /// What a peer writes to make a free lock look held by this thread.
    fn forge_mine(l: &RawLock, flags: u64) {
        l.word.store(held::ident() | flags, Ordering::Relaxed);
    }

    #[test]
    fn this_threads_identity_written_by_a_peer_is_no_holder() {
        let other = RawLock::new();
        for holding_another in [false, true] {
            // Whether or not this thread holds some other lock meanwhile.
            let held = holding_another.then(|| other.acquire());

            let l = RawLock::new();
            forge_mine(&l, 0);
            assert!(!l.held_by_me());
            assert!(l.holder_died(), "a forged word names no live holder");
            let me = l.acquire();
            assert!(l.is_poisoned());
            assert!(l.held_by_me());
            l.release(me, false);
            assert!(!l.is_locked() && !l.held_by_me());

            l.clear_poison();
            forge_mine(&l, WAITERS | WATCHED);
            let me = l.try_acquire().expect("taken over at once");
            assert!(l.is_poisoned());
            assert_eq!(l.word.load(Ordering::Relaxed) & WATCHED, WATCHED);
            l.release(me, true);

            l.clear_poison();
            forge_mine(&l, 0);
            let t0 = Instant::now();
            let me = l
                .acquire_until(t0 + Duration::from_secs(5))
                .expect("taken over");
            assert!(t0.elapsed() < Duration::from_secs(1));
            assert!(l.is_poisoned());
            l.release(me, false);

            if let Some(me) = held {
                assert!(other.held_by_me());
                other.release(me, false);
            }
        }
    }

    #[test]
    fn a_forged_word_written_while_this_thread_sleeps_is_taken_over() {
        let l = Arc::new(RawLock::new());
        let holder = l.acquire(); // this thread: a live holder
        let (tx, rx) = std::sync::mpsc::channel();
        let waiter = {
            let l = l.clone();
            std::thread::spawn(move || {
                tx.send(held::ident()).unwrap();
                let t0 = Instant::now();
                let me = l.acquire();
                let got = (l.is_poisoned(), t0.elapsed());
                l.release(me, false);
                got
            })
        };
        let waiter_ident = rx.recv().unwrap();
        std::thread::sleep(Duration::from_millis(150)); // the waiter sleeps
                                                        // A peer writes the sleeping waiter's identity over the word.
        l.word.store(waiter_ident | WAITERS, Ordering::Relaxed);
        futex::wake(&l.word, 1);
        let (poisoned, took) = waiter.join().unwrap();
        assert!(poisoned, "taken over, poisoned");
        assert!(took < Duration::from_secs(2), "took {took:?}");
        // The old holder's release finds the lock no longer its own.
        assert!(!l.release(holder, false));
        assert!(!l.is_locked());
    }

    /// Two mappings of one memfd: the same lock at two addresses.
    fn two_mappings() -> (crate::sys::mapping::Mapping, crate::sys::mapping::Mapping) {
        let (_, a, b) = segment();
        (a, b)
    }

    /// A memfd and two mappings of it.
    fn segment() -> (
        std::os::fd::OwnedFd,
        crate::sys::mapping::Mapping,
        crate::sys::mapping::Mapping,
    ) {
        use nix::sys::memfd::{memfd_create, MFdFlags};
        let fd = memfd_create(c"shmstore-lock-test", MFdFlags::MFD_CLOEXEC).unwrap();
        nix::unistd::ftruncate(&fd, 4096).unwrap();
        let a = crate::sys::mapping::Mapping::map(fd.as_fd(), 4096, true).unwrap();
        let b = crate::sys::mapping::Mapping::map(fd.as_fd(), 4096, true).unwrap();
        (fd, a, b)
    }

    #[test]
    fn relocking_through_a_second_mapping_is_still_a_relock() {
        let (a, b) = two_mappings();
        let (la, lb) = (a.raw_lock(64), b.raw_lock(64));
        assert_ne!(la as *const RawLock, lb as *const RawLock);
        let me = la.acquire();
        assert!(lb.held_by_me());
        assert!(!lb.holder_died());
        assert_eq!(lb.try_acquire(), None, "not taken over from itself");
        let relock = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| lb.acquire()));
        assert!(relock.is_err(), "a relock through another mapping panics");
        let relock = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            lb.acquire_until(Instant::now() + Duration::from_millis(100))
        }));
        assert!(relock.is_err());
        assert!(!la.is_poisoned());
        la.release(me, false);
        assert!(!lb.is_locked());

        // A lock at another offset of the same object, with this thread's
        // identity forged into it, is no relock.
        let me = la.acquire();
        let forged = b.raw_lock(128);
        forge_mine(forged, 0);
        let me2 = forged.acquire();
        assert!(forged.is_poisoned());
        forged.release(me2, false);
        la.release(me, false);
    }
}
