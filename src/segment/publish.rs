//! Creation by publication, for the named descriptor backends (POSIX and
//! files): a new segment is made complete under a hidden temporary name
//! beside its final one, then put under the final name atomically, so a
//! name never shows a segment of ours mid-creation. Opening looks at what
//! the name holds before it opens it, so nothing under a name (a FIFO, a
//! socket, a directory, a symbolic link, a device) can make an opener
//! block, follow a link or write.
//!
//! The protocol, step by step: `shmstore::_design::segment`.

use std::os::fd::{AsFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use nix::errno::Errno;
use nix::fcntl::{open as nix_open, openat, renameat2, AtFlags, OFlag, RenameFlags, AT_FDCWD};
use nix::sys::stat::{fchmod, fstat, fstatat, FileStat, Mode};
use nix::unistd::{linkat, unlinkat, UnlinkatFlags};
use zerocopy::FromBytes;

use crate::error::{Error, Result};
use crate::segment::header::{pid_namespace, Header, Spec, MAGIC};
use crate::segment::init::Initial;
use crate::segment::location::{Location, Place};
use crate::segment::options::SharedOptions;
use crate::sys::mapping::Mapping;

/// The directory behind POSIX names: the tmpfs `shm_open` uses on Linux.
pub(crate) const SHM_DIR: &str = "/dev/shm";

/// How every temporary name starts; hidden (a leading dot).
pub(crate) const TEMP_PREFIX: &str = ".shmstore-new.";

/// What a name's object is: its device and inode, from `fstat`.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub(crate) struct ObjectId {
    dev: u64,
    ino: u64,
}

impl ObjectId {
    fn of(st: &FileStat) -> ObjectId {
        ObjectId {
            dev: st.st_dev,
            ino: st.st_ino,
        }
    }

    /// The object `fd` refers to.
    pub(crate) fn of_fd(label: &str, fd: impl AsFd) -> Result<ObjectId> {
        fstat(fd.as_fd())
            .map(|st| ObjectId::of(&st))
            .map_err(|e| Error::from_errno(label, "inspecting", e))
    }
}

/// The directory a named segment lives in and its name there.
struct InDir {
    dir: PathBuf,
    base: String,
}

fn place_of(loc: &Location) -> Result<InDir> {
    match &loc.0 {
        Place::Posix(name) => Ok(InDir {
            dir: PathBuf::from(SHM_DIR),
            base: name.as_str().to_owned(),
        }),
        Place::File(path) => {
            let base = path
                .file_name()
                .and_then(|b| b.to_str())
                .filter(|b| *b != "..")
                .ok_or_else(|| Error::InvalidName {
                    name: path.display().to_string(),
                    reason: "it does not end in a file name (UTF-8, not `..`)",
                })?;
            let dir = match path.parent() {
                Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
                _ => PathBuf::from("."),
            };
            Ok(InDir {
                dir,
                base: base.to_owned(),
            })
        }
        Place::SysV(_) => unreachable!("System V segments are not published"),
    }
}

/// The path a POSIX or file location's object has.
pub(crate) fn path_of(loc: &Location) -> Result<PathBuf> {
    let p = place_of(loc)?;
    Ok(p.dir.join(p.base))
}

/// The object under `loc`'s name now (`None` if the name is free), looked
/// at without following a link.
pub(crate) fn id_under(loc: &Location) -> Result<Option<ObjectId>> {
    let path = path_of(loc)?;
    match fstatat(AT_FDCWD, &path, AtFlags::AT_SYMLINK_NOFOLLOW) {
        Ok(st) => Ok(Some(ObjectId::of(&st))),
        Err(Errno::ENOENT) => Ok(None),
        Err(e) => Err(Error::from_errno(&loc.label(), "inspecting", e)),
    }
}

/// FNV-1a, 64 bits: a hash of a final name that is the same in every build.
fn name_hash(name: &str) -> u64 {
    name.bytes().fold(0xcbf2_9ce4_8422_2325, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
    })
}

/// The start every temporary name of `base` has: prefix and name hash.
fn temp_stem(base: &str) -> String {
    format!("{TEMP_PREFIX}{:016x}.", name_hash(base))
}

/// A temporary name of `base` for this process.
fn temp_name(base: &str) -> String {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    format!(
        "{}{}.{}",
        temp_stem(base),
        std::process::id(),
        COUNTER.fetch_add(1, Ordering::Relaxed)
    )
}

/// The creator's pid of a temporary name, if `file` is one.
pub(crate) fn temp_creator(file: &str) -> Option<i32> {
    let rest = file.strip_prefix(TEMP_PREFIX)?;
    let mut parts = rest.split('.');
    let hash = parts.next()?;
    let pid = parts.next()?;
    let n = parts.next()?;
    if hash.len() != 16
        || !hash.bytes().all(|b| b.is_ascii_hexdigit())
        || n.parse::<u64>().is_err()
        || parts.next().is_some()
    {
        return None;
    }
    pid.parse().ok().filter(|p| *p > 0)
}

/// Whether process `pid` runs (or exists but is not ours to signal).
pub(crate) fn pid_alive(pid: i32) -> bool {
    !matches!(
        nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), None),
        Err(Errno::ESRCH)
    )
}

/// Whether the creator `pid` of the temporary name at `path` may still be
/// at work. A creator maps its new segment for writing while it makes it,
/// and so shows itself there in whatever PID namespace it runs (see
/// `sys::presence`): anyone shown means at work. Otherwise a header that
/// names another PID namespace means its creator is gone (our view of its
/// pid would say nothing); a header of ours, or none yet (a creator between
/// making the object and mapping it), leaves it to the pid.
pub(crate) fn temp_creator_alive(path: &Path, pid: i32) -> bool {
    let mut buf = [0u8; std::mem::size_of::<Header>()];
    // Never blocks, never follows a link: whatever is there, only a
    // regular file's bytes are read.
    let flags = OFlag::O_RDONLY | OFlag::O_NOFOLLOW | OFlag::O_NONBLOCK | OFlag::O_CLOEXEC;
    let Ok(fd) = nix_open(path, flags, Mode::empty()) else {
        return pid_alive(pid);
    };
    let regular = fstat(fd.as_fd()).is_ok_and(|st| kind_of(st.st_mode).is_none());
    if !regular {
        return pid_alive(pid);
    }
    if crate::sys::presence::count(fd.as_fd()).is_some_and(|n| n.writers > 0) {
        return true;
    }
    let file = std::fs::File::from(fd);
    if std::os::unix::fs::FileExt::read_exact_at(&file, &mut buf, 0).is_ok() {
        if let Ok((h, _)) = Header::read_from_prefix(&buf[..]) {
            let ours = pid_namespace();
            if h.magic == MAGIC && h.pid_ns != 0 && ours != 0 && h.pid_ns != ours {
                return false;
            }
        }
    }
    pid_alive(pid)
}

/// Removes the temporary names in `dir` whose creator is dead, of the
/// final name `base` only, or of every name when `base` is `None`.
/// Returns the names removed.
pub(crate) fn remove_dead_temps(dir: &Path, base: Option<&str>) -> Vec<String> {
    let stem = base.map(temp_stem);
    let mut removed = Vec::new();
    let Ok(entries) = std::fs::read_dir(dir) else {
        return removed;
    };
    for entry in entries.flatten() {
        let Ok(file) = entry.file_name().into_string() else {
            continue;
        };
        // Only regular files: we never made anything else.
        if !entry.file_type().is_ok_and(|t| t.is_file()) {
            continue;
        }
        if stem.as_ref().is_some_and(|s| !file.starts_with(s.as_str())) {
            continue;
        }
        let path = dir.join(&file);
        let dead = temp_creator(&file).is_some_and(|pid| !temp_creator_alive(&path, pid));
        if dead && std::fs::remove_file(&path).is_ok() {
            removed.push(file);
        }
    }
    removed
}

/// What an object of file mode `mode` is when it is not a regular file, as
/// errors say it ("a FIFO (named pipe)", ...); `None` for a regular file.
pub(crate) fn kind_of(mode: libc::mode_t) -> Option<&'static str> {
    match mode & libc::S_IFMT {
        libc::S_IFREG => None,
        libc::S_IFIFO => Some("a FIFO (named pipe)"),
        libc::S_IFSOCK => Some("a socket"),
        libc::S_IFDIR => Some("a directory"),
        libc::S_IFLNK => Some("a symbolic link"),
        libc::S_IFCHR => Some("a character device"),
        libc::S_IFBLK => Some("a block device"),
        _ => Some("an object of unknown type"),
    }
}

/// What `path` holds when it is not a regular file ("a FIFO (named pipe)",
/// ...), without following a link; `None` for a regular file or nothing.
pub(crate) fn foreign_kind(path: &Path) -> Option<&'static str> {
    fstatat(AT_FDCWD, path, AtFlags::AT_SYMLINK_NOFOLLOW)
        .ok()
        .and_then(|st| kind_of(st.st_mode))
}

fn not_a_segment(label: &str, kind: &str) -> Error {
    Error::Corrupt {
        name: label.to_owned(),
        reason: format!("{kind}, not a shmstore segment"),
    }
}

/// Opens the object under `loc`'s name, which must be a regular file:
/// looked at first without following a link (anything else is
/// [`Error::Corrupt`] saying what it is), opened without following a link,
/// without blocking and without becoming a controlling terminal, and looked
/// at again through the descriptor (a swap between the two is caught).
pub(crate) fn open_existing(loc: &Location, writable: bool) -> Result<(OwnedFd, ObjectId)> {
    let label = loc.label();
    let path = path_of(loc)?;
    let err = |op, e: Errno| match e {
        Errno::ELOOP => not_a_segment(&label, "a symbolic link"),
        Errno::EISDIR => not_a_segment(&label, "a directory"),
        Errno::ENXIO => not_a_segment(&label, "a socket or a device without a reader"),
        Errno::ENAMETOOLONG => Error::InvalidName {
            name: label.clone(),
            reason: "the system refuses it (too long)",
        },
        e => Error::from_errno(&label, op, e),
    };
    let st =
        fstatat(AT_FDCWD, &path, AtFlags::AT_SYMLINK_NOFOLLOW).map_err(|e| err("inspecting", e))?;
    if let Some(kind) = kind_of(st.st_mode) {
        return Err(not_a_segment(&label, kind));
    }
    let access = if writable {
        OFlag::O_RDWR
    } else {
        OFlag::O_RDONLY
    };
    let flags = access | OFlag::O_NOFOLLOW | OFlag::O_NONBLOCK | OFlag::O_NOCTTY | OFlag::O_CLOEXEC;
    let fd = nix_open(&path, flags, Mode::empty()).map_err(|e| err("opening", e))?;
    let st = fstat(fd.as_fd()).map_err(|e| err("inspecting", e))?;
    if let Some(kind) = kind_of(st.st_mode) {
        return Err(not_a_segment(&label, kind));
    }
    Ok((fd, ObjectId::of(&st)))
}

/// A complete (READY) new segment under a temporary name beside `loc`'s
/// name. Dropping it removes the temporary name if it is still there.
pub(crate) struct Prepared {
    label: String,
    dir: OwnedFd,
    temp: String,
    base: String,
    /// Taken by `publish` or `replace`.
    map: Option<Mapping>,
    id: ObjectId,
    /// Whether the temporary name is (still) ours to remove.
    pending: bool,
}

/// Makes a complete new segment of `spec` holding `initial` under a
/// temporary name beside `loc`'s (POSIX or file) name: made exclusively,
/// given exactly `opts.mode`, written header first, sized, allocated,
/// body written, READY. Temporary names of the same final name whose
/// creator is dead are removed first.
pub(crate) fn prepare(
    loc: &Location,
    opts: &SharedOptions,
    spec: &Spec,
    initial: Initial<'_>,
) -> Result<Prepared> {
    let label = loc.label();
    let place = place_of(loc)?;
    let dir = nix_open(
        &place.dir,
        OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC,
        Mode::empty(),
    )
    .map_err(|e| match e {
        Errno::ENOENT | Errno::ENOTDIR => Error::NotFound {
            name: label.clone(),
        },
        e => Error::from_errno(&label, "opening the directory of", e),
    })?;
    remove_dead_temps(&place.dir, Some(&place.base));
    let perm = Mode::from_bits_truncate(opts.mode as libc::mode_t);
    let mut temp;
    let fd = loop {
        temp = temp_name(&place.base);
        let flags =
            OFlag::O_RDWR | OFlag::O_CREAT | OFlag::O_EXCL | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC;
        match openat(dir.as_fd(), temp.as_str(), flags, perm) {
            Ok(fd) => break fd,
            // Left by an earlier process of our pid: try the next number.
            Err(Errno::EEXIST) => continue,
            Err(e) => return Err(Error::from_errno(&label, "creating", e)),
        }
    };
    let remove_temp = |dir: &OwnedFd, temp: &str| {
        let _ = unlinkat(dir.as_fd(), temp, UnlinkatFlags::NoRemoveDir);
    };
    let made = (|| {
        // The creation mode passed through the umask; set exactly what was asked.
        fchmod(fd.as_fd(), perm)
            .map_err(|e| Error::from_errno(&label, "setting the mode of", e))?;
        let map = crate::segment::init::initialise(
            &label,
            fd.as_fd(),
            spec,
            initial,
            opts.version_flags(),
        )?;
        let id = ObjectId::of_fd(&label, &fd)?;
        Ok((map, id))
    })();
    match made {
        Ok((map, id)) => Ok(Prepared {
            label,
            dir,
            temp,
            base: place.base,
            map: Some(map),
            id,
            pending: true,
        }),
        Err(e) => {
            remove_temp(&dir, &temp);
            Err(e)
        }
    }
}

impl Prepared {
    /// The new segment's object.
    pub(crate) fn id(&self) -> ObjectId {
        self.id
    }

    /// Puts the segment under the name unless the name exists: `Some` of
    /// its mapping, or `None` when the name exists (the temporary name is
    /// removed; the caller opens what the name holds).
    ///
    /// `renameat2(RENAME_NOREPLACE)`; a filesystem that refuses the flag
    /// gets `link` + `unlink` of the temporary name, which never replaces
    /// either.
    pub(crate) fn publish(mut self) -> Result<Option<Mapping>> {
        let dir = self.dir.as_fd();
        let moved = match renameat2(
            dir,
            self.temp.as_str(),
            dir,
            self.base.as_str(),
            RenameFlags::RENAME_NOREPLACE,
        ) {
            Err(Errno::EINVAL | Errno::ENOSYS) => linkat(
                dir,
                self.temp.as_str(),
                dir,
                self.base.as_str(),
                AtFlags::empty(),
            ),
            other => other,
        };
        match moved {
            Ok(()) => {
                // After a rename the temporary name is gone; after a link
                // it is a second name of the same object: remove it.
                let _ = unlinkat(dir, self.temp.as_str(), UnlinkatFlags::NoRemoveDir);
                self.pending = false;
                let map = self.take_map();
                Ok(Some(map))
            }
            Err(Errno::EEXIST) => Ok(None),
            Err(e) => Err(Error::from_errno(&self.label, "publishing", e)),
        }
    }

    /// Puts the segment under the name in place of the object `old`, which
    /// must still be what the name holds: the two are exchanged
    /// (`renameat2(RENAME_EXCHANGE)`), the object now under the temporary
    /// name is checked to be `old` (if it is not, they are exchanged back
    /// and the answer is [`Error::AlreadyExists`]: somebody else replaced
    /// it first), and the temporary name is removed (the old object lives
    /// on in its handles).
    ///
    /// A filesystem without `RENAME_EXCHANGE` gives [`Error::Io`] with
    /// `ErrorKind::Unsupported`; a name that is gone, [`Error::NotFound`].
    pub(crate) fn replace(mut self, old: ObjectId) -> Result<Mapping> {
        let dir = self.dir.as_fd();
        let exchange =
            |from: &str, to: &str| renameat2(dir, from, dir, to, RenameFlags::RENAME_EXCHANGE);
        match exchange(&self.temp, &self.base) {
            Ok(()) => {}
            Err(Errno::EINVAL | Errno::ENOSYS) => {
                return Err(Error::Io {
                    op: "replacing atomically (RENAME_EXCHANGE) the segment",
                    name: self.label.clone(),
                    source: std::io::Error::new(
                        std::io::ErrorKind::Unsupported,
                        "the filesystem cannot exchange two names atomically",
                    ),
                })
            }
            Err(e) => return Err(Error::from_errno(&self.label, "replacing", e)),
        }
        let now = fstatat(dir, self.temp.as_str(), AtFlags::AT_SYMLINK_NOFOLLOW)
            .map(|st| ObjectId::of(&st));
        if now.as_ref().ok() != Some(&old) {
            // Not the object the caller meant: put both back. Our segment is
            // under the temporary name again, and Drop removes it.
            let back = exchange(&self.temp, &self.base);
            return Err(match back {
                Ok(()) => Error::AlreadyExists {
                    name: self.label.clone(),
                },
                Err(e) => Error::from_errno(&self.label, "restoring", e),
            });
        }
        let _ = unlinkat(dir, self.temp.as_str(), UnlinkatFlags::NoRemoveDir);
        self.pending = false;
        Ok(self.take_map())
    }

    fn take_map(&mut self) -> Mapping {
        // Set by `prepare`; taken once, by publish or replace, which
        // consume self.
        self.map.take().expect("a prepared segment has its mapping")
    }
}

impl Drop for Prepared {
    fn drop(&mut self) {
        if self.pending {
            let _ = unlinkat(
                self.dir.as_fd(),
                self.temp.as_str(),
                UnlinkatFlags::NoRemoveDir,
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::segment::value_spec;

    /// A directory of its own under the system's temporary directory.
    struct Dir(PathBuf);

    impl Dir {
        fn new(what: &str) -> Dir {
            static N: AtomicU64 = AtomicU64::new(0);
            let dir = std::env::temp_dir().join(format!(
                "shmstore-publish-{what}-{}-{}",
                std::process::id(),
                N.fetch_add(1, Ordering::Relaxed)
            ));
            std::fs::create_dir_all(&dir).unwrap();
            Dir(dir)
        }

        /// The names in it.
        fn names(&self) -> Vec<String> {
            let mut names: Vec<String> = std::fs::read_dir(&self.0)
                .unwrap()
                .flatten()
                .filter_map(|e| e.file_name().into_string().ok())
                .collect();
            names.sort();
            names
        }
    }

    impl Drop for Dir {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }

    /// A prepared segment holding `value` beside `loc`.
    fn prepared(loc: &Location, value: u64) -> Prepared {
        let (spec, schema) = value_spec::<u64>();
        let content = value.to_ne_bytes();
        let initial = Initial {
            content: &content,
            schema: &schema,
        };
        prepare(loc, &SharedOptions::new(), &spec, initial).unwrap()
    }

    /// The value a published segment at `loc` holds, read from its file.
    fn value_at(loc: &Location) -> u64 {
        let (spec, _) = value_spec::<u64>();
        let at = spec.layout().value_offset;
        let bytes = std::fs::read(path_of(loc).unwrap()).unwrap();
        u64::from_ne_bytes(bytes[at..at + 8].try_into().unwrap())
    }

    fn id_at(loc: &Location) -> ObjectId {
        let st = fstatat(
            AT_FDCWD,
            &path_of(loc).unwrap(),
            AtFlags::AT_SYMLINK_NOFOLLOW,
        )
        .unwrap();
        ObjectId::of(&st)
    }

    #[test]
    fn publish_puts_a_whole_segment_in_place_unless_the_name_exists() {
        let dir = Dir::new("publish");
        let loc = Location::file(dir.0.join("seg"));
        let first = prepared(&loc, 1);
        assert_eq!(dir.names().len(), 1, "one temporary name");
        assert!(dir.names()[0].starts_with(TEMP_PREFIX));
        assert!(first.publish().unwrap().is_some());
        assert_eq!(dir.names(), ["seg"]);
        assert_eq!(value_at(&loc), 1);

        let second = prepared(&loc, 2);
        assert!(second.publish().unwrap().is_none(), "the name existed");
        assert_eq!(
            dir.names(),
            ["seg"],
            "the loser's temporary name is removed"
        );
        assert_eq!(value_at(&loc), 1, "the winner's segment is untouched");

        // Dropped unpublished: nothing is left.
        drop(prepared(&loc, 3));
        assert_eq!(dir.names(), ["seg"]);
    }

    #[test]
    fn replace_exchanges_the_expected_object_only() {
        let dir = Dir::new("replace");
        let loc = Location::file(dir.0.join("seg"));
        prepared(&loc, 1).publish().unwrap().unwrap();
        let old = id_at(&loc);

        // Another object under the name: refused, nothing changed.
        let stranger = prepared(&loc, 2);
        let stranger_id = stranger.id();
        let wrong = prepared(&loc, 3);
        assert!(matches!(
            wrong.replace(stranger_id),
            Err(Error::AlreadyExists { .. })
        ));
        assert_eq!(id_at(&loc), old, "the name holds the old object still");
        assert_eq!(value_at(&loc), 1);
        drop(stranger);
        assert_eq!(dir.names(), ["seg"], "no temporary name is left");

        // The right one: exchanged, the old one's name gone.
        let new = prepared(&loc, 4);
        let new_id = new.id();
        new.replace(old).unwrap();
        assert_eq!(id_at(&loc), new_id);
        assert_eq!(value_at(&loc), 4);
        assert_eq!(dir.names(), ["seg"]);
    }

    #[test]
    fn replace_of_a_missing_name_is_not_found() {
        let dir = Dir::new("replace-missing");
        let loc = Location::file(dir.0.join("seg"));
        let p = prepared(&loc, 1);
        let id = p.id();
        assert!(matches!(p.replace(id), Err(Error::NotFound { .. })));
        assert_eq!(dir.names(), Vec::<String>::new());
    }

    #[test]
    fn temporary_names_of_dead_creators_are_removed_by_the_next_creator() {
        let dir = Dir::new("dead-temps");
        let loc = Location::file(dir.0.join("seg"));
        // A pid that cannot run: above the kernel's pid_max limit.
        let dead = format!("{}{}.0", temp_stem("seg"), 1 << 23);
        let alive = format!("{}{}.0", temp_stem("seg"), std::process::id());
        let other = format!("{}{}.0", temp_stem("other"), 1 << 23);
        for name in [&dead, &alive, &other] {
            std::fs::write(dir.0.join(name), b"").unwrap();
        }
        assert_eq!(temp_creator(&dead), Some(1 << 23));
        assert_eq!(temp_creator("seg"), None);
        assert_eq!(temp_creator(".shmstore-new.xyz.1.0"), None);
        prepared(&loc, 1).publish().unwrap().unwrap();
        let mut want = vec![alive.clone(), other.clone(), "seg".to_owned()];
        want.sort();
        assert_eq!(dir.names(), want, "only the dead creator's of this name go");
        assert_eq!(remove_dead_temps(&dir.0, None), vec![other]);
    }

    #[test]
    fn a_creator_of_another_pid_namespace_is_at_work_while_it_shows_itself() {
        use std::os::fd::AsFd;
        use zerocopy::IntoBytes;
        let dir = Dir::new("other-ns");
        let loc = Location::file(dir.0.join("seg"));
        let p = prepared(&loc, 1);
        let bytes = std::fs::read(dir.0.join(&p.temp)).unwrap();
        drop(p);
        let (mut h, _) = Header::read_from_prefix(&bytes[..]).unwrap();
        h.pid_ns ^= 0x5a5a;
        let mut theirs = bytes.clone();
        theirs[..std::mem::size_of::<Header>()].copy_from_slice(h.as_bytes());
        let other_ns = format!("{}{}.0", temp_stem("seg"), 1 << 23);
        let ours_dead = format!("{}{}.1", temp_stem("seg"), 1 << 23);
        std::fs::write(dir.0.join(&other_ns), &theirs).unwrap();
        std::fs::write(dir.0.join(&ours_dead), &bytes).unwrap();
        // Its creator, in another namespace, has it mapped: it shows itself.
        let file = std::fs::File::open(dir.0.join(&other_ns)).unwrap();
        let creator = crate::sys::presence::tests::show(file.as_fd(), 0x77);
        assert_eq!(
            remove_dead_temps(&dir.0, Some("seg")),
            vec![ours_dead],
            "a creator shown in the object is at work, whatever its pid says here"
        );
        assert_eq!(dir.names(), vec![other_ns.clone()]);
        // It died: nobody shows itself, and its pid says nothing here.
        drop(creator);
        assert_eq!(remove_dead_temps(&dir.0, Some("seg")), vec![other_ns]);
        assert!(dir.names().is_empty());
    }
}
