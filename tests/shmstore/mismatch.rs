//! A segment of another layout of the same type: `LayoutMismatch` says
//! which fields differ, from the schema the segment (or store entry)
//! records, whichever way it is opened; a damaged or forged schema leaves
//! the list empty and the error what it was.
//!
//! This file's System V keys are in the range `0x2000_0000` (see
//! `common::Key`).

use std::os::unix::fs::FileExt;

use crate::common::{failure, Key, Segment};
use proptest::collection::vec;
use proptest::prelude::*;
use proptest::test_runner::{Config as RunnerConfig, TestRunner};
use shmstore::schema::{LayoutChange, MAX_CHANGES};
use shmstore::{Error, Schema, Shared, SharedReader, Store};

/// The type as an older build defined it.
mod v1 {
    #[derive(shmstore::Shareable, Clone, Copy, Debug, Default, PartialEq)]
    #[repr(C)]
    pub struct Limits {
        pub max: u32,
        pub min: u32,
    }

    #[derive(shmstore::Shareable, Clone, Copy, Debug, Default, PartialEq)]
    #[repr(C)]
    pub struct Config {
        pub a: u32,
        pub b: u32,
        pub limits: Limits,
    }
}

/// The same names, as this build defines them.
mod v2 {
    #[derive(shmstore::Shareable, Clone, Copy, Debug, Default, PartialEq)]
    #[repr(C)]
    pub struct Limits {
        pub max: u64,
    }

    #[derive(shmstore::Shareable, Clone, Copy, Debug, Default, PartialEq)]
    #[repr(C)]
    pub struct Config {
        pub a: u32,
        pub c: u32,
        pub limits: Limits,
    }
}

/// Another type altogether, of the same size as `v1::Config`.
#[derive(shmstore::Shareable, Clone, Copy, Debug, Default, PartialEq)]
#[repr(C)]
struct Other {
    x: u64,
    y: u64,
}

/// What a user reads when a `v1::Config` is opened as a `v2::Config`.
const V1_TO_V2: [&str; 5] = [
    "alignment changed from 4 to 8",
    "field `b: u32` removed",
    "field `c: u32` added at offset 4",
    "field `limits.min: u32` removed",
    "field `limits.max` changed type from `u32` to `u64`",
];

fn v1_config() -> v1::Config {
    v1::Config {
        a: 1,
        b: 2,
        limits: v1::Limits { max: 3, min: 4 },
    }
}

/// The changes of a `LayoutMismatch`, after checking that its message
/// lists them after the two types.
fn changes_of(e: &Error) -> Vec<String> {
    let Error::LayoutMismatch {
        found_type,
        expected_type,
        changes,
        ..
    } = e
    else {
        panic!("expected LayoutMismatch, got {e:?}");
    };
    let text = e.to_string();
    assert!(text.contains(&format!("`{found_type}`")), "{text}");
    assert!(text.contains(&format!("`{expected_type}`")), "{text}");
    let changes: Vec<String> = changes.iter().map(ToString::to_string).collect();
    if changes.is_empty() {
        assert!(!text.contains("From its layout"), "{text}");
    } else {
        assert!(
            text.ends_with(&format!(
                ". From its layout to this build's: {}",
                changes.join("; ")
            )),
            "{text}"
        );
    }
    changes
}

/// Checks that `e` is the `v1` to `v2` mismatch, every change named.
fn is_v1_to_v2(e: &Error) {
    assert_eq!(changes_of(e), V1_TO_V2, "{e}");
    let text = e.to_string();
    for field in ["`b: u32`", "`c: u32`", "`limits.max`"] {
        assert!(text.contains(field), "{field} in {text}");
    }
}

#[test]
fn every_opener_of_a_segment_names_the_fields_that_differ() {
    let seg = Segment::new("mismatch-posix");
    let old = Shared::create(seg.name(), v1_config()).unwrap();

    is_v1_to_v2(&failure(Shared::<v2::Config>::open(seg.name())));
    is_v1_to_v2(&failure(SharedReader::<v2::Config>::open(seg.name())));
    is_v1_to_v2(&failure(Shared::open_or_create(
        seg.name(),
        v2::Config::default(),
    )));

    // Another type altogether: its name first, then what differs.
    let changes = changes_of(&failure(Shared::<Other>::open(seg.name())));
    assert_eq!(changes[0], "type changed from `Config` to `Other`");
    assert!(changes.contains(&"field `x: u64` added at offset 0".to_owned()));

    // Nothing was changed.
    assert_eq!(old.lock().unwrap().b, 2);
    assert_eq!(
        *Shared::<v1::Config>::open(seg.name())
            .unwrap()
            .lock()
            .unwrap(),
        v1_config()
    );
}

#[test]
fn a_file_segment_names_the_fields_that_differ() {
    let dir = std::env::temp_dir().join(format!("shmstore-mismatch-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("cfg");
    let _old = Shared::create(shmstore::Location::file(&path), v1_config()).unwrap();
    let e = failure(Shared::<v2::Config>::open(shmstore::Location::file(&path)));
    let _ = std::fs::remove_dir_all(&dir);
    is_v1_to_v2(&e);
}

#[test]
fn a_system_v_segment_names_the_fields_that_differ() {
    let key = Key::in_range(0x2000_0000);
    let _old = Shared::create(key.key(), v1_config()).unwrap();
    is_v1_to_v2(&failure(Shared::<v2::Config>::open(key.key())));
    is_v1_to_v2(&failure(SharedReader::<v2::Config>::open(key.key())));
    is_v1_to_v2(&failure(Shared::open_or_create(
        key.key(),
        v2::Config::default(),
    )));
}

#[test]
fn a_store_entry_names_the_fields_that_differ() {
    let seg = Segment::new("mismatch-store");
    let store = Store::create(seg.name(), 1 << 16).unwrap();
    store.insert("cfg", v1_config()).unwrap();

    let e = failure(store.get::<v2::Config>("cfg"));
    is_v1_to_v2(&e);
    assert!(e.to_string().contains("/cfg"), "{e}");
    is_v1_to_v2(&failure(store.get_or_create("cfg", v2::Config::default())));
    assert_eq!(
        *store.get::<v1::Config>("cfg").unwrap().lock().unwrap(),
        v1_config()
    );
}

// ===========================================================================
// Damaged and forged schemas

/// Where the schema of the POSIX segment `name` starts and how long it
/// is, read from the file as another program would.
fn schema_region(path: &std::path::Path) -> (u64, usize) {
    let bytes = std::fs::read(path).unwrap();
    let at = (288..bytes.len())
        .find(|&i| bytes[i..].starts_with(b"SHSC"))
        .expect("a schema after the value");
    (at as u64, bytes.len() - at)
}

/// `schema_len` in the header.
const SCHEMA_LEN_AT: u64 = 108;

/// A `v1::Config` segment whose schema region is `forge`d, opened as a
/// `v2::Config`: always a `LayoutMismatch`, with these changes.
fn open_forged(tag: &str, forge: impl FnOnce(&std::fs::File, u64, usize)) -> Vec<String> {
    let seg = Segment::new(tag);
    drop(Shared::create(seg.name(), v1_config()).unwrap());
    let (at, len) = schema_region(&seg.path());
    let file = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(seg.path())
        .unwrap();
    forge(&file, at, len);
    let e = failure(Shared::<v2::Config>::open(seg.name()));
    let reader = failure(SharedReader::<v2::Config>::open(seg.name()));
    let changes = changes_of(&e);
    assert_eq!(changes_of(&reader), changes);
    changes
}

fn set_schema_len(file: &std::fs::File, len: u32) {
    file.write_all_at(&len.to_ne_bytes(), SCHEMA_LEN_AT)
        .unwrap();
}

#[test]
fn a_damaged_or_forged_schema_leaves_the_message_as_it_was() {
    // Checked first: the offset of `schema_len` is the one the header has.
    let untouched = open_forged("mismatch-untouched", |file, _, len| {
        let mut b = [0u8; 4];
        file.read_exact_at(&mut b, SCHEMA_LEN_AT).unwrap();
        assert_eq!(u32::from_ne_bytes(b) as usize, len);
    });
    assert_eq!(untouched, V1_TO_V2);

    let garbage = open_forged("mismatch-garbage", |file, at, len| {
        file.write_all_at(&vec![0xab; len], at).unwrap();
    });
    assert!(garbage.is_empty(), "{garbage:?}");

    let truncated = open_forged("mismatch-truncated", |file, at, len| {
        file.set_len(at + len as u64 / 2).unwrap();
    });
    assert!(truncated.is_empty(), "{truncated:?}");

    let too_long = open_forged("mismatch-too-long", |file, _, _| {
        set_schema_len(file, u32::MAX);
    });
    assert!(too_long.is_empty(), "{too_long:?}");

    let none = open_forged("mismatch-none", |file, _, _| set_schema_len(file, 0));
    assert!(none.is_empty(), "{none:?}");

    // A valid schema, but of a value of another size than the header's.
    let other_size = open_forged("mismatch-other-size", |file, at, _| {
        let schema = Schema::of::<u32>().encode();
        file.write_all_at(&schema, at).unwrap();
        set_schema_len(file, schema.len() as u32);
    });
    assert!(other_size.is_empty(), "{other_size:?}");

    // A valid schema of another type of the value's size: what it says.
    let other_type = open_forged("mismatch-other-type", |file, at, _| {
        let schema = Schema::of::<[u32; 4]>().encode();
        file.write_all_at(&schema, at).unwrap();
        set_schema_len(file, schema.len() as u32);
    });
    assert_eq!(
        other_type,
        [
            "type changed from `[u32; 4]` to `Config`",
            "alignment changed from 4 to 8",
        ]
    );
}

#[test]
fn a_store_entry_with_a_damaged_schema_gives_the_message_as_it_was() {
    let seg = Segment::new("mismatch-store-garbage");
    let store = Store::create(seg.name(), 1 << 16).unwrap();
    store.insert("cfg", v1_config()).unwrap();
    // The store itself records no schema: the first is the entry's.
    let (at, _) = schema_region(&seg.path());
    let file = std::fs::OpenOptions::new()
        .write(true)
        .open(seg.path())
        .unwrap();
    file.write_all_at(b"SHSC\x01\xff\xff", at).unwrap();

    let changes = changes_of(&failure(store.get::<v2::Config>("cfg")));
    assert!(changes.is_empty(), "{changes:?}");
    let changes = changes_of(&failure(store.get_or_create("cfg", v2::Config::default())));
    assert!(changes.is_empty(), "{changes:?}");
}

#[test]
fn random_schema_bytes_never_panic() {
    let seg = Segment::new("mismatch-random");
    drop(Shared::create(seg.name(), v1_config()).unwrap());
    let (at, len) = schema_region(&seg.path());
    let file = std::fs::OpenOptions::new()
        .write(true)
        .open(seg.path())
        .unwrap();
    let valid = Schema::of::<v1::Config>().encode();
    let expected = Schema::of::<v2::Config>();

    let mut runner = TestRunner::new(RunnerConfig {
        cases: 256,
        failure_persistence: None,
        ..RunnerConfig::default()
    });
    let strategy = (
        vec(any::<u8>(), 0..2 * len),
        vec((0..valid.len(), any::<u8>()), 0..4),
    );
    runner
        .run(&strategy, |(random, flips)| {
            // Random bytes, and a valid schema with a few bytes changed,
            // straight into the diff.
            if let Ok(s) = Schema::decode(&random) {
                assert!(s.diff(&expected).len() <= MAX_CHANGES + 1);
                assert!(expected.diff(&s).len() <= MAX_CHANGES + 1);
            }
            let mut mutated = valid.clone();
            for (i, b) in flips {
                mutated[i] = b;
            }
            if let Ok(s) = Schema::decode(&mutated) {
                let changes = s.diff(&expected);
                assert!(changes.len() <= MAX_CHANGES + 1);
                if let Some(LayoutChange::More { count }) = changes.last() {
                    assert!(*count > 0);
                }
            }
            // The same bytes in the segment, its length forged to fit.
            let region = &random[..random.len().min(len)];
            file.write_all_at(region, at).unwrap();
            set_schema_len(&file, region.len() as u32);
            let e = failure(Shared::<v2::Config>::open(seg.name()));
            changes_of(&e);
            Ok(())
        })
        .unwrap();
}
