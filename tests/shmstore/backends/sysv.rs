//! The System V backend with real processes (this test binary run again,
//! see `common`): increments across processes, a holder killed holding the
//! lock, races to create, segments of other types and of other programs,
//! `IPC_RMID` while attached, modes, owners, limits, private segments and
//! `ftok`.
//!
//! Every key comes from [`Key`], which marks its segment for removal when
//! dropped, and every child is killed with its [`Kid`], so nothing is left
//! in `ipcs -m` even when an assertion fails. Keys are
//! `0x3000_0000 | pid << 6 | n`, so they are unique per process and never
//! `IPC_PRIVATE`.

use crate::common;

use std::sync::PoisonError;
use std::time::{Duration, Instant};

use common::{
    command, eventually, failure, field, is_root, outcome, race_to_the_end, report_race, role, say,
    variant, Counter, Key, Kid, Tally, Wider,
};
use shmstore::{Error, Shareable, Shared, SharedOptions, SysvKey};

/// 8 KiB: more than a SHMMAX of 4096.
#[derive(Shareable)]
#[repr(C)]
struct Large {
    data: [u64; 1024],
}

/// Where things are in a segment (see src/segment/header.rs).
const STATE_AT: usize = 12;
const PID_NS_AT: usize = 88;
const LOCK_AT: usize = 256;
const VALUE_AT: usize = 304;
/// The size of a `Counter` segment.
fn counter_len() -> usize {
    common::segment_len::<Counter>()
}

/// The liveness bound for noticing a dead holder (documented: about 50 ms).
const RECOVERY: Duration = Duration::from_secs(1);

// ===========================================================================
// Keys, and segments made by hand

/// A key of this file's range (see `common::Key`).
fn new_key() -> Key {
    Key::in_range(0x3000_0000)
}

fn key_arg(s: &str) -> SysvKey {
    SysvKey::new(s.parse().expect("a key"))
}

/// Makes a segment with libc, as another program would; returns its id.
fn raw_create(key: SysvKey, size: usize, mode: i32) -> i32 {
    // SAFETY: shmget takes no pointers.
    let id = unsafe { libc::shmget(key.key(), size, libc::IPC_CREAT | libc::IPC_EXCL | mode) };
    assert!(id >= 0, "shmget: {}", std::io::Error::last_os_error());
    id
}

/// A segment attached with libc, read and written byte by byte.
struct Raw {
    ptr: *mut u8,
    len: usize,
}

impl Raw {
    /// Attaches segment `id`, which is at least `len` bytes long.
    fn attach(id: i32, len: usize) -> Raw {
        // SAFETY: a null address lets the kernel choose a free one; flags 0
        // attach read-write.
        let p = unsafe { libc::shmat(id, std::ptr::null(), 0) };
        assert!(
            p as isize != -1,
            "shmat: {}",
            std::io::Error::last_os_error()
        );
        Raw { ptr: p.cast(), len }
    }

    fn read(&self) -> Vec<u8> {
        (0..self.len)
            // SAFETY: i < len, and the segment is at least len bytes long
            // (`attach`'s contract), all of it attached; volatile byte reads,
            // as other processes may write it.
            .map(|i| unsafe { self.ptr.add(i).read_volatile() })
            .collect()
    }

    fn write(&self, at: usize, bytes: &[u8]) {
        assert!(at + bytes.len() <= self.len);
        for (i, &b) in bytes.iter().enumerate() {
            // SAFETY: in bounds (asserted above); a volatile byte write.
            unsafe { self.ptr.add(at + i).write_volatile(b) };
        }
    }
}

impl Drop for Raw {
    fn drop(&mut self) {
        // SAFETY: ptr is what shmat returned, detached only here.
        unsafe { libc::shmdt(self.ptr.cast()) };
    }
}

/// Sets the owner of segment `id` (`IPC_SET`; root or the owner only).
fn set_owner(id: i32, uid: u32) {
    let mut ds = std::mem::MaybeUninit::<libc::shmid_ds>::zeroed();
    // SAFETY: IPC_STAT writes one shmid_ds to a buffer of that type.
    let rc = unsafe { libc::shmctl(id, libc::IPC_STAT, ds.as_mut_ptr()) };
    assert_eq!(rc, 0, "IPC_STAT: {}", std::io::Error::last_os_error());
    // SAFETY: integers only; filled in by IPC_STAT on top of zeroes.
    let mut ds = unsafe { ds.assume_init() };
    ds.shm_perm.uid = uid;
    // SAFETY: IPC_SET reads one initialised shmid_ds.
    let rc = unsafe { libc::shmctl(id, libc::IPC_SET, &mut ds) };
    assert_eq!(rc, 0, "IPC_SET: {}", std::io::Error::last_os_error());
}

/// Whether /proc/sysvipc/shm lists segment `id`.
fn listed(id: i32) -> bool {
    let text = std::fs::read_to_string("/proc/sysvipc/shm").expect("/proc/sysvipc/shm");
    text.lines()
        .skip(1)
        .any(|l| l.split_whitespace().nth(1) == Some(&id.to_string()))
}

/// The perms column of /proc/sysvipc/shm for segment `id`.
fn listed_perms(id: i32) -> Option<u32> {
    let text = std::fs::read_to_string("/proc/sysvipc/shm").ok()?;
    let line = text
        .lines()
        .skip(1)
        .find(|l| l.split_whitespace().nth(1) == Some(&id.to_string()))?;
    u32::from_str_radix(line.split_whitespace().nth(2)?, 8).ok()
}

fn id_of<T: Shareable>(s: &Shared<T>) -> i32 {
    s.sysv_info()
        .expect("a System V segment")
        .expect("IPC_STAT")
        .id
}

// ===========================================================================
// Roles played by child processes

/// The entry point of child processes (does nothing in a normal test run).
#[test]
fn child_entry() {
    let Some(args) = role() else { return };
    let arg = |i: usize| args[i].as_str();
    let code = match arg(0) {
        "incr" => incr(key_arg(arg(1)), arg(2).parse().unwrap()),
        "hold" => hold(key_arg(arg(1))),
        "race" => race(key_arg(arg(1)), arg(2), arg(3).parse().unwrap()),
        "nobody" => as_nobody(key_arg(arg(1)), key_arg(arg(2))),
        "limits" => limits(arg(1)),
        other => panic!("unknown role {other}"),
    };
    // A role that ends well returns to the harness, which exits from the
    // main thread. `exit` from this thread can race the signal glibc's
    // setuid sends to every thread (rust-lang/rust#161018): children that
    // dropped to another user died of SIGSEGV about once in 300 runs.
    if code != 0 {
        std::process::exit(code);
    }
}

/// Waits for "go", then increments `count` times under the lock.
fn incr(key: SysvKey, count: u64) -> i32 {
    let c = Shared::<Counter>::open(key).expect("open");
    let pid = std::process::id();
    say("ready");
    assert_eq!(command().as_deref(), Some("go"));
    for i in 0..count {
        let mut g = c.lock().expect("nobody died holding the lock");
        // Read, now and then give the CPU away, write: a lock that let two
        // holders in would lose updates here.
        let v = g.value;
        if i % 16 == 0 {
            std::thread::yield_now();
        }
        g.value = v + 1;
        g.last_pid = pid;
    }
    0
}

/// Locks, writes 42, says so, and holds the lock until killed.
fn hold(key: SysvKey) -> i32 {
    let c = Shared::<Counter>::open(key).expect("open");
    let mut g = c.lock().expect("a fresh lock is not poisoned");
    g.value = 42;
    g.last_pid = std::process::id();
    say("locked");
    let _ = command();
    std::process::exit(3)
}

/// Waits for "go", then `create`s or `open_or_create`s (`kind`) with
/// `_pad = index + 1`, and if that worked makes 1000 increments.
fn race(key: SysvKey, kind: &str, index: u32) -> i32 {
    let init = Counter {
        value: 0,
        last_pid: 0,
        _pad: index + 1,
    };
    say("ready");
    assert_eq!(command().as_deref(), Some("go"));
    let got = match kind {
        "create" => Shared::create(key, init),
        "ooc" => Shared::open_or_create(key, init),
        // Retries until someone has made the key.
        "open" => {
            let t0 = Instant::now();
            loop {
                match Shared::open(key) {
                    Err(Error::NotFound { .. }) if t0.elapsed() < Duration::from_secs(10) => {
                        std::thread::yield_now()
                    }
                    other => break other,
                }
            }
        }
        other => panic!("unknown kind {other}"),
    };
    report_race(got);
    0
}

/// Drops to uid/gid 65534 and opens a private (0600) and a public (0666)
/// segment of root's.
fn as_nobody(private: SysvKey, public: SysvKey) -> i32 {
    use nix::unistd::{setgid, setgroups, setuid, Gid, Uid};
    setgroups(&[]).unwrap();
    setgid(Gid::from_raw(65534)).unwrap();
    setuid(Uid::from_raw(65534)).unwrap();
    say(format!(
        "private={}",
        outcome(Shared::<Counter>::open(private))
    ));
    say(format!(
        "public={}",
        outcome(Shared::<Counter>::open(public))
    ));
    match SharedOptions::new()
        .allow_foreign_owner(true)
        .open::<Counter>(public)
    {
        Ok(c) => {
            let mut g = c.lock().expect("not poisoned");
            g.value += 1;
            say(format!("allowed=ok value={}", g.value));
        }
        Err(e) => say(format!("allowed={}", variant(&e))),
    }
    say(format!("unlink={}", outcome(shmstore::unlink(public))));
    0
}

/// In an IPC namespace of its own (so the limits changed here affect
/// nobody else, and its segments die with it), lowers SHMMAX, SHMMNI and
/// SHMALL in turn and reports the errors. Root only; says "skip" when the
/// namespace cannot be made.
fn limits(base: &str) -> i32 {
    // SAFETY: unshare takes flags only. The IPC namespace belongs to the
    // calling thread (its nsproxy), which makes every call below.
    if unsafe { libc::unshare(libc::CLONE_NEWIPC) } != 0 {
        say(format!("skip unshare: {}", std::io::Error::last_os_error()));
        return 0;
    }
    let set = |what: &str, v: u64| {
        std::fs::write(format!("/proc/sys/kernel/{what}"), v.to_string())
            .unwrap_or_else(|e| panic!("setting {what}: {e}"))
    };
    if let Err(e) = std::fs::write("/proc/sys/kernel/shmmax", "4096") {
        say(format!("skip /proc/sys/kernel/shmmax: {e}"));
        return 0;
    }
    let base: i32 = base.parse().unwrap();
    let key = |n: i32| SysvKey::new(base + n);
    let err = |r: Result<Shared<Counter>, Error>| match r {
        Ok(_) => "ok".to_owned(),
        Err(e) => format!("{} {e}", variant(&e)),
    };

    let big = Shared::create(key(1), Large { data: [0; 1024] });
    match big {
        Ok(_) => say("shmmax=ok"),
        Err(e) => say(format!("shmmax={} {e}", variant(&e))),
    }
    // A segment that fits, kept after the handle goes: it takes one id and
    // one page for the two checks below.
    say(format!(
        "small={}",
        err(Shared::create(key(2), Counter::default()))
    ));
    set("shmmax", 1 << 30);

    set("shmmni", 1); // key(2) takes the one id
    say(format!(
        "shmmni={}",
        err(Shared::create(key(3), Counter::default()))
    ));
    set("shmmni", 4096);

    set("shmall", 1); // key(2) takes the one page
    say(format!(
        "shmall={}",
        err(Shared::create(key(4), Counter::default()))
    ));
    // Nothing was left of the failed attempts.
    let text = std::fs::read_to_string("/proc/sysvipc/shm").unwrap();
    say(format!("segments={}", text.lines().count() - 1));
    // Removed while its namespace lives, with what stands for it in
    // /dev/shm (which outlives the namespace).
    shmstore::unlink(key(2)).unwrap();
    0
}

// ===========================================================================
// Tests

/// 4 processes × 20 000 locked read-yield-write increments: none is lost.
#[test]
fn processes_lose_no_update() {
    const PROCS: usize = 4;
    const EACH: u64 = 20_000;
    let key = new_key();
    let c = Shared::create(key.key(), Counter::default()).unwrap();
    let mut kids: Vec<Kid> = (0..PROCS)
        .map(|_| Kid::spawn("incr", &[&key.arg(), &EACH.to_string()]))
        .collect();
    race_to_the_end(&mut kids);
    let g = c.lock().expect("not poisoned");
    assert_eq!(g.value, PROCS as u64 * EACH);
    assert!(kids.iter().any(|k| k.pid() == g.last_pid));
}

/// A holder SIGKILLed while holding: the next `lock()` is poisoned within
/// the bound and sees what the holder wrote.
#[test]
fn a_killed_holder_poisons_and_keeps_the_value() {
    let key = new_key();
    let c = Shared::create(key.key(), Counter::default()).unwrap();
    let mut kid = Kid::spawn("hold", &[&key.arg()]);
    kid.expect("locked");
    assert!(c.is_locked());
    kid.kill();
    kid.wait();
    let t0 = Instant::now();
    let p = c.lock().expect_err("the holder died holding the lock");
    assert!(t0.elapsed() < RECOVERY, "took {:?}", t0.elapsed());
    let g = p.into_inner();
    assert_eq!(g.value, 42);
    assert_eq!(g.last_pid, kid.pid());
    drop(g);
    assert!(c.is_poisoned());
    c.clear_poison();
    assert_eq!(c.lock().expect("cleared").value, 42);
}

/// Another type (same size, or another size) is refused with
/// LayoutMismatch, and the segment is left as it was.
#[test]
fn another_type_is_a_layout_mismatch() {
    let key = new_key();
    let c = Shared::create(
        key.key(),
        Counter {
            value: 7,
            ..Default::default()
        },
    )
    .unwrap();
    let e = failure(Shared::<Tally>::open(key.key()));
    match &e {
        Error::LayoutMismatch {
            found_type,
            expected_type,
            ..
        } => {
            assert_eq!(found_type, "Counter");
            assert_eq!(*expected_type, "Tally");
        }
        other => panic!("{other:?}"),
    }
    assert!(e.to_string().contains("System V key 0x3"), "{e}");
    // Another size too: the type wins over the size.
    let e = failure(Shared::open_or_create(key.key(), Wider::default()));
    assert!(matches!(e, Error::LayoutMismatch { .. }), "{e:?}");
    let e = failure(Shared::create(key.key(), Wider::default()));
    assert!(matches!(e, Error::AlreadyExists { .. }), "{e:?}");
    assert_eq!(c.lock().unwrap().value, 7);
    assert_eq!(
        Shared::<Counter>::open(key.key())
            .unwrap()
            .lock()
            .unwrap()
            .value,
        7
    );
}

/// Segments of other programs under our key: garbage of the right size or
/// another, and zeroes of another size, are Corrupt and never written.
#[test]
fn foreign_segments_are_refused_and_left_alone() {
    for (size, garbage) in [
        (counter_len(), true),
        (4096, true),
        (100, true),
        (100, false),
        (counter_len() - 8, false),
        (counter_len() + 8, false),
    ] {
        let key = new_key();
        let id = raw_create(key.key(), size, 0o600);
        let raw = Raw::attach(id, size);
        if garbage {
            let bytes: Vec<u8> = (0..size).map(|i| (i * 37 + 11) as u8).collect();
            raw.write(0, &bytes);
        }
        let before = raw.read();
        let what = format!("{size} bytes, garbage={garbage}");
        let e = failure(Shared::<Counter>::open(key.key()));
        assert!(matches!(e, Error::Corrupt { .. }), "{what}: {e:?}");
        if !garbage {
            assert!(e.to_string().contains("does not match"), "{what}: {e}");
        }
        let e = failure(Shared::open_or_create(key.key(), Counter::default()));
        assert!(matches!(e, Error::Corrupt { .. }), "{what}: {e:?}");
        let e = failure(Shared::create(key.key(), Counter::default()));
        assert!(matches!(e, Error::AlreadyExists { .. }), "{what}: {e:?}");
        assert_eq!(raw.read(), before, "{what}: written over");
    }

    // The right size, zeroes except in the value: not ours either.
    let key = new_key();
    let id = raw_create(key.key(), counter_len(), 0o600);
    let raw = Raw::attach(id, counter_len());
    raw.write(VALUE_AT + 3, &[1]);
    let before = raw.read();
    let e = failure(Shared::open_or_create(key.key(), Counter::default()));
    assert!(matches!(e, Error::Corrupt { .. }), "{e:?}");
    assert_eq!(raw.read(), before);
}

/// A zeroed segment of the right size is one whose creator has not
/// started: `open` waits for it (and gives up with Incomplete), and
/// `open_or_create` initialises it. This keeps the README's stated System V
/// exception true: such a segment made by another program (here, by the
/// test with a raw `shmget`) is taken over, as it cannot be told from ours.
#[test]
fn open_waits_for_a_creator_that_has_not_started() {
    let key = new_key();
    let id = raw_create(key.key(), counter_len(), 0o600);
    let k = key.key();
    let opener = std::thread::spawn(move || {
        let t0 = Instant::now();
        let r = Shared::<Counter>::open(k).map(|c| c.lock().unwrap().value);
        (r, t0.elapsed())
    });
    std::thread::sleep(Duration::from_millis(300));
    let c = Shared::open_or_create(
        key.key(),
        Counter {
            value: 5,
            ..Default::default()
        },
    )
    .unwrap();
    assert_eq!(id_of(&c), id, "the same segment");
    let (r, took) = opener.join().unwrap();
    assert_eq!(r.unwrap(), 5);
    assert!(took >= Duration::from_millis(250), "{took:?}");

    // Nobody comes: Incomplete after a few seconds.
    let key = new_key();
    raw_create(key.key(), counter_len(), 0o600);
    let t0 = Instant::now();
    let e = failure(Shared::<Counter>::open(key.key()));
    assert!(matches!(e, Error::Incomplete { .. }), "{e:?}");
    assert!(t0.elapsed() >= Duration::from_secs(4), "{:?}", t0.elapsed());
}

/// A creator that died while initialising (our header in state
/// INITIALISING, the lock held by a dead thread): `open` reports
/// Incomplete, `open_or_create` initialises it again, without poison.
#[test]
fn a_dead_initialiser_is_taken_over() {
    // A real Counter segment to copy the header from.
    let model = new_key();
    let m = Shared::create(
        model.key(),
        Counter {
            value: 9,
            ..Default::default()
        },
    )
    .unwrap();
    let mut bytes = Raw::attach(id_of(&m), counter_len()).read();
    bytes[STATE_AT..STATE_AT + 4].copy_from_slice(&1u32.to_ne_bytes());
    // Thread id 2^22 - 1 with start time 7: nobody, or not that thread.
    let dead = (7u64 << 32) | ((1 << 22) - 1);
    bytes[LOCK_AT..LOCK_AT + 8].copy_from_slice(&dead.to_ne_bytes());

    let key = new_key();
    let id = raw_create(key.key(), counter_len(), 0o600);
    let raw = Raw::attach(id, counter_len());
    raw.write(0, &bytes);

    let e = failure(Shared::<Counter>::open(key.key()));
    assert!(matches!(e, Error::Incomplete { .. }), "{e:?}");

    let c = Shared::open_or_create(
        key.key(),
        Counter {
            value: 77,
            ..Default::default()
        },
    )
    .unwrap();
    assert!(!c.is_poisoned());
    assert_eq!(c.lock().expect("not poisoned").value, 77);
    assert_eq!(raw.read()[STATE_AT], 2, "READY");
    assert!(!c.is_locked());
}

/// A segment whose header names another PID namespace (made in a
/// container sharing this IPC namespace) opens and works, READY or still
/// initialising (then its lock is waited for as any other).
#[test]
fn another_pid_namespace_opens() {
    let key = new_key();
    let c = Shared::create(key.key(), Counter::default()).unwrap();
    let raw = Raw::attach(id_of(&c), counter_len());
    let mut ns = [0u8; 8];
    ns.copy_from_slice(&raw.read()[PID_NS_AT..PID_NS_AT + 8]);
    let other = (u64::from_ne_bytes(ns) ^ 0x5a5a).to_ne_bytes();
    raw.write(PID_NS_AT, &other);
    let d = Shared::<Counter>::open(key.key()).unwrap();
    d.lock().unwrap().value += 2;
    assert_eq!(c.lock().unwrap().value, 2);
}

/// Six processes open_or_create at once: one initialises, all share it;
/// six `create`s at once: one wins, five get AlreadyExists; three
/// open_or_create and three `open` at once: all share one segment.
#[test]
fn racing_creators_share_one_segment() {
    const PROCS: u32 = 6;
    for round in ["ooc", "create", "mixed"] {
        let key = new_key();
        let mut kids: Vec<Kid> = (0..PROCS)
            .map(|i| {
                let kind = match round {
                    "mixed" if i % 2 == 0 => "open",
                    "mixed" => "ooc",
                    other => other,
                };
                Kid::spawn("race", &[&key.arg(), kind, &i.to_string()])
            })
            .collect();
        for k in &mut kids {
            k.expect("ready");
        }
        for k in &mut kids {
            k.send("go");
        }
        let results: Vec<String> = kids.iter_mut().map(|k| k.expect("result=")).collect();
        for k in &mut kids {
            k.wait_success();
        }
        let ok: Vec<&String> = results.iter().filter(|r| r.starts_with("ok")).collect();
        let c = Shared::<Counter>::open(key.key()).unwrap();
        let g = c.lock().unwrap();
        match round {
            "ooc" | "mixed" => {
                assert_eq!(ok.len(), PROCS as usize, "{results:?}");
                let pads: Vec<&str> = ok.iter().map(|r| field(r, "pad")).collect();
                assert!(pads.iter().all(|p| *p == pads[0]), "{pads:?}");
                assert_eq!(g._pad.to_string(), pads[0]);
                assert_eq!(g.value, 1000 * u64::from(PROCS));
            }
            _ => {
                assert_eq!(ok.len(), 1, "{results:?}");
                assert!(
                    results
                        .iter()
                        .filter(|r| !r.starts_with("ok"))
                        .all(|r| r.starts_with("AlreadyExists")),
                    "{results:?}"
                );
                assert_eq!(g.value, 1000);
            }
        }
    }
}

/// IPC_RMID while attached: handles keep working, the kernel says it is
/// marked and counts the attachments, the key is free at once, and the
/// segment goes with its last detach.
#[test]
fn removal_while_attached() {
    let key = new_key();
    let a = Shared::create(key.key(), Counter::default()).unwrap();
    let b = Shared::<Counter>::open(key.key()).unwrap();
    let info = a.sysv_info().unwrap().unwrap();
    assert_eq!(info.key, key.key().key());
    assert_eq!(info.attach_count, 2);
    assert!(!info.marked_for_removal);
    assert_eq!(info.size, counter_len() as u64);
    assert_eq!(info.owner_uid, nix::unistd::geteuid().as_raw());
    assert_eq!(info.creator_pid, std::process::id() as i32);
    assert_eq!(b.sysv_info().unwrap().unwrap().id, info.id);
    assert!(listed(info.id));

    shmstore::unlink(key.key()).unwrap();
    let after = a.sysv_info().unwrap().unwrap();
    assert!(after.marked_for_removal);
    assert_eq!(after.key, 0);
    assert_eq!(after.attach_count, 2);
    a.lock().unwrap().value = 11;
    assert_eq!(b.lock().unwrap().value, 11);

    let e = failure(Shared::<Counter>::open(key.key()));
    assert!(matches!(e, Error::NotFound { .. }), "{e:?}");
    let e = failure(shmstore::unlink(key.key()));
    assert!(matches!(e, Error::NotFound { .. }), "{e:?}");
    // The key is free for a new segment.
    let fresh = Shared::create(key.key(), Counter::default()).unwrap();
    assert_ne!(id_of(&fresh), info.id);
    assert_eq!(fresh.lock().unwrap().value, 0);

    drop(a);
    assert!(listed(info.id), "b still attached");
    assert_eq!(b.sysv_info().unwrap().unwrap().attach_count, 1);
    drop(b);
    assert!(!listed(info.id), "gone with its last detach");

    // remove_on_drop removes by id: the key is free after the drop.
    let key2 = new_key();
    let r = SharedOptions::new()
        .remove_on_drop(true)
        .create(key2.key(), Counter::default())
        .unwrap();
    let id = id_of(&r);
    drop(r);
    assert!(!listed(id));
    let e = failure(Shared::<Counter>::open(key2.key()));
    assert!(matches!(e, Error::NotFound { .. }), "{e:?}");
}

/// The mode asked for is the mode the segment gets, exactly.
#[test]
fn modes_are_exact() {
    for (mode, want) in [(None, 0o600), (Some(0o640), 0o640), (Some(0o666), 0o666)] {
        let key = new_key();
        let mut opts = SharedOptions::new();
        if let Some(m) = mode {
            opts.mode(m);
        }
        let c = opts.create(key.key(), Counter::default()).unwrap();
        let info = c.sysv_info().unwrap().unwrap();
        assert_eq!(info.mode, want);
        assert_eq!(listed_perms(info.id).map(|p| p & 0o777), Some(want));
    }
    // open_or_create that creates too.
    let key = new_key();
    let c = SharedOptions::new()
        .mode(0o604)
        .open_or_create(key.key(), Counter::default())
        .unwrap();
    assert_eq!(c.sysv_info().unwrap().unwrap().mode, 0o604);
}

/// A segment of another user is ForeignOwner unless allowed; a user who
/// may not read it gets PermissionDenied. Root only.
#[test]
fn other_users_segments() {
    if !is_root() {
        eprintln!("skipped: needs root");
        return;
    }
    let key = new_key();
    let c = Shared::create(key.key(), Counter::default()).unwrap();
    set_owner(id_of(&c), 65534);
    let e = failure(Shared::<Counter>::open(key.key()));
    match e {
        Error::ForeignOwner {
            owner_uid, our_uid, ..
        } => assert_eq!((owner_uid, our_uid), (65534, 0)),
        other => panic!("{other:?}"),
    }
    let e = failure(Shared::open_or_create(key.key(), Counter::default()));
    assert!(matches!(e, Error::ForeignOwner { .. }), "{e:?}");
    let allowed = SharedOptions::new()
        .allow_foreign_owner(true)
        .open::<Counter>(key.key())
        .unwrap();
    allowed.lock().unwrap().value = 3;
    assert_eq!(c.lock().unwrap().value, 3);

    // The other way round: root's segments seen by uid 65534.
    let private = new_key();
    let public = new_key();
    let _p = Shared::create(private.key(), Counter::default()).unwrap();
    let q = SharedOptions::new()
        .mode(0o666)
        .create(public.key(), Counter::default())
        .unwrap();
    let mut kid = Kid::spawn("nobody", &[&private.arg(), &public.arg()]);
    assert_eq!(kid.expect("private="), "PermissionDenied");
    assert_eq!(kid.expect("public="), "ForeignOwner");
    assert_eq!(kid.expect("allowed="), "ok value=1");
    assert_eq!(kid.expect("unlink="), "PermissionDenied");
    kid.wait_success();
    assert_eq!(q.lock().unwrap().value, 1);
}

/// The limits SHMMAX, SHMMNI and SHMALL give errors that name them, and
/// leave nothing behind (in an IPC namespace of a child's own). Root only.
#[test]
fn limits_are_named() {
    if !is_root() {
        eprintln!("skipped: needs root");
        return;
    }
    let mut kid = Kid::spawn("limits", &["1000"]);
    let first = kid.expect("");
    if first.starts_with("skip") {
        eprintln!("skipped: {first}");
        return;
    }
    assert!(first.starts_with("shmmax=SysvLimit"), "{first}");
    assert!(
        first.contains(
            "larger than the System V limit SHMMAX (4096 bytes, /proc/sys/kernel/shmmax)"
        ),
        "{first}"
    );
    assert_eq!(kid.expect("small="), "ok");
    let shmmni = kid.expect("shmmni=");
    assert!(
        shmmni.starts_with("SysvLimit") && shmmni.contains("SHMMNI"),
        "{shmmni}"
    );
    let shmall = kid.expect("shmall=");
    assert!(
        shmall.starts_with("SysvLimit") && shmall.contains("SHMALL (1 pages in all, 1 in use"),
        "{shmall}"
    );
    assert_eq!(kid.expect("segments="), "1");
    kid.wait_success();
}

/// IPC_PRIVATE: create and open_or_create make new segments that work,
/// which nobody can find by key and which go with their last handle.
#[test]
fn private_segments() {
    let c = Shared::create(
        SysvKey::private(),
        Counter {
            value: 1,
            ..Default::default()
        },
    )
    .unwrap();
    c.lock().unwrap().value += 1;
    let info = c.sysv_info().unwrap().unwrap();
    assert_eq!(info.key, 0);
    assert_eq!(info.mode, 0o600);
    assert_eq!(info.attach_count, 1);
    assert!(info.marked_for_removal, "removed at once: it has no key");
    assert_eq!(c.name(), "System V private segment");

    let d = Shared::open_or_create(SysvKey::private(), Counter::default()).unwrap();
    assert_ne!(id_of(&d), info.id, "always a new one");
    assert_eq!(d.lock().unwrap().value, 0);
    assert_eq!(c.lock().unwrap().value, 2);

    let e = failure(Shared::<Counter>::open(SysvKey::private()));
    assert!(matches!(e, Error::InvalidName { .. }), "{e:?}");
    assert!(e.to_string().contains("IPC_PRIVATE"), "{e}");
    let e = failure(shmstore::unlink(SysvKey::private()));
    assert!(matches!(e, Error::InvalidName { .. }), "{e:?}");

    let d_id = id_of(&d);
    drop(c);
    drop(d);
    // A child another test forks at this moment holds the attachments
    // until it starts its program (under emulation a fork is a full copy,
    // for milliseconds): they go when it does.
    assert!(
        eventually(Duration::from_secs(10), || !listed(info.id)
            && !listed(d_id)),
        "left behind"
    );
}

/// SysvKey::ftok gives what libc's ftok gives.
#[test]
fn ftok_matches_libc() {
    use std::os::unix::ffi::OsStrExt;
    let dir = std::env::temp_dir();
    for n in 0..3 {
        let path = dir.join(format!("shmstore-ftok-{}-{n}", std::process::id()));
        std::fs::write(&path, b"x").unwrap();
        let c = std::ffi::CString::new(path.as_os_str().as_bytes()).unwrap();
        for proj in [1u8, b'A', 0x7f, 0xff] {
            // SAFETY: `c` is a valid C string that outlives the call.
            let want = unsafe { libc::ftok(c.as_ptr(), libc::c_int::from(proj)) };
            assert_ne!(want, -1, "ftok: {}", std::io::Error::last_os_error());
            let got = SysvKey::ftok(&path, proj).unwrap();
            assert_eq!(got.key(), want, "{} proj {proj:#x}", path.display());
        }
        std::fs::remove_file(&path).unwrap();
    }
    let e = SysvKey::ftok(dir.join("shmstore-no-such-file"), 1).unwrap_err();
    assert!(matches!(e, Error::Io { .. }), "{e:?}");
}

/// Two handles of one process share the value and the lock: a panic while
/// holding it through one poisons it for the other.
#[test]
fn two_handles_in_one_process_share_the_value() {
    let key = new_key();
    let a = Shared::create(key.key(), Counter::default()).unwrap();
    let b = Shared::<Counter>::open(key.key()).unwrap();
    a.lock().unwrap().value = 5;
    assert_eq!(b.lock().unwrap().value, 5);
    let r = std::thread::scope(|s| {
        s.spawn(|| {
            let _g = b.lock().unwrap();
            panic!("deliberate");
        })
        .join()
    });
    assert!(r.is_err());
    assert!(a.is_poisoned());
    let g = a.lock().unwrap_or_else(PoisonError::into_inner);
    assert_eq!(g.value, 5);
}
