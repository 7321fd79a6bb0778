//! Async waiting, measured in one run:
//!
//! 1. wake latency from a commit in a writer process to the waiter in this
//!    one: the blocking `wait_for_change`, and `changed(seen).await` under
//!    `futures::executor::block_on` and under tokio's current-thread
//!    runtime, median and p99, in turn on the same writer's commits;
//! 2. 10,000 tasks awaiting 10,000 different segments: background threads,
//!    the process's threads and memory, time for all to resolve;
//! 3. a writer's commit cost (lock, write, unlock) with nobody waiting and
//!    with tasks awaiting each commit.
//!
//! ```text
//! cargo run --release --example async_bench [SCALE]   # SCALE 1: 2,000 wakes per kind (0.05 for a smoke run)
//! ```

use std::io::{BufRead, BufReader, Write};
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

/// The writer process: one commit per line read from stdin.
fn writer(name: &str) {
    let s = Shared::<Stamp>::open(name).expect("open");
    println!("ready");
    for line in std::io::stdin().lock().lines() {
        if line.expect("stdin") != "go" {
            break;
        }
        // Let the waiter fall asleep before the commit.
        std::thread::sleep(Duration::from_micros(500));
        let mut g = s.lock().expect("not poisoned");
        g.round += 1;
        g.at_ns = now_ns();
    }
}

fn percentile(v: &mut [u64], p: f64) -> f64 {
    v.sort_unstable();
    v[((v.len() - 1) as f64 * p) as usize] as f64 / 1000.0
}

fn latency(rounds: usize) {
    let name = format!("shmstore-async-bench-{}", std::process::id());
    let s = Shared::create(&name, Stamp::default()).expect("create");
    let mut child = Command::new(std::env::current_exe().unwrap())
        .args(["writer", &name])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("writer process");
    let mut to = child.stdin.take().unwrap();
    let mut from = BufReader::new(child.stdout.take().unwrap());
    let mut line = String::new();
    from.read_line(&mut line).unwrap();
    let rt = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    let (mut blocking, mut awaited, mut tokio) = (Vec::new(), Vec::new(), Vec::new());
    for i in 0..3 * rounds {
        let seen = s.generation();
        writeln!(to, "go").unwrap();
        match i % 3 {
            0 => {
                s.wait_for_change(seen, Duration::from_secs(10))
                    .unwrap()
                    .expect("a commit");
                blocking.push(now_ns() - s.snapshot().unwrap().at_ns);
            }
            1 => {
                futures::executor::block_on(s.changed(seen)).unwrap();
                awaited.push(now_ns() - s.snapshot().unwrap().at_ns);
            }
            _ => {
                rt.block_on(s.changed(seen)).unwrap();
                tokio.push(now_ns() - s.snapshot().unwrap().at_ns);
            }
        }
    }
    drop(to);
    child.wait().unwrap();
    shmstore::unlink(name.as_str()).unwrap();
    let bm = percentile(&mut blocking, 0.5);
    let line = |what: &str, v: &mut Vec<u64>| {
        let m = percentile(v, 0.5);
        println!(
            "  {what}: median {m:.1} us, p99 {:.1} us ({:.2}x the blocking median)",
            percentile(v, 0.99),
            m / bm
        );
    };
    println!(
        "wake latency, commit in another process to the waiter ({rounds} each, in turn):\n  \
         wait_for_change (blocking):                 median {bm:.1} us, p99 {:.1} us",
        percentile(&mut blocking, 0.99)
    );
    line("changed().await, futures::executor::block_on", &mut awaited);
    line("changed().await, tokio current_thread      ", &mut tokio);
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
