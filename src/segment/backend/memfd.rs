//! memfd segments: no name anywhere, sealed against shrinking and growing so
//! that no process holding the descriptor can truncate it under a mapping
//! (which would make every process that touches it die of SIGBUS). Shared by
//! handing the descriptor on: fork/exec inheritance, or a Unix socket
//! ([`send_fd`](crate::send_fd) / [`recv_fd`](crate::recv_fd)).

use std::os::fd::{AsFd, OwnedFd};

use nix::fcntl::{fcntl, FcntlArg, SealFlag};
use nix::sys::memfd::{memfd_create, MFdFlags};

use crate::error::{Error, Result};

/// The seals every shmstore memfd carries, and that a received one must carry.
const REQUIRED: SealFlag = SealFlag::F_SEAL_SHRINK.union(SealFlag::F_SEAL_GROW);

/// A new, empty memfd that can be sealed. `label` shows in /proc/PID/fd.
pub(crate) fn create(label: &str) -> Result<OwnedFd> {
    let name = format!("shmstore:{label}");
    memfd_create(
        name.as_str(),
        MFdFlags::MFD_CLOEXEC | MFdFlags::MFD_ALLOW_SEALING,
    )
    .map_err(|e| Error::from_errno(&name, "creating", e))
}

/// Seals the size for good (and the seals themselves).
pub(crate) fn seal(fd: impl AsFd, label: &str) -> Result<()> {
    fcntl(
        fd.as_fd(),
        FcntlArg::F_ADD_SEALS(REQUIRED | SealFlag::F_SEAL_SEAL),
    )
    .map(drop)
    .map_err(|e| Error::from_errno(label, "sealing", e))
}

/// Refuses a descriptor whose size is not sealed: a peer could truncate it.
pub(crate) fn check_sealed(fd: impl AsFd, label: &str) -> Result<()> {
    let seals = fcntl(fd.as_fd(), FcntlArg::F_GET_SEALS).map_err(|e| Error::Corrupt {
        name: label.to_owned(),
        reason: format!(
            "it cannot carry seals ({e}): only sealed memfds are accepted from a descriptor"
        ),
    })?;
    if SealFlag::from_bits_truncate(seals).contains(REQUIRED) {
        Ok(())
    } else {
        Err(Error::Corrupt {
            name: label.to_owned(),
            reason: "its size is not sealed (F_SEAL_SHRINK | F_SEAL_GROW): a peer could truncate it under our mapping".into(),
        })
    }
}
