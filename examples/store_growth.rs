//! What a store's growth costs: inserting N `u64` entries into a store
//! created at 64 KiB, which grows as they come, against inserting them into
//! a store created big enough never to grow; then looking keys up in the
//! grown store against the one made big enough.
//!
//! ```text
//! cargo run --release --example store_growth              # N = 100,000, about ten seconds
//! cargo run --release --example store_growth -- 10000     # N = 10,000
//! cargo run --release --example store_growth -- --help
//! ```
//!
//! 1. Inserts: N `insert::<u64>` calls into a fresh store, each timed on
//!    its own (the handle it returns is dropped after the clock stops), in
//!    a store created at 64 KiB that may grow to 1 GiB (`max_capacity`)
//!    and in one created with room for every entry (it never
//!    grows). Each variant fills 5 fresh stores, interleaved; the totals
//!    are the median (min-max) of the 5 fills, the latencies (median,
//!    p99.9, max) are of all their inserts together. An insert during which
//!    `capacity()` changed is a growth: how many there were per fill, and
//!    the slowest and the median of those inserts.
//! 2. Lookups: `contains(key)` and `get::<u64>(key)` + drop of the handle,
//!    of random keys, in the last grown store and the last store made big
//!    enough (same keys, same draws), 7 interleaved batches each: ns per
//!    lookup, median (min-max), and grown / big-enough. Growth is meant to
//!    cost the insert that triggers it, not lookups: the ratios should be
//!    near 1.
//!
//! Every store this run makes is named `store_growth_PID_...` and removed
//! at the end, also when the run panics. Speed is printed, never asserted;
//! the figures are for a quiet machine, a busy one makes them noisy.

#[path = "common/machine.rs"]
mod machine;
#[path = "common/run.rs"]
mod run;
use machine::{cpu_model, load_average, CpuClock};
use run::{leftovers, thousands, Cleanup};

use std::hint::black_box;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use shmstore::{SharedOptions, Store};

/// What a store that grows is created with.
const SMALL: usize = 64 * 1024;
/// What every store may grow to: far more than N entries need.
const MOST: usize = 1 << 30;
/// Fresh stores each insert variant fills.
const FILLS: usize = 5;
/// Timed batches of each lookup variant.
const REPS: usize = 7;
/// Lookups per batch.
const LOOKUPS: u64 = 200_000;
/// Random keys drawn in advance (a power of two).
const DRAWS: usize = 1 << 16;

const USAGE: &str =
    "usage: store_growth [N]   (N u64 entries to insert, default 100000; at least 1000)";

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.iter().any(|a| a == "-h" || a == "--help") {
        println!("{USAGE}");
        println!(
            "Inserts N entries into a store created at 64 KiB (it grows) and into one created"
        );
        println!("big enough (it never grows), then looks keys up in both; see the source's docs.");
        return ExitCode::SUCCESS;
    }
    let n = match args.as_slice() {
        [] => Some(100_000),
        [n] => n
            .parse::<usize>()
            .ok()
            .filter(|&n| (1000..=10_000_000).contains(&n)),
        _ => None,
    };
    let Some(n) = n else {
        eprintln!("{USAGE}");
        return ExitCode::from(2);
    };
    bench(n);
    ExitCode::SUCCESS
}

/// The key of entry `i`.
fn key(i: usize) -> String {
    format!("key/{i}")
}

/// What one fill of a store measured.
struct Fill {
    name: String,
    store: Store,
    total: Duration,
    /// Each insert's time, in ns.
    latencies: Vec<u64>,
    /// The times of the inserts during which the store grew, in ns.
    growths: Vec<u64>,
    capacity: usize,
}

/// Creates a store of `capacity` bytes and inserts `n` entries into it,
/// timing each insert.
fn fill(cleanup: &mut Cleanup, what: &str, capacity: usize, keys: &[String]) -> Fill {
    let name = cleanup.name(what);
    let store = SharedOptions::new()
        .max_capacity(MOST)
        .create_store(name.as_str(), capacity)
        .expect("create a store");
    let mut latencies = Vec::with_capacity(keys.len());
    let mut growths = Vec::new();
    let mut cap = store.capacity();
    let started = Instant::now();
    for (i, k) in keys.iter().enumerate() {
        let t = Instant::now();
        let handle = store.insert::<u64>(k, i as u64);
        let ns = t.elapsed().as_nanos() as u64;
        drop(handle.expect("insert"));
        latencies.push(ns);
        if store.capacity() != cap {
            cap = store.capacity();
            growths.push(ns);
        }
    }
    let total = started.elapsed();
    assert_eq!(store.len().expect("len"), keys.len());
    Fill {
        name,
        store,
        total,
        latencies,
        growths,
        capacity: cap,
    }
}

/// The `q` quantile (0 to 1) of sorted `v`.
fn quantile(v: &[u64], q: f64) -> u64 {
    v[((v.len() - 1) as f64 * q).round() as usize]
}

/// Median (min-max) of `v`, formatted with `digits` decimals.
fn spread(v: &[f64], digits: usize) -> (f64, String) {
    let mut v = v.to_vec();
    v.sort_by(f64::total_cmp);
    let m = v[v.len() / 2];
    (
        m,
        format!(
            "{m:.digits$} ({:.digits$}-{:.digits$})",
            v[0],
            v[v.len() - 1]
        ),
    )
}

/// What the fills of one variant measured, together.
struct Inserts {
    /// Seconds of each fill.
    totals: Vec<f64>,
    /// Every insert's ns, sorted.
    latencies: Vec<u64>,
    /// Growths per fill.
    growths: Vec<usize>,
    /// Every growing insert's ns, sorted.
    growing: Vec<u64>,
    capacity: usize,
}

impl Inserts {
    fn new() -> Inserts {
        Inserts {
            totals: Vec::new(),
            latencies: Vec::new(),
            growths: Vec::new(),
            growing: Vec::new(),
            capacity: 0,
        }
    }

    fn add(&mut self, f: &Fill) {
        self.totals.push(f.total.as_secs_f64());
        self.latencies.extend(&f.latencies);
        self.growths.push(f.growths.len());
        self.growing.extend(&f.growths);
        self.capacity = f.capacity;
    }

    fn sort(&mut self) {
        self.latencies.sort_unstable();
        self.growing.sort_unstable();
    }

    fn print(&self, label: &str, n: usize) {
        let (_, total) = spread(&self.totals, 3);
        let l = &self.latencies;
        println!(
            "   {label:<12} {total:>22} s  {:>7} {:>9} {:>10}  {:>7.0} ns  {:>8}  {}",
            quantile(l, 0.5),
            quantile(l, 0.999),
            l[l.len() - 1],
            spread(&self.totals, 3).0 * 1e9 / n as f64,
            self.growths[0],
            if self.growing.is_empty() {
                "-".to_owned()
            } else {
                format!(
                    "slowest {:.2} ms, median {:.3} ms",
                    self.growing[self.growing.len() - 1] as f64 / 1e6,
                    quantile(&self.growing, 0.5) as f64 / 1e6
                )
            }
        );
    }
}

fn bench(n: usize) {
    let started = Instant::now();
    let mut cleanup = Cleanup::new("store_growth");
    let prefix = cleanup.prefix().to_owned();
    // An entry of a u64 under a key of up to 12 bytes takes 256 bytes;
    // twice that and a table's worth more, so that it never grows.
    let roomy = n * 512 + (1 << 20);
    println!(
        "store_growth: {} CPUs ({}), Linux {}; {} entries; every figure below is from this one run.",
        std::thread::available_parallelism().map_or(0, |n| n.get()),
        cpu_model(),
        std::fs::read_to_string("/proc/sys/kernel/osrelease")
            .unwrap_or_default()
            .trim(),
        thousands(n),
    );
    println!(
        "Load average before the run: {} (other busy processes on this machine distort every figure).",
        load_average()
    );
    let keys: Vec<String> = (0..n).map(key).collect();

    println!();
    println!(
        "1. Inserts of {} u64 entries into a fresh store, {FILLS} fills of each kind, interleaved:",
        thousands(n)
    );
    println!(
        "   {:<12} {:>22}    {:>7} {:>9} {:>10}  {:>10}  {:>8}  growing inserts",
        "store", "fill: median (min-max)", "median", "p99.9", "max ns", "per insert", "growths"
    );
    let clock = CpuClock::now();
    let (mut grown, mut sized) = (Inserts::new(), Inserts::new());
    // The last store of each kind, kept for the lookups; the others are
    // removed as soon as the next one is filled.
    let mut last: [Option<(Store, String)>; 2] = [None, None];
    for f in 0..2 * FILLS {
        // Alternate which kind goes first.
        let grows = (f % 2 == 0) == (f / 2 % 2 == 0);
        let fill = if grows {
            fill(&mut cleanup, "grows", SMALL, &keys)
        } else {
            fill(&mut cleanup, "sized", roomy, &keys)
        };
        if grows {
            grown.add(&fill);
        } else {
            sized.add(&fill);
        }
        if let Some((old, name)) = last[usize::from(!grows)].replace((fill.store, fill.name)) {
            drop(old);
            let _ = Store::unlink(name.as_str());
        }
    }
    grown.sort();
    sized.sort();
    grown.print("64 KiB", n);
    sized.print("big enough", n);
    let clock = clock.report();
    let (g, s) = (spread(&grown.totals, 3).0, spread(&sized.totals, 3).0);
    println!(
        "   The store created at 64 KiB grew {} times per fill, to {} KiB (the other: {} KiB, \
         {} growths); fill time grown / big enough = {:.2}.",
        grown.growths[0],
        grown.capacity / 1024,
        sized.capacity / 1024,
        sized.growths[0],
        g / s
    );

    println!();
    println!("2. Lookups of random keys: ns per lookup, median (min-max) of {REPS} interleaved batches of {}:", thousands(LOOKUPS as usize));
    let [Some((grown_store, _)), Some((sized_store, _))] = last else {
        unreachable!("both kinds filled")
    };
    let draws = draws(n);
    let mut figures: Vec<Vec<f64>> = vec![Vec::new(); 4];
    let stores = [&grown_store, &sized_store];
    for rep in 0..=REPS {
        for j in 0..4 {
            let v = (j + rep) % 4;
            let store = stores[v % 2];
            let t = Instant::now();
            if v < 2 {
                for i in 0..LOOKUPS {
                    black_box(
                        store
                            .contains(&keys[draws[i as usize % DRAWS]])
                            .expect("contains"),
                    );
                }
            } else {
                for i in 0..LOOKUPS {
                    drop(black_box(
                        store
                            .get::<u64>(&keys[draws[i as usize % DRAWS]])
                            .expect("get"),
                    ));
                }
            }
            let ns = t.elapsed().as_nanos() as f64 / LOOKUPS as f64;
            // The first round warms up.
            if rep > 0 {
                figures[v].push(ns);
            }
        }
    }
    let fig: Vec<(f64, String)> = figures.iter().map(|f| spread(f, 1)).collect();
    println!(
        "   {:<12} {:>24} {:>24} {:>16}",
        "lookup", "grown from 64 KiB", "big enough", "grown / big"
    );
    for (label, (g, s)) in [("contains", (0, 1)), ("get + drop", (2, 3))] {
        println!(
            "   {label:<12} {:>24} {:>24} {:>16.2}",
            fig[g].1,
            fig[s].1,
            fig[g].0 / fig[s].0
        );
    }
    clock.report();

    println!();
    println!("Summary:");
    println!(
        "  inserts: {} growths; median insert {} ns grown vs {} ns big enough, p99.9 {} vs {} ns, \
         slowest growing insert {:.2} ms; fill {:.3} s vs {:.3} s ({:.2}x)",
        grown.growths[0],
        quantile(&grown.latencies, 0.5),
        quantile(&sized.latencies, 0.5),
        quantile(&grown.latencies, 0.999),
        quantile(&sized.latencies, 0.999),
        grown.growing.last().map_or(0.0, |&ns| ns as f64 / 1e6),
        g,
        s,
        g / s
    );
    println!(
        "  lookups in the grown store / the big-enough one: contains {:.2}, get + drop {:.2}",
        fig[0].0 / fig[1].0,
        fig[2].0 / fig[3].0
    );

    drop((grown_store, sized_store));
    drop(cleanup);
    let left = leftovers(&prefix);
    println!("Load average after the run: {}.", load_average());
    println!(
        "Stores of this run left in /dev/shm: {}. Took {:.1} s.",
        if left.is_empty() {
            "none".to_owned()
        } else {
            left.join(", ")
        },
        started.elapsed().as_secs_f64()
    );
}

/// [`DRAWS`] random indexes below `n` (xorshift, a fixed seed).
fn draws(n: usize) -> Vec<usize> {
    let mut rng = 0x2545_f491_4f6c_dd1d_u64 ^ n as u64;
    (0..DRAWS)
        .map(|_| {
            rng ^= rng << 13;
            rng ^= rng >> 7;
            rng ^= rng << 17;
            (rng % n as u64) as usize
        })
        .collect()
}
