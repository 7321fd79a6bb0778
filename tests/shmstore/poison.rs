//! Poison that says what happened: `poison_info()` after a holder process
//! was killed (on `Shared`, `SharedReader` and store entries) or a holder
//! thread panicked, `clear_poison()`, handles opened with
//! `poisoning(false)`, garbage in the poison record, and how soon a
//! snapshot reports a writer killed in the middle of a write.

use crate::common;

use std::os::unix::fs::FileExt;
use std::time::{Duration, Instant, SystemTime};

use common::{command, field, gettid, role, say, Counter, Kid, Segment};
use shmstore::{PoisonCause, Shared, SharedOptions, SharedReader, Store};

/// Where a value segment's lock is, and its poison cause, holder and time
/// (src/segment/header.rs, src/lock/mod.rs).
const LOCK_AT: u64 = 256;
const CAUSE_AT: u64 = LOCK_AT + 12;
const HOLDER_AT: u64 = LOCK_AT + 16;
const TIME_AT: u64 = LOCK_AT + 24;

// ===========================================================================
// Roles played by child processes

/// The entry point of child processes (does nothing in a normal test run).
#[test]
fn child_entry() {
    let Some(args) = role() else { return };
    let arg = |i: usize| args[i].as_str();
    match arg(0) {
        "hold" => hold(&Shared::<Counter>::open(arg(1)).unwrap()),
        "hold-entry" => {
            let store = Store::open(arg(1)).unwrap();
            hold(&store.get::<Counter>(arg(2)).unwrap())
        }
        other => panic!("unknown role {other}"),
    }
}

/// Locks (accepting poison), begins a write (value 42, its pid; `_pad`
/// not yet), says so with its thread and process ids, and holds the lock
/// until killed.
fn hold(c: &Shared<Counter>) {
    let mut g = c.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
    g.value = 42;
    g.last_pid = std::process::id();
    say(format!(
        "locked tid={} pid={}",
        gettid(),
        std::process::id()
    ));
    // Until killed (or the parent goes away).
    let _ = command();
    std::process::exit(3);
}

/// Starts a holder playing `role` with `args`, waits until it holds the
/// lock, kills it; its (pid, tid).
#[track_caller]
fn killed_holder(role: &str, args: &[&str]) -> (u32, u32) {
    let mut kid = Kid::spawn(role, args);
    let line = kid.expect("locked");
    let tid: u32 = field(&line, "tid").parse().unwrap();
    let pid: u32 = field(&line, "pid").parse().unwrap();
    assert_eq!(pid, kid.pid());
    kid.kill();
    kid.wait();
    (pid, tid)
}

// ===========================================================================
// Killed holders

#[test]
fn a_killed_holder_is_named_by_poison_info_until_cleared() {
    let seg = Segment::new("poison-killed");
    let c = Shared::create(seg.name(), Counter::default()).unwrap();
    let reader = SharedReader::<Counter>::open(seg.name()).unwrap();
    assert_eq!(c.poison_info(), None);
    let t0 = SystemTime::now();
    let (pid, tid) = killed_holder("hold", &[seg.name()]);

    let g = c.lock().expect_err("a killed holder poisons");
    assert_eq!(g.into_inner().value, 42);
    let t1 = SystemTime::now();

    let info = c.poison_info().expect("poisoned");
    assert_eq!(info.segment(), seg.name());
    assert_eq!(info.pid(), Some(pid));
    assert_eq!(info.tid(), tid);
    assert_eq!(info.cause(), PoisonCause::Killed);
    assert!(
        info.time() >= t0 - Duration::from_secs(1) && info.time() <= t1 + Duration::from_secs(1),
        "{:?} not within the test",
        info.time()
    );
    let text = info.to_string();
    for part in [
        format!("segment \"{}\"", seg.name()),
        format!("process {pid} (thread {tid}) was killed"),
        format!("shmstore unpoison {}", seg.name()),
        "clear_poison()".to_owned(),
    ] {
        assert!(text.contains(&part), "{text:?} lacks {part:?}");
    }

    // The read-only handle reads the same record, and cannot clear it.
    assert_eq!(reader.poison_info(), Some(info.clone()));
    assert!(reader.snapshot().is_err());

    c.clear_poison();
    assert_eq!(c.poison_info(), None);
    assert_eq!(reader.poison_info(), None);
    assert_eq!(c.lock().expect("cleared").value, 42);
    assert_eq!(reader.snapshot().expect("cleared").value, 42);
}

#[test]
fn a_killed_entry_holder_is_named_with_its_key() {
    let seg = Segment::new("poison-store");
    let store = Store::create(seg.name(), 64 * 1024).unwrap();
    let e = store.insert("jobs", Counter::default()).unwrap();
    let (pid, tid) = killed_holder("hold-entry", &[seg.name(), "jobs"]);

    assert!(e.lock().is_err());
    let info = e.poison_info().expect("poisoned");
    assert!(info.segment().contains("jobs"), "{}", info.segment());
    assert!(info.segment().contains(seg.name()), "{}", info.segment());
    assert_eq!((info.pid(), info.tid()), (Some(pid), tid));
    assert_eq!(info.cause(), PoisonCause::Killed);
    let text = info.to_string();
    assert!(
        text.contains(&format!("shmstore unpoison {} --entry jobs", seg.name())),
        "{text}"
    );
    // Another handle on the entry sees the same.
    let again = store.get::<Counter>("jobs").unwrap();
    assert_eq!(again.poison_info(), Some(info));
    again.clear_poison();
    assert_eq!(e.poison_info(), None);
    assert!(e.lock().is_ok());
}

// ===========================================================================
// Panicking holders

#[test]
fn a_panicking_holder_thread_is_named_as_panicked() {
    let seg = Segment::new("poison-panic");
    let c = Shared::create(seg.name(), Counter::default()).unwrap();
    let tid = std::thread::scope(|s| {
        s.spawn(|| {
            let tid = gettid();
            let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                let mut g = c.lock().unwrap();
                g.value = 7;
                panic!("deliberate panic while holding the lock");
            }));
            assert!(r.is_err());
            tid
        })
        .join()
        .unwrap()
    });
    let info = c.poison_info().expect("poisoned");
    assert_eq!(info.cause(), PoisonCause::Panicked);
    assert_eq!(info.pid(), Some(std::process::id()));
    assert_eq!(info.tid(), tid);
    assert!(info.to_string().contains("panicked"), "{info}");

    // The first cause stays: a later killed holder does not replace it.
    let (_, _) = killed_holder("hold", &[seg.name()]);
    let g = c.lock().expect_err("still poisoned");
    drop(g);
    assert_eq!(c.poison_info().unwrap().cause(), PoisonCause::Panicked);
    c.clear_poison();
    assert!(c.lock().is_ok());
}

// ===========================================================================
// Handles that opt out of poisoning

#[test]
fn handles_without_poisoning_recover_and_clear_for_everyone() {
    let seg = Segment::new("poison-off");
    let c = Shared::create(seg.name(), Counter::default()).unwrap();
    let lax = SharedOptions::new()
        .poisoning(false)
        .open::<Counter>(seg.name())
        .unwrap();

    // A writer killed mid-write: the snapshot commits its write and clears.
    let (pid, _) = killed_holder("hold", &[seg.name()]);
    let g0 = c.generation();
    let v = lax.snapshot().expect("never Err for poison");
    assert_eq!((v.value, v.last_pid), (42, pid));
    assert_eq!(c.poison_info(), None, "cleared for everyone");
    assert_eq!(
        c.generation(),
        g0 + 1,
        "the dead holder's write is committed"
    );
    assert!(c.lock().is_ok());

    // lock().
    killed_holder("hold", &[seg.name()]);
    let mut g = lax.lock().expect("never Err for poison");
    g.value += 1;
    drop(g);
    assert_eq!(c.poison_info(), None);
    assert_eq!(c.lock().unwrap().value, 43);

    // try_lock() and try_lock_for().
    killed_holder("hold", &[seg.name()]);
    assert_eq!(lax.try_lock().expect("never Err for poison").value, 42);
    assert_eq!(c.poison_info(), None);
    killed_holder("hold", &[seg.name()]);
    assert!(lax.try_lock_for(Duration::from_secs(5)).is_ok());
    assert_eq!(c.poison_info(), None);

    // A panicking holder's poison too; snapshot_with_generation and
    // snapshot_into as well.
    let _ = std::thread::scope(|s| {
        s.spawn(|| {
            let _g = c.lock().unwrap();
            panic!("deliberate panic while holding the lock");
        })
        .join()
    });
    assert!(c.poison_info().is_some());
    let (v, g) = lax
        .snapshot_with_generation()
        .expect("never Err for poison");
    assert_eq!((v.value, g), (42, c.generation()));
    assert_eq!(c.poison_info(), None);
    killed_holder("hold", &[seg.name()]);
    let mut out = Counter::default();
    assert!(lax.snapshot_into(&mut out).is_ok());
    assert_eq!(out.value, 42);

    // A read-only handle without poisoning gets Ok, and leaves the poison.
    killed_holder("hold", &[seg.name()]);
    assert!(c.lock().is_err());
    let reader = SharedOptions::new()
        .poisoning(false)
        .open_read_only::<Counter>(seg.name())
        .unwrap();
    assert_eq!(reader.snapshot().expect("never Err for poison").value, 42);
    assert!(reader.poison_info().is_some());
}

#[test]
fn store_entries_follow_the_store_handles_poisoning() {
    let seg = Segment::new("poison-off-store");
    let strict = Store::create(seg.name(), 64 * 1024).unwrap();
    strict.insert("n", Counter::default()).unwrap();
    let lax = SharedOptions::new()
        .poisoning(false)
        .open_store(seg.name())
        .unwrap();
    killed_holder("hold-entry", &[seg.name(), "n"]);
    let e = lax.get::<Counter>("n").unwrap();
    assert_eq!(e.lock().expect("never Err for poison").value, 42);
    assert_eq!(strict.get::<Counter>("n").unwrap().poison_info(), None);
}

// ===========================================================================
// Garbage in the poison record

#[test]
fn any_bytes_in_the_poison_record_print() {
    let path = std::env::temp_dir().join(format!("shmstore-it-poison-{}", std::process::id()));
    /// Removes the file when the test ends, however it ends.
    struct Remove(std::path::PathBuf);
    impl Drop for Remove {
        fn drop(&mut self) {
            let _ = std::fs::remove_file(&self.0);
        }
    }
    let _remove = Remove(path.clone());
    let c = Shared::create(path.as_path(), Counter::default()).unwrap();
    let file = std::fs::OpenOptions::new().write(true).open(&path).unwrap();
    let cases: [(u32, u64, u64); 5] = [
        (u32::MAX, u64::MAX, u64::MAX),
        (1, 0, 0),
        (2, u64::MAX, 1),
        (3, 1 << 63, u64::MAX / 2),
        (0x5555_5555, 0x0000_0000_ffff_ffff, 12345),
    ];
    for (cause, holder, time) in cases {
        file.write_all_at(&cause.to_ne_bytes(), CAUSE_AT).unwrap();
        file.write_all_at(&holder.to_ne_bytes(), HOLDER_AT).unwrap();
        file.write_all_at(&time.to_ne_bytes(), TIME_AT).unwrap();
        let info = c.poison_info().expect("any non-zero cause is poison");
        assert!(!info.to_string().is_empty());
        assert!(info.time() >= SystemTime::UNIX_EPOCH);
        assert_eq!(info.tid(), holder as u32);
        if cause > 3 {
            assert_eq!(info.cause(), PoisonCause::Unknown);
        }
        let reader = SharedReader::<Counter>::open(path.as_path()).unwrap();
        assert_eq!(reader.poison_info().unwrap().to_string(), info.to_string());
        let report = shmstore::inspect::report(path.as_path()).unwrap();
        let slot = report.slot().expect("a value");
        assert_eq!(slot.poison.as_ref().map(|p| p.cause()), Some(info.cause()));
        assert!(c.lock().is_err());
    }
    c.clear_poison();
    assert_eq!(c.poison_info(), None);
}

// ===========================================================================
// How soon a snapshot reports a writer killed mid-write

#[test]
fn a_snapshot_reports_a_writer_killed_mid_write_soon() {
    let seg = Segment::new("poison-snapshot-timing");
    let c = Shared::create(seg.name(), Counter::default()).unwrap();
    let mut times = Vec::new();
    for _ in 0..5 {
        killed_holder("hold", &[seg.name()]);
        let t0 = Instant::now();
        let got = c.snapshot();
        times.push(t0.elapsed());
        let v = got.expect_err("a writer killed mid-write poisons the snapshot");
        assert_eq!(v.into_inner().value, 42);
        // Commit the dead writer's write and clear, for the next round.
        drop(c.lock());
        c.clear_poison();
    }
    eprintln!("snapshot after a writer killed mid-write answered in {times:?}");
    for t in times {
        assert!(t < Duration::from_secs(1), "took {t:?}");
    }
}
