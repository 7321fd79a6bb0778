//! `Store::get_or_migrate`: an entry changing type while processes use it.
//!
//! 1. In one process: an absent key is created from `init`, a `New` is
//!    opened, an `Old` is migrated, another type is refused; a panicking
//!    `migrate` and a full store change nothing.
//! 2. A `Shared<Old>` held across the migration: its next `lock()` is `Err`,
//!    a `wait_for_change` asleep in another thread wakes.
//! 3. Eight processes race to migrate one key while old-build processes
//!    increment it: one migration, no update lost.
//! 4. A process SIGKILLed at 200 random points of migrations (back and
//!    forth between two types) always leaves the key holding one complete
//!    entry, a store that `check()`s, and no space lost.
//!
//! Each test asserts what a user would notice: a value that does not come
//! back, an entry migrated twice or not at all, a lost increment, a key
//! that holds nothing or a half-made entry, space that never comes back.

use crate::common;

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::time::{Duration, Instant};

use common::{command, heavy, role, say, scaled, Kid, Rng, Segment};
use shmstore::{Error, Shareable, Store};

// ===========================================================================
// Types

/// The old build's entry.
#[derive(Shareable, Clone, Copy, Debug, Default, PartialEq)]
#[repr(C)]
struct CountV1 {
    count: u64,
    /// `count ^ SEAL_V1`: a value written in full.
    seal: u64,
}

/// The new build's entry: one more field, counting the migrations.
#[derive(Shareable, Clone, Copy, Debug, Default, PartialEq)]
#[repr(C)]
struct CountV2 {
    count: u64,
    migrations: u64,
    /// `count ^ migrations ^ SEAL_V2`.
    seal: u64,
}

/// Neither of them.
#[derive(Shareable, Clone, Copy, Debug, Default, PartialEq)]
#[repr(C)]
struct Other {
    x: u32,
    y: u32,
}

/// Too big for the small store of the "full" test.
#[derive(Shareable, Clone, Copy, Debug, PartialEq)]
#[repr(C)]
struct Huge {
    words: [u64; 256],
}

const SEAL_V1: u64 = 0x5eed_0001_5eed_0001;
const SEAL_V2: u64 = 0x5eed_0002_5eed_0002;

fn v1(count: u64) -> CountV1 {
    CountV1 {
        count,
        seal: count ^ SEAL_V1,
    }
}

fn v2(count: u64, migrations: u64) -> CountV2 {
    CountV2 {
        count,
        migrations,
        seal: count ^ migrations ^ SEAL_V2,
    }
}

fn up(old: CountV1) -> CountV2 {
    v2(old.count, 1)
}

fn sealed_v1(v: &CountV1) -> bool {
    v.seal == v.count ^ SEAL_V1
}

fn sealed_v2(v: &CountV2) -> bool {
    v.seal == v.count ^ v.migrations ^ SEAL_V2
}

fn variant_of<T>(r: &Result<T, Error>) -> String {
    match r {
        Ok(_) => "ok".into(),
        Err(e) => common::variant(e).into(),
    }
}

// ===========================================================================
// 1. One process

#[test]
fn absent_new_old_and_other_types() {
    let seg = Segment::new("migrate-cases");
    let store = Store::create(seg.name(), 64 * 1024).unwrap();
    let never = |_: CountV1| -> CountV2 { panic!("migrate called for no `CountV1`") };

    // Absent: created from `init`.
    let a = store.get_or_migrate("a", v2(5, 0), never).unwrap();
    assert_eq!(a.snapshot().unwrap(), v2(5, 0));
    // A `New`: opened as it is.
    let again = store.get_or_migrate("a", v2(9, 9), never).unwrap();
    assert_eq!(again.snapshot().unwrap(), v2(5, 0));
    again.lock().unwrap().count += 1;
    assert_eq!(a.snapshot().unwrap().count, 6);

    // An `Old`: migrated, once.
    let old = store.insert("b", v1(41)).unwrap();
    let gen = store.generation();
    let mut calls = 0;
    let b = store
        .get_or_migrate("b", v2(0, 0), |o: CountV1| {
            calls += 1;
            assert_eq!(o, v1(41));
            up(o)
        })
        .unwrap();
    assert_eq!(calls, 1);
    assert_eq!(b.snapshot().unwrap(), v2(41, 1));
    assert!(store.generation() > gen, "the directory changed");
    assert_eq!(
        variant_of(&store.get::<CountV1>("b")),
        "LayoutMismatch",
        "the key holds a `CountV2` now"
    );
    assert_eq!(
        store.get::<CountV2>("b").unwrap().snapshot().unwrap(),
        v2(41, 1)
    );
    let again = store.get_or_migrate("b", v2(0, 0), never).unwrap();
    assert_eq!(again.snapshot().unwrap(), v2(41, 1));
    // The old entry's handle is told.
    assert!(old.is_poisoned());
    assert!(old.lock().is_err());
    let why = old.poison_info().expect("a poison record");
    assert_eq!(why.cause(), shmstore::PoisonCause::Superseded);
    assert_eq!(why.pid(), Some(std::process::id()));
    assert!(why.segment().contains('b'), "{why}");
    let info: Vec<_> = store.entries().unwrap();
    assert_eq!(info.len(), 2);
    let b_info = info.iter().find(|e| e.key == "b").unwrap();
    assert_eq!(b_info.type_name, "CountV2");
    assert!(!b_info.poisoned);

    // Anything else: LayoutMismatch, as `get` gives, and nothing changes.
    store.insert("c", Other { x: 1, y: 2 }).unwrap();
    let r = store.get_or_migrate("c", v2(0, 0), never);
    match &r {
        Err(Error::LayoutMismatch {
            found_type,
            expected_type,
            ..
        }) => {
            assert_eq!(found_type, "Other");
            assert_eq!(*expected_type, "CountV2");
        }
        _ => panic!("expected LayoutMismatch, got {}", variant_of(&r)),
    }
    assert_eq!(
        store.get::<Other>("c").unwrap().snapshot().unwrap(),
        Other { x: 1, y: 2 }
    );

    // Bad keys are refused as everywhere.
    assert_eq!(
        variant_of(&store.get_or_migrate("bad key", v2(0, 0), never)),
        "InvalidName"
    );
    // The same type on both sides is `get_or_create`.
    let same = store
        .get_or_migrate("d", v1(3), |_: CountV1| -> CountV1 {
            panic!("not a migration")
        })
        .unwrap();
    assert_eq!(same.snapshot().unwrap(), v1(3));

    store.check().unwrap();
    // The old entry's space comes back with its last handle.
    let before = store.free_bytes().unwrap();
    drop(old);
    assert!(store.free_bytes().unwrap() > before);
    store.check().unwrap();
}

#[test]
fn a_panicking_migration_changes_nothing() {
    let seg = Segment::new("migrate-panic");
    let store = Store::create(seg.name(), 64 * 1024).unwrap();
    let old = store.insert("k", v1(7)).unwrap();
    let free = store.free_bytes().unwrap();
    let gen = store.generation();
    let old_gen = old.generation();

    let r = catch_unwind(AssertUnwindSafe(|| {
        store.get_or_migrate("k", v2(0, 0), |_: CountV1| -> CountV2 {
            panic!("a migration that fails")
        })
    }));
    let payload = r.expect_err("the panic reaches the caller");
    assert_eq!(
        payload.downcast_ref::<&str>().copied(),
        Some("a migration that fails")
    );

    assert!(!old.is_poisoned(), "the migration poisoned the old entry");
    assert_eq!(old.snapshot().unwrap(), v1(7));
    assert_eq!(old.generation(), old_gen, "the old entry was written");
    old.lock().unwrap().count += 0;
    assert_eq!(
        store.get::<CountV1>("k").unwrap().snapshot().unwrap(),
        v1(7)
    );
    assert_eq!(store.free_bytes().unwrap(), free, "space was taken");
    assert_eq!(store.generation(), gen, "the directory changed");
    store.check().unwrap();

    // The key can still be migrated afterwards.
    let new = store.get_or_migrate("k", v2(0, 0), up).unwrap();
    assert_eq!(new.snapshot().unwrap(), v2(7, 1));
    store.check().unwrap();
}

#[test]
fn no_room_for_the_new_entry_is_store_full_and_changes_nothing() {
    let seg = Segment::new("migrate-full");
    // A store that never grows: it is full on purpose.
    let store = shmstore::SharedOptions::new()
        .max_capacity(1024)
        .create_store(seg.name(), 1024)
        .unwrap();
    let old = store.insert("k", v1(3)).unwrap();
    let free = store.free_bytes().unwrap();
    let gen = store.generation();

    let r = store.get_or_migrate("k", Huge { words: [0; 256] }, |o: CountV1| Huge {
        words: [o.count; 256],
    });
    assert!(
        matches!(r, Err(Error::StoreFull { .. })),
        "expected StoreFull, got {}",
        variant_of(&r)
    );

    assert!(!old.is_poisoned());
    assert_eq!(old.snapshot().unwrap(), v1(3));
    assert_eq!(
        store.get::<CountV1>("k").unwrap().snapshot().unwrap(),
        v1(3)
    );
    assert_eq!(store.free_bytes().unwrap(), free);
    assert_eq!(store.generation(), gen);
    store.check().unwrap();
}

// ===========================================================================
// 2. Handles on the old entry

#[test]
fn handles_on_the_old_entry_learn_of_the_migration() {
    let seg = Segment::new("migrate-handles");
    let store = Store::create(seg.name(), 64 * 1024).unwrap();
    let old = store.insert("k", v1(1)).unwrap();
    let seen = old.generation();

    std::thread::scope(|s| {
        let waiter = s.spawn(|| old.wait_for_change(seen, Duration::from_secs(20)));
        // Let it fall asleep (it wakes just as well if it has not yet).
        std::thread::sleep(Duration::from_millis(100));
        let new = store.get_or_migrate("k", v2(0, 0), up).unwrap();
        let woke = waiter.join().unwrap().unwrap();
        assert!(
            woke.is_some_and(|g| g > seen),
            "wait_for_change did not wake: {woke:?}"
        );
        assert_eq!(new.snapshot().unwrap(), v2(1, 1));
    });

    // Its next lock is Err; writing takes clearing the poison, and reaches
    // nobody who opens the key.
    assert!(old.lock().is_err());
    assert!(old.snapshot().is_err());
    old.clear_poison();
    old.lock().unwrap().count = 1000;
    assert_eq!(
        store.get::<CountV2>("k").unwrap().snapshot().unwrap(),
        v2(1, 1)
    );
    store.check().unwrap();
}

// ===========================================================================
// Children

#[test]
fn child_entry() {
    let Some(args) = role() else { return };
    let arg = |i: usize| args[i].as_str();
    let code = match arg(0) {
        "v1-worker" => v1_worker(arg(1)),
        "migrator" => migrator(arg(1)),
        "migrate-until-killed" => migrate_until_killed(arg(1), arg(2).parse().unwrap()),
        other => panic!("unknown role {other}"),
    };
    std::process::exit(code);
}

const KEY: &str = "counter";

/// Increments the `CountV1` entry until its lock is poisoned (the entry was
/// migrated); reports how many increments succeeded.
fn v1_worker(name: &str) -> i32 {
    let store = Store::open(name).unwrap();
    let h = store.get::<CountV1>(KEY).unwrap();
    let mut done = 0u64;
    loop {
        match h.lock() {
            Ok(mut g) => {
                assert!(sealed_v1(&g), "a torn CountV1: {:?}", *g);
                *g = v1(g.count + 1);
                done += 1;
                if done == 100 {
                    say("started");
                }
            }
            Err(_) => break,
        }
        if done % 16 == 0 {
            std::thread::yield_now();
        }
    }
    if done < 100 {
        say("started");
    }
    say(format!("done {done}"));
    0
}

/// Waits for "go", migrates (or opens) the entry, adds one, and reports
/// whether its closure ran and what it saw.
fn migrator(name: &str) -> i32 {
    let store = Store::open(name).unwrap();
    say("ready");
    assert_eq!(command().as_deref(), Some("go"));
    let mut ran = 0;
    let h = store
        .get_or_migrate(KEY, v2(0, 0), |o: CountV1| {
            ran += 1;
            assert!(sealed_v1(&o), "a torn CountV1: {o:?}");
            v2(o.count, 1)
        })
        .unwrap();
    {
        let mut g = h.lock().unwrap();
        assert!(sealed_v2(&g), "a torn CountV2: {:?}", *g);
        *g = v2(g.count + 1, g.migrations);
    }
    say(format!("ran {ran}"));
    0
}

// ===========================================================================
// 3. Racing migrators, old-build writers

#[test]
fn eight_racing_processes_migrate_once_and_lose_no_update() {
    const MIGRATORS: usize = 8;
    const WORKERS: usize = 3;
    let _heavy = heavy();
    let seg = Segment::new("migrate-race");
    let store = Store::create(seg.name(), 64 * 1024).unwrap();
    store.insert(KEY, v1(0)).unwrap();

    let mut migrators: Vec<Kid> = (0..MIGRATORS)
        .map(|_| Kid::spawn("migrator", &[seg.name()]))
        .collect();
    for m in &mut migrators {
        m.expect("ready");
    }
    let mut workers: Vec<Kid> = (0..WORKERS)
        .map(|_| Kid::spawn("v1-worker", &[seg.name()]))
        .collect();
    for w in &mut workers {
        w.expect("started");
    }
    for m in &mut migrators {
        m.send("go");
    }
    let mut ran = 0;
    for m in &mut migrators {
        ran += m.expect("ran ").parse::<u64>().unwrap();
        m.wait_success();
    }
    let mut increments = 0;
    for w in &mut workers {
        increments += w.expect("done ").parse::<u64>().unwrap();
        w.wait_success();
    }
    assert_eq!(ran, 1, "migrate ran {ran} times");
    let v = store.get::<CountV2>(KEY).unwrap().snapshot().unwrap();
    assert!(sealed_v2(&v), "{v:?}");
    assert_eq!(v.migrations, 1, "{v:?}");
    assert_eq!(
        v.count,
        increments + MIGRATORS as u64,
        "updates lost: the old build made {increments}, the new one {MIGRATORS}"
    );
    assert!(increments >= 100 * WORKERS as u64);
    assert_eq!(store.len().unwrap(), 1);
    store.check().unwrap();
}

// ===========================================================================
// 4. SIGKILL in the middle of migrations

/// Migrates the key from `CountV1` to `CountV2` and back, over and over,
/// each migration sleeping a few microseconds, until killed. Says "ready"
/// after the first round (which may have to take a lock over from the
/// child killed before it), so that kills land among migrations.
fn migrate_until_killed(name: &str, seed: u64) -> i32 {
    let store = Store::open(name).unwrap();
    let mut rng = Rng(seed);
    let mut round = 0u64;
    loop {
        let nap = rng.below(40);
        let h = store
            .get_or_migrate(KEY, v2(0, 0), |o: CountV1| {
                std::thread::sleep(Duration::from_micros(nap));
                v2(o.count + 1, 1)
            })
            .unwrap();
        assert!(sealed_v2(&h.snapshot().unwrap_or_else(|e| e.into_inner())));
        drop(h);
        let nap = rng.below(40);
        let h = store
            .get_or_migrate(KEY, v1(0), |o: CountV2| {
                std::thread::sleep(Duration::from_micros(nap));
                v1(o.count + 1)
            })
            .unwrap();
        assert!(sealed_v1(&h.snapshot().unwrap_or_else(|e| e.into_inner())));
        if round == 0 {
            say("ready");
        }
        round += 1;
    }
}

#[test]
fn sigkill_during_migrations_always_leaves_one_complete_entry() {
    let kills = scaled(200, 40);
    let _heavy = heavy();
    let t0 = Instant::now();
    let seg = Segment::new("migrate-kill");
    let store = Store::create(seg.name(), 64 * 1024).unwrap();
    // The space each kind of entry takes.
    let empty = store.free_bytes().unwrap();
    // (The handles are dropped first: a store handle's hold list takes
    // space while it holds entries.)
    let size_v2 = {
        drop(store.insert(KEY, v2(0, 0)).unwrap());
        empty - store.free_bytes().unwrap()
    };
    store.remove(KEY).unwrap();
    store.insert(KEY, v1(0)).unwrap();
    let size_v1 = empty - store.free_bytes().unwrap();

    let mut rng = Rng(0x0dea_d0c0_ffee);
    let (mut as_v1, mut as_v2, mut mid_change, mut mid_migration) = (0, 0, 0, 0);
    let mut last = 0;
    for i in 0..kills {
        let context = format!("kill {i}");
        let mut kid = Kid::spawn("migrate-until-killed", &[seg.name(), &(i + 1).to_string()]);
        kid.expect("ready");
        std::thread::sleep(Duration::from_micros(100 + rng.below(1900)));
        kid.kill_and_reap(&context);

        // What the kill interrupted, before anyone touches the store.
        if raw_directory_seq(&seg) & 1 != 0 {
            mid_change += 1;
        }
        store
            .check()
            .unwrap_or_else(|e| panic!("{context}: check() after the kill: {e}"));
        let got1 = store.get::<CountV1>(KEY);
        let got2 = store.get::<CountV2>(KEY);
        let (count, size) = match (&got1, &got2) {
            (Ok(h), Err(Error::LayoutMismatch { .. })) => {
                as_v1 += 1;
                mid_migration += u64::from(h.is_locked());
                let v = h.snapshot().unwrap_or_else(|e| e.into_inner());
                assert!(sealed_v1(&v), "{context}: a torn CountV1 {v:?}");
                (v.count, size_v1)
            }
            (Err(Error::LayoutMismatch { .. }), Ok(h)) => {
                as_v2 += 1;
                mid_migration += u64::from(h.is_locked());
                let v = h.snapshot().unwrap_or_else(|e| e.into_inner());
                assert!(sealed_v2(&v), "{context}: a torn CountV2 {v:?}");
                assert_eq!(v.migrations, 1, "{context}");
                (v.count, size_v2)
            }
            _ => panic!(
                "{context}: the key holds neither one complete entry: as CountV1 {}, as CountV2 {}",
                variant_of(&got1),
                variant_of(&got2)
            ),
        };
        // Each migration adds one: none is lost or made twice.
        assert!(
            count >= last,
            "{context}: count went back from {last} to {count}"
        );
        last = count;
        drop((got1, got2));
        assert_eq!(store.len().unwrap(), 1, "{context}");
        assert_eq!(
            store.free_bytes().unwrap(),
            empty - size,
            "{context}: space lost (one entry of {size} bytes should be in use)"
        );
        store
            .check()
            .unwrap_or_else(|e| panic!("{context}: check() after verifying: {e}"));
    }
    eprintln!(
        "store_migrate: {kills} kills in {:?}: the key held a CountV1 {as_v1} times, \
         a CountV2 {as_v2} times; {mid_migration} kills came during a migration (the key's \
         entry locked by the dead child), {mid_change} in the middle of a change of the \
         directory; {last} migrations in all",
        t0.elapsed()
    );
    assert!(
        as_v1 > 0 && as_v2 > 0,
        "the kills never hit one of the two sides"
    );
    assert!(mid_migration > 0, "no kill came during a migration");
}

/// The store's directory write counter, read from /dev/shm (the segment's
/// own versions, after its lock: src/segment/header.rs): odd while a
/// change is in progress.
fn raw_directory_seq(seg: &Segment) -> u64 {
    use std::os::unix::fs::FileExt;
    const DIR_SEQ_AT: u64 = 272;
    let f = std::fs::File::open(seg.path()).unwrap();
    let mut b = [0u8; 8];
    f.read_exact_at(&mut b, DIR_SEQ_AT).unwrap();
    u64::from_ne_bytes(b)
}
