//! File-backed segments: a regular file mapped shared, so the state survives
//! reboots. Durability: the kernel writes dirty pages back on its own
//! schedule (typically within 30 s); [`Shared::flush`](crate::Shared::flush)
//! (`msync(MS_SYNC)`) returns once they are on disk.
//!
//! Limit: the segment records the PID namespace of its creator, like every
//! segment, and is refused from another one. The host's initial namespace
//! is the same after a reboot, but a container restarted with a new PID
//! namespace cannot open a file its previous incarnation created.

use std::os::fd::OwnedFd;
use std::path::Path;

use nix::errno::Errno;
use nix::fcntl::{open as nix_open, OFlag};
use nix::sys::stat::Mode;

use crate::error::{Error, Result};
use crate::segment::options::OpenMode;

/// Opens (or makes) the file `path`. Returns the descriptor and whether this
/// call created the file. A symbolic link as the last component is refused
/// (`O_NOFOLLOW`), so nobody can point the name at another file of ours.
pub(crate) fn open(path: &Path, mode: OpenMode, perm: u32) -> Result<(OwnedFd, bool)> {
    let label = path.display().to_string();
    let perm = Mode::from_bits_truncate(perm as libc::mode_t);
    let access = if mode.writable() {
        OFlag::O_RDWR
    } else {
        OFlag::O_RDONLY
    };
    let base = access | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC;
    let err = |op, e| match e {
        Errno::ELOOP => Error::InvalidName {
            name: label.clone(),
            reason: "it is a symbolic link",
        },
        Errno::EISDIR => Error::InvalidName {
            name: label.clone(),
            reason: "it is a directory",
        },
        e => Error::from_errno(&label, op, e),
    };
    loop {
        if mode.creates() {
            match nix_open(path, base | OFlag::O_CREAT | OFlag::O_EXCL, perm) {
                Ok(fd) => return Ok((fd, true)),
                Err(Errno::EEXIST) if mode == OpenMode::OpenOrCreate => {}
                Err(e) => return Err(err("creating", e)),
            }
        }
        match nix_open(path, base, Mode::empty()) {
            Ok(fd) => {
                let st = nix::sys::stat::fstat(&fd).map_err(|e| err("inspecting", e))?;
                if st.st_mode & libc::S_IFMT != libc::S_IFREG {
                    return Err(Error::InvalidName {
                        name: label,
                        reason: "it is not a regular file",
                    });
                }
                return Ok((fd, false));
            }
            Err(Errno::ENOENT) if mode == OpenMode::OpenOrCreate => continue,
            Err(e) => return Err(err("opening", e)),
        }
    }
}

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
