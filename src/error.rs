//! The one error type of the crate.

use std::fmt;
use std::io;

use crate::schema::LayoutChange;

/// The user id Linux shows for an owner a user namespace does not map
/// (`/proc/sys/kernel/overflowuid`, 65534 unless changed).
const OVERFLOW_UID: u32 = 65534;

/// What went wrong when creating, opening or removing a shared segment.
///
/// Every variant names the segment and `Display` says what to do about it.
/// Lock poisoning is not an error of this type: it is reported through
/// [`std::sync::LockResult`], as [`std::sync::Mutex`] does.
#[derive(Debug)]
#[non_exhaustive]
pub enum Error {
    /// No segment has this name (or no entry of a store this key: the name
    /// is then `store/key`).
    NotFound {
        /// The segment's name.
        name: String,
    },
    /// A segment of this name exists already (`create` never reuses one).
    AlreadyExists {
        /// The segment's name.
        name: String,
    },
    /// The name cannot name a segment.
    InvalidName {
        /// The name as given.
        name: String,
        /// Why it is refused.
        reason: &'static str,
    },
    /// The segment is a shmstore segment, but of another type or of another
    /// layout of the same type (for example a build with a field added).
    ///
    /// Every segment and store entry records the schema of what it holds:
    /// `changes` lists what differs from it to this build's type (fields
    /// added, removed, moved, resized or retyped, by name), and the message
    /// says them after the two types and fingerprints.
    ///
    /// ```
    /// use shmstore::{Error, Shared};
    ///
    /// mod v1 {
    ///     #[derive(shmstore::Shareable, Clone, Copy, Default)]
    ///     #[repr(C)]
    ///     pub struct Config { pub a: u32, pub b: u32 }
    /// }
    /// mod v2 {
    ///     #[derive(shmstore::Shareable, Clone, Copy, Default)]
    ///     #[repr(C)]
    ///     pub struct Config { pub a: u32, pub c: u32 }
    /// }
    ///
    /// # let name = format!("doc-layout-mismatch-{}", std::process::id());
    /// let old = Shared::create(&name, v1::Config::default())?; // an older build
    /// # struct Unlink(String);
    /// # impl Drop for Unlink { fn drop(&mut self) { let _ = shmstore::unlink(&self.0); } }
    /// # let _unlink = Unlink(name.clone());
    /// let err = Shared::<v2::Config>::open(&name).unwrap_err();
    /// assert!(matches!(&err, Error::LayoutMismatch { changes, .. } if changes.len() == 2));
    /// let message = err.to_string();
    /// assert!(message.contains("field `b: u32` removed"), "{message}");
    /// assert!(message.contains("field `c: u32` added at offset 4"), "{message}");
    /// # drop(old);
    /// # Ok::<(), shmstore::Error>(())
    /// ```
    LayoutMismatch {
        /// The segment's name.
        name: String,
        /// The type this handle asked for.
        expected_type: &'static str,
        /// Its layout fingerprint.
        expected_fingerprint: u64,
        /// The type the segment says it holds.
        found_type: String,
        /// The fingerprint in the segment.
        found_fingerprint: u64,
        /// What differs from the segment's layout to this build's, at most
        /// [`MAX_CHANGES`](crate::schema::MAX_CHANGES) and then a count of
        /// the rest; empty when the segment's schema is absent, unreadable
        /// or damaged.
        changes: Vec<LayoutChange>,
    },
    /// The object is not a shmstore segment, or it disagrees with its own
    /// header (truncated, unknown format version, impossible offsets).
    Corrupt {
        /// The segment's name.
        name: String,
        /// What exactly is wrong.
        reason: String,
    },
    /// The segment was made by a build of the other byte order (a
    /// big-endian host's, read on a little-endian one, or the other way
    /// round), which happens with files on a disk that several hosts share:
    /// its numbers would read as other numbers here, so it is refused,
    /// whatever type it holds. Nothing was changed.
    ///
    /// ```
    /// use shmstore::ByteOrder;
    ///
    /// let e = shmstore::Error::OtherByteOrder {
    ///     name: "/mnt/shared/config.shm".into(),
    ///     found: ByteOrder::NATIVE.other(),
    /// };
    /// assert!(e.to_string().contains(&format!(
    ///     "made by a {} build, and this build is {}",
    ///     ByteOrder::NATIVE.other(),
    ///     ByteOrder::NATIVE
    /// )));
    /// ```
    OtherByteOrder {
        /// The segment's name.
        name: String,
        /// The byte order of the build that made it (this build's is
        /// [`ByteOrder::NATIVE`]).
        found: ByteOrder,
    },
    /// The segment exists but was never completely initialised: a System V
    /// segment whose creator died before finishing or has been initialising
    /// for several seconds, or a memfd handed over unfinished. (POSIX and
    /// file segments are published whole: an unfinished one under a name is
    /// [`Error::Corrupt`] at once.)
    Incomplete {
        /// The segment's name.
        name: String,
    },
    /// The segment's type cannot be changed in place where it lives:
    /// [`SharedOptions::open_or_migrate`](crate::SharedOptions::open_or_migrate)
    /// and [`replace_on_mismatch`](crate::SharedOptions::replace_on_mismatch)
    /// put a new segment under the name in one step, which a System V key
    /// (or a filesystem without `RENAME_EXCHANGE`) does not allow.
    MigrationUnsupported {
        /// The segment's name.
        name: String,
        /// Why, in words a user can act on.
        reason: &'static str,
    },
    /// The operating system refused access (mode bits, or a read-only mount).
    PermissionDenied {
        /// The segment's name.
        name: String,
    },
    /// The segment belongs to another user. `/dev/shm` is writable by
    /// everyone, so anyone can create a name first and feed data to whoever
    /// opens it; such a segment is refused unless
    /// [`SharedOptions::allow_foreign_owner`](crate::SharedOptions::allow_foreign_owner) is set.
    ForeignOwner {
        /// The segment's name.
        name: String,
        /// The user id that owns it.
        owner_uid: u32,
        /// Our effective user id.
        our_uid: u32,
    },
    /// Not enough shared memory to create the segment, or to grow a
    /// [`Store`](crate::Store) (a full `/dev/shm`, or a full filesystem for
    /// a file store). Nothing was left behind: a store that could not grow
    /// is as it was.
    NoSpace {
        /// The segment's name.
        name: String,
        /// The bytes it needed (the whole object, for a store that grows).
        size: u64,
    },
    /// A read-only handle was asked to wait for changes on a segment whose
    /// writers do not wake read-only handles (created without
    /// [`SharedOptions::wake_read_only`](crate::SharedOptions::wake_read_only)).
    NotWatchable {
        /// The segment's name.
        name: String,
    },
    /// A [`Store`](crate::Store) has no free space for a new entry this
    /// big, and has grown as far as it may
    /// ([`SharedOptions::max_capacity`](crate::SharedOptions::max_capacity)).
    /// Removing entries frees space; `largest_free` below `needed` while
    /// `free` is above it means the free space is in pieces.
    StoreFull {
        /// The store's name.
        name: String,
        /// The bytes the entry needs, its key, type name, lock and value
        /// included.
        needed: u64,
        /// The free bytes in all.
        free: u64,
        /// The largest free piece.
        largest_free: u64,
    },
    /// Every handle slot of a [`Store`](crate::Store) is taken by a live
    /// process: at most `limit` (4,096) `Store` handles can be open at
    /// once, in all processes together; slots of processes that died are
    /// reused.
    HandleLimit {
        /// The store's name.
        name: String,
        /// How many handles a store can have.
        limit: usize,
    },
    /// Another process shrank the segment (`ftruncate`) while this handle
    /// had it mapped, and this process touched a page past the new end.
    /// Such a page would kill the process with SIGBUS; shmstore caught the
    /// fault and gave this process zeroed private pages there instead, so
    /// what it reads there is not the segment's data and what it writes
    /// reaches nobody. The handle stays broken: drop it, and reopen or
    /// recreate the segment. (memfd and System V segments cannot be shrunk.)
    Truncated {
        /// The segment's name.
        name: String,
        /// The size this handle mapped, in bytes.
        mapped: u64,
    },
    /// Creating a System V segment would go over a limit the kernel sets:
    /// the size of one segment (`SHMMAX`), the number of segments
    /// (`SHMMNI`) or the pages of all segments together (`SHMALL`). Nothing
    /// was left behind.
    SysvLimit {
        /// The segment's key.
        name: String,
        /// Which limit, its value and what the segment needed, with what to
        /// do about it.
        reason: String,
    },
    /// The schema of a type (what `#[derive(Shareable)]` records of it) is
    /// longer than an entry of a [`Store`](crate::Store) keeps.
    SchemaTooLarge {
        /// The store and the entry's key, as `store/key`.
        name: String,
        /// The type's name.
        type_name: &'static str,
        /// The length of its encoded schema, in bytes.
        len: usize,
        /// The longest schema an entry keeps, in bytes.
        max: usize,
    },
    /// Another operating-system error.
    Io {
        /// What was being done, e.g. "mapping".
        op: &'static str,
        /// The segment's name.
        name: String,
        /// The error from the OS.
        source: io::Error,
    },
}

/// The order in which a build stores the bytes of a number: what a
/// segment's header shows of the build that made it, and what a mirrored
/// value carries (see [`Error::OtherByteOrder`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ByteOrder {
    /// Least significant byte first (x86_64, aarch64, riscv64, powerpc64le).
    Little,
    /// Most significant byte first (s390x, powerpc64).
    Big,
}

impl ByteOrder {
    /// This build's byte order.
    pub const NATIVE: ByteOrder = if cfg!(target_endian = "big") {
        ByteOrder::Big
    } else {
        ByteOrder::Little
    };

    /// The other byte order.
    pub const fn other(self) -> ByteOrder {
        match self {
            ByteOrder::Little => ByteOrder::Big,
            ByteOrder::Big => ByteOrder::Little,
        }
    }
}

impl fmt::Display for ByteOrder {
    /// `little-endian` or `big-endian`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            ByteOrder::Little => "little-endian",
            ByteOrder::Big => "big-endian",
        })
    }
}

/// `Result` with [`Error`] as the default error type.
pub type Result<T, E = Error> = std::result::Result<T, E>;

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::NotFound { name } => write!(
                f,
                "`{name}` does not exist: create it first, or use open_or_create \
                 (get_or_create for an entry of a store)"
            ),
            Error::AlreadyExists { name } => write!(
                f,
                "`{name}` already exists: open it or use open_or_create (get or get_or_create \
                 for an entry of a store), or remove it first"
            ),
            Error::InvalidName { name, reason } => {
                write!(f, "`{name}` is not a valid name: {reason}")
            }
            Error::LayoutMismatch {
                name,
                expected_type,
                expected_fingerprint,
                found_type,
                found_fingerprint,
                changes,
            } => {
                write!(
                    f,
                    "`{name}` holds a `{found_type}` (layout {found_fingerprint:#018x}), \
                     not this build's `{expected_type}` (layout {expected_fingerprint:#018x}): \
                     open it with the same type definition it was created with, or remove it"
                )?;
                for (i, change) in changes.iter().enumerate() {
                    let sep = if i == 0 {
                        ". From its layout to this build's: "
                    } else {
                        "; "
                    };
                    write!(f, "{sep}{change}")?;
                }
                Ok(())
            }
            Error::Corrupt { name, reason } => write!(
                f,
                "`{name}` is not a usable shmstore segment ({reason}): \
                 nothing was changed; inspect it, or unlink it if it is yours"
            ),
            Error::OtherByteOrder { name, found } => write!(
                f,
                "`{name}` was made by a {found} build, and this build is {}: its numbers would \
                 read as other numbers here, so it is refused and nothing was changed; open it \
                 from a {found} host, or create it anew under another name here",
                ByteOrder::NATIVE
            ),
            Error::Incomplete { name } => write!(
                f,
                "shared segment `{name}` was never fully initialised (its creator died or is stuck): \
                 open_or_create initialises it, or unlink it"
            ),
            Error::MigrationUnsupported { name, reason } => write!(
                f,
                "shared segment `{name}` cannot be migrated to another type in place: {reason}; \
                 create the new type under another name (or key) and move the value over"
            ),
            Error::PermissionDenied { name } => write!(
                f,
                "permission denied for shared segment `{name}`: check its owner and mode (ls -l /dev/shm for POSIX names, ipcs -m for System V keys, ls -l for files)"
            ),
            Error::ForeignOwner {
                name,
                owner_uid,
                our_uid,
            } => {
                write!(f, "shared segment `{name}` belongs to uid {owner_uid}")?;
                if *owner_uid == OVERFLOW_UID {
                    // What a user namespace shows for an owner it does not map.
                    write!(
                        f,
                        " (or, seen from a user namespace such as a rootless container's, \
                         to a user outside it)"
                    )?;
                }
                write!(
                    f,
                    ", not to us (uid {our_uid}): refused, as anyone can create a name in \
                     /dev/shm or a System V key first; use SharedOptions::allow_foreign_owner \
                     if that user is trusted"
                )
            }
            Error::NoSpace { name, size } => write!(
                f,
                "not enough shared memory to create or grow `{name}` ({size} bytes): \
                 free some (df -h /dev/shm for POSIX segments, ipcs -m for System V) or raise the limit; nothing was left behind"
            ),
            Error::NotWatchable { name } => write!(
                f,
                "a read-only handle cannot wait for changes of shared segment `{name}`: \
                 it cannot tell writers that it waits, and the segment was not created with \
                 SharedOptions::wake_read_only(true); create it with that option, \
                 or wait through a handle that may write"
            ),
            Error::StoreFull {
                name,
                needed,
                free,
                largest_free,
            } => write!(
                f,
                "store `{name}` is full: the entry needs {needed} bytes, {free} bytes are free \
                 (the largest free piece is {largest_free} bytes) and it has grown as far as \
                 it may; remove entries, or create the store with a larger max_capacity"
            ),
            Error::HandleLimit { name, limit } => write!(
                f,
                "store `{name}` has {limit} handles open already, its limit: \
                 share one Store handle between the threads of a process (it is Clone), \
                 or close handles that are not needed"
            ),
            Error::Truncated { name, mapped } => write!(
                f,
                "shared segment `{name}` was shrunk by another process while mapped here \
                 ({mapped} bytes were mapped): the missing part reads as zeros in this \
                 process and writes to it reach nobody; drop this handle, \
                 then reopen or recreate the segment"
            ),
            Error::SysvLimit { name, reason } => {
                write!(f, "cannot create System V segment `{name}`: {reason}")
            }
            Error::SchemaTooLarge {
                name,
                type_name,
                len,
                max,
            } => write!(
                f,
                "the schema of `{type_name}` is {len} bytes, more than the {max} an entry of a \
                 store keeps, so `{name}` cannot hold it: keep it in a segment of its own \
                 (Shared), or split the type into smaller ones"
            ),
            Error::Io { op, name, source } => {
                write!(f, "{op} shared segment `{name}` failed: {source}")
            }
        }
    }
}

impl Error {
    /// Turns an errno from operation `op` on segment `name` into the error a
    /// user can act on.
    pub(crate) fn from_errno(name: &str, op: &'static str, e: nix::errno::Errno) -> Error {
        use nix::errno::Errno;
        let name = name.to_owned();
        match e {
            Errno::ENOENT => Error::NotFound { name },
            Errno::EEXIST => Error::AlreadyExists { name },
            Errno::EACCES | Errno::EPERM | Errno::EROFS => Error::PermissionDenied { name },
            Errno::EINVAL | Errno::ENAMETOOLONG => Error::InvalidName {
                name,
                reason: "the system refuses it",
            },
            Errno::ENOSPC => Error::NoSpace { name, size: 0 },
            e => Error::Io {
                op,
                name,
                source: std::io::Error::from(e),
            },
        }
    }
}

impl std::error::Error for Error {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Error::Io { source, .. } => Some(source),
            _ => None,
        }
    }
}

impl From<Error> for io::Error {
    fn from(e: Error) -> io::Error {
        let kind = match &e {
            Error::NotFound { .. } => io::ErrorKind::NotFound,
            Error::AlreadyExists { .. } => io::ErrorKind::AlreadyExists,
            Error::InvalidName { .. } => io::ErrorKind::InvalidInput,
            Error::PermissionDenied { .. } | Error::ForeignOwner { .. } => {
                io::ErrorKind::PermissionDenied
            }
            Error::NoSpace { .. } | Error::StoreFull { .. } | Error::SysvLimit { .. } => {
                io::ErrorKind::StorageFull
            }
            Error::SchemaTooLarge { .. } => io::ErrorKind::InvalidInput,
            Error::HandleLimit { .. } => io::ErrorKind::ResourceBusy,
            Error::NotWatchable { .. } => io::ErrorKind::Unsupported,
            Error::MigrationUnsupported { .. } => io::ErrorKind::Unsupported,
            Error::Truncated { .. } => io::ErrorKind::UnexpectedEof,
            Error::Io { source, .. } => source.kind(),
            _ => io::ErrorKind::InvalidData,
        };
        io::Error::new(kind, e)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn limits_that_are_not_os_errors_say_what_to_do() {
        let e = Error::SchemaTooLarge {
            name: "store/key".into(),
            type_name: "Big",
            len: 65_536,
            max: 65_535,
        };
        assert_eq!(
            e.to_string(),
            "the schema of `Big` is 65536 bytes, more than the 65535 an entry of a store \
             keeps, so `store/key` cannot hold it: keep it in a segment of its own (Shared), \
             or split the type into smaller ones"
        );
        assert!(std::error::Error::source(&e).is_none());
        assert_eq!(io::Error::from(e).kind(), io::ErrorKind::InvalidInput);

        let e = Error::SysvLimit {
            name: "0x00000001".into(),
            reason: "SHMMAX: raise it".into(),
        };
        assert_eq!(
            e.to_string(),
            "cannot create System V segment `0x00000001`: SHMMAX: raise it"
        );
        assert!(std::error::Error::source(&e).is_none());
        assert_eq!(io::Error::from(e).kind(), io::ErrorKind::StorageFull);
    }
}
