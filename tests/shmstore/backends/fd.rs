//! The memfd, anonymous and file-backed backends, with real processes: the
//! same counter, crash recovery and refusals as POSIX segments get.

use crate::common;

use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::Path;
use std::sync::TryLockError;
use std::time::{Duration, Instant};

use common::{role, say, Counter, Kid, TempDir};
use nix::fcntl::{fcntl, FcntlArg, FdFlag};
use shmstore::{recv_fd, send_fd, Error, Shareable, Shared};

#[derive(Shareable, Clone, Copy, Default, Debug)]
#[repr(C)]
struct Other {
    a: u64,
    b: u64,
}

// ===========================================================================
// Roles played by child processes

#[test]
fn child_entry() {
    let Some(args) = role() else { return };
    std::process::exit(play(&args));
}

/// Roles that fork run on the child's main thread, before the test harness
/// starts any thread (forking a threaded process is not allowed here).
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
        "fd-incr" => fd_incr(arg(1).parse().unwrap(), arg(2).parse().unwrap()),
        "fd-hold" => fd_hold(arg(1).parse().unwrap()),
        "fd-truncate" => fd_truncate(arg(1).parse().unwrap()),
        "sock-incr" => sock_incr(Path::new(arg(1)), arg(2).parse().unwrap()),
        "file-incr" => file_incr(Path::new(arg(1)), arg(2).parse().unwrap()),
        "file-hold" => file_hold(Path::new(arg(1))),
        "file-check-poisoned" => file_check_poisoned(Path::new(arg(1))),
        "main-fork-workers" => fork_workers(arg(1).parse().unwrap(), arg(2).parse().unwrap()),
        "main-fork-victim" => fork_victim(),
        "main-fork-copied-guard" => fork_copied_guard(),
        other => panic!("unknown role {other}"),
    }
}

/// A segment from an inherited descriptor number.
fn inherited(fd: i32) -> Shared<Counter> {
    // SAFETY: the parent handed this descriptor number down by inheritance
    // for this process to own; nothing else in this process uses it.
    let fd = unsafe { OwnedFd::from_raw_fd(fd) };
    Shared::from_fd(fd).expect("from_fd of the inherited memfd")
}

fn increment(c: &Shared<Counter>, times: u64) {
    for _ in 0..times {
        let mut g = c.lock().expect("not poisoned");
        let v = g.value;
        if v % 64 == 0 {
            std::thread::yield_now(); // a broken lock would lose updates here
        }
        g.value = v + 1;
        g.last_pid = std::process::id();
    }
}

fn fd_incr(fd: i32, times: u64) -> i32 {
    increment(&inherited(fd), times);
    0
}

fn fd_hold(fd: i32) -> i32 {
    let c = inherited(fd);
    let mut g = c.lock().unwrap();
    g.value = 42;
    g.last_pid = std::process::id();
    say("locked");
    loop {
        std::thread::sleep(Duration::from_secs(60));
    }
}

/// Tries to shrink and to grow the inherited memfd; says what happened.
fn fd_truncate(fd: i32) -> i32 {
    // Mapped here too while we try; `from_fd` closes the inherited number
    // once mapped, and the handle lends its own description of the memfd.
    let c = inherited(fd);
    let borrowed = c.as_fd().expect("a memfd handle lends its descriptor");
    let shrink = nix::unistd::ftruncate(borrowed, 0);
    let grow = nix::unistd::ftruncate(borrowed, 1 << 20);
    say(format!("shrink {shrink:?} grow {grow:?}"));
    0
}

fn sock_incr(path: &Path, times: u64) -> i32 {
    let conn = UnixStream::connect(path).expect("connect");
    let fd = recv_fd(&conn).expect("recv_fd");
    let c = Shared::<Counter>::from_fd(fd).expect("from_fd");
    increment(&c, times);
    0
}

fn file_incr(path: &Path, times: u64) -> i32 {
    let c = Shared::<Counter>::open(path).expect("open the file segment");
    increment(&c, times);
    0
}

fn file_hold(path: &Path) -> i32 {
    let c = Shared::<Counter>::open(path).unwrap();
    let mut g = c.lock().unwrap();
    g.value = 42;
    say("locked");
    loop {
        std::thread::sleep(Duration::from_secs(60));
    }
}

fn file_check_poisoned(path: &Path) -> i32 {
    let c = Shared::<Counter>::open(path).unwrap();
    let t = Instant::now();
    let code = match c.lock() {
        Err(p) => {
            say(format!(
                "poisoned value {} in {} ms",
                p.into_inner().value,
                t.elapsed().as_millis()
            ));
            0
        }
        Ok(_) => {
            say("not poisoned");
            1
        }
    };
    code
}

/// Anonymous segment, forked workers: says the final value.
fn fork_workers(workers: u64, times: u64) -> i32 {
    let c = Shared::<Counter>::anonymous(Counter::default()).unwrap();
    // Lock once before forking, so that the children inherit this thread's
    // cached lock identity: only the fork handler makes them differ.
    drop(c.lock().unwrap());
    let mut kids = Vec::new();
    for _ in 0..workers {
        // SAFETY: this role runs before the harness starts any thread, so
        // the process is single-threaded and the child may do anything.
        match unsafe { nix::unistd::fork() }.unwrap() {
            nix::unistd::ForkResult::Child => {
                increment(&c, times);
                // SAFETY: ends the child at once, running none of the
                // parent's destructors twice.
                unsafe { libc::_exit(0) };
            }
            nix::unistd::ForkResult::Parent { child } => kids.push(child),
        }
    }
    for k in kids {
        let st = nix::sys::wait::waitpid(k, None).unwrap();
        assert!(
            matches!(st, nix::sys::wait::WaitStatus::Exited(_, 0)),
            "{st:?}"
        );
    }
    say(format!("value {}", c.lock().unwrap().value));
    0
}

/// Anonymous segment; the parent forks while it holds the lock in the
/// middle of a write, and the child drops its copy of the guard (as a child
/// that returns through the guard's scope does), while panicking. Says what
/// each side saw.
fn fork_copied_guard() -> i32 {
    let c = Shared::<Counter>::anonymous(Counter::default()).unwrap();
    let mut g = c.lock().unwrap();
    g.value = 7; // a write in progress
    let before = c.generation();
    // SAFETY: single-threaded process, see fork_workers.
    match unsafe { nix::unistd::fork() }.unwrap() {
        nix::unistd::ForkResult::Child => {
            // The child panics while its copy of the guard is alive: a
            // guard poisons its lock when dropped by a panicking thread.
            let _ = std::panic::catch_unwind(std::panic::AssertUnwindSafe(move || {
                let _g = g;
                panic!("a forked child panics holding an inherited guard");
            }));
            // SAFETY: ends the child at once, as in fork_workers.
            unsafe { libc::_exit(0) };
        }
        nix::unistd::ForkResult::Parent { child } => {
            let st = nix::sys::wait::waitpid(child, None).unwrap();
            assert!(
                matches!(st, nix::sys::wait::WaitStatus::Exited(_, 0)),
                "{st:?}"
            );
            // Another thread of the parent tries the lock: still held?
            let held = std::thread::scope(|s| {
                s.spawn(|| matches!(c.try_lock(), Err(std::sync::TryLockError::WouldBlock)))
                    .join()
                    .unwrap()
            });
            say(format!(
                "after the child: held {held}, generation +{}",
                c.generation() - before
            ));
            g.value += 1;
            drop(g);
            say(format!(
                "after the parent: value {}, generation +{}, poisoned {}",
                c.snapshot().map(|v| v.value).unwrap_or(0),
                c.generation() - before,
                c.is_poisoned()
            ));
            0
        }
    }
}

/// Anonymous segment; a forked child takes the lock and is killed holding
/// it; says how the parent's lock() went.
fn fork_victim() -> i32 {
    let c = Shared::<Counter>::anonymous(Counter::default()).unwrap();
    // As in fork_workers: the child inherits a cached identity to reset.
    drop(c.lock().unwrap());
    let (ready_r, ready_w) = nix::unistd::pipe().unwrap();
    // SAFETY: single-threaded process, see fork_workers.
    match unsafe { nix::unistd::fork() }.unwrap() {
        nix::unistd::ForkResult::Child => {
            let mut g = c.lock().unwrap();
            g.value = 42;
            nix::unistd::write(&ready_w, b"x").unwrap();
            loop {
                std::thread::sleep(Duration::from_secs(60));
            }
        }
        nix::unistd::ForkResult::Parent { child } => {
            let mut b = [0u8];
            nix::unistd::read(&ready_r, &mut b).unwrap();
            nix::sys::signal::kill(child, nix::sys::signal::SIGKILL).unwrap();
            nix::sys::wait::waitpid(child, None).unwrap();
            let t = Instant::now();
            match c.lock() {
                Err(p) => say(format!(
                    "poisoned value {} in {} ms",
                    p.into_inner().value,
                    t.elapsed().as_millis()
                )),
                Ok(_) => say("not poisoned"),
            }
            0
        }
    }
}

// ===========================================================================
// Helpers

/// A descriptor of `c`'s memfd that children inherit (a dup without
/// FD_CLOEXEC), closed when dropped.
fn inheritable(c: &Shared<Counter>) -> OwnedFd {
    let fd = c
        .as_fd()
        .expect("memfd segment")
        .try_clone_to_owned()
        .unwrap();
    fcntl(&fd, FcntlArg::F_SETFD(FdFlag::empty())).unwrap();
    fd
}

/// What the kernel says descriptor `fd` of this process is: a memfd reads
/// as `/memfd:NAME (deleted)`, a file in /dev/shm as its path.
fn fd_target(fd: &OwnedFd) -> String {
    let link = format!("/proc/self/fd/{}", fd.as_raw_fd());
    std::fs::read_link(link)
        .unwrap()
        .to_string_lossy()
        .into_owned()
}

fn poisoned_within_a_second(c: &Shared<Counter>) -> Counter {
    let t = Instant::now();
    match c.try_lock_for(Duration::from_secs(5)) {
        Err(TryLockError::Poisoned(p)) => {
            assert!(t.elapsed() < Duration::from_secs(1), "{:?}", t.elapsed());
            *p.into_inner()
        }
        Err(TryLockError::WouldBlock) => panic!("the lock of the dead holder never came back"),
        Ok(_) => panic!("the holder died holding the lock, yet it is not poisoned"),
    }
}

// ===========================================================================
// memfd

#[test]
fn memfd_inherited_by_processes_loses_no_update() {
    let c = Shared::<Counter>::memfd(Counter::default()).unwrap();
    let fd = inheritable(&c);
    let n = fd.as_raw_fd().to_string();
    let mut kids: Vec<_> = (0..3)
        .map(|_| Kid::spawn("fd-incr", &[&n, "20000"]))
        .collect();
    for k in &mut kids {
        k.wait_success();
    }
    assert_eq!(c.lock().unwrap().value, 60_000);
    // Checked on the descriptor, not by listing /dev/shm, where the tests
    // running beside this one create and remove names.
    let target = fd_target(&fd);
    assert!(
        target.starts_with("/memfd:"),
        "a memfd has no name in /dev/shm, but the descriptor is {target}"
    );
}

#[test]
fn memfd_handed_over_a_unix_socket_is_the_same_segment() {
    let dir = TempDir::new("memfd-socket");
    let sock = dir.join("s");
    let listener = UnixListener::bind(&sock).unwrap();
    let c = Shared::<Counter>::memfd(Counter::default()).unwrap();
    let mut kid = Kid::spawn("sock-incr", &[sock.to_str().unwrap(), "5000"]);
    let (conn, _) = listener.accept().unwrap();
    send_fd(&conn, c.as_fd().unwrap()).unwrap();
    kid.wait_success();
    assert_eq!(c.lock().unwrap().value, 5000);
}

#[test]
fn recv_fd_reports_a_message_without_descriptor_and_a_closed_peer() {
    let (a, b) = UnixStream::pair().unwrap();
    std::io::Write::write_all(&mut &a, b"no descriptor here").unwrap();
    let e = recv_fd(&b).unwrap_err();
    assert_eq!(e.kind(), std::io::ErrorKind::InvalidData, "{e}");
    let (a, b) = UnixStream::pair().unwrap();
    drop(a);
    let e = recv_fd(&b).unwrap_err();
    assert_eq!(e.kind(), std::io::ErrorKind::UnexpectedEof, "{e}");
}

#[test]
fn sealed_memfd_cannot_be_truncated_by_a_peer() {
    let c = Shared::<Counter>::memfd(Counter {
        value: 7,
        ..Counter::default()
    })
    .unwrap();
    let fd = inheritable(&c);
    let mut kid = Kid::spawn("fd-truncate", &[&fd.as_raw_fd().to_string()]);
    let said = kid.expect("shrink");
    assert_eq!(said, "Err(EPERM) grow Err(EPERM)");
    kid.wait_success();
    // Still whole here: no SIGBUS, the value is intact.
    let mut g = c.lock().unwrap();
    g.value += 1;
    assert_eq!(g.value, 8);
}

#[test]
fn from_fd_refuses_unsealed_foreign_and_other_typed_descriptors() {
    // An unsealed memfd holding a perfectly valid segment image.
    let image = Shared::<Counter>::memfd(Counter::default()).unwrap();
    let bytes = {
        let fd = image.as_fd().unwrap();
        let len = nix::sys::stat::fstat(fd).unwrap().st_size as usize;
        let mut buf = vec![0u8; len];
        nix::sys::uio::pread(fd, &mut buf, 0).unwrap();
        buf
    };
    let plain =
        nix::sys::memfd::memfd_create("unsealed", nix::sys::memfd::MFdFlags::MFD_CLOEXEC).unwrap();
    nix::sys::uio::pwrite(&plain, &bytes, 0).unwrap();
    match Shared::<Counter>::from_fd(plain) {
        Err(Error::Corrupt { reason, .. }) => assert!(reason.contains("seal"), "{reason}"),
        other => panic!("unsealed memfd accepted: {other:?}"),
    }

    // A sealed memfd of another type.
    let other = Shared::<Other>::memfd(Other::default()).unwrap();
    let fd = other.as_fd().unwrap().try_clone_to_owned().unwrap();
    let e = Shared::<Counter>::from_fd(fd).unwrap_err();
    assert!(matches!(e, Error::LayoutMismatch { .. }), "{e:?}");
    assert!(e.to_string().contains("Other"), "{e}");

    // A plain file descriptor (cannot carry seals).
    let dir = TempDir::new("from-fd");
    std::fs::write(dir.join("f"), vec![0xAB; 400]).unwrap();
    let f: OwnedFd = std::fs::File::open(dir.join("f")).unwrap().into();
    assert!(matches!(
        Shared::<Counter>::from_fd(f),
        Err(Error::Corrupt { .. })
    ));
}

#[test]
fn memfd_holder_killed_is_recovered() {
    let c = Shared::<Counter>::memfd(Counter::default()).unwrap();
    let fd = inheritable(&c);
    let mut kid = Kid::spawn("fd-hold", &[&fd.as_raw_fd().to_string()]);
    kid.expect("locked");
    let pid = kid.pid();
    kid.kill();
    let left = poisoned_within_a_second(&c);
    assert_eq!((left.value, left.last_pid), (42, pid));
}

// ===========================================================================
// anonymous

#[test]
fn anonymous_segment_is_shared_with_forked_workers() {
    let mut kid = Kid::spawn("main-fork-workers", &["4", "20000"]);
    assert_eq!(kid.expect("value"), "80000");
    kid.wait_success();
}

#[test]
fn a_guard_a_forked_child_inherits_leaves_the_parents_lock_alone() {
    let mut kid = Kid::spawn("main-fork-copied-guard", &[]);
    assert_eq!(kid.expect("after the child:"), "held true, generation +0");
    assert_eq!(
        kid.expect("after the parent:"),
        "value 8, generation +1, poisoned false"
    );
    kid.wait_success();
}

#[test]
fn forked_worker_killed_holding_the_lock_is_recovered() {
    let mut kid = Kid::spawn("main-fork-victim", &[]);
    let said = kid.expect("poisoned");
    let ms: u64 = said
        .rsplit(' ')
        .nth(1)
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("{said}"));
    assert!(said.starts_with("value 42 in "), "{said}");
    assert!(ms < 1000, "{said}");
    kid.wait_success();
}

// ===========================================================================
// file-backed

#[test]
fn file_segment_is_shared_and_outlives_every_process() {
    let dir = TempDir::new("file-shared");
    let path = dir.join("state");
    let c = Shared::<Counter>::open_or_create(path.as_path(), Counter::default()).unwrap();
    use std::os::unix::fs::PermissionsExt;
    assert_eq!(
        std::fs::metadata(&path).unwrap().permissions().mode() & 0o777,
        0o600
    );
    let mut kids: Vec<_> = (0..3)
        .map(|_| Kid::spawn("file-incr", &[path.to_str().unwrap(), "10000"]))
        .collect();
    for k in &mut kids {
        k.wait_success();
    }
    c.flush().unwrap();
    drop(c);
    // Every handle is gone; the state is in the file, as after a reboot.
    let again = Shared::<Counter>::open(path.as_path()).unwrap();
    assert_eq!(again.lock().unwrap().value, 30_000);
    assert!(matches!(
        Shared::<Counter>::create(path.as_path(), Counter::default()),
        Err(Error::AlreadyExists { .. })
    ));
    shmstore::unlink(path.as_path()).unwrap();
    assert!(!path.exists());
    assert!(matches!(
        Shared::<Counter>::open(path.as_path()),
        Err(Error::NotFound { .. })
    ));
}

#[test]
fn file_lock_held_at_a_crash_is_recovered_after_reopening() {
    let dir = TempDir::new("file-crash");
    let path = dir.join("state");
    drop(Shared::<Counter>::create(path.as_path(), Counter::default()).unwrap());
    let mut holder = Kid::spawn("file-hold", &[path.to_str().unwrap()]);
    holder.expect("locked");
    holder.kill();
    // Nobody has it open now; a new process finds the lock poisoned.
    let mut checker = Kid::spawn("file-check-poisoned", &[path.to_str().unwrap()]);
    let said = checker.expect("poisoned");
    assert!(said.starts_with("value 42 in "), "{said}");
    checker.wait_success();
}

/// A file segment on a disk that a host of the other byte order shares:
/// its header (forged by hand, every number's bytes reversed) is refused by
/// `open` and by a mirror's `Target::open` with a message that names both
/// byte orders, and the file is left as it is.
#[test]
fn a_file_of_the_other_byte_order_is_refused_with_both_byte_orders() {
    let dir = TempDir::new("byteorder");
    let path = dir.join("config.shm");
    drop(Shared::create(path.as_path(), Counter::default()).unwrap());
    let before = common::forge_other_byte_order(&path);
    let both = format!(
        "made by a {} build, and this build is {}",
        common::other_byte_order(),
        common::this_byte_order()
    );
    let e = Shared::<Counter>::open(path.as_path()).unwrap_err();
    assert!(
        matches!(&e, Error::OtherByteOrder { found, .. }
            if *found == shmstore::ByteOrder::NATIVE.other()),
        "{e:?}"
    );
    assert!(e.to_string().contains(&both), "{e}");
    let e = Shared::<Counter>::open_or_create(path.as_path(), Counter::default()).unwrap_err();
    assert!(matches!(e, Error::OtherByteOrder { .. }), "{e:?}");
    #[cfg(feature = "mirror")]
    {
        match shmstore::mirror::Target::open(path.as_path()) {
            Err(e) => assert!(e.to_string().contains(&both), "{e}"),
            Ok(_) => panic!("a mirror took a file of the other byte order"),
        }
    }
    assert_eq!(
        std::fs::read(&path).unwrap(),
        before,
        "the file was changed"
    );
}

#[test]
fn file_segment_refuses_links_directories_and_damaged_files() {
    let dir = TempDir::new("file-bad");
    let target = dir.join("precious");
    std::fs::write(&target, b"do not touch").unwrap();
    let link = dir.join("link");
    std::os::unix::fs::symlink(&target, &link).unwrap();
    match Shared::<Counter>::open_or_create(link.as_path(), Counter::default()) {
        Err(Error::Corrupt { reason, .. }) => assert!(reason.contains("symbolic link")),
        other => panic!("a symlink was followed: {other:?}"),
    }
    assert_eq!(std::fs::read(&target).unwrap(), b"do not touch");

    let sub = dir.join("sub");
    std::fs::create_dir(&sub).unwrap();
    for e in [
        Shared::<Counter>::open(sub.as_path()).unwrap_err(),
        Shared::<Counter>::open_or_create(sub.as_path(), Counter::default()).unwrap_err(),
    ] {
        assert!(
            matches!(&e, Error::Corrupt { reason, .. } if reason.contains("directory")),
            "{e:?}"
        );
    }

    let garbage = dir.join("garbage");
    std::fs::write(&garbage, vec![0x5A; 512]).unwrap();
    for e in [
        Shared::<Counter>::open(garbage.as_path()).unwrap_err(),
        Shared::<Counter>::open_or_create(garbage.as_path(), Counter::default()).unwrap_err(),
    ] {
        assert!(matches!(e, Error::Corrupt { .. }), "{e:?}");
    }
    assert_eq!(std::fs::read(&garbage).unwrap(), vec![0x5A; 512]);

    let good = dir.join("good");
    drop(Shared::<Counter>::create(good.as_path(), Counter::default()).unwrap());
    let e = Shared::<Other>::open(good.as_path()).unwrap_err();
    assert!(matches!(e, Error::LayoutMismatch { .. }), "{e:?}");
    let f = std::fs::OpenOptions::new().write(true).open(&good).unwrap();
    f.set_len(100).unwrap();
    let e = Shared::<Counter>::open(good.as_path()).unwrap_err();
    assert!(matches!(e, Error::Corrupt { .. }), "{e:?}");
}

/// After a reboot the lock word of a file can name a thread id that is in
/// use again by a live, unrelated thread: its start time differs, so the
/// lock is recovered (poisoned) rather than waited on forever.
#[test]
fn file_lock_word_naming_a_recycled_thread_id_is_recovered() {
    let dir = TempDir::new("file-recycled");
    let path = dir.join("state");
    let init = Counter {
        value: 42,
        ..Counter::default()
    };
    drop(Shared::<Counter>::create(path.as_path(), init).unwrap());
    // The "holder before the reboot": this process's id, alive, with
    // another start time (field 22 of its stat line).
    let pid = std::process::id();
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    let after_name = &stat[stat.rfind(')').unwrap() + 2..];
    let start: u64 = after_name.split(' ').nth(19).unwrap().parse().unwrap();
    let word = (u64::from((start as u32).wrapping_add(12_345)) << 32) | u64::from(pid);
    let f = std::fs::OpenOptions::new().write(true).open(&path).unwrap();
    std::os::unix::fs::FileExt::write_all_at(&f, &word.to_ne_bytes(), 256).unwrap();
    drop(f);

    let mut checker = Kid::spawn("file-check-poisoned", &[path.to_str().unwrap()]);
    let said = checker.expect("poisoned");
    assert!(said.starts_with("value 42 in "), "{said}");
    checker.wait_success();
}
