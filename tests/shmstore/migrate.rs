//! Changing a segment's type while processes use it:
//! `SharedOptions::open_or_migrate` and `replace_on_mismatch`.
//!
//! 1. One process: every case of what the name may hold, a panicking
//!    `migrate`, System V refused, file segments.
//! 2. A handle of the old build: its next `lock()` fails with the cause
//!    `Superseded`, and a thread asleep in `wait_for_change` wakes.
//! 3. Eight processes race `open_or_migrate` while processes of the old
//!    build keep counting: one migration, no update lost.
//! 4. A migrating process SIGKILLed at 200 random points: the name always
//!    holds a complete old or new segment, and the next caller finishes.

use crate::common;

use std::os::unix::fs::MetadataExt;
use std::time::Duration;

use common::{role, say, temporaries, Kid, Segment};
use shmstore::{Error, PoisonCause, Shared, SharedOptions};

mod v1 {
    #[derive(shmstore::Shareable, Clone, Copy, Debug, Default, PartialEq)]
    #[repr(C)]
    pub struct Stats {
        pub requests: u64,
    }
}

mod v2 {
    #[derive(shmstore::Shareable, Clone, Copy, Debug, Default, PartialEq)]
    #[repr(C)]
    pub struct Stats {
        pub requests: u64,
        pub errors: u64,
        pub migrations: u32,
        pub _pad: u32,
    }
}

/// What every test's `migrate` does: carry the count, count the migration.
fn upgrade(old: v1::Stats) -> v2::Stats {
    v2::Stats {
        requests: old.requests,
        migrations: 1,
        ..Default::default()
    }
}

fn migrate(name: &str) -> shmstore::Result<Shared<v2::Stats>> {
    SharedOptions::new().open_or_migrate(name, v2::Stats::default(), upgrade)
}

/// The inode under a POSIX name (which object the name holds).
fn inode(seg: &Segment) -> u64 {
    std::fs::metadata(seg.path()).unwrap().ino()
}

#[test]
fn every_case_of_what_the_name_holds() {
    // Nothing: created from `init`.
    let seg = Segment::new("migrate-cases");
    let s = migrate(seg.name()).unwrap();
    assert!(s.created() && !s.migrated());
    assert_eq!(*s.lock().unwrap(), v2::Stats::default());
    // A `New`: opened.
    let again = migrate(seg.name()).unwrap();
    assert!(!again.created() && !again.migrated());
    drop((s, again));
    shmstore::unlink(seg.name()).unwrap();

    // An `Old`: migrated, its value carried over.
    let old = Shared::create(seg.name(), v1::Stats { requests: 41 }).unwrap();
    let before = inode(&seg);
    let new = migrate(seg.name()).unwrap();
    assert!(new.migrated() && new.created());
    assert_ne!(inode(&seg), before, "a new object under the name");
    assert_eq!(new.lock().unwrap().requests, 41);
    assert_eq!(new.lock().unwrap().migrations, 1);
    // The old build's handle: Err at its next lock, cause Superseded.
    assert!(old.lock().is_err(), "the old segment is poisoned");
    let info = old.poison_info().expect("a poison record");
    assert_eq!(info.cause(), PoisonCause::Superseded);
    assert_eq!(info.pid(), Some(std::process::id()));
    assert!(info.to_string().contains(seg.name()), "{info}");
    // A third process of either build now opens the new one.
    assert!(Shared::<v1::Stats>::open(seg.name()).is_err());
    assert_eq!(
        Shared::<v2::Stats>::open(seg.name())
            .unwrap()
            .lock()
            .unwrap()
            .requests,
        41
    );
    drop((old, new));
    shmstore::unlink(seg.name()).unwrap();

    // Anything else: LayoutMismatch, nothing touched.
    Shared::create(seg.name(), 7u32).unwrap();
    let before = inode(&seg);
    let err = migrate(seg.name()).unwrap_err();
    assert!(matches!(err, Error::LayoutMismatch { .. }), "{err}");
    assert_eq!(inode(&seg), before);
    assert_eq!(*Shared::<u32>::open(seg.name()).unwrap().lock().unwrap(), 7);
    assert!(
        temporaries(seg.name()).is_empty(),
        "{:?}",
        temporaries(seg.name())
    );
}

#[test]
fn a_panicking_migration_leaves_the_old_segment_as_it_was() {
    let seg = Segment::new("migrate-panic");
    let old = Shared::create(seg.name(), v1::Stats { requests: 5 }).unwrap();
    let before = inode(&seg);
    let panicked = std::panic::catch_unwind(|| {
        SharedOptions::new().open_or_migrate(seg.name(), v2::Stats::default(), |_: v1::Stats| {
            panic!("migration bug")
        })
    });
    assert!(panicked.is_err(), "the panic reaches the caller");
    assert_eq!(inode(&seg), before, "the name is untouched");
    assert!(old.poison_info().is_none(), "not poisoned by the migration");
    assert_eq!(old.lock().unwrap().requests, 5);
    assert!(!old.is_locked());
    assert!(
        temporaries(seg.name()).is_empty(),
        "{:?}",
        temporaries(seg.name())
    );
    // And it can still be migrated.
    assert_eq!(migrate(seg.name()).unwrap().lock().unwrap().requests, 5);
}

#[test]
fn a_killed_holder_of_the_old_segment_does_not_stop_the_migration() {
    let seg = Segment::new("migrate-dead-holder");
    Shared::create(seg.name(), v1::Stats { requests: 9 }).unwrap();
    let mut kid = Kid::spawn("hold", &[seg.name()]);
    kid.expect("holding");
    kid.kill();
    let new = migrate(seg.name()).unwrap();
    assert!(new.migrated());
    assert_eq!(
        new.lock().unwrap().requests,
        10,
        "the dead holder's write is kept"
    );
}

#[test]
fn system_v_refuses_and_files_migrate() {
    let key = common::Key::in_range(0x6300_0000);
    let old = Shared::create(key.key(), v1::Stats::default()).unwrap();
    let err = SharedOptions::new()
        .open_or_migrate(key.key(), v2::Stats::default(), upgrade)
        .unwrap_err();
    assert!(matches!(err, Error::MigrationUnsupported { .. }), "{err}");
    assert!(old.poison_info().is_none());
    drop(old);
    let _ = shmstore::unlink(key.key());

    let dir = tempdir();
    let path = dir.join("stats.shm");
    Shared::create(path.as_path(), v1::Stats { requests: 3 }).unwrap();
    let new = SharedOptions::new()
        .open_or_migrate(path.as_path(), v2::Stats::default(), upgrade)
        .unwrap();
    assert!(new.migrated());
    assert_eq!(new.lock().unwrap().requests, 3);
    let _ = std::fs::remove_dir_all(&dir);
}

fn tempdir() -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!("shmstore-migrate-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

#[test]
fn replace_on_mismatch_replaces_and_says_so() {
    let seg = Segment::new("migrate-replace");
    let old = Shared::create(seg.name(), 7u32).unwrap();
    let fresh = SharedOptions::new()
        .replace_on_mismatch(true)
        .open_or_create(seg.name(), 9u64)
        .unwrap();
    let replaced = fresh.replaced_mismatch().expect("it says what it replaced");
    assert!(
        matches!(replaced, Error::LayoutMismatch { .. }),
        "{replaced}"
    );
    assert!(fresh.created());
    assert_eq!(*fresh.lock().unwrap(), 9);
    assert_eq!(
        *old.lock().unwrap(),
        7,
        "the old handle keeps the old segment"
    );
    // Of the same layout: opened, nothing replaced.
    let same = SharedOptions::new()
        .replace_on_mismatch(true)
        .open_or_create(seg.name(), 1u64)
        .unwrap();
    assert!(same.replaced_mismatch().is_none() && !same.created());
    assert_eq!(*same.lock().unwrap(), 9);
}

#[test]
fn the_old_build_wakes_and_sees_why() {
    let seg = Segment::new("migrate-wake");
    let old = std::sync::Arc::new(Shared::create(seg.name(), v1::Stats::default()).unwrap());
    let seen = old.generation();
    let waiter = {
        let old = old.clone();
        std::thread::spawn(move || old.wait_for_change(seen, Duration::from_secs(10)))
    };
    std::thread::sleep(Duration::from_millis(100));
    migrate(seg.name()).unwrap();
    let woke = waiter.join().unwrap().unwrap();
    assert!(woke.is_some(), "the waiter woke before its timeout");
    assert!(old.lock().is_err());
    assert_eq!(old.poison_info().unwrap().cause(), PoisonCause::Superseded);
}

/// Processes of build 1 count until superseded; eight processes of build 2
/// race to migrate, then count. One migration, and every increment is in
/// the final value.
#[test]
fn racing_migrators_migrate_once_and_lose_no_update() {
    let _heavy = common::heavy();
    let seg = Segment::new("migrate-race");
    Shared::create(seg.name(), v1::Stats::default()).unwrap();
    let counters: Vec<Kid> = (0..3)
        .map(|_| Kid::spawn("count-v1", &[seg.name()]))
        .collect();
    let mut migrators: Vec<Kid> = (0..8)
        .map(|_| Kid::spawn("migrate", &[seg.name(), "2000"]))
        .collect();
    for m in &mut migrators {
        m.expect("ready");
    }
    std::thread::sleep(Duration::from_millis(50));
    for m in &mut migrators {
        m.send("go");
    }
    let mut total = 0u64;
    let mut migrations = 0u64;
    for mut kid in counters.into_iter().chain(migrators) {
        let line = kid.expect("done");
        total += common::field(&line, "increments").parse::<u64>().unwrap();
        migrations += common::field(&line, "migrated").parse::<u64>().unwrap();
        kid.wait_success();
    }
    let s = Shared::<v2::Stats>::open(seg.name()).unwrap();
    let v = *s.lock().unwrap();
    say(format_args!(
        "{total} increments, {migrations} migration(s), value {v:?}"
    ));
    assert_eq!(migrations, 1, "exactly one process migrated");
    assert_eq!(v.migrations, 1, "the closure ran once");
    assert_eq!(v.requests, total, "no update lost");
}

/// A migrating process SIGKILLed at a random point: the name holds a
/// complete old or new segment, never neither; the next caller finishes.
#[test]
fn killed_migrations_always_leave_a_segment_under_the_name() {
    let _heavy = common::heavy();
    let seg = Segment::new("migrate-kill");
    let mut rng = 0x9e37_79b9_7f4a_7c15u64;
    let mut next = || {
        rng ^= rng << 13;
        rng ^= rng >> 7;
        rng ^= rng << 17;
        rng
    };
    let (mut found_old, mut marked_old, mut found_new) = (0, 0, 0);
    for round in 0..200 {
        let _ = shmstore::unlink(seg.name());
        Shared::create(seg.name(), v1::Stats { requests: round }).unwrap();
        let mut kid = Kid::spawn("migrate-slowly", &[seg.name(), &(next() % 400).to_string()]);
        kid.expect("ready");
        kid.send("go");
        std::thread::sleep(Duration::from_micros(next() % 1500));
        kid.kill();
        let old = Shared::<v1::Stats>::open(seg.name());
        let new = Shared::<v2::Stats>::open(seg.name());
        match (&old, &new) {
            (Ok(o), Err(_)) => {
                found_old += 1;
                // Killed between marking the old segment and the exchange:
                // still under the name, superseded; the next caller migrates.
                if o.poison_info().map(|i| i.cause()) == Some(PoisonCause::Superseded) {
                    marked_old += 1;
                }
            }
            (Err(_), Ok(n)) => {
                found_new += 1;
                let v = match n.lock() {
                    Ok(g) => *g,
                    Err(p) => *p.into_inner(),
                };
                assert_eq!(v.requests, round, "round {round}: the value carried over");
            }
            _ => panic!("round {round}: old {:?}, new {:?}", old.err(), new.err()),
        }
        drop((old, new));
        // The next caller finishes whatever the kill interrupted.
        let done = migrate(seg.name()).unwrap();
        let v = match done.lock() {
            Ok(g) => *g,
            Err(p) => *p.into_inner(),
        };
        assert_eq!((v.requests, v.migrations), (round, 1), "round {round}");
        // What a kill leaves under a temporary name goes with the next
        // creation of the name: never more than the last kill's.
        let left = temporaries(seg.name());
        assert!(left.len() <= 1, "round {round}: {left:?}");
    }
    say(format_args!(
        "kills left the old segment {found_old} times ({marked_old} of them marked \
         superseded), the new one {found_new} times"
    ));
}

/// The entry point of child processes (does nothing in a normal test run).
#[test]
fn child_entry() {
    let Some(args) = role() else { return };
    let name = args[1].as_str();
    match args[0].as_str() {
        "hold" => {
            let s = Shared::<v1::Stats>::open(name).unwrap();
            let mut g = s.lock().unwrap();
            g.requests += 1;
            say("holding");
            std::thread::sleep(Duration::from_secs(60));
        }
        "count-v1" => {
            let s = Shared::<v1::Stats>::open(name).unwrap();
            let mut increments = 0u64;
            loop {
                match s.lock() {
                    Ok(mut g) => {
                        g.requests += 1;
                        increments += 1;
                    }
                    Err(_) => {
                        let cause = s.poison_info().map(|i| i.cause());
                        assert_eq!(cause, Some(PoisonCause::Superseded));
                        break;
                    }
                }
            }
            say(format_args!("done increments={increments} migrated=0"));
        }
        "migrate" => {
            let n: u64 = args[2].parse().unwrap();
            say("ready");
            common::command();
            let s = migrate(name).unwrap();
            for _ in 0..n {
                s.lock().unwrap().requests += 1;
            }
            say(format_args!(
                "done increments={n} migrated={}",
                u8::from(s.migrated())
            ));
        }
        "migrate-slowly" => {
            let nap: u64 = args[2].parse().unwrap();
            say("ready");
            common::command();
            let _ = SharedOptions::new().open_or_migrate(name, v2::Stats::default(), |old| {
                std::thread::sleep(Duration::from_micros(nap));
                upgrade(old)
            });
            std::thread::sleep(Duration::from_secs(60));
        }
        other => panic!("unknown role {other}"),
    }
    std::process::exit(0);
}
