//! Worker processes keep their statistics and a shared job counter as
//! entries of one [`Store`]; a viewer lists every entry and decodes the ones
//! it knows.
//!
//! ```text
//! cargo run --release --example store                       # demo: 3 workers and a viewer, checked
//! cargo run --release --example store -- worker NAME N JOBS # worker N takes JOBS job numbers
//! cargo run --release --example store -- view NAME          # list the entries once
//! cargo run --release --example store -- view NAME --watch  # and again whenever they change
//! cargo run --release --example store -- remove NAME        # remove the store
//! ```
//!
//! A worker opens (or creates) the store `NAME`, finds or makes the entries
//! `jobs/next` (a `u64`: the next job number) and `worker/N` (its
//! [`WorkerStats`]), then does `JOBS` jobs: it takes the next job number
//! under the lock of `jobs/next`, works on it outside any lock, and adds the
//! job to its statistics under the lock of its own entry. Entries never
//! contend with each other: a worker updating its statistics does not delay
//! another taking a job number.
//!
//! The demo creates a store of its own, runs three workers at once and then
//! a viewer, and checks that every job number was taken exactly once: the
//! counter equals the sum of the workers' jobs, and the job numbers the
//! workers took add up to `0 + 1 + ... + (total - 1)`. It prints `OK` or
//! exits non-zero, and removes the store either way.
//!
//! Try it by hand with several terminals:
//!
//! ```text
//! cargo run --release --example store -- view demo --watch   # waits for the store to appear
//! cargo run --release --example store -- worker demo 1 200000
//! cargo run --release --example store -- worker demo 2 200000
//! cargo run --release --example store -- remove demo         # the watcher exits
//! ```

use std::collections::HashMap;
use std::io::Read;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use shmstore::{EntryInfo, Error, Shareable, Shared, SharedGuard, Store};

/// What a worker keeps about itself, under the key `worker/N`.
#[derive(Shareable, Clone, Copy, Default, Debug)]
#[repr(C)]
struct WorkerStats {
    /// Jobs done.
    jobs: u64,
    /// Time spent working on them, in microseconds.
    busy_us: u64,
    /// The number of the last job done.
    last_job: u64,
    /// The sum of the numbers of the jobs done (for the demo's check).
    job_sum: u64,
    /// The worker's process id.
    pid: u32,
    /// The worker's number N.
    worker: u32,
}

/// The key of the job counter.
const NEXT_JOB: &str = "jobs/next";
/// Bytes of entries in a store that a worker creates (each entry here
/// takes 256 bytes: room for 250 workers).
const CAPACITY: usize = 64 * 1024;
/// How often `view --watch` looks at the values (entries coming and going
/// wake it at once).
const REFRESH: Duration = Duration::from_secs(1);
/// Workers and jobs per worker in the demo.
const DEMO_WORKERS: u32 = 3;
const DEMO_JOBS: u64 = 5000;
/// The longest the demo waits for a child process.
const CHILD_TIMEOUT: Duration = Duration::from_secs(60);

type AnyResult<T> = Result<T, Box<dyn std::error::Error>>;

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let result = match args.as_slice() {
        [] => demo(),
        ["worker", name, n, jobs] => match (n.parse(), jobs.parse()) {
            (Ok(n), Ok(jobs)) => worker(name, n, jobs),
            _ => Err(usage()),
        },
        ["view", name] => view(name),
        ["view", name, "--watch"] => watch(name),
        ["remove", name] => Store::unlink(*name).map_err(Into::into),
        _ => Err(usage()),
    };
    if let Err(e) = result {
        eprintln!("store: {e}");
        std::process::exit(1);
    }
}

fn usage() -> Box<dyn std::error::Error> {
    "usage: store [worker NAME N JOBS | view NAME [--watch] | remove NAME]".into()
}

/// Locks an entry. After a holder died (or panicked) holding it, the value
/// is still usable here (at worst a worker's figures are one job apart), so
/// say so, take it over and clear the poison.
fn lock<T: Shareable>(entry: &Shared<T>) -> SharedGuard<'_, T> {
    entry.lock().unwrap_or_else(|poisoned| {
        eprintln!("store: a holder of `{}` died; taking over", entry.name());
        entry.clear_poison();
        poisoned.into_inner()
    })
}

// ---------------------------------------------------------------------------
// Worker

fn worker(name: &str, n: u32, jobs: u64) -> AnyResult<()> {
    let store = Store::open_or_create(name, CAPACITY)?;
    let next = store.get_or_create::<u64>(NEXT_JOB, 0)?;
    let mine = store.get_or_create(&format!("worker/{n}"), WorkerStats::default())?;
    let pid = std::process::id();
    let before = {
        let mut s = lock(&mine);
        s.pid = pid;
        s.worker = n;
        s.jobs
    };
    let mut carry_ns = 0u128;
    let mut last = None;
    for _ in 0..jobs {
        // Take the next job number: the counter's lock makes it ours alone.
        let job = {
            let mut next = lock(&next);
            let job = *next;
            *next += 1;
            job
        };
        let started = Instant::now();
        std::hint::black_box(work(job));
        carry_ns += started.elapsed().as_nanos();
        let mut s = lock(&mine);
        s.jobs += 1;
        s.busy_us += (carry_ns / 1000) as u64;
        s.last_job = job;
        s.job_sum += job;
        carry_ns %= 1000;
        last = Some(job);
    }
    let s = mine.snapshot().unwrap_or_else(|p| p.into_inner());
    let earlier = if before > 0 {
        format!(" ({} in all, with earlier runs)", s.jobs)
    } else {
        String::new()
    };
    println!(
        "worker {n} (pid {pid}): {jobs} jobs done, {:.1} us each, last job {}{earlier}",
        s.busy_us as f64 / s.jobs.max(1) as f64,
        last.map_or("-".to_owned(), |j| j.to_string()),
    );
    Ok(())
}

/// A job: some arithmetic, a few to a few tens of microseconds.
fn work(job: u64) -> u64 {
    let mut x = job.wrapping_add(0x9e37_79b9_7f4a_7c15);
    for _ in 0..2_000 + job % 4_000 {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
    }
    x
}

// ---------------------------------------------------------------------------
// Viewer

fn view(name: &str) -> AnyResult<()> {
    let store = Store::open(name)?;
    print!("{}", listing(&store, &store.entries()?));
    Ok(())
}

/// Prints the listing now, again as soon as entries are created or removed
/// (`Store::wait_for_change`), and again when values changed (looked at
/// every [`REFRESH`]). Waits for the store to appear; exits when it is
/// removed.
fn watch(name: &str) -> AnyResult<()> {
    let mut said = false;
    let store = loop {
        match Store::open(name) {
            Ok(store) => break store,
            Err(Error::NotFound { .. }) => {
                if !said {
                    println!("--- {} waiting for store `{name}` to be created", clock());
                    said = true;
                }
                std::thread::sleep(REFRESH);
            }
            Err(e) => return Err(e.into()),
        }
    };
    let mut seen = store.generation();
    let mut shown = None;
    let mut removed = false;
    loop {
        let entries = store.entries()?;
        let values: Vec<(String, u64)> = entries
            .iter()
            .map(|e| (e.key.clone(), e.generation))
            .collect();
        if shown.as_ref() != Some(&values) {
            let what = match &shown {
                None => "",
                Some(old) if keys(old) != keys(&values) => " (entries came or went)",
                Some(_) => " (values changed)",
            };
            println!("--- {}{what}", clock());
            print!("{}", listing(&store, &entries));
            shown = Some(values);
        }
        if removed {
            println!("--- {} store `{name}` was removed", clock());
            return Ok(());
        }
        match store.wait_for_change(seen, REFRESH)? {
            Some(now) => seen = now,
            // Nothing came or went: values are looked at again above. Stop
            // after that once the store's name is gone.
            None => match Store::open(name) {
                Ok(_) => {}
                Err(Error::NotFound { .. }) => removed = true,
                Err(e) => return Err(e.into()),
            },
        }
    }
}

fn keys(values: &[(String, u64)]) -> Vec<&str> {
    let mut k: Vec<&str> = values.iter().map(|(k, _)| k.as_str()).collect();
    k.sort_unstable();
    k
}

/// The time of day (UTC), for the watcher's headings.
fn clock() -> String {
    let s = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    format!("{:02}:{:02}:{:02}", s / 3600 % 24, s / 60 % 60, s % 60)
}

/// The table of entries: key, type, size, generation, and what the value
/// says for the types this program knows.
fn listing(store: &Store, entries: &[EntryInfo]) -> String {
    let mut entries: Vec<&EntryInfo> = entries.iter().collect();
    entries.sort_by(|a, b| a.key.cmp(&b.key));
    let free = store.free_bytes().unwrap_or(0);
    let mut out = format!(
        "store `{}`: {} entries, {} of {} bytes free, generation {}\n",
        store.name(),
        entries.len(),
        free,
        store.capacity(),
        store.generation(),
    );
    let kw = entries
        .iter()
        .map(|e| e.key.len())
        .max()
        .unwrap_or(0)
        .max(3);
    let tw = entries
        .iter()
        .map(|e| e.type_name.len())
        .max()
        .unwrap_or(0)
        .max(4);
    out += &format!(
        "  {:kw$}  {:tw$}  bytes  generation  value\n",
        "key", "type"
    );
    let mut total_jobs = 0;
    for e in &entries {
        let mut value = decode(store, e, &mut total_jobs);
        if e.poisoned {
            value += " [poisoned]";
        } else if e.locked {
            value += " [locked]";
        }
        out += &format!(
            "  {:kw$}  {:tw$}  {:>5}  {:>10}  {value}\n",
            e.key, e.type_name, e.size, e.generation
        );
    }
    if total_jobs > 0 {
        out += &format!("  (workers' jobs in all: {total_jobs})\n");
    }
    out
}

/// What the value of entry `e` says, for the types this program knows (by
/// their layout fingerprint, which also tells another build's `WorkerStats`
/// apart); adds a worker's jobs to `total_jobs`.
fn decode(store: &Store, e: &EntryInfo, total_jobs: &mut u64) -> String {
    let read = |r: Result<String, Error>| match r {
        Ok(s) => s,
        Err(Error::NotFound { .. }) => "(removed just now)".to_owned(),
        Err(e) => format!("({e})"),
    };
    if e.fingerprint == WorkerStats::FINGERPRINT {
        read(store.get::<WorkerStats>(&e.key).map(|entry| {
            let s = entry.snapshot().unwrap_or_else(|p| p.into_inner());
            *total_jobs += s.jobs;
            format!(
                "worker {}, pid {}: {} jobs, {:.1} us each, last job {}",
                s.worker,
                s.pid,
                s.jobs,
                s.busy_us as f64 / s.jobs.max(1) as f64,
                s.last_job
            )
        }))
    } else if e.fingerprint == u64::FINGERPRINT {
        read(store.get::<u64>(&e.key).map(|entry| {
            let v = entry.snapshot().unwrap_or_else(|p| p.into_inner());
            if e.key == NEXT_JOB {
                format!("next job number {v}")
            } else {
                v.to_string()
            }
        }))
    } else {
        "(a type this viewer does not know)".to_owned()
    }
}

// ---------------------------------------------------------------------------
// Demo

fn demo() -> AnyResult<()> {
    /// Removes the demo's store however the demo ends (a panic included).
    struct Remove(String);
    impl Drop for Remove {
        fn drop(&mut self) {
            let _ = Store::unlink(self.0.as_str());
        }
    }
    let name = Remove(format!("store-demo-{}", std::process::id()));
    let result = run_demo(&name.0);
    drop(name);
    match result {
        Ok(summary) => {
            println!("OK: {summary}");
            Ok(())
        }
        Err(e) => {
            println!("FAILED: {e}");
            std::process::exit(1);
        }
    }
}

/// A child process that is killed if it is still running when dropped.
struct Process(Child);

impl Process {
    fn spawn(args: &[&str]) -> AnyResult<Process> {
        let child = Command::new(std::env::current_exe()?)
            .args(args)
            .stdout(Stdio::piped())
            .spawn()?;
        Ok(Process(child))
    }

    /// Waits (at most [`CHILD_TIMEOUT`]); its output, if it succeeded.
    fn finish(mut self, what: &str) -> AnyResult<String> {
        let deadline = Instant::now() + CHILD_TIMEOUT;
        let status = loop {
            if let Some(status) = self.0.try_wait()? {
                break status;
            }
            if Instant::now() > deadline {
                return Err(format!("{what} did not finish in {CHILD_TIMEOUT:?}").into());
            }
            std::thread::sleep(Duration::from_millis(5));
        };
        let mut out = String::new();
        if let Some(mut stdout) = self.0.stdout.take() {
            stdout.read_to_string(&mut out)?;
        }
        if !status.success() {
            return Err(format!("{what} failed ({status}); its output: {out:?}").into());
        }
        Ok(out)
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        if let Ok(None) = self.0.try_wait() {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
}

fn run_demo(name: &str) -> AnyResult<String> {
    let store = Store::create(name, CAPACITY)?;
    store.insert::<u64>(NEXT_JOB, 0)?;
    println!(
        "shmstore store: {DEMO_WORKERS} worker processes take {DEMO_JOBS} jobs each from one counter \
         in store `{name}`, keeping their stats beside it."
    );

    let jobs = DEMO_JOBS.to_string();
    let mut workers = Vec::new();
    for n in 1..=DEMO_WORKERS {
        let p = Process::spawn(&["worker", name, &n.to_string(), &jobs])?;
        workers.push((n, p.0.id(), p));
    }
    let mut pids = HashMap::new();
    for (n, pid, p) in workers {
        print!("{}", p.finish(&format!("worker {n}"))?);
        pids.insert(n, pid);
    }
    println!("The viewer, another process, lists the store:");
    print!("{}", Process::spawn(&["view", name])?.finish("the viewer")?);

    // Check: every job number was taken exactly once.
    let next = store.get::<u64>(NEXT_JOB)?.snapshot()?;
    let expected = u64::from(DEMO_WORKERS) * DEMO_JOBS;
    let (mut jobs_done, mut job_sum) = (0, 0);
    for n in 1..=DEMO_WORKERS {
        let s = store
            .get::<WorkerStats>(&format!("worker/{n}"))?
            .snapshot()?;
        if s.jobs != DEMO_JOBS || s.worker != n || Some(&s.pid) != pids.get(&n) {
            return Err(format!("worker/{n} holds {s:?}").into());
        }
        jobs_done += s.jobs;
        job_sum += s.job_sum;
    }
    let all_numbers = expected * (expected - 1) / 2;
    let entries = store.len()?;
    if next != expected || jobs_done != expected || job_sum != all_numbers {
        return Err(format!(
            "counter {next}, jobs done {jobs_done}, expected {expected}; \
             job numbers add up to {job_sum}, expected {all_numbers}"
        )
        .into());
    }
    if entries != DEMO_WORKERS as usize + 1 {
        return Err(format!("{entries} entries, expected {}", DEMO_WORKERS + 1).into());
    }
    Ok(format!(
        "counter = {next} = jobs done by the workers; their job numbers add up to {job_sum} \
         = 0 + 1 + ... + {}, so each was taken exactly once",
        expected - 1
    ))
}
