//! Creating and opening a segment safely, whatever the backend.
//!
//! # Protocol
//!
//! Every process that creates, opens or initialises an object first takes a
//! `flock` on it: exclusive to create or initialise, shared to open. All
//! initialisation happens under the exclusive lock, in this order:
//!
//! 1. write the header with state INITIALISING (so the object carries our
//!    magic from its first byte on, and is never mistaken for a foreign file);
//! 2. set the exact size and allocate every page (`posix_fallocate`), so a
//!    full /dev/shm is an error now and never a SIGBUS later;
//! 3. write the lock (unlocked) and the initial value;
//! 4. publish state READY with a release store.
//!
//! Whoever takes the lock next sees either nothing (size 0), a complete
//! segment, or a creator's remains in state INITIALISING: a creator that died
//! releases its `flock` with its last descriptor, so whoever holds the lock
//! knows nobody is still writing. `open_or_create` then initialises the
//! object again; `open` reports [`Error::Incomplete`]. A file without our
//! magic is never written over.
//!
//! `create` makes the name (size 0) a moment before it takes its lock, so
//! `open` treats size 0 as "creator about to start" and waits for it, up to
//! a few seconds (a creator killed before sizing the object leaves size 0
//! for good; `open` then reports `Incomplete`).
//!
//! Before anything is mapped, `fstat` gives the object's size and owner, the
//! header is read with `pread` and checked against the size and against `T`,
//! and only then are exactly that many bytes mapped.

use std::os::fd::{AsFd, OwnedFd};
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use nix::errno::Errno;
use nix::fcntl::{posix_fallocate, Flock, FlockArg};
use nix::sys::stat::{fchmod, fstat, Mode};
use nix::sys::uio::{pread, pwrite};
use nix::unistd::ftruncate;
use zerocopy::IntoBytes;

use crate::backend::{posix, OpenMode};
use crate::error::{Error, Result};
use crate::header::{self, Creator, Found, Header, Layout, LOCK_OFFSET, STATE_OFFSET, STATE_READY};
use crate::lock::RawLock;
use crate::name::Name;
use crate::options::SharedOptions;
use crate::shareable::Shareable;
use crate::sys::mapping::Mapping;

/// How long to wait for another process that is initialising the object.
const INIT_TIMEOUT: Duration = Duration::from_secs(5);

/// Creates or opens the POSIX object `name` as a segment holding a `T`.
///
/// `value` is the initial value, required unless `mode` is `Open`.
pub(crate) fn establish<T: Shareable>(
    name: &Name,
    opts: &SharedOptions,
    mode: OpenMode,
    value: Option<T>,
) -> Result<Mapping> {
    let (fd, created) = posix::open(name, mode, opts.mode)?;
    let result = establish_fd(name, opts, mode, fd, created, value);
    if created && matches!(result, Err(Error::NoSpace { .. }) | Err(Error::Io { .. })) {
        // We made the name and could not finish it: leave nothing behind.
        let _ = posix::unlink(name);
    }
    result
}

fn establish_fd<T: Shareable>(
    name: &Name,
    opts: &SharedOptions,
    mode: OpenMode,
    fd: OwnedFd,
    created: bool,
    value: Option<T>,
) -> Result<Mapping> {
    let io = |op, e: Errno| Error::Io {
        op,
        name: name.as_str().to_owned(),
        source: e.into(),
    };
    if created {
        // shm_open's mode passed through the umask; set exactly what was asked.
        fchmod(&fd, Mode::from_bits_truncate(opts.mode as libc::mode_t))
            .map_err(|e| io("setting the mode of", e))?;
    } else {
        check_owner(name, opts, &fd)?;
    }

    let exclusive = mode != OpenMode::Open;
    let (fd, size) = lock_sized(name, fd, exclusive)?;

    if size != 0 && mode == OpenMode::Create {
        // Lost a race to a concurrent open_or_create, which initialised it.
        return Err(Error::AlreadyExists {
            name: name.as_str().to_owned(),
        });
    }
    let found = if size == 0 {
        None
    } else {
        let mut buf = [0u8; std::mem::size_of::<Header>()];
        let want = buf.len().min(size as usize);
        let got = read_at(&fd, &mut buf[..want]).map_err(|e| io("reading the header of", e))?;
        Some(header::check::<T>(name.as_str(), &buf[..got], size)?)
    };

    match (found, mode) {
        (Some(Found::Ready(h)), OpenMode::Open | OpenMode::OpenOrCreate) => {
            check_namespace(name, &h)?;
            Mapping::map(fd.as_fd(), size as usize).map_err(|e| Error::Io {
                op: "mapping",
                name: name.as_str().to_owned(),
                source: e,
            })
        }
        (Some(Found::Ready(_)), OpenMode::Create) => unreachable!("handled above"),
        (None | Some(Found::Initialising), OpenMode::Open) => Err(Error::Incomplete {
            name: name.as_str().to_owned(),
        }),
        (None | Some(Found::Initialising), OpenMode::Create | OpenMode::OpenOrCreate) => {
            let value = value.expect("create and open_or_create pass a value");
            initialise(name, &fd, value).inspect_err(|_| {
                // Leave the object as empty as we found it.
                let _ = ftruncate(&*fd, 0);
            })
        }
    }
}

/// Refuses an object that another user owns, unless allowed.
fn check_owner(name: &Name, opts: &SharedOptions, fd: &OwnedFd) -> Result<()> {
    let st = fstat(fd).map_err(|e| posix::os_error(name, "inspecting", e))?;
    let ours = nix::unistd::geteuid().as_raw();
    if st.st_uid != ours && !opts.allow_foreign_owner {
        return Err(Error::ForeignOwner {
            name: name.as_str().to_owned(),
            owner_uid: st.st_uid,
            our_uid: ours,
        });
    }
    Ok(())
}

/// Refuses a segment made in another PID namespace (its lock owners' thread
/// ids cannot be checked from here).
fn check_namespace(name: &Name, h: &Header) -> Result<()> {
    let ours = header::pid_namespace();
    if h.pid_ns != 0 && ours != 0 && h.pid_ns != ours {
        return Err(Error::OtherPidNamespace {
            name: name.as_str().to_owned(),
        });
    }
    Ok(())
}

/// Takes the object's `flock` and returns it with the object's size, waiting
/// at most [`INIT_TIMEOUT`] for a process that is initialising it.
///
/// A creator makes the name (size 0) a moment before it takes its exclusive
/// lock; a shared-lock taker (`open`) that finds size 0 therefore lets go and
/// waits for the creator, until the timeout says that the creator is gone.
fn lock_sized(name: &Name, fd: OwnedFd, exclusive: bool) -> Result<(Flock<OwnedFd>, u64)> {
    let arg = if exclusive {
        FlockArg::LockExclusiveNonblock
    } else {
        FlockArg::LockSharedNonblock
    };
    let incomplete = || Error::Incomplete {
        name: name.as_str().to_owned(),
    };
    let deadline = Instant::now() + INIT_TIMEOUT;
    let mut fd = fd;
    let mut nap = Duration::from_micros(100);
    loop {
        match Flock::lock(fd, arg) {
            Ok(locked) => {
                let size = fstat(&*locked)
                    .map_err(|e| posix::os_error(name, "inspecting", e))?
                    .st_size as u64;
                if size != 0 || exclusive {
                    return Ok((locked, size));
                }
                if Instant::now() >= deadline {
                    return Err(incomplete());
                }
                fd = locked
                    .unlock()
                    .map_err(|(_, e)| posix::os_error(name, "unlocking", e))?;
            }
            Err((back, Errno::EWOULDBLOCK | Errno::EINTR)) if Instant::now() < deadline => {
                fd = back;
            }
            Err((_, Errno::EWOULDBLOCK)) => return Err(incomplete()),
            Err((_, e)) => return Err(posix::os_error(name, "locking", e)),
        }
        std::thread::sleep(nap);
        nap = (nap * 2).min(Duration::from_millis(20));
    }
}

/// Reads up to `buf.len()` bytes from offset 0; returns how many were read.
fn read_at(fd: &Flock<OwnedFd>, buf: &mut [u8]) -> nix::Result<usize> {
    let mut got = 0;
    while got < buf.len() {
        match pread(&**fd, &mut buf[got..], got as i64) {
            Ok(0) => break,
            Ok(n) => got += n,
            Err(Errno::EINTR) => {}
            Err(e) => return Err(e),
        }
    }
    Ok(got)
}

/// Writes a new segment holding `value`, in the order the module docs give.
fn initialise<T: Shareable>(name: &Name, fd: &Flock<OwnedFd>, value: T) -> Result<Mapping> {
    let layout = Layout::of::<T>();
    let total = layout.total_size;
    let no_space = || Error::NoSpace {
        name: name.as_str().to_owned(),
        size: total as u64,
    };
    let io = |op, e: Errno| match e {
        Errno::ENOSPC | Errno::EFBIG | Errno::ENOMEM => no_space(),
        e => posix::os_error(name, op, e),
    };

    let header = Header::new::<T>(&Creator::current());
    let bytes = header.as_bytes();
    let mut done = 0;
    while done < bytes.len() {
        match pwrite(&**fd, &bytes[done..], done as i64) {
            Ok(n) => done += n,
            Err(Errno::EINTR) => {}
            Err(e) => return Err(io("writing the header of", e)),
        }
    }
    ftruncate(&**fd, total as i64).map_err(|e| io("sizing", e))?;
    posix_fallocate(&**fd, 0, total as i64).map_err(|e| io("allocating", e))?;

    let map = Mapping::map(fd.as_fd(), total).map_err(|e| Error::Io {
        op: "mapping",
        name: name.as_str().to_owned(),
        source: e,
    })?;
    // SAFETY: we hold the exclusive flock and the state is not READY, so no
    // other process following the protocol has this object mapped; the
    // offsets come from `Layout::of::<T>()`, which `map.at` bounds-checks.
    unsafe {
        map.write(LOCK_OFFSET, RawLock::new());
        map.write(layout.value_offset, value);
    }
    map.atomic_u32(STATE_OFFSET)
        .store(STATE_READY, Ordering::Release);
    Ok(map)
}
