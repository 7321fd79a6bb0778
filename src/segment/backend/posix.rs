//! POSIX shared memory: `shm_open` objects, which Linux keeps in /dev/shm.

use nix::sys::mman::shm_unlink;

use crate::error::{Error, Result};
use crate::segment::name::Name;

/// Removes the name; handles that are open keep working.
pub(crate) fn unlink(name: &Name) -> Result<()> {
    shm_unlink(name.os_name().as_str()).map_err(|e| Error::from_errno(name.as_str(), "removing", e))
}
