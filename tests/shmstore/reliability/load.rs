//! Sixteen processes (this test binary run again, see `common`) hammer one
//! lock for a fixed time, then sixteen hammer separate entries of one store.
//!
//! What a user would notice, asserted:
//!
//! - a lost update: the shared counters must equal the sum of what the
//!   processes counted, exactly, in total and per process;
//! - a process shut out: every process must get the lock, and no single
//!   `lock()` may take as long as [`MAX_WAIT`];
//! - leaks: each process's resident memory, open descriptors and mappings,
//!   sampled after a warm-up and at the end, must not grow with the number
//!   of acquisitions, and the processes must map exactly the one segment
//!   and make none of their own.
//!
//! How the acquisitions are shared out, and how long a `lock()` takes, are
//! measurements that depend on the machine and what else runs on it: `cargo
//! run --release --example load` runs the same scenarios, prints the shares,
//! Jain's fairness index and the waits per process, and judges fairness.
//! The acquisitions per process are printed here too; `--nocapture` shows
//! them.

use crate::common;

use std::collections::BTreeSet;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use common::{command, field, heavy, role, say, Kid, Segment};
use shmstore::{Shareable, Shared, Store};

/// Processes in each scenario.
const PROCS: usize = 16;
/// How long the processes hammer, after all of them are ready.
const RUN: Duration = Duration::from_millis(2500);
/// When the first sample of memory and descriptors is taken, after the
/// start: by then every process has been scheduled many times and has
/// made every allocation its loop makes.
const WARM_UP: Duration = Duration::from_millis(500);

/// Longer than any single `lock()` may take, time off the CPU included: a
/// liveness bound, four times the whole run, not a measurement (the longest
/// waits the load example measures are tens of milliseconds).
const MAX_WAIT: Duration = Duration::from_secs(10);

/// How much a process's resident memory may grow between the samples: a
/// few pages of the standard library's buffers, nothing that grows with
/// millions of acquisitions (a leak of one byte per acquisition would be
/// several megabytes).
const RSS_GROWTH_KB: u64 = 256;

/// Entries every process of the store scenario shares, besides its own.
const SHARED_KEYS: usize = 4;
/// One acquisition in this many is of a shared entry.
const SHARED_EVERY: u64 = 4;

/// The value all processes lock in the first scenario.
#[derive(Shareable, Clone, Copy, Default, Debug)]
#[repr(C)]
struct Tallies {
    total: u64,
    per_process: [u64; PROCS],
}

// ===========================================================================
// Roles played by child processes

/// The entry point of child processes (does nothing in a normal test run).
#[test]
fn child_entry() {
    let Some(args) = role() else { return };
    let arg = |i: usize| args[i].as_str();
    let code = match arg(0) {
        "lock" => hammer_lock(arg(1), arg(2).parse().unwrap()),
        "store" => hammer_store(arg(1), arg(2).parse().unwrap()),
        other => panic!("unknown role {other}"),
    };
    std::process::exit(code);
}

/// What a process knows about itself: resident memory (kB), open
/// descriptors, mappings in all and mappings of `segment`.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
struct Usage {
    rss_kb: u64,
    fds: u64,
    maps: u64,
    segment_maps: u64,
}

impl Usage {
    fn now(segment: &str) -> Usage {
        let status = std::fs::read_to_string("/proc/self/status").unwrap();
        let rss_kb = status
            .lines()
            .find_map(|l| l.strip_prefix("VmRSS:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            .expect("VmRSS in /proc/self/status");
        let fds = std::fs::read_dir("/proc/self/fd").unwrap().count() as u64;
        let maps = std::fs::read_to_string("/proc/self/maps").unwrap();
        let path = format!("/dev/shm/{segment}");
        Usage {
            rss_kb,
            fds,
            maps: maps.lines().count() as u64,
            segment_maps: maps.lines().filter(|l| l.ends_with(&path)).count() as u64,
        }
    }

    fn words(&self, at: &str) -> String {
        format!(
            "rss{at}={} fds{at}={} maps{at}={} seg{at}={}",
            self.rss_kb, self.fds, self.maps, self.segment_maps
        )
    }

    fn parse(line: &str, at: &str) -> Usage {
        let n = |k: &str| num(line, &format!("{k}{at}"));
        Usage {
            rss_kb: n("rss"),
            fds: n("fds"),
            maps: n("maps"),
            segment_maps: n("seg"),
        }
    }
}

/// The moments of a run, as this process's clock has them: the parent
/// sends them as wall-clock times (`go WARM END`, in milliseconds since the
/// epoch), the same for every process.
struct Window {
    warm: Instant,
    end: Instant,
}

fn wait_for_go() -> Window {
    say("ready");
    let cmd = command().expect("a go command");
    let mut words = cmd.split_whitespace();
    assert_eq!(words.next(), Some("go"), "{cmd}");
    let mut at = || {
        let ms: u64 = words.next().expect("a time").parse().unwrap();
        let target = UNIX_EPOCH + Duration::from_millis(ms);
        let left = target
            .duration_since(SystemTime::now())
            .unwrap_or(Duration::ZERO);
        Instant::now() + left
    };
    let warm = at();
    let end = at();
    Window { warm, end }
}

/// What every loop keeps: acquisitions, the longest single `lock()` (time
/// off the CPU included), and the first sample.
struct Tally {
    count: u64,
    longest_wait: Duration,
    warm: Option<Usage>,
}

impl Tally {
    fn new() -> Tally {
        Tally {
            count: 0,
            longest_wait: Duration::ZERO,
            warm: None,
        }
    }

    fn report(&self, segment: &str, shared: u64) {
        let warm = self.warm.unwrap_or_else(|| Usage::now(segment));
        let end = Usage::now(segment);
        say(format!(
            "done count={} shared={shared} wait_us={} {} {}",
            self.count,
            self.longest_wait.as_micros(),
            warm.words("0"),
            end.words("1")
        ));
    }
}

/// Locks the `Tallies` at `name` again and again until the end of the run,
/// adding one to the total and to its own count each time.
fn hammer_lock(name: &str, index: usize) -> i32 {
    let shared = Shared::<Tallies>::open(name).expect("open");
    let w = wait_for_go();
    let mut t = Tally::new();
    let mut now = Instant::now();
    while now < w.end {
        if t.warm.is_none() && now >= w.warm {
            t.warm = Some(Usage::now(name));
        }
        let mut g = shared.lock().expect("nobody dies in this test");
        g.total += 1;
        g.per_process[index] += 1;
        drop(g);
        t.count += 1;
        let after = Instant::now();
        t.longest_wait = t.longest_wait.max(after - now);
        now = after;
    }
    t.report(name, 0);
    0
}

/// Locks its own entry `proc/INDEX` of the store at `name` again and again
/// until the end of the run, and one time in [`SHARED_EVERY`] one of the
/// entries `shared/K` instead, adding one each time.
fn hammer_store(name: &str, index: usize) -> i32 {
    let store = Store::open(name).expect("open the store");
    let own = store.get::<u64>(&own_key(index)).expect("own entry");
    let shared: Vec<Shared<u64>> = (0..SHARED_KEYS)
        .map(|k| store.get::<u64>(&shared_key(k)).expect("shared entry"))
        .collect();
    let w = wait_for_go();
    let mut t = Tally::new();
    let mut shared_count = 0u64;
    let mut now = Instant::now();
    while now < w.end {
        if t.warm.is_none() && now >= w.warm {
            t.warm = Some(Usage::now(name));
        }
        if t.count % SHARED_EVERY == SHARED_EVERY - 1 {
            let k = (index + (t.count / SHARED_EVERY) as usize) % SHARED_KEYS;
            *shared[k].lock().expect("nobody dies in this test") += 1;
            shared_count += 1;
        } else {
            *own.lock().expect("nobody dies in this test") += 1;
        }
        t.count += 1;
        let after = Instant::now();
        t.longest_wait = t.longest_wait.max(after - now);
        now = after;
    }
    t.report(name, shared_count);
    0
}

fn own_key(index: usize) -> String {
    format!("proc/{index:02}")
}

fn shared_key(k: usize) -> String {
    format!("shared/{k}")
}

// ===========================================================================
// The parent's side

fn num(line: &str, key: &str) -> u64 {
    field(line, key)
        .parse()
        .unwrap_or_else(|_| panic!("{key}= is not a number in `{line}`"))
}

/// What one process reported.
struct Outcome {
    pid: u32,
    count: u64,
    shared: u64,
    longest_wait_us: u64,
    warm: Usage,
    end: Usage,
}

fn unix_ms(t: SystemTime) -> u128 {
    t.duration_since(UNIX_EPOCH).unwrap().as_millis()
}

/// The names in /dev/shm.
fn dev_shm() -> BTreeSet<String> {
    std::fs::read_dir("/dev/shm")
        .unwrap()
        .flatten()
        .filter_map(|e| e.file_name().into_string().ok())
        .collect()
}

/// The /dev/shm objects that process `pid` maps, with how many times.
fn shm_mappings(pid: u32) -> Vec<String> {
    let maps = std::fs::read_to_string(format!("/proc/{pid}/maps")).unwrap_or_default();
    maps.lines()
        .filter_map(|l| l.split_whitespace().nth(5))
        .filter(|p| p.starts_with("/dev/shm/"))
        .map(str::to_owned)
        .collect()
}

/// Starts `PROCS` children playing `role` on `seg`, lets them run for
/// [`RUN`], and checks, half-way, that each maps the segment exactly once
/// and nothing else in /dev/shm, and that none of them made a segment since
/// /dev/shm held `before` (this process is left out: other tests here make
/// segments at the same time). Returns what each child reported.
fn run(role: &str, seg: &Segment, before: &BTreeSet<String>) -> Vec<Outcome> {
    let mut kids: Vec<Kid> = (0..PROCS)
        .map(|i| Kid::spawn(role, &[seg.name(), &i.to_string()]))
        .collect();
    for k in &mut kids {
        k.expect("ready");
    }
    let start = SystemTime::now() + Duration::from_millis(20);
    let go = format!("go {} {}", unix_ms(start + WARM_UP), unix_ms(start + RUN));
    for k in &mut kids {
        k.send(&go);
    }

    std::thread::sleep(RUN / 2);
    let path = seg.path().display().to_string();
    for k in &kids {
        assert_eq!(
            shm_mappings(k.pid()),
            vec![path.clone()],
            "process {} maps something else in /dev/shm, or the segment more than once",
            k.pid()
        );
    }
    let kids_pids: BTreeSet<u32> = kids.iter().map(Kid::pid).collect();
    let made: Vec<String> = dev_shm()
        .difference(before)
        .filter(|name| {
            shmstore::inspect::report(name.as_str())
                .ok()
                .and_then(|r| r.header().map(|h| h.creator_pid))
                .is_some_and(|pid| kids_pids.contains(&pid))
        })
        .cloned()
        .collect();
    assert!(made.is_empty(), "segments the processes made: {made:?}");

    let outcomes = kids
        .iter_mut()
        .map(|k| {
            let line = k.expect("done");
            k.wait_success();
            Outcome {
                pid: k.pid(),
                count: num(&line, "count"),
                shared: num(&line, "shared"),
                longest_wait_us: num(&line, "wait_us"),
                warm: Usage::parse(&line, "0"),
                end: Usage::parse(&line, "1"),
            }
        })
        .collect();
    outcomes
}

/// Prints what each process did and asserts that each got the lock, within
/// [`MAX_WAIT`] every time, and that nothing grew.
fn judge(what: &str, outcomes: &[Outcome]) {
    let total: u64 = outcomes.iter().map(|o| o.count).sum();
    println!("{what}: {PROCS} processes, {total} acquisitions");
    for (i, o) in outcomes.iter().enumerate() {
        println!(
            "  #{i:<2} pid {:<7} {:>10} acquisitions; rss {} -> {} kB, fds {} -> {}, mappings {} -> {}",
            o.pid,
            o.count,
            o.warm.rss_kb,
            o.end.rss_kb,
            o.warm.fds,
            o.end.fds,
            o.warm.maps,
            o.end.maps
        );
    }

    for (i, o) in outcomes.iter().enumerate() {
        assert!(
            o.count > 0,
            "{what}: process #{i} never got the lock in {RUN:?}"
        );
        assert!(
            Duration::from_micros(o.longest_wait_us) < MAX_WAIT,
            "{what}: process #{i} waited {} ms for the lock once",
            o.longest_wait_us / 1000
        );
        assert!(
            o.end.rss_kb <= o.warm.rss_kb + RSS_GROWTH_KB,
            "{what}: process #{i}'s resident memory grew from {} to {} kB",
            o.warm.rss_kb,
            o.end.rss_kb
        );
        assert_eq!(
            o.end.fds, o.warm.fds,
            "{what}: process #{i}'s open descriptors"
        );
        assert_eq!(o.end.maps, o.warm.maps, "{what}: process #{i}'s mappings");
        assert_eq!(
            (o.warm.segment_maps, o.end.segment_maps),
            (1, 1),
            "{what}: process #{i}'s mappings of the segment"
        );
    }
}

// ===========================================================================
// Tests

/// Sixteen processes lock one `Shared<T>` for 2.5 s: no update is lost
/// (the total and each process's own count in the value equal what the
/// processes counted), every process gets the lock, and nobody's memory,
/// descriptors or mappings grow.
#[test]
fn sixteen_processes_on_one_lock_lose_nothing_and_all_get_it() {
    let _heavy = heavy();
    let seg = Segment::new("load-lock");
    let before = dev_shm();
    let shared = Shared::create(seg.name(), Tallies::default()).unwrap();
    let outcomes = run("lock", &seg, &before);

    let g = shared.lock().expect("nobody died holding the lock");
    let counted: u64 = outcomes.iter().map(|o| o.count).sum();
    assert_eq!(g.total, counted, "updates were lost");
    for (i, o) in outcomes.iter().enumerate() {
        assert_eq!(
            g.per_process[i], o.count,
            "process #{i}'s own updates were lost"
        );
    }
    drop(g);
    assert!(!shared.is_poisoned());
    judge("one lock", &outcomes);
}

/// Sixteen processes lock their own entry of one store, and one time in
/// four one of four shared entries, for 2.5 s: every entry holds exactly
/// what was added to it, the store checks out, every process gets its
/// entries' locks, and nothing grows.
#[test]
fn sixteen_processes_on_one_store_lose_nothing_and_all_get_their_turn() {
    let _heavy = heavy();
    let seg = Segment::new("load-store");
    let before = dev_shm();
    let store = Store::create(seg.name(), 64 * 1024).unwrap();
    for i in 0..PROCS {
        store.insert::<u64>(&own_key(i), 0).unwrap();
    }
    for k in 0..SHARED_KEYS {
        store.insert::<u64>(&shared_key(k), 0).unwrap();
    }
    let outcomes = run("store", &seg, &before);

    for (i, o) in outcomes.iter().enumerate() {
        let own = *store.get::<u64>(&own_key(i)).unwrap().lock().unwrap();
        assert_eq!(
            own,
            o.count - o.shared,
            "process #{i}'s entry lost updates or got others'"
        );
    }
    let in_shared: u64 = (0..SHARED_KEYS)
        .map(|k| *store.get::<u64>(&shared_key(k)).unwrap().lock().unwrap())
        .sum();
    let counted: u64 = outcomes.iter().map(|o| o.shared).sum();
    assert_eq!(
        in_shared, counted,
        "updates of the shared entries were lost"
    );
    store.check().expect("the store is consistent");
    let entries = store.entries().unwrap();
    assert_eq!(entries.len(), PROCS + SHARED_KEYS);
    assert!(
        entries.iter().all(|e| !e.locked && !e.poisoned),
        "{entries:?}"
    );
    judge("store entries", &outcomes);
}
