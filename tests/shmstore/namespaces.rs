//! Segments shared by processes in different PID namespaces, as the
//! containers of one Kubernetes pod (one /dev/shm and one System V IPC
//! namespace, a PID namespace each), Docker's `--ipc=container:NAME` and
//! sidecars share them. Children are this test binary run again (see
//! `common`) inside namespaces of their own (`common::Apart`): each is init
//! of a new PID namespace, some also with a mount namespace and a /proc of
//! their own (still seeing the same /dev/shm, /tmp and System V segments),
//! some as another user in a user namespace of their own.
//!
//! What a user would notice, on POSIX, file and System V segments:
//!
//! 1. Counters: two, then three processes in PID namespaces of their own
//!    (one of them a "container" with its own /proc) add under the lock;
//!    the total is exact. Each child says which PID namespace it is in;
//!    they differ from each other and from the test's.
//! 2. A holder SIGKILLed in one namespace is taken over (poisoned, the
//!    value as the holder left it) from another within 1 s, by a waiter
//!    already asleep in `lock()`, by a locker that comes after the kill,
//!    and with the holder a zombie that nobody reaps.
//! 3. A file segment outlives its "container": made in one PID namespace,
//!    it is opened, read and locked by the restarted container (a new PID
//!    namespace); killed while holding the lock, the restarted one gets it
//!    poisoned, with the value as it was left.
//! 4. User namespaces: the root of a user namespace mapped to uid 65534
//!    (`unshare -U -r` as 65534) opens and counts in 65534's private (0600)
//!    segment; a private segment of the real root's is `PermissionDenied`
//!    to it, and one everyone may write (0666) `ForeignOwner`.
//! 5. Kill storms across namespaces: workers in PID namespaces of their own,
//!    SIGKILLed at random while they hold the lock or wait for it, lose no
//!    acknowledged increment.
//!
//! Every child in a PID namespace of its own is its init (pid 1), so a
//! lock that told holders apart by pid alone would mistake them for each
//! other: these tests catch that too.
//!
//! Everything here needs root (new PID namespaces): when the tests do not
//! run as root they print "skip: needs root" and pass.
//!
//! `SHMSTORE_NS_SAME=1` runs the same scenarios with every child in the
//! test's own namespaces (the assertions that namespaces differ left out),
//! to tell a fault of the harness from one of sharing across namespaces.

use crate::common;

use std::os::unix::fs::{FileExt, MetadataExt};
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::{
    command, eventually, field, is_root, ns_pids, pid_ns_of, proc_state, role, say, variant, Apart,
    Counter, Key, Kid, Segment, TempDir,
};
use shmstore::{Location, Shareable, Shared, SharedOptions, SysvKey};

/// This file's range of System V keys (see `common::Key`).
const KEY_BASE: u32 = 0x4000_0000;
/// The liveness bound for noticing a dead holder (documented: about 50 ms).
const RECOVERY: Duration = Duration::from_secs(1);
/// Increments by each counting child.
const COUNT: u64 = 20_000;
/// What a holder writes before it is killed.
const HELD: u64 = 4242;
/// The other user (and group).
const NOBODY: u32 = 65534;
/// Workers of a kill storm alive at any moment.
const WORKERS: usize = 4;
/// Kills per storm unless `SHMSTORE_STORM_KILLS` says otherwise (the
/// variable of reliability/storm.rs, which sets its storms' kills too).
const STORM_KILLS: u64 = 100;

// ===========================================================================
// Roles played by child processes

/// The entry point of child processes (does nothing in a normal test run).
/// Roles return rather than exit (see users.rs: some children here change
/// users).
#[test]
fn child_entry() {
    let Some(args) = role() else { return };
    play(&args);
}

/// Roles whose name starts with `main-` run here, on the child's main
/// thread, before the test harness starts any thread: a zombie keeps only
/// its main thread visible, so a holder that must become one has to be it.
#[used]
#[link_section = ".init_array"]
static MAIN_THREAD_ROLES: extern "C" fn() = main_thread_roles;

extern "C" fn main_thread_roles() {
    if let Some(args) = common::main_thread_role() {
        play(&args);
        std::process::exit(0);
    }
}

fn play(args: &[String]) {
    let at = location(&args[1], &args[2]);
    let num = |i: usize| -> u64 { args[i].parse().expect("a number") };
    match args[0].as_str() {
        "count" => count(&at, num(3)),
        "main-hold" => hold(&at, num(3)),
        "take" => take(&at, &args[3]),
        "make" => make(&at, num(3), &args[4]),
        "reopen" => reopen(&at),
        "storm" => storm_worker(&at, &args[3], num(4) as usize),
        other => panic!("unknown role {other}"),
    }
}

/// Where a child finds a segment: a backend and a target.
fn location(kind: &str, target: &str) -> Location {
    match kind {
        "posix" => Location::posix(target).expect("a valid name"),
        "sysv" => Location::sysv(SysvKey::new(target.parse().expect("a key"))),
        "file" => Location::file(target),
        other => panic!("unknown backend {other}"),
    }
}

/// Who this child is: its PID namespace, its pid (1 as init of a namespace
/// of its own), the pid `/proc/self` names (1 only with a /proc of its own
/// namespace) and its effective user.
fn who() -> String {
    let proc_self = std::fs::read_link("/proc/self")
        .map(|p| p.display().to_string())
        .unwrap_or_else(|e| format!("({e})"));
    format!(
        "ns={} pid={} proc_self={proc_self} euid={}",
        pid_ns_of("self"),
        std::process::id(),
        nix::unistd::geteuid()
    )
}

/// Opens the `Counter` at `at` and says `opened outcome=ok|VARIANT ...`.
fn open_and_say<T: Shareable>(at: &Location) -> Option<Shared<T>> {
    match Shared::<T>::open(at) {
        Ok(c) => {
            say(format!("opened outcome=ok {}", who()));
            Some(c)
        }
        Err(e) => {
            say(format!("opened outcome={} {} -- {e}", variant(&e), who()));
            linger();
            None
        }
    }
}

/// Waits for the end of input (the parent's [`finish`]), so that the
/// parent can look at this process in /proc for as long as it needs.
fn linger() {
    while command().is_some() {}
}

/// Opens, waits for "go", adds 1 `n` times under the lock, says "done".
fn count(at: &Location, n: u64) {
    let Some(c) = open_and_say::<Counter>(at) else {
        return;
    };
    assert_eq!(command().as_deref(), Some("go"));
    let pid = std::process::id();
    for i in 0..n {
        let mut g = c.lock().expect("nobody died holding the lock");
        // Read, now and then give the CPU away, write: a lock that let two
        // holders in would lose updates here.
        let v = g.value;
        if i % 16 == 0 {
            std::thread::yield_now();
        }
        g.value = v + 1;
        g.last_pid = pid;
    }
    say("done");
    linger();
}

/// Opens, locks, writes `value`, says "holding" and sleeps until killed.
fn hold(at: &Location, value: u64) {
    let Some(c) = open_and_say::<Counter>(at) else {
        return;
    };
    let mut g = c.lock().expect("not poisoned");
    g.value = value;
    g.last_pid = std::process::id();
    say("holding");
    loop {
        std::thread::sleep(Duration::from_secs(3600));
    }
}

/// Opens; after "go" (`after`) or at once (`now`), says "locking" and
/// locks; then says whether the lock came back poisoned, with the value,
/// the moment it came back (`CLOCK_MONOTONIC`, which every PID namespace
/// shares) and how long `lock()` took.
fn take(at: &Location, when: &str) {
    let Some(c) = open_and_say::<Counter>(at) else {
        return;
    };
    match when {
        "after" => assert_eq!(command().as_deref(), Some("go")),
        "now" => {}
        other => panic!("unknown moment {other}"),
    }
    say("locking");
    let t0 = Instant::now();
    let got = c.lock();
    let at_ns = monotonic_ns();
    let took = t0.elapsed();
    let (state, value) = match got {
        Ok(g) => ("clean", g.value),
        Err(p) => ("poisoned", p.into_inner().value),
    };
    say(format!(
        "got state={state} value={value} at={at_ns} took_us={}",
        took.as_micros()
    ));
    linger();
}

/// Creates a `Counter` holding `value` with `mode` (octal) at `at`, says
/// `made outcome=...`, and ends.
fn make(at: &Location, value: u64, mode: &str) {
    let r = SharedOptions::new()
        .mode(u32::from_str_radix(mode, 8).expect("an octal mode"))
        .create(
            at,
            Counter {
                value,
                ..Counter::default()
            },
        );
    say(format!("made outcome={} {}", common::outcome(r), who()));
    linger();
}

/// Opens, locks (taking a poisoned value over), adds 1, and says what it
/// found.
fn reopen(at: &Location) {
    let Some(c) = open_and_say::<Counter>(at) else {
        return;
    };
    let (state, mut g) = match c.lock() {
        Ok(g) => ("clean", g),
        Err(p) => ("poisoned", p.into_inner()),
    };
    g.value += 1;
    say(format!("got state={state} value={}", g.value - 1));
    drop(g);
    linger();
}

/// The monotonic clock, in nanoseconds.
fn monotonic_ns() -> u64 {
    let t = nix::time::clock_gettime(nix::time::ClockId::CLOCK_MONOTONIC).unwrap();
    t.tv_sec() as u64 * 1_000_000_000 + t.tv_nsec() as u64
}

// ---------------------------------------------------------------------------
// Kill storms

/// The storm's value: each worker slot's increments, and their total,
/// written in two steps so that a holder killed between them leaves a
/// total one short (which the next holder, finding the lock poisoned,
/// repairs).
#[derive(Shareable, Clone, Copy, Default, Debug)]
#[repr(C)]
struct Tallies {
    total: u64,
    slots: [u64; WORKERS],
}

/// The words of each slot in the witness file, which does not go through
/// shmstore: increments acknowledged after the guard was dropped, poisoned
/// locks taken over, and totals found wrong (neither the sum of the slots
/// nor one short of it: two holders at once).
const ACKED: usize = 0;
const RECOVERED: usize = 1;
const BROKEN: usize = 2;
const WORDS: usize = 3;

/// A worker's words in the witness file.
struct Witness {
    file: std::fs::File,
    slot: usize,
}

impl Witness {
    fn open(path: &Path, slot: usize) -> Witness {
        let file = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .open(path)
            .expect("the witness file");
        Witness { file, slot }
    }

    fn at(&self, word: usize) -> u64 {
        ((self.slot * WORDS + word) * 8) as u64
    }

    fn get(&self, word: usize) -> u64 {
        let mut b = [0u8; 8];
        self.file.read_exact_at(&mut b, self.at(word)).unwrap();
        u64::from_ne_bytes(b)
    }

    fn add(&self, word: usize) {
        // One worker per slot at a time: no other writer.
        let v = self.get(word) + 1;
        self.file
            .write_all_at(&v.to_ne_bytes(), self.at(word))
            .unwrap();
    }
}

/// Increments its slot and the total until told to stop, acknowledging
/// each increment in the witness after the guard is dropped.
fn storm_worker(at: &Location, witness: &str, slot: usize) {
    let w = Witness::open(Path::new(witness), slot);
    let Some(c) = open_and_say::<Tallies>(at) else {
        return;
    };
    let stop = Arc::new(AtomicBool::new(false));
    let stopper = stop.clone();
    std::thread::spawn(move || {
        while command().is_some_and(|l| l != "stop") {}
        stopper.store(true, Ordering::Relaxed);
    });
    let mut spin = u64::from(std::process::id()) | 1;
    while !stop.load(Ordering::Relaxed) {
        let mut g = match c.lock() {
            Ok(g) => g,
            Err(p) => {
                let mut g = p.into_inner();
                let sum: u64 = g.slots.iter().sum();
                if g.total != sum && g.total + 1 != sum {
                    w.add(BROKEN);
                }
                g.total = sum;
                c.clear_poison();
                w.add(RECOVERED);
                g
            }
        };
        g.slots[slot] += 1;
        // Hold the lock a while between the two writes, so that kills
        // land between them too.
        spin = spin.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1);
        for _ in 0..(spin >> 50) {
            std::hint::spin_loop();
        }
        g.total += 1;
        drop(g);
        w.add(ACKED);
    }
    say("stopped");
}

// ===========================================================================
// The parent's side

/// Skips a test (with a message) unless it runs as root.
macro_rules! needs_root {
    () => {
        if !is_root() {
            eprintln!("skip: needs root");
            return;
        }
    };
}

/// Whether children stay in the test's namespaces (`SHMSTORE_NS_SAME`).
fn same_namespace() -> bool {
    std::env::var_os("SHMSTORE_NS_SAME").is_some_and(|v| v != "0")
}

/// `apart`, or in the test's namespaces with `SHMSTORE_NS_SAME` (only the
/// user is kept).
fn apart(a: Apart) -> Apart {
    if same_namespace() {
        Apart {
            user: a.user,
            ..Apart::default()
        }
    } else {
        a
    }
}

#[derive(Clone, Copy, Debug, PartialEq)]
enum Kind {
    Posix,
    Sysv,
    File,
}

static SEQ: AtomicU32 = AtomicU32::new(0);

/// A place for one segment on one backend, emptied when dropped.
struct Place {
    kind: Kind,
    loc: Location,
    target: String,
    _segment: Option<Segment>,
    _key: Option<Key>,
}

impl Place {
    fn new(kind: Kind, test: &str, dir: &TempDir) -> Place {
        let (loc, target, segment, key) = match kind {
            Kind::Posix => {
                let seg = Segment::new(test);
                let name = seg.name().to_owned();
                (Location::posix(&name).unwrap(), name, Some(seg), None)
            }
            Kind::Sysv => {
                let key = Key::in_range(KEY_BASE);
                (Location::sysv(key.key()), key.arg(), None, Some(key))
            }
            Kind::File => {
                let n = SEQ.fetch_add(1, Ordering::Relaxed);
                let path = dir.path().join(format!("{test}-{n}"));
                let target = path.to_str().unwrap().to_owned();
                (Location::file(path), target, None, None)
            }
        };
        Place {
            kind,
            loc,
            target,
            _segment: segment,
            _key: key,
        }
    }

    /// The arguments that name this place to a child.
    fn args(&self) -> [&str; 2] {
        let kind = match self.kind {
            Kind::Posix => "posix",
            Kind::Sysv => "sysv",
            Kind::File => "file",
        };
        [kind, &self.target]
    }
}

/// Ends a child's input (see [`linger`]) and waits for it to exit 0.
fn finish(kid: &mut Kid) {
    kid.close_stdin();
    kid.wait_success();
}

/// Starts a child `apart` playing `role` at `place` with `more` arguments.
#[track_caller]
fn start(a: Apart, role: &str, place: &Place, more: &[&str]) -> Kid {
    let mut args = place.args().to_vec();
    args.extend_from_slice(more);
    Kid::spawn_in(apart(a), role, &args)
}

/// Reads a child's `opened` line, checks the child is where it should be
/// (see [`check_apart`]), then that it opened. Returns its PID namespace.
#[track_caller]
fn opened(kid: &mut Kid, a: Apart, others: &[u64]) -> u64 {
    let line = kid.expect("opened");
    let ns = check_apart(kid, a, &line, others);
    assert_eq!(
        field(&line, "outcome"),
        "ok",
        "a child apart ({a:?}) could not open the segment: {line}"
    );
    ns
}

/// Checks that the child that said `line` (`ns=... pid=... proc_self=...`)
/// is init of a PID namespace of its own (`NSpid` ends in 1) that differs
/// from the test's and from each of `others`, with a /proc of its own if it
/// has a mount namespace. Returns its PID namespace.
#[track_caller]
fn check_apart(kid: &Kid, a: Apart, line: &str, others: &[u64]) -> u64 {
    let ns: u64 = field(line, "ns").parse().unwrap();
    if same_namespace() || !a.pid_ns {
        return ns;
    }
    let ours = pid_ns_of("self");
    assert_ne!(ns, ours, "the child is in the test's PID namespace: {line}");
    assert!(
        !others.contains(&ns),
        "two children share PID namespace {ns}: {line}"
    );
    assert_eq!(
        ns,
        pid_ns_of(&kid.player().to_string()),
        "the child's namespace as /proc shows it"
    );
    let ids = ns_pids(kid.player());
    assert_eq!(
        ids,
        [kid.player(), 1],
        "NSpid of the player: ours, then 1 in its own namespace"
    );
    assert_eq!(field(line, "pid"), "1", "{line}");
    let proc_self = if a.mount_proc {
        "1".to_owned()
    } else {
        kid.player().to_string()
    };
    assert_eq!(
        field(line, "proc_self"),
        proc_self,
        "which /proc the child sees ({a:?}): {line}"
    );
    ns
}

// ===========================================================================
// 1. Counters in two and three PID namespaces

/// Two, then three children in PID namespaces of their own (the second of
/// the three a container with its own /proc) add [`COUNT`] each to a
/// counter the test made: nothing is lost.
fn counters_in_namespaces(kind: Kind) {
    let dir = TempDir::new("count");
    let place = Place::new(kind, "ns-count", &dir);
    let c = Shared::create(&place.loc, Counter::default()).unwrap();
    let n = COUNT.to_string();
    let mut expected = 0;
    for aparts in [
        vec![Apart::pid_ns(), Apart::pid_ns()],
        vec![Apart::pid_ns(), Apart::container(), Apart::pid_ns()],
    ] {
        let mut kids: Vec<Kid> = aparts
            .iter()
            .map(|a| start(*a, "count", &place, &[&n]))
            .collect();
        let mut seen = Vec::new();
        for (k, a) in kids.iter_mut().zip(&aparts) {
            seen.push(opened(k, *a, &seen));
        }
        for k in &mut kids {
            k.send("go");
        }
        for k in &mut kids {
            k.expect("done");
            finish(k);
        }
        expected += COUNT * kids.len() as u64;
        assert_eq!(
            c.lock().unwrap().value,
            expected,
            "{kind:?}: {} processes in PID namespaces of their own lost updates",
            kids.len()
        );
    }
}

#[test]
fn counters_in_two_and_three_pid_namespaces_lose_nothing() {
    needs_root!();
    counters_in_namespaces(Kind::Posix);
}

#[test]
fn file_counters_in_two_and_three_pid_namespaces_lose_nothing() {
    needs_root!();
    counters_in_namespaces(Kind::File);
}

#[test]
fn sysv_counters_in_two_and_three_pid_namespaces_lose_nothing() {
    needs_root!();
    counters_in_namespaces(Kind::Sysv);
}

// ===========================================================================
// 2. A holder killed in one namespace, taken over from another

/// When the taker comes.
#[derive(Clone, Copy, Debug, PartialEq)]
enum Case {
    /// Already asleep in `lock()` when the holder is killed.
    Asleep,
    /// Calls `lock()` after the kill.
    After,
    /// Calls `lock()` after the kill, the holder a zombie nobody reaps.
    Zombie,
}

/// Whether every thread of process `pid` is asleep (`S`).
fn all_threads_asleep(pid: u32) -> bool {
    let Ok(dir) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
        return false;
    };
    dir.filter_map(Result::ok).all(|t| {
        std::fs::read_to_string(t.path().join("stat")).is_ok_and(|s| {
            s.rfind(')')
                .and_then(|i| s[i + 1..].split_whitespace().next().map(|st| st == "S"))
                .unwrap_or(false)
        })
    })
}

/// Reads a taker's `got` line: the lock must have come back poisoned with
/// the holder's value, within [`RECOVERY`] of `killed_ns` and of the call.
#[track_caller]
fn taken_over(b: &mut Kid, killed_ns: u64, what: &str) {
    let got = b.expect("got");
    assert_eq!(
        (field(&got, "state"), field(&got, "value")),
        ("poisoned", HELD.to_string().as_str()),
        "{what}: the lock of a holder killed in another namespace came back as `{got}`"
    );
    let at: u64 = field(&got, "at").parse().unwrap();
    let after = Duration::from_nanos(at.saturating_sub(killed_ns));
    let took = Duration::from_micros(field(&got, "took_us").parse().unwrap());
    assert!(
        after < RECOVERY,
        "{what}: taken over {after:?} after the kill"
    );
    assert!(took < RECOVERY, "{what}: lock() took {took:?}");
    eprintln!("{what}: taken over {after:?} after the kill");
}

/// Child A (a PID namespace of its own) holds the lock; child B (a
/// container of its own) takes it over after A is SIGKILLed, in each
/// [`Case`].
fn holder_killed(kind: Kind) {
    let dir = TempDir::new("holder");
    for case in [Case::Asleep, Case::After, Case::Zombie] {
        let what = format!("{kind:?}, {case:?}");
        let place = Place::new(kind, "ns-holder", &dir);
        let c = Shared::create(&place.loc, Counter::default()).unwrap();
        let a_apart = Apart {
            keep_zombie: case == Case::Zombie,
            ..Apart::pid_ns()
        };
        let mut a = start(a_apart, "main-hold", &place, &[&HELD.to_string()]);
        let a_ns = opened(&mut a, a_apart, &[]);
        a.expect("holding");
        let when = if case == Case::Asleep { "now" } else { "after" };
        let mut b = start(Apart::container(), "take", &place, &[when]);
        opened(&mut b, Apart::container(), &[a_ns]);
        if case == Case::Asleep {
            b.expect("locking");
            std::thread::sleep(Duration::from_millis(200));
            assert!(
                eventually(Duration::from_secs(5), || all_threads_asleep(b.player())),
                "{what}: the waiter should be asleep in the kernel"
            );
            assert!(
                b.line_within(Duration::ZERO).is_none(),
                "{what}: the waiter got the lock of a live holder"
            );
        }
        let holder = a.player();
        let killed_ns = monotonic_ns();
        a.kill_player();
        if case == Case::Zombie {
            assert!(
                eventually(Duration::from_secs(5), || proc_state(holder) == Some('Z')),
                "{what}: the killed holder should be a zombie, is {:?}",
                proc_state(holder)
            );
        }
        if case != Case::Asleep {
            b.send("go");
            b.expect("locking");
        }
        taken_over(&mut b, killed_ns, &what);
        if case == Case::Zombie {
            assert_eq!(
                proc_state(holder),
                Some('Z'),
                "{what}: still a zombie while the lock was taken over"
            );
            a.close_stdin();
        }
        finish(&mut b);
        let status = a.wait();
        assert_eq!(
            std::os::unix::process::ExitStatusExt::signal(&status),
            Some(9),
            "{what}: the holder should have died of SIGKILL: {status:?}"
        );
        assert!(c.is_poisoned(), "{what}");
        assert_eq!(c.lock().unwrap_err().into_inner().value, HELD, "{what}");
    }
}

#[test]
fn holder_killed_in_one_namespace_is_taken_over_from_another() {
    needs_root!();
    holder_killed(Kind::Posix);
}

#[test]
fn holder_killed_in_one_namespace_is_taken_over_from_another_file() {
    needs_root!();
    holder_killed(Kind::File);
}

#[test]
fn holder_killed_in_one_namespace_is_taken_over_from_another_sysv() {
    needs_root!();
    holder_killed(Kind::Sysv);
}

// ===========================================================================
// 3. A file segment and a restarted container

/// A container makes a file segment and ends; the restarted container (a
/// new PID namespace) opens it, finds the value, locks it. Then a container
/// killed while holding the lock: the restarted one gets it poisoned, the
/// value as it was left, within [`RECOVERY`].
#[test]
fn file_segment_reopened_by_a_restarted_container() {
    needs_root!();
    let dir = TempDir::new("restart");
    let place = Place::new(Kind::File, "restart", &dir);

    let mut first = start(Apart::container(), "make", &place, &["77", "600"]);
    let made = first.expect("made");
    assert_eq!(field(&made, "outcome"), "ok", "{made}");
    let first_ns = check_apart(&first, Apart::container(), &made, &[]);
    // Keep the first namespace (and so its number) while the restarted one
    // starts, which then surely gets a namespace of another number: a
    // namespace's number is reused as soon as it is free.
    let pin = std::fs::File::open(format!("/proc/{}/ns/pid", first.player()));
    finish(&mut first);

    let mut again = start(Apart::container(), "reopen", &place, &[]);
    opened(&mut again, Apart::container(), &[first_ns]);
    let got = again.expect("got");
    assert_eq!(got, "state=clean value=77", "the restarted container found");
    finish(&mut again);
    let c = Shared::<Counter>::open(&place.loc).unwrap();
    assert_eq!(c.lock().unwrap().value, 78);
    drop(c);

    // Killed while holding the lock.
    let mut holder = start(
        Apart::container(),
        "main-hold",
        &place,
        &[&HELD.to_string()],
    );
    let holder_ns = opened(&mut holder, Apart::container(), &[first_ns]);
    holder.expect("holding");
    let pin2 = std::fs::File::open(format!("/proc/{}/ns/pid", holder.player()));
    holder.kill_player();
    holder.wait();
    let mut restarted = start(Apart::container(), "take", &place, &["now"]);
    opened(&mut restarted, Apart::container(), &[first_ns, holder_ns]);
    restarted.expect("locking");
    let got = restarted.expect("got");
    assert_eq!(
        (field(&got, "state"), field(&got, "value")),
        ("poisoned", HELD.to_string().as_str()),
        "the restarted container found `{got}`"
    );
    // The restart itself takes a while: the bound is on `lock()`.
    let took = Duration::from_micros(field(&got, "took_us").parse().unwrap());
    assert!(took < RECOVERY, "lock() took {took:?}");
    finish(&mut restarted);
    drop((pin, pin2));
}

// ===========================================================================
// 4. User namespaces

/// As root: uid 65534 makes a private (0600) segment; the root of a user
/// namespace mapped to 65534 (what `unshare -U -r` run by 65534 makes, a
/// rootless container) opens it and counts. The same root cannot open a
/// private segment of the real root's: `PermissionDenied` (the kernel
/// refuses the open before shmstore looks at the owner); one of the real
/// root's that everyone may write is `ForeignOwner`.
#[test]
fn user_namespace_opens_its_mapped_owners_segment() {
    needs_root!();
    let dir = TempDir::new("userns");
    let as_nobody = Apart {
        user: Some(NOBODY),
        ..Apart::default()
    };
    let rootless = Apart {
        user: Some(NOBODY),
        user_ns: true,
        ..Apart::default()
    };
    let root_inside = if same_namespace() { NOBODY } else { 0 };

    let theirs = Place::new(Kind::Posix, "ns-user", &dir);
    let mut maker = start(as_nobody, "make", &theirs, &["5", "600"]);
    let made = maker.expect("made");
    assert_eq!(field(&made, "outcome"), "ok", "{made}");
    assert_eq!(field(&made, "euid"), NOBODY.to_string(), "{made}");
    finish(&mut maker);
    let meta = std::fs::metadata(format!("/dev/shm/{}", theirs.target)).unwrap();
    assert_eq!((meta.uid(), meta.mode() & 0o777), (NOBODY, 0o600));

    let mut k = start(rootless, "count", &theirs, &["1000"]);
    let line = k.expect("opened");
    assert_eq!(field(&line, "euid"), root_inside.to_string(), "{line}");
    assert_eq!(
        field(&line, "outcome"),
        "ok",
        "root of a user namespace mapped to the owner could not open: {line}"
    );
    k.send("go");
    k.expect("done");
    finish(&mut k);
    let mut allowed = SharedOptions::new();
    allowed.allow_foreign_owner(true);
    let c = allowed.open::<Counter>(&theirs.loc).unwrap();
    assert_eq!(c.lock().unwrap().value, 1005);

    let roots = Place::new(Kind::Posix, "ns-user-root", &dir);
    let r = SharedOptions::new()
        .mode(0o600)
        .create(
            &roots.loc,
            Counter {
                value: 42,
                ..Counter::default()
            },
        )
        .unwrap();
    let mut k = start(rootless, "count", &roots, &["1"]);
    let line = k.expect("opened");
    assert_eq!(field(&line, "euid"), root_inside.to_string(), "{line}");
    assert_eq!(
        field(&line, "outcome"),
        "PermissionDenied",
        "root of a user namespace opened the real root's private segment: {line}"
    );
    finish(&mut k);
    assert_eq!(r.lock().unwrap().value, 42);

    // One everyone may write (0666): the kernel lets the open through, and
    // the owner check refuses it, as it refuses any other user's. Inside
    // the namespace root's uid is not mapped: the owner shows as the
    // overflow uid (65534).
    let open_to_all = Place::new(Kind::Posix, "ns-user-0666", &dir);
    let r = SharedOptions::new()
        .mode(0o666)
        .create(
            &open_to_all.loc,
            Counter {
                value: 42,
                ..Counter::default()
            },
        )
        .unwrap();
    let mut k = start(rootless, "count", &open_to_all, &["1"]);
    let line = k.expect("opened");
    assert_eq!(
        field(&line, "outcome"),
        "ForeignOwner",
        "root of a user namespace and the real root's segment for everyone: {line}"
    );
    finish(&mut k);
    assert_eq!(r.lock().unwrap().value, 42);
}

// ===========================================================================
// 5. Kill storms across namespaces

/// The number of kills (`SHMSTORE_STORM_KILLS`, or [`STORM_KILLS`]).
fn storm_kills() -> u64 {
    common::env_count("SHMSTORE_STORM_KILLS", STORM_KILLS)
}

/// [`WORKERS`] workers, each in a PID namespace of its own (every other
/// one a container), add to a counter; the test SIGKILLs one at random
/// every few milliseconds, holding the lock or waiting for it, and starts
/// another in its place (a new namespace). Every acknowledged increment is
/// there at the end, no total was ever found wrong, and kills of holders
/// were taken over.
#[test]
fn kill_storm_across_namespaces_loses_nothing() {
    needs_root!();
    let _heavy = common::heavy();
    let dir = TempDir::new("storm");
    let place = Place::new(Kind::Posix, "ns-storm", &dir);
    let c = Shared::create(&place.loc, Tallies::default()).unwrap();
    let witness = dir.path().join("witness");
    std::fs::write(&witness, vec![0u8; WORKERS * WORDS * 8]).unwrap();
    let witness_arg = witness.to_str().unwrap().to_owned();
    let words = |slot: usize| {
        let w = Witness::open(&witness, slot);
        [w.get(ACKED), w.get(RECOVERED), w.get(BROKEN)]
    };
    let acked = || (0..WORKERS).map(|s| words(s)[ACKED]).sum::<u64>();

    let mut started = 0u64;
    let mut spawn = |slot: usize| {
        let a = if started % 2 == 0 {
            Apart::pid_ns()
        } else {
            Apart::container()
        };
        started += 1;
        let mut k = start(a, "storm", &place, &[&witness_arg, &slot.to_string()]);
        opened(&mut k, a, &[]);
        k
    };
    let mut kids: Vec<Kid> = (0..WORKERS).map(&mut spawn).collect();
    let kills = storm_kills();
    let mut kills_of = [0u64; WORKERS];
    let mut rng = u64::from(std::process::id()) | 1;
    let t0 = Instant::now();
    for _ in 0..kills {
        rng = rng.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1);
        std::thread::sleep(Duration::from_micros((rng >> 33) % 20_000));
        let slot = ((rng >> 20) % WORKERS as u64) as usize;
        kids[slot].kill_player();
        kids[slot].wait();
        kills_of[slot] += 1;
        kids[slot] = spawn(slot);
    }
    // Survivors go on: whatever the last kills left is taken over.
    let before = acked();
    assert!(
        eventually(Duration::from_secs(10), || acked() >= before + 100),
        "the workers stopped making progress after the storm ({} acknowledged)",
        acked()
    );
    for k in &mut kids {
        k.send("stop");
    }
    for k in &mut kids {
        k.expect("stopped");
        k.wait_success();
    }

    let t = match c.lock() {
        Ok(g) => *g,
        Err(p) => panic!(
            "the lock is poisoned after the workers stopped: {:?}",
            *p.into_inner()
        ),
    };
    let sum: u64 = t.slots.iter().sum();
    assert_eq!(t.total, sum, "the total disagrees with the slots: {t:?}");
    let mut recovered = 0;
    for (slot, kills) in kills_of.iter().enumerate() {
        let [acked, rec, broken] = words(slot);
        recovered += rec;
        assert_eq!(broken, 0, "slot {slot}: a total was found wrong");
        assert!(
            acked <= t.slots[slot] && t.slots[slot] <= acked + kills,
            "slot {slot}: {} increments, {acked} acknowledged, {kills} kills",
            t.slots[slot],
        );
    }
    println!(
        "namespace storm: {kills} kills in {:?}, {} increments, {recovered} poisoned locks taken over",
        t0.elapsed(),
        t.total
    );
    assert!(
        recovered >= 1,
        "no kill landed on a holder in {kills} kills ({} increments)",
        t.total
    );
}
