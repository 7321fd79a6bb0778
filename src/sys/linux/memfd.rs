//! memfds (`memfd_create`) and the seals that fix their size
//! (`F_ADD_SEALS`, `F_GET_SEALS`): anonymous shared objects no process
//! holding the descriptor can shrink under a mapping.

use std::os::fd::{AsFd, OwnedFd};

use nix::errno::Errno;
use nix::fcntl::{fcntl, FcntlArg, SealFlag};
use nix::sys::memfd::{memfd_create, MFdFlags};

/// The seals that fix a memfd's size.
const SIZE: SealFlag = SealFlag::F_SEAL_SHRINK.union(SealFlag::F_SEAL_GROW);

/// A new, empty, close-on-exec memfd that can be sealed; `name` shows in
/// `/proc/PID/fd`.
pub(crate) fn create(name: &str) -> Result<OwnedFd, Errno> {
    memfd_create(name, MFdFlags::MFD_CLOEXEC | MFdFlags::MFD_ALLOW_SEALING)
}

/// Seals the size of `fd` for good, and the seals themselves.
pub(crate) fn seal_size(fd: impl AsFd) -> Result<(), Errno> {
    fcntl(fd.as_fd(), FcntlArg::F_ADD_SEALS(SIZE | SealFlag::F_SEAL_SEAL)).map(drop)
}

/// Whether the size of `fd` is sealed (against shrinking and growing); an
/// error if `fd` cannot carry seals (not a memfd).
pub(crate) fn size_sealed(fd: impl AsFd) -> Result<bool, Errno> {
    let seals = fcntl(fd.as_fd(), FcntlArg::F_GET_SEALS)?;
    Ok(SealFlag::from_bits_truncate(seals).contains(SIZE))
}
