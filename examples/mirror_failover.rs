//! How long mirrors take to converge after Redis Sentinel fails over,
//! measured in one run against a Sentinel setup on loopback that this
//! example starts: a primary and a replica that require a password, an ACL
//! user for the mirrors, and three sentinels (a primary counts as down after
//! 1 s without answering).
//!
//! Each round: a publisher's value has reached the subscriber; the primary
//! is killed (SIGKILL); the publisher's process writes a new value at once
//! (while no primary exists); the sentinels promote the replica. Measured:
//! from the promotion (when the replica says it is the primary) to the
//! subscriber's shared memory holding the new value, and from the moment a
//! sentinel first names the new primary to clients (the mirror's own
//! part). Then the killed server comes back (the sentinels make it the new primary's replica) and the next
//! round starts. The subscriber also checks every value it sees: none may
//! be older than one it saw before.
//!
//! ```text
//! cargo run --release --features mirror --example mirror_failover [-- ROUNDS]
//! ```
//!
//! Needs `redis-server` and `redis-sentinel` (Debian: `apt-get install -y
//! redis-server redis-sentinel`). The two "hosts" are two segments and two
//! mirrors in this one process, each with its own connections and threads.

#[allow(dead_code)] // its CPU clock is for the other benchmarks
#[path = "common/machine.rs"]
mod machine;
#[path = "common/sentinel.rs"]
mod sentinel;

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use shmstore::mirror::{Event, MirrorOptions};
use shmstore::{Shareable, Shared, SharedOptions};

#[derive(Shareable, Clone, Copy, Default)]
#[repr(C)]
struct Version {
    seq: u64,
}

fn main() {
    let rounds: usize = std::env::args()
        .nth(1)
        .and_then(|a| a.parse().ok())
        .unwrap_or(10);
    println!(
        "machine: {}, load {}",
        machine::cpu_model(),
        machine::load_average()
    );
    let mut setup = sentinel::Setup::start();
    let url = setup.url(sentinel::USER, sentinel::PASSWORD);
    let tag = std::process::id();
    let (a, b) = (format!("failover-a-{tag}"), format!("failover-b-{tag}"));
    let mut opts = SharedOptions::new();
    opts.remove_on_drop(true);
    let writer: Shared<Version> = opts.create(a.as_str(), Version::default()).unwrap();
    let reader: Shared<Version> = opts.create(b.as_str(), Version::default()).unwrap();
    let failovers = Arc::new(AtomicU64::new(0));
    // The default timeouts and pauses, as a user gets them.
    let mut mirror = MirrorOptions::new(url);
    let seen = failovers.clone();
    mirror.on_event(move |e| {
        if matches!(e, Event::Failover { .. }) {
            seen.fetch_add(1, Ordering::Relaxed);
        }
    });
    let object = format!("failover-{tag}");
    let _p = mirror
        .publish(&object, Shared::<Version>::open(a.as_str()).unwrap())
        .unwrap();
    let _s = mirror
        .subscribe(&object, Shared::<Version>::open(b.as_str()).unwrap())
        .unwrap();

    // Every value the subscriber's memory holds, in order: never older.
    let stop = Arc::new(AtomicBool::new(false));
    let backwards = Arc::new(AtomicU64::new(0));
    let watcher = {
        let (stop, backwards) = (stop.clone(), backwards.clone());
        let r: Shared<Version> = Shared::open(b.as_str()).unwrap();
        std::thread::spawn(move || {
            let (mut last, mut g) = (0, r.generation());
            while !stop.load(Ordering::Relaxed) {
                let (v, now) = r.snapshot_with_generation().unwrap();
                if v.seq < last {
                    backwards.fetch_add(1, Ordering::Relaxed);
                }
                last = last.max(v.seq);
                if now == g {
                    r.wait_for_change(g, Duration::from_millis(100)).unwrap();
                }
                g = now;
            }
        })
    };
    let reach = |seq: u64, within: Duration| -> Option<Instant> {
        let deadline = Instant::now() + within;
        loop {
            let (v, g) = reader.snapshot_with_generation().unwrap();
            if v.seq == seq {
                return Some(Instant::now());
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return None;
            }
            reader
                .wait_for_change(g, left.min(Duration::from_millis(50)))
                .unwrap();
        }
    };

    let mut seq = 0;
    let (mut times, mut own) = (Vec::new(), Vec::new());
    println!("round  primary        promoted  converged after");
    println!("                       after kill  promotion  naming");
    for round in 1..=rounds {
        seq += 1;
        writer.lock().unwrap().seq = seq;
        reach(seq, Duration::from_secs(15)).expect("the subscriber has the value before the kill");
        let old = setup.primary().expect("a primary");
        setup.kill(old);
        let killed = Instant::now();
        seq += 1;
        writer.lock().unwrap().seq = seq;
        let (new, promoted) = setup
            .wait_promotion(old, Duration::from_secs(60))
            .expect("the sentinels promote the replica within 60 s");
        // When a sentinel first names the new primary to clients, watched
        // meanwhile.
        let named = std::thread::scope(|scope| {
            let named = scope.spawn(|| setup.wait_named(new, Duration::from_secs(60)));
            let converged = reach(seq, Duration::from_secs(60))
                .expect("the subscriber converges within 60 s of the promotion");
            (named.join().unwrap(), converged)
        });
        let (named, converged) = named;
        let named = named.expect("a sentinel names the new primary within 60 s");
        let after = converged.saturating_duration_since(promoted);
        times.push(after);
        own.push(converged.saturating_duration_since(named));
        println!(
            "{round:>5}  {old} -> {new}  {:>6} ms  {:>6} ms  {:>6} ms",
            (promoted - killed).as_millis(),
            after.as_millis(),
            converged.saturating_duration_since(named).as_millis()
        );
        setup.restart(old);
        setup.wait_synced();
        // The sentinels see the replica again before the next kill.
        std::thread::sleep(Duration::from_secs(2));
    }
    stop.store(true, Ordering::Relaxed);
    watcher.join().unwrap();
    times.sort();
    own.sort();
    let ms = |d: Duration| d.as_secs_f64() * 1000.0;
    println!();
    println!(
        "convergence after promotion, {} failovers: median {:.0} ms, worst {:.0} ms",
        times.len(),
        ms(times[times.len() / 2]),
        ms(*times.last().unwrap())
    );
    println!(
        "after a sentinel first named the new primary (polled every 5 ms): median {:.0} ms, worst {:.0} ms",
        ms(own[own.len() / 2]),
        ms(*own.last().unwrap())
    );
    println!(
        "failover events reported: {}; values older than one seen before: {}",
        failovers.load(Ordering::Relaxed),
        backwards.load(Ordering::Relaxed)
    );
}
