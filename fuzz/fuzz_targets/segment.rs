//! Hostile bytes in a value segment: the input decides which parts of a
//! fresh `Shared<Rich>` segment (header fields, lock, write counter, value,
//! schema, anywhere) get which bytes; then a program and a tool use it.
//! Every call must return a value or a typed error: a panic, a hang (the
//! run's `-timeout`) or a crash is a finding.

#![no_main]

use std::sync::TryLockError;
use std::time::Duration;

use libfuzzer_sys::fuzz_target;
use shmstore::inspect::{self, State};
use shmstore::{Schema, Shared, SharedReader};
use shmstore_fuzz::{
    bytes_of, damage, names_live_thread, names_me, read_fields, sample, scribble, u64_at,
    value_parts, Rich, Unlink, LOCK_AT, SEQ_AT, VALUE_AT,
};

fuzz_target!(|input: &[u8]| {
    let name = shmstore_fuzz::name("segment");
    let path = shmstore_fuzz::path(&name);
    let _ = shmstore::unlink(name.as_str());
    let _unlink = Unlink(name.clone());
    drop(Shared::create(&name, sample()).expect("creating the segment"));
    let len = std::fs::metadata(&path).expect("the segment").len() as usize;
    damage(&path, &value_parts(len), input);
    let after = std::fs::read(&path).expect("the segment");
    exercise(&name, &after);
});

fn exercise(name: &str, after: &[u8]) {
    let report = inspect::report(name).expect("inspect finds the segment");
    render(&report);
    let shared = Shared::<Rich>::open(name);
    let reader = SharedReader::<Rich>::open(name);
    let (shared, reader) = match (shared, reader) {
        (Ok(s), Ok(r)) => (s, r),
        (Err(a), Err(b)) => {
            let _ = (a.to_string(), b.to_string());
            return;
        }
        (a, b) => panic!(
            "open and read-only open disagree: {:?} / {:?}",
            a.err(),
            b.err()
        ),
    };
    assert!(
        matches!(report.state, State::Value { .. }),
        "an open segment inspected as {:?}",
        report.state
    );
    let word = u64_at(after, LOCK_AT);
    let seq = u64_at(after, SEQ_AT);
    let value = &after[VALUE_AT..VALUE_AT + std::mem::size_of::<Rich>()];
    assert_eq!(shared.generation(), seq >> 1);
    // A snapshot with no write in progress returns at once. (One with a
    // write cut short waits for the holder's death to be noticed, about
    // 50 ms: tests/shmstore/reliability/hostile.rs covers it, too slow for
    // fuzzing.)
    if seq & 1 == 0 {
        for got in [shared.snapshot(), reader.snapshot()] {
            let v = match &got {
                Ok(v) => v,
                Err(p) => p.get_ref(),
            };
            assert_eq!(bytes_of(v), value, "a snapshot of other bytes");
            read_fields(v);
        }
    }
    let generation = shared.generation();
    assert_eq!(shared.wait_for_change(generation, Duration::ZERO).unwrap(), None);
    let _ = reader.wait_for_change(generation, Duration::ZERO);
    // A word naming this thread, which holds no lock here, names no holder.
    let guard = match shared.try_lock() {
        Ok(g) => g,
        Err(TryLockError::Poisoned(p)) => p.into_inner(),
        Err(TryLockError::WouldBlock) => {
            assert!(
                names_live_thread(word) && !names_me(word),
                "a lock naming nobody alive not taken"
            );
            return;
        }
    };
    // A write through the guard; snapshots then see exactly that write.
    let mut guard = guard;
    read_fields(&guard);
    let mut mine: Rich = *guard;
    scribble(&mut mine);
    scribble(&mut guard);
    drop(guard);
    for got in [shared.snapshot(), reader.snapshot()] {
        let v = match &got {
            Ok(v) => v,
            Err(p) => p.get_ref(),
        };
        assert_eq!(bytes_of(v), bytes_of(&mine), "a snapshot of another value");
    }
    shared.clear_poison();
    assert!(shared.snapshot().is_ok(), "poisoned after clear_poison");
}

fn render(report: &inspect::Report) {
    let _ = format!("{report:?}");
    if let State::Value { schema, value, .. } = &report.state {
        if let Ok(Some(s)) = schema {
            let _ = format!("{s} {s:#}");
            let _ = Schema::decode(&s.encode()).expect("a schema inspect read re-encodes");
        }
        if let Some(v) = value {
            let _ = (v.to_string(), v.to_json());
        }
    }
}
