//! POSIX shared memory: `shm_open` objects, which Linux keeps in /dev/shm.

use std::os::fd::OwnedFd;

use nix::errno::Errno;
use nix::fcntl::OFlag;
use nix::sys::mman::{shm_open, shm_unlink};
use nix::sys::stat::Mode;

use crate::error::{Error, Result};
use crate::segment::name::Name;
use crate::segment::options::OpenMode;

/// Opens (or makes) the object `name`. Returns the descriptor and whether
/// this call created the object.
pub(crate) fn open(name: &Name, mode: OpenMode, perm: u32) -> Result<(OwnedFd, bool)> {
    let os = name.os_name();
    let perm = Mode::from_bits_truncate(perm as libc::mode_t);
    let excl = OFlag::O_RDWR | OFlag::O_CREAT | OFlag::O_EXCL;
    loop {
        if mode.creates() {
            match shm_open(os.as_str(), excl, perm) {
                Ok(fd) => return Ok((fd, true)),
                Err(Errno::EEXIST) if mode == OpenMode::OpenOrCreate => {}
                Err(e) => return Err(Error::from_errno(name.as_str(), "creating", e)),
            }
        }
        let access = if mode.writable() {
            OFlag::O_RDWR
        } else {
            OFlag::O_RDONLY
        };
        match shm_open(os.as_str(), access, Mode::empty()) {
            Ok(fd) => return Ok((fd, false)),
            // Removed between our two calls: try to create it again.
            Err(Errno::ENOENT) if mode == OpenMode::OpenOrCreate => continue,
            Err(e) => return Err(Error::from_errno(name.as_str(), "opening", e)),
        }
    }
}

/// Removes the name; handles that are open keep working.
pub(crate) fn unlink(name: &Name) -> Result<()> {
    shm_unlink(name.os_name().as_str()).map_err(|e| Error::from_errno(name.as_str(), "removing", e))
}
