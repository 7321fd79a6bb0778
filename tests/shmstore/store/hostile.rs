//! Whatever bytes another process writes over a store's directory and heap,
//! every operation (of a `Store`, and of a `StoreReader` reading the
//! damaged bytes without the lock) returns a value or an error: never a
//! panic, a hang or a read outside the mapping.

use crate::common;

use std::fs::OpenOptions;
use std::os::unix::fs::FileExt;
use std::panic::{catch_unwind, AssertUnwindSafe};

use common::Segment;
use shmstore::{Error, Shareable, Store, StoreReader};

#[derive(Shareable, Clone, Copy, Debug, Default, PartialEq)]
#[repr(C)]
struct Pair {
    a: u64,
    b: u64,
}

/// A deterministic pseudo-random sequence.
struct Lcg(u64);

impl Lcg {
    fn next(&mut self) -> u64 {
        self.0 = self
            .0
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1_442_695_040_888_963_407);
        self.0 >> 17
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }
}

/// How many of `results` are errors.
fn errors<const N: usize>(results: [Result<(), Error>; N]) -> usize {
    results.iter().filter(|r| r.is_err()).count()
}

/// Every store operation once, in order; returns how many ended in an
/// error.
fn exercise(store: &Store) -> usize {
    errors([
        store.check(),
        store.entries().map(drop),
        store.get::<u64>("k1").map(|h| drop(h.lock())),
        store.get::<Pair>("k2").map(|h| drop(h.snapshot())),
        store.get_or_create::<u64>("fresh", 9).map(drop),
        store.insert::<Pair>("other", Pair::default()).map(drop),
        store.remove("k3"),
        store.free_bytes().map(drop),
        store.len().map(drop),
    ])
}

/// Every read-only operation once, before any handle that may write has
/// repaired anything; returns how many ended in an error.
fn exercise_reader(reader: &StoreReader) -> usize {
    errors([
        reader.check(),
        reader.entries().map(drop),
        reader.contains("k4").map(drop),
        reader.len().map(drop),
        reader.get::<u64>("k1").map(|h| drop(h.snapshot())),
        reader.get::<Pair>("p2").and_then(|h| {
            drop(h.snapshot());
            h.check()
        }),
    ])
}

#[test]
fn random_bytes_over_a_store_give_errors_not_panics() {
    let seg = Segment::new("store-hostile");
    let path = seg.path();
    let mut rng = Lcg(0x5eed);
    let (mut cases, mut failed_ops) = (0, 0);
    for round in 0..300 {
        let _ = Store::unlink(seg.name());
        {
            let store = Store::create(seg.name(), 8192).unwrap();
            for i in 0..6u64 {
                store.insert::<u64>(&format!("k{i}"), i).unwrap();
                store
                    .insert::<Pair>(&format!("p{i}"), Pair { a: i, b: !i })
                    .unwrap();
            }
            store.remove("p3").unwrap();
        }
        // Damage: a few runs of random bytes, anywhere after the segment
        // header (which the header checks already cover), biased towards
        // the store's directory and first blocks.
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .open(&path)
            .unwrap();
        let len = file.metadata().unwrap().len();
        for _ in 0..1 + rng.below(4) {
            let start = if rng.below(2) == 0 {
                320 + rng.below(2048)
            } else {
                320 + rng.below(len - 320)
            };
            let n = (1 + rng.below(16)).min(len - start);
            let bytes: Vec<u8> = (0..n).map(|_| rng.next() as u8).collect();
            file.write_all_at(&bytes, start).unwrap();
        }
        drop(file);
        let outcome = catch_unwind(AssertUnwindSafe(|| {
            let read = match StoreReader::open(seg.name()) {
                Ok(reader) => exercise_reader(&reader),
                Err(_) => 1,
            };
            read + match Store::open(seg.name()) {
                Ok(store) => exercise(&store),
                Err(_) => 1,
            }
        }));
        match outcome {
            Ok(errors) => failed_ops += errors,
            Err(_) => panic!("round {round}: a store operation panicked on damaged bytes"),
        }
        cases += 1;
    }
    eprintln!("{cases} damaged stores, {failed_ops} operations ended in an error");
}

/// Bytes of the store file at `path` that hold its buckets (src/store/heap.rs:
/// after the 256-byte meta area and the 64 16-byte handle slots, 8 bytes a
/// bucket).
fn bucket_table(path: &std::path::Path) -> std::ops::Range<u64> {
    let b = std::fs::read(path).unwrap();
    let u64_at = |at: usize| u64::from_ne_bytes(b[at..at + 8].try_into().unwrap());
    let content = u64_at(56) as usize;
    let buckets = u64_at(content + 8);
    let start = (content
        + common::STORE_HANDLES_FROM_CONTENT
        + common::STORE_HANDLE_SLOTS * common::STORE_HANDLE_BYTES) as u64;
    start..start + 8 * buckets
}

/// A peer writes random bytes over the buckets (block indexes and tags)
/// while this process looks keys up, `contains` without the lock and `get`
/// with it: every answer is what was true or a miss or `Corrupt`: a key
/// never made is never found, a handle is always of its own entry and
/// type, and nothing panics or hangs. Once the buckets are put back, every
/// entry is found again.
#[test]
fn buckets_changing_under_look_ups_never_give_a_wrong_entry() {
    let seg = Segment::new("store-bucket-flips");
    let path = seg.path();
    let store = Store::create(seg.name(), 32 * 1024).unwrap();
    for i in 0..16u64 {
        store.insert::<u64>(&format!("k{i}"), 1000 + i).unwrap();
        store
            .insert::<Pair>(&format!("p{i}"), Pair { a: i, b: !i })
            .unwrap();
    }
    let table = bucket_table(&path);
    let original = {
        let b = std::fs::read(&path).unwrap();
        b[table.start as usize..table.end as usize].to_vec()
    };
    let stop = std::sync::atomic::AtomicBool::new(false);
    let (mut right, mut missed) = (0u64, 0u64);
    std::thread::scope(|s| {
        s.spawn(|| {
            let file = OpenOptions::new().write(true).open(&path).unwrap();
            let mut rng = Lcg(0xb0c7);
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                let at = table.start + rng.below(table.end - table.start);
                let n = (1 + rng.below(8)).min(table.end - at);
                let bytes: Vec<u8> = if rng.below(3) == 0 {
                    // Put some back, so that lookups also succeed.
                    let from = (at - table.start) as usize;
                    original[from..from + n as usize].to_vec()
                } else {
                    (0..n).map(|_| rng.next() as u8).collect()
                };
                file.write_all_at(&bytes, at).unwrap();
            }
        });
        let end = std::time::Instant::now() + std::time::Duration::from_millis(1500);
        let mut i = 0u64;
        while std::time::Instant::now() < end {
            i += 1;
            let n = i % 16;
            let ok_or_damage = |r: &Result<bool, Error>, key: &str| match r {
                Ok(_) | Err(Error::Corrupt { .. }) => {}
                Err(e) => panic!("contains {key}: {e}"),
            };
            let key = format!("k{n}");
            let r = store.contains(&key);
            ok_or_damage(&r, &key);
            if matches!(r, Ok(true)) {
                right += 1;
            } else {
                missed += 1;
            }
            let never = format!("never{n}");
            let r = store.contains(&never);
            ok_or_damage(&r, &never);
            assert!(!matches!(r, Ok(true)), "{never} found");
            match store.get::<u64>(&key) {
                Ok(h) => assert_eq!(h.snapshot().unwrap(), 1000 + n, "{key}"),
                Err(Error::NotFound { .. }) | Err(Error::Corrupt { .. }) => {}
                Err(e) => panic!("get {key}: {e}"),
            }
            let pair = format!("p{n}");
            match store.get::<Pair>(&pair) {
                Ok(h) => assert_eq!(h.snapshot().unwrap(), Pair { a: n, b: !n }),
                Err(Error::NotFound { .. }) | Err(Error::Corrupt { .. }) => {}
                Err(e) => panic!("get {pair}: {e}"),
            }
            match store.get::<u64>(&pair) {
                Err(Error::NotFound { .. })
                | Err(Error::Corrupt { .. })
                | Err(Error::LayoutMismatch { .. }) => {}
                Ok(_) => panic!("{pair} given as a u64"),
                Err(e) => panic!("get {pair}: {e}"),
            }
        }
        stop.store(true, std::sync::atomic::Ordering::Relaxed);
    });
    OpenOptions::new()
        .write(true)
        .open(&path)
        .unwrap()
        .write_all_at(&original, table.start)
        .unwrap();
    store.check().unwrap();
    for i in 0..16u64 {
        assert!(store.contains(&format!("k{i}")).unwrap());
        assert_eq!(
            store
                .get::<u64>(&format!("k{i}"))
                .unwrap()
                .snapshot()
                .unwrap(),
            1000 + i
        );
    }
    eprintln!("{right} lookups found their key, {missed} missed or met damage");
    assert!(right > 0);
}

/// A bucket that carries a key's tag but a block index outside the heap:
/// `contains` (which reads without the lock first) and `get` both say the
/// directory is damaged, `StoreReader::contains` too; once the bucket is
/// put back, the key is found again.
#[test]
fn a_bucket_pointing_outside_the_heap_is_corrupt_to_every_lookup() {
    let seg = Segment::new("store-bucket-outside");
    let path = seg.path();
    let store = Store::create(seg.name(), 16 * 1024).unwrap();
    store.insert::<u64>("k", 7).unwrap();
    let table = bucket_table(&path);
    let bytes = std::fs::read(&path).unwrap();
    let at = (table.start..table.end)
        .step_by(8)
        .find(|&at| {
            let word = &bytes[at as usize..at as usize + 8];
            u64::from_ne_bytes(word.try_into().unwrap()) != 0
        })
        .expect("the entry's bucket");
    let word = u64::from_ne_bytes(bytes[at as usize..at as usize + 8].try_into().unwrap());
    let file = OpenOptions::new().write(true).open(&path).unwrap();
    let forged = (word & !u64::from(u32::MAX)) | u64::from(u32::MAX - 1);
    file.write_all_at(&forged.to_ne_bytes(), at).unwrap();
    let damaged = |r: Result<bool, Error>, what: &str| match r {
        Err(Error::Corrupt { reason, .. }) => {
            assert!(reason.contains("out of the heap"), "{what}: {reason}")
        }
        other => panic!("{what}: {other:?}"),
    };
    damaged(store.contains("k"), "Store::contains");
    damaged(store.get::<u64>("k").map(|_| true), "Store::get");
    let reader = StoreReader::open(seg.name()).unwrap();
    damaged(reader.contains("k"), "StoreReader::contains");
    file.write_all_at(&word.to_ne_bytes(), at).unwrap();
    assert!(store.contains("k").unwrap());
    assert!(reader.contains("k").unwrap());
    assert_eq!(store.get::<u64>("k").unwrap().snapshot().unwrap(), 7);
}
