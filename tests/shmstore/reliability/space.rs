//! Space under a segment: another process shrinking a segment while we have
//! it mapped, and file systems that are full when a segment is made.
//!
//! Touching a page of a mapping past the end of its (shrunk) object raises
//! SIGBUS, which kills a process. The victims here are child processes
//! (this test binary run again, see `common`), so that a SIGBUS that gets
//! through shows as a child killed by signal 7, not as the whole test binary
//! dying. The truncating process is the test itself: "another process" as
//! far as the victim is concerned.

use crate::common;

use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use common::{command, is_root, role, say, variant, Kid, Segment};
use shmstore::{Error, Shareable, Shared, SharedReader, Store};

/// 32 KiB of value: eight pages, most of which a shrink to one page removes.
#[derive(Shareable, Clone, Copy)]
#[repr(C)]
struct Wide {
    data: [u64; WIDE_WORDS],
}

const WIDE_WORDS: usize = 4096;

impl Wide {
    fn filled(v: u64) -> Wide {
        Wide {
            data: [v; WIDE_WORDS],
        }
    }
}

/// 256 KiB: more than the small file systems below hold.
#[derive(Shareable)]
#[repr(C)]
struct Big {
    data: [u64; 32 * 1024],
}

const SIGBUS: i32 = 7;

// ===========================================================================
// Roles played by child processes

/// The entry point of child processes (does nothing in a normal test run).
#[test]
fn child_entry() {
    let Some(args) = role() else { return };
    let arg = |i: usize| args[i].as_str();
    let code = match arg(0) {
        "hold-and-read" => hold_and_read(arg(1)),
        "snapshot" => snapshot_after_shrink(arg(1)),
        "store" => store_after_shrink(arg(1)),
        "foreign-sigbus" => foreign_sigbus(arg(1), arg(2)),
        "sent-sigbus" => sent_sigbus(arg(1)),
        "full" => full_file_systems(arg(1)),
        other => panic!("unknown role {other}"),
    };
    std::process::exit(code);
}

/// Where a role's segment is: a POSIX name, or a path when it has a `/`.
fn open_wide(at: &str) -> Shared<Wide> {
    if at.contains('/') {
        Shared::open(Path::new(at)).unwrap()
    } else {
        Shared::open(at).unwrap()
    }
}

/// Holds the lock, waits for the parent to shrink the segment, then reads
/// and writes the whole value through the guard and reports what every
/// later call says.
fn hold_and_read(at: &str) -> i32 {
    let shared = open_wide(at);
    let mut guard = shared.lock().unwrap();
    say(format!("before={}", guard.data[WIDE_WORDS - 1]));
    assert_eq!(command().as_deref(), Some("go"));
    // The last word is pages past the new end: without shmstore's handler
    // this read kills the process.
    let last = guard.data[WIDE_WORDS - 1];
    guard.data[WIDE_WORDS - 1] = 99;
    say(format!("after={last}"));
    drop(guard);
    say(format!("check={}", outcome(shared.check())));
    if let Err(e) = shared.check() {
        say(format!("message={e}"));
    }
    say(format!("poisoned={}", shared.is_poisoned()));
    say(format!("lock={}", lock_outcome(&shared)));
    say(format!(
        "snapshot={}",
        if shared.snapshot().is_ok() {
            "ok"
        } else {
            "poisoned"
        }
    ));
    // Clearing the poison flag does not make a shrunk segment whole.
    shared.clear_poison();
    say(format!("lock-after-clear={}", lock_outcome(&shared)));
    0
}

/// A read-only handle: snapshots after the shrink.
fn snapshot_after_shrink(name: &str) -> i32 {
    let reader = SharedReader::<Wide>::open(name).unwrap();
    say(format!(
        "before={}",
        outcome(reader.snapshot().map_err(|_| ()))
    ));
    assert_eq!(command().as_deref(), Some("go"));
    match reader.snapshot() {
        Ok(_) => say("snapshot=ok"),
        Err(e) => say(format!(
            "snapshot=poisoned first={}",
            e.into_inner().data[0]
        )),
    }
    say(format!("check={}", outcome(reader.check())));
    say(format!("poisoned={}", reader.is_poisoned()));
    0
}

/// A store with an entry handle open: every store call and the entry after
/// the shrink.
fn store_after_shrink(name: &str) -> i32 {
    let store = Store::open(name).unwrap();
    let entry = store.get::<Wide>("wide").unwrap();
    say(format!("before={}", entry.snapshot().unwrap().data[1]));
    assert_eq!(command().as_deref(), Some("go"));
    say(format!("entry-lock={}", lock_outcome(&entry)));
    say(format!("entry-check={}", outcome(entry.check())));
    say(format!("get={}", outcome(store.get::<Wide>("other"))));
    say(format!(
        "insert={}",
        outcome(store.insert("new", Wide::filled(5)))
    ));
    say(format!("entries={}", outcome(store.entries())));
    say(format!("remove={}", outcome(store.remove("wide"))));
    say(format!("store-check={}", outcome(store.check())));
    drop(entry);
    drop(store);
    say("dropped");
    0
}

/// With a shmstore segment open (so shmstore's handler is installed), maps
/// a file of its own, shrinks it and touches it: that SIGBUS is not
/// shmstore's to absorb, and must kill the process as it would without
/// shmstore.
fn foreign_sigbus(name: &str, path: &str) -> i32 {
    let _shared = open_wide(name);
    let file = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(true)
        .open(path)
        .unwrap();
    file.set_len(2 * 4096).unwrap();
    // SAFETY: a new shared mapping of two pages of our own file, at an
    // address the kernel chooses; nothing else uses it.
    let p = unsafe {
        libc::mmap(
            std::ptr::null_mut(),
            2 * 4096,
            libc::PROT_READ | libc::PROT_WRITE,
            libc::MAP_SHARED,
            std::os::fd::AsRawFd::as_raw_fd(&file),
            0,
        )
    };
    assert_ne!(p, libc::MAP_FAILED);
    file.set_len(0).unwrap();
    say("touching");
    // SAFETY: p + 4096 is inside the mapping made above; the file behind it
    // is gone, so this read raises SIGBUS, which is what is being tested.
    let v = unsafe { std::ptr::read_volatile(p.cast::<u8>().add(4096)) };
    say(format!("survived={v}"));
    0
}

/// Installs a SIGBUS handler of its own, then opens a segment (which
/// installs shmstore's), and waits to be sent SIGBUS by `kill`: not a fault
/// in a segment, so it must reach the handler that was there first.
fn sent_sigbus(name: &str) -> i32 {
    static CALLED: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);
    extern "C" fn mine(_: libc::c_int, _: *mut libc::siginfo_t, _: *mut libc::c_void) {
        CALLED.store(true, std::sync::atomic::Ordering::SeqCst);
    }
    // SAFETY: an all-zero sigaction is valid; the handler is set below.
    let mut action: libc::sigaction = unsafe { std::mem::zeroed() };
    action.sa_sigaction = mine as *const () as usize;
    action.sa_flags = libc::SA_SIGINFO;
    // SAFETY: `action` names an extern "C" handler with the SA_SIGINFO
    // signature that only stores to an atomic.
    let rc = unsafe { libc::sigaction(libc::SIGBUS, &action, std::ptr::null_mut()) };
    assert_eq!(rc, 0);
    let _shared = open_wide(name);
    say("ready");
    let called = common::eventually(Duration::from_secs(10), || {
        CALLED.load(std::sync::atomic::Ordering::SeqCst)
    });
    say(format!("called={called}"));
    0
}

/// In a private mount namespace, mounts small file systems and creates
/// segments too big for them there. Says "skip ..." when it cannot.
fn full_file_systems(tag: &str) -> i32 {
    if let Err(e) = private_mounts() {
        say(format!("skip {e}"));
        return 0;
    }
    // A POSIX segment on a full /dev/shm, and a store.
    if let Err(e) = mount_tmpfs("/dev/shm") {
        say(format!("skip {e}"));
        return 0;
    }
    let name = format!("shmstore-it-full-{tag}");
    report("shm-value", Shared::create(name.as_str(), zero_big()));
    report("shm-store", Store::create(name.as_str(), 1 << 20));
    say(format!(
        "shm-left={}",
        std::fs::read_dir("/dev/shm").unwrap().count()
    ));

    // A file-backed segment on a full tmpfs, and on a full ext4 disk.
    let dir = PathBuf::from(format!("/tmp/shmstore-it-full-{tag}"));
    std::fs::create_dir_all(&dir).unwrap();
    match mount_tmpfs(dir.to_str().unwrap()) {
        Ok(()) => {
            let file = dir.join("big.seg");
            report("tmpfs-file", Shared::create(file.as_path(), zero_big()));
            let small = Shared::create(dir.join("small.seg").as_path(), Wide::filled(1));
            report("tmpfs-small", small);
            say(format!("tmpfs-left={}", file.exists()));
            unmount(&dir);
        }
        Err(e) => say(format!("tmpfs-skip {e}")),
    }
    match mount_ext4(&dir, tag) {
        Ok(()) => {
            let file = dir.join("big.seg");
            report("ext4-file", Shared::create(file.as_path(), zero_big()));
            say(format!("ext4-left={}", file.exists()));
            unmount(&dir);
        }
        Err(e) => say(format!("ext4-skip {e}")),
    }
    let _ = std::fs::remove_dir(&dir);
    let _ = std::fs::remove_file(format!("/tmp/shmstore-it-full-{tag}.img"));
    say("done");
    0
}

fn zero_big() -> Big {
    Big {
        data: [0; 32 * 1024],
    }
}

fn report<T>(what: &str, r: shmstore::Result<T>) {
    match r {
        Ok(_) => say(format!("{what}=ok")),
        Err(Error::NoSpace { size, .. }) => say(format!("{what}=NoSpace size={size}")),
        Err(e) => say(format!("{what}={} ({e})", variant(&e))),
    }
}

fn outcome<T, E: std::fmt::Debug>(r: Result<T, E>) -> String {
    match r {
        Ok(_) => "ok".into(),
        Err(e) => {
            let d = format!("{e:?}");
            d.split([' ', '(', '{']).next().unwrap_or("").to_owned()
        }
    }
}

fn lock_outcome<T: Shareable>(s: &Shared<T>) -> &'static str {
    match s.try_lock_for(Duration::from_secs(5)) {
        Ok(_) => "ok",
        Err(std::sync::TryLockError::Poisoned(_)) => "poisoned",
        Err(std::sync::TryLockError::WouldBlock) => "blocked",
    }
}

/// Moves this thread into a mount namespace of its own whose mounts do not
/// propagate back to the machine.
fn private_mounts() -> Result<(), String> {
    let err = || std::io::Error::last_os_error().to_string();
    // SAFETY: unshare takes flags only; in a threaded process it moves only
    // this thread, which is the one that goes on to mount and create.
    if unsafe { libc::unshare(libc::CLONE_NEWNS) } != 0 {
        return Err(format!("unshare: {}", err()));
    }
    // SAFETY: a propagation change: the target is a valid C string; the
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
        return Err(format!("private propagation: {}", err()));
    }
    Ok(())
}

fn mount_tmpfs(at: &str) -> Result<(), String> {
    let target = std::ffi::CString::new(at).unwrap();
    // SAFETY: all pointers are valid C strings that outlive the call.
    let rc = unsafe {
        libc::mount(
            c"shmstore-test".as_ptr(),
            target.as_ptr(),
            c"tmpfs".as_ptr(),
            0,
            c"size=64k,mode=1777".as_ptr().cast(),
        )
    };
    if rc != 0 {
        return Err(format!(
            "tmpfs on {at}: {}",
            std::io::Error::last_os_error()
        ));
    }
    Ok(())
}

/// A 1 MiB ext4 image, filled up with a file, mounted through a loop device
/// (freed again when unmounted: `autoclear`).
fn mount_ext4(at: &Path, tag: &str) -> Result<(), String> {
    let image = format!("/tmp/shmstore-it-full-{tag}.img");
    let run = |cmd: &mut std::process::Command| -> Result<(), String> {
        let out = cmd.output().map_err(|e| format!("{cmd:?}: {e}"))?;
        if out.status.success() {
            Ok(())
        } else {
            Err(format!(
                "{cmd:?}: {}",
                String::from_utf8_lossy(&out.stderr).trim()
            ))
        }
    };
    std::fs::File::create(&image)
        .and_then(|f| f.set_len(1 << 20))
        .map_err(|e| e.to_string())?;
    run(std::process::Command::new("mkfs.ext4").args(["-q", "-F", &image]))?;
    // `mount` runs in this thread's mount namespace: a forked child inherits
    // the namespace of the thread that forks it.
    run(std::process::Command::new("mount").args(["-o", "loop", &image, at.to_str().unwrap()]))?;
    // Fill it, so that what is left is less than the segment needs.
    let filler = at.join("filler");
    let mut left = 0;
    if let Ok(fs) = nix::sys::statvfs::statvfs(at) {
        left = fs.blocks_available() * fs.fragment_size();
    }
    let keep = 64 << 10;
    if left > keep {
        std::fs::File::create(&filler)
            .and_then(|f| {
                nix::fcntl::posix_fallocate(&f, 0, (left - keep) as i64)
                    .map_err(std::io::Error::from)
            })
            .map_err(|e| format!("filling: {e}"))?;
    }
    Ok(())
}

fn unmount(at: &Path) {
    let target = std::ffi::CString::new(at.to_str().unwrap()).unwrap();
    // SAFETY: a valid C string that outlives the call.
    unsafe { libc::umount2(target.as_ptr(), libc::MNT_DETACH) };
}

// ===========================================================================
// Shrinking a segment under a mapping

/// Shrinks the object at `path` to `len` bytes, as another process with
/// write permission can at any time.
fn shrink(path: &Path, len: u64) {
    std::fs::OpenOptions::new()
        .write(true)
        .open(path)
        .unwrap()
        .set_len(len)
        .unwrap();
}

fn expect_alive(k: &mut Kid) {
    let status = k.wait();
    assert_eq!(
        status.signal(),
        None,
        "the child died of signal {:?}; stderr:\n{}",
        status.signal(),
        k.stderr()
    );
    assert!(status.success(), "stderr:\n{}", k.stderr());
}

/// The core case for every descriptor backend: a lock holder whose segment
/// is shrunk to one page (and to nothing) reads and writes through its guard,
/// lives on, and every later call says the segment is broken.
fn shrink_under_a_holder(at: &str, path: &Path, to: u64) {
    let mut k = Kid::spawn("hold-and-read", &[at]);
    assert_eq!(k.expect("before="), "7");
    shrink(path, to);
    k.send("go");
    // What the holder reads past the new end is zeros, never the old value
    // and never a crash.
    assert_eq!(k.expect("after="), "0");
    assert_eq!(k.expect("check="), "Truncated");
    let message = k.expect("message=");
    assert!(message.contains("shrunk by another process"), "{message}");
    assert_eq!(k.expect("poisoned="), "true");
    assert_eq!(k.expect("lock="), "poisoned");
    assert_eq!(k.expect("snapshot="), "poisoned");
    assert_eq!(k.expect("lock-after-clear="), "poisoned");
    expect_alive(&mut k);
}

#[test]
fn a_posix_segment_shrunk_under_a_lock_holder_is_an_error_not_a_sigbus() {
    for to in [4096, 0] {
        let seg = Segment::new("shrink-posix");
        let _s = Shared::create(seg.name(), Wide::filled(7)).unwrap();
        shrink_under_a_holder(seg.name(), &seg.path(), to);
    }
}

#[test]
fn a_file_segment_shrunk_under_a_lock_holder_is_an_error_not_a_sigbus() {
    let dir = std::env::temp_dir().join(format!("shmstore-it-space-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("wide.seg");
    let _s = Shared::create(path.as_path(), Wide::filled(7)).unwrap();
    shrink_under_a_holder(path.to_str().unwrap(), &path, 4096);
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn a_reader_of_a_shrunk_segment_gets_poisoned_snapshots_not_a_sigbus() {
    let seg = Segment::new("shrink-reader");
    let _s = Shared::create(seg.name(), Wide::filled(7)).unwrap();
    let mut k = Kid::spawn("snapshot", &[seg.name()]);
    assert_eq!(k.expect("before="), "ok");
    shrink(&seg.path(), 4096);
    k.send("go");
    // The copy is refused, whatever it holds: its first words are still on
    // the page that is left, the rest are zeros.
    let snap = k.expect("snapshot=");
    assert!(snap.starts_with("poisoned"), "{snap}");
    assert_eq!(k.expect("check="), "Truncated");
    assert_eq!(k.expect("poisoned="), "true");
    expect_alive(&mut k);
}

#[test]
fn a_store_shrunk_under_its_users_gives_truncated_from_every_call() {
    let seg = Segment::new("shrink-store");
    let store = Store::create(seg.name(), 256 << 10).unwrap();
    store.insert("other", Wide::filled(3)).unwrap();
    store.insert("wide", Wide::filled(4)).unwrap();
    let mut k = Kid::spawn("store", &[seg.name()]);
    assert_eq!(k.expect("before="), "4");
    shrink(&seg.path(), 4096);
    k.send("go");
    assert_eq!(k.expect("entry-lock="), "poisoned");
    assert_eq!(k.expect("entry-check="), "Truncated");
    for call in ["get", "insert", "entries", "remove", "store-check"] {
        assert_eq!(k.expect(&format!("{call}=")), "Truncated", "{call}");
    }
    k.expect("dropped");
    expect_alive(&mut k);
    // This process's own mapping is as cut as the child's: it too gets the
    // error as soon as it touches the missing part, and lives.
    assert!(matches!(store.entries(), Err(Error::Truncated { .. })));
}

#[test]
fn a_sigbus_outside_any_segment_still_kills_as_without_shmstore() {
    let seg = Segment::new("foreign-bus");
    let _s = Shared::create(seg.name(), Wide::filled(7)).unwrap();
    let path = std::env::temp_dir().join(format!("shmstore-it-bus-{}", std::process::id()));
    let mut k = Kid::spawn("foreign-sigbus", &[seg.name(), path.to_str().unwrap()]);
    k.expect("touching");
    let status = k.wait();
    let _ = std::fs::remove_file(&path);
    assert_eq!(
        status.signal(),
        Some(SIGBUS),
        "the child should die of SIGBUS; it ended {status:?}; stderr:\n{}",
        k.stderr()
    );
}

#[test]
fn a_sigbus_sent_by_kill_reaches_the_handler_installed_before() {
    let seg = Segment::new("sent-bus");
    let _s = Shared::create(seg.name(), Wide::filled(7)).unwrap();
    let mut k = Kid::spawn("sent-sigbus", &[seg.name()]);
    k.expect("ready");
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(k.pid() as i32),
        nix::sys::signal::Signal::SIGBUS,
    )
    .unwrap();
    assert_eq!(k.expect("called="), "true");
    expect_alive(&mut k);
}

// ===========================================================================
// Full file systems at creation

/// A full /dev/shm (a 64 KiB tmpfs mounted over it in a private mount
/// namespace), a full tmpfs and a full ext4 disk for file-backed segments:
/// `NoSpace` at creation, nothing left behind, no SIGBUS later.
#[test]
fn full_file_systems_give_no_space_and_leave_nothing() {
    if !is_root() {
        eprintln!("skipped: needs root for a private mount namespace");
        return;
    }
    let mounts = || std::fs::read_to_string("/proc/self/mountinfo").unwrap();
    let before = mounts();
    let tag = format!("{}", std::process::id());
    let _seg = Segment::exact(format!("shmstore-it-full-{tag}"));
    let mut k = Kid::spawn("full", &[&tag]);
    let first = k.line_within(common::PATIENCE).expect("a line");
    if first.starts_with("skip") {
        eprintln!("skipped: {first}");
        k.wait_success();
        return;
    }
    let big = common::segment_len::<Big>();
    assert_eq!(first, format!("shm-value=NoSpace size={big}"));
    assert!(k.expect("shm-store=").starts_with("NoSpace"));
    assert_eq!(
        k.expect("shm-left="),
        "0",
        "something was left in the small /dev/shm"
    );
    let mut checked = vec!["/dev/shm"];
    for fs in ["tmpfs", "ext4"] {
        let line = k.expect(fs);
        if line.starts_with("-skip") {
            eprintln!("{fs} skipped: {line}");
            continue;
        }
        assert_eq!(line, format!("-file=NoSpace size={big}"), "{fs}");
        if fs == "tmpfs" {
            assert_eq!(k.expect("tmpfs-small="), "ok");
        }
        assert_eq!(k.expect(&format!("{fs}-left=")), "false", "{fs}");
        checked.push(fs);
    }
    k.expect("done");
    k.wait_success();
    assert_eq!(mounts(), before, "the machine's mounts changed");
    eprintln!("full file systems checked: {checked:?}");
}
