//! Descriptors and mappings that outlive or travel beyond the process that
//! opened a segment: what a user notices of a dead holder's lock and of the
//! process's descriptors.
//!
//! 1. Fork: a process that maps a segment forks a child that only sleeps
//!    (it inherits the parent's descriptors and never touches shmstore),
//!    then takes the lock and is SIGKILLed: the lock is taken over,
//!    poisoned, within 1 s, although the child lives. A forked child that
//!    does use the segment shows itself on its own: it locks, and killed
//!    while holding, its parent takes the lock over within 1 s.
//! 2. memfd over a Unix socket: a creator sends its segment's descriptor
//!    (`as_fd` + `send_fd`), the receiver maps it (`from_fd`); the creator
//!    takes the lock and is SIGKILLed; the receiver takes it over,
//!    poisoned, within 1 s. A receiver that also keeps the received
//!    descriptor keeps the creator's presence with it: the lock stays held
//!    until that descriptor is closed, then is taken over within 1 s.
//! 3. Descriptors: opening and dropping 1,000 handles of every kind (POSIX,
//!    file, memfd, anonymous, System V, `Store`, `SharedReader`) leaves the
//!    process's descriptor count where it was; two handles of one segment
//!    use one descriptor between them.

use crate::common;

use std::os::unix::net::{UnixListener, UnixStream};
use std::path::PathBuf;
use std::sync::TryLockError;
use std::time::{Duration, Instant};

use common::{command, proc_state, role, say, Counter, Key, Kid, Segment};
use shmstore::{recv_fd, send_fd, Location, Shared, SharedReader, Store};

/// The bound for taking over a dead holder's lock: the design's is about
/// 50 ms, and this leaves room for a loaded machine.
const RECOVERY: Duration = Duration::from_secs(1);
/// This file's range of System V keys (see `common::Key`).
const KEY_BASE: u32 = 0x6700_0000;
/// Handles of each kind opened and dropped by the descriptor test.
const ROUNDS: usize = 1000;

// ===========================================================================
// Roles played by child processes

#[test]
fn child_entry() {
    let Some(args) = role() else { return };
    match args[0].as_str() {
        "memfd-creator" => memfd_creator(&args[1]),
        "descriptors" => descriptors(&args[1], &args[2], &args[3]),
        other => panic!("unknown role {other}"),
    }
}

/// Roles that fork run on the child's main thread, before the test harness
/// starts any thread (a forked child of a threaded process may only make
/// async-signal-safe calls).
#[used]
#[link_section = ".init_array"]
static MAIN_THREAD_ROLES: extern "C" fn() = main_thread_roles;

extern "C" fn main_thread_roles() {
    if let Some(args) = common::main_thread_role() {
        match args[0].as_str() {
            "main-fork-sleeper" => fork_sleeper(&args[1]),
            "main-fork-holder" => fork_holder(&args[1]),
            other => panic!("unknown role {other}"),
        }
        std::process::exit(0);
    }
}

/// Forks a child that sleeps (and never touches shmstore), then locks the
/// segment `name` and waits to be killed.
fn fork_sleeper(name: &str) {
    let c = Shared::<Counter>::open(name).expect("open");
    // SAFETY: this process has one thread (see `main_thread_roles`), so the
    // child may do anything; it only sleeps and leaves with _exit, running
    // none of the parent's destructors.
    match unsafe { nix::unistd::fork() }.expect("fork") {
        nix::unistd::ForkResult::Child => {
            std::thread::sleep(Duration::from_secs(30));
            // SAFETY: _exit ends the process at once.
            unsafe { libc::_exit(0) };
        }
        nix::unistd::ForkResult::Parent { child } => say(format!("sleeper {child}")),
    }
    let mut g = c.lock().expect("an unpoisoned lock");
    g.value = 42;
    say("locked");
    loop {
        std::thread::sleep(Duration::from_secs(60));
    }
}

/// Forks a child that locks the segment `name` and waits to be killed;
/// then, told to, tries the lock itself and says what it got.
fn fork_holder(name: &str) {
    let c = Shared::<Counter>::open(name).expect("open");
    // SAFETY: as in `fork_sleeper`; the child uses the inherited handle,
    // which is what is tested, and never returns.
    match unsafe { nix::unistd::fork() }.expect("fork") {
        nix::unistd::ForkResult::Child => {
            // SAFETY: prctl(PR_SET_PDEATHSIG) takes integers.
            unsafe { libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL as libc::c_ulong) };
            let mut g = c.lock().expect("an unpoisoned lock");
            g.value = 43;
            say(format!("locked {}", std::process::id()));
            loop {
                std::thread::sleep(Duration::from_secs(60));
            }
        }
        nix::unistd::ForkResult::Parent { .. } => {}
    }
    while let Some(cmd) = command() {
        match cmd.as_str() {
            "try" => match c.try_lock() {
                Err(TryLockError::WouldBlock) => say("held"),
                Ok(_) => say("free"),
                Err(TryLockError::Poisoned(_)) => say("poisoned"),
            },
            "take" => {
                let start = Instant::now();
                match c.try_lock_for(Duration::from_secs(5)) {
                    Err(TryLockError::Poisoned(p)) => say(format!(
                        "took poisoned {} {}",
                        p.into_inner().value,
                        start.elapsed().as_millis()
                    )),
                    Ok(_) => say("took clean"),
                    Err(TryLockError::WouldBlock) => say("took nothing"),
                }
            }
            other => panic!("unknown command {other}"),
        }
    }
}

/// Makes a memfd segment, sends its descriptor to the socket `path`, and
/// locks it when told to; then waits to be killed.
fn memfd_creator(path: &str) {
    let c = Shared::<Counter>::memfd(Counter::default()).expect("memfd");
    let conn = UnixStream::connect(path).expect("connect");
    send_fd(&conn, c.as_fd().expect("a memfd's descriptor")).expect("send_fd");
    say("sent");
    assert_eq!(command().as_deref(), Some("lock"));
    let mut g = c.lock().expect("an unpoisoned lock");
    g.value = 77;
    say("locked");
    loop {
        std::thread::sleep(Duration::from_secs(60));
    }
}

/// This process's open descriptors.
fn open_fds() -> usize {
    std::fs::read_dir("/proc/self/fd").unwrap().count()
}

/// Opens and drops `ROUNDS` handles of every kind; says the descriptor
/// count before and after each kind, and with one and two handles of one
/// segment.
fn descriptors(name: &str, key: &str, dir: &str) {
    let key = shmstore::SysvKey::new(key.parse().unwrap());
    let file = PathBuf::from(dir).join("segment");
    let store_name = format!("{name}-store");
    drop(Shared::create(name, Counter::default()).unwrap());
    drop(Shared::create(file.as_path(), Counter::default()).unwrap());
    drop(Shared::create(Location::sysv(key), Counter::default()).unwrap());
    drop(Store::create(&store_name, 16 << 10).unwrap());
    let kinds: [(&str, &dyn Fn()); 7] = [
        ("posix", &|| {
            drop(Shared::<Counter>::open(name).unwrap().lock())
        }),
        ("file", &|| {
            drop(Shared::<Counter>::open(file.as_path()).unwrap().lock())
        }),
        ("memfd", &|| {
            drop(Shared::memfd(Counter::default()).unwrap().lock())
        }),
        ("anonymous", &|| {
            drop(Shared::anonymous(Counter::default()).unwrap().lock())
        }),
        ("sysv", &|| {
            drop(Shared::<Counter>::open(Location::sysv(key)).unwrap().lock())
        }),
        ("store", &|| {
            let s = Store::open(&store_name).unwrap();
            drop(s.get_or_create("k", 1u64).unwrap().lock());
        }),
        ("reader", &|| {
            drop(SharedReader::<Counter>::open(name).unwrap().snapshot())
        }),
    ];
    for (kind, open) in kinds {
        open(); // whatever the first use sets up once
        let before = open_fds();
        for _ in 0..ROUNDS {
            open();
        }
        say(format!("{kind} {before} {}", open_fds()));
    }
    let two = |kind: &str, open: &dyn Fn() -> Box<dyn std::any::Any>| {
        let before = open_fds();
        let one = open();
        let with_one = open_fds();
        let other = open();
        let with_two = open_fds();
        drop((one, other));
        say(format!(
            "two {kind} {before} {with_one} {with_two} {}",
            open_fds()
        ));
    };
    two("posix", &|| {
        Box::new(Shared::<Counter>::open(name).unwrap())
    });
    two("file", &|| {
        Box::new(Shared::<Counter>::open(file.as_path()).unwrap())
    });
    two("sysv", &|| {
        Box::new(Shared::<Counter>::open(Location::sysv(key)).unwrap())
    });
    two("reader", &|| {
        Box::new(SharedReader::<Counter>::open(name).unwrap())
    });
    two("store", &|| Box::new(Store::open(&store_name).unwrap()));
    let _ = shmstore::unlink(&store_name);
    say("done");
}

// ===========================================================================
// Fork

#[test]
fn a_sleeping_forked_child_does_not_keep_a_dead_holder_alive() {
    let seg = Segment::new("fork-sleeper");
    let c = Shared::create(seg.name(), Counter::default()).unwrap();
    let mut kid = Kid::spawn("main-fork-sleeper", &[seg.name()]);
    let sleeper: u32 = kid.expect("sleeper ").parse().unwrap();
    let _reap = KillOnDrop(sleeper);
    kid.expect("locked");
    assert!(matches!(c.try_lock(), Err(TryLockError::WouldBlock)));
    kid.kill();
    let killed = Instant::now();
    assert!(
        !matches!(proc_state(sleeper), None | Some('Z' | 'X')),
        "the forked child lives on"
    );
    match c.try_lock_for(Duration::from_secs(5)) {
        Err(TryLockError::Poisoned(p)) => assert_eq!(p.into_inner().value, 42),
        Ok(_) => panic!("a killed holder's lock is taken over poisoned"),
        Err(TryLockError::WouldBlock) => {
            panic!("the forked child's inherited descriptors kept the dead holder alive")
        }
    }
    let took = killed.elapsed();
    assert!(took < RECOVERY, "taken over after {took:?}");
    assert!(
        !matches!(proc_state(sleeper), None | Some('Z' | 'X')),
        "the forked child still lived when the lock was taken over"
    );
}

#[test]
fn a_forked_child_that_locks_is_a_holder_of_its_own() {
    let seg = Segment::new("fork-holder");
    let c = Shared::create(seg.name(), Counter::default()).unwrap();
    let mut kid = Kid::spawn("main-fork-holder", &[seg.name()]);
    let holder: u32 = kid.expect("locked ").parse().unwrap();
    let _reap = KillOnDrop(holder);
    kid.send("try");
    assert_eq!(
        kid.expect(""),
        "held",
        "the child's lock is held for its parent"
    );
    assert!(matches!(c.try_lock(), Err(TryLockError::WouldBlock)));
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(holder as i32),
        nix::sys::signal::Signal::SIGKILL,
    )
    .unwrap();
    kid.send("take");
    let got = kid.expect("took ");
    let words: Vec<&str> = got.split(' ').collect();
    assert_eq!(
        &words[..2],
        ["poisoned", "43"],
        "the parent took over: {got}"
    );
    let ms: u128 = words[2].parse().unwrap();
    assert!(ms < RECOVERY.as_millis(), "taken over after {ms} ms");
    kid.close_stdin();
    kid.wait_success();
}

/// SIGKILLs a process at the end of a test (a grandchild no `Kid` reaps).
struct KillOnDrop(u32);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(self.0 as i32),
            nix::sys::signal::Signal::SIGKILL,
        );
    }
}

// ===========================================================================
// memfd over a socket

fn socket_dir(tag: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("shmstore-it-{tag}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

/// A creator that sent its memfd, then locked it: the receiver's socket,
/// the descriptor received, and the creator.
fn received(tag: &str) -> (std::os::fd::OwnedFd, Kid, PathBuf) {
    let dir = socket_dir(tag);
    let sock = dir.join("s");
    let listener = UnixListener::bind(&sock).unwrap();
    let kid = Kid::spawn("memfd-creator", &[sock.to_str().unwrap()]);
    let (conn, _) = listener.accept().unwrap();
    let fd = recv_fd(&conn).expect("recv_fd");
    (fd, kid, dir)
}

fn take_within(c: &Shared<Counter>, since: Instant) {
    match c.try_lock_for(Duration::from_secs(5)) {
        Err(TryLockError::Poisoned(p)) => assert_eq!(p.into_inner().value, 77),
        Ok(_) => panic!("a killed holder's lock is taken over poisoned"),
        Err(TryLockError::WouldBlock) => panic!("the dead creator's lock is still held"),
    }
    let took = since.elapsed();
    assert!(took < RECOVERY, "taken over after {took:?}");
}

#[test]
fn a_memfd_receiver_takes_over_from_a_killed_creator() {
    let (fd, mut kid, dir) = received("memfd-recv");
    let c = Shared::<Counter>::from_fd(fd).expect("from_fd");
    kid.expect("sent");
    kid.send("lock");
    kid.expect("locked");
    assert!(matches!(c.try_lock(), Err(TryLockError::WouldBlock)));
    kid.kill();
    take_within(&c, Instant::now());
    let _ = std::fs::remove_dir_all(dir);
}

#[test]
fn a_kept_memfd_descriptor_keeps_the_creator_present_until_closed() {
    let (fd, mut kid, dir) = received("memfd-keep");
    let kept = fd.try_clone().unwrap();
    let c = Shared::<Counter>::from_fd(fd).expect("from_fd");
    kid.expect("sent");
    kid.send("lock");
    kid.expect("locked");
    kid.kill();
    kid.wait();
    // The descriptor received is the creator's own description, which shows
    // the creator's presence: while it is open here, the creator counts as
    // alive.
    assert!(
        matches!(
            c.try_lock_for(Duration::from_millis(1500)),
            Err(TryLockError::WouldBlock)
        ),
        "a kept descriptor of the creator's description keeps it present"
    );
    drop(kept);
    take_within(&c, Instant::now());
    let _ = std::fs::remove_dir_all(dir);
}

// ===========================================================================
// Descriptors

#[test]
fn handles_leave_no_descriptor_behind() {
    let seg = Segment::new("fds");
    let store = Segment::exact(format!("{}-store", seg.name()));
    let key = Key::in_range(KEY_BASE);
    let dir = socket_dir("fds");
    let mut kid = Kid::spawn(
        "descriptors",
        &[seg.name(), &key.arg(), dir.to_str().unwrap()],
    );
    for kind in [
        "posix",
        "file",
        "memfd",
        "anonymous",
        "sysv",
        "store",
        "reader",
    ] {
        let line = kid.expect(kind);
        let n: Vec<usize> = line.split(' ').map(|w| w.parse().unwrap()).collect();
        assert_eq!(
            n[0], n[1],
            "{kind}: {ROUNDS} handles opened and dropped change the descriptor count"
        );
    }
    for kind in ["posix", "file", "sysv", "reader", "store"] {
        let line = kid.expect(&format!("two {kind}"));
        let n: Vec<usize> = line.split(' ').map(|w| w.parse().unwrap()).collect();
        let (before, one, two, after) = (n[0], n[1], n[2], n[3]);
        assert!(
            one <= before + 1,
            "{kind}: one handle, {} descriptors",
            one - before
        );
        assert_eq!(
            two, one,
            "{kind}: two handles of one segment share a descriptor"
        );
        assert_eq!(after, before, "{kind}: none left behind");
    }
    kid.expect("done");
    kid.wait_success();
    drop(store);
    let _ = std::fs::remove_dir_all(dir);
}

/// A handle dropped while another reference to its process's description
/// lives (as a child being spawned holds every descriptor until it execs)
/// leaves no presence behind: the process maps the segment again at once,
/// and a lock it held is taken over as a dead holder's would be.
#[test]
fn a_dropped_handle_leaves_no_presence_in_a_copied_descriptor() {
    let c = Shared::<Counter>::memfd(Counter::default()).unwrap();
    // What a spawning child holds: another reference to the description.
    let lingering = c.as_fd().unwrap().try_clone_to_owned().unwrap();
    let reader = c.as_fd().unwrap().try_clone_to_owned().unwrap();
    drop(c);
    let again = Shared::<Counter>::from_fd(reader)
        .expect("mapped again while a copy of the old description lives");
    assert!(again.try_lock().is_ok());
    drop(lingering);
}
