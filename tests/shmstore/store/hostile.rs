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
