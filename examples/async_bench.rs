//! Async waiting, measured in one run:
//!
//! 1. wake latency from a commit in a writer process to the waiter in this
//!    one. The writer commits on its own clock (every 700 us), as an
//!    independent service would; this process waits for each commit in
//!    turn with: the blocking `wait_for_change` on its thread;
//!    `spawn_blocking` of `wait_for_change` awaited in a tokio task (how
//!    async code waited before `changed`); `changed(seen).await` under
//!    `futures::executor::block_on`, tokio's current-thread runtime and in
//!    a task of tokio's multi-thread runtime; and a relay of two plain
//!    threads, one blocked in `wait_for_change` that then unparks the
//!    other (the floor of any waiter whose task runs on a thread other
//!    than the one the kernel wakes). Each notes the time where it runs
//!    again (its thread or task). Median and p99 of each, and the ratio of
//!    its median to the blocking one;
//! 2. 10,000 tasks awaiting 10,000 different segments: background threads,
//!    the process's threads and memory, time for all to resolve;
//! 3. a writer's commit cost (lock, write, unlock) with nobody waiting and
//!    with tasks awaiting each commit.
//!
//! ```text
//! cargo run --release --example async_bench [SCALE]   # SCALE 1: 2,000 wakes per kind (0.05 for a smoke run)
//! ```

use std::io::{BufRead, BufReader, Read};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use nix::time::{clock_gettime, ClockId};
use shmstore::{Shareable, Shared};

#[derive(Shareable, Clone, Copy, Debug, Default)]
#[repr(C)]
struct Stamp {
    /// CLOCK_MONOTONIC at the commit, in nanoseconds.
    at_ns: u64,
    round: u64,
}

fn now_ns() -> u64 {
    let t = clock_gettime(ClockId::CLOCK_MONOTONIC).expect("CLOCK_MONOTONIC");
    t.tv_sec() as u64 * 1_000_000_000 + t.tv_nsec() as u64
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.first().map(String::as_str) == Some("writer") {
        return writer(&args[1]);
    }
    let scale: f64 = args.first().map_or(1.0, |s| s.parse().expect("SCALE"));
    let rounds = ((2000.0 * scale) as usize).max(20);
    latency(rounds);
    many(10_000);
    commit_cost(((200_000.0 * scale) as usize).max(2000));
}

/// The writer process: a commit every 700 us until its stdin closes.
fn writer(name: &str) {
    let s = Shared::<Stamp>::open(name).expect("open");
    let stop = Arc::new(AtomicBool::new(false));
    let stopping = stop.clone();
    std::thread::spawn(move || {
        let _ = std::io::stdin().read_to_end(&mut Vec::new());
        stopping.store(true, Ordering::Relaxed);
    });
    println!("ready");
    while !stop.load(Ordering::Relaxed) {
        std::thread::sleep(Duration::from_micros(700));
        let mut g = s.lock().expect("not poisoned");
        g.round += 1;
        g.at_ns = now_ns();
    }
}

fn percentile(v: &mut [u64], p: f64) -> f64 {
    v.sort_unstable();
    v[((v.len() - 1) as f64 * p) as usize] as f64 / 1000.0
}

/// The ways this process waits for a commit, in the order they take turns.
const KINDS: [&str; 6] = [
    "wait_for_change (blocking)",
    "relay: a thread waits, then unparks this",
    "spawn_blocking(wait_for_change) awaited",
    "changed().await, futures block_on",
    "changed().await, tokio current_thread",
    "changed().await, tokio multi_thread task",
];

fn latency(rounds: usize) {
    /// Unlinks the segment's name however the measurement ends.
    struct Unlink(String);
    impl Drop for Unlink {
        fn drop(&mut self) {
            let _ = shmstore::unlink(self.0.as_str());
        }
    }
    let name = format!("shmstore-async-bench-{}", std::process::id());
    let s = Arc::new(Shared::create(&name, Stamp::default()).expect("create"));
    let _unlink = Unlink(name.clone());
    let mut child = Command::new(std::env::current_exe().unwrap())
        .args(["writer", &name])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("writer process");
    let to = child.stdin.take().unwrap();
    let mut from = BufReader::new(child.stdout.take().unwrap());
    let mut line = String::new();
    from.read_line(&mut line).unwrap();
    let current = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    let multi = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .build()
        .unwrap();
    let relay = Relay::start(s.clone());
    let mut got: Vec<Vec<u64>> = vec![Vec::new(); KINDS.len()];
    let ten = Duration::from_secs(10);
    for i in 0..KINDS.len() * rounds {
        let seen = s.generation();
        let round = s.snapshot().unwrap().round;
        let kind = i % KINDS.len();
        // Each waiter notes the time it runs again, in the thread or task
        // that waited.
        let woke = match kind {
            0 => {
                s.wait_for_change(seen, ten).unwrap().expect("a commit");
                now_ns()
            }
            1 => relay.wait(seen),
            2 => {
                let s = s.clone();
                multi
                    .block_on(multi.spawn(async move {
                        let waited =
                            tokio::task::spawn_blocking(move || s.wait_for_change(seen, ten));
                        waited.await.unwrap().unwrap().expect("a commit");
                        now_ns()
                    }))
                    .unwrap()
            }
            3 => futures::executor::block_on(async {
                s.changed(seen).await.unwrap();
                now_ns()
            }),
            4 => current.block_on(async {
                s.changed(seen).await.unwrap();
                now_ns()
            }),
            _ => {
                let s = s.clone();
                multi
                    .block_on(multi.spawn(async move {
                        s.changed(seen).await.unwrap();
                        now_ns()
                    }))
                    .unwrap()
            }
        };
        let at = s.snapshot().unwrap();
        if at.round == round + 1 {
            got[kind].push(woke - at.at_ns);
        } // else: the waiter was late for a commit; not a wake-up to count
    }
    drop(relay);
    drop(to);
    child.wait().unwrap();
    let base = percentile(&mut got[0], 0.5);
    let floor = percentile(&mut got[1], 0.5);
    println!(
        "wake latency, commit in another process (every 700 us) to the waiter; \
         {rounds} commits each, in turn:"
    );
    for (kind, v) in KINDS.iter().zip(&mut got) {
        let m = percentile(v, 0.5);
        println!(
            "  {kind:<40} median {m:6.1} us, p99 {:6.1} us, {:.2}x the blocking median, \
             {:.2}x the relay's ({} wakes)",
            percentile(v, 0.99),
            m / base,
            m / floor,
            v.len()
        );
    }
}

/// Two plain threads: one blocked in `wait_for_change`, which then
/// unparks the one that asked. A waiter that does not sleep on the counter
/// itself cannot run sooner than this: the kernel wakes one thread, which
/// wakes another.
struct Relay {
    ask: Option<std::sync::mpsc::Sender<(u64, std::thread::Thread)>>,
    done: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Relay {
    fn start(s: Arc<Shared<Stamp>>) -> Relay {
        let (ask, asked) = std::sync::mpsc::channel::<(u64, std::thread::Thread)>();
        let done = Arc::new(AtomicBool::new(false));
        let done2 = done.clone();
        let thread = std::thread::spawn(move || {
            for (seen, asker) in asked {
                s.wait_for_change(seen, Duration::from_secs(10))
                    .unwrap()
                    .expect("a commit");
                done2.store(true, Ordering::Release);
                asker.unpark();
            }
        });
        Relay {
            ask: Some(ask),
            done,
            thread: Some(thread),
        }
    }

    /// Waits for a commit after `seen` through the relay thread; the time
    /// this thread runs again.
    fn wait(&self, seen: u64) -> u64 {
        let ask = self.ask.as_ref().unwrap();
        ask.send((seen, std::thread::current())).unwrap();
        while !self.done.swap(false, Ordering::Acquire) {
            std::thread::park();
        }
        now_ns()
    }
}

impl Drop for Relay {
    fn drop(&mut self) {
        self.ask = None;
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn status(key: &str) -> u64 {
    let s = std::fs::read_to_string("/proc/self/status").unwrap();
    let l = s.lines().find(|l| l.starts_with(key)).unwrap();
    l.split_whitespace().nth(1).unwrap().parse().unwrap()
}

fn many(n: usize) {
    let segments: Vec<Arc<Shared<u64>>> = (0..n)
        .map(|_| Arc::new(Shared::memfd(0u64).expect("memfd")))
        .collect();
    let (threads0, rss0) = (status("Threads:"), status("VmRSS:"));
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
        .unwrap();
    rt.block_on(async {
        let mut set = tokio::task::JoinSet::new();
        for s in &segments {
            let s = s.clone();
            set.spawn(async move { s.changed(0).await });
        }
        let t0 = Instant::now();
        while shmstore::__private::async_wait::registrations() < n {
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        let registered = t0.elapsed();
        let (threads, rss) = (status("Threads:"), status("VmRSS:"));
        let t1 = Instant::now();
        for s in &segments {
            *s.lock().unwrap() += 1;
        }
        while let Some(r) = set.join_next().await {
            r.unwrap().unwrap();
        }
        println!(
            "{n} tasks awaiting {n} segments (memfd, one process):\n  \
             background threads {} ({} threads in the process, {threads0} before the tasks), \
             memory +{:.1} MiB for tasks and registrations (RSS {:.1} MiB)\n  \
             all pending after {:.1} ms; all resolved {:.1} ms after the first of {n} commits",
            shmstore::__private::async_wait::threads(),
            threads,
            (rss.saturating_sub(rss0)) as f64 / 1024.0,
            rss as f64 / 1024.0,
            registered.as_secs_f64() * 1e3,
            t1.elapsed().as_secs_f64() * 1e3,
        );
    });
}

fn commit_cost(commits: usize) {
    let s = Arc::new(Shared::memfd(0u64).expect("memfd"));
    let commit_loop = |s: &Shared<u64>| {
        let t0 = Instant::now();
        for _ in 0..commits {
            *s.lock().unwrap() += 1;
        }
        t0.elapsed().as_nanos() as f64 / commits as f64
    };
    let alone = commit_loop(&s);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .build()
        .unwrap();
    let stop = Arc::new(AtomicBool::new(false));
    let tasks = 100;
    for _ in 0..tasks {
        let (s, stop) = (s.clone(), stop.clone());
        rt.spawn(async move {
            let mut seen = s.generation();
            while !stop.load(Ordering::Relaxed) {
                seen = s.changed(seen).await.unwrap();
            }
        });
    }
    while shmstore::__private::async_wait::registrations() < tasks {
        std::thread::sleep(Duration::from_millis(1));
    }
    let watched = commit_loop(&s);
    stop.store(true, Ordering::Relaxed);
    *s.lock().unwrap() += 1;
    drop(rt);
    println!(
        "commit cost (lock, write, unlock; {commits} commits):\n  \
         nobody waiting: {alone:.0} ns\n  \
         {tasks} tasks awaiting every change: {watched:.0} ns"
    );
}
