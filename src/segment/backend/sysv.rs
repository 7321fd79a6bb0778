//! System V segments by key: removing them and asking the kernel about them.
//! The create/open protocol over them is `segment::sysv`.

use nix::errno::Errno;

use crate::error::{Error, Result};
use crate::segment::location::{SysvInfo, SysvKey};
use crate::sys::sysv::{self as sys, Limits, Usage};

/// Turns an errno from creating a segment of `size` bytes into an error
/// that names the limit it ran into.
pub(crate) fn creation_error(
    label: &str,
    e: Errno,
    size: usize,
    limits: Option<Limits>,
    usage: Option<Usage>,
    page_size: u64,
) -> Error {
    let limit = |reason| Error::SysvLimit {
        name: label.to_owned(),
        reason,
    };
    match e {
        // With IPC_CREAT | IPC_EXCL the key is new, so EINVAL is the size:
        // over SHMMAX (or under SHMMIN, 1 byte, which no segment is).
        Errno::EINVAL => {
            let max = limits.map_or_else(
                || "unknown".to_owned(),
                |l| format!("{} bytes", l.max_bytes),
            );
            limit(format!(
                "the segment needs {size} bytes, larger than the System V limit SHMMAX \
                 ({max}, /proc/sys/kernel/shmmax): make the value smaller, use a POSIX name \
                 or a file instead, or raise the limit"
            ))
        }
        Errno::ENOSPC => {
            let pages = (size as u64).div_ceil(page_size.max(1));
            let which = match (limits, usage) {
                (Some(l), Some(u)) if u.segments >= l.max_segments => format!(
                    "all {} System V segment ids are taken (SHMMNI, /proc/sys/kernel/shmmni): \
                     remove unused segments (ipcs -m, ipcrm) or raise the limit",
                    l.max_segments
                ),
                (Some(l), Some(u)) => format!(
                    "its {pages} page(s) would exceed the System V limit SHMALL \
                     ({} pages in all, {} in use; /proc/sys/kernel/shmall): \
                     remove unused segments (ipcs -m, ipcrm) or raise the limit",
                    l.max_pages, u.pages
                ),
                _ => "the System V limit on segments (SHMMNI, /proc/sys/kernel/shmmni) \
                      or on their total size (SHMALL, /proc/sys/kernel/shmall) is reached: \
                      remove unused segments (ipcs -m, ipcrm) or raise the limits"
                    .to_owned(),
            };
            limit(which)
        }
        Errno::ENOMEM => Error::NoSpace {
            name: label.to_owned(),
            size: size as u64,
        },
        e => os_error(label, "creating", e),
    }
}

/// Turns an errno from operation `op` into the error a user can act on.
/// EINVAL never reaches here bare from a size or a removed id: callers
/// handle those.
pub(crate) fn os_error(label: &str, op: &'static str, e: Errno) -> Error {
    let name = label.to_owned();
    match e {
        Errno::ENOENT => Error::NotFound { name },
        Errno::EEXIST => Error::AlreadyExists { name },
        Errno::EACCES | Errno::EPERM => Error::PermissionDenied { name },
        Errno::ENOMEM => Error::NoSpace { name, size: 0 },
        e => Error::Io {
            op,
            name,
            source: std::io::Error::from(e),
        },
    }
}

/// Marks the segment of `key` for removal (`IPC_RMID`).
pub(crate) fn remove_key(key: SysvKey) -> Result<()> {
    let label = key.to_string();
    if key.is_private() {
        return Err(Error::InvalidName {
            name: label,
            reason: "IPC_PRIVATE (SysvKey::private()) names no segment; \
                     a private segment goes away with its last handle",
        });
    }
    let id = sys::get(key.key(), 0, 0).map_err(|e| os_error(&label, "removing", e))?;
    sys::remove(id).map_err(|e| match e {
        // Removed by someone else between the two calls.
        Errno::EINVAL | Errno::EIDRM => Error::NotFound { name: label },
        e => os_error(&label, "removing", e),
    })
}

/// Marks the segment `id` for removal (`IPC_RMID`).
pub(crate) fn remove_id(id: i32) -> Result<()> {
    let label = format!("System V id {id}");
    sys::remove(id).map_err(|e| match e {
        Errno::EINVAL | Errno::EIDRM => Error::NotFound { name: label },
        e => os_error(&label, "removing", e),
    })
}

/// `IPC_STAT` of segment `id`.
pub(crate) fn info(id: i32) -> Result<SysvInfo> {
    let label = format!("System V id {id}");
    let st = sys::stat(id).map_err(|e| match e {
        Errno::EINVAL | Errno::EIDRM => Error::NotFound {
            name: label.clone(),
        },
        e => os_error(&label, "inspecting", e),
    })?;
    Ok(SysvInfo {
        key: st.key,
        id,
        owner_uid: st.uid,
        creator_pid: st.cpid,
        mode: st.mode & 0o777,
        size: st.size as u64,
        attach_count: st.nattch,
        marked_for_removal: st.mode & sys::SHM_DEST != 0,
    })
}
