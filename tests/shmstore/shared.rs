//! Cross-process behaviour of `Shared<T>`: real processes (this test binary
//! run again, see `common`) that increment, hold, die holding, panic holding,
//! race to create, and open hand-made or damaged objects in /dev/shm.
//!
//! Each test asserts what a user would notice: a lost update, a lock that
//! never comes back, a wrong error, a file written over, a segment left
//! behind. Bounds on time are liveness bounds the documentation promises
//! ("a dead holder is noticed within about 50 ms", asserted as 1 s), never
//! measurements of speed.

use crate::common;

use std::os::unix::fs::{FileExt, MetadataExt, OpenOptionsExt, PermissionsExt};
use std::sync::{Barrier, PoisonError, TryLockError};
use std::time::{Duration, Instant};

use common::{
    command, eventually, failure, field, gettid, is_root, outcome, proc_state, race_to_the_end,
    report_race, role, say, variant, Counter, Kid, Segment, Tally, Wider,
};
use shmstore::{Error, Shareable, Shared, SharedOptions};

/// Another build's `Counter`: same name, same size, fields reordered.
mod v2 {
    use shmstore::Shareable;

    #[derive(Shareable, Clone, Copy, Default, Debug)]
    #[repr(C)]
    pub struct Counter {
        pub last_pid: u32,
        pub _pad: u32,
        pub value: u64,
    }
}

/// 256 KiB: more than the small file systems and file size limits below.
#[derive(Shareable)]
#[repr(C)]
struct Big {
    data: [u64; BIG_WORDS],
}

const BIG_WORDS: usize = 32 * 1024;

/// Where things are in a segment (see src/segment/header.rs).
const VERSION_AT: u64 = 8;
const STATE_AT: u64 = 12;
const PID_NS_AT: u64 = 88;
const LOCK_AT: u64 = 256;
/// The size of a `Counter` segment.
fn counter_segment_len() -> u64 {
    common::segment_len::<Counter>() as u64
}

/// The liveness bound for noticing a dead holder (documented: about 50 ms).
const RECOVERY: Duration = Duration::from_secs(1);

// ===========================================================================
// Roles played by child processes

/// The entry point of child processes (does nothing in a normal test run).
#[test]
fn child_entry() {
    let Some(args) = role() else { return };
    let code = play(&args);
    // A role that ends well returns to the harness, which exits from the
    // main thread. `exit` from this thread can race the signal glibc's
    // setuid sends to every thread (rust-lang/rust#161018): children that
    // dropped to another user died of SIGSEGV about once in 300 runs.
    if code != 0 {
        std::process::exit(code);
    }
}

/// Roles whose name starts with `main-` run here, on the child's main thread,
/// before the test harness starts any thread: the harness runs tests on
/// threads of their own, and a zombie process keeps only its main thread
/// visible, so a holder that must become a zombie has to be the main thread.
#[used]
#[link_section = ".init_array"]
static MAIN_THREAD_ROLES: extern "C" fn() = main_thread_roles;

extern "C" fn main_thread_roles() {
    if let Some(args) = common::main_thread_role() {
        std::process::exit(play(&args));
    }
}

fn play(args: &[String]) -> i32 {
    let arg = |i: usize| args[i].as_str();
    match arg(0) {
        "incr" => incr(arg(1), arg(2).parse().unwrap(), arg(3).parse().unwrap()),
        "incr-any" => incr_accepting_poison(arg(1), arg(2).parse().unwrap()),
        "victim" => victim(arg(1)),
        "hold" | "main-hold" => hold(arg(1)),
        "hold-exit" => hold_exit(arg(1)),
        "wait" => wait(arg(1), arg(2)),
        "poison-check" => poison_check(arg(1)),
        "panic" => panic_holding(arg(1)),
        "race" => race(arg(1), arg(2), arg(3).parse().unwrap()),
        "modes" => modes(arg(1), arg(2), arg(3), arg(4)),
        "nobody" => as_nobody(arg(1), arg(2)),
        "fsize" => fsize_limit(arg(1)),
        "tmpfs" => small_tmpfs(arg(1)),
        other => panic!("unknown role {other}"),
    }
}

fn open(name: &str) -> Shared<Counter> {
    Shared::open(name).unwrap_or_else(|e| panic!("child could not open {name}: {e}"))
}

/// Waits for "go", then increments `count` times on each of `threads`
/// threads sharing one handle.
fn incr(name: &str, count: u64, threads: usize) -> i32 {
    let c = open(name);
    let pid = std::process::id();
    say("ready");
    assert_eq!(command().as_deref(), Some("go"));
    std::thread::scope(|s| {
        for _ in 0..threads {
            s.spawn(|| {
                for i in 0..count {
                    let mut g = c.lock().expect("nobody died holding the lock");
                    // Read, now and then give the CPU away, write: a lock
                    // that let two holders in would lose updates here.
                    let v = g.value;
                    if i % 16 == 0 {
                        std::thread::yield_now();
                    }
                    g.value = v + 1;
                    g.last_pid = pid;
                }
            });
        }
    });
    0
}

/// Waits for "go", then increments `count` times, taking over the value
/// from holders that died (the poison is expected).
fn incr_accepting_poison(name: &str, count: u64) -> i32 {
    let c = open(name);
    say("ready");
    assert_eq!(command().as_deref(), Some("go"));
    for i in 0..count {
        let mut g = c.lock().unwrap_or_else(PoisonError::into_inner);
        let v = g.value;
        if i % 16 == 0 {
            std::thread::yield_now();
        }
        g.value = v + 1;
    }
    0
}

/// Increments `value` and then `_pad` until killed, so that
/// `value - _pad` counts the others' increments (plus one if it was killed
/// between its two writes).
fn victim(name: &str) -> i32 {
    let c = open(name);
    // Ready once it has had the lock: under emulation or on a busy machine
    // its first turn can take longer than the parent waits before the kill.
    {
        let mut g = c.lock().unwrap_or_else(PoisonError::into_inner);
        g.value += 1;
        g._pad += 1;
    }
    say("ready");
    loop {
        let mut g = c.lock().unwrap_or_else(PoisonError::into_inner);
        g.value += 1;
        g._pad += 1;
    }
}

/// Locks, writes 42 and its pid, says so, and holds the lock until told
/// "release" (or killed).
fn hold(name: &str) -> i32 {
    let c = open(name);
    let pid = std::process::id();
    let mut g = c.lock().expect("a fresh lock is not poisoned");
    g.value = 42;
    g.last_pid = pid;
    say(format!("locked tid={} pid={pid}", gettid()));
    if command().as_deref() == Some("release") {
        drop(g);
        say("released");
        0
    } else {
        // The parent went away: leave without unlocking.
        std::process::exit(3)
    }
}

/// Locks, writes 43, and exits (cleanly, code 0) with the lock held.
fn hold_exit(name: &str) -> i32 {
    let c = open(name);
    let mut g = c.lock().expect("a fresh lock is not poisoned");
    g.value = 43;
    g.last_pid = std::process::id();
    say("locked");
    std::process::exit(0)
}

/// Says "waiting", then waits for the lock with `lock()` ("lock") or with
/// `try_lock_for(20 s)` ("timed") and says how it went.
fn wait(name: &str, how: &str) -> i32 {
    let c = open(name);
    say("waiting");
    let t0 = Instant::now();
    let got = match how {
        "lock" => c.lock(),
        "timed" => match c.try_lock_for(Duration::from_secs(20)) {
            Ok(g) => Ok(g),
            Err(TryLockError::Poisoned(p)) => Err(p),
            Err(TryLockError::WouldBlock) => {
                say("got wouldblock");
                return 0;
            }
        },
        other => panic!("unknown way to wait: {other}"),
    };
    let ms = t0.elapsed().as_millis();
    match got {
        Ok(g) => say(format!("got clean value={} ms={ms}", g.value)),
        Err(p) => say(format!(
            "got poisoned value={} ms={ms}",
            p.into_inner().value
        )),
    }
    0
}

/// Reports what this process sees of the poison.
fn poison_check(name: &str) -> i32 {
    let c = open(name);
    say(format!("is_poisoned={}", c.is_poisoned()));
    match c.lock() {
        Ok(g) => say(format!("lock=ok value={}", g.value)),
        Err(p) => say(format!("lock=poisoned value={}", p.into_inner().value)),
    }
    match c.try_lock() {
        Ok(_) => say("try_lock=ok"),
        Err(TryLockError::Poisoned(_)) => say("try_lock=poisoned"),
        Err(TryLockError::WouldBlock) => say("try_lock=wouldblock"),
    }
    0
}

/// Locks, writes 7, and panics with the guard alive (the harness catches
/// the panic after unwinding and exits with 101).
fn panic_holding(name: &str) -> i32 {
    let c = open(name);
    let mut g = c.lock().expect("a fresh lock is not poisoned");
    g.value = 7;
    g.last_pid = std::process::id();
    say("locked");
    panic!("deliberate panic while holding the lock");
}

/// Waits for "go", then `create`s or `open_or_create`s (`kind`) with
/// `_pad = index + 1`, and if that worked makes 1000 increments.
fn race(name: &str, kind: &str, index: u32) -> i32 {
    let init = Counter {
        value: 0,
        last_pid: 0,
        _pad: index + 1,
    };
    say("ready");
    assert_eq!(command().as_deref(), Some("go"));
    let got = match kind {
        "create" => Shared::create(name, init),
        "ooc" => Shared::open_or_create(name, init),
        "store" => {
            // Each racer asks for another capacity: the store has the winner's.
            let asked = 64 * 1024 * (index as usize + 1);
            match shmstore::Store::open_or_create(name, asked) {
                Ok(s) => say(format!(
                    "result=ok created={} capacity={} asked={asked}",
                    s.created(),
                    s.capacity()
                )),
                Err(e) => say(format!("result={} ({e})", variant(&e))),
            }
            return 0;
        }
        other => panic!("unknown kind {other}"),
    };
    report_race(got);
    0
}

/// Creates segments under several umasks (the umask is per process, hence a
/// child).
fn modes(a: &str, b: &str, c: &str, d: &str) -> i32 {
    use nix::sys::stat::{umask, Mode};
    umask(Mode::empty());
    Shared::create(a, Counter::default()).unwrap();
    umask(Mode::from_bits_truncate(0o077));
    SharedOptions::new()
        .mode(0o666)
        .create(b, Counter::default())
        .unwrap();
    SharedOptions::new()
        .mode(0o640)
        .create(c, Counter::default())
        .unwrap();
    umask(Mode::from_bits_truncate(0o022));
    SharedOptions::new()
        .mode(0o666)
        .open_or_create(d, Counter::default())
        .unwrap();
    say("done");
    0
}

/// Drops to uid/gid 65534 and opens a private (0600) and a public (0666)
/// segment of root's.
fn as_nobody(private: &str, public: &str) -> i32 {
    use nix::unistd::{geteuid, setgid, setgroups, setuid, Gid, Uid};
    setgroups(&[]).unwrap();
    setgid(Gid::from_raw(65534)).unwrap();
    setuid(Uid::from_raw(65534)).unwrap();
    say(format!("euid={}", geteuid()));
    say(format!(
        "private={}",
        outcome(Shared::<Counter>::open(private))
    ));
    say(format!(
        "public={}",
        outcome(Shared::<Counter>::open(public))
    ));
    let allowed = SharedOptions::new()
        .allow_foreign_owner(true)
        .open::<Counter>(public);
    match allowed {
        Ok(c) => {
            let mut g = c.lock().expect("not poisoned");
            g.value += 1;
            say(format!("allowed=ok value={}", g.value));
        }
        Err(e) => say(format!("allowed={}", variant(&e))),
    }
    0
}

/// Creates a `Big` under a file size limit smaller than it (so the kernel
/// refuses to size the object, EFBIG), and reports what is left.
fn fsize_limit(name: &str) -> i32 {
    use nix::sys::signal::{signal, SigHandler, Signal};
    // SAFETY: ignoring a signal installs no handler code; nothing else in
    // this process relies on SIGXFSZ.
    unsafe { signal(Signal::SIGXFSZ, SigHandler::SigIgn) }.unwrap();
    let limit = libc::rlimit {
        rlim_cur: 64 << 10,
        rlim_max: libc::RLIM_INFINITY,
    };
    // SAFETY: `limit` is a valid rlimit that outlives the call.
    let rc = unsafe { libc::setrlimit(libc::RLIMIT_FSIZE, &limit) };
    if rc != 0 {
        // Could not lower the soft limit under a lower hard limit: try that.
        let limit = libc::rlimit {
            rlim_cur: 64 << 10,
            rlim_max: 64 << 10,
        };
        // SAFETY: as above.
        let rc = unsafe { libc::setrlimit(libc::RLIMIT_FSIZE, &limit) };
        assert_eq!(rc, 0, "setrlimit: {}", std::io::Error::last_os_error());
    }
    report_big_create(name, "/dev/shm");
    0
}

/// In a mount namespace of its own (all mounts made private first, so
/// nothing propagates to the rest of the machine), mounts a 64 KiB tmpfs
/// over /dev/shm and creates a `Big` there. Root only; says "skip" when the
/// namespace or the mount cannot be made.
fn small_tmpfs(name: &str) -> i32 {
    let err = std::io::Error::last_os_error;
    // SAFETY: unshare takes flags only. In a threaded process it moves only
    // this thread into the new mount namespace, which is the thread that
    // goes on to use it.
    if unsafe { libc::unshare(libc::CLONE_NEWNS) } != 0 {
        say(format!("skip unshare: {}", err()));
        return 0;
    }
    // SAFETY: a propagation change: the target is a valid C string, the
    // source, type and data may be null.
    let rc = unsafe {
        libc::mount(
            std::ptr::null(),
            c"/".as_ptr(),
            std::ptr::null(),
            libc::MS_REC | libc::MS_PRIVATE,
            std::ptr::null(),
        )
    };
    if rc != 0 {
        // Without private propagation the mount below could reach the
        // machine's /dev/shm: give up.
        say(format!("skip private: {}", err()));
        return 0;
    }
    // SAFETY: all pointers are valid C strings that outlive the call.
    let rc = unsafe {
        libc::mount(
            c"shmstore-test".as_ptr(),
            c"/dev/shm".as_ptr(),
            c"tmpfs".as_ptr(),
            0,
            c"size=64k,mode=1777".as_ptr().cast(),
        )
    };
    if rc != 0 {
        say(format!("skip mount: {}", err()));
        return 0;
    }
    let fs = nix::sys::statvfs::statvfs("/dev/shm").unwrap();
    say(format!(
        "mounted bytes={}",
        fs.blocks() as u64 * fs.fragment_size() as u64
    ));
    // A small segment fits: the file system works.
    let small = Shared::create(name, Counter::default()).map(|_| ());
    say(format!("small={}", outcome(small)));
    shmstore::unlink(name).unwrap();
    report_big_create(name, "/dev/shm");
    0
}

fn report_big_create(name: &str, dir: &str) {
    let big = Big {
        data: [0; BIG_WORDS],
    };
    match Shared::create(name, big) {
        Ok(_) => say("result=ok"),
        Err(Error::NoSpace { size, .. }) => say(format!("result=NoSpace size={size}")),
        Err(e) => say(format!("result={} ({e})", variant(&e))),
    }
    let left: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n == name)
        .collect();
    say(format!("left={}", left.len()));
}

// ===========================================================================
// Helpers

/// Writes `bytes` as a new object in /dev/shm, mode 0600.
fn write_object(seg: &Segment, bytes: &[u8]) {
    use std::io::Write;
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(seg.path())
        .unwrap();
    f.write_all(bytes).unwrap();
}

/// Writes `bytes` at `offset` of an existing object.
fn patch(seg: &Segment, offset: u64, bytes: &[u8]) {
    let f = std::fs::OpenOptions::new()
        .write(true)
        .open(seg.path())
        .unwrap();
    f.write_all_at(bytes, offset).unwrap();
}

fn contents(seg: &Segment) -> Vec<u8> {
    std::fs::read(seg.path()).unwrap()
}

fn mode_of(seg: &Segment) -> u32 {
    std::fs::metadata(seg.path()).unwrap().permissions().mode() & 0o7777
}

/// A `Counter` segment with `value`, no handle left open.
fn valid_segment(seg: &Segment, value: u64) {
    let c = Shared::create(
        seg.name(),
        Counter {
            value,
            ..Counter::default()
        },
    )
    .unwrap();
    drop(c);
    assert_eq!(
        std::fs::metadata(seg.path()).unwrap().len(),
        counter_segment_len()
    );
}

/// Whether every thread of process `pid` is asleep (`S`).
fn all_threads_asleep(pid: u32) -> bool {
    let Ok(dir) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
        return false;
    };
    dir.filter_map(Result::ok).all(|t| {
        std::fs::read_to_string(t.path().join("stat")).is_ok_and(|s| {
            s.rfind(')')
                .and_then(|i| s[i + 1..].split_whitespace().next().map(|st| st == "S"))
                .unwrap_or(false)
        })
    })
}

// ===========================================================================
// 1. No lost update

#[test]
fn no_update_is_lost_between_processes() {
    const N: u64 = 4;
    const M: u64 = 20_000;
    let seg = Segment::new("nolost");
    let c = Shared::create(seg.name(), Counter::default()).unwrap();
    let m = M.to_string();
    let mut kids: Vec<Kid> = (0..N)
        .map(|_| Kid::spawn("incr", &[seg.name(), &m, "1"]))
        .collect();
    race_to_the_end(&mut kids);
    let pids: Vec<u32> = kids.iter().map(Kid::pid).collect();
    let g = c.lock().expect("nobody died holding the lock");
    assert_eq!(g.value, N * M, "updates were lost");
    assert!(pids.contains(&g.last_pid), "last_pid {}", g.last_pid);
    drop(g);
    assert!(!c.is_locked());
    assert!(!c.is_poisoned());
}

#[test]
fn no_update_is_lost_between_processes_and_threads() {
    // Two processes with two threads each on one handle, and this process
    // with two threads on two handles of its own (two mappings of the same
    // pages at different addresses).
    const M: u64 = 20_000;
    let seg = Segment::new("nolost-threads");
    let c = Shared::create(seg.name(), Counter::default()).unwrap();
    let m = M.to_string();
    let mut kids: Vec<Kid> = (0..2)
        .map(|_| Kid::spawn("incr", &[seg.name(), &m, "2"]))
        .collect();
    let mine: Vec<Shared<Counter>> = (0..2).map(|_| Shared::open(seg.name()).unwrap()).collect();
    for k in &mut kids {
        k.expect("ready");
    }
    for k in &mut kids {
        k.send("go");
    }
    std::thread::scope(|s| {
        for h in &mine {
            s.spawn(move || {
                for _ in 0..M {
                    h.lock().expect("not poisoned").value += 1;
                }
            });
        }
    });
    for k in &mut kids {
        k.wait_success();
    }
    assert_eq!(c.lock().unwrap().value, 6 * M, "updates were lost");
    assert!(!c.is_locked());
}

#[test]
fn holders_killed_mid_stream_lose_no_update_of_the_others() {
    // Three processes increment while victims, one after another, increment
    // in a loop and are SIGKILLed wherever they are. Everyone else carries
    // on (taking over from each dead victim), and apart from a victim's
    // half-done update nothing is lost or counted twice.
    const M: u64 = 30_000;
    const VICTIMS: u64 = 3;
    let seg = Segment::new("mid-stream");
    let c = Shared::create(seg.name(), Counter::default()).unwrap();
    let m = M.to_string();
    let mut kids: Vec<Kid> = (0..3)
        .map(|_| Kid::spawn("incr-any", &[seg.name(), &m]))
        .collect();
    for k in &mut kids {
        k.expect("ready");
    }
    for k in &mut kids {
        k.send("go");
    }
    for _ in 0..VICTIMS {
        let mut v = Kid::spawn("victim", &[seg.name()]);
        v.expect("ready");
        std::thread::sleep(Duration::from_millis(60));
        v.kill();
        v.wait();
    }
    for k in &mut kids {
        k.wait_success();
    }
    let g = c.lock().unwrap_or_else(PoisonError::into_inner);
    assert!(
        g._pad >= VICTIMS as u32,
        "each victim had the lock: {}",
        g._pad
    );
    let others = g.value - u64::from(g._pad);
    assert!(
        (3 * M..=3 * M + VICTIMS).contains(&others),
        "value {} with {} victim increments: {others} from the others, expected {} (+ at most {VICTIMS} torn)",
        g.value,
        g._pad,
        3 * M
    );
}

// ===========================================================================
// 2. A holder that dies

#[test]
fn killed_holder_poisons_and_its_writes_stay() {
    let seg = Segment::new("killed");
    let c = Shared::create(seg.name(), Counter::default()).unwrap();
    let mut a = Kid::spawn("hold", &[seg.name()]);
    let info = a.expect("locked");
    let tid: u32 = field(&info, "tid").parse().unwrap();
    let pid: u32 = field(&info, "pid").parse().unwrap();
    assert_eq!(pid, a.pid());

    // Held by a live process: visible, and not taken.
    assert!(c.is_locked());
    assert_eq!(c.holder_tid(), Some(tid));
    assert!(matches!(c.try_lock(), Err(TryLockError::WouldBlock)));
    assert!(!c.is_poisoned());

    a.kill_and_reap("the holder");

    let t0 = Instant::now();
    let got = c.lock();
    let took = t0.elapsed();
    assert!(
        took < RECOVERY,
        "lock() took {took:?} to notice the dead holder"
    );
    let g = match got {
        Ok(_) => panic!("lock() after the holder was killed must report poison"),
        Err(p) => p.into_inner(),
    };
    assert_eq!(
        *g,
        Counter {
            value: 42,
            last_pid: pid,
            _pad: 0
        }
    );
    drop(g);

    // The poison is there for every locker until cleared.
    assert!(c.is_poisoned());
    assert!(c.lock().is_err(), "poison must stay until cleared");
    let other = Shared::<Counter>::open(seg.name()).unwrap();
    assert!(other.is_poisoned());
    let mut b = Kid::spawn("poison-check", &[seg.name()]);
    assert_eq!(b.expect("is_poisoned="), "true");
    assert_eq!(b.expect("lock="), "poisoned value=42");
    assert_eq!(b.expect("try_lock="), "poisoned");
    b.wait_success();

    other.clear_poison();
    assert!(!c.is_poisoned(), "clear_poison is for every handle");
    let mut d = Kid::spawn("poison-check", &[seg.name()]);
    assert_eq!(d.expect("is_poisoned="), "false");
    assert_eq!(d.expect("lock="), "ok value=42");
    assert_eq!(d.expect("try_lock="), "ok");
    d.wait_success();
    assert_eq!(c.lock().expect("poison cleared").value, 42);
    assert!(!c.is_locked());
}

#[test]
fn exiting_with_the_lock_held_poisons() {
    let seg = Segment::new("exit-held");
    let c = Shared::create(seg.name(), Counter::default()).unwrap();
    let mut a = Kid::spawn("hold-exit", &[seg.name()]);
    a.expect("locked");
    a.wait_success();
    let t0 = Instant::now();
    let got = c.lock();
    assert!(t0.elapsed() < RECOVERY, "took {:?}", t0.elapsed());
    let g = got.expect_err("a holder that exited holding the lock poisons it");
    assert_eq!(g.into_inner().value, 43);
}

#[test]
fn try_lock_takes_over_from_a_dead_holder_without_waiting() {
    let seg = Segment::new("trylock-dead");
    let c = Shared::create(seg.name(), Counter::default()).unwrap();
    let mut a = Kid::spawn("hold", &[seg.name()]);
    a.expect("locked");
    a.kill();
    a.wait();
    match c.try_lock() {
        Err(TryLockError::Poisoned(p)) => assert_eq!(p.into_inner().value, 42),
        Err(TryLockError::WouldBlock) => panic!("try_lock: WouldBlock on a dead holder"),
        Ok(_) => panic!("try_lock: no poison after a dead holder"),
    };
}

// ===========================================================================
// 3. Waiters already asleep when the holder dies

#[test]
fn waiters_asleep_when_the_holder_is_killed_take_over_within_a_second() {
    let seg = Segment::new("asleep");
    let c = Shared::create(seg.name(), Counter::default()).unwrap();
    let mut a = Kid::spawn("hold", &[seg.name()]);
    a.expect("locked");
    let mut b = Kid::spawn("wait", &[seg.name(), "lock"]);
    let mut w = Kid::spawn("wait", &[seg.name(), "timed"]);
    b.expect("waiting");
    w.expect("waiting");
    std::thread::sleep(Duration::from_millis(200));
    assert!(
        eventually(Duration::from_secs(5), || all_threads_asleep(b.pid())
            && all_threads_asleep(w.pid())),
        "the waiters should be asleep in the kernel"
    );
    // Nothing moved while the holder lived.
    assert!(b.line_within(Duration::ZERO).is_none());
    assert!(w.line_within(Duration::ZERO).is_none());

    a.kill();
    let killed = Instant::now();
    a.wait();
    for k in [&mut b, &mut w] {
        let got = k.expect("got");
        let after = killed.elapsed();
        assert!(
            got.starts_with("poisoned value=42"),
            "a waiter saw `{got}` after its holder was killed"
        );
        assert!(after < RECOVERY, "a waiter took {after:?} after the kill");
        let status = k.wait_within(RECOVERY.saturating_sub(killed.elapsed()));
        assert!(
            status.is_some_and(|s| s.success()),
            "the waiter should exit 0 within {RECOVERY:?} of the kill ({status:?}, {:?} after it): {}",
            killed.elapsed(),
            k.stderr()
        );
    }
    assert!(c.is_poisoned());
    assert!(!c.is_locked());
}

// ===========================================================================
// 4. A zombie holder is dead

#[test]
fn zombie_holder_counts_as_dead() {
    let seg = Segment::new("zombie");
    let c = Shared::create(seg.name(), Counter::default()).unwrap();
    let mut a = Kid::spawn("main-hold", &[seg.name()]);
    let info = a.expect("locked");
    let pid = a.pid();
    assert_eq!(
        field(&info, "tid"),
        pid.to_string(),
        "the holder must be the main thread (the one a zombie keeps)"
    );
    assert_eq!(c.holder_tid(), Some(pid));

    a.kill(); // not reaped: it stays a zombie
    assert!(
        eventually(Duration::from_secs(5), || proc_state(pid) == Some('Z')),
        "the killed child should be a zombie, is {:?}",
        proc_state(pid)
    );
    let t0 = Instant::now();
    let got = c.lock();
    let took = t0.elapsed();
    assert_eq!(proc_state(pid), Some('Z'), "still a zombie while we locked");
    assert!(took < RECOVERY, "lock() took {took:?} with a zombie holder");
    assert_eq!(got.expect_err("poisoned").into_inner().value, 42);
    a.wait();
}

// ===========================================================================
// 5. Panics, and live holders

#[test]
fn panic_while_holding_poisons_other_processes() {
    let seg = Segment::new("panic");
    let c = Shared::create(seg.name(), Counter::default()).unwrap();
    let mut a = Kid::spawn("panic", &[seg.name()]);
    a.expect("locked");
    let status = a.wait();
    assert_eq!(
        status.code(),
        Some(101),
        "the child should unwind and fail its test, not die by a signal: {}",
        a.stderr()
    );
    assert!(a.stderr().contains("deliberate panic"), "{}", a.stderr());
    assert!(c.is_poisoned());
    let t0 = Instant::now();
    let got = c.lock();
    assert!(t0.elapsed() < RECOVERY);
    let g = got.expect_err("a holder that panicked poisons the lock");
    assert_eq!(g.into_inner().value, 7);
}

#[test]
fn panic_in_a_thread_poisons_the_handle() {
    let seg = Segment::new("panic-thread");
    let c = Shared::create(seg.name(), Counter::default()).unwrap();
    let joined = std::thread::scope(|s| {
        s.spawn(|| {
            let mut g = c.lock().unwrap();
            g.value = 5;
            panic!("deliberate panic while holding the lock");
        })
        .join()
    });
    assert!(joined.is_err());
    assert!(c.is_poisoned());
    assert!(!c.is_locked(), "unwinding releases the lock");
    assert_eq!(c.lock().expect_err("poisoned").into_inner().value, 5);

    // Another process sees the same poison.
    let mut b = Kid::spawn("poison-check", &[seg.name()]);
    assert_eq!(b.expect("is_poisoned="), "true");
    assert_eq!(b.expect("lock="), "poisoned value=5");
    b.wait_success();
}

/// Every way a guard can end: dropped in the order the locks were taken
/// (not the reverse), taken while the thread unwinds from a panic (which
/// must not poison), and held through a panic (which must). Each unlocks,
/// and each write is committed exactly once.
#[test]
fn guards_unlock_and_commit_in_any_drop_order_and_during_unwinding() {
    let (sa, sb) = (Segment::new("drop-order-a"), Segment::new("drop-order-b"));
    let a = Shared::create(sa.name(), Counter::default()).unwrap();
    let b = Shared::create(sb.name(), Counter::default()).unwrap();
    let (ga0, gb0) = (a.generation(), b.generation());

    // Taken a then b, dropped a then b: a is not the last lock taken.
    let mut ga = a.lock().unwrap();
    let mut gb = b.lock().unwrap();
    ga.value += 1;
    gb.value += 1;
    drop(ga);
    assert!(!a.is_locked() && b.is_locked());
    drop(gb);
    assert!(!b.is_locked());
    assert_eq!((a.generation(), b.generation()), (ga0 + 1, gb0 + 1));
    // A guard that writes nothing commits nothing.
    drop(a.lock().unwrap());
    assert_eq!(a.generation(), ga0 + 1);

    /// Locks and writes `a` while its thread unwinds.
    struct OnUnwind<'a>(&'a Shared<Counter>);
    impl Drop for OnUnwind<'_> {
        fn drop(&mut self) {
            let mut g = self.0.lock().expect("not poisoned");
            g.value += 10;
        }
    }
    let held = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        let _late = OnUnwind(&a);
        let mut g = b.lock().unwrap();
        g.value += 1;
        panic!("deliberate panic while holding b");
    }));
    assert!(held.is_err());
    assert!(
        !a.is_poisoned(),
        "a guard taken during unwinding does not poison"
    );
    assert!(b.is_poisoned(), "a guard held through a panic poisons");
    assert!(!a.is_locked() && !b.is_locked());
    assert_eq!(a.lock().unwrap().value, 11);
    assert_eq!(a.generation(), ga0 + 2);
    assert_eq!(b.lock().expect_err("poisoned").into_inner().value, 2);
    assert_eq!(b.generation(), gb0 + 2);
}

#[test]
fn a_thread_that_ends_holding_the_lock_is_a_dead_holder() {
    let seg = Segment::new("thread-ends");
    let c = Shared::create(seg.name(), Counter::default()).unwrap();
    std::thread::scope(|s| {
        s.spawn(|| {
            let mut g = c.lock().unwrap();
            g.value = 6;
            std::mem::forget(g);
        });
    });
    assert!(c.is_locked());
    let t0 = Instant::now();
    let got = c.lock();
    assert!(t0.elapsed() < RECOVERY, "took {:?}", t0.elapsed());
    assert_eq!(got.expect_err("poisoned").into_inner().value, 6);
}

#[test]
fn live_holder_is_never_taken_over_even_when_stopped() {
    let seg = Segment::new("live");
    let c = Shared::create(seg.name(), Counter::default()).unwrap();
    let mut a = Kid::spawn("hold", &[seg.name()]);
    a.expect("locked");

    assert!(matches!(c.try_lock(), Err(TryLockError::WouldBlock)));
    assert!(matches!(
        c.try_lock_for(Duration::from_millis(300)),
        Err(TryLockError::WouldBlock)
    ));

    // A stopped process is alive: its lock stays its own.
    let pid = nix::unistd::Pid::from_raw(a.pid() as i32);
    nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGSTOP).unwrap();
    assert!(eventually(Duration::from_secs(5), || proc_state(a.pid()) == Some('T')));
    let got = c.try_lock_for(Duration::from_millis(300));
    nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGCONT).unwrap();
    assert!(
        matches!(got, Err(TryLockError::WouldBlock)),
        "a stopped holder's lock was taken"
    );
    assert!(!c.is_poisoned());

    a.send("release");
    a.expect("released");
    a.wait_success();
    let g = c.lock().expect("released cleanly: no poison");
    assert_eq!(g.value, 42);
}

// ===========================================================================
// 6. Races to create

/// Starts `n` racers (role `race`, doing `what` on `seg`), lets them go
/// together, and returns each one's result line once it has exited cleanly.
fn racers(seg: &Segment, what: &str, n: u32) -> Vec<String> {
    let mut kids: Vec<Kid> = (0..n)
        .map(|i| Kid::spawn("race", &[seg.name(), what, &i.to_string()]))
        .collect();
    for k in &mut kids {
        k.expect("ready");
    }
    for k in &mut kids {
        k.send("go");
    }
    kids.iter_mut()
        .map(|k| {
            let r = k.expect("result=");
            k.wait_success();
            r
        })
        .collect()
}

#[test]
fn open_or_create_race_initialises_exactly_once() {
    const N: u32 = 8;
    let seg = Segment::new("ooc-race");
    let mut pads = Vec::new();
    let mut created = 0;
    for r in racers(&seg, "ooc", N) {
        assert!(r.starts_with("ok"), "open_or_create failed in a racer: {r}");
        pads.push(field(&r, "pad").parse::<u32>().unwrap());
        created += u32::from(field(&r, "created") == "true");
    }
    assert_eq!(created, 1, "created() true in {created} of {N} racers");
    let c = Shared::<Counter>::open(seg.name()).unwrap();
    let g = c.lock().expect("not poisoned");
    assert_eq!(
        g.value,
        u64::from(N) * 1000,
        "someone initialised over increments"
    );
    assert!(
        pads.iter().all(|&p| p == g._pad),
        "racers saw different initial values {pads:?} (final {}): initialised more than once",
        g._pad
    );
    assert_eq!(mode_of(&seg), 0o600);
    assert_eq!(
        std::fs::metadata(seg.path()).unwrap().len(),
        counter_segment_len()
    );
}

/// Stores too: of 8 processes racing `open_or_create`, each asking for
/// another capacity, exactly one says `created()`, and every one sees the
/// winner's capacity.
#[test]
fn store_open_or_create_race_says_created_in_exactly_one() {
    const N: u32 = 8;
    let seg = Segment::new("store-ooc-race");
    let mut created = Vec::new();
    let mut capacities = std::collections::BTreeSet::new();
    for r in racers(&seg, "store", N) {
        assert!(
            r.starts_with("ok"),
            "Store::open_or_create failed in a racer: {r}"
        );
        if field(&r, "created") == "true" {
            created.push(field(&r, "asked").parse::<usize>().unwrap());
        }
        capacities.insert(field(&r, "capacity").parse::<usize>().unwrap());
    }
    assert_eq!(
        created.len(),
        1,
        "created() true in {} of {N}",
        created.len()
    );
    assert_eq!(capacities.len(), 1, "racers saw capacities {capacities:?}");
    let store = shmstore::Store::open(seg.name()).unwrap();
    assert!(!store.created());
    assert_eq!(Some(&store.capacity()), capacities.first());
    assert!(store.capacity() >= created[0], "the winner's capacity");
}

#[test]
fn create_racing_open_or_create_loses_with_already_exists() {
    for round in 0..2 {
        let seg = Segment::new("create-race");
        let mut kids: Vec<(Kid, &str)> = (0..8u32)
            .map(|i| {
                let kind = if i % 2 == 0 { "create" } else { "ooc" };
                (
                    Kid::spawn("race", &[seg.name(), kind, &i.to_string()]),
                    kind,
                )
            })
            .collect();
        for (k, _) in &mut kids {
            k.expect("ready");
        }
        for (k, _) in &mut kids {
            k.send("go");
        }
        let (mut created, mut ok) = (0, 0);
        let mut pads = Vec::new();
        for (k, kind) in &mut kids {
            let r = k.expect("result=");
            if r.starts_with("ok") {
                ok += 1;
                created += usize::from(*kind == "create");
                pads.push(field(&r, "pad").parse::<u32>().unwrap());
            } else {
                assert_eq!(
                    *kind, "create",
                    "open_or_create failed (round {round}): {r}"
                );
                assert!(
                    r.starts_with("AlreadyExists"),
                    "a create that lost said `{r}` (round {round})"
                );
            }
            k.wait_success();
        }
        assert!(created <= 1, "{created} creates succeeded on one name");
        let c = Shared::<Counter>::open(seg.name()).unwrap();
        let g = c.lock().unwrap();
        assert_eq!(g.value, ok * 1000, "round {round}");
        assert!(pads.iter().all(|&p| p == g._pad), "{pads:?} vs {}", g._pad);
    }
}

/// An `open` that arrives while a live creator is in the middle of
/// `create` sees the complete segment or nothing (`NotFound`), never a
/// half-made one: `create` makes the segment under a temporary name and
/// puts it under the name whole.
#[test]
fn open_racing_create_sees_all_or_nothing() {
    let mut seen = std::collections::BTreeMap::<&str, u32>::new();
    let mut first = None;
    for _ in 0..300 {
        let seg = Segment::new("open-race");
        let start = Barrier::new(2);
        let opened = std::thread::scope(|s| {
            s.spawn(|| {
                start.wait();
                Shared::create(
                    seg.name(),
                    Counter {
                        value: 9,
                        ..Counter::default()
                    },
                )
                .unwrap()
            });
            let opener = s.spawn(|| {
                start.wait();
                let deadline = Instant::now() + Duration::from_secs(10);
                loop {
                    match Shared::<Counter>::open(seg.name()) {
                        Ok(c) => return Ok(c.lock().unwrap().value),
                        Err(Error::NotFound { .. }) if Instant::now() < deadline => {}
                        Err(e) => return Err(e),
                    }
                }
            });
            opener.join().unwrap()
        });
        match opened {
            Ok(v) => assert_eq!(v, 9),
            Err(e) => {
                first.get_or_insert_with(|| e.to_string());
                *seen.entry(variant(&e)).or_default() += 1
            }
        }
    }
    assert!(
        seen.is_empty(),
        "open racing a live creator failed with {seen:?} (out of 300 rounds), first: {first:?}"
    );
}

// ===========================================================================
// 7. Objects that are not (complete, compatible) segments

#[test]
fn garbage_is_corrupt_and_never_written_over() {
    let mut magic_only = b"SHMSTORE".to_vec();
    magic_only.extend_from_slice(&[1, 0, 0, 0, 2, 0, 0, 0]);
    for bytes in [
        b"hello world, this is not a segment".to_vec(),
        vec![0xAB; 4],
        vec![0; 4096],
        magic_only,
    ] {
        let seg = Segment::new("garbage");
        write_object(&seg, &bytes);
        let e = failure(Shared::<Counter>::open(seg.name()));
        assert!(matches!(e, Error::Corrupt { .. }), "open: {e:?}");
        let e = failure(Shared::<Counter>::open_or_create(
            seg.name(),
            Counter::default(),
        ));
        assert!(matches!(e, Error::Corrupt { .. }), "open_or_create: {e:?}");
        let e = failure(Shared::<Counter>::create(seg.name(), Counter::default()));
        assert!(matches!(e, Error::AlreadyExists { .. }), "create: {e:?}");
        assert_eq!(contents(&seg), bytes, "the file was changed");
        assert_eq!(mode_of(&seg), 0o600);
    }
}

/// A name only ever shows complete segments (they are published whole), so
/// an empty object under one is nobody's creation in progress: every way of
/// opening says so at once, and nothing writes to it.
#[test]
fn empty_object_is_corrupt_at_once_and_never_written() {
    let seg = Segment::new("empty");
    write_object(&seg, b"");
    let t0 = Instant::now();
    let e = failure(Shared::<Counter>::open(seg.name()));
    assert!(
        t0.elapsed() < Duration::from_millis(100),
        "open waited {:?}",
        t0.elapsed()
    );
    assert!(
        matches!(&e, Error::Corrupt { reason, .. } if reason == "empty"),
        "{e:?}"
    );
    let e = failure(Shared::<Counter>::open_or_create(
        seg.name(),
        Counter::default(),
    ));
    assert!(matches!(e, Error::Corrupt { .. }), "open_or_create: {e:?}");
    let e = failure(shmstore::SharedReader::<Counter>::open(seg.name()));
    assert!(matches!(e, Error::Corrupt { .. }), "reader: {e:?}");
    assert!(
        t0.elapsed() < Duration::from_secs(1),
        "took {:?}",
        t0.elapsed()
    );
    assert!(contents(&seg).is_empty(), "an opening call wrote into it");
}

#[test]
fn truncated_or_grown_segment_is_corrupt_without_sigbus() {
    // One byte short, short of a whole header, one page too long.
    for (delta, word) in [
        (-1i64, "truncated"),
        (-200, "shorter than a header"),
        (4096, "resized"),
    ] {
        let seg = Segment::new("truncated");
        valid_segment(&seg, 42);
        let len = (counter_segment_len() as i64 + delta) as u64;
        std::fs::OpenOptions::new()
            .write(true)
            .open(seg.path())
            .unwrap()
            .set_len(len)
            .unwrap();
        let before = contents(&seg);
        for e in [
            failure(Shared::<Counter>::open(seg.name())),
            failure(Shared::<Counter>::open_or_create(
                seg.name(),
                Counter::default(),
            )),
        ] {
            assert!(
                matches!(&e, Error::Corrupt { reason, .. } if reason.contains(word)),
                "size {len}: {e:?}"
            );
            assert!(e.to_string().contains(word), "{e}");
        }
        assert_eq!(contents(&seg), before, "the file was changed");
    }
}

#[test]
fn another_type_is_a_layout_mismatch_naming_both() {
    let seg = Segment::new("layout");
    valid_segment(&seg, 42);
    let before = contents(&seg);

    let e = failure(Shared::<Tally>::open(seg.name()));
    match &e {
        Error::LayoutMismatch {
            expected_type,
            found_type,
            expected_fingerprint,
            found_fingerprint,
            ..
        } => {
            assert_eq!(*expected_type, "Tally");
            assert_eq!(found_type, "Counter");
            assert_ne!(expected_fingerprint, found_fingerprint);
        }
        other => panic!("same size, other fields: {other:?}"),
    }
    let text = e.to_string();
    assert!(text.contains("Counter") && text.contains("Tally"), "{text}");

    let e = failure(Shared::<Wider>::open(seg.name()));
    assert!(
        matches!(e, Error::LayoutMismatch { .. }),
        "other size: {e:?}"
    );
    assert!(e.to_string().contains("Counter") && e.to_string().contains("Wider"));

    let e = failure(Shared::<v2::Counter>::open(seg.name()));
    assert!(
        matches!(e, Error::LayoutMismatch { .. }),
        "reordered fields: {e:?}"
    );

    let e = failure(Shared::<Wider>::open_or_create(
        seg.name(),
        Wider::default(),
    ));
    assert!(
        matches!(e, Error::LayoutMismatch { .. }),
        "open_or_create: {e:?}"
    );
    let e = failure(Shared::<u64>::open(seg.name()));
    assert!(matches!(e, Error::LayoutMismatch { .. }), "u64: {e:?}");

    assert_eq!(contents(&seg), before, "the file was changed");
    assert_eq!(
        Shared::<Counter>::open(seg.name())
            .unwrap()
            .lock()
            .unwrap()
            .value,
        42
    );
}

#[test]
fn unknown_format_version_is_corrupt() {
    let seg = Segment::new("version");
    valid_segment(&seg, 42);
    patch(&seg, VERSION_AT, &99u32.to_ne_bytes());
    let before = contents(&seg);
    for e in [
        failure(Shared::<Counter>::open(seg.name())),
        failure(Shared::<Counter>::open_or_create(
            seg.name(),
            Counter::default(),
        )),
    ] {
        assert!(matches!(e, Error::Corrupt { .. }), "{e:?}");
        assert!(e.to_string().contains("99"), "{e}");
    }
    assert_eq!(contents(&seg), before);
}

/// A segment made by a build of the other byte order (its header forged by
/// hand: every number's bytes reversed) is refused as such by every way of
/// opening it, left as it is, and `inspect` says why.
#[test]
fn a_segment_of_the_other_byte_order_is_refused_as_such() {
    let seg = Segment::new("byteorder");
    valid_segment(&seg, 42);
    let before = common::forge_other_byte_order(&seg.path());
    let both = format!(
        "made by a {} build, and this build is {}",
        common::other_byte_order(),
        common::this_byte_order()
    );
    for e in [
        failure(Shared::<Counter>::open(seg.name())),
        failure(Shared::<Counter>::open_or_create(
            seg.name(),
            Counter::default(),
        )),
        // Another type would be refused too: the byte order comes first.
        failure(Shared::<Wider>::open(seg.name())),
        failure(shmstore::SharedReader::<Counter>::open(seg.name())),
        failure(shmstore::Store::open(seg.name())),
    ] {
        assert!(
            matches!(&e, Error::OtherByteOrder { found, .. }
                if *found == shmstore::ByteOrder::NATIVE.other()),
            "{e:?}"
        );
        assert!(e.to_string().contains(&both), "{e}");
    }
    assert_eq!(contents(&seg), before, "the segment was changed");
    let report = shmstore::inspect::report(seg.name()).unwrap();
    assert!(
        matches!(report.state, shmstore::inspect::State::OtherByteOrder { found }
            if found == shmstore::ByteOrder::NATIVE.other()),
        "{:?}",
        report.state
    );
    // Never stale: whether anyone uses it cannot be told from here.
    let staleness = shmstore::inspect::staleness(&report);
    assert!(!staleness.is_stale());
    assert!(staleness.to_string().contains(&both), "{staleness}");
}

/// Our magic in state INITIALISING under a name: never a creator at work
/// (creators work under a temporary name), so it is `Corrupt` at once, and
/// `open_or_create` leaves it as it is.
#[test]
fn unfinished_segment_under_a_name_is_corrupt_and_left_alone() {
    let seg = Segment::new("initialising");
    valid_segment(&seg, 42);
    patch(&seg, STATE_AT, &1u32.to_ne_bytes());
    let before = contents(&seg);
    let t0 = Instant::now();
    for e in [
        failure(Shared::<Counter>::open(seg.name())),
        failure(Shared::<Counter>::open_or_create(
            seg.name(),
            Counter::default(),
        )),
    ] {
        assert!(
            matches!(&e, Error::Corrupt { reason, .. } if reason.contains("never finished")),
            "{e:?}"
        );
    }
    assert!(
        t0.elapsed() < Duration::from_secs(1),
        "took {:?}",
        t0.elapsed()
    );
    assert_eq!(contents(&seg), before, "the object was changed");
}

#[test]
fn segment_of_another_pid_namespace_opens_and_works() {
    let seg = Segment::new("pidns");
    valid_segment(&seg, 42);
    let ours = std::fs::metadata("/proc/self/ns/pid").unwrap().ino();
    let bytes = contents(&seg);
    let pid_ns_at = PID_NS_AT as usize;
    assert_eq!(
        u64::from_ne_bytes(bytes[pid_ns_at..pid_ns_at + 8].try_into().unwrap()),
        ours,
        "the header records our PID namespace"
    );
    // Made in another namespace, as a container's segment is: its lock
    // holders are told apart by the kernel's record of who has it open,
    // which every namespace can read.
    patch(&seg, PID_NS_AT, &(ours ^ 0x5a5a).to_ne_bytes());
    let c = Shared::<Counter>::open(seg.name()).unwrap();
    c.lock().unwrap().value += 1;
    assert_eq!(c.lock().unwrap().value, 43);
}

#[test]
fn scribbled_lock_word_is_a_dead_holder() {
    let seg = Segment::new("scribbled");
    valid_segment(&seg, 42);
    // A peer wrote garbage over the lock: no living thread holds it.
    patch(&seg, LOCK_AT, &[0xFF; 8]);
    let c = Shared::<Counter>::open(seg.name()).unwrap();
    let t0 = Instant::now();
    let got = c.lock();
    assert!(t0.elapsed() < RECOVERY, "took {:?}", t0.elapsed());
    assert_eq!(got.expect_err("poisoned").into_inner().value, 42);
    assert!(!c.is_locked());
}

#[test]
fn invalid_names_are_refused() {
    let long = "x".repeat(256);
    for bad in [
        "",
        "/",
        "a/b",
        "/a/b",
        ".",
        "..",
        "/..",
        "a\0b",
        long.as_str(),
    ] {
        for e in [
            failure(Shared::<Counter>::create(bad, Counter::default())),
            failure(Shared::<Counter>::open(bad)),
            failure(Shared::<Counter>::open_or_create(bad, Counter::default())),
        ] {
            assert!(matches!(e, Error::InvalidName { .. }), "{bad:?}: {e:?}");
        }
        let e = failure(shmstore::unlink(bad));
        assert!(
            matches!(e, Error::InvalidName { .. }),
            "unlink {bad:?}: {e:?}"
        );
    }
    // The longest name is fine, with or without the slash.
    let prefix = Segment::new("longname");
    let longest = format!("{}{}", prefix.name(), "x".repeat(255 - prefix.name().len()));
    let seg = Segment::exact(longest.clone());
    let c = Shared::create(&longest, Counter::default()).unwrap();
    assert!(seg.exists());
    drop(Shared::<Counter>::open(format!("/{longest}")).unwrap());
    drop(c);
    shmstore::unlink(&longest).unwrap();
    assert!(!seg.exists());
}

#[test]
fn leading_slash_names_the_same_object() {
    let seg = Segment::new("slash");
    let slashed = format!("/{}", seg.name());
    let a = Shared::create(&slashed, Counter::default()).unwrap();
    assert!(seg.exists(), "`/name` lives at /dev/shm/name");
    assert_eq!(a.name(), seg.name());
    let b = Shared::<Counter>::open(seg.name()).unwrap();
    a.lock().unwrap().value = 11;
    assert_eq!(b.lock().unwrap().value, 11);
    let e = failure(Shared::create(seg.name(), Counter::default()));
    assert!(matches!(e, Error::AlreadyExists { .. }), "{e:?}");
    shmstore::unlink(&slashed).unwrap();
    assert!(!seg.exists());
}

// ===========================================================================
// 8. Permissions and owners

#[test]
fn mode_is_exactly_what_was_asked_whatever_the_umask() {
    let [a, b, c, d] = ["mode-a", "mode-b", "mode-c", "mode-d"].map(Segment::new);
    let mut k = Kid::spawn("modes", &[a.name(), b.name(), c.name(), d.name()]);
    k.expect("done");
    k.wait_success();
    assert_eq!(mode_of(&a), 0o600, "default mode, umask 0");
    assert_eq!(mode_of(&b), 0o666, "mode 0666, umask 077");
    assert_eq!(mode_of(&c), 0o640, "mode 0640, umask 077");
    assert_eq!(mode_of(&d), 0o666, "mode 0666, umask 022, open_or_create");

    // Here (umask as the harness has it).
    let e = Segment::new("mode-e");
    let f = Segment::new("mode-f");
    drop(Shared::create(e.name(), Counter::default()).unwrap());
    drop(
        SharedOptions::new()
            .mode(0o4777)
            .create(f.name(), Counter::default())
            .unwrap(),
    );
    assert_eq!(mode_of(&e), 0o600);
    assert_eq!(mode_of(&f), 0o777, "only the nine permission bits count");
}

#[test]
fn foreign_owner_is_refused_unless_allowed() {
    if !is_root() {
        eprintln!("skipped: needs root to give a segment to another user");
        return;
    }
    let seg = Segment::new("foreign");
    valid_segment(&seg, 42);
    std::os::unix::fs::chown(seg.path(), Some(65534), Some(65534)).unwrap();
    let before = contents(&seg);

    for e in [
        failure(Shared::<Counter>::open(seg.name())),
        failure(Shared::<Counter>::open_or_create(
            seg.name(),
            Counter::default(),
        )),
    ] {
        match e {
            Error::ForeignOwner {
                owner_uid, our_uid, ..
            } => assert_eq!((owner_uid, our_uid), (65534, 0)),
            other => panic!("{other:?}"),
        }
    }
    let e = failure(Shared::<Counter>::create(seg.name(), Counter::default()));
    assert!(matches!(e, Error::AlreadyExists { .. }), "{e:?}");
    assert_eq!(contents(&seg), before);

    let c = SharedOptions::new()
        .allow_foreign_owner(true)
        .open::<Counter>(seg.name())
        .unwrap();
    c.lock().unwrap().value += 1;
    assert_eq!(c.lock().unwrap().value, 43);
    let md = std::fs::metadata(seg.path()).unwrap();
    assert_eq!(
        (md.uid(), md.gid()),
        (65534, 65534),
        "opening changes no owner"
    );
}

#[test]
fn other_user_gets_permission_denied_or_foreign_owner() {
    if !is_root() {
        eprintln!("skipped: needs root to run a child as another user");
        return;
    }
    let private = Segment::new("perm-private");
    let public = Segment::new("perm-public");
    valid_segment(&private, 1);
    drop(
        SharedOptions::new()
            .mode(0o666)
            .create(public.name(), Counter::default())
            .unwrap(),
    );
    let mut k = Kid::spawn("nobody", &[private.name(), public.name()]);
    assert_eq!(k.expect("euid="), "65534");
    assert_eq!(k.expect("private="), "PermissionDenied");
    assert_eq!(k.expect("public="), "ForeignOwner");
    assert_eq!(k.expect("allowed="), "ok value=1");
    k.wait_success();
    let c = Shared::<Counter>::open(public.name()).unwrap();
    assert_eq!(
        c.lock().unwrap().value,
        1,
        "the other user's update is visible"
    );
}

// ===========================================================================
// 9. No space

#[test]
fn no_space_under_a_file_size_limit_leaves_nothing_behind() {
    let seg = Segment::new("fsize");
    let mut k = Kid::spawn("fsize", &[seg.name()]);
    let result = k.expect("result=");
    let left = k.expect("left=");
    k.wait_success();
    let size = common::segment_len::<Big>();
    assert_eq!(result, format!("NoSpace size={size}"));
    assert_eq!(left, "0", "the name was left behind");
    assert!(!seg.exists());
}

/// A /dev/shm that is really full. A child mounts a small tmpfs over /dev/shm
/// inside a mount namespace of its own (propagation private): the machine's
/// /dev/shm is not touched, which the test checks.
#[test]
fn no_space_on_a_full_tmpfs_leaves_nothing_behind() {
    if !is_root() {
        eprintln!("skipped: needs root for a private mount namespace");
        return;
    }
    let mounts = || {
        std::fs::read_to_string("/proc/self/mountinfo")
            .unwrap()
            .lines()
            .filter(|l| l.contains("/dev/shm"))
            .map(str::to_owned)
            .collect::<Vec<_>>()
    };
    let before = mounts();
    let seg = Segment::new("tmpfs");
    let mut k = Kid::spawn("tmpfs", &[seg.name()]);
    let first = k
        .line_within(common::PATIENCE)
        .expect("a line from the child");
    if first.starts_with("skip") {
        eprintln!("skipped: {first}");
        k.wait_success();
        return;
    }
    let bytes: u64 = field(&first, "bytes").parse().unwrap();
    assert!(bytes <= 64 << 10, "{first}");
    assert_eq!(k.expect("small="), "ok");
    let result = k.expect("result=");
    let left = k.expect("left=");
    k.wait_success();
    assert_eq!(mounts(), before, "the machine's /dev/shm mounts changed");
    let size = common::segment_len::<Big>();
    assert_eq!(result, format!("NoSpace size={size}"));
    assert_eq!(left, "0", "the name was left behind");
    assert!(!seg.exists());
}

// ===========================================================================
// 10. Names and handles

#[test]
fn remove_on_drop_removes_the_name_but_not_other_handles() {
    let seg = Segment::new("rod");
    let first = SharedOptions::new()
        .remove_on_drop(true)
        .create(seg.name(), Counter::default())
        .unwrap();
    let second = Shared::<Counter>::open(seg.name()).unwrap();
    first.lock().unwrap().value = 3;
    drop(first);
    assert!(!seg.exists(), "the name should be gone with the handle");
    let e = failure(Shared::<Counter>::open(seg.name()));
    assert!(matches!(e, Error::NotFound { .. }), "{e:?}");
    second.lock().unwrap().value += 1;
    assert_eq!(second.lock().unwrap().value, 4, "the other handle works on");
    drop(second);
    assert!(!seg.exists());
}

#[test]
fn unlink_keeps_open_handles_working() {
    let seg = Segment::new("unlink");
    let a = Shared::create(seg.name(), Counter::default()).unwrap();
    let b = Shared::<Counter>::open(seg.name()).unwrap();
    shmstore::unlink(seg.name()).unwrap();
    assert!(!seg.exists());
    let e = failure(Shared::<Counter>::open(seg.name()));
    assert!(matches!(e, Error::NotFound { .. }), "{e:?}");
    let e = failure(shmstore::unlink(seg.name()));
    assert!(matches!(e, Error::NotFound { .. }), "{e:?}");
    a.lock().unwrap().value = 8;
    assert_eq!(
        b.lock().unwrap().value,
        8,
        "both handles still share the value"
    );

    // A new segment under the old name is a different object.
    let fresh = Shared::create(seg.name(), Counter::default()).unwrap();
    assert_eq!(fresh.lock().unwrap().value, 0);
    assert_eq!(a.lock().unwrap().value, 8);
}

#[test]
fn create_twice_is_already_exists() {
    let seg = Segment::new("twice");
    let c = Shared::create(
        seg.name(),
        Counter {
            value: 1,
            ..Counter::default()
        },
    )
    .unwrap();
    let e = failure(Shared::create(
        seg.name(),
        Counter {
            value: 2,
            ..Counter::default()
        },
    ));
    assert!(matches!(e, Error::AlreadyExists { .. }), "{e:?}");
    assert_eq!(
        c.lock().unwrap().value,
        1,
        "the failed create wrote nothing"
    );
    drop(c);
    let e = failure(Shared::create(seg.name(), Counter::default()));
    assert!(
        matches!(e, Error::AlreadyExists { .. }),
        "after drop: {e:?}"
    );
    let e = failure(Shared::<Counter>::open(Segment::new("missing").name()));
    assert!(matches!(e, Error::NotFound { .. }), "{e:?}");
}
