//! Hostile bytes in a store: the input decides which parts of a fresh
//! store (header, directory lock, meta, handle table, buckets, every
//! block's header, key, lock, value, schema, free space) get which bytes;
//! then a program and a tool use it. Every call must return a value or a
//! typed error: a panic, a hang (the run's `-timeout`) or a crash is a
//! finding. An input whose first byte is odd damages a store that grew
//! from 1 KiB as it was filled (its sizes in the meta, its table moved
//! into a block of the heap) instead of one made at 4 KiB.

#![no_main]

use std::fmt::Debug;
use std::sync::TryLockError;
use std::time::Duration;

use libfuzzer_sys::fuzz_target;
use shmstore::inspect::{self, State};
use shmstore::{Shareable, Shared, ShmStr, ShmVec, Store, StoreReader};
use shmstore_fuzz::{
    damage, names_live_thread, names_me, sample, store_parts, u64_at, Point, Rich, Unlink, LOCK_AT,
};

/// What the creator keeps open: its store handle and a handle on an entry
/// it removed (which stays, REMOVED, while held).
struct Made {
    _store: Store,
    _held: Shared<u64>,
}

fn make(name: &str, capacity: usize) -> Made {
    let store = Store::create(name, capacity).expect("creating the store");
    drop(store.insert::<u64>("count", 42).unwrap());
    drop(store.insert::<Rich>("rich", sample()).unwrap());
    let held = store.insert::<u64>("gone", 99).unwrap();
    drop(store.insert::<u64>("spare", 1).unwrap());
    drop(
        store
            .insert::<Point>("point", Point { x: 5, y: -5 })
            .unwrap(),
    );
    let mut text = ShmStr::<16>::new();
    text.set("hostile").unwrap();
    drop(store.insert("name", text).unwrap());
    let mut list = ShmVec::<u32, 5>::new();
    list.extend_from_slice(&[1, 2, 3]).unwrap();
    drop(store.insert("vec", list).unwrap());
    store.remove("gone").unwrap();
    store.remove("spare").unwrap();
    Made {
        _store: store,
        _held: held,
    }
}

fuzz_target!(|input: &[u8]| {
    let name = shmstore_fuzz::name("store");
    let path = shmstore_fuzz::path(&name);
    let _ = Store::unlink(&name);
    let _unlink = Unlink(name.clone());
    let grown = input.first().is_some_and(|b| b & 1 == 1);
    let made = make(&name, if grown { 1024 } else { 4096 });
    let before = std::fs::read(&path).expect("the store");
    damage(&path, &store_parts(&before), input);
    let after = std::fs::read(&path).expect("the store");
    let directory = u64_at(&after, LOCK_AT);
    if names_live_thread(directory) && !names_me(directory) {
        // The store is locked by another live thread: opening it waits, as
        // it should. (A word naming this thread, which holds no lock here,
        // names no holder: the store takes it over.) Let the creator's
        // handles go with the word cleared.
        let clear = std::fs::OpenOptions::new().write(true).open(&path).unwrap();
        std::os::unix::fs::FileExt::write_all_at(&clear, &[0; 8], LOCK_AT as u64).unwrap();
        drop(made);
        return;
    }
    exercise(&name);
    drop(made);
    let report = inspect::report(name.as_str()).expect("inspect finds the store");
    render(&report);
});

fn exercise(name: &str) {
    // Read-only first: the damaged bytes as they are, before a handle that
    // may write repairs them.
    if let Ok(reader) = StoreReader::open(name) {
        let _ = reader.check();
        let _ = (reader.len(), reader.contains("count"), reader.generation());
        if let Ok(list) = reader.entries() {
            for e in list {
                match e.key.as_str() {
                    "rich" => peek::<Rich>(&reader, &e.key),
                    "point" => peek::<Point>(&reader, &e.key),
                    "name" => peek::<ShmStr<16>>(&reader, &e.key),
                    "vec" => peek::<ShmVec<u32, 5>>(&reader, &e.key),
                    other => peek::<u64>(&reader, other),
                }
            }
        }
    }
    let Ok(store) = Store::open(name) else {
        return;
    };
    let consistent = store.check().is_ok();
    // The lookup without the lock, on the bytes as they are: it answers
    // as the listing does where the store checks.
    let never = store.contains("never-made");
    if let Ok(list) = store.entries() {
        if consistent {
            // (A key a peer wrote may be no valid key: InvalidName.)
            for e in &list {
                let found = store.contains(&e.key);
                assert!(!matches!(found, Ok(false)), "{} listed, not found", e.key);
            }
            let listed = list.iter().any(|e| e.key == "never-made");
            if let Ok(found) = never {
                assert_eq!(found, listed, "a key never made");
            }
        }
        for e in list {
            match e.key.as_str() {
                "count" => visit::<u64>(&store, &e.key),
                "rich" => visit::<Rich>(&store, &e.key),
                "point" => visit::<Point>(&store, &e.key),
                "name" => visit::<ShmStr<16>>(&store, &e.key),
                "vec" => visit::<ShmVec<u32, 5>>(&store, &e.key),
                other => visit::<u64>(&store, other),
            }
        }
    }
    let fresh = store.get_or_create::<u64>("fresh", 7);
    let _other = store.insert::<Rich>("other", sample());
    let removed = store.remove("vec");
    let again = store.get_or_create::<u64>("fresh", 8);
    if let (Ok(a), Ok(b)) = (&fresh, &again) {
        assert_eq!(
            a.snapshot().ok(),
            b.snapshot().ok(),
            "two entries for one key"
        );
    }
    if let (Ok(()), Ok(found)) = (&removed, store.contains("vec")) {
        assert!(!found, "a removed key is still found");
    }
    let _ = (store.len(), store.free_bytes(), store.is_empty());
    let _ = store.wait_for_change(store.generation(), Duration::ZERO);
    if consistent {
        let after = store.check();
        assert!(after.is_ok(), "consistent before, then: {:?}", after.err());
    }
}

/// Reads entry `key` as a `T` through a read-only handle: a snapshot and
/// its checks.
fn peek<T: Shareable + Copy + Debug>(reader: &StoreReader, key: &str) {
    let Ok(h) = reader.get::<T>(key) else { return };
    let _ = format!("{:?}", h.snapshot());
    let _ = (h.check(), h.is_poisoned());
}

/// Reads entry `key` as a `T`: its lock, then a snapshot.
fn visit<T: Shareable + Copy + Debug>(store: &Store, key: &str) {
    let Ok(h) = store.get::<T>(key) else { return };
    let guard = match h.try_lock() {
        Ok(g) => g,
        Err(TryLockError::Poisoned(p)) => p.into_inner(),
        Err(TryLockError::WouldBlock) => return, // a live holder
    };
    let _ = format!("{:?}", *guard);
    drop(guard);
    // Locked and let go: no write is in progress, a snapshot is immediate.
    let _ = h.snapshot();
    let _ = h.wait_for_change(h.generation(), Duration::ZERO);
}

fn render(report: &inspect::Report) {
    let _ = format!("{report:?}");
    if let State::Store {
        entries: Ok(entries),
        ..
    } = &report.state
    {
        for e in entries {
            if let Ok(Some(s)) = &e.schema {
                let _ = format!("{s} {s:#}");
            }
            if let Some(v) = &e.value {
                let _ = (v.to_string(), v.to_json());
            }
        }
    }
}
