//! File-backed segments: a regular file mapped shared, so the state survives
//! reboots. Durability: the kernel writes dirty pages back on its own
//! schedule (typically within 30 s); [`Shared::flush`](crate::Shared::flush)
//! (`msync(MS_SYNC)`) returns once they are on disk.
//!
//! Limit: the segment records the PID namespace of its creator, like every
//! segment, and is refused from another one. The host's initial namespace
//! is the same after a reboot, but a container restarted with a new PID
//! namespace cannot open a file its previous incarnation created.

use std::path::Path;

use crate::error::{Error, Result};

/// Removes the file; handles that are open keep working.
pub(crate) fn unlink(path: &Path) -> Result<()> {
    std::fs::remove_file(path).map_err(|e| {
        let name = path.display().to_string();
        match e.kind() {
            std::io::ErrorKind::NotFound => Error::NotFound { name },
            std::io::ErrorKind::PermissionDenied => Error::PermissionDenied { name },
            _ => Error::Io {
                op: "removing",
                name,
                source: e,
            },
        }
    })
}
