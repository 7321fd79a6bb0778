//! Where a segment lives: a POSIX shm name, a System V key or a file path.

use std::fmt;
use std::path::{Path, PathBuf};

use crate::error::{Error, Result};
use crate::segment::name::Name;

/// Where a named segment lives; what `create`, `open`, `open_or_create` and
/// `unlink` take.
///
/// You rarely build one by hand: a `&str` is a POSIX shared-memory name, a
/// [`SysvKey`] a System V segment, and a `&Path` a file-backed segment.
///
/// ```no_run
/// # use shmstore::{Shareable, Shared, SysvKey};
/// # use std::path::Path;
/// # #[derive(Shareable, Default)] #[repr(C)] struct Counter { value: u64 }
/// Shared::<Counter>::open_or_create("my-counter", Counter::default())?;           // /dev/shm/my-counter
/// Shared::<Counter>::open_or_create(SysvKey::new(0x5348_4d01), Counter::default())?; // shmget(0x53484d01)
/// Shared::<Counter>::open_or_create(Path::new("/var/lib/app/counter"), Counter::default())?; // a file
/// # Ok::<(), shmstore::Error>(())
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Location(pub(crate) Place);

#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Place {
    Posix(Name),
    File(PathBuf),
    SysV(SysvKey),
}

impl Location {
    /// A POSIX shared-memory object (`shm_open`, in /dev/shm on Linux).
    pub fn posix(name: &str) -> Result<Location> {
        Ok(Location(Place::Posix(Name::new(name)?)))
    }

    /// A regular file, mapped shared: the segment survives reboots.
    pub fn file(path: impl Into<PathBuf>) -> Location {
        Location(Place::File(path.into()))
    }

    /// A System V shared-memory segment.
    pub fn sysv(key: SysvKey) -> Location {
        Location(Place::SysV(key))
    }

    /// How errors name it: the shm name, the path, or "System V key 0x...".
    pub(crate) fn label(&self) -> String {
        self.to_string()
    }

    /// Whether an object at this place can grow while it is mapped: a
    /// POSIX object or a file can (`posix_fallocate`); a System V segment
    /// cannot (`shmget` fixes its size).
    pub(crate) fn grows(&self) -> bool {
        !matches!(self.0, Place::SysV(_))
    }
}

impl fmt::Display for Location {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.0 {
            Place::Posix(n) => f.write_str(n.as_str()),
            Place::File(p) => write!(f, "{}", p.display()),
            Place::SysV(k) => write!(f, "{k}"),
        }
    }
}

/// Converts the arguments of `create`/`open`/`open_or_create`/`unlink`.
///
/// A `&str` is checked as a POSIX name here, so the conversion can fail with
/// [`Error::InvalidName`].
pub trait IntoLocation {
    /// The location, or why it is not one.
    fn into_location(self) -> Result<Location>;
}

impl IntoLocation for Location {
    fn into_location(self) -> Result<Location> {
        Ok(self)
    }
}

impl IntoLocation for &Location {
    fn into_location(self) -> Result<Location> {
        Ok(self.clone())
    }
}

impl IntoLocation for &str {
    fn into_location(self) -> Result<Location> {
        Location::posix(self)
    }
}

impl IntoLocation for &String {
    fn into_location(self) -> Result<Location> {
        Location::posix(self)
    }
}

impl IntoLocation for String {
    fn into_location(self) -> Result<Location> {
        Location::posix(&self)
    }
}

impl IntoLocation for &Path {
    fn into_location(self) -> Result<Location> {
        Ok(Location::file(self))
    }
}

impl IntoLocation for PathBuf {
    fn into_location(self) -> Result<Location> {
        Ok(Location::file(self))
    }
}

impl IntoLocation for SysvKey {
    fn into_location(self) -> Result<Location> {
        Ok(Location::sysv(self))
    }
}

/// The key of a System V segment.
///
/// - [`SysvKey::new`]: a number both sides agree on.
/// - [`SysvKey::ftok`]: derived from an existing file and a project byte, as
///   `ftok(3)` does. Beware: it uses only 8 bits of `proj` and the low 16 bits
///   of the file's inode (and 8 of its device), so two different files can
///   give the same key, and a file deleted and created again usually gets
///   the same key as before.
/// - [`SysvKey::private`]: `IPC_PRIVATE`, a new segment nobody can find by
///   key; it is shared with children forked after creation (they inherit the
///   attachment). Its id can be guessed, so keep the default mode 0600.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct SysvKey(pub(crate) i32);

impl SysvKey {
    /// The key `key`. Key 0 is `IPC_PRIVATE`, the same as [`SysvKey::private`].
    pub const fn new(key: i32) -> SysvKey {
        SysvKey(key)
    }

    /// `IPC_PRIVATE`: always a new segment, found by id only.
    pub const fn private() -> SysvKey {
        SysvKey(libc::IPC_PRIVATE)
    }

    /// The key `ftok(path, proj)` gives; the file must exist.
    pub fn ftok(path: impl AsRef<Path>, proj: u8) -> Result<SysvKey> {
        use std::os::unix::fs::MetadataExt;
        let path = path.as_ref();
        let meta = std::fs::metadata(path).map_err(|e| Error::Io {
            op: "ftok on",
            name: path.display().to_string(),
            source: e,
        })?;
        // glibc's ftok: proj in bits 24-31, the device's low 8 bits in 16-23,
        // the inode's low 16 bits in 0-15.
        let key = (u32::from(proj) << 24)
            | ((meta.dev() as u32 & 0xff) << 16)
            | (meta.ino() as u32 & 0xffff);
        Ok(SysvKey(key as i32))
    }

    /// The numeric key.
    pub const fn key(self) -> i32 {
        self.0
    }

    /// Whether this is `IPC_PRIVATE`.
    pub const fn is_private(self) -> bool {
        self.0 == libc::IPC_PRIVATE
    }
}

impl fmt::Display for SysvKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.is_private() {
            f.write_str("System V private segment")
        } else {
            write!(f, "System V key {:#010x}", self.0 as u32)
        }
    }
}

/// What the kernel says of a System V segment (`IPC_STAT`).
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct SysvInfo {
    /// The key it was created with (0 once removed with `IPC_RMID`, or for
    /// a private segment).
    pub key: i32,
    /// The segment id.
    pub id: i32,
    /// Owner user id.
    pub owner_uid: u32,
    /// Creator's process id.
    pub creator_pid: i32,
    /// Permission bits.
    pub mode: u32,
    /// Size in bytes.
    pub size: u64,
    /// How many attachments it has now, in all processes.
    pub attach_count: u64,
    /// Whether `IPC_RMID` was called: it goes away with its last detach.
    pub marked_for_removal: bool,
}
