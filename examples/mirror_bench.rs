//! What mirroring through Redis costs, measured in one run against a local
//! `redis-server` on loopback:
//!
//! - propagation lag: from a commit on host A to `wait_for_change`
//!   returning on host B, with B's copy holding the new value; median and
//!   p99, next to a bare Redis round trip measured in the same run (a
//!   pipelined SET + PUBLISH of the same bytes from one connection, until
//!   a subscriber on another connection has the message);
//! - throughput: how many updates one publisher stores and announces per
//!   second while a local writer commits without pause (the publisher
//!   skips to the newest value, so it sends what it can), and how many of
//!   them a subscriber writes, for a 64-byte and a 4 KiB value.
//!
//! ```text
//! cargo run --release --features mirror --example mirror_bench [-- ROUNDS]
//! ```
//!
//! The two "hosts" are two segments and two mirrors (each with its own
//! connections and threads) in this one process, on one /dev/shm: the
//! lag is all Redis, sockets and thread wake-ups either way (see
//! tests/mirror.rs for hosts that each have their own /dev/shm).

#[path = "common/machine.rs"]
mod machine;
#[path = "common/redis_server.rs"]
mod redis_server;

use std::process::Command;
use std::time::{Duration, Instant};

use machine::{cpu_model, load_average, CpuClock};
use shmstore::mirror::{Mirror, MirrorOptions};
use shmstore::{Shareable, Shared, SharedOptions};

#[derive(Shareable, Clone, Copy)]
#[repr(C)]
struct Small {
    seq: u64,
    data: [u64; 7],
}

#[derive(Shareable, Clone, Copy)]
#[repr(C)]
struct Page {
    seq: u64,
    data: [u64; 511],
}

trait Payload: Shareable + Copy {
    fn new(seq: u64) -> Self;
    fn seq(&self) -> u64;
}

impl Payload for Small {
    fn new(seq: u64) -> Self {
        Small {
            seq,
            data: [seq; 7],
        }
    }
    fn seq(&self) -> u64 {
        self.seq
    }
}

impl Payload for Page {
    fn new(seq: u64) -> Self {
        Page {
            seq,
            data: [seq; 511],
        }
    }
    fn seq(&self) -> u64 {
        self.seq
    }
}

fn main() {
    let rounds: usize = std::env::args()
        .nth(1)
        .and_then(|a| a.parse().ok())
        .unwrap_or(2000);
    let (_server, url) = redis_server::start();
    println!("shmstore mirror bench: {rounds} rounds per lag figure, Redis at {url}");
    println!(
        "machine: {}; load average {}; {}",
        cpu_model(),
        load_average(),
        String::from_utf8_lossy(
            &Command::new("redis-server")
                .arg("--version")
                .output()
                .map(|o| o.stdout)
                .unwrap_or_default()
        )
        .trim()
    );

    // Redis's own CPU time counts as "other processes" below.
    let clock = CpuClock::now();
    let bare = bare_round_trip(&url, 64, rounds);
    let lag = mirror_lag::<Small>(&url, rounds);
    println!();
    println!("propagation lag, 64-byte value (median / p99 / max):");
    println!(
        "  commit on A -> wait_for_change returns on B:  {:>7.1} / {:>7.1} / {:>7.1} us",
        lag.0, lag.1, lag.2
    );
    println!(
        "  bare Redis SET+PUBLISH -> subscriber has it: {:>7.1} / {:>7.1} / {:>7.1} us",
        bare.0, bare.1, bare.2
    );
    println!(
        "  ratio of medians: {:.2}x, of p99s: {:.2}x",
        lag.0 / bare.0,
        lag.1 / bare.1
    );
    let clock = clock.report();
    let bare4k = bare_round_trip(&url, 4096, rounds);
    let lag4k = mirror_lag::<Page>(&url, rounds);
    println!("propagation lag, 4 KiB value (median / p99 / max):");
    println!(
        "  commit on A -> wait_for_change returns on B:  {:>7.1} / {:>7.1} / {:>7.1} us",
        lag4k.0, lag4k.1, lag4k.2
    );
    println!(
        "  bare Redis SET+PUBLISH -> subscriber has it: {:>7.1} / {:>7.1} / {:>7.1} us",
        bare4k.0, bare4k.1, bare4k.2
    );
    let clock = clock.report();
    println!();
    println!("throughput, a local writer committing without pause for 3 s:");
    throughput::<Small>(&url, "64-byte");
    let clock = clock.report();
    throughput::<Page>(&url, "4 KiB");
    clock.report();
}

/// Median, p99 and max of `samples`, in microseconds.
fn stats(mut samples: Vec<Duration>) -> (f64, f64, f64) {
    samples.sort();
    let us = |d: Duration| d.as_secs_f64() * 1e6;
    let at = |q: f64| us(samples[((samples.len() - 1) as f64 * q).round() as usize]);
    (at(0.5), at(0.99), us(*samples.last().unwrap()))
}

/// A pipelined SET + PUBLISH of `size` bytes from one connection, until a
/// thread subscribed on another connection has the message.
fn bare_round_trip(url: &str, size: usize, rounds: usize) -> (f64, f64, f64) {
    let client = redis::Client::open(url).unwrap();
    let mut sub_con = client.get_connection().unwrap();
    let mut con = client.get_connection().unwrap();
    let (tx, rx) = std::sync::mpsc::channel::<Instant>();
    let (ready_tx, ready_rx) = std::sync::mpsc::channel::<()>();
    let listener = std::thread::spawn(move || {
        let mut ps = sub_con.as_pubsub();
        ps.subscribe("bench:bare").unwrap();
        ready_tx.send(()).unwrap();
        loop {
            let msg = ps.get_message().unwrap();
            let now = Instant::now();
            if msg.get_payload_bytes().first() == Some(&b'q') {
                return;
            }
            tx.send(now).unwrap();
        }
    });
    ready_rx.recv().unwrap();
    let mut samples = Vec::with_capacity(rounds);
    let value = vec![b'v'; size];
    for i in 0..rounds + rounds / 10 {
        let t0 = Instant::now();
        let _: () = redis::pipe()
            .cmd("SET")
            .arg("bench:bare")
            .arg(&value)
            .ignore()
            .cmd("PUBLISH")
            .arg("bench:bare")
            .arg(&value)
            .ignore()
            .query(&mut con)
            .unwrap();
        let t1 = rx.recv().unwrap();
        // The first tenth warms up.
        if i >= rounds / 10 {
            samples.push(t1 - t0);
        }
    }
    let _: i64 = redis::cmd("PUBLISH")
        .arg("bench:bare")
        .arg("q")
        .query(&mut con)
        .unwrap();
    listener.join().unwrap();
    stats(samples)
}

/// Two segments, A published and B subscribed, both as `T`.
fn pair<T: Payload>(url: &str, tag: &str) -> (Shared<T>, Shared<T>, Mirror, Mirror) {
    let pid = std::process::id();
    let (na, nb) = (
        format!("bench-{tag}-a-{pid}"),
        format!("bench-{tag}-b-{pid}"),
    );
    let mut opts = SharedOptions::new();
    opts.remove_on_drop(true);
    let a = opts.create(na.as_str(), T::new(0)).unwrap();
    let b = opts.create(nb.as_str(), T::new(0)).unwrap();
    let object = format!("bench-{tag}-{pid}");
    let pa = MirrorOptions::new(url)
        .origin("bench-a")
        .publish(&object, Shared::<T>::open(na.as_str()).unwrap())
        .unwrap();
    let sb = MirrorOptions::new(url)
        .origin("bench-b")
        .subscribe(&object, Shared::<T>::open(nb.as_str()).unwrap())
        .unwrap();
    // Both connected: a first value gets through.
    *a.lock().unwrap() = T::new(1);
    wait_for(&b, 1);
    (a, b, pa, sb)
}

/// Waits on B until it holds `seq`.
fn wait_for<T: Payload>(b: &Shared<T>, seq: u64) {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let (v, g) = b.snapshot_with_generation().unwrap();
        if v.seq() == seq {
            return;
        }
        assert!(Instant::now() < deadline, "B never got {seq}");
        b.wait_for_change(g, Duration::from_secs(1))
            .expect("B stays whole");
    }
}

fn mirror_lag<T: Payload>(url: &str, rounds: usize) -> (f64, f64, f64) {
    let (a, b, _pa, _sb) = pair::<T>(url, &format!("lag{}", std::mem::size_of::<T>()));
    let mut samples = Vec::with_capacity(rounds);
    for i in 0..rounds + rounds / 10 {
        let seq = 2 + i as u64;
        let t0 = Instant::now();
        *a.lock().unwrap() = T::new(seq);
        wait_for(&b, seq);
        let t1 = Instant::now();
        if i >= rounds / 10 {
            samples.push(t1 - t0);
        }
    }
    stats(samples)
}

fn throughput<T: Payload>(url: &str, what: &str) {
    let (a, b, pa, sb) = pair::<T>(url, &format!("tp{}", std::mem::size_of::<T>()));
    let (p0, s0) = (pa.stats(), sb.stats());
    let g0 = b.generation();
    let t0 = Instant::now();
    let mut commits = 0u64;
    while t0.elapsed() < Duration::from_secs(3) {
        commits += 1;
        *a.lock().unwrap() = T::new(10 + commits);
    }
    let secs = t0.elapsed().as_secs_f64();
    let (p1, s1) = (pa.stats(), sb.stats());
    wait_for(&b, 10 + commits);
    let published = p1.published - p0.published;
    let applied = s1.applied - s0.applied;
    println!(
        "  {what:>8} value: {:>8.0} updates/s published by A, {:>8.0}/s written into B \
         (B's generation +{}), of {:.2}M local commits/s; B then caught up with the last one",
        published as f64 / secs,
        applied as f64 / secs,
        b.generation() - g0,
        commits as f64 / secs / 1e6
    );
}
