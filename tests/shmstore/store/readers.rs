//! `StoreReader`: a store opened for reading only.
//!
//! 1. Within one process: look-ups, listings, types, errors, waiting for
//!    changes, no handle slot taken.
//! 2. An entry removed (or migrated) under its reader: the reader says so
//!    instead of handing out another entry's bytes.
//! 3. Another user (uid 65534) with read permission only reads the store
//!    and sees the owner's writes; the writable open is refused.
//! 4. A process inserts and removes entries, the same keys with other
//!    types, while a reader looks them up: it never gets a wrong value or
//!    a wrong type; and while a reader lists them: it never finds the
//!    store damaged.

use crate::common;

use std::os::unix::fs::MetadataExt;
use std::time::{Duration, Instant};

use common::{field, is_root, outcome, role, say, variant, Kid, Segment};
use shmstore::{Error, Shareable, SharedOptions, Store, StoreReader};

/// A value whose words say which key and which type wrote it.
#[derive(Shareable, Clone, Copy, Debug, PartialEq, Eq)]
#[repr(C)]
struct Tagged {
    key: u64,
    check: u64,
    more: [u64; 3],
}

impl Tagged {
    fn of(key: u64) -> Tagged {
        Tagged {
            key,
            check: !key,
            more: [key ^ 0x5555, key.rotate_left(7), 3],
        }
    }
}

/// What a `u64` entry of key number `k` holds.
fn plain_of(k: u64) -> u64 {
    0xA5A5_0000_0000 | k
}

/// The entry point of child processes (does nothing in a normal test run).
#[test]
fn child_entry() {
    let Some(args) = role() else { return };
    let arg = |i: usize| args[i].as_str();
    let code = match arg(0) {
        "nobody" => as_nobody(arg(1)),
        "churn" => churn(arg(1), arg(2).parse().unwrap()),
        other => panic!("unknown role {other}"),
    };
    std::process::exit(code);
}

// ===========================================================================
// 1. Within one process

#[test]
fn a_reader_looks_up_lists_and_waits_without_a_handle_slot() {
    let seg = Segment::new("store-reader");
    let store = SharedOptions::new()
        .wake_read_only(true)
        .create_store(seg.name(), 64 * 1024)
        .unwrap();
    let jobs = store.insert::<u64>("jobs", 5).unwrap();
    store.insert("tag", Tagged::of(9)).unwrap();

    // More readers than a store has handle slots: readers take none.
    let readers: Vec<StoreReader> = (0..100)
        .map(|_| StoreReader::open(seg.name()).unwrap())
        .collect();
    let r = &readers[99];
    assert_eq!(r.name(), seg.name());
    assert_eq!(r.capacity(), store.capacity());
    assert_eq!(r.len().unwrap(), 2);
    assert!(r.contains("jobs").unwrap() && !r.contains("nothing").unwrap());
    let mut keys: Vec<String> = r.entries().unwrap().into_iter().map(|e| e.key).collect();
    keys.sort();
    assert_eq!(keys, ["jobs", "tag"]);
    assert_eq!(r.entries().unwrap(), store.entries().unwrap());
    r.check().unwrap();
    let other = Store::open(seg.name()).unwrap();
    drop(other);

    // Values, writes, types, errors.
    let j = r.get::<u64>("jobs").unwrap();
    assert_eq!(j.name(), format!("{}/jobs", seg.name()));
    assert_eq!(j.snapshot().unwrap(), 5);
    *jobs.lock().unwrap() = 6;
    assert_eq!(j.snapshot_with_generation().unwrap(), (6, 1));
    assert_eq!(
        r.get::<Tagged>("tag").unwrap().snapshot().unwrap(),
        Tagged::of(9)
    );
    assert!(matches!(
        r.get::<u32>("jobs"),
        Err(Error::LayoutMismatch { .. })
    ));
    match r.get::<u64>("nothing") {
        Err(Error::NotFound { name }) => assert_eq!(name, format!("{}/nothing", seg.name())),
        other => panic!("{other:?}"),
    }
    assert!(matches!(
        r.contains("no spaces"),
        Err(Error::InvalidName { .. })
    ));

    // The entry's waits, and the directory's.
    let seen = j.generation();
    let writer = std::thread::spawn(move || {
        std::thread::sleep(Duration::from_millis(50));
        *jobs.lock().unwrap() = 7;
        jobs
    });
    assert_eq!(
        j.wait_for_change(seen, Duration::from_secs(10)).unwrap(),
        Some(seen + 1)
    );
    assert_eq!(j.snapshot().unwrap(), 7);
    let _jobs = writer.join().unwrap();
    let g = r.generation();
    assert_eq!(
        r.wait_for_change(g, Duration::from_millis(10)).unwrap(),
        None
    );
    store.insert::<u32>("new", 1).unwrap();
    assert_eq!(
        r.wait_for_change(g, Duration::from_secs(10)).unwrap(),
        Some(g + 1)
    );
    assert_eq!(r.generation(), store.generation());

    // The async form of the directory's wait.
    let g = r.generation();
    let s = store.clone();
    let inserter = std::thread::spawn(move || {
        std::thread::sleep(Duration::from_millis(50));
        s.insert::<u32>("later", 2).unwrap();
    });
    assert_eq!(futures::executor::block_on(r.changed(g)).unwrap(), g + 1);
    inserter.join().unwrap();
}

#[cfg(feature = "stream")]
#[test]
fn a_reader_streams_the_directory_generations() {
    use futures::StreamExt;
    let seg = Segment::new("store-reader-stream");
    let store = SharedOptions::new()
        .wake_read_only(true)
        .create_store(seg.name(), 16 * 1024)
        .unwrap();
    let r = StoreReader::open(seg.name()).unwrap();
    let s = store.clone();
    let inserter = std::thread::spawn(move || {
        for i in 0..3 {
            std::thread::sleep(Duration::from_millis(20));
            s.insert::<u64>(&format!("k{i}"), i).unwrap();
        }
    });
    futures::executor::block_on(async {
        let mut changes = std::pin::pin!(r.changes(0));
        let mut last = 0;
        while last < 3 {
            let g = changes.next().await.unwrap().unwrap();
            assert!(g > last, "{g} after {last}");
            last = g;
        }
    });
    inserter.join().unwrap();
    // Without wake_read_only: one item, the error.
    let quiet = Segment::new("store-reader-stream-nowake");
    let _store = Store::create(quiet.name(), 16 * 1024).unwrap();
    let r = StoreReader::open(quiet.name()).unwrap();
    futures::executor::block_on(async {
        let mut changes = std::pin::pin!(r.changes(0));
        assert!(matches!(
            changes.next().await,
            Some(Err(Error::NotWatchable { .. }))
        ));
    });
}

#[test]
fn a_reader_of_a_store_whose_writers_do_not_wake_it_cannot_wait() {
    let seg = Segment::new("store-reader-nowake");
    let store = Store::create(seg.name(), 16 * 1024).unwrap();
    store.insert::<u64>("a", 1).unwrap();
    let r = StoreReader::open(seg.name()).unwrap();
    assert!(!r.wakes());
    assert!(matches!(
        r.wait_for_change(0, Duration::from_secs(60)),
        Err(Error::NotWatchable { .. })
    ));
    // Everything else works.
    assert_eq!(r.get::<u64>("a").unwrap().snapshot().unwrap(), 1);
    assert!(matches!(
        StoreReader::open(Segment::new("store-reader-none").name()),
        Err(Error::NotFound { .. })
    ));
}

// ===========================================================================
// 2. Removed entries

#[test]
fn a_reader_of_a_removed_entry_is_told_and_never_shown_another_entry() {
    let seg = Segment::new("store-reader-removed");
    let store = Store::create(seg.name(), 16 * 1024).unwrap();
    store.insert::<u64>("a", plain_of(1)).unwrap();
    store.insert::<u64>("b", plain_of(2)).unwrap();
    let r = StoreReader::open(seg.name()).unwrap();
    let a = r.get::<u64>("a").unwrap();
    let b = r.get::<u64>("b").unwrap();

    // Other entries come and go: the reader looks again and reads on.
    store.insert::<u64>("c", 3).unwrap();
    store.remove("c").unwrap();
    assert_eq!(a.snapshot().unwrap(), plain_of(1));
    a.check().unwrap();

    store.remove("a").unwrap();
    assert!(a.snapshot().is_err(), "a removed entry reads as poisoned");
    assert!(a.is_poisoned());
    assert!(matches!(a.check(), Err(Error::NotFound { .. })));
    assert!(matches!(
        a.wait_for_change(a.generation(), Duration::from_secs(60)),
        Err(Error::NotFound { .. })
    ));
    assert!(matches!(
        futures::executor::block_on(a.changed(0)),
        Err(Error::NotFound { .. })
    ));
    let mut out = 0u64;
    assert!(a.snapshot_into(&mut out).is_err());

    // Its block is given to other entries (the store is small and the
    // sizes are alike): still refused, never their bytes as an `Ok`.
    for i in 0..40 {
        let _ = store.insert::<u64>(&format!("n{i}"), u64::MAX);
        assert!(a.snapshot().is_err());
    }
    // The key made again is a new entry: the old handle stays refused, a
    // new look-up reads it.
    let _ = store.remove("n0");
    store.insert::<u64>("a", plain_of(11)).unwrap();
    assert!(a.snapshot().is_err());
    assert_eq!(r.get::<u64>("a").unwrap().snapshot().unwrap(), plain_of(11));
    assert_eq!(b.snapshot().unwrap(), plain_of(2));
    b.check().unwrap();
    // Removed while nothing read it: a wait says so at once.
    store.remove("b").unwrap();
    assert!(matches!(
        b.wait_for_change(b.generation(), Duration::from_secs(60)),
        Err(Error::NotFound { .. })
    ));
    store.check().unwrap();
}

#[test]
fn a_reader_of_a_migrated_entry_is_told() {
    let seg = Segment::new("store-reader-migrated");
    let store = Store::create(seg.name(), 16 * 1024).unwrap();
    store.insert::<u64>("v", 4).unwrap();
    let r = StoreReader::open(seg.name()).unwrap();
    let old = r.get::<u64>("v").unwrap();
    store
        .get_or_migrate("v", Tagged::of(0), |v: u64| Tagged::of(v))
        .unwrap();
    assert!(old.snapshot().is_err());
    assert!(matches!(
        r.get::<u64>("v"),
        Err(Error::LayoutMismatch { .. })
    ));
    assert_eq!(
        r.get::<Tagged>("v").unwrap().snapshot().unwrap(),
        Tagged::of(4)
    );
}

// ===========================================================================
// 3. Another user with read permission only

/// As uid/gid 65534: the writable open, the read-only open without and
/// with `allow_foreign_owner`, the entries, then a wait for the owner's
/// write to `jobs`.
fn as_nobody(name: &str) -> i32 {
    use nix::unistd::{geteuid, setgid, setgroups, setuid, Gid, Uid};
    setgroups(&[]).unwrap();
    setgid(Gid::from_raw(65534)).unwrap();
    setuid(Uid::from_raw(65534)).unwrap();
    say(format!("euid={}", geteuid()));
    say(format!("rw={}", outcome(Store::open(name))));
    say(format!("ro={}", outcome(StoreReader::open(name))));
    let r = match SharedOptions::new()
        .allow_foreign_owner(true)
        .open_store_read_only(name)
    {
        Ok(r) => r,
        Err(e) => {
            say(format!("allowed={} {e}", variant(&e)));
            return 0;
        }
    };
    let mut keys: Vec<String> = r.entries().unwrap().into_iter().map(|e| e.key).collect();
    keys.sort();
    let jobs = r.get::<u64>("jobs").unwrap();
    let (value, seen) = jobs.snapshot_with_generation().unwrap();
    say(format!(
        "allowed=ok keys={} value={value} check={}",
        keys.join(","),
        outcome(r.check())
    ));
    match jobs.wait_for_change(seen, Duration::from_secs(20)) {
        Ok(Some(_)) => say(format!("woke value={}", jobs.snapshot().unwrap())),
        Ok(None) => say("woke timeout"),
        Err(e) => say(format!("woke error={}", variant(&e))),
    }
    0
}

#[test]
fn another_user_with_read_permission_reads_a_store() {
    if !is_root() {
        eprintln!("skipped: needs root to run a child as another user");
        return;
    }
    let seg = Segment::new("store-reader-nobody");
    let store = SharedOptions::new()
        .mode(0o644)
        .wake_read_only(true)
        .create_store(seg.name(), 64 * 1024)
        .unwrap();
    let jobs = store.insert::<u64>("jobs", 42).unwrap();
    store.insert("tag", Tagged::of(1)).unwrap();
    let md = std::fs::metadata(seg.path()).unwrap();
    assert_eq!((md.uid(), md.mode() & 0o777), (0, 0o644));

    let mut k = Kid::spawn("nobody", &[seg.name()]);
    assert_eq!(k.expect("euid="), "65534");
    assert_eq!(k.expect("rw="), "PermissionDenied");
    assert_eq!(k.expect("ro="), "ForeignOwner");
    let line = k.expect("allowed=");
    assert!(line.starts_with("ok "), "{line}");
    assert_eq!(field(&line, "keys"), "jobs,tag");
    assert_eq!(field(&line, "value"), "42");
    assert_eq!(field(&line, "check"), "ok");
    std::thread::sleep(Duration::from_millis(100));
    *jobs.lock().unwrap() = 43;
    assert_eq!(k.expect("woke"), "value=43");
    k.wait_success();
    store.check().unwrap();
}

// ===========================================================================
// 4. Look-ups while another process changes the directory

/// The keys the churning process uses.
const KEYS: u64 = 24;

/// Inserts and removes keys `k0`..`k23` at random for `ms` milliseconds,
/// each time with the other type (a `u64` or a `Tagged`), values saying
/// which key they belong to; rewrites values now and then.
fn churn(name: &str, ms: u64) -> i32 {
    let store = Store::open(name).unwrap();
    let mut seed = 0x9E37_79B9_7F4A_7C15u64 ^ u64::from(std::process::id());
    let mut next = move || {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        seed
    };
    let mut ops = 0u64;
    let end = Instant::now() + Duration::from_millis(ms);
    say("ready");
    while Instant::now() < end {
        let k = next() % KEYS;
        let key = format!("k{k}");
        match store.remove(&key) {
            Ok(()) => {}
            Err(Error::NotFound { .. }) => {
                let made = if next() % 2 == 0 {
                    store.insert(&key, plain_of(k)).map(drop)
                } else {
                    store.insert(&key, Tagged::of(k)).map(|h| {
                        // A write, committed under the lock: the same value.
                        *h.lock().unwrap() = Tagged::of(k);
                    })
                };
                match made {
                    Ok(()) | Err(Error::StoreFull { .. }) => {}
                    Err(e) => panic!("insert {key}: {e}"),
                }
            }
            Err(e) => panic!("remove {key}: {e}"),
        }
        ops += 1;
    }
    store.check().unwrap();
    say(format!("done ops={ops}"));
    0
}

#[test]
fn look_ups_during_inserts_and_removes_never_give_a_wrong_value_or_type() {
    let seg = Segment::new("store-reader-churn");
    // Small, so that freed blocks are soon given to other entries.
    let store = Store::create(seg.name(), 8 * 1024).unwrap();
    let r = StoreReader::open(seg.name()).unwrap();
    let mut k = Kid::spawn("churn", &[seg.name(), "3000"]);
    k.expect("ready");
    let (mut plain, mut tagged, mut missing, mut refused) = (0u64, 0u64, 0u64, 0u64);
    let mut held: Vec<(u64, shmstore::SharedReader<u64>)> = Vec::new();
    let mut i = 0u64;
    let end = Instant::now() + Duration::from_millis(2500);
    while Instant::now() < end {
        i += 1;
        let n = i % KEYS;
        let key = format!("k{n}");
        match r.get::<u64>(&key) {
            Ok(h) => {
                match h.snapshot() {
                    Ok(v) => {
                        assert_eq!(v, plain_of(n), "{key} as a u64");
                        plain += 1;
                    }
                    Err(_) => refused += 1,
                }
                if held.len() < 8 {
                    held.push((n, h));
                }
            }
            Err(Error::NotFound { .. }) | Err(Error::LayoutMismatch { .. }) => missing += 1,
            Err(e) if busy(&e) => {}
            Err(e) => panic!("get {key}: {e}"),
        }
        match r.get::<Tagged>(&key) {
            Ok(h) => match h.snapshot() {
                Ok(v) => {
                    assert_eq!(v, Tagged::of(n), "{key} as a Tagged");
                    tagged += 1;
                }
                Err(_) => refused += 1,
            },
            Err(Error::NotFound { .. }) | Err(Error::LayoutMismatch { .. }) => missing += 1,
            Err(e) if busy(&e) => {}
            Err(e) => panic!("get {key}: {e}"),
        }
        // Handles kept across changes: their entry's value, or refused.
        for (n, h) in &held {
            if let Ok(v) = h.snapshot() {
                assert_eq!(v, plain_of(*n), "a kept handle of k{n}");
            }
        }
        held.retain(|(_, h)| h.check().is_ok());
        if i % 64 == 0 {
            match r.entries() {
                Ok(list) => {
                    for e in list {
                        let n: u64 = e.key[1..].parse().unwrap();
                        assert!(n < KEYS, "{}", e.key);
                    }
                }
                // A listing needs one quiet moment as long as itself,
                // which constant changes may not leave.
                Err(e) if busy(&e) => {}
                Err(e) => panic!("entries: {e}"),
            }
        }
    }
    let done = k.expect("done");
    k.wait_success();
    // Once the changes stop, the listing answers.
    for e in r.entries().unwrap() {
        let n: u64 = e.key[1..].parse().unwrap();
        assert!(n < KEYS, "{}", e.key);
    }
    r.check().unwrap();
    store.check().unwrap();
    println!(
        "{i} rounds against {done}: {plain} u64 and {tagged} Tagged values right, \
         {missing} absent or of the other type, {refused} removed under the reader"
    );
    assert!(
        plain > 0 && tagged > 0 && missing > 0,
        "the keys never changed"
    );
}

/// A reader lists the entries without pause while another process inserts
/// and removes them: every listing is of keys the process uses, with one of
/// its two types, and none finds the store damaged.
///
/// Inserts split free blocks before their change of the directory begins,
/// and removed entries are merged into free blocks when their last handle
/// lets go, so a listing (a walk of the heap by block sizes) can overlap
/// those stores without the directory's generation moving. Each is one
/// release store of a size, which the walk acquires: on CPUs that reorder
/// stores or loads (ARM, not x86), a walk without that ordering could read
/// a new size and the stale bytes where the block it leads to now starts,
/// and report the store as corrupt. Only such hardware can show that
/// ordering missing; everywhere, the test shows listings right under churn.
#[test]
fn listings_during_inserts_and_removes_never_find_the_store_damaged() {
    let seg = Segment::new("store-reader-list-churn");
    // Small, so that blocks are split and merged all the time.
    let store = Store::create(seg.name(), 8 * 1024).unwrap();
    let r = StoreReader::open(seg.name()).unwrap();
    let mut k = Kid::spawn("churn", &[seg.name(), "2000"]);
    k.expect("ready");
    let (mut listings, mut listed, mut busy_ones) = (0u64, 0u64, 0u64);
    let end = Instant::now() + Duration::from_millis(2000);
    while Instant::now() < end {
        match r.entries() {
            Ok(list) => {
                listings += 1;
                for e in list {
                    let n: u64 = e.key[1..].parse().unwrap();
                    assert!(n < KEYS, "{}", e.key);
                    assert!(
                        [u64::TYPE_NAME, Tagged::TYPE_NAME].contains(&e.type_name.as_str()),
                        "{}: {}",
                        e.key,
                        e.type_name
                    );
                    listed += 1;
                }
            }
            Err(e) if busy(&e) => busy_ones += 1,
            Err(e) => panic!("entries: {e}"),
        }
    }
    let done = k.expect("done");
    k.wait_success();
    store.check().unwrap();
    println!(
        "{listings} listings ({listed} entries listed, {busy_ones} without a quiet moment) \
         against {done}"
    );
    assert!(listings > 0, "no listing found a quiet moment");
}

/// `Store::contains` reads the directory without the lock while another
/// process inserts and removes entries: keys present throughout are
/// always found, keys never made never are, and the churned keys are seen
/// both ways; `get` of a churned key gives its own value or nothing.
#[test]
fn store_look_ups_without_the_lock_are_right_during_inserts_and_removes() {
    let seg = Segment::new("store-contains-churn");
    let store = Store::create(seg.name(), 16 * 1024).unwrap();
    for i in 0..4u64 {
        store.insert::<u64>(&format!("stay{i}"), i).unwrap();
    }
    let mut k = Kid::spawn("churn", &[seg.name(), "2500"]);
    k.expect("ready");
    let (mut found, mut absent, mut values) = (0u64, 0u64, 0u64);
    let mut i = 0u64;
    let end = Instant::now() + Duration::from_millis(2000);
    while Instant::now() < end {
        i += 1;
        let n = i % KEYS;
        assert!(
            store.contains(&format!("stay{}", i % 4)).unwrap(),
            "stay{}",
            i % 4
        );
        assert!(!store.contains(&format!("never{}", i % 4)).unwrap());
        let key = format!("k{n}");
        if store.contains(&key).unwrap() {
            found += 1;
        } else {
            absent += 1;
        }
        if i % 8 == 0 {
            match store.get::<u64>(&key) {
                Ok(h) => {
                    assert_eq!(h.snapshot().unwrap(), plain_of(n), "{key}");
                    values += 1;
                }
                Err(Error::NotFound { .. }) | Err(Error::LayoutMismatch { .. }) => {}
                Err(e) => panic!("get {key}: {e}"),
            }
        }
    }
    let done = k.expect("done");
    k.wait_success();
    store.check().unwrap();
    println!("{i} rounds against {done}: {found} found, {absent} absent, {values} values");
    assert!(
        found > 0 && absent > 0,
        "the churned keys were seen both ways"
    );
}

/// The documented answer of a lock-free look-up that found no quiet moment
/// for a second: possible under constant changes in a slow (sanitized)
/// build, never a wrong value.
fn busy(e: &Error) -> bool {
    matches!(e, Error::Io { source, .. } if source.kind() == std::io::ErrorKind::TimedOut)
}
