//! What mirroring a whole store costs, for one entry changing in a store
//! of 10,000, measured in one run against a local `redis-server`:
//!
//! - bytes sent to Redis per change (the server's `INFO stats`
//!   `total_net_input_bytes`, before and after; the figure includes the
//!   few `INFO` calls and the subscriber's checks of the store's revision)
//!   and bytes Redis sent out per change (announcements included);
//! - publish-to-apply time: from a commit on store A to
//!   `wait_for_change` returning on store B's entry with the new value,
//!   median and p99;
//! - the idle CPU cost of the two mirrors watching 10,000 entries, and
//!   the time the first full copy took.
//!
//! ```text
//! cargo run --release --features mirror --example mirror_store_bench [-- ROUNDS [ENTRIES]]
//! ```
//!
//! Both "hosts" are stores in this process, on one /dev/shm (see
//! tests/mirror.rs for hosts with their own). Figures from a loaded
//! machine say little: the machine's load is printed with them.

#[path = "common/machine.rs"]
mod machine;
#[path = "common/redis_server.rs"]
mod redis_server;

use std::time::{Duration, Instant};

use machine::{cpu_model, load_average, CpuClock};
use shmstore::mirror::MirrorOptions;
use shmstore::{Shareable, Store};

#[derive(Shareable, Clone, Copy, Default)]
#[repr(C)]
struct Item {
    seq: u64,
    data: [u64; 3],
}

fn main() {
    let mut args = std::env::args().skip(1);
    let rounds: usize = args.next().and_then(|a| a.parse().ok()).unwrap_or(1000);
    let entries: usize = args.next().and_then(|a| a.parse().ok()).unwrap_or(10_000);
    let (_server, url) = redis_server::start();
    println!("shmstore store mirror bench: {entries} entries, {rounds} changes, Redis at {url}");
    println!("machine: {}; load average {}", cpu_model(), load_average());

    let tag = std::process::id();
    let (a_name, b_name) = (
        format!("bench-store-a-{tag}"),
        format!("bench-store-b-{tag}"),
    );
    let capacity = entries * 512 + (1 << 20);
    let a = Store::create(&a_name, capacity).unwrap();
    let b = Store::create(&b_name, capacity).unwrap();
    let _cleanup = Cleanup(vec![a_name.clone(), b_name.clone()]);
    let handles: Vec<_> = (0..entries)
        .map(|i| a.insert(&format!("item/{i}"), Item::default()).unwrap())
        .collect();

    let opts = MirrorOptions::new(url.clone());
    let object = format!("bench-store-{tag}");
    let started = Instant::now();
    let pa = opts.publish_store(&object, &a).unwrap();
    let sb = opts.subscribe_store(&object, &b).unwrap();
    while b.len().unwrap() < entries || sb.stats().created < entries as u64 {
        assert!(started.elapsed() < Duration::from_secs(120), "no full copy");
        std::thread::sleep(Duration::from_millis(5));
    }
    println!(
        "first full copy of {entries} entries: {:.0} ms",
        started.elapsed().as_secs_f64() * 1e3
    );

    // Idle: both mirrors watching, nothing changing.
    std::thread::sleep(Duration::from_millis(500));
    let cpu = own_cpu();
    let idle_from = Instant::now();
    std::thread::sleep(Duration::from_secs(3));
    let idle = (own_cpu() - cpu) / idle_from.elapsed().as_secs_f64();
    println!(
        "idle CPU of the publisher and subscriber ({entries} entries): {:.1}% of one CPU",
        idle * 100.0
    );

    let b_handles: Vec<_> = (0..rounds.min(entries))
        .map(|i| {
            b.get::<Item>(&format!("item/{}", i * (entries / rounds.min(entries))))
                .unwrap()
        })
        .collect();
    let mut con = redis::Client::open(url.as_str())
        .unwrap()
        .get_connection()
        .unwrap();
    let clock = CpuClock::now();
    let (in0, out0) = net_bytes(&mut con);
    let mut samples = Vec::with_capacity(rounds);
    for r in 0..rounds {
        let k = r % b_handles.len();
        let i = k * (entries / rounds.min(entries));
        let seq = r as u64 + 1;
        let there = &b_handles[k];
        let seen = there.generation();
        let t0 = Instant::now();
        *handles[i].lock().unwrap() = Item {
            seq,
            data: [seq; 3],
        };
        loop {
            if there.snapshot().unwrap().seq == seq {
                break;
            }
            there
                .wait_for_change(there.generation().max(seen), Duration::from_secs(5))
                .unwrap();
            assert!(
                t0.elapsed() < Duration::from_secs(30),
                "change {r} never arrived"
            );
        }
        samples.push(t0.elapsed());
    }
    let (in1, out1) = net_bytes(&mut con);
    samples.sort();
    let us = |d: Duration| d.as_secs_f64() * 1e6;
    let at = |q: f64| us(samples[((samples.len() - 1) as f64 * q).round() as usize]);
    println!(
        "one entry ({} value bytes) changing among {entries}:",
        std::mem::size_of::<Item>()
    );
    println!(
        "  bytes to Redis per change: {:.0}; from Redis per change: {:.0}",
        (in1 - in0) as f64 / rounds as f64,
        (out1 - out0) as f64 / rounds as f64
    );
    println!(
        "  commit on A -> wait_for_change returns on B: median {:.1} us, p99 {:.1} us, max {:.1} us",
        at(0.5),
        at(0.99),
        us(*samples.last().unwrap())
    );
    clock.report();
    let (pa, sb) = (pa.stats(), sb.stats());
    println!(
        "publisher: {} published, {} unchanged; subscriber: {} applied, {} created, {} refused",
        pa.published, pa.unchanged, sb.applied, sb.created, sb.refused
    );
}

/// `total_net_input_bytes` and `total_net_output_bytes` of the server.
fn net_bytes(con: &mut redis::Connection) -> (u64, u64) {
    let info: String = redis::cmd("INFO").arg("stats").query(con).unwrap();
    let get = |name: &str| {
        info.lines()
            .find_map(|l| l.strip_prefix(name)?.strip_prefix(':')?.trim().parse().ok())
            .unwrap_or(0)
    };
    (get("total_net_input_bytes"), get("total_net_output_bytes"))
}

/// This process's CPU time in seconds (user + system).
fn own_cpu() -> f64 {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    // After the command name's closing parenthesis: fields 3.. ; utime and
    // stime are fields 14 and 15.
    let rest = stat.rsplit_once(')').map_or("", |(_, r)| r);
    let f: Vec<f64> = rest
        .split_whitespace()
        .map(|v| v.parse().unwrap_or(0.0))
        .collect();
    (f.get(11).unwrap_or(&0.0) + f.get(12).unwrap_or(&0.0)) / 100.0
}

/// Removes the stores' names at the end.
struct Cleanup(Vec<String>);

impl Drop for Cleanup {
    fn drop(&mut self) {
        for name in &self.0 {
            let _ = Store::unlink(name);
        }
    }
}
