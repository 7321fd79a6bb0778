//! memfd segments: no name anywhere, sealed against shrinking and growing so
//! that no process holding the descriptor can truncate it under a mapping
//! (which would make every process that touches it die of SIGBUS). Shared by
//! handing the descriptor on: fork/exec inheritance, or a Unix socket
//! ([`send_fd`](crate::send_fd) / [`recv_fd`](crate::recv_fd)).

use std::os::fd::{AsFd, OwnedFd};

use crate::error::{Error, Result};
use crate::sys::memfd;

/// A new, empty memfd that can be sealed. `label` shows in /proc/PID/fd.
pub(crate) fn create(label: &str) -> Result<OwnedFd> {
    let name = format!("shmstore:{label}");
    memfd::create(&name).map_err(|e| Error::from_errno(&name, "creating", e))
}

/// Seals the size for good (and the seals themselves).
pub(crate) fn seal(fd: impl AsFd, label: &str) -> Result<()> {
    memfd::seal_size(fd).map_err(|e| Error::from_errno(label, "sealing", e))
}

/// Refuses a descriptor whose size is not sealed: a peer could truncate it.
pub(crate) fn check_sealed(fd: impl AsFd, label: &str) -> Result<()> {
    let sealed = memfd::size_sealed(fd).map_err(|e| Error::Corrupt {
        name: label.to_owned(),
        reason: format!(
            "it cannot carry seals ({e}): only sealed memfds are accepted from a descriptor"
        ),
    })?;
    if sealed {
        Ok(())
    } else {
        Err(Error::Corrupt {
            name: label.to_owned(),
            reason: "its size is not sealed (F_SEAL_SHRINK | F_SEAL_GROW): a peer could truncate it under our mapping".into(),
        })
    }
}
