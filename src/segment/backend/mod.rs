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

pub(crate) mod file;
pub(crate) mod memfd;
pub(crate) mod posix;
pub(crate) mod sysv;
