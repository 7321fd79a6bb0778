//! What a [`Store`] costs: finding an entry by key in stores of 10, 1,000
//! and 100,000 keys, and locking and snapshotting an entry against a
//! `Shared<u64>` in a segment of its own.
//!
//! ```text
//! cargo run --release --example store_bench          # the whole run, about half a minute
//! cargo run --release --example store_bench -- 0.1   # SCALE: iterations x 0.1 (key counts stay)
//! cargo run --release --example store_bench -- --lookups [OPS]
//! ```
//!
//! `--lookups` runs only the lookups that `compare/store.sh` sets beside
//! Boost.Interprocess's `find` (compare/cpp/boost_find.cpp): `contains`,
//! `get` + drop and a std `HashMap`'s `get`, of a random key and of the
//! same key, OPS per batch (default 200,000), and prints one JSON line per
//! figure with its 7 batches (see compare/README.md).
//!
//! `--profile contains|get|hashmap KEYS OPS [same]` fills one store of KEYS
//! keys and makes OPS lookups of one kind after a warm-up, inside the
//! function `store_bench::profiled`, for a profiler to count
//! (compare/lookup_parts.py runs it under callgrind; see
//! docs/store-lookup.md).
//!
//! Sections:
//!
//! 1. `store.get::<u64>(key)` of an existing key, in stores of 10, 1,000
//!    and 100,000 `u64` entries. `get` returns a handle (a `Shared<u64>`)
//!    that takes the store's directory lock once more when it is dropped,
//!    so the main figure is get + drop, one after the other; the split
//!    figures time 1,000 gets whose handles are kept, then their 1,000
//!    drops. `contains(key)` is the directory lookup alone, without a
//!    handle. Keys are drawn at random from all the store's keys, or one
//!    key is asked for every time.
//! 2. The same `u64`, as an entry of a store and as a `Shared<u64>` in a
//!    segment of its own: lock + increment + unlock, and `snapshot()`, both
//!    uncontended; for contrast, opening the own segment by name and
//!    dropping the handle, what `get` + drop replaces.
//! 3. For context: creating and removing an entry (`insert` + drop of the
//!    handle + `remove`), and listing the store (`entries()`, which visits
//!    every entry), at each size.
//!
//! Each figure is the median, with min-max, of 7 timed batches; the
//! batches of a section's variants run interleaved in rotating order, after
//! one warm-up batch each (the three store sizes of one variant next to
//! each other), so that the ratios compare like with like (absolute times
//! drift between runs on a VM). Every segment this run
//! makes is named `store_bench_PID_...` and removed at the end, also when
//! the run panics. Speed is printed, never asserted.

#[path = "common/machine.rs"]
mod machine;
#[path = "common/run.rs"]
mod run;
use machine::{cpu_model, load_average, CpuClock};
use run::{leftovers, thousands, Cleanup};

use std::collections::HashMap;
use std::hint::black_box;
use std::process::ExitCode;
use std::time::Instant;

use shmstore::{Shared, Store};

/// Store sizes of sections 1 and 3, in keys.
const SIZES: [usize; 3] = [10, 1_000, 100_000];
/// Timed batches of each variant (the medians are of these).
const REPS: usize = 7;
/// Handles kept at once by the split get / drop figures.
const HELD: usize = 1_000;
/// Random keys drawn in advance (a power of two).
const DRAWS: usize = 1 << 16;

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.first().is_some_and(|a| a == "--lookups") {
        let ops = match &args[1..] {
            [] => Some(200_000),
            [n] => n.parse::<u64>().ok().filter(|&n| n > 0),
            _ => None,
        };
        let Some(ops) = ops else {
            eprintln!("usage: store_bench --lookups [OPS]   (lookups per batch, default 200000)");
            return ExitCode::from(2);
        };
        lookups(ops);
        return ExitCode::SUCCESS;
    }
    if args.first().is_some_and(|a| a == "--profile") {
        let parsed = match &args[1..] {
            [op, keys, ops, rest @ ..] if rest.len() <= 1 => Profiled::parse(op).zip(
                keys.parse::<usize>()
                    .ok()
                    .filter(|k| SIZES.contains(k))
                    .zip(ops.parse::<u64>().ok().filter(|&n| n > 0))
                    .zip(match rest {
                        [] => Some(false),
                        [same] if same == "same" => Some(true),
                        _ => None,
                    }),
            ),
            _ => None,
        };
        let Some((op, ((keys, ops), same))) = parsed else {
            eprintln!(
                "usage: store_bench --profile contains|get|hashmap KEYS OPS [same]   \
                 (KEYS one of 10, 1000, 100000)"
            );
            return ExitCode::from(2);
        };
        profile(op, keys, ops, same);
        return ExitCode::SUCCESS;
    }
    let scale = match args.as_slice() {
        [] => Ok(1.0),
        [s] => match s.parse::<f64>() {
            Ok(s) if s > 0.0 && s <= 100.0 => Ok(s),
            _ => Err(()),
        },
        _ => Err(()),
    };
    let Ok(scale) = scale else {
        eprintln!("usage: store_bench [SCALE]   (0 < SCALE <= 100, default 1: iterations)");
        return ExitCode::from(2);
    };
    bench(scale);
    ExitCode::SUCCESS
}

/// Iteration counts of a run.
struct Config {
    /// Gets (and lookups) per batch in section 1.
    gets: u64,
    /// Locks and snapshots per batch in section 2.
    locks: u64,
    snapshots: u64,
    /// Opens of a segment per batch in section 2.
    opens: u64,
    /// Inserts + removes per batch in section 3.
    inserts: u64,
    /// `entries()` calls per batch in section 3, times the store's keys.
    listed: u64,
}

impl Config {
    fn new(scale: f64) -> Config {
        let n = |base: f64| ((base * scale) as u64).max(1);
        Config {
            gets: n(200_000.0).max(HELD as u64),
            locks: n(2_000_000.0),
            snapshots: n(5_000_000.0),
            opens: n(20_000.0),
            inserts: n(50_000.0),
            listed: n(2_000_000.0),
        }
    }
}

/// A store of `keys` `u64` entries named `key/0` ...; the keys, and random
/// picks among them.
struct Filled {
    keys: usize,
    store: Store,
    names: Vec<String>,
    draws: Vec<u32>,
}

impl Filled {
    fn new(cleanup: &mut Cleanup, keys: usize) -> Filled {
        let name = cleanup.name(&format!("{keys}keys"));
        // An entry of a u64 under a key of up to 9 bytes takes 256 bytes;
        // room to spare for section 3's inserts.
        let store = Store::create(name.as_str(), keys * 256 + 64 * 1024).expect("create a store");
        let names: Vec<String> = (0..keys).map(|i| format!("key/{i}")).collect();
        for (i, key) in names.iter().enumerate() {
            store.insert::<u64>(key, i as u64).expect("insert");
        }
        assert_eq!(store.len().expect("len"), keys);
        let mut rng = 0x2545_f491_4f6c_dd1d_u64 ^ keys as u64;
        let draws = (0..DRAWS)
            .map(|_| {
                rng ^= rng << 13;
                rng ^= rng >> 7;
                rng ^= rng << 17;
                (rng % keys as u64) as u32
            })
            .collect();
        Filled {
            keys,
            store,
            names,
            draws,
        }
    }

    /// The `i`th random key.
    #[inline]
    fn random(&self, i: u64) -> &str {
        &self.names[self.draws[i as usize % DRAWS] as usize]
    }

    /// The digest of the keys a lookup figure asks for, in order: FNV-1a
    /// of each key and a newline, over all the random draws, or of the one
    /// key asked for every time. compare/cpp/boost_find.cpp prints the same
    /// for the same keys.
    fn digest(&self, same: bool) -> String {
        let keys: Vec<&str> = if same {
            vec![self.middle()]
        } else {
            (0..DRAWS as u64).map(|i| self.random(i)).collect()
        };
        let mut h = 0xcbf2_9ce4_8422_2325_u64;
        for key in keys {
            for b in key.bytes().chain([b'\n']) {
                h = (h ^ u64::from(b)).wrapping_mul(0x100_0000_01b3);
            }
        }
        format!("{h:016x}")
    }

    /// The same keys in a std `HashMap`, for scale.
    fn map(&self) -> HashMap<String, u64> {
        self.names
            .iter()
            .enumerate()
            .map(|(i, k)| (k.clone(), i as u64))
            .collect()
    }

    /// The key asked for every time by the same-key figures.
    fn middle(&self) -> &str {
        &self.names[self.keys / 2]
    }
}

fn bench(scale: f64) {
    let started = Instant::now();
    let cfg = Config::new(scale);
    let mut cleanup = Cleanup::new("store_bench");
    let prefix = cleanup.prefix().to_owned();
    println!(
        "store_bench: {} CPUs ({}), Linux {}; scale {scale}; every figure below is from this one run.",
        std::thread::available_parallelism().map_or(0, |n| n.get()),
        cpu_model(),
        std::fs::read_to_string("/proc/sys/kernel/osrelease")
            .unwrap_or_default()
            .trim(),
    );
    println!(
        "Load average before the run: {} (other busy processes on this machine distort every figure).",
        load_average()
    );
    println!("ns per operation: median (min-max) of {REPS} interleaved batches; ratios are median / median.");

    let t = Instant::now();
    let stores: Vec<Filled> = SIZES
        .iter()
        .map(|&k| Filled::new(&mut cleanup, k))
        .collect();
    println!(
        "Filled stores of {} keys in {:.2} s.",
        SIZES.map(thousands).join(", "),
        t.elapsed().as_secs_f64()
    );

    let clock = CpuClock::now();
    let gets = section_get(&cfg, &stores);
    let clock = clock.report();
    let (lock, snapshot) = section_entry(&cfg, &mut cleanup);
    let clock = clock.report();
    section_context(&cfg, &stores);
    clock.report();

    println!();
    println!("Summary:");
    let [get_random, get_same, .., hash_map] = &gets;
    let per_size = |row: &[Stats; 3]| {
        row.iter()
            .map(|s| format!("{:.0}", s.median))
            .collect::<Vec<_>>()
            .join(" / ")
    };
    let ratio = |row: &[Stats; 3]| row[2].median / row[0].median;
    println!(
        "  get + drop, random key: {} ns with {} keys; 100k / 10 keys = {:.2} \
         (a std HashMap on the same keys: {:.2})",
        per_size(get_random),
        SIZES.map(thousands).join(" / "),
        ratio(get_random),
        ratio(hash_map),
    );
    println!(
        "  get + drop, same key: {} ns; 100k / 10 keys = {:.2}",
        per_size(get_same),
        ratio(get_same),
    );
    println!(
        "  lock + increment + unlock: store entry {:.1} ns, own segment {:.1} ns; entry / own = {:.2}",
        lock.0.median,
        lock.1.median,
        lock.0.median / lock.1.median
    );
    println!(
        "  snapshot: store entry {:.2} ns, own segment {:.2} ns; entry / own = {:.2}",
        snapshot.0.median,
        snapshot.1.median,
        snapshot.0.median / snapshot.1.median
    );

    drop(stores);
    drop(cleanup);
    let left = leftovers(&prefix);
    println!("Load average after the run: {}.", load_average());
    println!(
        "Segments of this run left in /dev/shm: {}. Took {:.1} s.",
        if left.is_empty() {
            "none".to_owned()
        } else {
            left.join(", ")
        },
        started.elapsed().as_secs_f64()
    );
}

// ---------------------------------------------------------------------------
// The harness.

/// A variant: runs one batch of its own number of operations and returns
/// ns per operation, one figure per label.
struct Variant<'a> {
    labels: Vec<String>,
    run: Box<dyn FnMut() -> Vec<f64> + 'a>,
}

impl<'a> Variant<'a> {
    fn one(label: impl Into<String>, run: impl FnMut() -> f64 + 'a) -> Variant<'a> {
        let mut run = run;
        Variant {
            labels: vec![label.into()],
            run: Box::new(move || vec![run()]),
        }
    }
}

/// Runs every variant once as a warm-up, then [`REPS`] times in an order
/// that rotates by one every repetition; the statistics of each figure of
/// each variant, in order.
fn interleave(variants: &mut [Variant<'_>]) -> Vec<Vec<Stats>> {
    stats_of(interleave_samples(variants))
}

/// The statistics of each figure of each variant.
fn stats_of(samples: Vec<Vec<Vec<f64>>>) -> Vec<Vec<Stats>> {
    samples
        .iter()
        .map(|v| v.iter().map(|s| Stats::of(s)).collect())
        .collect()
}

/// [`interleave`], giving the ns per operation of each batch instead.
fn interleave_samples(variants: &mut [Variant<'_>]) -> Vec<Vec<Vec<f64>>> {
    for v in variants.iter_mut() {
        (v.run)();
    }
    let k = variants.len();
    let mut samples: Vec<Vec<Vec<f64>>> = variants
        .iter()
        .map(|v| vec![Vec::with_capacity(REPS); v.labels.len()])
        .collect();
    for rep in 0..REPS {
        for j in 0..k {
            let i = (j + rep) % k;
            for (f, ns) in (variants[i].run)().into_iter().enumerate() {
                samples[i][f].push(ns);
            }
        }
    }
    samples
}

/// [`interleave`] for variants given store by store, `per` for each store:
/// runs them kind by kind instead, so that the store sizes of one kind run
/// next to each other and a burst of noise from elsewhere on the machine
/// hits them alike; the batches' figures in the order given.
fn interleave_sizes(variants: Vec<Variant<'_>>, per: usize) -> Vec<Vec<Vec<f64>>> {
    let n = variants.len();
    let order: Vec<usize> = (0..per)
        .flat_map(|k| (0..n / per).map(move |s| s * per + k))
        .collect();
    let mut given: Vec<Option<Variant<'_>>> = variants.into_iter().map(Some).collect();
    let mut kind_by_kind: Vec<Variant<'_>> = order
        .iter()
        .map(|&i| given[i].take().expect("each once"))
        .collect();
    let stats = interleave_samples(&mut kind_by_kind);
    let mut out: Vec<Vec<Vec<f64>>> = vec![Vec::new(); n];
    for (stats, &i) in stats.into_iter().zip(&order) {
        out[i] = stats;
    }
    out
}

/// Runs `op(i)` for `i` in `0..n`; ns per call.
#[inline(always)]
fn per_op(n: u64, mut op: impl FnMut(u64)) -> f64 {
    let t = Instant::now();
    for i in 0..n {
        op(i);
    }
    t.elapsed().as_nanos() as f64 / n as f64
}

#[derive(Clone, Copy)]
struct Stats {
    median: f64,
    min: f64,
    max: f64,
}

impl Stats {
    fn of(samples: &[f64]) -> Stats {
        let mut v = samples.to_vec();
        v.sort_by(f64::total_cmp);
        Stats {
            median: v[v.len() / 2],
            min: v[0],
            max: v[v.len() - 1],
        }
    }

    fn cell(&self) -> String {
        let digits = if self.median < 10.0 { 2 } else { 1 };
        format!(
            "{:.d$} ({:.d$}-{:.d$})",
            self.median,
            self.min,
            self.max,
            d = digits
        )
    }
}

/// Prints rows of one figure per store size, with the 100k / 10 ratio.
fn print_by_size(rows: &[(&str, &[Stats; 3])]) {
    let w = rows.iter().map(|(l, _)| l.len()).max().unwrap_or(0);
    print!("   {:w$}", "what");
    for k in SIZES {
        print!("  {:>24}", format!("{} keys", thousands(k)));
    }
    println!("  {:>9}", "100k / 10");
    for (label, stats) in rows {
        print!("   {label:w$}");
        for s in stats.iter() {
            print!("  {:>24}", s.cell());
        }
        println!("  {:>9.2}", stats[2].median / stats[0].median);
    }
}

// ---------------------------------------------------------------------------
// Section 1: get.

/// The rows of section 1, each a figure per store size: get + drop of a
/// random key, of the same key, get alone, drop alone, contains, a std
/// `HashMap`'s get.
fn section_get(cfg: &Config, stores: &[Filled]) -> [[Stats; 3]; 6] {
    println!();
    println!(
        "1. Store::get::<u64>(key) of an existing key; get returns a handle, whose drop takes the \
         directory lock again ({} operations per batch)",
        cfg.gets
    );
    let n = cfg.gets;
    let mut variants = Vec::new();
    for s in stores {
        variants.push(Variant::one("get + drop, random key", move || {
            per_op(n, |i| {
                let h = s.store.get::<u64>(s.random(i)).expect("get");
                drop(black_box(h));
            })
        }));
        variants.push(Variant::one("get + drop, same key", move || {
            let key = s.middle();
            per_op(n, |_| {
                let h = s.store.get::<u64>(black_box(key)).expect("get");
                drop(black_box(h));
            })
        }));
        let mut held: Vec<Shared<u64>> = Vec::with_capacity(HELD);
        variants.push(Variant {
            labels: vec![
                format!("get alone, random key ({HELD} handles kept)"),
                format!("drop alone (of those {HELD} handles)"),
            ],
            run: Box::new(move || {
                let (mut get_ns, mut drop_ns, mut done) = (0u128, 0u128, 0u64);
                while done < n {
                    let batch = (n - done).min(HELD as u64);
                    let t = Instant::now();
                    for i in done..done + batch {
                        held.push(s.store.get::<u64>(s.random(i)).expect("get"));
                    }
                    get_ns += t.elapsed().as_nanos();
                    let t = Instant::now();
                    held.clear();
                    drop_ns += t.elapsed().as_nanos();
                    done += batch;
                }
                vec![get_ns as f64 / n as f64, drop_ns as f64 / n as f64]
            }),
        });
        variants.push(Variant::one(
            "contains, random key (lookup, no handle)",
            move || {
                per_op(n, |i| {
                    assert!(s.store.contains(s.random(i)).expect("contains"));
                })
            },
        ));
        let map = s.map();
        variants.push(Variant::one(
            "for scale: std HashMap<String, u64>::get, random key",
            move || {
                per_op(n, |i| {
                    black_box(map.get(black_box(s.random(i))).expect("in the map"));
                })
            },
        ));
    }
    let per = variants.len() / stores.len();
    let labels: Vec<String> = variants[..per]
        .iter()
        .flat_map(|v| v.labels.clone())
        .collect();
    // Per store, its figures in order: random, same, get alone, drop
    // alone, contains, HashMap.
    let stats = stats_of(interleave_sizes(variants, per));
    let per_store: Vec<Vec<Stats>> = stats
        .chunks(per)
        .map(|c| c.iter().flatten().copied().collect())
        .collect();
    let rows: Vec<[Stats; 3]> = (0..labels.len())
        .map(|f| [per_store[0][f], per_store[1][f], per_store[2][f]])
        .collect();
    let table: Vec<(&str, &[Stats; 3])> = labels.iter().map(String::as_str).zip(&rows).collect();
    print_by_size(&table);
    // Sanity: every entry still holds what it was created with.
    for s in stores {
        let v = s.store.get::<u64>(s.middle()).expect("get");
        assert_eq!(*v.lock().expect("lock"), s.keys as u64 / 2);
    }
    rows.try_into().unwrap_or_else(|_| unreachable!("six rows"))
}

// ---------------------------------------------------------------------------
// --lookups: the figures compare/store.sh sets beside Boost's find.

/// `contains`, `get` + drop and a std `HashMap`'s `get` of a random and of
/// the same key, `ops` per batch, at each store size: one JSON line per
/// figure, as compare/cpp/boost_find.cpp prints them.
fn lookups(ops: u64) {
    let mut cleanup = Cleanup::new("store_bench");
    let stores: Vec<Filled> = SIZES
        .iter()
        .map(|&k| Filled::new(&mut cleanup, k))
        .collect();
    // (peer, what, key)
    type Figure = (&'static str, &'static str, &'static str);
    let mut figures: Vec<(Figure, &Filled)> = Vec::new();
    let mut variants = Vec::new();
    for s in &stores {
        let map = std::rc::Rc::new(s.map());
        let same_map = std::rc::Rc::clone(&map);
        let key = s.middle();
        figures.push((("shmstore", "get + drop", "random"), s));
        variants.push(Variant::one("", move || {
            per_op(ops, |i| {
                drop(black_box(s.store.get::<u64>(s.random(i)).expect("get")))
            })
        }));
        figures.push((("shmstore", "get + drop", "same"), s));
        variants.push(Variant::one("", move || {
            per_op(ops, |_| {
                drop(black_box(s.store.get::<u64>(black_box(key)).expect("get")))
            })
        }));
        figures.push((("shmstore", "contains", "random"), s));
        variants.push(Variant::one("", move || {
            per_op(ops, |i| {
                assert!(s.store.contains(s.random(i)).expect("contains"))
            })
        }));
        figures.push((("shmstore", "contains", "same"), s));
        variants.push(Variant::one("", move || {
            per_op(ops, |_| {
                assert!(s.store.contains(black_box(key)).expect("contains"))
            })
        }));
        figures.push((("std", "HashMap::get", "random"), s));
        variants.push(Variant::one("", move || {
            per_op(ops, |i| {
                black_box(map.get(black_box(s.random(i))).expect("in the map"));
            })
        }));
        figures.push((("std", "HashMap::get", "same"), s));
        variants.push(Variant::one("", move || {
            per_op(ops, |_| {
                black_box(same_map.get(black_box(key)).expect("in the map"));
            })
        }));
    }
    let per = variants.len() / stores.len();
    let samples = interleave_sizes(variants, per);
    for (((peer, what, key), s), samples) in figures.iter().zip(samples) {
        let samples = &samples[0];
        let ns: Vec<String> = samples.iter().map(|x| format!("{x:.2}")).collect();
        println!(
            "{{\"peer\": \"{peer}\", \"what\": \"{what}\", \"key\": \"{key}\", \"keys\": {}, \
             \"ops\": {ops}, \"digest\": \"{}\", \"ns_per_op\": [{}]}}",
            s.keys,
            s.digest(*key == "same"),
            ns.join(", ")
        );
    }
}

// ---------------------------------------------------------------------------
// --profile: one kind of lookup alone, for a profiler (compare/lookup_parts.py).

/// What `--profile` runs.
#[derive(Clone, Copy)]
enum Profiled {
    Contains,
    GetDrop,
    HashMap,
}

impl Profiled {
    fn parse(s: &str) -> Option<Profiled> {
        Some(match s {
            "contains" => Profiled::Contains,
            "get" => Profiled::GetDrop,
            "hashmap" => Profiled::HashMap,
            _ => return None,
        })
    }
}

/// Fills a store of `keys` keys, then runs `ops` lookups of one kind twice:
/// once to warm up, once in [`profiled`], the function a profiler limits
/// its counts to (the store's filling and the warm-up stay out).
fn profile(op: Profiled, keys: usize, ops: u64, same: bool) {
    let mut cleanup = Cleanup::new("store_bench");
    let s = Filled::new(&mut cleanup, keys);
    let map = s.map();
    run_profiled(&s, &map, op, ops, same); // the warm-up, inlined here
    let t = Instant::now();
    profiled(&s, &map, op, ops, same);
    eprintln!(
        "store_bench: {ops} lookups of {keys} keys in {:.1} ns each (under a profiler: not a figure)",
        t.elapsed().as_nanos() as f64 / ops as f64
    );
}

#[inline(never)]
fn profiled(s: &Filled, map: &HashMap<String, u64>, op: Profiled, ops: u64, same: bool) {
    run_profiled(s, map, op, ops, same);
}

#[inline(always)]
fn run_profiled(s: &Filled, map: &HashMap<String, u64>, op: Profiled, ops: u64, same: bool) {
    let key = |i: u64| if same { s.middle() } else { s.random(i) };
    for i in 0..ops {
        let key = black_box(key(i));
        match op {
            Profiled::Contains => assert!(s.store.contains(key).expect("contains")),
            Profiled::GetDrop => drop(black_box(s.store.get::<u64>(key).expect("get"))),
            Profiled::HashMap => {
                black_box(map.get(key).expect("in the map"));
            }
        }
    }
}

// ---------------------------------------------------------------------------
// Section 2: an entry against a segment of its own.

fn section_entry(cfg: &Config, cleanup: &mut Cleanup) -> ((Stats, Stats), (Stats, Stats)) {
    println!();
    println!(
        "2. A u64 as an entry of a store and as a Shared<u64> in its own segment, uncontended \
         ({} locks, {} snapshots, {} opens per batch)",
        cfg.locks, cfg.snapshots, cfg.opens
    );
    let store_name = cleanup.name("entry");
    let store = Store::create(store_name.as_str(), 64 * 1024).expect("create a store");
    let entry = store.insert::<u64>("counter", 0).expect("insert");
    let own_name = cleanup.name("own");
    let own = Shared::<u64>::create(own_name.as_str(), 0).expect("create a segment");

    let (locks, snapshots, opens) = (cfg.locks, cfg.snapshots, cfg.opens);
    let (entry, own, own_name) = (&entry, &own, own_name.as_str());
    let lock = |s: &Shared<u64>| {
        per_op(locks, |_| {
            let mut g = s.lock().expect("lock");
            *g += 1;
        })
    };
    let snap = |s: &Shared<u64>| {
        per_op(snapshots, |_| {
            black_box(s.snapshot().expect("snapshot"));
        })
    };
    let store = &store;
    let mut variants = vec![
        Variant::one("lock + *g += 1 + unlock, store entry", move || lock(entry)),
        Variant::one("lock + *g += 1 + unlock, own segment", move || lock(own)),
        Variant::one("snapshot(), store entry", move || snap(entry)),
        Variant::one("snapshot(), own segment", move || snap(own)),
        Variant::one("store.get(key) + drop (1 entry in the store)", move || {
            per_op(opens, |_| {
                drop(black_box(store.get::<u64>("counter").expect("get")));
            })
        }),
        Variant::one("Shared::<u64>::open(name) + drop, own segment", move || {
            per_op(opens, |_| {
                drop(black_box(Shared::<u64>::open(own_name).expect("open")));
            })
        }),
    ];
    let stats: Vec<Stats> = interleave(&mut variants).into_iter().flatten().collect();
    let w = variants
        .iter()
        .map(|v| v.labels[0].len())
        .max()
        .unwrap_or(0);
    println!("   {:w$}  {:>24}", "what", "ns/op");
    for (v, s) in variants.iter().zip(&stats) {
        println!("   {:w$}  {:>24}", v.labels[0], s.cell());
    }
    let ratio = |a: &Stats, b: &Stats| a.median / b.median;
    println!(
        "   entry / own segment: lock {:.2}, snapshot {:.2}; open / get: {:.1}",
        ratio(&stats[0], &stats[1]),
        ratio(&stats[2], &stats[3]),
        ratio(&stats[5], &stats[4]),
    );
    // Sanity: no increment was lost.
    let expected = locks * (REPS as u64 + 1);
    assert_eq!(entry.snapshot().expect("snapshot"), expected);
    assert_eq!(own.snapshot().expect("snapshot"), expected);
    let mut stats = stats.into_iter();
    let mut next = || stats.next().expect("six figures");
    ((next(), next()), (next(), next()))
}

// ---------------------------------------------------------------------------
// Section 3: creating, removing and listing entries.

fn section_context(cfg: &Config, stores: &[Filled]) {
    println!();
    println!(
        "3. For context: insert + drop of the handle + remove of a new key ({} per batch), and \
         entries(), which lists every entry ({} calls per batch at 10 keys, fewer for more keys)",
        cfg.inserts,
        calls_of_entries(cfg, SIZES[0])
    );
    let mut variants = Vec::new();
    for s in stores {
        let n = cfg.inserts;
        variants.push(Variant::one("insert + drop + remove", move || {
            per_op(n, |i| {
                let key = if i % 2 == 0 { "new/even" } else { "new/odd" };
                drop(black_box(s.store.insert::<u64>(key, i).expect("insert")));
                s.store.remove(key).expect("remove");
            })
        }));
        let calls = calls_of_entries(cfg, s.keys);
        variants.push(Variant::one("entries()", move || {
            per_op(calls, |_| {
                let list = s.store.entries().expect("entries");
                assert_eq!(black_box(list).len(), s.keys);
            })
        }));
    }
    let stats = stats_of(interleave_sizes(variants, 2));
    let mut rows: Vec<[Stats; 3]> = (0..2)
        .map(|row| [0, 1, 2].map(|store| stats[2 * store + row][0]))
        .collect();
    let per_entry: Vec<String> = rows[1]
        .iter()
        .zip(SIZES)
        .map(|(s, k)| format!("{:.0}", s.median / k as f64))
        .collect();
    for s in rows[1].iter_mut() {
        *s = Stats {
            median: s.median / 1000.0,
            min: s.min / 1000.0,
            max: s.max / 1000.0,
        };
    }
    let labels = ["insert + drop + remove (ns)", "entries() (us per call)"];
    let table: Vec<(&str, &[Stats; 3])> = labels.into_iter().zip(&rows).collect();
    print_by_size(&table);
    println!(
        "   entries() per entry listed: {} ns",
        per_entry.join(" / ")
    );
    for s in stores {
        s.store.check().expect("the store is consistent");
        assert_eq!(s.store.len().expect("len"), s.keys);
    }
}

fn calls_of_entries(cfg: &Config, keys: usize) -> u64 {
    (cfg.listed / (keys as u64 + 100)).max(1)
}
