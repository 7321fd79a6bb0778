//! `entries()` of a large store while other processes change it: listed in
//! pieces, it neither misses nor repeats an entry, and does not stall them.
//!
//! 1. Three processes insert and remove keys of their own, as fast as they
//!    can, while a store of 20,000 entries is listed again and again (by
//!    `Store` and by `StoreReader`): every entry present throughout is
//!    listed exactly once, no key twice, and `check()` passes afterwards.
//! 2. A process `get`s entries of a store of 100,000 while it is listed:
//!    no `get` waits for the listing. Asserted as a generous bound (no
//!    single `get` over 100 ms, where the whole listing held the directory
//!    lock for about 35 ms before it was made in pieces); the load example
//!    (`examples/load.rs`, scenario `list`) prints the longest wait.

use crate::common;

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use common::{command, heavy, role, say, Kid, Segment};
use shmstore::{Store, StoreReader};

/// The longest a `get` may wait while a listing runs (test 2).
const GET_BOUND: Duration = Duration::from_millis(100);

/// The entry point of child processes (does nothing in a normal test run).
#[test]
fn child_entry() {
    let Some(args) = role() else { return };
    let arg = |i: usize| args[i].as_str();
    let code = match arg(0) {
        "churn-own" => churn_own(arg(1), arg(2).parse().unwrap()),
        "getter" => getter(arg(1), arg(2).parse().unwrap()),
        other => panic!("unknown role {other}"),
    };
    std::process::exit(code);
}

/// The key of steady entry `i` (never removed during a test).
fn steady(i: u64) -> String {
    format!("steady/{i}")
}

/// A small deterministic sequence (xorshift).
fn next(state: &mut u64) -> u64 {
    *state ^= *state << 13;
    *state ^= *state >> 7;
    *state ^= *state << 17;
    *state
}

/// Until the `stop` entry is not 0: inserts and removes keys of its own
/// (`kid/ME/J`), at random; reports how many of each it made.
fn churn_own(name: &str, me: u64) -> i32 {
    let store = Store::open(name).unwrap();
    let stop = store.get::<u64>("stop").unwrap();
    let mut rng = 0x1234_5678 + me;
    let mut present = BTreeSet::new();
    let (mut inserts, mut removes) = (0u64, 0u64);
    say("ready");
    assert_eq!(command().as_deref(), Some("go"));
    let mut op = 0u64;
    while op % 256 != 0 || stop.snapshot().unwrap() == 0 {
        op += 1;
        let j = next(&mut rng) % 200;
        let key = format!("kid/{me}/{j}");
        if present.remove(&j) {
            store.remove(&key).unwrap();
            removes += 1;
        } else {
            drop(store.insert::<u64>(&key, j).unwrap());
            present.insert(j);
            inserts += 1;
        }
    }
    say(format!("done inserts={inserts} removes={removes}"));
    0
}

/// Until the `stop` entry is not 0: `get`s steady entries of the `keys`
/// in the store at random and drops them; reports the longest single
/// `get` in microseconds.
fn getter(name: &str, keys: u64) -> i32 {
    let store = Store::open(name).unwrap();
    let stop = store.get::<u64>("stop").unwrap();
    let mut rng = 0x9876_5432;
    let (mut gets, mut longest) = (0u64, Duration::ZERO);
    say("ready");
    assert_eq!(command().as_deref(), Some("go"));
    while gets % 64 != 0 || stop.snapshot().unwrap() == 0 {
        let key = steady(next(&mut rng) % keys);
        let t = Instant::now();
        let got = store.get::<u64>(&key).unwrap();
        longest = longest.max(t.elapsed());
        drop(got);
        gets += 1;
    }
    say(format!(
        "done gets={gets} longest_us={}",
        longest.as_micros()
    ));
    0
}

/// A store of `keys` steady `u64` entries and a `stop` entry (0).
fn steady_store(seg: &Segment, keys: u64, capacity: usize) -> Store {
    let store = Store::create(seg.name(), capacity).unwrap();
    for i in 0..keys {
        drop(store.insert::<u64>(&steady(i), i).unwrap());
    }
    drop(store.insert::<u64>("stop", 0).unwrap());
    store
}

/// Every key of `keys`, each exactly once.
fn assert_listed_once(keys: &[String], steady_keys: u64, what: &str) {
    let unique: BTreeSet<&String> = keys.iter().collect();
    assert_eq!(unique.len(), keys.len(), "{what}: a key listed twice");
    for i in 0..steady_keys {
        assert!(unique.contains(&steady(i)), "{what}: {} missing", steady(i));
    }
    assert!(unique.contains(&"stop".to_owned()), "{what}: stop missing");
}

#[test]
fn listing_a_store_that_others_change_lists_every_entry_present_throughout_once() {
    const KEYS: u64 = 20_000;
    let _heavy = heavy();
    let seg = Segment::new("list-churn");
    let store = steady_store(&seg, KEYS, 8 << 20);
    let reader = StoreReader::open(seg.name()).unwrap();
    let mut kids: Vec<Kid> = (0..3)
        .map(|k| Kid::spawn("churn-own", &[seg.name(), &k.to_string()]))
        .collect();
    for k in &mut kids {
        k.expect("ready");
    }
    for k in &mut kids {
        k.send("go");
    }
    let (mut listings, mut churned) = (0, 0usize);
    let end = Instant::now() + Duration::from_secs(2);
    while listings < 6 || Instant::now() < end {
        let g = store.generation();
        let keys: Vec<String> = if listings % 2 == 0 {
            store
                .entries()
                .unwrap()
                .into_iter()
                .map(|e| e.key)
                .collect()
        } else {
            reader
                .entries()
                .unwrap()
                .into_iter()
                .map(|e| e.key)
                .collect()
        };
        let what = format!("listing {listings}");
        assert_listed_once(&keys, KEYS, &what);
        churned += usize::from(store.generation() != g);
        listings += 1;
    }
    *store.get::<u64>("stop").unwrap().lock().unwrap() = 1;
    for k in &mut kids {
        let done = k.expect("done");
        assert!(done.contains("removes="), "{done}");
    }
    for k in &mut kids {
        k.wait_success();
    }
    assert!(churned > 0, "no listing overlapped a change");
    store.check().expect("check() after listings during churn");
    let keys: Vec<String> = store
        .entries()
        .unwrap()
        .into_iter()
        .map(|e| e.key)
        .collect();
    assert_listed_once(&keys, KEYS, "after the churn");
    assert_eq!(keys.len(), store.len().unwrap());
    eprintln!("listing: {listings} listings of {KEYS}+ entries, {churned} during changes");
}

#[test]
fn a_get_does_not_wait_for_a_listing_of_100_000_entries() {
    const KEYS: u64 = 100_000;
    let _heavy = heavy();
    let seg = Segment::new("list-get");
    let store = steady_store(&seg, KEYS, 32 << 20);
    let mut kid = Kid::spawn("getter", &[seg.name(), &KEYS.to_string()]);
    kid.expect("ready");
    kid.send("go");
    let t = Instant::now();
    for _ in 0..4 {
        assert_eq!(store.entries().unwrap().len() as u64, KEYS + 1);
    }
    let listing = t.elapsed() / 4;
    *store.get::<u64>("stop").unwrap().lock().unwrap() = 1;
    let done = kid.expect("done");
    kid.wait_success();
    let longest = Duration::from_micros(common::field(&done, "longest_us").parse().unwrap());
    eprintln!("listing: {listing:?} per listing of {KEYS}; longest get meanwhile {longest:?}");
    assert!(
        longest < GET_BOUND,
        "a get waited {longest:?} while the store was listed ({done})"
    );
    store.check().unwrap();
}
