//! System V shared-memory calls: safe wrappers over libc's `shmget`, `shmat`
//! and `shmctl` (`shmdt` is in [`Mapping`]'s drop). nix and rustix have none
//! of them. Linux's own here: the `shmid_ds` fields read (`__key`), the
//! limits and usage (`IPC_INFO`, `SHM_INFO`, `SHM_DEST`), and the list of
//! segments (`/proc/sysvipc/shm`); the calls themselves are POSIX (XSI).
//!
//! Everything here returns the raw [`Errno`]; `backend/sysv.rs` turns it
//! into an [`Error`](crate::Error) that says what to do.

use std::mem::MaybeUninit;
use std::os::fd::AsFd;
use std::ptr::NonNull;

use nix::errno::Errno;

use crate::sys::mapping::Mapping;

/// `shm_perm.mode` flag: `IPC_RMID` was called and the segment goes away
/// with its last detach (`SHM_DEST` in linux/shm.h; libc does not have it).
pub(crate) const SHM_DEST: u32 = 0o1000;

/// `shmctl` command: system-wide usage, a `struct shm_info` (linux/shm.h).
const SHM_INFO: libc::c_int = 14;

/// `struct shminfo` (glibc's sys/shm.h with `_GNU_SOURCE`, the kernel's
/// `shminfo64`): what `IPC_INFO` writes. libc does not declare it.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
struct ShmInfoRaw {
    shmmax: libc::c_ulong,
    shmmin: libc::c_ulong,
    shmmni: libc::c_ulong,
    shmseg: libc::c_ulong,
    shmall: libc::c_ulong,
    reserved: [libc::c_ulong; 4],
}

/// `struct shm_info` (glibc's sys/shm.h, linux/shm.h): what `SHM_INFO`
/// writes. libc does not declare it.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
struct ShmUsageRaw {
    used_ids: libc::c_int,
    shm_tot: libc::c_ulong,
    shm_rss: libc::c_ulong,
    shm_swp: libc::c_ulong,
    swap_attempts: libc::c_ulong,
    swap_successes: libc::c_ulong,
}

/// What `IPC_STAT` says of a segment.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct ShmStat {
    /// The key (`IPC_PRIVATE`, 0, for private segments and after `IPC_RMID`).
    pub key: i32,
    /// Owner user id (`shm_perm.uid`).
    pub uid: u32,
    /// Creator user id (`shm_perm.cuid`).
    pub cuid: u32,
    /// The whole `shm_perm.mode`: permission bits plus `SHM_DEST` and
    /// `SHM_LOCKED`.
    pub mode: u32,
    /// `shm_segsz`: the size asked for at creation (the attachment is
    /// rounded up to whole pages).
    pub size: usize,
    /// The creator's process id.
    pub cpid: i32,
    /// The number of attachments, in all processes.
    pub nattch: u64,
}

impl ShmStat {
    // `shm_perm.mode` is u16 on x86_64 and u32 elsewhere: the conversion
    // is the identity on the second.
    #[allow(clippy::useless_conversion)]
    fn from_raw(ds: &libc::shmid_ds) -> ShmStat {
        ShmStat {
            key: ds.shm_perm.__key,
            uid: ds.shm_perm.uid,
            cuid: ds.shm_perm.cuid,
            mode: u32::from(ds.shm_perm.mode),
            size: ds.shm_segsz,
            cpid: ds.shm_cpid,
            nattch: ulong(ds.shm_nattch),
        }
    }
}

/// The System V limits of this IPC namespace (`IPC_INFO`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Limits {
    /// SHMMAX: the largest segment, in bytes.
    pub max_bytes: u64,
    /// SHMMNI: the most segments.
    pub max_segments: u64,
    /// SHMALL: all segments together, in pages.
    pub max_pages: u64,
}

/// What this IPC namespace uses now (`SHM_INFO`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Usage {
    /// Segments that exist.
    pub segments: u64,
    /// Pages they take together.
    pub pages: u64,
}

/// A C `unsigned long` (`shmatt_t` too) as a u64: the same type on 64-bit
/// targets, a widening on 32-bit ones.
#[allow(clippy::useless_conversion)]
fn ulong(v: libc::c_ulong) -> u64 {
    u64::from(v)
}

/// Turns a -1 return into the errno.
fn check(rc: libc::c_int) -> Result<libc::c_int, Errno> {
    if rc == -1 {
        Err(Errno::last())
    } else {
        Ok(rc)
    }
}

/// `shmget(key, size, flags)`: the id of the segment of `key`, made when
/// `flags` has `IPC_CREAT`.
pub(crate) fn get(key: i32, size: usize, flags: i32) -> Result<i32, Errno> {
    // SAFETY: shmget takes no pointers; the kernel validates every key, size
    // and flag combination and reports what it refuses through errno.
    check(unsafe { libc::shmget(key, size, flags) })
}

/// The `shmid_ds` of segment `id` (`IPC_STAT`).
fn stat_raw(id: i32) -> Result<libc::shmid_ds, Errno> {
    let mut ds = MaybeUninit::<libc::shmid_ds>::zeroed();
    // SAFETY: IPC_STAT writes one `struct shmid_ds` to the pointer, which
    // points at memory of exactly that type, writable, aligned and owned by
    // this frame for the duration of the call.
    check(unsafe { libc::shmctl(id, libc::IPC_STAT, ds.as_mut_ptr()) })?;
    // SAFETY: `shmid_ds` consists of integers only (and integer padding
    // fields), so any bytes are a valid value: the zeroes it started with or
    // what IPC_STAT wrote over them (on success it writes the whole struct).
    Ok(unsafe { ds.assume_init() })
}

/// `IPC_STAT` of segment `id`. Needs read permission.
pub(crate) fn stat(id: i32) -> Result<ShmStat, Errno> {
    stat_raw(id).map(|ds| ShmStat::from_raw(&ds))
}

/// Sets the permission bits of segment `id` to `mode & 0o777` (`IPC_SET`,
/// keeping owner and group). Only its owner, creator or root may.
pub(crate) fn set_mode(id: i32, mode: u32) -> Result<(), Errno> {
    let mut ds = stat_raw(id)?;
    // The field is 16 bits wide on some architectures (x86_64) and 32 on
    // others (aarch64, riscv64, powerpc64le, s390x): nine permission bits
    // fit either, by `From`, which is the identity where it is 16 bits.
    let bits = (mode & 0o777) as u16;
    #[allow(clippy::useless_conversion)]
    {
        ds.shm_perm.mode = bits.into();
    }
    // SAFETY: IPC_SET reads one `struct shmid_ds` (uid, gid and the mode
    // bits of its shm_perm) from the pointer, which points at a valid,
    // initialised one owned by this frame; the kernel does not keep it.
    check(unsafe { libc::shmctl(id, libc::IPC_SET, &mut ds) })?;
    Ok(())
}

/// Marks segment `id` for removal (`IPC_RMID`): it goes away with its last
/// detach, and its key is free at once.
pub(crate) fn remove(id: i32) -> Result<(), Errno> {
    // SAFETY: IPC_RMID ignores the buffer argument; a null pointer is what
    // the manual page passes.
    check(unsafe { libc::shmctl(id, libc::IPC_RMID, std::ptr::null_mut()) })?;
    // Nobody can find the segment any more: its stand-in goes too (those
    // attached keep their descriptions of it).
    let _ = std::fs::remove_file(stand_in_path(id));
    Ok(())
}

/// The prefix of the names of System V segments' stand-ins in /dev/shm.
pub(crate) const STAND_IN_PREFIX: &str = ".shmstore-sysv.";

/// Where segment `id`'s stand-in lives: a name in /dev/shm made of this IPC
/// namespace's inode and the id, which no other live segment has.
fn stand_in_path(id: i32) -> String {
    let ns = ipc_namespace();
    format!("/dev/shm/{STAND_IN_PREFIX}{ns}.{id}")
}

/// This IPC namespace's inode number, which stand-ins' names begin with
/// (0 if it cannot be read): the calling thread's, as a thread may have an
/// IPC namespace of its own (`unshare`), where `/proc/self` would give the
/// main thread's.
fn ipc_namespace() -> u64 {
    use std::os::unix::fs::MetadataExt;
    std::fs::metadata("/proc/thread-self/ns/ipc")
        .or_else(|_| std::fs::metadata("/proc/self/ns/ipc"))
        .map_or(0, |m| m.ino())
}

/// Segment `id`'s stand-in, opened for reading only to count who shows
/// itself in it (see `presence::count`); never made. `None` if it is
/// missing, is not a regular file, or belongs to someone other than the
/// segment's owner, creator or root (then what it says is not the
/// segment's).
pub(crate) fn open_stand_in(id: i32) -> Option<std::os::fd::OwnedFd> {
    use nix::fcntl::{open, OFlag};
    use nix::sys::stat::{fstat, Mode};
    let st = stat(id).ok()?;
    let flags = OFlag::O_RDONLY | OFlag::O_NOFOLLOW | OFlag::O_NONBLOCK | OFlag::O_CLOEXEC;
    let fd = open(stand_in_path(id).as_str(), flags, Mode::empty()).ok()?;
    let got = fstat(&fd).ok()?;
    (got.st_mode & libc::S_IFMT == libc::S_IFREG && [st.uid, st.cuid, 0].contains(&got.st_uid))
        .then_some(fd)
}

/// The stand-ins in /dev/shm of this IPC namespace's segments that no
/// longer exist (removed by something other than `remove`, or by a process
/// that died between the two steps), as path and segment id. Stand-ins of
/// other IPC namespaces sharing this /dev/shm are never among them: their
/// segments cannot be seen from here.
pub(crate) fn orphaned_stand_ins() -> Vec<(std::path::PathBuf, i32)> {
    let ns = ipc_namespace();
    if ns == 0 {
        return Vec::new();
    }
    let Ok(dir) = std::fs::read_dir("/dev/shm") else {
        return Vec::new();
    };
    let ours = format!("{STAND_IN_PREFIX}{ns}.");
    // Listed before the names are read: a segment made meanwhile has its
    // stand-in made after it exists, and is seen by `exists` below.
    let mut out: Vec<(std::path::PathBuf, i32)> = dir
        .flatten()
        .filter_map(|e| {
            let name = e.file_name().into_string().ok()?;
            let id: i32 = name.strip_prefix(&ours)?.parse().ok()?;
            (id >= 0).then(|| (e.path(), id))
        })
        .collect();
    out.retain(|&(_, id)| !exists(id));
    out.sort();
    out
}

/// Whether segment `id` exists in this IPC namespace (listed, or known to
/// `IPC_STAT`, which also answers for a segment this user may not list).
pub(crate) fn exists(id: i32) -> bool {
    list().iter().any(|s| s.id == id) || !matches!(stat(id), Err(Errno::EINVAL | Errno::EIDRM))
}

/// What is wrong with a segment's stand-in: the system's error, with the
/// stand-in's path and what was found there, for the user to act on.
#[derive(Debug)]
pub(crate) struct StandInError {
    pub errno: Errno,
    /// The stand-in's path and what is wrong with it, in words.
    pub why: String,
}

/// The stand-in of segment `id` (described by `st`): an empty file in
/// /dev/shm that stands for the segment where a descriptor is needed (a
/// System V segment has none), so that processes can show their presence
/// in it (see `presence`). The segment's owner (or root) makes it, with
/// the segment's owner and permission bits; it must be a regular file of
/// the segment's owner, its creator or root (an owner can give a segment
/// away), or it is refused (someone else's object in the way). Opening it
/// never follows a link and never waits (a FIFO in the way).
fn stand_in(id: i32, st: &ShmStat, writable: bool) -> Result<std::os::fd::OwnedFd, StandInError> {
    use nix::fcntl::{open, OFlag};
    use nix::sys::stat::{fchmod, fstat, Mode};
    let path = stand_in_path(id);
    let access = if writable {
        OFlag::O_RDWR
    } else {
        OFlag::O_RDONLY
    };
    let flags = access | OFlag::O_NOFOLLOW | OFlag::O_NONBLOCK | OFlag::O_CLOEXEC;
    let mode = Mode::from_bits_truncate((st.mode & 0o666) as libc::mode_t);
    let fail = |errno: Errno, what: &str| StandInError {
        errno,
        why: format!("its stand-in {path} {what}"),
    };
    // Someone else's object in the way, or none where only the owner can
    // make one: the segment cannot be used (EACCES, as for a segment one
    // may not access).
    let refused = |what: &str| fail(Errno::EACCES, what);
    loop {
        match open(path.as_str(), flags, Mode::empty()) {
            Ok(fd) => {
                let got = fstat(&fd).map_err(|e| fail(e, "cannot be inspected"))?;
                let kind = match got.st_mode & libc::S_IFMT {
                    libc::S_IFREG => None,
                    libc::S_IFIFO => Some("a FIFO"),
                    libc::S_IFDIR => Some("a directory"),
                    libc::S_IFSOCK => Some("a socket"),
                    libc::S_IFCHR | libc::S_IFBLK => Some("a device"),
                    _ => Some("something else"),
                };
                if let Some(kind) = kind {
                    return Err(refused(&format!(
                        "is {kind}, not a regular file (someone else's object in the way)"
                    )));
                }
                if ![st.uid, st.cuid, 0].contains(&got.st_uid) {
                    return Err(refused(&format!(
                        "is owned by user {}, not by the segment's owner {}, its creator {} \
                         or root (someone else's file in the way)",
                        got.st_uid, st.uid, st.cuid
                    )));
                }
                return Ok(fd);
            }
            // A reader only asks about others, and every writer makes the
            // stand-in: missing, it means a segment removed (IPC_RMID) that
            // is still attached. Made now, it would outlive the segment
            // (and `shmstore ls`, which attaches read-only, would leave
            // files behind).
            Err(Errno::ENOENT) if !writable => return Err(fail(Errno::ENOENT, "is missing")),
            Err(Errno::ENOENT) => {
                let me = nix::unistd::geteuid().as_raw();
                if ![st.uid, st.cuid, 0].contains(&me) {
                    return Err(refused(&format!(
                        "is missing, and only the segment's owner {} (or root) may make it",
                        st.uid
                    )));
                }
                let made = open(
                    path.as_str(),
                    OFlag::O_RDWR | OFlag::O_CREAT | OFlag::O_EXCL | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC,
                    Mode::S_IRUSR | Mode::S_IWUSR,
                );
                match made {
                    Ok(fd) => {
                        let cannot = |e| fail(e, "cannot be given the segment's owner and mode");
                        if me != st.uid {
                            nix::unistd::fchown(&fd, Some(st.uid.into()), None).map_err(cannot)?;
                        }
                        // Not under the umask: the segment's own bits.
                        fchmod(&fd, mode).map_err(cannot)?;
                    }
                    Err(Errno::EEXIST) => {}
                    Err(e) => return Err(fail(e, "cannot be made")),
                }
                // Opened again, as anyone else would, with the access asked.
            }
            // O_NOFOLLOW: a symbolic link in the way.
            Err(Errno::ELOOP) => {
                return Err(refused(
                    "is a symbolic link, which is never followed (someone else's object in the way)",
                ))
            }
            Err(Errno::EISDIR) => {
                return Err(refused(
                    "is a directory, not a regular file (someone else's object in the way)",
                ))
            }
            Err(e) => return Err(fail(e, "cannot be opened")),
        }
    }
}

/// Attaches segment `id` at an address the kernel chooses, read-write or
/// (`writable` false) read-only with `SHM_RDONLY`.
///
/// The mapping is exactly `shm_segsz` bytes long (the kernel maps whole
/// pages; the rest of the last page is never touched), read with
/// `IPC_STAT` *after* attaching, so it describes the segment attached: a
/// segment with an attachment is never destroyed, so its id cannot name
/// another segment meanwhile, and a segment's size never changes.
pub(crate) fn attach(id: i32, writable: bool) -> Result<(Mapping, ShmStat), Errno> {
    attach_explained(id, writable).map_err(|e| e.errno)
}

/// [`attach`], saying what is wrong with the segment's stand-in when that
/// is why it failed (`why` empty otherwise).
pub(crate) fn attach_explained(
    id: i32,
    writable: bool,
) -> Result<(Mapping, ShmStat), StandInError> {
    let bare = |errno| StandInError {
        errno,
        why: String::new(),
    };
    let flags = if writable { 0 } else { libc::SHM_RDONLY };
    // SAFETY: a null address lets the kernel choose one that is free, so
    // the attachment overlaps no memory Rust already uses; flags 0 ask for
    // a read-write attachment, SHM_RDONLY for a read-only one. The kernel
    // checks the id and our access.
    let p = unsafe { libc::shmat(id, std::ptr::null(), flags) };
    // shmat reports errors as (void *)-1, not as null.
    if p as isize == -1 {
        return Err(bare(Errno::last()));
    }
    let Some(ptr) = NonNull::new(p.cast::<u8>()) else {
        // Never happens (the kernel does not hand out page 0), but a null
        // attachment must not become a Mapping.
        return Err(bare(Errno::EFAULT));
    };
    match stat(id) {
        Ok(st) => {
            // SAFETY: `ptr` is what this successful shmat returned and only
            // the Mapping made here detaches it. `st.size` is the size of
            // the segment attached (see above), and shmat mapped all of it,
            // rounded up to whole pages, so every byte of
            // `ptr..ptr + st.size` is mapped.
            let mut map = unsafe { Mapping::from_sysv(ptr, st.size, writable) };
            match stand_in(id, &st, writable) {
                Ok(fd) => map.show_presence(fd.as_fd(), writable).map_err(|errno| {
                    let path = stand_in_path(id);
                    StandInError {
                        errno,
                        why: if errno == Errno::EAGAIN {
                            format!(
                                "another process holds a lock on the bytes of its stand-in \
                                 {path} where this process would show itself"
                            )
                        } else {
                            format!("this process cannot show itself in its stand-in {path}")
                        },
                    }
                })?,
                // A process that cannot show itself must not take locks.
                Err(e) if writable => return Err(e),
                // A reader only asks about others; without the stand-in
                // every holder counts as alive to it.
                Err(_) => {}
            }
            Ok((map, st))
        }
        Err(e) => {
            let e = bare(e);
            // SAFETY: `p` is what the shmat above returned; nothing else
            // detaches it, and no reference into the attachment was made.
            unsafe { libc::shmdt(p) };
            Err(e)
        }
    }
}

/// The limits of this IPC namespace (`IPC_INFO`).
pub(crate) fn limits() -> Result<Limits, Errno> {
    let mut info = MaybeUninit::<ShmInfoRaw>::zeroed();
    // SAFETY: IPC_INFO writes one `struct shminfo` (nine unsigned longs,
    // the kernel's shminfo64) to the pointer, which points at memory of
    // exactly that layout, writable and owned by this frame; shmctl's
    // parameter type is `struct shmid_ds *`, and the manual page has the
    // caller cast a `struct shminfo *` to it for IPC_INFO.
    check(unsafe { libc::shmctl(0, libc::IPC_INFO, info.as_mut_ptr().cast()) })?;
    // SAFETY: ShmInfoRaw is integers only, so any bytes are a valid value
    // (the zeroes it started with, or what IPC_INFO wrote).
    let info = unsafe { info.assume_init() };
    Ok(Limits {
        max_bytes: ulong(info.shmmax),
        max_segments: ulong(info.shmmni),
        max_pages: ulong(info.shmall),
    })
}

/// What this IPC namespace uses now (`SHM_INFO`).
pub(crate) fn usage() -> Result<Usage, Errno> {
    let mut info = MaybeUninit::<ShmUsageRaw>::zeroed();
    // SAFETY: SHM_INFO writes one `struct shm_info` (an int and five
    // unsigned longs) to the pointer, which points at memory of exactly
    // that layout, writable and owned by this frame; the cast to
    // `struct shmid_ds *` is what the manual page prescribes for SHM_INFO.
    check(unsafe { libc::shmctl(0, SHM_INFO, info.as_mut_ptr().cast()) })?;
    // SAFETY: ShmUsageRaw is integers only (its padding needs no value),
    // so any bytes are a valid value.
    let info = unsafe { info.assume_init() };
    Ok(Usage {
        segments: info.used_ids.max(0) as u64,
        pages: ulong(info.shm_tot),
    })
}

/// The size of a page, which SHMALL counts in.
pub(crate) fn page_size() -> u64 {
    nix::unistd::sysconf(nix::unistd::SysconfVar::PAGE_SIZE)
        .ok()
        .flatten()
        .map_or(4096, |n| n as u64)
}

/// A System V segment as [`list`] finds it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Listed {
    /// The key (`IPC_PRIVATE`, 0, for private segments).
    pub key: i32,
    /// The segment id.
    pub id: i32,
    /// The whole mode: permission bits plus `SHM_DEST` and `SHM_LOCKED`.
    pub mode: u32,
    /// The size asked for at creation.
    pub size: u64,
    /// The number of attachments, in all processes.
    pub nattch: u64,
    /// Owner user id.
    pub uid: u32,
    /// The last change, in seconds since 1970 (0 if not listed).
    pub ctime: u64,
}

/// Every System V segment of this IPC namespace, as `/proc/sysvipc/shm`
/// lists them (empty if it cannot be read).
pub(crate) fn list() -> Vec<Listed> {
    let Ok(text) = std::fs::read_to_string("/proc/sysvipc/shm") else {
        return Vec::new();
    };
    text.lines()
        .skip(1)
        .filter_map(|line| {
            let f: Vec<&str> = line.split_whitespace().collect();
            // key shmid perms size cpid lpid nattch uid gid cuid cgid atime dtime ctime ...
            Some(Listed {
                key: f.first()?.parse::<i64>().ok()? as i32,
                id: f.get(1)?.parse().ok()?,
                mode: u32::from_str_radix(f.get(2)?, 8).ok()?,
                size: f.get(3)?.parse().ok()?,
                nattch: f.get(6)?.parse().ok()?,
                uid: f.get(7)?.parse().ok()?,
                ctime: f.get(13).and_then(|t| t.parse().ok()).unwrap_or(0),
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn limits_and_usage_are_readable() {
        let l = limits().expect("IPC_INFO");
        assert!(l.max_bytes > 0 && l.max_segments > 0 && l.max_pages > 0);
        // The kernel's numbers are the ones /proc/sys/kernel shows.
        let proc = |f: &str| {
            std::fs::read_to_string(format!("/proc/sys/kernel/{f}"))
                .ok()
                .and_then(|s| s.trim().parse::<u64>().ok())
        };
        if let Some(v) = proc("shmmax") {
            assert_eq!(l.max_bytes, v);
        }
        if let Some(v) = proc("shmmni") {
            assert_eq!(l.max_segments, v);
        }
        usage().expect("SHM_INFO");
    }

    #[test]
    fn a_private_segment_round_trip() {
        let id = get(libc::IPC_PRIVATE, 100, libc::IPC_CREAT | 0o600).expect("shmget");
        let attached = attach(id, true);
        // Removed at once, so that a failure below leaves nothing behind.
        remove(id).unwrap();
        let (map, st) = attached.expect("shmat");
        assert_eq!(st.size, 100);
        assert_eq!(map.len(), 100);
        assert_eq!(st.mode & 0o777, 0o600);
        assert_eq!(st.mode & SHM_DEST, 0);
        set_mode(id, 0o640).unwrap();
        let st = stat(id).expect("still there while attached");
        assert_eq!(st.mode & 0o777, 0o640);
        assert_ne!(st.mode & SHM_DEST, 0);
        assert_eq!(st.nattch, 1);
        drop(map);
        assert!(matches!(stat(id), Err(Errno::EINVAL | Errno::EIDRM)));
        assert!(matches!(
            attach(id, true),
            Err(Errno::EINVAL | Errno::EIDRM)
        ));
    }
}
