//! `Store`: many named, typed entries in one segment, within one process
//! (store/processes.rs has the tests across processes).
//!
//! Round trips through two mappings of one store, the typed errors, a full
//! store and a fragmented one, 100,000 create/remove cycles of mixed sizes,
//! entries removed while handles hold them, the list of entries, the three
//! named backends, threads sharing a store, the limit of 64 handles,
//! capacities, waiting for entries to come and go, and a poisoned entry.
//!
//! Each test asserts what a user would notice: a value that does not come
//! back, a wrong or vague error, space that is never given back, a count
//! that loses updates, a waiter that is not woken. `Store::check` verifies
//! the directory and heap after each scenario.
//!
//! Every POSIX name comes from [`Segment`], every System V key from [`Key`]
//! (this file's range is `0x6000_0000`) and every file from [`TempFile`],
//! which remove what they name when dropped, also when an assertion fails.

use crate::common;

use std::collections::VecDeque;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Barrier};
use std::time::{Duration, Instant};

use common::{failure, Key, Segment};
use shmstore::{Error, IntoLocation, Shareable, Shared, SharedOptions, Store, MAX_KEY_LEN};

// ===========================================================================
// Types, names and helpers

#[derive(Shareable, Clone, Copy, Debug, Default, PartialEq)]
#[repr(C)]
struct Point {
    x: f64,
    y: f64,
}

/// `Point`'s size and field types, its fields in the other order.
#[derive(Shareable, Clone, Copy, Debug, Default, PartialEq)]
#[repr(C)]
struct Flipped {
    y: f64,
    x: f64,
}

#[derive(Shareable, Clone, Copy, Debug, Default, PartialEq)]
#[repr(C)]
struct Stats {
    requests: u64,
    errors: u32,
    workers: u16,
    flags: u8,
    _pad: u8,
}

/// 64-byte aligned, the most an entry can be.
#[derive(Shareable, Clone, Copy, Debug, Default, PartialEq)]
#[repr(C, align(64))]
struct Line {
    words: [u64; 8],
}

/// A value of `u64` words, for the churn: every word holds the same tag, so
/// a value overwritten by another entry, or half of one, is noticed.
trait Tagged: Shareable + Copy + std::fmt::Debug {
    fn filled(tag: u64) -> Self;
    fn words(&self) -> &[u64];
}

macro_rules! tagged_value {
    ($(#[$doc:meta])* $name:ident, $words:expr) => {
        $(#[$doc])*
        #[derive(Shareable, Clone, Copy, Debug, PartialEq)]
        #[repr(C)]
        struct $name {
            words: [u64; $words],
        }

        impl Tagged for $name {
            fn filled(tag: u64) -> Self {
                $name { words: [tag; $words] }
            }
            fn words(&self) -> &[u64] {
                &self.words
            }
        }
    };
}

tagged_value!(
    /// 8 bytes.
    V8, 1
);
tagged_value!(
    /// 64 bytes.
    V64, 8
);
tagged_value!(
    /// 256 bytes.
    V256, 32
);
tagged_value!(
    /// 1 KiB.
    V1024, 128
);
tagged_value!(
    /// 4000 bytes: a page's worth, not a multiple of 64.
    V4000, 500
);

/// How many value sizes the churn uses.
const KINDS: usize = 5;

/// Runs `$body` with `$T` the churn's value type of kind `$kind`.
macro_rules! with_kind {
    ($kind:expr, $T:ident => $body:expr) => {
        match $kind {
            0 => {
                type $T = V8;
                $body
            }
            1 => {
                type $T = V64;
                $body
            }
            2 => {
                type $T = V256;
                $body
            }
            3 => {
                type $T = V1024;
                $body
            }
            4 => {
                type $T = V4000;
                $body
            }
            k => unreachable!("kind {k}"),
        }
    };
}

/// An entry handle of any `Tagged` type.
trait HeldValue {
    /// The tag its value holds (all words equal), or a panic saying what
    /// it holds instead.
    fn tag(&self) -> u64;
    /// Writes a new tag through the lock.
    fn retag(&self, tag: u64);
}

impl<T: Tagged> HeldValue for Shared<T> {
    fn tag(&self) -> u64 {
        let v = self.snapshot().expect("not poisoned");
        let w = v.words();
        assert!(
            w.iter().all(|&x| x == w[0]),
            "entry `{}` holds a mixed value: first word {:#x}, last {:#x}",
            self.name(),
            w[0],
            w[w.len() - 1]
        );
        w[0]
    }
    fn retag(&self, tag: u64) {
        *self.lock().expect("not poisoned") = T::filled(tag);
    }
}

/// A System V key of this file's range (see `common::Key`).
fn new_key() -> Key {
    Key::in_range(0x6000_0000)
}

static FILE_SEQ: AtomicU32 = AtomicU32::new(0);

/// A path under the temporary directory, unique to this process and call;
/// the file is removed when dropped.
struct TempFile(PathBuf);

impl TempFile {
    fn new(test: &str) -> TempFile {
        let n = FILE_SEQ.fetch_add(1, Ordering::Relaxed);
        let path =
            std::env::temp_dir().join(format!("shmstore-store-{test}-{}-{n}", std::process::id()));
        let _ = std::fs::remove_file(&path);
        TempFile(path)
    }

    fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for TempFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

/// A deterministic pseudo-random sequence (Knuth's MMIX LCG).
struct Lcg(u64);

impl Lcg {
    fn below(&mut self, n: usize) -> usize {
        self.0 = self
            .0
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1_442_695_040_888_963_407);
        ((self.0 >> 33) % n as u64) as usize
    }
}

/// The bytes an entry takes, as the user sees it: the drop in
/// `free_bytes` when it is created in an empty store.
fn footprint<T: Shareable>(key: &str, value: T) -> usize {
    let seg = Segment::new("footprint");
    let store = Store::create(seg.name(), 1 << 16).unwrap();
    let before = store.free_bytes().unwrap();
    drop(store.insert(key, value).unwrap());
    before - store.free_bytes().unwrap()
}

// ===========================================================================
// 1. Round trips

#[test]
fn entries_round_trip_through_a_second_mapping() {
    let seg = Segment::new("round-trip");
    let a = Store::create(seg.name(), 1 << 16).unwrap();
    assert_eq!(a.name(), seg.name());
    assert!(a.capacity() >= 1 << 16);
    assert_eq!(a.free_bytes().unwrap(), a.capacity());
    assert!(a.is_empty().unwrap());
    let g0 = a.generation();

    let jobs = a.insert::<u64>("jobs", 7).unwrap();
    let point = a.insert("geo/origin", Point { x: 1.5, y: -2.0 }).unwrap();
    let stats = a
        .get_or_create(
            "worker@host:1",
            Stats {
                requests: 10,
                ..Stats::default()
            },
        )
        .unwrap();
    let line = a.insert("line", Line { words: [3; 8] }).unwrap();
    let line_addr = {
        let g = line.lock().unwrap();
        &*g as *const Line as usize
    };
    assert_eq!(line_addr % 64, 0, "a 64-aligned type lands 64-aligned");
    assert_eq!(a.len().unwrap(), 4);
    assert!(!a.is_empty().unwrap());
    assert_eq!(a.generation(), g0 + 4, "one generation per entry created");

    // get_or_create of an existing key gives the entry, not the new value,
    // and changes nothing in the directory.
    let again = a.get_or_create::<u64>("jobs", 999).unwrap();
    assert_eq!(again.snapshot().unwrap(), 7);
    assert_eq!(a.generation(), g0 + 4);
    assert_eq!(a.len().unwrap(), 4);

    // A second mapping of the same store sees the same entries.
    let b = Store::open(seg.name()).unwrap();
    assert_eq!(b.capacity(), a.capacity());
    assert_eq!(b.len().unwrap(), 4);
    assert_eq!(b.generation(), a.generation());
    let jobs_b = b.get::<u64>("jobs").unwrap();
    assert_eq!(jobs_b.snapshot().unwrap(), 7);
    assert_eq!(
        b.get::<Point>("geo/origin").unwrap().snapshot().unwrap(),
        Point { x: 1.5, y: -2.0 }
    );
    assert_eq!(
        b.get::<Stats>("worker@host:1")
            .unwrap()
            .snapshot()
            .unwrap()
            .requests,
        10
    );
    assert_eq!(
        b.get::<Line>("line").unwrap().snapshot().unwrap().words,
        [3; 8]
    );

    // Writes under the lock, through either mapping, are seen by the other,
    // by snapshot and by lock, and count one generation each.
    assert_eq!(jobs.generation(), 0);
    *jobs.lock().unwrap() += 1;
    assert_eq!(jobs.generation(), 1);
    assert_eq!(jobs_b.generation(), 1);
    assert_eq!(jobs_b.snapshot().unwrap(), 8);
    *jobs_b.lock().unwrap() *= 10;
    assert_eq!(jobs.snapshot().unwrap(), 80);
    assert_eq!(*again.lock().unwrap(), 80);
    assert_eq!(jobs.generation(), 2);
    // A guard only read through commits nothing.
    let _ = *jobs.lock().unwrap();
    assert_eq!(jobs.generation(), 2);
    // Value writes are not directory changes.
    assert_eq!(a.generation(), g0 + 4);

    point.lock().unwrap().y = 4.25;
    stats.lock().unwrap().errors += 3;
    assert_eq!(
        b.get::<Point>("geo/origin").unwrap().snapshot().unwrap(),
        Point { x: 1.5, y: 4.25 }
    );
    assert_eq!(
        b.get::<Stats>("worker@host:1")
            .unwrap()
            .snapshot()
            .unwrap()
            .errors,
        3
    );

    // The store outlives every handle, as a segment does until unlinked.
    drop((jobs, jobs_b, again, point, stats, line, a, b));
    let c = Store::open(seg.name()).unwrap();
    assert_eq!(c.len().unwrap(), 4);
    assert_eq!(c.get::<u64>("jobs").unwrap().snapshot().unwrap(), 80);
    assert_eq!(c.get::<u64>("jobs").unwrap().generation(), 2);
    assert!(c.contains("line").unwrap());
    assert!(!c.contains("lines").unwrap());
    c.check().unwrap();
}

// ===========================================================================
// 2. Typed errors

#[test]
fn an_entry_of_another_type_is_a_layout_mismatch_naming_both_types() {
    let seg = Segment::new("mismatch");
    let store = Store::create(seg.name(), 1 << 16).unwrap();
    store.insert::<u64>("count", 5).unwrap();
    store.insert("origin", Point::default()).unwrap();

    match failure(store.get::<u32>("count")) {
        Error::LayoutMismatch {
            ref name,
            expected_type,
            expected_fingerprint,
            ref found_type,
            found_fingerprint,
            ref changes,
        } => {
            assert!(name.contains("count"), "{name}");
            assert_eq!(
                changes.first().map(ToString::to_string).as_deref(),
                Some("type changed from `u64` to `u32`")
            );
            assert!(name.contains(seg.name()), "{name}");
            assert_eq!(expected_type, "u32");
            assert_eq!(found_type, "u64");
            assert_eq!(expected_fingerprint, u32::FINGERPRINT);
            assert_eq!(found_fingerprint, u64::FINGERPRINT);
        }
        e => panic!("expected LayoutMismatch, got {e:?}"),
    }
    let text = failure(store.get::<u32>("count")).to_string();
    assert!(text.contains("`u32`") && text.contains("`u64`"), "{text}");
    assert!(text.contains("count"), "{text}");

    // Same size, same field types, another layout: still refused.
    match failure(store.get::<Flipped>("origin")) {
        Error::LayoutMismatch {
            expected_type,
            found_type,
            ..
        } => {
            assert_eq!(expected_type, "Flipped");
            assert_eq!(found_type, "Point");
        }
        e => panic!("expected LayoutMismatch, got {e:?}"),
    }
    // get_or_create does not replace an entry of another type.
    assert!(matches!(
        store.get_or_create::<u32>("count", 1),
        Err(Error::LayoutMismatch { .. })
    ));
    assert_eq!(store.get::<u64>("count").unwrap().snapshot().unwrap(), 5);
    assert_eq!(store.len().unwrap(), 2);
    store.check().unwrap();
}

#[test]
fn missing_and_duplicate_keys_are_not_found_and_already_exists() {
    let seg = Segment::new("missing");
    let store = Store::create(seg.name(), 1 << 16).unwrap();
    match failure(store.get::<u64>("nothing")) {
        Error::NotFound { name } => assert!(name.contains("nothing"), "{name}"),
        e => panic!("expected NotFound, got {e:?}"),
    }
    assert!(matches!(
        store.remove("nothing"),
        Err(Error::NotFound { .. })
    ));
    assert!(!store.contains("nothing").unwrap());

    let first = store.insert::<u64>("once", 1).unwrap();
    let g = store.generation();
    match failure(store.insert::<u64>("once", 2)) {
        Error::AlreadyExists { name } => assert!(name.contains("once"), "{name}"),
        e => panic!("expected AlreadyExists, got {e:?}"),
    }
    // Also as another type: the key is taken, whatever it holds.
    assert!(matches!(
        store.insert("once", Point::default()),
        Err(Error::AlreadyExists { .. })
    ));
    assert_eq!(first.snapshot().unwrap(), 1, "the first value stays");
    assert_eq!(store.generation(), g, "a refused insert changes nothing");
    assert_eq!(store.len().unwrap(), 1);
    store.check().unwrap();
}

#[test]
fn invalid_keys_are_refused_by_every_operation() {
    let seg = Segment::new("keys");
    let store = Store::create(seg.name(), 1 << 16).unwrap();
    let too_long = "k".repeat(MAX_KEY_LEN + 1);
    let bad: [&str; 9] = [
        "",
        &too_long,
        "two words",
        " lead",
        "nul\0byte",
        "caf\u{e9}",
        "tab\t",
        "new\nline",
        "star*",
    ];
    for key in bad {
        let shown = format!("{key:?}");
        let is_invalid = |e: Error| match e {
            Error::InvalidName { name, reason } => {
                assert_eq!(name, key);
                assert!(!reason.is_empty());
            }
            e => panic!("key {shown}: expected InvalidName, got {e:?}"),
        };
        is_invalid(failure(store.get::<u64>(key)));
        is_invalid(failure(store.insert::<u64>(key, 1)));
        is_invalid(failure(store.get_or_create::<u64>(key, 1)));
        is_invalid(store.remove(key).unwrap_err());
        is_invalid(store.contains(key).unwrap_err());
    }
    assert!(store.is_empty().unwrap(), "no invalid key made an entry");

    // Every allowed character, and the longest key, are fine; `.` and `..`
    // are just keys here, not paths.
    let longest = "x".repeat(MAX_KEY_LEN);
    let good = [
        "a",
        ".",
        "..",
        "/",
        "a/b/../c",
        "AZaz09_-./:@+",
        "user@host:8080/path+more",
        &longest,
    ];
    for (i, key) in good.iter().enumerate() {
        store.insert::<u64>(key, i as u64).unwrap();
    }
    for (i, key) in good.iter().enumerate() {
        assert_eq!(store.get::<u64>(key).unwrap().snapshot().unwrap(), i as u64);
    }
    let mut listed: Vec<String> = store
        .entries()
        .unwrap()
        .into_iter()
        .map(|e| e.key)
        .collect();
    listed.sort();
    let mut want: Vec<String> = good.iter().map(|k| k.to_string()).collect();
    want.sort();
    assert_eq!(listed, want);
    store.check().unwrap();
}

#[test]
fn a_store_and_a_single_value_segment_refuse_each_other() {
    let single = Segment::new("single");
    let _value = Shared::<u64>::create(single.name(), 1).unwrap();
    match failure(Store::open(single.name())) {
        Error::LayoutMismatch {
            expected_type,
            found_type,
            ..
        } => {
            assert!(expected_type.contains("Store"), "{expected_type}");
            assert_eq!(found_type, "u64");
        }
        e => panic!("expected LayoutMismatch, got {e:?}"),
    }
    assert!(matches!(
        Store::open_or_create(single.name(), 4096),
        Err(Error::LayoutMismatch { .. })
    ));

    let many = Segment::new("many");
    let _store = Store::create(many.name(), 4096).unwrap();
    match failure(Shared::<u64>::open(many.name())) {
        Error::LayoutMismatch {
            expected_type,
            found_type,
            ..
        } => {
            assert_eq!(expected_type, "u64");
            assert!(found_type.contains("Store"), "{found_type}");
        }
        e => panic!("expected LayoutMismatch, got {e:?}"),
    }
    assert!(matches!(
        Shared::<u64>::open_or_create(many.name(), 0),
        Err(Error::LayoutMismatch { .. })
    ));
}

#[test]
fn opening_a_missing_store_and_recreating_one_are_typed_errors() {
    let seg = Segment::new("absent");
    match failure(Store::open(seg.name())) {
        Error::NotFound { name } => assert!(name.contains(seg.name()), "{name}"),
        e => panic!("expected NotFound, got {e:?}"),
    }
    assert!(!seg.exists(), "a failed open creates nothing");

    let store = Store::create(seg.name(), 4096).unwrap();
    store.insert::<u64>("kept", 42).unwrap();
    assert!(matches!(
        Store::create(seg.name(), 4096),
        Err(Error::AlreadyExists { .. })
    ));
    assert_eq!(
        store.get::<u64>("kept").unwrap().snapshot().unwrap(),
        42,
        "a refused create leaves the store as it was"
    );
    // Unlinking takes the name; the open handle keeps working.
    Store::unlink(seg.name()).unwrap();
    assert!(matches!(
        Store::open(seg.name()),
        Err(Error::NotFound { .. })
    ));
    assert_eq!(store.get::<u64>("kept").unwrap().snapshot().unwrap(), 42);
}

// ===========================================================================
// 3. A full store

/// A store that never grows (its `max_capacity` is its capacity): for the
/// tests that fill it on purpose.
fn fixed_store(name: &str, capacity: usize) -> Store {
    SharedOptions::new()
        .max_capacity(capacity)
        .create_store(name, capacity)
        .unwrap()
}

#[test]
fn a_full_store_says_how_full_and_takes_entries_again_after_removals() {
    let seg = Segment::new("full");
    let store = fixed_store(seg.name(), 4096);
    let mut keys = Vec::new();
    let full = loop {
        let key = format!("k{:02}", keys.len());
        match store.insert::<u64>(&key, keys.len() as u64) {
            Ok(_) => keys.push(key),
            Err(e) => break e,
        }
        assert!(keys.len() < 4096 / 64, "4096 bytes never fill up");
    };
    // Each insert's handle is dropped at once, but the store handle's hold
    // list takes 128 bytes while the entry is being made.
    assert!(
        keys.len() >= (4096 - common::HOLD_LIST) / 256,
        "only {} entries fit",
        keys.len()
    );
    let text = full.to_string();
    match full {
        Error::StoreFull {
            ref name,
            needed,
            free,
            largest_free,
        } => {
            assert!(name.contains(seg.name()), "{name}");
            assert!(needed > largest_free, "{full:?}");
            assert!(free >= largest_free, "{full:?}");
            assert!(
                (8..=512).contains(&needed),
                "an 8-byte entry needs {needed}"
            );
            assert_eq!(free as usize, store.free_bytes().unwrap());
        }
        ref e => panic!("expected StoreFull, got {e:?}"),
    }
    assert!(text.contains(seg.name()), "{text}");
    assert!(text.contains("remove entries"), "{text}");
    assert!(text.contains("larger max_capacity"), "{text}");

    // The failed insert left nothing behind.
    assert_eq!(store.len().unwrap(), keys.len());
    assert!(!store.contains(&format!("k{:02}", keys.len())).unwrap());
    store.check().unwrap();
    for (i, k) in keys.iter().enumerate() {
        assert_eq!(store.get::<u64>(k).unwrap().snapshot().unwrap(), i as u64);
    }

    // Free every other entry: the free space is in pieces too small for a
    // large entry, which StoreFull tells apart.
    for k in keys.iter().step_by(2) {
        store.remove(k).unwrap();
    }
    store.check().unwrap();
    let piece = store.insert::<u64>("small-again", 1).unwrap();
    drop(piece);
    match failure(store.insert("big", V1024::filled(1))) {
        Error::StoreFull {
            needed,
            free,
            largest_free,
            ..
        } => {
            assert!(
                free > needed && largest_free < needed,
                "free {free}, largest piece {largest_free}, needed {needed}"
            );
        }
        e => panic!("expected StoreFull, got {e:?}"),
    }

    // Remove the rest: the pieces merge, and the big entry fits.
    store.remove("small-again").unwrap();
    for k in keys.iter().skip(1).step_by(2) {
        store.remove(k).unwrap();
    }
    assert_eq!(store.free_bytes().unwrap(), store.capacity());
    let big = store.insert("big", V1024::filled(9)).unwrap();
    assert_eq!(big.snapshot().unwrap(), V1024::filled(9));
    store.check().unwrap();
}

#[test]
fn a_failed_insert_changes_nothing_a_watcher_sees() {
    let seg = Segment::new("full-watch");
    let store = fixed_store(seg.name(), 4096);
    store.insert("big", V1024::filled(1)).unwrap();
    store.insert("big2", V1024::filled(2)).unwrap();
    let seen = store.generation();
    let free = store.free_bytes().unwrap();
    assert!(matches!(
        store.insert("too-big", V4000::filled(3)),
        Err(Error::StoreFull { .. })
    ));
    assert!(matches!(
        store.insert("big", V1024::filled(3)),
        Err(Error::AlreadyExists { .. })
    ));
    assert_eq!(store.free_bytes().unwrap(), free);
    assert_eq!(store.len().unwrap(), 2);
    assert_eq!(
        store.generation(),
        seen,
        "no entry was created or removed, yet the store's generation moved"
    );
    assert_eq!(
        store
            .wait_for_change(seen, Duration::from_millis(100))
            .unwrap(),
        None,
        "a watcher was told of a change that did not happen"
    );
    store.check().unwrap();
}

/// A store created small takes many times its capacity: it grows in place,
/// handles taken before a growth still read and write their entries, a
/// reader opened before it sees the new entries, `capacity()` shows the
/// growth, and past `max_capacity` inserts fail with `StoreFull` as a
/// fixed store's do. A file store grows in its file; a System V store does
/// not grow.
#[test]
fn a_store_grows_in_place_up_to_its_max_capacity_and_handles_stay_valid() {
    let seg = Segment::new("grows");
    let store = SharedOptions::new()
        .max_capacity(1 << 20)
        .create_store(seg.name(), 16 * 1024)
        .unwrap();
    assert_eq!(
        (store.capacity(), store.max_capacity()),
        (16 * 1024, 1 << 20)
    );
    let reader = shmstore::StoreReader::open(seg.name()).unwrap();
    let other = Store::open(seg.name()).unwrap();
    let first = store.insert::<u64>("first", 1).unwrap();
    let mut kept = Vec::new();
    let mut n = 0u64;
    let full = loop {
        match store.insert::<u64>(&format!("n/{n}"), n) {
            Ok(h) => {
                if n % 97 == 0 {
                    kept.push((n, h));
                }
                n += 1;
            }
            Err(e) => break e,
        }
        assert!(n < 1 << 20, "1 MiB never fills up");
    };
    assert!(matches!(full, Error::StoreFull { .. }), "{full:?}");
    assert!(n > 30 * 16 * 1024 / 256, "only {n} entries fit");
    assert_eq!(store.capacity(), 1 << 20);
    assert_eq!(other.capacity(), 1 << 20, "another handle sees the growth");
    assert_eq!(reader.capacity(), 1 << 20);
    assert_eq!(reader.max_capacity(), 1 << 20);
    *first.lock().unwrap() += 10;
    assert_eq!(*other.get::<u64>("first").unwrap().lock().unwrap(), 11);
    for (i, h) in &kept {
        assert_eq!(*h.lock().unwrap(), *i);
        *h.lock().unwrap() += 1;
        assert_eq!(
            reader
                .get::<u64>(&format!("n/{i}"))
                .unwrap()
                .snapshot()
                .unwrap(),
            i + 1
        );
    }
    assert!(other.contains(&format!("n/{}", n - 1)).unwrap());
    assert_eq!(reader.len().unwrap() as u64, n + 1);
    store.check().unwrap();
    reader.check().unwrap();
    // Room made by removals is used again, as in a fixed store.
    store.remove("n/1").unwrap();
    store.insert::<u64>("again", 0).unwrap();
    store.check().unwrap();

    // A fixed store (max_capacity = capacity) never grows.
    let seg = Segment::new("fixed");
    let fixed = SharedOptions::new()
        .max_capacity(4096)
        .create_store(seg.name(), 4096)
        .unwrap();
    assert_eq!((fixed.capacity(), fixed.max_capacity()), (4096, 4096));
    let mut i = 0;
    while fixed.insert::<u64>(&format!("k{i}"), 0).is_ok() {
        i += 1;
        assert!(i < 64);
    }
    assert!(i >= 10, "{i}");
    assert_eq!(fixed.capacity(), 4096);
    fixed.check().unwrap();

    // A file store grows in its file, which keeps the entries.
    let file = TempFile::new("grows");
    let in_file = SharedOptions::new()
        .max_capacity(256 * 1024)
        .create_store(file.path(), 4096)
        .unwrap();
    for i in 0..500u64 {
        in_file.insert::<u64>(&format!("f/{i}"), i).unwrap();
    }
    assert!(in_file.capacity() > 64 * 1024, "{}", in_file.capacity());
    assert!(std::fs::metadata(file.path()).unwrap().len() > in_file.capacity() as u64);
    in_file.check().unwrap();
    drop(in_file);
    let reopened = Store::open(file.path()).unwrap();
    assert_eq!(
        reopened.get::<u64>("f/499").unwrap().snapshot().unwrap(),
        499
    );

    // A System V store does not grow: its most is its capacity.
    let key = new_key();
    let sysv = SharedOptions::new()
        .max_capacity(1 << 20)
        .create_store(key.key(), 4096)
        .unwrap();
    assert_eq!((sysv.capacity(), sysv.max_capacity()), (4096, 4096));
    let mut i = 0;
    while sysv.insert::<u64>(&format!("k{i}"), 0).is_ok() {
        i += 1;
        assert!(i < 64);
    }
    assert_eq!(sysv.capacity(), 4096);
    sysv.check().unwrap();
}

/// A store created with the fewest buckets (16) takes thousands of
/// entries: its key index moves to larger tables in its heap, and every
/// entry is found by `contains`, `get` and `entries`, also through another
/// handle and a reader; `check` finds the directory consistent.
#[test]
fn a_store_of_16_buckets_takes_thousands_of_entries() {
    let seg = Segment::new("rehash");
    let store = SharedOptions::new()
        .max_capacity(8 << 20)
        .create_store(seg.name(), 128)
        .unwrap();
    let other = Store::open(seg.name()).unwrap();
    let reader = shmstore::StoreReader::open(seg.name()).unwrap();
    const N: u32 = 5000;
    for i in 0..N {
        store.insert::<u32>(&format!("key/{i}"), i).unwrap();
        if i % 1000 == 0 {
            store.check().unwrap();
        }
    }
    store.check().unwrap();
    for i in 0..N {
        let key = format!("key/{i}");
        assert!(store.contains(&key).unwrap(), "{key}");
        assert!(reader.contains(&key).unwrap(), "{key}");
        assert_eq!(*other.get::<u32>(&key).unwrap().lock().unwrap(), i);
    }
    assert!(!store.contains("key/none").unwrap());
    let listed = store.entries().unwrap();
    assert_eq!(listed.len(), N as usize);
    assert_eq!(reader.entries().unwrap().len(), N as usize);
    for i in (0..N).step_by(2) {
        other.remove(&format!("key/{i}")).unwrap();
    }
    for i in 0..N {
        assert_eq!(store.contains(&format!("key/{i}")).unwrap(), i % 2 == 1);
    }
    store.check().unwrap();
}

// ===========================================================================
// 4. Churn

/// Create/remove cycles the churn runs.
const CHURN_CYCLES: usize = 100_000;
/// The churn store's capacity.
const CHURN_CAPACITY: usize = 1 << 20;
/// Keys the churn draws from.
const CHURN_KEYS: usize = 1024;
/// Handles on removed entries the churn keeps at most.
const CHURN_ZOMBIES: usize = 16;

fn churn_key(i: usize) -> String {
    format!("churn/{i:04}")
}

/// One live entry of the churn.
struct Live {
    kind: usize,
    tag: u64,
    /// A handle kept open on it, if any.
    handle: Option<Box<dyn HeldValue>>,
}

#[test]
fn create_remove_churn_of_mixed_sizes_never_runs_out_of_space() {
    let seg = Segment::new("churn");
    let store = Store::create(seg.name(), CHURN_CAPACITY).unwrap();
    let capacity = store.capacity();
    assert_eq!(store.free_bytes().unwrap(), capacity);
    let budget = capacity / 2;

    // What each kind takes, keys all being as long.
    let key0 = churn_key(0);
    let sizes: [usize; KINDS] = [
        footprint(&key0, V8::filled(0)),
        footprint(&key0, V64::filled(0)),
        footprint(&key0, V256::filled(0)),
        footprint(&key0, V1024::filled(0)),
        footprint(&key0, V4000::filled(0)),
    ];
    for (k, s) in sizes.iter().enumerate() {
        assert_eq!(s % 64, 0, "kind {k} takes {s} bytes");
    }

    let started = Instant::now();
    let mut rng = Lcg(0x5eed);
    let mut live: Vec<Option<Live>> = (0..CHURN_KEYS).map(|_| None).collect();
    let mut live_count = 0usize;
    // Removed entries still held, with their tag and size.
    let mut zombies: VecDeque<(Box<dyn HeldValue>, u64, usize)> = VecDeque::new();
    // Bytes of live and held entries, by their footprints.
    let mut in_use = 0usize;
    let (mut creates, mut removes, mut removed_held) = (0usize, 0usize, 0usize);
    let mut peak = 0usize;

    // Removes entry `i`, checking its value on the way out.
    let mut remove = |i: usize,
                      live: &mut Vec<Option<Live>>,
                      zombies: &mut VecDeque<(Box<dyn HeldValue>, u64, usize)>,
                      in_use: &mut usize,
                      keep_handle: bool| {
        let e = live[i].take().expect("a live entry");
        let key = churn_key(i);
        let got = with_kind!(e.kind, T => store.get::<T>(&key).unwrap().tag());
        assert_eq!(got, e.tag, "entry {key} holds another value");
        store.remove(&key).unwrap();
        removes += 1;
        match e.handle {
            Some(h) if keep_handle => {
                removed_held += 1;
                zombies.push_back((h, e.tag, sizes[e.kind]));
            }
            _ => *in_use -= sizes[e.kind],
        }
        while zombies.len() > CHURN_ZOMBIES {
            let (h, tag, size) = zombies.pop_front().unwrap();
            assert_eq!(h.tag(), tag, "a removed entry's handle lost its value");
            drop(h);
            *in_use -= size;
        }
    };

    for cycle in 0..CHURN_CYCLES {
        let kind = rng.below(KINDS);
        let i = rng.below(CHURN_KEYS);
        let tag = cycle as u64 + 1;
        if live[i].is_some() {
            let keep = rng.below(2) == 0;
            remove(i, &mut live, &mut zombies, &mut in_use, keep);
            live_count -= 1;
        }
        while in_use + sizes[kind] > budget {
            if !zombies.is_empty() && rng.below(4) == 0 {
                let (h, t, size) = zombies.pop_front().unwrap();
                assert_eq!(h.tag(), t, "a removed entry's handle lost its value");
                in_use -= size;
                continue;
            }
            let mut j = rng.below(CHURN_KEYS);
            while live[j].is_none() {
                j = (j + 1) % CHURN_KEYS;
            }
            let keep = rng.below(2) == 0;
            remove(j, &mut live, &mut zombies, &mut in_use, keep);
            live_count -= 1;
        }

        let key = churn_key(i);
        let handle: Box<dyn HeldValue> = with_kind!(kind, T => match store.insert::<T>(&key, T::filled(tag)) {
            Ok(h) => Box::new(h),
            Err(e) => panic!(
                "cycle {cycle}: creating {key} ({} bytes) with {in_use} of {capacity} bytes \
                 in use ({live_count} live entries, {} held after removal): {e}",
                sizes[kind],
                zombies.len(),
            ),
        });
        creates += 1;
        in_use += sizes[kind];
        live_count += 1;
        peak = peak.max(in_use);
        // Keep a handle on one entry in four; write through one in eight.
        let mut tag = tag;
        if rng.below(8) == 0 {
            tag |= 1 << 63;
            handle.retag(tag);
        }
        let handle = (rng.below(4) == 0).then_some(handle);
        live[i] = Some(Live { kind, tag, handle });

        if (cycle + 1) % 1000 == 0 {
            if let Err(e) = store.check() {
                panic!("cycle {}: {e}", cycle + 1);
            }
            assert_eq!(store.len().unwrap(), live_count, "cycle {}", cycle + 1);
            // Blocks may be up to 127 bytes larger than needed (a remainder
            // too small to split off), never smaller, and nothing leaks.
            let used = capacity - store.free_bytes().unwrap();
            let blocks = live_count + zombies.len();
            assert!(
                used >= in_use && used <= in_use + 127 * blocks,
                "cycle {}: {used} bytes used by {blocks} entries of {in_use} bytes",
                cycle + 1
            );
        }
    }

    // Empty it: every byte comes back.
    for (h, tag, _) in zombies.drain(..) {
        assert_eq!(h.tag(), tag);
    }
    for (i, slot) in live.iter_mut().enumerate() {
        if let Some(e) = slot.take() {
            let key = churn_key(i);
            let got = with_kind!(e.kind, T => store.get::<T>(&key).unwrap().tag());
            assert_eq!(got, e.tag);
            store.remove(&key).unwrap();
            drop(e.handle);
        }
    }
    let elapsed = started.elapsed();
    assert!(store.is_empty().unwrap());
    assert!(store.entries().unwrap().is_empty());
    assert_eq!(store.free_bytes().unwrap(), store.capacity());
    store.check().unwrap();
    // The whole capacity is one piece again.
    let span = capacity - 4096;
    let mut fill = Vec::new();
    for n in 0..span / sizes[4] {
        fill.push(
            store
                .insert(&churn_key(n), V4000::filled(n as u64))
                .unwrap(),
        );
    }
    drop(fill);
    println!(
        "churn: {creates} creates, {removes} removes ({removed_held} while held), \
         peak {peak} of {capacity} bytes, in {elapsed:.2?}"
    );
}

/// A small store's directory has few buckets, so keys collide, probe runs
/// wrap around the table's end and removals move entries back in their
/// runs: every key must still be found exactly when it is there.
#[test]
fn a_small_store_under_churn_finds_exactly_the_keys_it_holds() {
    const KEYS: usize = 48;
    const OPS: usize = 20_000;
    let seg = Segment::new("small-churn");
    let store = fixed_store(seg.name(), 4096);
    let key = |i: usize| format!("k{i:02}");
    let each = footprint(&key(0), 0u64);
    let room = store.capacity() / each;
    let mut model: Vec<Option<u64>> = vec![None; KEYS];
    let mut rng = Lcg(42);
    let (mut full, mut made) = (0usize, 0usize);
    for op in 0..OPS {
        let i = rng.below(KEYS);
        let k = key(i);
        let held = model.iter().flatten().count();
        match rng.below(3) {
            0 => match (store.insert::<u64>(&k, op as u64), model[i]) {
                (Ok(_), None) => {
                    model[i] = Some(op as u64);
                    made += 1;
                }
                (Err(Error::AlreadyExists { .. }), Some(_)) => {}
                (Err(Error::StoreFull { .. }), None) if held >= room - 1 => full += 1,
                (got, want) => panic!(
                    "op {op}: insert {k} with {held} of {room} entries, expected {}: {:?}",
                    if want.is_some() {
                        "AlreadyExists"
                    } else {
                        "Ok"
                    },
                    got.map(|h| h.snapshot())
                ),
            },
            1 => match (store.remove(&k), model[i]) {
                (Ok(()), Some(_)) => model[i] = None,
                (Err(Error::NotFound { .. }), None) => {}
                (got, want) => panic!("op {op}: remove {k} (holding {want:?}): {got:?}"),
            },
            _ => match (store.get::<u64>(&k), model[i]) {
                (Ok(h), Some(v)) => assert_eq!(h.snapshot().unwrap(), v, "op {op}: {k}"),
                (Err(Error::NotFound { .. }), None) => {}
                (got, want) => panic!(
                    "op {op}: get {k} (holding {want:?}): {:?}",
                    got.map(|h| h.snapshot())
                ),
            },
        }
        if let Err(e) = store.check() {
            panic!("op {op}: {e}");
        }
        if op % 97 == 0 {
            for (j, v) in model.iter().enumerate() {
                assert_eq!(
                    store.contains(&key(j)).unwrap(),
                    v.is_some(),
                    "op {op}: {}",
                    key(j)
                );
            }
            assert_eq!(store.len().unwrap(), model.iter().flatten().count());
        }
    }
    assert!(full > 100, "the store was full only {full} times");
    assert!(made > 1000, "only {made} entries were made");
    for (j, v) in model.iter().enumerate() {
        if v.is_some() {
            store.remove(&key(j)).unwrap();
        }
    }
    assert_eq!(store.free_bytes().unwrap(), store.capacity());
    store.check().unwrap();
}

// ===========================================================================
// 5. Removing an entry that handles hold

#[test]
fn a_removed_entry_lives_on_in_its_handles_until_the_last_is_dropped() {
    let seg = Segment::new("remove-held");
    let store = Store::create(seg.name(), 1 << 16).unwrap();
    let empty = store.free_bytes().unwrap();
    assert_eq!(empty, store.capacity());

    let old = store.insert::<u64>("k", 1).unwrap();
    let old_too = store.get::<u64>("k").unwrap();
    let other = Store::open(seg.name()).unwrap();
    let old_elsewhere = other.get::<u64>("k").unwrap();
    // Each store handle holding entries has a hold list in the store.
    let lists = 2 * common::HOLD_LIST;
    let one = empty - store.free_bytes().unwrap() - lists;
    let g = store.generation();

    store.remove("k").unwrap();
    assert_eq!(store.generation(), g + 1);
    assert!(matches!(store.get::<u64>("k"), Err(Error::NotFound { .. })));
    assert!(matches!(other.get::<u64>("k"), Err(Error::NotFound { .. })));
    assert!(!store.contains("k").unwrap());
    assert_eq!(store.len().unwrap(), 0);
    assert!(store.entries().unwrap().is_empty());
    assert!(matches!(store.remove("k"), Err(Error::NotFound { .. })));

    // The handles still work, on the removed entry, and see each other.
    *old.lock().unwrap() += 10;
    assert_eq!(old_too.snapshot().unwrap(), 11);
    assert_eq!(old_elsewhere.snapshot().unwrap(), 11);
    assert_eq!(
        store.free_bytes().unwrap(),
        empty - one - lists,
        "a held entry's space is not free"
    );

    // The key is free for a new entry, of another type.
    let new = store.insert("k", Point { x: 1.0, y: 2.0 }).unwrap();
    let both = store.free_bytes().unwrap();
    assert!(both < empty - one);
    assert_eq!(
        other.get::<Point>("k").unwrap().snapshot().unwrap(),
        Point { x: 1.0, y: 2.0 }
    );
    *old.lock().unwrap() += 1;
    assert_eq!(old_elsewhere.snapshot().unwrap(), 12);
    assert_eq!(new.snapshot().unwrap(), Point { x: 1.0, y: 2.0 });
    store.check().unwrap();

    // Space comes back when the last handle goes, whichever store handle
    // it came from.
    drop(old);
    drop(old_too);
    assert_eq!(store.free_bytes().unwrap(), both);
    assert_eq!(old_elsewhere.snapshot().unwrap(), 12);
    drop(old_elsewhere);
    assert_eq!(
        store.free_bytes().unwrap(),
        both + one,
        "the entry is free; `other`'s hold list, now empty, stays with `other`"
    );
    assert_eq!(
        other.free_bytes().unwrap(),
        both + one + common::HOLD_LIST,
        "...which frees it when asked for free space"
    );
    store.check().unwrap();

    // An entry handle outlives its Store handle, and still holds the entry.
    let held = other.get::<Point>("k").unwrap();
    drop(other);
    store.remove("k").unwrap();
    assert_eq!(held.snapshot().unwrap(), Point { x: 1.0, y: 2.0 });
    held.lock().unwrap().x = 5.0;
    assert_eq!(held.snapshot().unwrap().x, 5.0);
    drop(new);
    assert!(store.free_bytes().unwrap() < empty);
    drop(held);
    assert_eq!(store.free_bytes().unwrap(), empty);
    store.check().unwrap();
}

// ===========================================================================
// 6. The list of entries

#[test]
fn entries_lists_every_key_with_its_type_size_and_generation() {
    let seg = Segment::new("entries");
    let store = Store::create(seg.name(), 1 << 16).unwrap();
    assert!(store.entries().unwrap().is_empty());
    let count = store.insert::<u64>("count", 0).unwrap();
    let origin = store.insert("geo/origin", Point::default()).unwrap();
    store.insert("stats", Stats::default()).unwrap();
    store.insert("page", V4000::filled(0)).unwrap();
    for _ in 0..3 {
        *count.lock().unwrap() += 1;
    }
    origin.lock().unwrap().x = 1.0;

    let guard = origin.lock().unwrap();
    let mut list = store.entries().unwrap();
    list.sort_by(|a, b| a.key.cmp(&b.key));
    let keys: Vec<&str> = list.iter().map(|e| e.key.as_str()).collect();
    assert_eq!(keys, ["count", "geo/origin", "page", "stats"]);
    let expect = [
        ("u64", 8, u64::FINGERPRINT, 3),
        ("Point", 16, Point::FINGERPRINT, 1),
        ("V4000", 4000, V4000::FINGERPRINT, 0),
        ("Stats", 16, Stats::FINGERPRINT, 0),
    ];
    for (e, (type_name, size, fingerprint, generation)) in list.iter().zip(expect) {
        assert_eq!(e.type_name, type_name, "{e:?}");
        assert_eq!(e.size, size, "{e:?}");
        assert_eq!(e.fingerprint, fingerprint, "{e:?}");
        assert_eq!(e.generation, generation, "{e:?}");
        assert_eq!(e.locked, e.key == "geo/origin", "{e:?}");
        assert!(!e.poisoned, "{e:?}");
    }
    drop(guard);

    store.remove("stats").unwrap();
    store.remove("count").unwrap();
    let mut keys: Vec<String> = store
        .entries()
        .unwrap()
        .into_iter()
        .map(|e| e.key)
        .collect();
    keys.sort();
    assert_eq!(keys, ["geo/origin", "page"]);
    // The removed entry's handle still works, but it is not listed.
    *count.lock().unwrap() += 1;
    assert_eq!(store.entries().unwrap().len(), 2);
    assert_eq!(store.len().unwrap(), 2);
    assert!(store.entries().unwrap().iter().all(|e| !e.locked));
    store.check().unwrap();
}

// ===========================================================================
// 7. Backends

/// The same round trip on any backend: create, fill, open a second
/// handle, see the values, reopen with open_or_create (the capacity stays),
/// unlink.
fn backend_round_trip<L: IntoLocation + Copy>(at: L) {
    let store = Store::create(at, 8192).unwrap();
    let capacity = store.capacity();
    assert!(capacity >= 8192);
    store.insert::<u64>("jobs", 1).unwrap();
    let origin = store.insert("origin", Point { x: 3.0, y: 4.0 }).unwrap();
    store.insert("page", V4000::filled(7)).unwrap();
    assert!(matches!(
        Store::create(at, 8192),
        Err(Error::AlreadyExists { .. })
    ));

    let other = Store::open(at).unwrap();
    assert_eq!(other.name(), store.name());
    assert_eq!(other.capacity(), capacity);
    *other.get::<u64>("jobs").unwrap().lock().unwrap() += 1;
    assert_eq!(store.get::<u64>("jobs").unwrap().snapshot().unwrap(), 2);
    other.get::<Point>("origin").unwrap().lock().unwrap().y = 5.0;
    assert_eq!(origin.snapshot().unwrap(), Point { x: 3.0, y: 5.0 });
    assert_eq!(
        other.get::<V4000>("page").unwrap().snapshot().unwrap(),
        V4000::filled(7)
    );
    drop((store, other, origin));

    // An existing store keeps its capacity and entries, whatever
    // open_or_create asks for.
    let again = Store::open_or_create(at, 1 << 20).unwrap();
    assert_eq!(again.capacity(), capacity);
    assert_eq!(again.len().unwrap(), 3);
    assert_eq!(again.get::<u64>("jobs").unwrap().snapshot().unwrap(), 2);
    again.check().unwrap();
    drop(again);

    Store::unlink(at).unwrap();
    assert!(matches!(Store::open(at), Err(Error::NotFound { .. })));
    // open_or_create of nothing creates, with the capacity asked for.
    let fresh = Store::open_or_create(at, 4096).unwrap();
    assert!(fresh.is_empty().unwrap());
    assert!(fresh.capacity() >= 4096 && fresh.capacity() < capacity);
    drop(fresh);
    Store::unlink(at).unwrap();
}

#[test]
fn a_posix_store_round_trips() {
    let seg = Segment::new("posix");
    backend_round_trip(seg.name());
    assert!(!seg.exists());
}

#[test]
fn a_system_v_store_round_trips() {
    let key = new_key();
    backend_round_trip(key.key());
}

#[test]
fn a_file_store_round_trips_and_survives_in_its_file() {
    let file = TempFile::new("file");
    backend_round_trip(file.path());
    assert!(!file.path().exists(), "unlink removed the file");

    // What a file store holds is in the file.
    let store = Store::create(file.path(), 4096).unwrap();
    store.insert::<u64>("boots", 3).unwrap();
    drop(store);
    assert!(file.path().is_file());
    let store = Store::open(file.path()).unwrap();
    assert_eq!(store.get::<u64>("boots").unwrap().snapshot().unwrap(), 3);
}

#[test]
fn store_options_set_the_mode_and_remove_on_drop() {
    let seg = Segment::new("options");
    let store = SharedOptions::new()
        .mode(0o640)
        .remove_on_drop(true)
        .create_store(seg.name(), 4096)
        .unwrap();
    store.insert::<u64>("x", 1).unwrap();
    let mode = std::fs::metadata(seg.path()).unwrap().permissions().mode();
    assert_eq!(mode & 0o777, 0o640);
    let other = SharedOptions::new().open_store(seg.name()).unwrap();
    assert_eq!(other.get::<u64>("x").unwrap().snapshot().unwrap(), 1);
    drop(other);
    assert!(
        seg.exists(),
        "a handle without remove_on_drop leaves the name"
    );
    drop(store);
    assert!(!seg.exists(), "remove_on_drop unlinks the name");

    let again = SharedOptions::new()
        .open_or_create_store(seg.name(), 4096)
        .unwrap();
    assert!(again.is_empty().unwrap(), "a new store, not the old one");
}

// ===========================================================================
// 8. Threads

#[test]
fn threads_sharing_a_store_lose_no_increments() {
    const THREADS: usize = 8;
    const ROUNDS: u64 = 2000;
    const SHARED_KEYS: u64 = 4;
    let seg = Segment::new("threads");
    let store = Store::create(seg.name(), 1 << 16).unwrap();
    let start = Arc::new(Barrier::new(THREADS));
    let workers: Vec<_> = (0..THREADS)
        .map(|t| {
            // Half the threads share this handle, half open their own.
            let mine = if t % 2 == 0 {
                store.clone()
            } else {
                Store::open(seg.name()).unwrap()
            };
            let start = Arc::clone(&start);
            std::thread::spawn(move || {
                start.wait();
                for r in 0..ROUNDS {
                    let key = format!("shared/{}", (r + t as u64) % SHARED_KEYS);
                    let shared = mine.get_or_create::<u64>(&key, 0).unwrap();
                    *shared.lock().unwrap() += 1;
                    let own = mine
                        .get_or_create(&format!("thread/{t}"), Stats::default())
                        .unwrap();
                    let mut g = own.lock().unwrap();
                    g.requests += 1;
                    g.workers = t as u16;
                }
            })
        })
        .collect();
    for w in workers {
        w.join().expect("a worker panicked");
    }

    let per_key = THREADS as u64 * ROUNDS / SHARED_KEYS;
    for k in 0..SHARED_KEYS {
        let c = store.get::<u64>(&format!("shared/{k}")).unwrap();
        assert_eq!(c.snapshot().unwrap(), per_key, "shared/{k}");
        assert_eq!(c.generation(), per_key, "shared/{k}");
    }
    for t in 0..THREADS {
        let s = store
            .get::<Stats>(&format!("thread/{t}"))
            .unwrap()
            .snapshot()
            .unwrap();
        assert_eq!(s.requests, ROUNDS, "thread/{t}");
        assert_eq!(s.workers, t as u16);
    }
    assert_eq!(store.len().unwrap(), SHARED_KEYS as usize + THREADS);
    store.check().unwrap();
    // Every entry handle is gone: removing everything frees everything.
    for e in store.entries().unwrap() {
        store.remove(&e.key).unwrap();
    }
    assert_eq!(store.free_bytes().unwrap(), store.capacity());
}

#[test]
fn threads_creating_and_removing_at_once_keep_the_store_consistent() {
    const THREADS: usize = 8;
    const ROUNDS: usize = 1000;
    let seg = Segment::new("threads-churn");
    let store = Store::create(seg.name(), 1 << 20).unwrap();
    let workers: Vec<_> = (0..THREADS)
        .map(|t| {
            let mine = store.clone();
            std::thread::spawn(move || {
                let mut rng = Lcg(t as u64);
                for r in 0..ROUNDS {
                    // Even keys hold a V256, odd ones a V64.
                    let k = rng.below(16);
                    let key = format!("t{t}/{k}");
                    let tag = (t * ROUNDS + r) as u64;
                    let made: Box<dyn HeldValue> = match (rng.below(3), k % 2) {
                        (1, _) => {
                            match mine.remove(&key) {
                                Ok(()) | Err(Error::NotFound { .. }) => {}
                                Err(e) => panic!("{e}"),
                            }
                            continue;
                        }
                        (0, 0) => Box::new(mine.get_or_create(&key, V256::filled(tag)).unwrap()),
                        (0, _) => Box::new(mine.get_or_create(&key, V64::filled(tag)).unwrap()),
                        (_, 0) => match mine.insert(&key, V256::filled(tag)) {
                            Ok(h) => Box::new(h),
                            Err(Error::AlreadyExists { .. }) => continue,
                            Err(e) => panic!("{e}"),
                        },
                        (_, _) => match mine.insert(&key, V64::filled(tag)) {
                            Ok(h) => Box::new(h),
                            Err(Error::AlreadyExists { .. }) => continue,
                            Err(e) => panic!("{e}"),
                        },
                    };
                    // Only this thread writes its keys: the value is a tag
                    // it wrote, never another entry's bytes.
                    let seen = made.tag();
                    assert!(
                        seen / ROUNDS as u64 == t as u64 && seen <= tag,
                        "{key} holds tag {seen}"
                    );
                    made.retag(tag);
                }
            })
        })
        .collect();
    for w in workers {
        w.join().expect("a worker panicked");
    }
    store.check().unwrap();
    for e in store.entries().unwrap() {
        store.remove(&e.key).unwrap();
    }
    assert_eq!(store.free_bytes().unwrap(), store.capacity());
    store.check().unwrap();
}

// ===========================================================================
// 9. Handle slots

/// Store handles that can be open at once, in all processes.
const HANDLE_SLOTS: usize = 4096;

#[test]
fn four_thousand_store_handles_can_be_open_and_the_next_is_refused() {
    let seg = Segment::new("slots");
    let mut handles = vec![Store::create(seg.name(), 4096).unwrap()];
    for _ in 1..HANDLE_SLOTS {
        handles.push(Store::open(seg.name()).unwrap());
    }
    let refused = failure(Store::open(seg.name()));
    let text = refused.to_string();
    match refused {
        Error::HandleLimit { ref name, limit } => {
            assert_eq!(limit, HANDLE_SLOTS);
            assert!(name.contains(seg.name()), "{name}");
        }
        ref e => panic!("expected HandleLimit, got {e:?}"),
    }
    assert!(text.contains("4096") && text.contains("Clone"), "{text}");
    assert!(matches!(
        Store::open_or_create(seg.name(), 4096),
        Err(Error::HandleLimit { .. })
    ));

    // Clones share their handle's slot.
    let clones: Vec<Store> = (0..100).map(|_| handles[7].clone()).collect();
    clones[99].insert::<u64>("via-clone", 1).unwrap();
    assert_eq!(
        handles[0]
            .get::<u64>("via-clone")
            .unwrap()
            .snapshot()
            .unwrap(),
        1
    );
    drop(clones);

    // Every handle holds an entry: each has a hold list in the store.
    let held: Vec<_> = handles[..8]
        .iter()
        .map(|h| h.get::<u64>("via-clone").unwrap())
        .collect();
    handles[0].check().unwrap();
    drop(held);

    // A dropped handle gives its slot back, even one holding entries.
    let held = handles[HANDLE_SLOTS - 1].get::<u64>("via-clone").unwrap();
    drop(handles.pop());
    drop(held);
    handles.push(Store::open(seg.name()).unwrap());
    assert!(matches!(
        Store::open(seg.name()),
        Err(Error::HandleLimit { .. })
    ));
    handles.truncate(1);
    let more: Vec<Store> = (1..HANDLE_SLOTS)
        .map(|_| Store::open(seg.name()).unwrap())
        .collect();
    drop(more);
    handles[0].check().unwrap();
}

/// A store made by a build of the previous layout (64 handle slots, a
/// mask of holders in each entry: format word `ST01`, in the header's
/// fingerprint) is refused as another layout, not misread.
#[test]
fn a_store_of_the_previous_layout_is_refused() {
    use std::os::unix::fs::FileExt;
    let seg = Segment::new("old-layout");
    drop(Store::create(seg.name(), 4096).unwrap());
    let old = shmstore::__private::Fingerprint::new()
        .str("shmstore::Store")
        .u64(0x5354_3031)
        .finish();
    let file = std::fs::OpenOptions::new()
        .write(true)
        .open(seg.path())
        .unwrap();
    file.write_all_at(&old.to_ne_bytes(), 32).unwrap();
    match failure(Store::open(seg.name())) {
        Error::LayoutMismatch {
            found_fingerprint, ..
        } => assert_eq!(found_fingerprint, old),
        e => panic!("expected LayoutMismatch, got {e:?}"),
    }
}

#[test]
fn a_refused_open_does_not_remove_the_store() {
    let seg = Segment::new("slots-remove");
    let first = Store::create(seg.name(), 4096).unwrap();
    first.insert::<u64>("kept", 5).unwrap();
    let handles: Vec<Store> = (1..HANDLE_SLOTS)
        .map(|_| Store::open(seg.name()).unwrap())
        .collect();
    assert!(matches!(
        SharedOptions::new()
            .remove_on_drop(true)
            .open_store(seg.name()),
        Err(Error::HandleLimit { .. })
    ));
    assert!(
        seg.exists(),
        "an open that failed with HandleLimit unlinked the store it did not get"
    );
    drop(handles);
    let again = Store::open(seg.name()).unwrap();
    assert_eq!(again.get::<u64>("kept").unwrap().snapshot().unwrap(), 5);
}

// ===========================================================================
// Capacity

#[test]
fn capacity_is_rounded_up_and_an_impossible_one_is_refused() {
    let seg = Segment::new("capacity");
    let store = Store::create(seg.name(), 1000).unwrap();
    assert_eq!(store.capacity(), 1024, "1000 rounded up to 64");
    assert_eq!(store.free_bytes().unwrap(), 1024);
    drop(store);
    Store::unlink(seg.name()).unwrap();

    // Too small for any entry, and not growing: a store that says so when
    // used.
    let tiny = fixed_store(seg.name(), 0);
    assert!(tiny.capacity() < 192);
    assert!(matches!(
        tiny.insert::<u64>("x", 1),
        Err(Error::StoreFull { .. })
    ));
    drop(tiny);
    Store::unlink(seg.name()).unwrap();

    match failure(Store::create(seg.name(), usize::MAX)) {
        Error::NoSpace { name, .. } => assert!(name.contains(seg.name()), "{name}"),
        e => panic!("expected NoSpace, got {e:?}"),
    }
    assert!(!seg.exists(), "a refused create leaves nothing behind");
}

// ===========================================================================
// 10. Waiting for entries to come and go

#[test]
fn a_store_waiter_wakes_when_another_handle_creates_or_removes_an_entry() {
    let seg = Segment::new("wait");
    let watcher = Store::create(seg.name(), 1 << 16).unwrap();
    let writer = Store::open(seg.name()).unwrap();
    let seen = watcher.generation();
    assert_eq!(
        watcher
            .wait_for_change(seen, Duration::from_millis(50))
            .unwrap(),
        None,
        "nothing changed"
    );

    let timeout = Duration::from_secs(10);
    let w = writer.clone();
    let inserter = std::thread::spawn(move || {
        std::thread::sleep(Duration::from_millis(50));
        // Lookups take the directory lock without changing anything: they
        // neither wake the watcher nor keep the insert from waking it.
        for _ in 0..100 {
            assert!(!w.contains("arrived").unwrap());
            assert!(w.get::<u64>("arrived").is_err());
            assert_eq!(w.len().unwrap(), 0);
        }
        std::thread::sleep(Duration::from_millis(50));
        w.insert::<u64>("arrived", 1).unwrap();
    });
    let started = Instant::now();
    let now = watcher.wait_for_change(seen, timeout).unwrap();
    let waited = started.elapsed();
    inserter.join().unwrap();
    assert_eq!(now, Some(seen + 1));
    assert!(waited < timeout / 2, "woken only after {waited:?}");
    assert!(watcher.contains("arrived").unwrap());

    // A write to an entry's value is not a directory change.
    let seen = seen + 1;
    *writer.get::<u64>("arrived").unwrap().lock().unwrap() = 2;
    assert_eq!(
        watcher
            .wait_for_change(seen, Duration::from_millis(100))
            .unwrap(),
        None
    );

    // A removal wakes too.
    let w = writer.clone();
    let remover = std::thread::spawn(move || {
        std::thread::sleep(Duration::from_millis(100));
        w.remove("arrived").unwrap();
    });
    let now = watcher.wait_for_change(seen, timeout).unwrap();
    remover.join().unwrap();
    assert_eq!(now, Some(seen + 1));
    assert!(!watcher.contains("arrived").unwrap());
    // A generation already passed returns at once.
    assert_eq!(
        watcher
            .wait_for_change(seen, Duration::from_secs(10))
            .unwrap(),
        Some(seen + 1)
    );
}

#[test]
fn an_entry_waiter_wakes_when_another_mapping_writes_it() {
    let seg = Segment::new("wait-entry");
    let a = Store::create(seg.name(), 1 << 16).unwrap();
    let b = Store::open(seg.name()).unwrap();
    let watched = a.insert("origin", Point::default()).unwrap();
    let other = a.insert::<u64>("other", 0).unwrap();
    let seen = watched.generation();
    assert_eq!(seen, 0);

    let timeout = Duration::from_secs(10);
    let writer = std::thread::spawn(move || {
        std::thread::sleep(Duration::from_millis(50));
        // Writes to another entry do not wake a watcher of this one.
        *b.get::<u64>("other").unwrap().lock().unwrap() += 1;
        std::thread::sleep(Duration::from_millis(50));
        b.get::<Point>("origin").unwrap().lock().unwrap().x = 1.0;
    });
    let started = Instant::now();
    let now = watched.wait_for_change(seen, timeout).unwrap();
    let waited = started.elapsed();
    writer.join().unwrap();
    assert_eq!(now, Some(1));
    assert!(waited < timeout / 2, "woken only after {waited:?}");
    assert_eq!(watched.snapshot().unwrap().x, 1.0);
    assert_eq!(other.generation(), 1);
    assert_eq!(
        watched
            .wait_for_change(1, Duration::from_millis(50))
            .unwrap(),
        None
    );
}

// ===========================================================================
// 11. Poisoning

#[test]
fn a_panic_holding_an_entry_poisons_that_entry_only() {
    let seg = Segment::new("poison");
    let store = Store::create(seg.name(), 1 << 16).unwrap();
    let a = store.insert::<u64>("a", 1).unwrap();
    let b = store.insert::<u64>("b", 2).unwrap();

    let s = store.clone();
    let panicked = std::thread::spawn(move || {
        let a = s.get::<u64>("a").unwrap();
        let mut g = a.lock().unwrap();
        *g = 100;
        panic!("deliberate panic while holding entry `a`");
    })
    .join();
    assert!(panicked.is_err());

    assert!(a.is_poisoned());
    let g = a.lock().expect_err("entry `a` is poisoned").into_inner();
    assert_eq!(*g, 100, "the data is there, as with std::sync::Mutex");
    drop(g);
    assert!(a.snapshot().is_err());
    // Through a new handle, and a new mapping, as well.
    let other = Store::open(seg.name()).unwrap();
    assert!(other.get::<u64>("a").unwrap().lock().is_err());

    // Other entries and the directory are unaffected.
    assert!(!b.is_poisoned());
    *b.lock().unwrap() += 1;
    assert_eq!(b.snapshot().unwrap(), 3);
    store.insert::<u64>("c", 3).unwrap();
    store.remove("c").unwrap();
    let list = store.entries().unwrap();
    let poisoned: Vec<&str> = list
        .iter()
        .filter(|e| e.poisoned)
        .map(|e| e.key.as_str())
        .collect();
    assert_eq!(poisoned, ["a"]);
    store.check().unwrap();

    a.clear_poison();
    assert_eq!(*a.lock().unwrap(), 100);
    assert!(store.entries().unwrap().iter().all(|e| !e.poisoned));
}

/// A store made by a build before the 8-byte buckets and the word-wise key
/// hash (format word "ST01"), or before stores grew ("ST02"), says so in
/// its header's fingerprint: it is refused at `open`, by a `Store` and a
/// `StoreReader`, as of another layout, never read with the wrong layout.
#[test]
fn a_store_of_the_earlier_format_is_refused_at_open() {
    use std::os::unix::fs::FileExt;
    for format in [0x5354_3031u64, 0x5354_3032] {
        let seg = Segment::new("store-old-format");
        drop(Store::create(seg.name(), 16 * 1024).unwrap());
        let old = shmstore::__private::Fingerprint::new()
            .str("shmstore::Store")
            .u64(format)
            .finish();
        std::fs::OpenOptions::new()
            .write(true)
            .open(seg.path())
            .unwrap()
            .write_all_at(&old.to_ne_bytes(), 32)
            .unwrap();
        match Store::open(seg.name()) {
            Err(Error::LayoutMismatch {
                found_fingerprint, ..
            }) => assert_eq!(found_fingerprint, old),
            other => panic!("an old store opened: {other:?}"),
        }
        assert!(matches!(
            shmstore::StoreReader::open(seg.name()),
            Err(Error::LayoutMismatch { .. })
        ));
    }
}
