//! Where segments come from. A backend only produces a mapping (or an open
//! object that can be sized and mapped) and a way to remove its name; the
//! header, the lock and the typed handle never know which backend made their
//! segment.
//!
//! | backend | object | name | removal |
//! |---|---|---|---|
//! | [`posix`] | `shm_open` object in /dev/shm | `"name"` | `shm_unlink` |
//! | [`file`] | a regular file | a path | `unlink` |
//! | [`sysv`] | `shmget` segment | a key | `IPC_RMID` |
//! | [`memfd`] | sealed `memfd_create` object | none: share the descriptor | last descriptor and mapping gone |
//! | anonymous | `MAP_SHARED \| MAP_ANONYMOUS` memory | none: forked children inherit it | last mapping gone |

use std::path::PathBuf;

use crate::error::Result;
use crate::location::{Location, Place};
use crate::name::Name;

pub(crate) mod file;
pub(crate) mod memfd;
pub(crate) mod posix;
pub(crate) mod sysv;

/// What to do when the name exists, or does not.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum OpenMode {
    /// Make a new object; fail if the name exists.
    Create,
    /// Open an existing object; fail if there is none.
    Open,
    /// Open the object, making it first if there is none.
    OpenOrCreate,
    /// Open an existing object for reading only, mapped read-only.
    ReadOnly,
}

impl OpenMode {
    /// Whether this mode makes the object when there is none.
    pub(crate) fn creates(self) -> bool {
        matches!(self, OpenMode::Create | OpenMode::OpenOrCreate)
    }

    /// Whether the object is opened and mapped for writing.
    pub(crate) fn writable(self) -> bool {
        self != OpenMode::ReadOnly
    }
}

/// How to remove the name of the segment a handle maps.
#[derive(Debug)]
pub(crate) enum Remover {
    Posix(Name),
    File(PathBuf),
    /// The segment's id: removal is by id, so a new segment that took the
    /// key meanwhile is not touched.
    SysV(i32),
    /// Nameless (memfd, anonymous): nothing to remove.
    None,
}

impl Remover {
    pub(crate) fn remove(&self) -> Result<()> {
        match self {
            Remover::Posix(name) => posix::unlink(name),
            Remover::File(path) => file::unlink(path),
            Remover::SysV(id) => sysv::remove_id(*id),
            Remover::None => Ok(()),
        }
    }
}

/// Removes the name `loc`, whatever its segment holds.
pub(crate) fn unlink(loc: &Location) -> Result<()> {
    match &loc.0 {
        Place::Posix(name) => posix::unlink(name),
        Place::File(path) => file::unlink(path),
        Place::SysV(key) => sysv::remove_key(*key),
    }
}
