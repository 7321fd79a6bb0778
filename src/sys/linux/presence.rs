//! Which processes have a segment open, as the kernel tells it to every
//! PID namespace: each process that maps a segment holds an open file
//! description lock (`F_OFD_SETLK`) on one byte of the segment's object,
//! far past its end, at an offset given by the process's *incarnation*:
//! for writing if it maps the segment for writing (only those may hold its
//! locks), for reading if it only reads. The kernel drops the lock when the
//! process dies (before it becomes a zombie), whichever namespace it ran
//! in, and another process asks with `F_OFD_GETLK` whether the byte is
//! still locked.
//!
//! The incarnation is 40 random bits, drawn when the process first needs
//! it and again in a forked child. Lock words name their holder by
//! incarnation and thread id (see `crate::lock`); this module answers
//! whether an incarnation is present in the segment a lock lies in.
//!
//! Each process keeps one open file description per object (a registry
//! keyed by device and inode), opened anew through `/proc/self/fd`, so that
//! a descriptor a user passes to another process (a memfd) never carries
//! this process's lock with it. A forked child reopens every description in
//! a fork handler, so the parent's locks die with the parent, not with the
//! last of its children.
//!
//! Only this process's own bookkeeping is here; nothing in it is read from
//! shared memory.

use std::cell::UnsafeCell;
use std::io;
use std::os::fd::{AsRawFd, BorrowedFd, RawFd};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

/// Where the bytes that stand for incarnations start: far past the end of
/// any segment (byte-range locks may lie past the end of a file, and
/// change nothing in it).
const BASE: i64 = 1 << 56;
/// How many bits an incarnation has.
pub(crate) const INCARNATION_BITS: u32 = 40;
/// How many incarnations there are (one byte each after `BASE`).
const SPAN: i64 = 1 << INCARNATION_BITS;

/// This process's incarnation (0 until drawn, and again in a forked child
/// until it draws its own).
static INCARNATION: AtomicU64 = AtomicU64::new(0);

/// One object this process maps, with the open file description that
/// stands for the process in it.
struct Entry {
    dev: u64,
    ino: u64,
    /// Owned: closed when the entry goes (-1 if a forked child could not
    /// reopen it: then nothing is registered through it).
    fd: RawFd,
    /// Whether `fd` is open for writing (a process that maps the object
    /// for writing registers its incarnation; a read-only one only asks).
    writable: bool,
    /// The incarnation locked through `fd` (0: none).
    registered: u64,
    /// The mappings of the object in this process: start and length.
    ranges: Vec<(usize, usize)>,
}

/// The registry: a spin lock around the entries. Not a sleeping mutex,
/// because a fork handler takes it (prepare) and gives it back in both
/// parent and child, which a spin flag allows and a parking lot would not.
struct Registry {
    busy: AtomicBool,
    entries: UnsafeCell<Vec<Entry>>,
}

// SAFETY: `entries` is only reached through `Registry::lock`, which holds
// `busy` for as long as the reference lives, so no two threads reach it at
// once.
unsafe impl Sync for Registry {}

static REGISTRY: Registry = Registry {
    busy: AtomicBool::new(false),
    entries: UnsafeCell::new(Vec::new()),
};

/// The registry's entries, while `busy` is held (released on drop).
struct Locked(());

impl Registry {
    fn lock(&self) -> Locked {
        install_fork_handler();
        while self
            .busy
            .compare_exchange_weak(false, true, Ordering::Acquire, Ordering::Relaxed)
            .is_err()
        {
            std::thread::yield_now();
        }
        Locked(())
    }
}

impl Locked {
    fn entries(&mut self) -> &mut Vec<Entry> {
        // SAFETY: `self` exists only while `busy` is held by this thread
        // (see `Registry::lock`), and the borrow is tied to `&mut self`.
        unsafe { &mut *REGISTRY.entries.get() }
    }
}

impl Drop for Locked {
    fn drop(&mut self) {
        REGISTRY.busy.store(false, Ordering::Release);
    }
}

/// One mapping's place in the registry; dropping it takes the mapping out,
/// and closes the object's description (which ends this process's
/// presence there) when it was the last.
#[derive(Debug)]
pub(crate) struct Registration {
    dev: u64,
    ino: u64,
    start: usize,
}

impl Drop for Registration {
    fn drop(&mut self) {
        let mut reg = REGISTRY.lock();
        let entries = reg.entries();
        let Some(i) = entries
            .iter()
            .position(|e| e.dev == self.dev && e.ino == self.ino)
        else {
            return;
        };
        let e = &mut entries[i];
        if let Some(r) = e.ranges.iter().position(|&(s, _)| s == self.start) {
            e.ranges.swap_remove(r);
        }
        if e.ranges.is_empty() {
            close_entry(entries.swap_remove(i));
        }
    }
}

/// Closes an entry's description, unlocking its incarnation first: closing
/// alone would leave the lock for as long as another reference to the
/// description lives (a child this process is spawning holds one until it
/// execs), where it would refuse this process's next description of the
/// object and keep the process present after it let go.
fn close_entry(e: Entry) {
    if e.fd >= 0 {
        if e.registered != 0 {
            let _ = unlock(e.fd, e.registered);
        }
        // SAFETY: the entry owned `fd`, and is gone now.
        unsafe { libc::close(e.fd) };
    }
}

impl Registration {
    /// The process's description of the object, lent for as long as this
    /// registration lives (its number never changes meanwhile): what a
    /// memfd handle hands to other processes. A process that receives it
    /// and maps it (`Shared::from_fd`) registers a description of its own
    /// and drops the one received, so no process keeps another's presence
    /// alive.
    pub(crate) fn descriptor(&self) -> Option<BorrowedFd<'_>> {
        let mut reg = REGISTRY.lock();
        let e = reg
            .entries()
            .iter()
            .find(|e| e.dev == self.dev && e.ino == self.ino)?;
        (e.fd >= 0).then(|| {
            // SAFETY: the entry owns `e.fd` and lives at least as long as
            // `self` (it goes with its last registration); its number stays
            // the same while it lives (replacements are made with dup3 onto
            // it), so the borrow, tied to `self`, never outlives it.
            unsafe { BorrowedFd::borrow_raw(e.fd) }
        })
    }
}

/// Registers the mapping `start..start + len` of the object `fd` refers to:
/// this process's incarnation is locked in the object (drawn first if
/// needed), for writing if `writable`, else for reading (which may fail:
/// a reader then works unregistered).
///
/// Fails if `/proc/self/fd` cannot reopen the object, or if another
/// process holds this incarnation's byte (only a peer that forged it could:
/// two processes draw the same 40 bits once in 2^40).
pub(crate) fn register(
    fd: BorrowedFd<'_>,
    start: usize,
    len: usize,
    writable: bool,
) -> io::Result<Registration> {
    let st = nix::sys::stat::fstat(fd)?;
    let (dev, ino) = (st.st_dev, st.st_ino);
    let mut reg = REGISTRY.lock();
    let entries = reg.entries();
    let i = match entries.iter().position(|e| e.dev == dev && e.ino == ino) {
        Some(i) => i,
        None => {
            let own = reopen(fd.as_raw_fd(), writable)?;
            entries.push(Entry {
                dev,
                ino,
                fd: own,
                writable,
                registered: 0,
                ranges: Vec::new(),
            });
            entries.len() - 1
        }
    };
    if writable && !entries[i].writable {
        // Mapped read-only until now: a writable description replaces it.
        // Onto the same number, which a handle may have lent out (see
        // `Registration::descriptor`).
        let own = reopen(fd.as_raw_fd(), true)?;
        let e = &mut entries[i];
        if e.fd >= 0 && e.registered != 0 {
            // The read lock goes with the description it was taken through,
            // whoever else still refers to it (see `close_entry`).
            let _ = unlock(e.fd, e.registered);
        }
        if e.fd >= 0 {
            // SAFETY: `own` was opened above; `e.fd` is the entry's own
            // descriptor, which dup3 makes refer to `own`'s description.
            let rc = unsafe { libc::dup3(own, e.fd, libc::O_CLOEXEC) };
            let err = io::Error::last_os_error();
            // SAFETY: `own` is ours, closed once.
            unsafe { libc::close(own) };
            if rc < 0 {
                return Err(err);
            }
        } else {
            e.fd = own;
        }
        e.writable = true;
        e.registered = 0;
    }
    let locked = incarnation_locked(entries).and_then(|x| {
        let e = &mut entries[i];
        if e.registered != x {
            set_lock_patiently(e.fd, x, e.writable)?;
            e.registered = x;
        }
        Ok(())
    });
    match locked {
        Ok(()) => {}
        // A reader only shows that it has the segment mapped (for `gc`):
        // without it, it still works.
        Err(_) if !entries[i].writable => {}
        Err(err) => {
            if entries[i].ranges.is_empty() {
                close_entry(entries.swap_remove(i));
            }
            return Err(err);
        }
    }
    entries[i].ranges.push((start, len));
    Ok(Registration { dev, ino, start })
}

/// This process's incarnation, drawn (and registered in every object this
/// process maps for writing) if it has none yet.
pub(crate) fn incarnation() -> io::Result<u64> {
    let x = INCARNATION.load(Ordering::Relaxed);
    if x != 0 {
        return Ok(x);
    }
    let mut reg = REGISTRY.lock();
    incarnation_locked(reg.entries())
}

fn incarnation_locked(entries: &mut [Entry]) -> io::Result<u64> {
    let x = INCARNATION.load(Ordering::Relaxed);
    if x != 0 {
        return Ok(x);
    }
    // Another live process with the same 40 bits in one of our objects is
    // a one-in-2^40 chance (or a forgery): draw again, a few times.
    let mut last = io::Error::from_raw_os_error(libc::EAGAIN);
    for _ in 0..4 {
        let x = draw()?;
        match lock_everywhere(entries, x) {
            Ok(()) => {
                INCARNATION.store(x, Ordering::Relaxed);
                return Ok(x);
            }
            Err(e) => last = e,
        }
    }
    Err(last)
}

/// Locks `x` in every entry (for writing where it is writable, else for
/// reading); on failure unlocks what it locked.
fn lock_everywhere(entries: &mut [Entry], x: u64) -> io::Result<()> {
    for i in 0..entries.len() {
        if entries[i].fd < 0 {
            continue;
        }
        if let Err(e) = set_lock(entries[i].fd, x, entries[i].writable) {
            for done in &mut entries[..i] {
                if done.fd >= 0 {
                    let _ = unlock(done.fd, x);
                    done.registered = 0;
                }
            }
            return Err(e);
        }
        entries[i].registered = x;
    }
    Ok(())
}

/// 40 random bits, never 0.
fn draw() -> io::Result<u64> {
    loop {
        let mut b = [0u8; 8];
        // SAFETY: `b` is 8 writable bytes that outlive the call.
        let n = unsafe { libc::getrandom(b.as_mut_ptr().cast(), b.len(), 0) };
        if n < 0 {
            let e = io::Error::last_os_error();
            if e.kind() == io::ErrorKind::Interrupted {
                continue;
            }
            return Err(e);
        }
        if n as usize != b.len() {
            continue;
        }
        let x = u64::from_ne_bytes(b) & ((1 << INCARNATION_BITS) - 1);
        if x != 0 {
            return Ok(x);
        }
    }
}

/// What the object under a lock says of an incarnation.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Presence {
    /// A process holds the incarnation's byte for writing: it lives.
    Present,
    /// Nobody does (or only a read lock, which no registration takes): no
    /// live process has this incarnation in this object.
    Absent,
    /// The address is in no object this process registered, or the kernel
    /// could not be asked.
    Unknown,
}

/// Whether a process with incarnation `x` has the object mapped at `addr`
/// in this process open.
pub(crate) fn presence(addr: usize, x: u64) -> Presence {
    if x == 0 || x >= 1 << INCARNATION_BITS {
        return Presence::Absent;
    }
    let mut reg = REGISTRY.lock();
    let Some(e) = reg
        .entries()
        .iter()
        .find(|e| e.ranges.iter().any(|&(s, l)| addr >= s && addr - s < l))
    else {
        return Presence::Unknown;
    };
    if e.fd < 0 {
        return Presence::Unknown;
    }
    match get_lock(e.fd, BASE + x as i64, 1) {
        Ok(Some((libc::F_WRLCK, _, _))) => Presence::Present,
        Ok(_) => Presence::Absent,
        Err(_) => Presence::Unknown,
    }
}

/// Whether process `pid`, as this PID namespace numbers it, is the one that
/// shows incarnation `x` in the object mapped at `addr` in this process:
/// whether one of its descriptors of that object holds `x`'s byte for
/// writing, as `/proc/PID/fdinfo` lists the locks of each descriptor (open
/// file description locks included). `Some(false)` if it does not (or there
/// is no such process here); `None` if that cannot be told (the address is
/// in no registered mapping, or `/proc/PID/fd` may not be read).
pub(crate) fn shown_by(addr: usize, pid: u32, x: u64) -> Option<bool> {
    use std::os::unix::fs::MetadataExt;
    if x == 0 || x >= 1 << INCARNATION_BITS || pid == 0 {
        return Some(false);
    }
    let (dev, ino) = {
        let mut reg = REGISTRY.lock();
        let e = reg
            .entries()
            .iter()
            .find(|e| e.ranges.iter().any(|&(s, l)| addr >= s && addr - s < l))?;
        (e.dev, e.ino)
    };
    let dir = match std::fs::read_dir(format!("/proc/{pid}/fd")) {
        Ok(dir) => dir,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Some(false),
        Err(_) => return None,
    };
    let start = (BASE + x as i64).to_string();
    for fd in dir.flatten() {
        let Ok(m) = std::fs::metadata(fd.path()) else {
            continue;
        };
        if m.dev() != dev || m.ino() != ino {
            continue;
        }
        let info = format!("/proc/{pid}/fdinfo/{}", fd.file_name().to_string_lossy());
        let Ok(info) = std::fs::read_to_string(info) else {
            continue;
        };
        // `lock:\t1: OFDLCK ADVISORY WRITE -1 00:1a:1234 START END`
        let holds = info.lines().any(|line| {
            let f: Vec<&str> = line.split_whitespace().collect();
            f.first() == Some(&"lock:")
                && f.contains(&"OFDLCK")
                && f.contains(&"WRITE")
                && f.len() >= 2
                && f[f.len() - 2] == start
        });
        if holds {
            return Some(true);
        }
    }
    Some(false)
}

/// How many processes show themselves in an object: those that map it for
/// writing and those that only read it.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct Count {
    pub writers: u64,
    pub readers: u64,
}

/// How many processes (this one included) show themselves in the object
/// `fd` refers to, in any PID namespace; `None` if the kernel could not be
/// asked. A peer with read access can add read locks of its own: readers
/// are an upper bound, writers are exact.
pub(crate) fn count(fd: BorrowedFd<'_>) -> Option<Count> {
    // A description of our own, so that this process's own lock (held
    // through the registry's description) counts too.
    let own = reopen(fd.as_raw_fd(), false).ok()?;
    let mut n = Count::default();
    // The kernel reports one conflicting lock of a range, not necessarily
    // the first: split the range around each one found.
    let mut ranges = vec![(BASE, BASE + SPAN)];
    let mut ok = true;
    while let Some((from, to)) = ranges.pop() {
        if from >= to {
            continue;
        }
        match get_lock(own, from, to - from) {
            Ok(None) => {}
            Ok(Some((kind, at, len))) => {
                let at = at.max(from);
                let end = if len == 0 { to } else { (at + len).min(to) };
                let bytes = (end - at).max(1) as u64;
                if kind == libc::F_WRLCK {
                    n.writers += bytes;
                } else {
                    n.readers += bytes;
                }
                ranges.push((from, at));
                ranges.push((end, to));
            }
            Err(_) => {
                ok = false;
                break;
            }
        }
    }
    // SAFETY: `own` was opened above and is closed once.
    unsafe { libc::close(own) };
    ok.then_some(n)
}

/// A description of this process's own of the object `fd` refers to, for
/// reading and writing: what a descriptor received from another process
/// is mapped through. The one received may be the sender's own description
/// (a memfd handle lends it, see `Registration::descriptor`), which shows
/// the sender's presence; a mapping keeps the description it was made
/// from for as long as it lives, so mapping that one would keep a dead
/// sender present (and its locks held) for as long as the segment is
/// mapped here.
pub(crate) fn own_description(fd: BorrowedFd<'_>) -> io::Result<std::os::fd::OwnedFd> {
    use std::os::fd::FromRawFd;
    let own = reopen(fd.as_raw_fd(), true)?;
    // SAFETY: `reopen` returned a descriptor that nothing else owns.
    Ok(unsafe { std::os::fd::OwnedFd::from_raw_fd(own) })
}

/// Opens a new description of the object `fd` refers to (through
/// `/proc/self/fd`), close-on-exec, for reading and writing or reading.
fn reopen(fd: RawFd, writable: bool) -> io::Result<RawFd> {
    let mut path = [0u8; 32];
    let len = proc_fd_path(fd, &mut path);
    let flags = libc::O_CLOEXEC | if writable { libc::O_RDWR } else { libc::O_RDONLY };
    // SAFETY: `path[..len]` is a NUL-terminated string (see `proc_fd_path`)
    // that outlives the call.
    let own = unsafe { libc::open(path[..len].as_ptr().cast(), flags) };
    if own < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(own)
}

/// Writes `/proc/self/fd/<fd>` and a NUL into `out`, returning its length
/// with the NUL; no allocation (a fork child handler calls it).
fn proc_fd_path(fd: RawFd, out: &mut [u8; 32]) -> usize {
    const PREFIX: &[u8] = b"/proc/self/fd/";
    out[..PREFIX.len()].copy_from_slice(PREFIX);
    let mut n = PREFIX.len();
    let mut digits = [0u8; 10];
    let mut d = 0;
    let mut v = fd.max(0) as u32;
    loop {
        digits[d] = b'0' + (v % 10) as u8;
        d += 1;
        v /= 10;
        if v == 0 {
            break;
        }
    }
    while d > 0 {
        d -= 1;
        out[n] = digits[d];
        n += 1;
    }
    out[n] = 0;
    n + 1
}

fn flock(kind: i32, start: i64, len: i64) -> libc::flock {
    // SAFETY: `flock` is plain integers, for which all zeroes is valid.
    let mut f: libc::flock = unsafe { std::mem::zeroed() };
    f.l_type = kind as libc::c_short;
    f.l_whence = libc::SEEK_SET as libc::c_short;
    f.l_start = start as libc::off_t;
    f.l_len = len as libc::off_t;
    f
}

/// Locks incarnation `x`'s byte through `fd`, for writing (`write`) or
/// reading, without waiting.
fn set_lock(fd: RawFd, x: u64, write: bool) -> io::Result<()> {
    let kind = if write { libc::F_WRLCK } else { libc::F_RDLCK };
    let f = flock(kind, BASE + x as i64, 1);
    // SAFETY: `f` is a valid flock that outlives the call; `fd` is open.
    if unsafe { libc::fcntl(fd, libc::F_OFD_SETLK, &f) } != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// [`set_lock`], waiting up to 200 ms while the byte is taken. A child
/// this process started (`posix_spawn`, or `fork` before its handlers ran)
/// shares this process's descriptions until it execs, so a description this
/// process just closed may hold its lock a moment longer; a lock held for
/// longer is another process's (a forgery, or two processes that drew the
/// same 40 bits).
fn set_lock_patiently(fd: RawFd, x: u64, write: bool) -> io::Result<()> {
    let until = std::time::Instant::now() + std::time::Duration::from_millis(200);
    loop {
        match set_lock(fd, x, write) {
            Err(e)
                if matches!(e.raw_os_error(), Some(libc::EAGAIN | libc::EACCES))
                    && std::time::Instant::now() < until =>
            {
                std::thread::sleep(std::time::Duration::from_millis(1));
            }
            other => return other,
        }
    }
}

fn unlock(fd: RawFd, x: u64) -> io::Result<()> {
    let f = flock(libc::F_UNLCK, BASE + x as i64, 1);
    // SAFETY: as in `set_lock`.
    if unsafe { libc::fcntl(fd, libc::F_OFD_SETLK, &f) } != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// A lock that another description holds on `start..start + len` of the
/// object `fd` refers to, as its type, start and length (0: to the end);
/// `None` if none.
// `off_t` is i64 here, narrower on some 32-bit targets.
#[allow(clippy::unnecessary_cast)]
fn get_lock(fd: RawFd, start: i64, len: i64) -> io::Result<Option<(i32, i64, i64)>> {
    let mut f = flock(libc::F_WRLCK, start, len);
    // SAFETY: `f` is a valid flock the kernel may write, outliving the call.
    if unsafe { libc::fcntl(fd, libc::F_OFD_GETLK, &mut f) } != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok((i32::from(f.l_type) != libc::F_UNLCK).then_some((
        i32::from(f.l_type),
        f.l_start,
        f.l_len,
    )))
}

/// Installs the fork handlers once.
fn install_fork_handler() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        // SAFETY: the three handlers are `extern "C" fn()`s that only touch
        // the registry's spin flag and, in the child, make system calls
        // (open, dup3, close) with no allocation or lock but the flag the
        // prepare handler took: async-signal-safe, as a fork child of a
        // threaded process requires.
        let rc = unsafe {
            libc::pthread_atfork(
                Some(before_fork),
                Some(after_fork_in_parent),
                Some(after_fork_in_child),
            )
        };
        // Without it a forked child would keep its parent's presence alive.
        assert_eq!(rc, 0, "shmstore: pthread_atfork failed ({rc})");
    });
}

extern "C" fn before_fork() {
    while REGISTRY
        .busy
        .compare_exchange_weak(false, true, Ordering::Acquire, Ordering::Relaxed)
        .is_err()
    {
        std::hint::spin_loop();
    }
}

extern "C" fn after_fork_in_parent() {
    REGISTRY.busy.store(false, Ordering::Release);
}

/// In the child: every description is replaced by a new one of the same
/// object (the inherited one, shared with the parent, carries the parent's
/// lock), with nothing registered; the child draws its own incarnation
/// when it next needs one.
extern "C" fn after_fork_in_child() {
    // SAFETY: the prepare handler holds `busy`, and the child has only
    // this thread: nothing else reaches the entries.
    let entries = unsafe { &mut *REGISTRY.entries.get() };
    for e in entries.iter_mut() {
        if e.fd < 0 {
            continue;
        }
        let mut path = [0u8; 32];
        let len = proc_fd_path(e.fd, &mut path);
        let flags = libc::O_CLOEXEC | if e.writable { libc::O_RDWR } else { libc::O_RDONLY };
        // SAFETY: `path[..len]` is NUL-terminated; open, dup3 and close are
        // async-signal-safe system calls on descriptors this entry owns.
        unsafe {
            let own = libc::open(path[..len].as_ptr().cast(), flags);
            if own >= 0 && libc::dup3(own, e.fd, libc::O_CLOEXEC) >= 0 {
                libc::close(own);
            } else {
                if own >= 0 {
                    libc::close(own);
                }
                // Keep no share of the parent's description.
                libc::close(e.fd);
                e.fd = -1;
            }
        }
        e.registered = 0;
    }
    INCARNATION.store(0, Ordering::Relaxed);
    REGISTRY.busy.store(false, Ordering::Release);
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use std::os::fd::{AsFd, FromRawFd, OwnedFd};

    /// Shows incarnation `x` in the object `fd` refers to, as another
    /// process would, until the returned description is dropped.
    pub(crate) fn show(fd: BorrowedFd<'_>, x: u64) -> OwnedFd {
        let own = reopen(fd.as_raw_fd(), true).unwrap();
        set_lock(own, x, true).unwrap();
        // SAFETY: `own` was just opened and nothing else owns it.
        unsafe { OwnedFd::from_raw_fd(own) }
    }

    fn memfd() -> std::os::fd::OwnedFd {
        crate::sys::memfd::create("presence-test").unwrap()
    }

    #[test]
    fn paths_of_descriptors() {
        let mut out = [0u8; 32];
        let n = proc_fd_path(0, &mut out);
        assert_eq!(&out[..n], b"/proc/self/fd/0\0");
        let n = proc_fd_path(1234567, &mut out);
        assert_eq!(&out[..n], b"/proc/self/fd/1234567\0");
    }

    #[test]
    fn the_process_showing_an_incarnation_is_found_by_its_descriptors() {
        let fd = memfd();
        let r = register(fd.as_fd(), 0x3000_0000, 4096, true).unwrap();
        let x = incarnation().unwrap();
        let me = std::process::id();
        assert_eq!(shown_by(0x3000_0010, me, x), Some(true));
        assert_eq!(shown_by(0x3000_0010, me, x ^ 1), Some(false));
        // No such process here.
        assert_eq!(shown_by(0x3000_0010, u32::MAX >> 1, x), Some(false));
        // An address in no registered mapping.
        assert_eq!(shown_by(0x3800_0000, me, x), None);
        drop(r);
    }

    #[test]
    fn a_registered_incarnation_is_present_to_another_description() {
        let fd = memfd();
        let r = register(fd.as_fd(), 0x1000_0000, 4096, true).unwrap();
        let x = incarnation().unwrap();
        assert!(x != 0 && x < 1 << INCARNATION_BITS);
        // Seen through a description of our own, as another process would.
        let other = reopen(fd.as_raw_fd(), false).unwrap();
        assert_eq!(
            get_lock(other, BASE + x as i64, 1).unwrap(),
            Some((libc::F_WRLCK, BASE + x as i64, 1))
        );
        assert_eq!(get_lock(other, BASE + (x ^ 1) as i64, 1).unwrap(), None);
        let one = Count {
            writers: 1,
            readers: 0,
        };
        assert_eq!(count(fd.as_fd()), Some(one));
        // Two more processes, one of them a reader.
        let w = tests::show(fd.as_fd(), x ^ 4);
        let rd = reopen(fd.as_raw_fd(), false).unwrap();
        set_lock(rd, x ^ 8, false).unwrap();
        assert_eq!(
            count(fd.as_fd()),
            Some(Count {
                writers: 2,
                readers: 1
            })
        );
        drop(w);
        // SAFETY: opened above, closed once.
        unsafe { libc::close(rd) };
        assert_eq!(count(fd.as_fd()), Some(one));
        // An unregistered address is unknown.
        assert_eq!(presence(0x2000_0000, x ^ 1), Presence::Unknown);
        assert_eq!(presence(0x1000_0010, x ^ 1), Presence::Absent);
        drop(r);
        assert_eq!(get_lock(other, BASE + x as i64, 1).unwrap(), None);
        assert_eq!(count(fd.as_fd()), Some(Count::default()));
        // SAFETY: opened above, closed once.
        unsafe { libc::close(other) };
    }
}
