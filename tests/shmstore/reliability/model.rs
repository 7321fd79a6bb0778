//! A model check of the lock word protocol (src/lock/mod.rs) and the seqlock
//! (src/lock/seqlock.rs), as the typed handles use them: the guard, its
//! `DerefMut` and its drop (src/lock/guard.rs, `Versions::unlock`), snapshots
//! (src/lock/slot.rs, `Versions::read`) and `wait_for_change` (`Versions::wait`,
//! with the `V` bit of the lock word).
//!
//! # The model
//!
//! Each process is a program counter ([`Pc`]) over the atomic steps the real
//! code performs: every load, compare-and-swap, store, fetch-add, futex wait
//! and futex wake is one step, and the comment on each step names the
//! function and quotes the statement it models. [`CITED`] lists those
//! statements; `model_cites_code_that_exists` fails when one of them is no
//! longer in the source, which is the sign that the model must be checked
//! against the code again.
//!
//! The checker explores every interleaving of the steps of 2 or 3 processes
//! breadth-first, with a visited set over the whole state (shared words,
//! every process's program counter and locals, who is asleep on which futex,
//! who is dead). Shared memory is sequentially consistent in the model: each
//! step sees the latest value of every word. Which orderings make the real
//! code behave so on weakly ordered CPUs is a separate review
//! (`shmstore::_design::ordering`, src/_design/ordering.rs).
//!
//! - **Futex**: `wait(addr, expected)` compares and goes to sleep in one step
//!   (or returns at once when the word differs); a sleeper leaves only when a
//!   `wake` on the same word picks it (every choice of sleeper is explored
//!   for `wake(1)`) or through a *timed* transition (the timeout: 50 ms on the
//!   lock word, 1 ms for a snapshot, `CHECK_INTERVAL` = 50 ms for a watcher;
//!   also stands for a signal).
//! - **Time**: everything that only happens because time passed is a timed
//!   transition: futex timeouts, the dead-holder check every
//!   `CHECK_INTERVAL`, a timed locker giving up at its deadline, a
//!   snapshot's give-up check on a writer that stopped, a watcher's 50 ms
//!   nap ending. Liveness of the lock is checked twice: with untimed
//!   transitions only ("no lost wake-up: never needs a timeout") and with
//!   all of them; watchers are checked both ways too (an invariant that a
//!   committed write always has a waker on its way, and that a watcher can
//!   always return once a write is committed, naps allowed).
//! - **Death**: a mortal process may die before any of its steps (at most
//!   `max_deaths` per run): its program stops, the lock word keeps its
//!   identity, and `is_dead_holder` answers true for it from then on.
//! - **Value**: the guarded value is two words written in two steps, so a copy
//!   that overlaps a write can be torn. A ghost history records the value of
//!   every committed generation, against which clean snapshots are checked.
//!
//! What is abstracted away: memory orderings weaker than sequential
//! consistency (the code's Acquire/Release pairs and fences are taken as
//! correct); the number of `sched_yield` rounds (`YIELDS` = 10 in the code,
//! `yields` here); spinning without a memory step; the 32-bit futex
//! comparison (identities are unique per process, so comparing the whole
//! modelled word is the same); thread id reuse (the start time makes
//! identities unique); `compare_exchange_weak`'s spurious failures (a retry
//! that changes no state); poisoning by panic and `clear_poison`; the
//! sequence counter wrapping; more than one death per run; the caller's
//! own timeout in `wait_for_change` (a modelled watcher waits for ever).
//!
//! The check found three problems in an earlier version of the code. Two
//! are fixed in src/ and the model follows the fixed code; the old
//! behaviour of each is kept as a deliberate bug ([`Bug`]) that the checker
//! must still find: a snapshot that trusted one load of `seq` and reported a
//! live writer's write as interrupted (`Bug::ReaderTrustsOneSeqLoad`), and
//! a timed locker that swallowed a wake when it gave up
//! (`Bug::GiveUpSwallowsWake`). The third stays in the code, bounded: a
//! watcher can miss the wake of a committed write (asserted as found), but
//! `Versions::wait` sleeps at most 50 ms at a time and looks again, so with
//! timed transitions every watcher sees every committed write (asserted to
//! hold). [`Fix::WritersTakeTheMark`] is a change the code did not take,
//! which the checker shows would remove the missed wake itself. The
//! results, traces and figures are in docs/reliability-model.md.
//!
//! `cargo test --release --test shmstore reliability::model` runs the
//! default bounds (seconds); `cargo test --release --test shmstore
//! reliability::model -- --ignored` the larger ones (about half a minute, 1.3 GB).

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::fmt::Write as _;
use std::hash::{BuildHasherDefault, Hasher};
use std::time::Instant;

use Role::*;

// ---------------------------------------------------------------------------
// The statements the model follows

/// `(file, statement)`: every statement a step of the model stands for, as
/// it reads in the source (whitespace collapsed).
const CITED: &[(&str, &str)] = &[
    // RawLock::acquire and acquire_until: the fast path.
    (
        "src/lock/mod.rs",
        ".compare_exchange(0, me, Ordering::Acquire, Ordering::Relaxed)",
    ),
    // acquire_slow.
    (
        "src/lock/mod.rs",
        "let mut v = self.word.load(Ordering::Relaxed);",
    ),
    ("src/lock/mod.rs", "for _ in 0..YIELDS {"),
    ("src/lock/mod.rs", "v = self.word.load(Ordering::Relaxed);"),
    (
        "src/lock/mod.rs",
        "self.sleepers.fetch_add(1, Ordering::SeqCst);",
    ),
    (
        "src/lock/mod.rs",
        "self.sleepers.fetch_sub(1, Ordering::SeqCst);",
    ),
    // sleep_until_acquired.
    (
        "src/lock/mod.rs",
        "let v = self.word.load(Ordering::Relaxed);",
    ),
    (
        "src/lock/mod.rs",
        "let flag = if self.sleepers.load(Ordering::SeqCst) > 1 {",
    ),
    ("src/lock/mod.rs", "me | flag | (v & WATCHED),"),
    (
        "src/lock/mod.rs",
        "} else if now.duration_since(seen_since) >= CHECK_INTERVAL {",
    ),
    (
        "src/lock/mod.rs",
        "if let Some(got) = self.take_over_if_dead(v, me, true) {",
    ),
    (
        "src/lock/mod.rs",
        ".compare_exchange(v, v | WAITERS, Ordering::Relaxed, Ordering::Relaxed)",
    ),
    (
        "src/lock/mod.rs",
        "futex::wait(&self.word, (v | WAITERS) as u32, nap);",
    ),
    // sleep_until_acquired: a timed locker whose deadline passed passes
    // the wake on, then acquire_slow takes it out of `sleepers`.
    (
        "src/lock/mod.rs",
        "Some(left) if !left.is_zero() => nap = nap.min(left),",
    ),
    (
        "src/lock/mod.rs",
        "if self.sleepers.load(Ordering::SeqCst) > 1 { futex::wake(&self.word, 1); } return None;",
    ),
    // take_over_if_dead.
    ("src/lock/mod.rs", "if !self.is_dead_holder(v) {"),
    (
        "src/lock/mod.rs",
        "let others = self.sleepers.load(Ordering::SeqCst) > u32::from(counted);",
    ),
    (
        "src/lock/mod.rs",
        "let flag = if others || v & WAITERS != 0 {",
    ),
    ("src/lock/mod.rs", "self.record(POISON_KILLED, holder);"),
    // try_acquire.
    ("src/lock/mod.rs", "me | (v & WATCHED),"),
    (
        "src/lock/mod.rs",
        "Err(now) => { self.take_over_if_dead(now, me, false)?; break; }",
    ),
    // release_swap and release_marked.
    ("src/lock/mod.rs", "self.word.swap(0, Ordering::Release)"),
    ("src/lock/mod.rs", "if identity(old) != me {"),
    (
        "src/lock/mod.rs",
        "if old & WAITERS != 0 { futex::wake(&self.word, 1); }",
    ),
    (
        "src/lock/mod.rs",
        "} else if wrote { Watchers::Wake } else {",
    ),
    ("src/lock/mod.rs", "self.mark_watched(); Watchers::Restored"),
    // mark_watched.
    (
        "src/lock/mod.rs",
        "match self.word.compare_exchange_weak( v, v | WATCHED, Ordering::Acquire,",
    ),
    // holder_died and is_locked.
    (
        "src/lock/mod.rs",
        "self.is_dead_holder(self.word.load(Ordering::Relaxed))",
    ),
    (
        "src/lock/mod.rs",
        "identity(self.word.load(Ordering::Relaxed)) != 0",
    ),
    // Versions: seq_held, begin_write, end_write (and its flagless copy in
    // release_plain), release_plain, release_rest, wake.
    ("src/lock/seqlock.rs", "self.seq.load(Ordering::Relaxed)"),
    (
        "src/lock/seqlock.rs",
        "self.seq.store(odd, Ordering::Relaxed);",
    ),
    (
        "src/lock/seqlock.rs",
        "self.seq.store(odd.wrapping_add(1), Ordering::Release);",
    ),
    (
        "src/lock/seqlock.rs",
        "self.seq.store(seq.wrapping_add(1), Ordering::Release);",
    ),
    ("src/lock/seqlock.rs", "let old = lock.release_swap();"),
    (
        "src/lock/seqlock.rs",
        "if old != me { self.release_marked(lock, old, me, seq); }",
    ),
    (
        "src/lock/seqlock.rs",
        "Watchers::Restored => self.seq.load(Ordering::Relaxed) != seq,",
    ),
    ("src/lock/seqlock.rs", "if wake || flags & WAKE_ALL != 0 {"),
    ("src/lock/seqlock.rs", "futex::wake(&self.seq, i32::MAX);"),
    // try_read and read_slow.
    ("src/lock/seqlock.rs", "let s1 = self.seq_acquire();"),
    (
        "src/lock/seqlock.rs",
        "if self.seq.load(Ordering::Relaxed) == s1 {",
    ),
    ("src/lock/seqlock.rs", "Err(s1) if s1 & 1 == 0 => continue,"),
    (
        "src/lock/seqlock.rs",
        "futex::wait(&self.seq, s1 as u32, Duration::from_millis(1));",
    ),
    (
        "src/lock/seqlock.rs",
        "if self.seq_acquire() == s1 && (lock.holder_died() || !lock.is_locked()) \
         && self.seq_after_reads() == s1 {",
    ),
    ("src/lock/seqlock.rs", "return Read::Interrupted(s1 >> 1);"),
    // wait.
    ("src/lock/seqlock.rs", "let g = self.generation();"),
    ("src/lock/seqlock.rs", "lock.mark_watched();"),
    ("src/lock/seqlock.rs", "let s = self.seq_acquire();"),
    (
        "src/lock/seqlock.rs",
        "futex::wait(&self.seq, s as u32, left.min(CHECK_INTERVAL));",
    ),
    // The guard: Shared::guard, DerefMut and Drop.
    ("src/lock/guard.rs", "seq: versions.seq_held(),"),
    ("src/lock/guard.rs", "self.seq = self.seq.wrapping_add(1);"),
    ("src/lock/guard.rs", "self.versions.begin_write(self.seq);"),
    (
        "src/lock/guard.rs",
        "match versions.release_plain(lock, me, seq) {",
    ),
    // RawSlot::wait_for_change: only a writable handle marks the word.
    (
        "src/lock/slot.rs",
        "return versions.wait(seen, timeout, Some(self.raw()));",
    ),
];

// ---------------------------------------------------------------------------
// Words

/// `WAITERS` (bit 31 of the real word).
const W: u8 = 0x10;
/// `WATCHED` (bit 30 of the real word).
const V: u8 = 0x20;
/// The identity part of a word: 0 free, `1..=3` process `id - 1`, [`GARBAGE`]
/// a word that names no process (what a dead holder from elsewhere, or a
/// damaged word, leaves).
const ID: u8 = 0x0f;
const GARBAGE: u8 = 0x0f;
/// Generations the ghost history can hold.
const MAX_GEN: usize = 8;
const MAX_PROCS: usize = 3;

fn ident(word: u8) -> u8 {
    word & ID
}

// ---------------------------------------------------------------------------
// Processes

/// What a process does, `iterations` times.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Role {
    /// `Shared::lock()`, then maybe a write through the guard, then the
    /// guard's drop.
    Locker,
    /// `Shared::try_lock_for()`: as `Locker`, but gives up when its deadline
    /// passes (a timed transition).
    TimedLocker,
    /// `Shared::try_lock()`: one attempt, no waiting.
    TryLocker,
    /// `Shared::snapshot()`.
    Reader,
    /// `Shared::wait_for_change(shared.generation(), ..)`: marks `V`.
    Watcher,
    /// `SharedReader::wait_for_change`: a read-only handle, no `V`.
    ReadOnlyWatcher,
}

impl Role {
    fn first(self) -> Pc {
        match self {
            Role::Locker | Role::TimedLocker => Pc::Fast,
            Role::TryLocker => Pc::TryCas,
            Role::Reader => Pc::RdSeq,
            Role::Watcher | Role::ReadOnlyWatcher => Pc::WGeneration0,
        }
    }

    /// Whether the process may die in the model. Readers and watchers write
    /// nothing that matters when they die (a dead watcher's `V` only costs
    /// one wake), so they are kept alive to keep the state space small.
    fn mortal(self) -> bool {
        matches!(self, Role::Locker | Role::TimedLocker | Role::TryLocker)
    }
}

/// Program counters: the next step a process takes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
enum Pc {
    Done,
    // lock(): RawLock::acquire, acquire_slow, sleep_until_acquired.
    Fast,
    SlowLoad,
    Yield,
    SleepersInc,
    Load,
    SleepersLoad,
    Cas,
    DeadCheck,
    TakeSleepers,
    TakeCas,
    Poison,
    SetW,
    Wait,
    DecGot,
    // A timed locker whose deadline passed: it wakes another sleeper if
    // there is one (`Bug::GiveUpSwallowsWake` skips this), then leaves.
    GaveUpSleepers,
    GaveUpWake,
    DecGaveUp,
    // try_lock(): RawLock::try_acquire.
    TryCas,
    TryDeadCheck,
    TrySleepers,
    TryTakeCas,
    TryPoison,
    // The guard: Shared::guard, DerefMut, Drop (Versions::unlock,
    // RawLock::release).
    GuardPending,
    GuardPoison,
    BeginStore,
    // The alternative fix `WritersTakeTheMark` (not in the code).
    BeginMarkLoad,
    BeginMarkCas,
    WriteA,
    WriteB,
    EndStore,
    RelFast,
    RelWake,
    RelRestore,
    RelSeqCheck,
    SeqWake,
    // snapshot(): Versions::try_read, read_slow.
    RdSeq,
    RdA,
    RdB,
    RdRecheck,
    RdNap,
    RdCheckSeq,
    RdHolderDied,
    RdIsLocked,
    // The second load of `seq` (`Bug::ReaderTrustsOneSeqLoad` skips it).
    RdGiveUpSeq,
    RdIntA,
    RdIntB,
    // wait_for_change(): Versions::wait, RawLock::mark_watched.
    WGeneration0,
    WGeneration,
    WMarkLoad,
    WMarkCas,
    WSeq,
    WNap,
}

impl Pc {
    /// On the way to the lock (counts as wanting it).
    fn acquiring(self) -> bool {
        use Pc::*;
        matches!(
            self,
            Fast | SlowLoad
                | Yield
                | SleepersInc
                | Load
                | SleepersLoad
                | Cas
                | DeadCheck
                | TakeSleepers
                | TakeCas
                | SetW
                | Wait
                | TryCas
                | TryDeadCheck
                | TrySleepers
                | TryTakeCas
        )
    }

    /// Holding the lock: from the acquiring compare-and-swap to the
    /// releasing one.
    fn holding(self) -> bool {
        use Pc::*;
        matches!(
            self,
            Poison
                | DecGot
                | TryPoison
                | GuardPending
                | GuardPoison
                | BeginStore
                | BeginMarkLoad
                | BeginMarkCas
                | WriteA
                | WriteB
                | EndStore
                | RelFast
        )
    }

    /// After the releasing swap, before the guard's drop returns.
    fn releasing(self) -> bool {
        matches!(
            self,
            Pc::RelWake | Pc::RelRestore | Pc::RelSeqCheck | Pc::SeqWake
        )
    }

    /// Which futex a blocked process sleeps on.
    fn futex(self) -> Option<Futex> {
        match self {
            Pc::Wait => Some(Futex::Word),
            Pc::RdNap | Pc::WNap => Some(Futex::Seq),
            _ => None,
        }
    }

    /// Where a sleeper goes when it wakes (or its wait returns at once).
    fn after_wait(self) -> Pc {
        match self {
            // sleep_until_acquired: the loop starts again with a load.
            Pc::Wait => Pc::Load,
            // read_slow: the loop tries the copy again.
            Pc::RdNap => Pc::RdSeq,
            // Versions::wait: the loop reads the generation again.
            Pc::WNap => Pc::WGeneration,
            _ => unreachable!(),
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Futex {
    Word,
    Seq,
}

/// One process: its program counter and the locals of the code it runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
struct Proc {
    pc: Pc,
    alive: bool,
    /// Asleep in `futex::wait` (on `pc.futex()`).
    blocked: bool,
    /// Iterations left, this one included.
    left: u8,
    /// A copy of the lock word (`v`); for a sleeper, the value it waits on.
    v: u8,
    /// A copy of `seq` (`s`, `s1`).
    s: u8,
    /// `seen_owner` (sleep loop) or `seen` (watchers).
    seen: u8,
    /// `sched_yield` rounds left.
    yields: u8,
    /// A snapshot's copy of the two value words.
    ca: u8,
    cb: u8,
    /// The `WAITERS` flag an acquiring compare-and-swap puts in.
    flag: bool,
    /// The guard's `writing`.
    writing: bool,
    /// Alternative fix `WritersTakeTheMark`: this writer took a watcher's
    /// mark and must wake `seq` after its commit.
    wake_seq: bool,
    /// Ghost: the lock was taken over from a dead holder.
    took_over: bool,
    /// Ghost: a snapshot's give-up check found the pending write's writer
    /// dead when it looked at `seq`.
    justified: bool,
}

impl Proc {
    const IDLE: Proc = Proc {
        pc: Pc::Done,
        alive: false,
        blocked: false,
        left: 0,
        v: 0,
        s: 0,
        seen: 0,
        yields: 0,
        ca: 0,
        cb: 0,
        flag: false,
        writing: false,
        wake_seq: false,
        took_over: false,
        justified: false,
    };

    /// Ends the current iteration: the next starts with clean locals.
    fn finish(&mut self, role: Role) {
        self.left -= 1;
        let (alive, left) = (self.alive, self.left);
        *self = Proc::IDLE;
        self.alive = alive;
        self.left = left;
        self.pc = if left == 0 { Pc::Done } else { role.first() };
    }
}

/// The whole state: the shared words, the processes, and ghosts (facts
/// about the past that only the checks read).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
struct State {
    /// `RawLock::word`: identity, `W`, `V`.
    word: u8,
    /// `RawLock::sleepers`.
    sleepers: u8,
    /// `RawLock::poisoned`.
    poisoned: bool,
    /// `Versions::seq`.
    seq: u8,
    /// The guarded value: two words.
    a: u8,
    b: u8,
    procs: [Proc; MAX_PROCS],
    /// Ghost: the value of each committed generation (`a << 4 | b`).
    history: [u8; MAX_GEN],
    /// Ghost: deaths so far.
    deaths: u8,
    /// Ghost: some process has taken the lock over from a dead holder.
    taken_over: bool,
    /// Ghost: the write in progress (odd `seq`) belongs to a dead process.
    pending_dead: bool,
}

// ---------------------------------------------------------------------------
// Configurations and deliberate bugs

/// A bug put into the model on purpose, to show that the checker finds it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Bug {
    /// `release_marked` never calls `futex::wake` on the word.
    UnlockForgetsWake,
    /// A woken sleeper that takes the lock never sets `W` for the others.
    AcquireDropsWaiters,
    /// A sleeper waits without setting `W` first.
    SleepWithoutWaiters,
    /// `take_over_if_dead` takes the lock without asking whether the holder
    /// is dead.
    TakeOverLiveHolder,
    /// A take-over does not set the poison flag.
    TakeOverWithoutPoison,
    /// `try_read` does not load `seq` again after the copy.
    ReaderSkipsRecheck,
    /// `try_read` copies while `seq` is odd.
    ReaderIgnoresOdd,
    /// `release` never reports `V`, so no watcher is woken.
    UnlockForgetsWatchers,
    /// `release_marked` does not put `V` back when the holder wrote
    /// nothing, so the next committing unlock does not know about the
    /// watcher.
    UnlockClearsWatched,
    /// `read_slow` gives up after `seq == s1 && (holder_died() ||
    /// !is_locked())` without loading `seq` again: a writer that commits
    /// and unlocks between the first load and the lock check looks dead.
    /// The code before the fix of finding 1.
    ReaderTrustsOneSeqLoad,
    /// A timed locker whose deadline passed returns without passing on a
    /// wake that an unlock may have sent it, so another sleeper sleeps on
    /// a free lock until its timeout. The code before the fix of finding 2.
    GiveUpSwallowsWake,
    /// `Versions::wait` sleeps until woken, without the `CHECK_INTERVAL`
    /// bound: the code before the bound of finding 3, called with no
    /// timeout. A watcher that missed a wake then never returns.
    WatcherSleepsUntilWoken,
}

/// A change to the code that the code did not take, checked here as an
/// alternative.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Fix {
    /// Finding 3 (a watcher can miss the wake of a committed write) removed
    /// at its root: the mark `V` is taken by the writer after it makes `seq`
    /// odd (`begin_write`, or on adopting a dead writer's write), never by
    /// the unlock; that writer wakes `seq` after its commit; and a watcher
    /// that loads an odd `seq` after marking does not sleep on it but looks
    /// again. The code bounds the delay instead: `Versions::wait` sleeps at
    /// most `CHECK_INTERVAL` (50 ms) at a time, then marks and looks again
    /// (the watcher's timed wake-up in the model).
    WritersTakeTheMark,
}

#[derive(Clone, Debug)]
struct Config {
    name: String,
    roles: Vec<Role>,
    iterations: u8,
    /// `sched_yield` rounds before sleeping (`YIELDS`).
    yields: u8,
    max_deaths: u8,
    /// The segment's `WAKE_ALL` flag.
    wake_all: bool,
    /// The lock word starts naming a holder that does not exist.
    garbage_word: bool,
    bug: Option<Bug>,
    fixes: Vec<Fix>,
}

impl Config {
    fn new(roles: &[Role], iterations: u8, max_deaths: u8) -> Config {
        let names: Vec<String> = roles.iter().map(|r| format!("{r:?}")).collect();
        Config {
            name: format!(
                "{} x{iterations}, {max_deaths} death{}",
                names.join("+"),
                if max_deaths == 1 { "" } else { "s" }
            ),
            roles: roles.to_vec(),
            iterations,
            yields: 1,
            max_deaths,
            wake_all: false,
            garbage_word: false,
            bug: None,
            fixes: Vec::new(),
        }
    }

    fn yields(mut self, n: u8) -> Config {
        self.yields = n;
        self.name.push_str(&format!(", {n} yields"));
        self
    }

    fn wake_all(mut self) -> Config {
        self.wake_all = true;
        self.name.push_str(", WAKE_ALL");
        self
    }

    fn garbage_word(mut self) -> Config {
        self.garbage_word = true;
        self.name.push_str(", garbage word");
        self
    }

    fn bug(mut self, bug: Bug) -> Config {
        self.bug = Some(bug);
        self.name.push_str(&format!(", bug {bug:?}"));
        self
    }

    fn fix(mut self, fix: Fix) -> Config {
        self.fixes.push(fix);
        self.name.push_str(&format!(", fix {fix:?}"));
        self
    }
}

// ---------------------------------------------------------------------------
// Transitions

/// Flags on a transition.
const TIMED: u8 = 1;
const DEATH: u8 = 2;
const ACQUIRE: u8 = 4;
/// A snapshot returns.
const READ_DONE: u8 = 8;
/// A watcher returns.
const WATCH_DONE: u8 = 16;

/// The properties, by the names reports use.
const MUTEX: &str = "mutual exclusion";
const OWNER: &str = "the holder is the word's owner";
const POISON: &str = "poisoned exactly on take-over";
const TORN: &str = "clean snapshot is a committed value";
const SPURIOUS: &str = "interrupted snapshot only for a dead writer";
const WATCH: &str = "watchers woken by a committed write";
const WATCH_LIVE: &str = "watcher returns after a committed write";
const LIVE_UNTIMED: &str = "free lock acquired without timeouts";
const LIVE_TIMED: &str = "free or dead-held lock acquired";
const READ_LIVE: &str = "snapshot returns";

struct Succ {
    st: State,
    pid: u8,
    note: &'static str,
    flags: u8,
    bad: Option<(&'static str, String)>,
}

struct Model {
    cfg: Config,
}

impl Model {
    fn initial(&self) -> State {
        assert!(self.cfg.roles.len() <= MAX_PROCS);
        let mut procs = [Proc::IDLE; MAX_PROCS];
        for (p, role) in procs.iter_mut().zip(&self.cfg.roles) {
            p.pc = role.first();
            p.alive = true;
            p.left = self.cfg.iterations;
        }
        State {
            word: if self.cfg.garbage_word { GARBAGE } else { 0 },
            sleepers: 0,
            poisoned: false,
            seq: 0,
            a: 0,
            b: 0,
            procs,
            history: [0; MAX_GEN],
            deaths: 0,
            taken_over: false,
            pending_dead: false,
        }
    }

    fn bug(&self, bug: Bug) -> bool {
        self.cfg.bug == Some(bug)
    }

    fn fixed(&self, fix: Fix) -> bool {
        self.cfg.fixes.contains(&fix)
    }

    /// Whether the holder named by `word` is dead (`is_dead_holder`: one
    /// look at `/proc`, taken as atomic).
    fn dead_holder(st: &State, word: u8) -> bool {
        match ident(word) {
            0 => false,
            GARBAGE => true,
            id => !st.procs[usize::from(id - 1)].alive,
        }
    }

    /// Whether a process died holding the lock or in the middle of a write
    /// that nobody has committed since: what makes a snapshot give up on the
    /// write in progress.
    fn writer_died(st: &State) -> bool {
        st.pending_dead || Self::dead_holder(st, st.word)
    }

    /// Every transition from `st`.
    fn successors(&self, st: &State, out: &mut Vec<Succ>) {
        for i in 0..self.cfg.roles.len() {
            let p = st.procs[i];
            if !p.alive {
                continue;
            }
            if p.blocked {
                // The timeout (50 ms on the lock word, 1 ms for a snapshot,
                // `left.min(CHECK_INTERVAL)` for a watcher), or a signal.
                // The deliberate bug lets a watcher sleep until woken.
                if !(p.pc == Pc::WNap && self.bug(Bug::WatcherSleepsUntilWoken)) {
                    let mut n = *st;
                    n.procs[i].blocked = false;
                    n.procs[i].pc = p.pc.after_wait();
                    out.push(Succ {
                        st: n,
                        pid: i as u8,
                        note: "futex::wait times out",
                        flags: TIMED,
                        bad: None,
                    });
                }
            } else if p.pc != Pc::Done {
                self.step(st, i, out);
            }
            if self.cfg.roles[i].mortal() && p.pc != Pc::Done && st.deaths < self.cfg.max_deaths {
                let mut n = *st;
                n.deaths += 1;
                n.procs[i].alive = false;
                n.procs[i].blocked = false;
                if p.pc.holding() && st.seq & 1 != 0 {
                    n.pending_dead = true;
                }
                out.push(Succ {
                    st: n,
                    pid: i as u8,
                    note: "dies (SIGKILL)",
                    flags: DEATH,
                    bad: None,
                });
            }
        }
    }

    /// The next step of process `i`, which is alive, awake and not done.
    fn step(&self, st: &State, i: usize, out: &mut Vec<Succ>) {
        let role = self.cfg.roles[i];
        let me = i as u8 + 1;
        let p = st.procs[i];
        let mut n = *st;
        let pid = i as u8;
        let push = |out: &mut Vec<Succ>, st: State, note: &'static str, flags: u8| {
            out.push(Succ {
                st,
                pid,
                note,
                flags,
                bad: None,
            })
        };
        match p.pc {
            Pc::Done => unreachable!(),

            // ---- lock() ------------------------------------------------
            Pc::Fast => {
                // RawLock::acquire / acquire_until:
                // `.compare_exchange(0, me, Ordering::Acquire, Ordering::Relaxed)`
                if st.word == 0 {
                    n.word = me;
                    n.procs[i].pc = Pc::GuardPending;
                    push(out, n, "acquire: CAS(0, me) ok", ACQUIRE);
                } else {
                    n.procs[i].pc = Pc::SlowLoad;
                    push(out, n, "acquire: CAS(0, me) fails", 0);
                }
            }
            Pc::SlowLoad => {
                // acquire_slow: `let mut v = self.word.load(Ordering::Relaxed);`
                n.procs[i].v = st.word;
                n.procs[i].yields = self.cfg.yields;
                n.procs[i].pc = if self.cfg.yields > 0 {
                    Pc::Yield
                } else {
                    Pc::SleepersInc
                };
                push(out, n, "acquire_slow: load word", 0);
            }
            Pc::Yield => {
                // acquire_slow, `for _ in 0..YIELDS`: a free word is tried
                // with `compare_exchange(v, me | (v & WATCHED), ..)`, a held
                // one is read again after `yield_now`:
                // `v = self.word.load(Ordering::Relaxed);`
                if ident(p.v) == 0 && st.word == p.v {
                    n.word = me | (p.v & V);
                    let q = &mut n.procs[i];
                    q.pc = Pc::GuardPending;
                    q.v = 0;
                    q.yields = 0;
                    push(out, n, "acquire_slow: CAS(v, me|V) ok", ACQUIRE);
                    return;
                }
                let q = &mut n.procs[i];
                q.v = st.word;
                q.yields -= 1;
                if q.yields == 0 {
                    q.pc = Pc::SleepersInc;
                }
                let note = if ident(p.v) == 0 {
                    "acquire_slow: CAS(v, me|V) fails"
                } else {
                    "acquire_slow: yield_now, load word"
                };
                push(out, n, note, 0);
            }
            Pc::SleepersInc => {
                // acquire_slow: `self.sleepers.fetch_add(1, Ordering::SeqCst);`
                n.sleepers += 1;
                n.procs[i].v = 0;
                n.procs[i].seen = 0;
                n.procs[i].pc = Pc::Load;
                push(out, n, "acquire_slow: sleepers += 1", 0);
            }
            Pc::Load => {
                // sleep_until_acquired: `let v = self.word.load(Ordering::Relaxed);`
                let v = st.word;
                n.procs[i].v = v;
                if ident(v) == 0 {
                    n.procs[i].pc = Pc::SleepersLoad;
                    push(out, n, "sleep loop: load word (free)", 0);
                } else if ident(v) != p.seen {
                    // `if identity(v) != seen_owner { seen_owner = ..; }`
                    n.procs[i].seen = ident(v);
                    self.nap(n, i, "sleep loop: load word (new owner)", 0, out);
                } else {
                    // Same owner: either CHECK_INTERVAL has not passed yet,
                    // or it has and the owner is checked
                    // (`} else if now.duration_since(seen_since) >= CHECK_INTERVAL {`).
                    self.nap(n, i, "sleep loop: load word (same owner)", 0, out);
                    n.procs[i].pc = Pc::DeadCheck;
                    push(
                        out,
                        n,
                        "sleep loop: load word (same owner, 50 ms passed)",
                        TIMED,
                    );
                }
            }
            Pc::SleepersLoad => {
                // sleep_until_acquired:
                // `let flag = if self.sleepers.load(Ordering::SeqCst) > 1 {`
                n.procs[i].flag = st.sleepers > 1 && !self.bug(Bug::AcquireDropsWaiters);
                n.procs[i].pc = Pc::Cas;
                push(out, n, "sleep loop: load sleepers", 0);
            }
            Pc::Cas => {
                // sleep_until_acquired:
                // `compare_exchange(v, me | flag | (v & WATCHED), Acquire, Relaxed)`
                if st.word == p.v {
                    n.word = me | if p.flag { W } else { 0 } | (p.v & V);
                    n.procs[i].pc = Pc::DecGot;
                    n.procs[i].v = 0;
                    n.procs[i].flag = false;
                    push(out, n, "sleep loop: CAS(v, me|flag|V) ok", ACQUIRE);
                } else {
                    // `continue`
                    n.procs[i].pc = Pc::Load;
                    n.procs[i].flag = false;
                    push(out, n, "sleep loop: CAS(v, me|flag|V) fails", 0);
                }
            }
            Pc::DeadCheck => {
                // take_over_if_dead: `if !self.is_dead_holder(v) {`
                let dead = Self::dead_holder(st, p.v) || self.bug(Bug::TakeOverLiveHolder);
                if dead {
                    n.procs[i].pc = Pc::TakeSleepers;
                    push(out, n, "take_over_if_dead: holder dead", 0);
                } else {
                    self.nap(n, i, "take_over_if_dead: holder alive", 0, out);
                }
            }
            Pc::TakeSleepers | Pc::TrySleepers => {
                // take_over_if_dead:
                // `let others = self.sleepers.load(Ordering::SeqCst) > u32::from(counted);`
                // `let flag = if others || v & WAITERS != 0 {`
                let counted = u8::from(p.pc == Pc::TakeSleepers);
                n.procs[i].flag = st.sleepers > counted || p.v & W != 0;
                n.procs[i].pc = if p.pc == Pc::TakeSleepers {
                    Pc::TakeCas
                } else {
                    Pc::TryTakeCas
                };
                push(out, n, "take_over_if_dead: load sleepers", 0);
            }
            Pc::TakeCas | Pc::TryTakeCas => {
                // take_over_if_dead:
                // `.compare_exchange(v, me | flag | (v & WATCHED), Acquire, Relaxed)`
                if st.word == p.v {
                    let mut bad = None;
                    if !Self::dead_holder(st, p.v) {
                        bad = Some((OWNER, "took the lock from a live holder".to_string()));
                    }
                    n.word = me | if p.flag { W } else { 0 } | (p.v & V);
                    n.taken_over = true;
                    let q = &mut n.procs[i];
                    q.took_over = true;
                    q.flag = false;
                    q.v = 0;
                    q.seen = 0;
                    q.pc = if p.pc == Pc::TakeCas {
                        Pc::Poison
                    } else {
                        Pc::TryPoison
                    };
                    out.push(Succ {
                        st: n,
                        pid,
                        note: "take_over_if_dead: CAS ok (taken over)",
                        flags: ACQUIRE,
                        bad,
                    });
                } else if p.pc == Pc::TakeCas {
                    // `.ok()?` returns None: the sleep loop naps with the old v.
                    n.procs[i].flag = false;
                    self.nap(n, i, "take_over_if_dead: CAS fails", 0, out);
                } else {
                    // try_acquire returns None.
                    n.procs[i].finish(role);
                    push(out, n, "try_acquire: take-over CAS fails, WouldBlock", 0);
                }
            }
            Pc::Poison | Pc::TryPoison => {
                // take_over: `self.record(POISON_KILLED, holder);`
                if !self.bug(Bug::TakeOverWithoutPoison) {
                    n.poisoned = true;
                }
                n.procs[i].pc = if p.pc == Pc::Poison {
                    Pc::DecGot
                } else {
                    Pc::GuardPending
                };
                push(out, n, "take_over_if_dead: poisoned = 1", 0);
            }
            Pc::SetW => {
                // sleep_until_acquired:
                // `.compare_exchange(v, v | WAITERS, Ordering::Relaxed, Ordering::Relaxed)`
                if st.word == p.v {
                    n.word = p.v | W;
                    n.procs[i].v = p.v | W;
                    n.procs[i].pc = Pc::Wait;
                    push(out, n, "sleep loop: CAS(v, v|W) ok", 0);
                } else {
                    // `continue`
                    n.procs[i].pc = Pc::Load;
                    push(out, n, "sleep loop: CAS(v, v|W) fails", 0);
                }
            }
            Pc::Wait => {
                // sleep_until_acquired:
                // `futex::wait(&self.word, (v | WAITERS) as u32, nap);`
                // (`v` here already holds the value waited on.)
                if st.word == p.v {
                    n.procs[i].blocked = true;
                    push(out, n, "futex::wait(word) sleeps", 0);
                } else {
                    n.procs[i].pc = Pc::Load;
                    push(out, n, "futex::wait(word) returns (word differs)", 0);
                }
            }
            Pc::DecGot => {
                // acquire_slow: `self.sleepers.fetch_sub(1, Ordering::SeqCst);`
                n.sleepers -= 1;
                n.procs[i].pc = Pc::GuardPending;
                n.procs[i].seen = 0;
                push(out, n, "acquire_slow: sleepers -= 1 (acquired)", 0);
            }
            Pc::GaveUpSleepers => {
                // sleep_until_acquired, the deadline passed:
                // `if self.sleepers.load(Ordering::SeqCst) > 1 {`
                n.procs[i].pc = if st.sleepers > 1 {
                    Pc::GaveUpWake
                } else {
                    Pc::DecGaveUp
                };
                push(out, n, "give up: load sleepers", 0);
            }
            Pc::GaveUpWake => {
                // sleep_until_acquired: `futex::wake(&self.word, 1);`, then
                // `return None;`
                n.procs[i].pc = Pc::DecGaveUp;
                self.wake_word(st, n, "give up: futex::wake(word, 1)", pid, out);
            }
            Pc::DecGaveUp => {
                // acquire_slow: `self.sleepers.fetch_sub(1, Ordering::SeqCst);`
                n.sleepers -= 1;
                n.procs[i].finish(role);
                push(out, n, "acquire_slow: sleepers -= 1 (timed out)", 0);
            }

            // ---- try_lock() --------------------------------------------
            Pc::TryCas => {
                // try_acquire: `compare_exchange(v, me | (v & WATCHED), ..)`,
                // starting from v = 0.
                if st.word == p.v {
                    n.word = me | (p.v & V);
                    n.procs[i].v = 0;
                    n.procs[i].pc = Pc::GuardPending;
                    push(out, n, "try_acquire: CAS(v, me|V) ok", ACQUIRE);
                } else if ident(st.word) == 0 {
                    // `Err(now) if identity(now) == 0 => v = now,`
                    n.procs[i].v = st.word;
                    push(out, n, "try_acquire: CAS fails, free: retry", 0);
                } else {
                    // `Err(now) => { self.take_over_if_dead(now, me, false)?; break; }`
                    n.procs[i].v = st.word;
                    n.procs[i].pc = Pc::TryDeadCheck;
                    push(out, n, "try_acquire: CAS fails, held", 0);
                }
            }
            Pc::TryDeadCheck => {
                // take_over_if_dead: `if !self.is_dead_holder(v) {`
                if Self::dead_holder(st, p.v) || self.bug(Bug::TakeOverLiveHolder) {
                    n.procs[i].pc = Pc::TrySleepers;
                    push(out, n, "take_over_if_dead: holder dead", 0);
                } else {
                    n.procs[i].finish(role);
                    push(out, n, "try_acquire: holder alive, WouldBlock", 0);
                }
            }

            // ---- the guard ----------------------------------------------
            Pc::GuardPending => {
                // Held::new: `seq: versions.seq_held(),` (a relaxed load the
                // guard keeps: only the holder writes `seq` while it holds
                // the lock, so begin_write and end_write store from it
                // without loading `seq` again; odd: a write is pending)
                n.procs[i].writing = st.seq & 1 != 0;
                // Fix WritersTakeTheMark: the dead writer may have taken a
                // mark, so the adopter wakes after its commit.
                n.procs[i].wake_seq = st.seq & 1 != 0 && self.fixed(Fix::WritersTakeTheMark);
                n.procs[i].s = st.seq;
                n.procs[i].pc = Pc::GuardPoison;
                push(out, n, "guard: load seq (write pending?)", 0);
            }
            Pc::GuardPoison => {
                // Shared::guard: `if self.raw().is_poisoned()`
                let mut bad = None;
                if p.took_over && !st.poisoned {
                    bad = Some((POISON, "a take-over's guard is not poisoned".to_string()));
                }
                // The user's code: no write, or a write through DerefMut
                // (which begins one unless the guard adopted a pending one).
                let mut q = n;
                q.procs[i].pc = if p.writing { Pc::EndStore } else { Pc::RelFast };
                out.push(Succ {
                    st: q,
                    pid,
                    note: "guard: load poisoned; drop without writing",
                    flags: 0,
                    bad: bad.clone(),
                });
                let mut q = n;
                q.procs[i].pc = if p.writing {
                    Pc::WriteA
                } else {
                    Pc::BeginStore
                };
                out.push(Succ {
                    st: q,
                    pid,
                    note: "guard: load poisoned; write through DerefMut",
                    flags: 0,
                    bad,
                });
            }
            Pc::BeginStore => {
                // Held::begin_write: `self.seq = self.seq.wrapping_add(1);`
                // (even: no write pending), then Versions::begin_write:
                // `self.seq.store(odd, Ordering::Relaxed);`
                debug_assert!(p.s & 1 == 0);
                n.seq = p.s + 1;
                n.procs[i].s = p.s + 1;
                n.procs[i].writing = true;
                n.procs[i].pc = if self.fixed(Fix::WritersTakeTheMark) {
                    Pc::BeginMarkLoad
                } else {
                    Pc::WriteA
                };
                push(out, n, "begin_write: seq = s+1 (s kept from the guard)", 0);
            }
            Pc::BeginMarkLoad => {
                // Fix WritersTakeTheMark: `let v = lock.word.load(Relaxed)`
                n.procs[i].pc = if st.word & V != 0 {
                    Pc::BeginMarkCas
                } else {
                    Pc::WriteA
                };
                n.procs[i].v = if st.word & V != 0 { st.word } else { 0 };
                push(out, n, "(fix) begin_write: load word", 0);
            }
            Pc::BeginMarkCas => {
                // Fix WritersTakeTheMark: `compare_exchange(v, v & !WATCHED, ..)`
                if st.word == p.v {
                    n.word = p.v & !V;
                    n.procs[i].wake_seq = true;
                    n.procs[i].v = 0;
                    n.procs[i].pc = Pc::WriteA;
                    push(out, n, "(fix) begin_write: CAS takes the mark", 0);
                } else {
                    n.procs[i].v = st.word;
                    push(out, n, "(fix) begin_write: CAS fails", 0);
                }
            }
            Pc::WriteA => {
                // The value's first word, written through `&mut T`; each
                // write stores the number of the generation it makes.
                n.a = (p.s >> 1) + 1;
                n.procs[i].pc = Pc::WriteB;
                push(out, n, "write value word a", 0);
            }
            Pc::WriteB => {
                n.b = (p.s >> 1) + 1;
                n.procs[i].pc = Pc::EndStore;
                push(out, n, "write value word b", 0);
            }
            Pc::EndStore => {
                // Held's drop -> Versions::release_plain (or end_write):
                // `self.seq.store(seq.wrapping_add(1), Ordering::Release);`
                // with `seq` the guard's odd counter (no load of `seq`).
                debug_assert!(p.s & 1 == 1);
                n.seq = p.s + 1;
                let g = usize::from(n.seq >> 1);
                assert!(g < MAX_GEN, "raise MAX_GEN");
                n.history[g] = (st.a << 4) | st.b;
                n.pending_dead = false;
                n.procs[i].pc = Pc::RelFast;
                push(out, n, "end_write: seq = s+1 (committed)", 0);
            }
            Pc::RelFast => {
                // RawLock::release_swap: `self.word.swap(0, Ordering::Release)`,
                // then release_marked unless the word was exactly `me`:
                // `if identity(old) != me {` (put back; not ours).
                let old = st.word;
                n.word = 0;
                n.procs[i].v = old;
                if old != me && ident(old) != me {
                    let bad = Some((OWNER, "releasing a lock that is not ours".to_string()));
                    n.word = old;
                    n.procs[i].finish(role);
                    out.push(Succ {
                        st: n,
                        pid,
                        note: "release: swap finds the word not ours",
                        flags: 0,
                        bad,
                    });
                    return;
                }
                let note = if old == me {
                    "release: swap (word was me)"
                } else {
                    "release: swap (word was marked)"
                };
                self.after_release(n, i, note, out);
            }
            Pc::RelRestore => {
                // release_marked, a holder that wrote nothing on a watched
                // word: `self.mark_watched();` (a read-modify-write that
                // sets `V` on whatever the word is now), `Watchers::Restored`.
                n.word = st.word | V;
                n.procs[i].pc = Pc::RelSeqCheck;
                push(out, n, "release_marked: mark_watched puts V back", 0);
            }
            Pc::RelSeqCheck => {
                // wake_watchers, `Watchers::Restored`:
                // `self.seq.load(Ordering::Relaxed) != seq` (the guard's
                // counter): another holder committed before the mark was back.
                if st.seq != p.s {
                    n.procs[i].pc = Pc::SeqWake;
                    push(out, n, "wake_watchers: seq moved since (wake)", 0);
                } else {
                    n.procs[i].finish(role);
                    push(out, n, "wake_watchers: seq unchanged", 0);
                }
            }
            Pc::RelWake => {
                // release_marked: `futex::wake(&self.word, 1);`
                let mut after = n;
                Self::after_word_wake(&mut after, i, self);
                if self.bug(Bug::UnlockForgetsWake) {
                    push(out, after, "release_marked: (no wake)", 0);
                    return;
                }
                self.wake_word(st, after, "futex::wake(word, 1)", pid, out);
            }
            Pc::SeqWake => {
                // Versions::wake: `futex::wake(&self.seq, i32::MAX);`
                for j in 0..self.cfg.roles.len() {
                    let q = &mut n.procs[j];
                    if q.alive && q.blocked && q.pc.futex() == Some(Futex::Seq) {
                        q.blocked = false;
                        q.pc = q.pc.after_wait();
                    }
                }
                n.procs[i].finish(role);
                push(out, n, "futex::wake(seq, all)", 0);
            }

            // ---- snapshot() ---------------------------------------------
            Pc::RdSeq => {
                // try_read: `let s1 = self.seq_acquire();`
                // `if s1 & 1 != 0 { return Err(s1); }`
                n.procs[i].s = st.seq;
                if st.seq & 1 != 0 && !self.bug(Bug::ReaderIgnoresOdd) {
                    // read_slow with an odd s1: spin or yield and try again,
                    // or nap on seq, or (once the naps begin, then every
                    // CHECK_INTERVAL) see whether the writer still lives.
                    let mut q = n;
                    q.procs[i].pc = Pc::RdSeq;
                    push(out, q, "try_read: seq odd; spin", 0);
                    let mut q = n;
                    q.procs[i].pc = Pc::RdNap;
                    push(out, q, "try_read: seq odd; nap", 0);
                    let mut q = n;
                    q.procs[i].pc = Pc::RdCheckSeq;
                    push(out, q, "try_read: seq odd; 50 ms passed", TIMED);
                } else {
                    n.procs[i].pc = Pc::RdA;
                    push(out, n, "try_read: load seq (even)", 0);
                }
            }
            Pc::RdA => {
                // try_read: `racy::copy_into(src, out.as_mut_ptr())`, first word.
                n.procs[i].ca = st.a;
                n.procs[i].pc = Pc::RdB;
                push(out, n, "try_read: copy word a", 0);
            }
            Pc::RdB => {
                n.procs[i].cb = st.b;
                n.procs[i].pc = Pc::RdRecheck;
                push(out, n, "try_read: copy word b", 0);
            }
            Pc::RdRecheck => {
                // try_read: `if self.seq.load(Ordering::Relaxed) == s1 {`
                if st.seq == p.s || self.bug(Bug::ReaderSkipsRecheck) {
                    let g = usize::from(p.s >> 1);
                    let copy = (p.ca << 4) | p.cb;
                    let bad = (copy != st.history[g]).then(|| {
                        (
                            TORN,
                            format!(
                                "P{} returned Clean({g}) = ({}, {}), but generation {g} is ({}, {})",
                                i + 1,
                                p.ca,
                                p.cb,
                                st.history[g] >> 4,
                                st.history[g] & 0xf
                            ),
                        )
                    });
                    n.procs[i].finish(role);
                    out.push(Succ {
                        st: n,
                        pid,
                        note: "try_read: seq unchanged: Read::Clean",
                        flags: READ_DONE,
                        bad,
                    });
                } else {
                    // `Err(s1) if s1 & 1 == 0 => continue,`
                    n.procs[i].pc = Pc::RdSeq;
                    push(out, n, "try_read: seq changed: copy again", 0);
                }
            }
            Pc::RdNap => {
                // read_slow: `futex::wait(&self.seq, s1 as u32, Duration::from_millis(1));`
                if st.seq == p.s {
                    n.procs[i].blocked = true;
                    push(out, n, "futex::wait(seq) sleeps (1 ms)", 0);
                } else {
                    n.procs[i].pc = Pc::RdSeq;
                    push(out, n, "futex::wait(seq) returns (seq differs)", 0);
                }
            }
            Pc::RdCheckSeq => {
                // read_slow: `if self.seq.load(Ordering::Acquire) == s1`
                if st.seq == p.s {
                    n.procs[i].justified = Self::writer_died(st);
                    n.procs[i].pc = Pc::RdHolderDied;
                    push(out, n, "read_slow: seq still s1", 0);
                } else {
                    n.procs[i].pc = Pc::RdSeq;
                    n.procs[i].justified = false;
                    push(out, n, "read_slow: seq moved on", 0);
                }
            }
            Pc::RdHolderDied => {
                // read_slow: `lock.holder_died()`:
                // `self.is_dead_holder(self.word.load(Ordering::Relaxed))`
                n.procs[i].justified |= Self::writer_died(st);
                n.procs[i].pc = if !Self::dead_holder(st, st.word) {
                    Pc::RdIsLocked
                } else if self.bug(Bug::ReaderTrustsOneSeqLoad) {
                    Pc::RdIntA
                } else {
                    Pc::RdGiveUpSeq
                };
                push(out, n, "read_slow: holder_died()", 0);
            }
            Pc::RdIsLocked => {
                // read_slow: `!lock.is_locked()`:
                // `identity(self.word.load(Ordering::Relaxed)) != 0`
                n.procs[i].justified |= Self::writer_died(st);
                if ident(st.word) == 0 {
                    n.procs[i].pc = if self.bug(Bug::ReaderTrustsOneSeqLoad) {
                        Pc::RdIntA
                    } else {
                        Pc::RdGiveUpSeq
                    };
                    push(out, n, "read_slow: lock free", 0);
                } else {
                    n.procs[i].pc = Pc::RdSeq;
                    n.procs[i].justified = false;
                    push(out, n, "read_slow: lock held by a live holder", 0);
                }
            }
            Pc::RdGiveUpSeq => {
                // read_slow, after the lock word:
                // `&& self.seq_after_reads() == s1 {` (an acquire fence, then
                // the load: on weakly ordered CPUs too, after the lock word)
                if st.seq == p.s {
                    n.procs[i].justified |= Self::writer_died(st);
                    n.procs[i].pc = Pc::RdIntA;
                    push(out, n, "read_slow: seq still s1 again: give up", 0);
                } else {
                    n.procs[i].pc = Pc::RdSeq;
                    n.procs[i].justified = false;
                    push(out, n, "read_slow: seq moved on meanwhile", 0);
                }
            }
            Pc::RdIntA => {
                // read_slow: `racy::copy_into(src, out.as_mut_ptr())`
                n.procs[i].ca = st.a;
                n.procs[i].pc = Pc::RdIntB;
                push(out, n, "read_slow: copy word a", 0);
            }
            Pc::RdIntB => {
                // read_slow: `return Read::Interrupted(s1 >> 1);`
                let bad = (!p.justified).then(|| {
                    (
                        SPURIOUS,
                        format!(
                            "P{} returned Read::Interrupted (a poisoned snapshot) while \
                             no writer had died in the middle of a write",
                            i + 1
                        ),
                    )
                });
                n.procs[i].finish(role);
                out.push(Succ {
                    st: n,
                    pid,
                    note: "read_slow: copy word b; Read::Interrupted",
                    flags: READ_DONE,
                    bad,
                });
            }

            // ---- wait_for_change() --------------------------------------
            Pc::WGeneration0 => {
                // The caller: `let seen = shared.generation();`
                n.procs[i].seen = st.seq >> 1;
                n.procs[i].pc = Pc::WGeneration;
                push(out, n, "caller: seen = generation()", 0);
            }
            Pc::WGeneration => {
                // Versions::wait: `let g = self.generation(); if g != seen { return }`
                if st.seq >> 1 != p.seen {
                    n.procs[i].finish(role);
                    push(out, n, "wait: generation changed: return", WATCH_DONE);
                } else {
                    n.procs[i].pc = if role == Role::ReadOnlyWatcher {
                        // `Slot::wait_for_change`: a read-only handle passes
                        // no lock, so nothing marks the word.
                        Pc::WSeq
                    } else {
                        Pc::WMarkLoad
                    };
                    push(out, n, "wait: generation unchanged", 0);
                }
            }
            Pc::WMarkLoad => {
                // mark_watched: `let mut v = self.word.load(Ordering::Relaxed);`
                n.procs[i].v = st.word;
                n.procs[i].pc = Pc::WMarkCas;
                push(out, n, "mark_watched: load word", 0);
            }
            Pc::WMarkCas => {
                // mark_watched: `compare_exchange_weak(v, v | WATCHED, Acquire, Relaxed)`
                if st.word == p.v {
                    n.word = p.v | V;
                    n.procs[i].v = 0;
                    n.procs[i].pc = Pc::WSeq;
                    push(out, n, "mark_watched: CAS(v, v|V) ok", 0);
                } else {
                    n.procs[i].v = st.word;
                    push(out, n, "mark_watched: CAS fails", 0);
                }
            }
            Pc::WSeq => {
                // Versions::wait: `let s = self.seq.load(Ordering::Acquire);`
                // `if s >> 1 != seen { return Some(s >> 1); }`
                if st.seq >> 1 != p.seen {
                    n.procs[i].finish(role);
                    push(out, n, "wait: load seq: changed: return", WATCH_DONE);
                } else if st.seq & 1 != 0 && self.fixed(Fix::WritersTakeTheMark) {
                    // The writer may have taken the marks before ours: look
                    // again rather than sleep.
                    n.procs[i].pc = Pc::WGeneration;
                    push(out, n, "(fix) wait: load seq: odd: look again", 0);
                } else {
                    n.procs[i].s = st.seq;
                    n.procs[i].pc = Pc::WNap;
                    push(out, n, "wait: load seq: unchanged", 0);
                }
            }
            Pc::WNap => {
                // Versions::wait:
                // `futex::wait(&self.seq, s as u32, left.min(CHECK_INTERVAL));`
                // The wait ends by a wake, or (a timed transition) after at
                // most 50 ms; either way the loop looks again.
                if st.seq == p.s {
                    n.procs[i].blocked = true;
                    push(out, n, "futex::wait(seq) sleeps", 0);
                } else {
                    n.procs[i].pc = Pc::WGeneration;
                    push(out, n, "futex::wait(seq) returns (seq differs)", 0);
                }
            }
        }
    }

    /// `futex::wake(word, 1)`: `after` is the state with the waker's
    /// program counter moved on; one successor for each sleeper it may pick.
    fn wake_word(
        &self,
        st: &State,
        after: State,
        note: &'static str,
        pid: u8,
        out: &mut Vec<Succ>,
    ) {
        let sleepers: Vec<usize> = (0..self.cfg.roles.len())
            .filter(|&j| {
                let q = st.procs[j];
                q.alive && q.blocked && q.pc.futex() == Some(Futex::Word)
            })
            .collect();
        if sleepers.is_empty() {
            out.push(Succ {
                st: after,
                pid,
                note,
                flags: 0,
                bad: None,
            });
        }
        for j in sleepers {
            let mut w = after;
            w.procs[j].blocked = false;
            w.procs[j].pc = Pc::Load;
            out.push(Succ {
                st: w,
                pid,
                note,
                flags: 0,
                bad: None,
            });
        }
    }

    /// The nap at the end of the sleep loop, entered with `v` in process
    /// `i`'s locals: a timed locker may give up (its deadline passed:
    /// `_ => return None`), then the sleeper sets `W` unless `v` has it
    /// (`if v & WAITERS == 0 && ...compare_exchange(v, v | WAITERS, ..)`)
    /// and waits.
    fn nap(&self, mut n: State, i: usize, note: &'static str, flags: u8, out: &mut Vec<Succ>) {
        let pid = i as u8;
        if self.cfg.roles[i] == Role::TimedLocker {
            // `Some(left) if !left.is_zero() => nap = nap.min(left),`, or
            // else the deadline passed.
            let mut q = n;
            q.procs[i].pc = if self.bug(Bug::GiveUpSwallowsWake) {
                Pc::DecGaveUp
            } else {
                Pc::GaveUpSleepers
            };
            out.push(Succ {
                st: q,
                pid,
                note: "deadline passed: give up",
                flags: flags | TIMED,
                bad: None,
            });
        }
        let p = &mut n.procs[i];
        // The deliberate bug sleeps on `v` without setting `W`.
        p.pc = if p.v & W != 0 || self.bug(Bug::SleepWithoutWaiters) {
            Pc::Wait
        } else {
            Pc::SetW
        };
        out.push(Succ {
            st: n,
            pid,
            note,
            flags,
            bad: None,
        });
    }

    /// After the releasing compare-and-swap, with the word it replaced in
    /// `v`: wake a lock sleeper if `W` was set, then the watchers if the
    /// release reports `V` or the segment wakes on every write.
    fn after_release(&self, mut n: State, i: usize, note: &'static str, out: &mut Vec<Succ>) {
        let p = n.procs[i];
        if p.v & W != 0 {
            n.procs[i].pc = Pc::RelWake;
        } else {
            Self::after_word_wake(&mut n, i, self);
        }
        out.push(Succ {
            st: n,
            pid: i as u8,
            note,
            flags: 0,
            bad: None,
        });
    }

    /// After the word's sleeper is woken (if any): a watched word (`V`,
    /// which the swap cleared) is reported if the holder wrote
    /// (`Watchers::Wake`), or put back if it did not (`RelRestore`);
    /// reported, or the segment's `WAKE_ALL`, make the guard's drop wake
    /// `seq`.
    fn after_word_wake(n: &mut State, i: usize, model: &Model) {
        let p = n.procs[i];
        let marked = p.v & V != 0;
        // The alternative fix: writers took the mark when they began, so
        // a mark still on the word is always put back.
        let keeps = if model.fixed(Fix::WritersTakeTheMark) {
            marked
        } else {
            marked && !p.writing
        };
        if keeps && !model.bug(Bug::UnlockClearsWatched) {
            n.procs[i].pc = Pc::RelRestore;
            return;
        }
        let reported = !model.bug(Bug::UnlockForgetsWatchers)
            && if model.fixed(Fix::WritersTakeTheMark) {
                p.wake_seq
            } else {
                p.writing && marked
            };
        if reported || (p.writing && model.cfg.wake_all) {
            n.procs[i].pc = Pc::SeqWake;
        } else {
            n.procs[i].finish(model.cfg.roles[i]);
        }
    }

    /// Invariants of one state.
    fn check(&self, st: &State) -> Vec<(&'static str, String)> {
        let mut bad = Vec::new();
        let live = |j: usize| st.procs[j].alive;
        let k = self.cfg.roles.len();
        let holders: Vec<usize> = (0..k)
            .filter(|&j| live(j) && st.procs[j].pc.holding())
            .collect();
        if holders.len() > 1 {
            bad.push((
                MUTEX,
                format!(
                    "{} live processes hold the lock: {:?}",
                    holders.len(),
                    holders.iter().map(|j| j + 1).collect::<Vec<_>>()
                ),
            ));
        }
        for &j in &holders {
            if usize::from(ident(st.word)) != j + 1 {
                bad.push((
                    OWNER,
                    format!("P{} holds the lock but the word names another", j + 1),
                ));
            }
        }
        if st.poisoned && !st.taken_over {
            bad.push((POISON, "poisoned without a take-over".to_string()));
        }
        // A watcher asleep on a `seq` that a committed write has changed
        // must have a live waker on its way: a process that committed and
        // has not yet returned from the guard's drop.
        for j in 0..k {
            let w = st.procs[j];
            let watcher = matches!(self.cfg.roles[j], Role::Watcher | Role::ReadOnlyWatcher);
            if watcher && w.alive && w.blocked && w.pc == Pc::WNap && st.seq >> 1 != w.seen {
                // Or a releaser that is putting a watcher's mark back (it
                // wrote nothing), who wakes `seq` if it moved since it
                // locked.
                let restoring = |q: Proc| match q.pc {
                    Pc::RelRestore | Pc::RelSeqCheck => true,
                    Pc::RelWake => {
                        q.v & V != 0
                            && (!q.writing || self.fixed(Fix::WritersTakeTheMark))
                            && !self.bug(Bug::UnlockClearsWatched)
                    }
                    _ => false,
                };
                let waker = (0..k).any(|m| {
                    let q = st.procs[m];
                    q.alive
                        && ((q.writing && (q.pc.holding() || q.pc.releasing()))
                            || q.pc == Pc::SeqWake
                            || (restoring(q) && st.seq != q.s))
                });
                if !waker {
                    bad.push((
                        WATCH,
                        format!(
                            "P{} sleeps on seq = {} though generation {} was committed, \
                             and nobody will wake it (only its 50 ms nap ends)",
                            j + 1,
                            w.s,
                            st.seq >> 1
                        ),
                    ));
                }
            }
        }
        bad
    }
}

// ---------------------------------------------------------------------------
// The search

#[derive(Default)]
struct Fx(u64);

impl Hasher for Fx {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.add(u64::from(b));
        }
    }
    fn write_u8(&mut self, i: u8) {
        self.add(u64::from(i));
    }
    fn write_u32(&mut self, i: u32) {
        self.add(u64::from(i));
    }
    fn write_u64(&mut self, i: u64) {
        self.add(i);
    }
    fn write_usize(&mut self, i: usize) {
        self.add(i as u64);
    }
    fn write_isize(&mut self, i: isize) {
        self.add(i as u64);
    }
}

impl Fx {
    fn add(&mut self, w: u64) {
        self.0 = (self.0.rotate_left(5) ^ w).wrapping_mul(0x51_7c_c1_b7_27_22_0a_95);
    }
}

/// What a run found.
struct Report {
    name: String,
    states: usize,
    transitions: usize,
    millis: u128,
    /// The first counterexample found for each violated property.
    violations: BTreeMap<&'static str, String>,
}

impl Report {
    fn violated(&self) -> BTreeSet<&'static str> {
        self.violations.keys().copied().collect()
    }

    fn line(&self) -> String {
        format!(
            "{:<70} {:>9} states {:>10} transitions {:>7} ms",
            self.name, self.states, self.transitions, self.millis
        )
    }
}

struct Graph {
    states: Vec<State>,
    parent: Vec<(u32, u8, &'static str)>,
    offsets: Vec<u32>,
    targets: Vec<u32>,
    flags: Vec<u8>,
}

impl Graph {
    /// The shortest path from the start to state `id`, one line a step.
    fn trace(&self, model: &Model, id: u32) -> String {
        let mut path = vec![id];
        let mut at = id;
        while self.parent[at as usize].0 != u32::MAX {
            at = self.parent[at as usize].0;
            path.push(at);
        }
        path.reverse();
        let mut text = String::new();
        for (n, &s) in path.iter().enumerate() {
            let (_, pid, note) = self.parent[s as usize];
            if n == 0 {
                let _ = writeln!(
                    text,
                    "  start: {}",
                    describe(model, &self.states[s as usize])
                );
            } else {
                let _ = writeln!(
                    text,
                    "  {n:>2}. P{} {note}\n      {}",
                    pid + 1,
                    describe(model, &self.states[s as usize])
                );
            }
        }
        text
    }

    /// For each state, whether it can reach a transition flagged `goal`
    /// through transitions that `allowed` accepts (the goal transition
    /// included).
    fn can_reach(&self, allowed: impl Fn(u8) -> bool, goal: u8) -> Vec<bool> {
        let n = self.states.len();
        // Reverse adjacency of the allowed transitions.
        let mut count = vec![0u32; n + 1];
        for s in 0..n {
            for e in self.offsets[s] as usize..self.offsets[s + 1] as usize {
                if allowed(self.flags[e]) {
                    count[self.targets[e] as usize + 1] += 1;
                }
            }
        }
        for s in 0..n {
            count[s + 1] += count[s];
        }
        let mut fill = count.clone();
        let mut sources = vec![0u32; count[n] as usize];
        for s in 0..n {
            for e in self.offsets[s] as usize..self.offsets[s + 1] as usize {
                if allowed(self.flags[e]) {
                    let t = self.targets[e] as usize;
                    sources[fill[t] as usize] = s as u32;
                    fill[t] += 1;
                }
            }
        }
        let mut good: Vec<bool> = (0..n)
            .map(|s| {
                (self.offsets[s] as usize..self.offsets[s + 1] as usize)
                    .any(|e| self.flags[e] & goal != 0 && allowed(self.flags[e]))
            })
            .collect();
        let mut queue: Vec<u32> = (0..n as u32).filter(|&s| good[s as usize]).collect();
        while let Some(t) = queue.pop() {
            for &s in &sources[count[t as usize] as usize..count[t as usize + 1] as usize] {
                if !good[s as usize] {
                    good[s as usize] = true;
                    queue.push(s);
                }
            }
        }
        good
    }
}

fn describe(model: &Model, st: &State) -> String {
    let word = match ident(st.word) {
        0 => "free".to_string(),
        GARBAGE => "garbage".to_string(),
        id => format!("P{id}"),
    };
    let mut text = format!(
        "word={word}{}{} sleepers={} poisoned={} seq={} value=({},{}) |",
        if st.word & W != 0 { "|W" } else { "" },
        if st.word & V != 0 { "|V" } else { "" },
        st.sleepers,
        u8::from(st.poisoned),
        st.seq,
        st.a,
        st.b
    );
    for (j, role) in model.cfg.roles.iter().enumerate() {
        let p = st.procs[j];
        let _ = write!(
            text,
            " P{}({role:?}) {:?}{}{}",
            j + 1,
            p.pc,
            if p.blocked { " asleep" } else { "" },
            if p.alive { "" } else { " DEAD" }
        );
    }
    text
}

/// Explores every state of `cfg` and checks every property.
fn run(cfg: Config) -> Report {
    let t0 = Instant::now();
    let model = Model { cfg };
    let mut index: HashMap<State, u32, BuildHasherDefault<Fx>> = HashMap::default();
    let mut g = Graph {
        states: Vec::new(),
        parent: Vec::new(),
        offsets: Vec::new(),
        targets: Vec::new(),
        flags: Vec::new(),
    };
    let mut violations: BTreeMap<&'static str, String> = BTreeMap::new();
    let init = model.initial();
    index.insert(init, 0);
    g.states.push(init);
    g.parent.push((u32::MAX, 0, "start"));
    for (prop, what) in model.check(&init) {
        violations.entry(prop).or_insert(what);
    }
    let mut succ = Vec::new();
    let mut next = 0usize;
    while next < g.states.len() {
        let st = g.states[next];
        succ.clear();
        model.successors(&st, &mut succ);
        g.offsets.push(g.targets.len() as u32);
        for s in succ.drain(..) {
            let id = match index.get(&s.st) {
                Some(&id) => id,
                None => {
                    let id = g.states.len() as u32;
                    index.insert(s.st, id);
                    g.states.push(s.st);
                    g.parent.push((next as u32, s.pid, s.note));
                    for (prop, what) in model.check(&s.st) {
                        if !violations.contains_key(prop) {
                            let text = g.trace(&model, id);
                            violations.insert(prop, format!("{what}\n{text}"));
                        }
                    }
                    id
                }
            };
            if let Some((prop, what)) = s.bad {
                if !violations.contains_key(prop) {
                    // The trace to the state before, then the step itself.
                    let mut text = g.trace(&model, next as u32);
                    let _ = writeln!(
                        text,
                        "  => P{} {}\n      {}",
                        s.pid + 1,
                        s.note,
                        describe(&model, &s.st)
                    );
                    violations.insert(prop, format!("{what}\n{text}"));
                }
            }
            g.targets.push(id);
            g.flags.push(s.flags);
        }
        next += 1;
    }
    g.offsets.push(g.targets.len() as u32);
    drop(index);

    // Liveness. Deaths never count as progress: nobody can rely on a
    // process dying.
    let k = model.cfg.roles.len();
    // Who waits for the lock: `lock()` and `try_lock_for()` callers
    // (`try_lock()` may fail whenever it likes).
    let wanted = |st: &State| {
        (0..k).any(|j| {
            matches!(model.cfg.roles[j], Locker | TimedLocker)
                && st.procs[j].alive
                && st.procs[j].pc.acquiring()
        })
    };
    let untimed = g.can_reach(|f| f & (TIMED | DEATH) == 0, ACQUIRE);
    for (s, st) in g.states.iter().enumerate() {
        if ident(st.word) == 0 && wanted(st) && !untimed[s] {
            let text = g.trace(&model, s as u32);
            violations.insert(
                LIVE_UNTIMED,
                format!(
                    "the lock is free and a live process wants it, but only a timeout \
                     can let anyone take it\n{text}"
                ),
            );
            break;
        }
    }
    drop(untimed);
    let timed = g.can_reach(|f| f & DEATH == 0, ACQUIRE);
    for (s, st) in g.states.iter().enumerate() {
        let free_or_dead = ident(st.word) == 0 || Model::dead_holder(st, st.word);
        if free_or_dead && wanted(st) && !timed[s] {
            let text = g.trace(&model, s as u32);
            violations.insert(
                LIVE_TIMED,
                format!("no live process can ever take the lock\n{text}"),
            );
            break;
        }
    }
    drop(timed);
    let reads = g.can_reach(|f| f & DEATH == 0, READ_DONE);
    for (s, st) in g.states.iter().enumerate() {
        let reading = (0..k).any(|j| {
            matches!(model.cfg.roles[j], Role::Reader)
                && st.procs[j].alive
                && st.procs[j].pc != Pc::Done
        });
        if reading && !reads[s] {
            let text = g.trace(&model, s as u32);
            violations.insert(READ_LIVE, format!("a snapshot can never return\n{text}"));
            break;
        }
    }
    drop(reads);
    // A watcher whose generation has moved on can always return, timed
    // transitions (its 50 ms naps ending) allowed. `WATCH_DONE` does not
    // say which watcher returned: exact with one watcher per run.
    let watching = |st: &State, j: usize| {
        let p = st.procs[j];
        matches!(model.cfg.roles[j], Watcher | ReadOnlyWatcher)
            && p.alive
            && !matches!(p.pc, Pc::Done | Pc::WGeneration0)
            && st.seq >> 1 != p.seen
    };
    let watchers = (0..k)
        .filter(|&j| matches!(model.cfg.roles[j], Watcher | ReadOnlyWatcher))
        .count();
    assert!(watchers <= 1, "the watcher check needs one watcher at most");
    if watchers > 0 {
        let returns = g.can_reach(|f| f & DEATH == 0, WATCH_DONE);
        for (s, st) in g.states.iter().enumerate() {
            if (0..k).any(|j| watching(st, j)) && !returns[s] {
                let text = g.trace(&model, s as u32);
                violations.insert(
                    WATCH_LIVE,
                    format!("a watcher whose generation moved on can never return\n{text}"),
                );
                break;
            }
        }
    }

    Report {
        name: model.cfg.name.clone(),
        states: g.states.len(),
        transitions: g.targets.len(),
        millis: t0.elapsed().as_millis(),
        violations,
    }
}

// ---------------------------------------------------------------------------
// The checks

/// Runs `cfg` and checks that it violates exactly the properties in
/// `expected` (each with a counterexample), and no other.
fn check(cfg: Config, expected: &[&str]) -> Report {
    let r = run(cfg);
    println!("{}", r.line());
    for (prop, text) in &r.violations {
        let tag = if expected.contains(prop) {
            "expected"
        } else {
            "VIOLATED"
        };
        println!("  {tag}: {prop}: {}", text.lines().next().unwrap_or(""));
        // The steps of the counterexample, without the states between.
        for step in text.lines().filter(|l| {
            let l = l.trim_start();
            l.starts_with("=>") || l.starts_with(|c: char| c.is_ascii_digit())
        }) {
            println!("    {step}");
        }
    }
    let unexpected: Vec<String> = r
        .violations
        .iter()
        .filter(|(prop, _)| !expected.contains(prop))
        .map(|(prop, text)| format!("violated: {prop}: {text}"))
        .collect();
    assert!(
        unexpected.is_empty(),
        "{}:\n{}",
        r.name,
        unexpected.join("\n")
    );
    let missing: Vec<&&str> = expected
        .iter()
        .filter(|prop| !r.violations.contains_key(**prop))
        .collect();
    assert!(
        missing.is_empty(),
        "{}: the checker no longer finds {missing:?}",
        r.name
    );
    r
}

/// Without timeouts, the lock cannot recover from a holder that dies after
/// its releasing compare-and-swap and before its `futex::wake`: the sleeper
/// it was to wake sleeps on. This is what the 50 ms nap is for. The checker
/// must find exactly that (and nothing else needing a timeout).
fn assert_only_the_dying_waker_needs_a_timeout(r: &Report) {
    let text = &r.violations[LIVE_UNTIMED];
    assert!(
        text.contains("RelWake DEAD"),
        "{}: a lock that needs a timeout for another reason:\n{text}",
        r.name
    );
}

/// The lock alone: lockers, timed lockers, try-lockers, with and without a
/// death, and a lock word that starts as garbage.
#[test]
fn model_lock_word_protocol() {
    check(Config::new(&[Locker, Locker], 2, 0), &[]);
    check(Config::new(&[Locker, Locker, Locker], 1, 0), &[]);
    check(Config::new(&[TimedLocker, Locker, Locker], 1, 0), &[]);
    let r = check(Config::new(&[Locker, Locker], 2, 1), &[LIVE_UNTIMED]);
    assert_only_the_dying_waker_needs_a_timeout(&r);
    let r = check(
        Config::new(&[Locker, Locker, Locker], 1, 1),
        &[LIVE_UNTIMED],
    );
    assert_only_the_dying_waker_needs_a_timeout(&r);
    let r = check(
        Config::new(&[TryLocker, Locker], 2, 1).garbage_word(),
        &[LIVE_UNTIMED],
    );
    assert_only_the_dying_waker_needs_a_timeout(&r);
    check(Config::new(&[Locker, Locker], 1, 0).garbage_word(), &[]);
}

/// Finding 2, fixed in src/lock/mod.rs: a timed locker (`try_lock_for`) whose
/// deadline passes while others sleep (`sleepers > 1`) wakes one of them
/// before it leaves. The code before (`Bug::GiveUpSwallowsWake`) let a
/// timed locker that is woken, loses the lock to a newcomer and then gives
/// up swallow the wake: another sleeper slept on a free lock until its
/// 50 ms timeout. One iteration each is not enough to find that (the
/// newcomer is the unlocker coming back).
#[test]
fn model_timed_lockers() {
    check(Config::new(&[TimedLocker, Locker, Locker], 2, 0), &[]);
    check(
        Config::new(&[TimedLocker, Locker, Locker], 2, 0).bug(Bug::GiveUpSwallowsWake),
        &[LIVE_UNTIMED],
    );
}

/// Snapshots against writers. Finding 1, fixed in src/lock/seqlock.rs: a
/// snapshot that has waited 50 ms for one write gives up only if `seq`
/// still equals `s1` after it found the lock free or its holder dead. The
/// code before (`Bug::ReaderTrustsOneSeqLoad`) looked at `seq`, then at the
/// lock word, and gave up: if the writer committed and unlocked in between,
/// the snapshot took the lock for free with the write unfinished and
/// returned `Read::Interrupted` (a `PoisonError`, and a copy that another
/// writer may be tearing), though nobody died.
#[test]
fn model_snapshots() {
    check(Config::new(&[Locker, Reader], 2, 0), &[]);
    check(Config::new(&[Locker, Locker, Reader], 1, 0), &[]);
    let r = check(
        Config::new(&[Locker, Locker, Reader], 1, 1),
        &[LIVE_UNTIMED],
    );
    assert_only_the_dying_waker_needs_a_timeout(&r);
    // The code before the fix.
    let bug = Bug::ReaderTrustsOneSeqLoad;
    check(Config::new(&[Locker, Reader], 2, 0).bug(bug), &[SPURIOUS]);
    check(
        Config::new(&[Locker, Locker, Reader], 1, 0).bug(bug),
        &[SPURIOUS],
    );
    let r = check(
        Config::new(&[Locker, Locker, Reader], 1, 1).bug(bug),
        &[SPURIOUS, LIVE_UNTIMED],
    );
    assert_only_the_dying_waker_needs_a_timeout(&r);
}

/// `wait_for_change`. Finding 3, still in the code: a watcher that reads
/// its `seen` after a writer's commit and marks `V` before that writer's
/// unlock has its mark taken by that unlock (whose wake comes before it
/// sleeps); the next write then commits without waking it. The checker
/// finds that (`WATCH`: no waker on its way). The code bounds the delay:
/// `Versions::wait` sleeps at most 50 ms at a time, then marks and looks
/// again, so with that nap (a timed transition) every watcher whose
/// generation moved on returns (`WATCH_LIVE` holds), deaths included. A
/// writer that dies between its commit and its wake leaves the watchers to
/// their nap too. `Fix::WritersTakeTheMark`, the alternative the code did
/// not take, removes the missed wake itself (but not the dying writer's).
#[test]
fn model_watchers() {
    // Today's code: the missed wake is found, the 50 ms nap recovers.
    check(Config::new(&[Locker, Watcher], 2, 0), &[WATCH]);
    check(Config::new(&[Locker, Locker, Watcher], 1, 0), &[WATCH]);
    let r = check(
        Config::new(&[Locker, Locker, Watcher], 1, 1),
        &[WATCH, LIVE_UNTIMED],
    );
    assert_only_the_dying_waker_needs_a_timeout(&r);
    // Without the nap (`wait_for_change` with no timeout before the
    // bound), the watcher that missed the wake never returns.
    check(
        Config::new(&[Locker, Watcher], 2, 0).bug(Bug::WatcherSleepsUntilWoken),
        &[WATCH, WATCH_LIVE],
    );
    // Segments that wake on every write.
    check(Config::new(&[Locker, Watcher], 2, 0).wake_all(), &[]);
    check(
        Config::new(&[Locker, Locker, ReadOnlyWatcher], 1, 0).wake_all(),
        &[],
    );
    // The alternative fix.
    check(
        Config::new(&[Locker, Watcher], 2, 0).fix(Fix::WritersTakeTheMark),
        &[],
    );
    check(
        Config::new(&[Locker, Locker, Watcher], 1, 0).fix(Fix::WritersTakeTheMark),
        &[],
    );
    let r = check(
        Config::new(&[Locker, Locker, Watcher], 1, 1).fix(Fix::WritersTakeTheMark),
        &[WATCH, LIVE_UNTIMED],
    );
    assert_only_the_dying_waker_needs_a_timeout(&r);
    assert!(
        r.violations[WATCH].contains("DEAD"),
        "{}",
        r.violations[WATCH]
    );
}

/// Each deliberate bug is found, as a violation of the property it breaks,
/// and the same configuration without the bug does not violate it.
#[test]
fn model_finds_seeded_bugs() {
    let cases: Vec<(Config, Bug, &str)> = vec![
        (
            Config::new(&[Locker, Locker], 2, 0),
            Bug::UnlockForgetsWake,
            LIVE_UNTIMED,
        ),
        (
            Config::new(&[Locker, Locker, Locker], 1, 0),
            Bug::AcquireDropsWaiters,
            LIVE_UNTIMED,
        ),
        (
            Config::new(&[Locker, Locker], 2, 0),
            Bug::SleepWithoutWaiters,
            LIVE_UNTIMED,
        ),
        (
            Config::new(&[Locker, Locker], 1, 0),
            Bug::TakeOverLiveHolder,
            MUTEX,
        ),
        (
            Config::new(&[Locker, Locker], 1, 1),
            Bug::TakeOverWithoutPoison,
            POISON,
        ),
        (
            Config::new(&[Locker, Reader], 1, 0),
            Bug::ReaderSkipsRecheck,
            TORN,
        ),
        (
            Config::new(&[Locker, Reader], 1, 0),
            Bug::ReaderIgnoresOdd,
            TORN,
        ),
        (
            Config::new(&[Locker, Reader], 1, 0),
            Bug::ReaderTrustsOneSeqLoad,
            SPURIOUS,
        ),
        (
            Config::new(&[Locker, Watcher], 1, 0),
            Bug::UnlockForgetsWatchers,
            WATCH,
        ),
        (
            Config::new(&[Locker, Watcher], 2, 0).fix(Fix::WritersTakeTheMark),
            Bug::UnlockClearsWatched,
            WATCH,
        ),
        (
            Config::new(&[Locker, Watcher], 2, 0),
            Bug::WatcherSleepsUntilWoken,
            WATCH_LIVE,
        ),
    ];
    // `Bug::GiveUpSwallowsWake` needs 1.3 million states: model_timed_lockers
    // checks it, with the same configuration without the bug.
    for (cfg, bug, prop) in cases {
        let clean = run(cfg.clone());
        println!("{}", clean.line());
        assert!(
            !clean.violations.contains_key(prop),
            "{}: violates {prop} without the bug:\n{}",
            clean.name,
            clean.violations[prop]
        );
        let broken = run(cfg.bug(bug));
        println!("{}", broken.line());
        let text = broken.violations.get(prop).unwrap_or_else(|| {
            panic!(
                "{}: the checker misses the bug (found only {:?})",
                broken.name,
                broken.violated()
            )
        });
        println!("  found: {prop}: {}", text.lines().next().unwrap_or(""));
    }
    // A read-only handle cannot mark the word: on a segment without
    // WAKE_ALL its watchers would sleep through writes until their 50 ms nap
    // ends, which is why `SharedReader::wait_for_change` refuses such
    // segments.
    let r = run(Config::new(&[Locker, ReadOnlyWatcher], 1, 0));
    println!("{}", r.line());
    assert!(
        r.violated() == BTreeSet::from([WATCH]),
        "{:?}",
        r.violated()
    );
    let r = run(Config::new(&[Locker, ReadOnlyWatcher], 1, 0).wake_all());
    assert!(r.violations.is_empty(), "{:?}", r.violated());
}

/// Every statement the model cites is still in the source. When this
/// fails, the code changed under the model: check the steps that cite the
/// statement against the new code, then update `CITED`.
#[test]
fn model_cites_code_that_exists() {
    let root = env!("CARGO_MANIFEST_DIR");
    let squash = |s: &str| s.split_whitespace().collect::<Vec<_>>().join(" ");
    let mut missing = Vec::new();
    for (file, statement) in CITED {
        let text = std::fs::read_to_string(format!("{root}/{file}")).expect(file);
        // Rustfmt may break a statement over lines: compare with runs of
        // whitespace made single spaces, and with the space after an
        // opening parenthesis dropped.
        let text = squash(&text).replace("( ", "(");
        let want = squash(statement).replace("( ", "(");
        if !text.contains(&want) {
            missing.push(format!("{file}: {statement}"));
        }
    }
    assert!(
        missing.is_empty(),
        "statements the model follows are no longer in the code:\n{}",
        missing.join("\n")
    );
}

/// Larger bounds: two iterations for three processes, more yields. About
/// half a minute and 1.3 GB, not seconds:
/// `cargo test --release --test shmstore reliability::model -- --ignored`.
#[test]
#[ignore]
fn model_larger_bounds() {
    let t0 = Instant::now();
    check(Config::new(&[Locker, Locker, Locker], 2, 0), &[]);
    check(Config::new(&[Locker, Locker], 3, 0).yields(2), &[]);
    let r = check(
        Config::new(&[Locker, Locker, Locker], 2, 1),
        &[LIVE_UNTIMED],
    );
    assert_only_the_dying_waker_needs_a_timeout(&r);
    let r = check(
        Config::new(&[TryLocker, Locker, Locker], 2, 1).garbage_word(),
        &[LIVE_UNTIMED],
    );
    assert_only_the_dying_waker_needs_a_timeout(&r);
    check(
        Config::new(&[TimedLocker, Locker, Locker], 2, 0).yields(2),
        &[],
    );
    check(Config::new(&[Locker, Locker, Reader], 2, 0), &[]);
    let r = check(
        Config::new(&[Locker, Locker, Reader], 2, 1),
        &[LIVE_UNTIMED],
    );
    assert_only_the_dying_waker_needs_a_timeout(&r);
    // Finding 3 in today's code (the 50 ms nap recovers), and the
    // alternative fix.
    check(Config::new(&[Locker, Locker, Watcher], 2, 0), &[WATCH]);
    check(
        Config::new(&[Locker, Locker, Watcher], 2, 0).fix(Fix::WritersTakeTheMark),
        &[],
    );
    check(
        Config::new(&[Locker, Locker, Watcher], 2, 0).wake_all(),
        &[],
    );
    println!("all: {} s", t0.elapsed().as_secs());
}
