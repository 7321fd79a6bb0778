//! Kill storms: worker processes (this test binary run again, see `common`)
//! update shared values as fast as they can while this process SIGKILLs a
//! random one at a random moment, starts another in its place, and does it
//! again, hundreds of times per storm (thousands in the long version).
//!
//! Each worker acknowledges every increment, after its guard is dropped, in
//! a witness segment of atomics that does not use the lock under test, and
//! announces there what it is doing (incrementing, opening, working on an
//! entry). A worker that finds a lock poisoned takes the value over
//! (`into_inner`), checks it, repairs what a killed holder left
//! half-written, clears the poison, goes on, and counts the recovery in the
//! witness. Every victim is stopped (SIGSTOP) before it is killed, so that
//! the locks it holds and the phase it announced can be read at that
//! moment; the SIGKILL then lands exactly there.
//!
//! What the storms assert, as a user would notice it:
//!
//! 1. Exact accounting: acknowledged <= final count <= acknowledged + kills
//!    that landed in the middle of an increment (a holder killed after
//!    writing keeps its write: an increment "in flight"), for a `Shared<T>`
//!    on POSIX and on System V and for counters in `Store` entries.
//! 2. Every poisoned lock is recovered: kills land on lock holders (at
//!    least one recovery per storm), every poisoning comes from such a kill
//!    (no more recoveries than kills of holders), and a value not written
//!    whole is only ever found behind a poisoned lock (`snapshot` refuses
//!    it or returns a whole value).
//! 3. Survivors always make progress: the total of acknowledgements never
//!    stands still for [`STALL_BOUND`] (a dead holder is noticed within
//!    about 50 ms).
//! 4. A store's directory under a storm of inserts, `get_or_create`s,
//!    rewrites and removes, with kills landing on the directory lock's
//!    holder: afterwards `check()` passes, every entry holds a value
//!    written whole (or is poisoned), and all its space comes back.
//! 5. Kills during `create` / `open_or_create` / `open` of fresh names:
//!    every name left behind opens as a valid value (new segments are
//!    published whole, so a name never shows a half-made one), no open
//!    takes longer than [`OPEN_BOUND`], the temporary names killed
//!    creators leave are removed by the next creator of their name, and no
//!    name is left in /dev/shm.
//!
//! Each storm prints one line of figures (`--nocapture` shows them).
//!
//! The short version (the default) kills [`SHORT_KILLS`] workers per storm
//! (four storms, about 50 s on two cores). `SHMSTORE_STORM_KILLS=N` sets
//! another number per storm, for the long version:
//!
//! ```text
//! SHMSTORE_STORM_KILLS=2500 cargo test --release --test shmstore reliability::storm -- --nocapture
//! ```

use crate::common;

use std::fmt::Debug;
use std::ops::AddAssign;
use std::os::unix::fs::FileExt;
use std::os::unix::process::ExitStatusExt;
use std::path::Path;
use std::sync::atomic::{fence, AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use common::{env_count, heavy, proc_state, role, Key, Kid, Rng, Segment, PATIENCE};
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use shmstore::inspect::{self, LockState, State};
use shmstore::{Error, Shareable, Shared, SharedAtomic, SharedGuard, Store, SysvKey};

/// Kills per storm in the short version.
const SHORT_KILLS: u64 = 500;
/// The variable that sets the kills per storm.
const KILLS_ENV: &str = "SHMSTORE_STORM_KILLS";
/// Worker processes alive at any moment.
const WORKERS: usize = 6;
/// The mean time between two kills (the gaps are uniform in twice that).
const MEAN_GAP: Duration = Duration::from_millis(10);
/// The longest the acknowledgements may stand still: a liveness bound,
/// generous against the documented 50 ms for noticing a dead holder.
const STALL_BOUND: Duration = Duration::from_secs(5);
/// How long an open may take at most: it never waits for a creator (a
/// name shows complete segments only), so this bound is generous.
const OPEN_BOUND: Duration = Duration::from_secs(10);
/// Pause loops in the middle of a write (each a `spin_loop` hint), so that
/// kills often land between the two halves of a value.
const PAUSE: u64 = 100;

/// This file's range of System V keys (see `common::Key`).
const KEY_BASE: u32 = 0x7000_0000;

/// Counters in the store storm.
const COUNTERS: usize = 4;
/// Keys of each worker's own in the store storm.
const OWN_KEYS: u64 = 8;
/// The store's capacity: the heap of `Whole256`.
const STORE_CAP: usize = 256 * 1024;

/// How many workers each storm kills.
fn kills_per_storm() -> u64 {
    env_count(KILLS_ENV, SHORT_KILLS)
}

// ===========================================================================
// Values that tell whether they were written whole

/// Spins a random while, holding whatever the caller holds.
fn pause(rng: &mut Rng) {
    for _ in 0..rng.below(PAUSE) {
        std::hint::spin_loop();
    }
}

/// A value made of parts written one after the other, which says whether
/// they belong together.
trait Checked: Shareable + Copy + Debug {
    /// A value written whole.
    fn fresh(seed: u64) -> Self;
    /// Whether all parts belong together.
    fn is_whole(&self) -> bool;
    /// Makes the parts belong together again, keeping the first one.
    fn repair(&mut self);
    /// Writes a new value in place, part by part, pausing in the middle (a
    /// kill there leaves it torn).
    fn rewrite(&mut self, seed: u64, rng: &mut Rng);
}

/// A counter with its complement: `check == !count` when written whole.
#[derive(Shareable, Clone, Copy, Debug, PartialEq)]
#[repr(C)]
struct Ledger {
    count: u64,
    check: u64,
    last_pid: u32,
    origin: u32,
}

impl Checked for Ledger {
    fn fresh(seed: u64) -> Ledger {
        Ledger {
            count: 0,
            check: !0,
            last_pid: 0,
            origin: seed as u32,
        }
    }

    fn is_whole(&self) -> bool {
        self.check == !self.count
    }

    fn repair(&mut self) {
        self.check = !self.count;
    }

    fn rewrite(&mut self, _seed: u64, rng: &mut Rng) {
        let v = self.count;
        self.count = v + 1;
        // The count is in memory before the pause, its check after it.
        std::hint::black_box(&mut *self);
        pause(rng);
        self.check = !(v + 1);
        self.last_pid = std::process::id();
    }
}

/// The word `i` of a page written with `serial`.
fn word(serial: u64, i: usize) -> u64 {
    serial.rotate_left(i as u32 * 7) ^ (i as u64).wrapping_mul(0x9e37_79b9)
}

macro_rules! page {
    ($name:ident, $words:expr) => {
        /// A serial number, words derived from it, and its complement.
        #[derive(Shareable, Clone, Copy, Debug)]
        #[repr(C)]
        struct $name {
            serial: u64,
            words: [u64; $words],
            check: u64,
        }

        impl Checked for $name {
            fn fresh(serial: u64) -> $name {
                let mut p = $name {
                    serial,
                    words: [0; $words],
                    check: !serial,
                };
                for (i, w) in p.words.iter_mut().enumerate() {
                    *w = word(serial, i);
                }
                p
            }

            fn is_whole(&self) -> bool {
                self.check == !self.serial
                    && self
                        .words
                        .iter()
                        .enumerate()
                        .all(|(i, &w)| w == word(self.serial, i))
            }

            fn repair(&mut self) {
                *self = $name::fresh(self.serial);
            }

            fn rewrite(&mut self, serial: u64, rng: &mut Rng) {
                let half = $words / 2;
                self.serial = serial;
                for (i, w) in self.words.iter_mut().enumerate().take(half) {
                    *w = word(serial, i);
                }
                // The first half is in memory before the pause.
                std::hint::black_box(&mut *self);
                pause(rng);
                for (i, w) in self.words.iter_mut().enumerate().skip(half) {
                    *w = word(serial, i);
                }
                self.check = !serial;
            }
        }
    };
}

page!(Page, 6);
page!(BigPage, 120);

/// A value as large as the heap of a store of `STORE_CAP` bytes (the
/// arithmetic of store/processes.rs: with the key `whole` and a type
/// name of 8 letters, its block and the inserting handle's first hold list
/// are exactly the heap). It fits only when every byte of the store is free.
#[derive(Shareable, Clone, Copy)]
#[repr(C)]
struct Whole256 {
    words: [u64; (STORE_CAP - 256 - common::HOLD_LIST) / 8],
}

/// What taking a lock found.
#[derive(Default, Clone, Copy)]
struct Taken {
    /// The lock was poisoned: taken over and cleared.
    recovered: bool,
    /// The value was not written whole (and was repaired).
    torn: bool,
}

/// Locks `h`, taking the value over from a holder that died: a value not
/// written whole is allowed only behind a poisoned lock, and is repaired;
/// the poison is cleared. Panics on a torn value behind a lock that is not
/// poisoned (in a worker, the storm reports the panic).
fn take<'a, T: Checked>(h: &'a Shared<T>, what: &str) -> (SharedGuard<'a, T>, Taken) {
    let (mut g, recovered) = match h.lock() {
        Ok(g) => (g, false),
        Err(p) => (p.into_inner(), true),
    };
    let torn = !g.is_whole();
    if torn {
        assert!(
            recovered,
            "{what}: a value not written whole behind a lock that is not poisoned: {:?}",
            *g
        );
        g.repair();
    }
    if recovered {
        h.clear_poison();
    }
    (g, Taken { recovered, torn })
}

/// A snapshot is a value written whole, or refused.
fn check_snapshot<T: Checked>(h: &Shared<T>, what: &str) -> bool {
    match h.snapshot() {
        Ok(v) => {
            assert!(
                v.is_whole(),
                "{what}: snapshot() gave a value not written whole: {v:?}"
            );
            false
        }
        Err(_) => true,
    }
}

// ===========================================================================
// The witness: what workers acknowledge, in atomics only

/// What the workers of a storm acknowledge and announce.
#[derive(Shareable, Default, Debug)]
#[repr(C)]
struct Witness {
    /// Increments of each counter, acknowledged after the guard was
    /// dropped.
    acked: [AtomicU64; COUNTERS],
    /// Poisoned counter locks taken over and cleared.
    recovered: [AtomicU64; COUNTERS],
    /// Counter values found torn (behind a poisoned lock) and repaired.
    torn: [AtomicU64; COUNTERS],
    /// The same for the other values (store entries, named segments).
    other_recovered: AtomicU64,
    other_torn: AtomicU64,
    /// Snapshots refused (poisoned, or a writer died in the middle).
    snapshots_refused: AtomicU64,
    /// Operations other than counter increments, completed.
    ops: AtomicU64,
    /// The next number of the name sequence (create storm).
    names: AtomicU64,
    /// The longest open (create storm), in microseconds.
    longest_open_us: AtomicU64,
    /// What each worker is doing (`IDLE`, `INCREMENTING`, ...), for the
    /// killer to read while the worker is stopped.
    phase: [AtomicU64; WORKERS],
}

/// Phases of a worker.
const IDLE: u64 = 0;
/// From before locking a counter to after acknowledging the increment.
const INCREMENTING: u64 = 1;
/// In `create`, `open_or_create` or `open` of a name.
const OPENING: u64 = 2;
/// In an operation on an entry of its own (store storm).
const ENTRY_OP: u64 = 3;
/// The same, holding the entry's lock.
const ENTRY_LOCKED: u64 = 4;

fn add(a: &AtomicU64, yes: bool) {
    if yes {
        a.fetch_add(1, Ordering::Relaxed);
    }
}

fn sum(a: &[AtomicU64]) -> u64 {
    a.iter().map(|x| x.load(Ordering::Relaxed)).sum()
}

impl Witness {
    /// Everything the workers have acknowledged so far.
    fn progress(&self) -> u64 {
        sum(&self.acked) + self.ops.load(Ordering::Relaxed)
    }

    /// Says what worker `slot` starts doing, before it does anything of
    /// it.
    fn enter(&self, slot: u64, phase: u64) {
        self.phase[slot as usize].store(phase, Ordering::Relaxed);
        // Nothing that follows is written before the phase.
        fence(Ordering::SeqCst);
    }

    /// Says worker `slot` is done with what it was doing, after all of it.
    fn leave(&self, slot: u64) {
        self.phase[slot as usize].store(IDLE, Ordering::Release);
    }

    /// Acknowledges an increment of counter `i`, and what taking it found.
    fn counted(&self, i: usize, taken: Taken) {
        self.acked[i].fetch_add(1, Ordering::Relaxed);
        add(&self.recovered[i], taken.recovered);
        add(&self.torn[i], taken.torn);
    }

    /// Acknowledges another operation, and what taking a lock found.
    fn done(&self, taken: Taken) {
        self.ops.fetch_add(1, Ordering::Relaxed);
        add(&self.other_recovered, taken.recovered);
        add(&self.other_torn, taken.torn);
    }
}

// ===========================================================================
// Roles played by child processes

/// The entry point of child processes (does nothing in a normal test run).
/// Workers run until they are killed; the last two arguments of each are
/// its slot and a seed.
#[test]
fn child_entry() {
    let Some(args) = role() else { return };
    let n = args.len();
    let slot: u64 = args[n - 2].parse().unwrap();
    let seed: u64 = args[n - 1].parse().unwrap();
    let witness = SharedAtomic::<Witness>::open(args[1].as_str())
        .unwrap_or_else(|e| panic!("worker: opening the witness: {e}"));
    let rng = Rng(seed);
    match args[0].as_str() {
        "counter" => counter_worker(&witness, &args[2], &args[3], slot, rng),
        "store" => store_worker(&witness, &args[2], slot, rng),
        "names" => names_worker(&witness, &args[2], slot, rng),
        other => panic!("unknown role {other}"),
    }
}

/// Increments the `Ledger` at `kind target` (`posix NAME`, `sysv KEY`)
/// until killed, now and then checking a snapshot.
fn counter_worker(w: &Witness, kind: &str, target: &str, slot: u64, mut rng: Rng) -> ! {
    let c = match kind {
        "posix" => Shared::<Ledger>::open(target),
        "sysv" => Shared::<Ledger>::open(SysvKey::new(target.parse().unwrap())),
        other => panic!("unknown kind {other}"),
    }
    .unwrap_or_else(|e| panic!("worker: opening the counter: {e}"));
    loop {
        if rng.below(16) == 0 {
            add(&w.snapshots_refused, check_snapshot(&c, "counter"));
        }
        w.enter(slot, INCREMENTING);
        let (mut g, taken) = take(&c, "counter");
        g.rewrite(0, &mut rng);
        drop(g);
        w.counted(0, taken);
        w.leave(slot);
    }
}

fn count_key(i: usize) -> String {
    format!("count/{i}")
}

fn own_key(slot: u64, j: u64) -> String {
    format!("own/{slot}/{j}")
}

/// Even slots increment the store's counters (kept open); odd slots
/// insert, `get_or_create`, rewrite and remove keys of their own. Every
/// value locked is checked.
fn store_worker(w: &Witness, name: &str, slot: u64, mut rng: Rng) -> ! {
    let store = Store::open(name).unwrap_or_else(|e| panic!("worker: opening the store: {e}"));
    let counters: Vec<Shared<Ledger>> = (0..COUNTERS)
        .map(|i| {
            store
                .get(&count_key(i))
                .unwrap_or_else(|e| panic!("worker: get {}: {e}", count_key(i)))
        })
        .collect();
    let churns = slot % 2 == 1;
    loop {
        if churns {
            let j = rng.below(OWN_KEYS);
            w.enter(slot, ENTRY_OP);
            let key = own_key(slot, j);
            let taken = if j % 2 == 0 {
                own_entry_op::<Page>(&store, &key, &mut rng, w, slot)
            } else {
                own_entry_op::<BigPage>(&store, &key, &mut rng, w, slot)
            };
            w.done(taken);
            w.leave(slot);
        } else {
            let i = rng.below(COUNTERS as u64) as usize;
            if rng.below(16) == 0 {
                add(
                    &w.snapshots_refused,
                    check_snapshot(&counters[i], "store counter"),
                );
            }
            w.enter(slot, INCREMENTING);
            let (mut g, taken) = take(&counters[i], "store counter");
            g.rewrite(0, &mut rng);
            drop(g);
            w.counted(i, taken);
            w.leave(slot);
        }
    }
}

/// One operation on the entry `key` of this worker's own: insert it,
/// `get_or_create` it, remove it, or rewrite it in place. Errors other
/// than the expected ones end the worker. Says in the witness while it
/// holds the entry's lock.
fn own_entry_op<T: Checked>(
    store: &Store,
    key: &str,
    rng: &mut Rng,
    w: &Witness,
    slot: u64,
) -> Taken {
    let serial = rng.next();
    let handle = match rng.below(10) {
        0..=2 => match store.insert(key, T::fresh(serial)) {
            Ok(_) | Err(Error::AlreadyExists { .. }) => return Taken::default(),
            Err(e) => panic!("insert {key}: {e}"),
        },
        3..=4 => store
            .get_or_create(key, T::fresh(serial))
            .unwrap_or_else(|e| panic!("get_or_create {key}: {e}")),
        5..=6 => match store.remove(key) {
            Ok(()) | Err(Error::NotFound { .. }) => return Taken::default(),
            Err(e) => panic!("remove {key}: {e}"),
        },
        _ => match store.get::<T>(key) {
            Ok(h) => h,
            Err(Error::NotFound { .. }) => return Taken::default(),
            Err(e) => panic!("get {key}: {e}"),
        },
    };
    let (mut g, taken) = take(&handle, key);
    w.enter(slot, ENTRY_LOCKED);
    g.rewrite(serial, rng);
    drop(g);
    w.enter(slot, ENTRY_OP);
    taken
}

/// The name of number `n` in the sequence of names starting with `prefix`.
fn seq_name(prefix: &str, n: u64) -> String {
    format!("{prefix}-{n}")
}

/// Creates fresh names of the sequence (`open_or_create` or `create`), or
/// opens a recent one that another worker may have left half-made
/// (`open_or_create` or `open`); increments the value, checking it; then
/// mostly removes the name. Records the longest open.
fn names_worker(w: &Witness, prefix: &str, slot: u64, mut rng: Rng) -> ! {
    let fresh = Ledger::fresh(slot);
    loop {
        let recent = rng.below(4) == 0;
        let n = if recent {
            w.names
                .load(Ordering::Relaxed)
                .saturating_sub(1 + rng.below(16))
        } else {
            w.names.fetch_add(1, Ordering::Relaxed)
        };
        let name = seq_name(prefix, n);
        let op = match (recent, rng.below(2)) {
            (_, 0) => "open_or_create",
            (false, _) => "create",
            (true, _) => "open",
        };
        let t = Instant::now();
        w.enter(slot, OPENING);
        let got = match op {
            "open_or_create" => Shared::open_or_create(&name, fresh),
            "create" => Shared::create(&name, fresh),
            _ => Shared::<Ledger>::open(&name),
        };
        w.leave(slot);
        let took = t.elapsed();
        w.longest_open_us
            .fetch_max(took.as_micros() as u64, Ordering::Relaxed);
        let mut taken = Taken::default();
        match got {
            Ok(c) => {
                let (mut g, t) = take(&c, &name);
                g.rewrite(0, &mut rng);
                taken = t;
            }
            // Another worker picked the same number as a recent one.
            Err(Error::AlreadyExists { .. }) if op == "create" => {}
            // Not there (yet, or any more).
            Err(Error::NotFound { .. }) if op == "open" => {}
            Err(e) => panic!("{op} {name}: {e}"),
        }
        if rng.below(1024) != 0 {
            match shmstore::unlink(&name) {
                Ok(()) | Err(Error::NotFound { .. }) => {}
                Err(e) => panic!("unlink {name}: {e}"),
            }
        }
        w.done(taken);
    }
}

// ===========================================================================
// The storm itself

/// What kills caught their victims doing (a sum over kills).
#[derive(Default, Clone, Copy, Debug)]
struct Held {
    /// Holding a counter's lock.
    counters: u64,
    /// Holding a store's directory lock.
    directory: u64,
    /// Holding another entry's lock.
    others: u64,
    /// Between starting to lock a counter and acknowledging the increment.
    incrementing: u64,
    /// In `create`, `open_or_create` or `open`.
    opening: u64,
    /// In an operation on an entry of its own.
    entry_op: u64,
}

impl AddAssign for Held {
    fn add_assign(&mut self, o: Held) {
        self.counters += o.counters;
        self.directory += o.directory;
        self.others += o.others;
        self.incrementing += o.incrementing;
        self.opening += o.opening;
        self.entry_op += o.entry_op;
    }
}

impl Held {
    /// What the phase a worker announced says it was doing.
    fn phase(phase: u64) -> Held {
        Held {
            incrementing: (phase == INCREMENTING) as u64,
            opening: (phase == OPENING) as u64,
            entry_op: (phase == ENTRY_OP || phase == ENTRY_LOCKED) as u64,
            others: (phase == ENTRY_LOCKED) as u64,
            ..Held::default()
        }
    }
}

/// What the killer saw.
struct Outcome {
    kills: u64,
    held: Held,
    longest_stall: Duration,
    duration: Duration,
}

/// Whether thread `tid` belongs to process `pid`.
fn is_thread_of(tid: u32, pid: u32) -> bool {
    Path::new(&format!("/proc/{pid}/task/{tid}")).exists()
}

/// Stops `kid` (SIGSTOP) and waits until it is stopped, so that the locks
/// it holds stay as they are while they are read; panics if it ended by
/// itself.
fn freeze(kid: &mut Kid, what: &str) {
    let pid = kid.pid();
    // The child is not reaped before `kid.wait()`, so the pid is its own.
    kill(Pid::from_raw(pid as i32), Signal::SIGSTOP).expect("SIGSTOP");
    let t = Instant::now();
    loop {
        match proc_state(pid) {
            Some('T' | 't') => return,
            Some('Z' | 'X') | None => {
                let status = kid.wait();
                std::thread::sleep(Duration::from_millis(50));
                panic!(
                    "{what}: worker {pid} ended by itself ({status:?}): {}",
                    kid.stderr()
                );
            }
            _ => {}
        }
        assert!(t.elapsed() < PATIENCE, "{what}: worker {pid} does not stop");
        std::thread::sleep(Duration::from_micros(20));
    }
}

/// SIGKILLs a stopped worker and reaps it.
fn finish(kid: &mut Kid, what: &str) {
    kid.kill();
    let status = kid.wait();
    assert_eq!(
        status.signal(),
        Some(libc::SIGKILL),
        "{what}: worker {} ended with {status:?}: {}",
        kid.pid(),
        kid.stderr()
    );
}

/// Sets its flag when dropped.
struct Raise<'a>(&'a AtomicBool);

impl Drop for Raise<'_> {
    fn drop(&mut self) {
        self.0.store(true, Ordering::Relaxed);
    }
}

/// A storm: `WORKERS` processes play `role` with `args` (and their slot and
/// a seed); `kills` times, after a random gap, a random one is stopped,
/// `held(pid)` says which locks it holds, its phase in the witness says
/// what it was doing, and it is killed and replaced.
/// At the end the survivors are killed the same way (and counted).
/// Meanwhile a thread watches the witness for stalls.
fn storm(
    what: &str,
    role: &str,
    args: &[&str],
    w: &Witness,
    kills: u64,
    seed: u64,
    mut held: impl FnMut(u32) -> Held,
) -> Outcome {
    let spawn = |slot: usize, n: u64| {
        let slot = slot.to_string();
        let seed = (seed ^ n.wrapping_mul(0x9e37_79b9_7f4a_7c15)).to_string();
        let mut all = args.to_vec();
        all.push(&slot);
        all.push(&seed);
        Kid::spawn(role, &all)
    };
    let mut rng = Rng(seed);
    let t0 = Instant::now();
    let mut kids: Vec<Kid> = (0..WORKERS).map(|i| spawn(i, i as u64)).collect();
    let mut out = Outcome {
        kills: 0,
        held: Held::default(),
        longest_stall: Duration::ZERO,
        duration: Duration::ZERO,
    };
    let stop = AtomicBool::new(false);
    std::thread::scope(|s| {
        let watcher = s.spawn(|| {
            let mut last = w.progress();
            let mut since = Instant::now();
            let mut longest = Duration::ZERO;
            while !stop.load(Ordering::Relaxed) {
                std::thread::sleep(Duration::from_millis(1));
                let now = w.progress();
                if now != last {
                    last = now;
                    since = Instant::now();
                } else {
                    longest = longest.max(since.elapsed());
                }
            }
            longest
        });
        // Stops the watcher also when the killer fails.
        let raised = Raise(&stop);
        for n in 0..kills {
            let gap = rng.below(2 * MEAN_GAP.as_micros() as u64);
            std::thread::sleep(Duration::from_micros(gap));
            let slot = rng.below(WORKERS as u64) as usize;
            let kid = &mut kids[slot];
            freeze(kid, what);
            out.held += held(kid.pid());
            out.held += Held::phase(w.phase[slot].load(Ordering::Relaxed));
            finish(kid, what);
            out.kills += 1;
            // The next worker in this slot starts idle.
            w.phase[slot].store(IDLE, Ordering::Relaxed);
            kids[slot] = spawn(slot, WORKERS as u64 + n);
        }
        drop(raised);
        out.longest_stall = watcher.join().unwrap();
    });
    // The survivors: stop them all first, so that none finds a lock its
    // killed peer left; then look and kill.
    for kid in &mut kids {
        freeze(kid, what);
    }
    for (slot, kid) in kids.iter_mut().enumerate() {
        out.held += held(kid.pid());
        out.held += Held::phase(w.phase[slot].load(Ordering::Relaxed));
        finish(kid, what);
        out.kills += 1;
    }
    out.duration = t0.elapsed();
    assert!(
        out.longest_stall < STALL_BOUND,
        "{what}: the survivors acknowledged nothing for {:?}",
        out.longest_stall
    );
    out
}

fn ms(d: Duration) -> u128 {
    d.as_millis()
}

// ===========================================================================
// 1-3. A Shared<T> counter

/// The figures of counters after a storm.
struct Counts {
    /// Increments acknowledged.
    acked: u64,
    /// The final count.
    count: u64,
    /// Poisoned locks taken over by workers.
    recovered: u64,
    /// Poisoned locks taken over after the storm (by this process).
    recovered_at_end: u64,
    /// Values found torn (and repaired) by workers.
    torn: u64,
}

impl std::fmt::Display for Counts {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "recoveries={} (+{} at the end) torn_repaired={} acked={} final={} in_flight={}",
            self.recovered,
            self.recovered_at_end,
            self.torn,
            self.acked,
            self.count,
            self.count as i128 - self.acked as i128
        )
    }
}

impl Counts {
    /// Exact accounting, and recoveries that match the kills.
    fn check(&self, what: &str, out: &Outcome) {
        assert!(
            self.acked <= self.count,
            "{what}: {} increments acknowledged, the count says {}: increments lost",
            self.acked,
            self.count
        );
        // An increment written but not acknowledged is one whose worker
        // was killed in the middle of it.
        let in_flight = self.count - self.acked;
        assert!(
            in_flight <= out.held.incrementing && in_flight <= out.kills,
            "{what}: {in_flight} increments more than acknowledged, but only {} of {} \
             kills landed in the middle of an increment: increments counted twice",
            out.held.incrementing,
            out.kills
        );
        assert!(
            self.recovered > 0,
            "{what}: no worker ever took a poisoned lock over in {} kills ({} of them \
             while holding the lock): the storm proved nothing",
            out.kills,
            out.held.counters
        );
        // Every poisoning comes from a kill of a holder (two kills may
        // make one poisoning, when the taker is killed before clearing it).
        assert!(
            self.recovered + self.recovered_at_end <= out.held.counters,
            "{what}: {} poisoned locks taken over (+{} at the end), yet only {} kills \
             landed on a holder: a lock was poisoned without its holder dying",
            self.recovered,
            self.recovered_at_end,
            out.held.counters
        );
    }
}

/// Workers increment one `Ledger` at `kind` (`posix` or `sysv`) through
/// the storm; then the accounting, the recoveries and the value are
/// checked.
fn counter_storm(kind: &str, seed: u64) {
    let _heavy = heavy();
    let what = format!("{kind} counter");
    let witness_seg = Segment::new("storm-witness");
    let witness = SharedAtomic::<Witness>::create(witness_seg.name(), Witness::default()).unwrap();
    let seg = Segment::new("storm-counter");
    let key = Key::in_range(KEY_BASE);
    let (counter, target) = match kind {
        "posix" => (
            Shared::create(seg.name(), Ledger::fresh(0)),
            seg.name().to_owned(),
        ),
        _ => (Shared::create(key.key(), Ledger::fresh(0)), key.arg()),
    };
    let counter = counter.unwrap();
    let kills = kills_per_storm();

    let out = storm(
        &what,
        "counter",
        &[witness_seg.name(), kind, &target],
        &witness,
        kills,
        seed,
        |pid| Held {
            counters: counter.holder_tid().is_some_and(|t| is_thread_of(t, pid)) as u64,
            ..Held::default()
        },
    );

    let (g, last) = take(&counter, &format!("{what} after the storm"));
    let counts = Counts {
        acked: witness.acked[0].load(Ordering::Relaxed),
        count: g.count,
        recovered: witness.recovered[0].load(Ordering::Relaxed),
        recovered_at_end: last.recovered as u64,
        torn: witness.torn[0].load(Ordering::Relaxed),
    };
    drop(g);
    eprintln!(
        "storm: {what}: workers={WORKERS} kills={} kills_holding={} \
         kills_mid_increment={} {counts} snapshots_refused={} longest_stall_ms={} \
         duration_s={:.1}",
        out.kills,
        out.held.counters,
        out.held.incrementing,
        witness.snapshots_refused.load(Ordering::Relaxed),
        ms(out.longest_stall),
        out.duration.as_secs_f64()
    );
    counts.check(&what, &out);
    assert!(!counter.is_poisoned());
}

#[test]
fn posix_counter_survives_a_kill_storm_with_exact_accounting() {
    counter_storm("posix", 0x5708_0001);
}

#[test]
fn sysv_counter_survives_a_kill_storm_with_exact_accounting() {
    counter_storm("sysv", 0x5708_0002);
}

// ===========================================================================
// 1-4. A store: counters in entries, and the directory

/// Where a segment's own lock word is (a store's directory lock: see
/// src/segment/header.rs), and the bits of its holder's thread id
/// (src/lock/mod.rs).
const LOCK_AT: u64 = 256;
const TID_MASK: u64 = (1 << 22) - 1;

/// The locks a stopped worker holds in a store: counters (read on the
/// killer's handles) and the directory lock (its word read from `file`,
/// the store's object in /dev/shm; `inspect` is asked to confirm when it
/// names the victim, and is too slow to ask at every kill: it reads the
/// memory maps of every process).
fn store_held(name: &str, file: &std::fs::File, counters: &[Shared<Ledger>], pid: u32) -> Held {
    let mut word = [0u8; 8];
    file.read_exact_at(&mut word, LOCK_AT).unwrap();
    let tid = (u64::from_ne_bytes(word) & TID_MASK) as u32;
    let directory = tid != 0 && is_thread_of(tid, pid);
    if directory {
        let report = inspect::report(name).expect("inspect the store");
        let State::Store { directory, .. } = report.state else {
            panic!("inspect: not a store: {:?}", report.state)
        };
        assert!(
            matches!(directory.lock, LockState::Held { tid: t, .. } if t == tid),
            "the directory lock word says thread {tid} holds it, inspect says {:?}",
            directory.lock
        );
    }
    Held {
        counters: counters
            .iter()
            .filter(|c| c.holder_tid().is_some_and(|t| is_thread_of(t, pid)))
            .count() as u64,
        directory: directory as u64,
        ..Held::default()
    }
}

/// Checks an own entry after the storm: written whole unless poisoned.
/// Returns what taking it found.
fn check_own<T: Checked>(store: &Store, key: &str) -> Taken {
    let h = store
        .get::<T>(key)
        .unwrap_or_else(|e| panic!("after the storm: get::<{}>({key}): {e}", T::TYPE_NAME));
    let (g, taken) = take(&h, &format!("after the storm: {key}"));
    drop(g);
    taken
}

#[test]
fn store_survives_a_kill_storm_with_exact_accounting_and_a_sound_directory() {
    let _heavy = heavy();
    let what = "store";
    let witness_seg = Segment::new("storm-witness");
    let witness = SharedAtomic::<Witness>::create(witness_seg.name(), Witness::default()).unwrap();
    let seg = Segment::new("storm-store");
    let store = Store::create(seg.name(), STORE_CAP).unwrap();
    for i in 0..COUNTERS {
        drop(
            store
                .insert(&count_key(i), Ledger::fresh(i as u64))
                .unwrap(),
        );
    }
    let counters: Vec<Shared<Ledger>> = (0..COUNTERS)
        .map(|i| store.get(&count_key(i)).unwrap())
        .collect();
    let file = std::fs::File::open(seg.path()).unwrap();
    let kills = kills_per_storm();

    let out = storm(
        what,
        "store",
        &[witness_seg.name(), seg.name()],
        &witness,
        kills,
        0x5708_0003,
        |pid| store_held(seg.name(), &file, &counters, pid),
    );

    // Counters: exact accounting, key by key and in all.
    let mut counts = Counts {
        acked: 0,
        count: 0,
        recovered: sum(&witness.recovered),
        recovered_at_end: 0,
        torn: sum(&witness.torn),
    };
    for (i, c) in counters.iter().enumerate() {
        let acked = witness.acked[i].load(Ordering::Relaxed);
        let (g, last) = take(c, &format!("{what}: {} after the storm", count_key(i)));
        let count = g.count;
        drop(g);
        assert!(
            acked <= count,
            "{what}: {}: {acked} increments acknowledged, the count says {count}",
            count_key(i)
        );
        counts.acked += acked;
        counts.count += count;
        counts.recovered_at_end += last.recovered as u64;
    }

    // The directory: sound, and only the keys the workers use, of their
    // types; every entry written whole unless poisoned.
    store
        .check()
        .unwrap_or_else(|e| panic!("{what}: check() after the storm: {e}"));
    let entries = store.entries().unwrap();
    let (mut own, mut own_poisoned, mut own_torn) = (0, 0, 0);
    for e in &entries {
        if e.key.starts_with("count/") {
            assert_eq!(e.type_name, Ledger::TYPE_NAME, "{e:?}");
            continue;
        }
        let j: u64 = e
            .key
            .strip_prefix("own/")
            .and_then(|rest| rest.split_once('/'))
            .and_then(|(_, j)| j.parse().ok())
            .unwrap_or_else(|| panic!("{what}: a key no worker makes: {e:?}"));
        let taken = if j % 2 == 0 {
            assert_eq!(e.type_name, Page::TYPE_NAME, "{e:?}");
            check_own::<Page>(&store, &e.key)
        } else {
            assert_eq!(e.type_name, BigPage::TYPE_NAME, "{e:?}");
            check_own::<BigPage>(&store, &e.key)
        };
        own += 1;
        own_poisoned += taken.recovered as u64;
        own_torn += taken.torn as u64;
    }
    store.check().unwrap();

    eprintln!(
        "storm: {what}: workers={WORKERS} kills={} kills_holding={} \
         kills_mid_increment={} {counts} entry_ops={} kills_in_entry_ops={} (holding the directory {}, an entry {}) \
         entry_recoveries={} entry_torn_repaired={} entries_left={own} \
         (poisoned {own_poisoned}, torn {own_torn}) snapshots_refused={} \
         longest_stall_ms={} duration_s={:.1}",
        out.kills,
        out.held.counters,
        out.held.incrementing,
        witness.ops.load(Ordering::Relaxed),
        out.held.entry_op,
        out.held.directory,
        out.held.others,
        witness.other_recovered.load(Ordering::Relaxed),
        witness.other_torn.load(Ordering::Relaxed),
        witness.snapshots_refused.load(Ordering::Relaxed),
        ms(out.longest_stall),
        out.duration.as_secs_f64()
    );
    counts.check(what, &out);
    assert!(
        out.held.directory > 0,
        "{what}: no kill landed on a holder of the directory lock in {} kills: \
         the storm proved nothing about the directory",
        out.kills
    );

    // All space comes back: with every entry removed and every process
    // that held one dead, an entry as large as the store fits.
    drop(counters);
    for e in &entries {
        store.remove(&e.key).unwrap();
    }
    assert!(store.is_empty().unwrap());
    let whole = Box::new(Whole256 {
        words: [7; (STORE_CAP - 256 - common::HOLD_LIST) / 8],
    });
    match store.insert("whole", *whole) {
        Ok(h) => drop(h),
        Err(e) => panic!(
            "{what}: after the storm, an entry as large as the store does not fit: {e} \
             (free_bytes {:?} of {})",
            store.free_bytes(),
            store.capacity()
        ),
    }
    store.remove("whole").unwrap();
    assert_eq!(store.free_bytes().unwrap(), store.capacity());
    store.check().unwrap();
}

// ===========================================================================
// 5. Creating and opening fresh names

/// Every name of a sequence: unlinked when dropped, whatever happened.
struct Names {
    prefix: String,
}

impl Names {
    /// The names of the sequence now in /dev/shm, with their numbers.
    fn present(&self) -> Vec<(u64, String)> {
        let start = format!("{}-", self.prefix);
        let mut out: Vec<(u64, String)> = std::fs::read_dir("/dev/shm")
            .unwrap()
            .flatten()
            .filter_map(|e| {
                let name = e.file_name().into_string().ok()?;
                let n = name.strip_prefix(&start)?.parse().ok()?;
                Some((n, name))
            })
            .collect();
        out.sort();
        out
    }

    fn remove_all(&self) {
        for (_, name) in self.present() {
            let _ = shmstore::unlink(&name);
        }
    }
}

impl Drop for Names {
    fn drop(&mut self) {
        self.remove_all();
    }
}

/// What became of a name left behind.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Left {
    /// `open` gave a value written whole.
    Valid,
    /// `open` gave a poisoned lock over a value written whole.
    Poisoned,
    /// The same, the value torn (and repaired).
    PoisonedTorn,
}

/// Opens a name left behind, as a user would, and says what it was.
fn reopen(name: &str) -> Result<Left, String> {
    let c = Shared::<Ledger>::open(name).map_err(|e| format!("open: {e}"))?;
    let (g, taken) = take(&c, name);
    drop(g);
    Ok(match (taken.recovered, taken.torn) {
        (false, _) => Left::Valid,
        (true, false) => Left::Poisoned,
        (true, true) => Left::PoisonedTorn,
    })
}

/// Threads that reopen the names left behind.
const REOPENERS: usize = 16;

/// The temporary names in /dev/shm of new segments of `name`
/// (`common::temporaries`), with the pid each names as its creator
/// (`.shmstore-new.<hash>.<pid>.<n>`).
fn temporaries_of(name: &str) -> Vec<(String, i32)> {
    common::temporaries(name)
        .into_iter()
        .filter_map(|file| {
            let pid = file.split('.').nth(3)?.parse().ok()?;
            Some((file, pid))
        })
        .collect()
}

#[test]
fn kills_while_creating_leave_whole_segments_or_nothing() {
    let _heavy = heavy();
    let what = "create";
    let witness_seg = Segment::new("storm-witness");
    let witness = SharedAtomic::<Witness>::create(witness_seg.name(), Witness::default()).unwrap();
    let names = Names {
        prefix: Segment::new("storm-names").name().to_owned(),
    };
    let kills = kills_per_storm();

    let out = storm(
        what,
        "names",
        &[witness_seg.name(), &names.prefix],
        &witness,
        kills,
        0x5708_0004,
        |_| Held::default(),
    );

    // Every name left behind, reopened by a few threads at once: a valid
    // value, at once (never a half-made segment).
    let issued = witness.names.load(Ordering::Relaxed);
    let left = names.present();
    assert!(
        left.iter().all(|(n, _)| *n < issued),
        "{what}: a name beyond the sequence"
    );
    let queue: Vec<String> = left.iter().map(|(_, name)| name.clone()).collect();
    let queue = std::sync::Arc::new(Mutex::new(queue));
    let (tx, rx) = mpsc::channel();
    for _ in 0..REOPENERS {
        let (tx, queue) = (tx.clone(), queue.clone());
        std::thread::spawn(move || loop {
            let Some(name) = queue.lock().unwrap().pop() else {
                break;
            };
            let t = Instant::now();
            let got = reopen(&name);
            if tx.send((name, got, t.elapsed())).is_err() {
                break;
            }
        });
    }
    drop(tx);
    let mut states = std::collections::BTreeMap::<Left, u64>::new();
    let mut longest_reopen = Duration::ZERO;
    for _ in &left {
        let (name, got, took) = rx
            .recv_timeout(PATIENCE)
            .unwrap_or_else(|_| panic!("{what}: an open of a name left behind hangs"));
        let state = got.unwrap_or_else(|e| panic!("{what}: {name}: {e}"));
        *states.entry(state).or_default() += 1;
        longest_reopen = longest_reopen.max(took);
    }
    // Creators killed before publishing leave temporary names (never the
    // name itself): the next creator of the same name removes them.
    let mut temporaries = 0;
    for n in 0..issued {
        let name = format!("{}-{n}", names.prefix);
        let temps = temporaries_of(&name);
        if temps.is_empty() {
            continue;
        }
        temporaries += temps.len();
        for (file, pid) in &temps {
            assert!(
                kill(Pid::from_raw(*pid), None).is_err(),
                "{what}: {file} of a running process after the storm"
            );
        }
        let _ = shmstore::unlink(&name);
        let c = Shared::create(&name, Ledger::fresh(0xfeed)).unwrap();
        assert!(c.created());
        assert_eq!(
            temporaries_of(&name),
            vec![],
            "{what}: the next creator of {name} left its dead temporaries"
        );
        drop(c);
        shmstore::unlink(&name).unwrap();
    }
    names.remove_all();
    let after = names.present();

    let longest_open = Duration::from_micros(witness.longest_open_us.load(Ordering::Relaxed));
    eprintln!(
        "storm: {what}: workers={WORKERS} kills={} kills_while_opening={} names={issued} \
         ops={} recoveries={} torn_repaired={} left_behind={} temporaries={temporaries} {states:?} \
         longest_open_ms={} longest_reopen_ms={} longest_stall_ms={} duration_s={:.1}",
        out.kills,
        out.held.opening,
        witness.ops.load(Ordering::Relaxed),
        witness.other_recovered.load(Ordering::Relaxed),
        witness.other_torn.load(Ordering::Relaxed),
        left.len(),
        ms(longest_open),
        ms(longest_reopen),
        ms(out.longest_stall),
        out.duration.as_secs_f64()
    );
    assert!(
        out.held.opening > 0,
        "{what}: no kill landed in a create or open in {} kills: the storm proved nothing",
        out.kills
    );
    assert!(
        longest_open < OPEN_BOUND,
        "{what}: an open during the storm took {longest_open:?}"
    );
    assert!(
        longest_reopen < OPEN_BOUND,
        "{what}: an open after the storm took {longest_reopen:?}"
    );
    assert!(
        after.is_empty(),
        "{what}: names left in /dev/shm after removing them: {after:?}"
    );
}
