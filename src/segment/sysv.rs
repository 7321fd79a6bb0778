//! System V segments: the create/open protocol over `shmget`/`shmat`, with
//! the segment's own lock in place of the `flock` that descriptor backends
//! use, and the header read and written in atomic words.
//!
//! The protocol step by step: `shmstore::_design::segment`
//! (src/_design/segment.rs), section System V.

use std::sync::atomic::{fence, Ordering};

use nix::errno::Errno;
use zerocopy::FromBytes;

use crate::error::{Error, Result};
use crate::lock::RawLock;
use crate::segment::backend::sysv::{creation_error, os_error};
use crate::segment::header::{
    self, Found, Header, Spec, LOCK_OFFSET, MAGIC, STATE_INITIALISING, STATE_OFFSET, STATE_READY,
};
use crate::segment::init::{self, Initial, Patience, HEADER_LEN, MAGIC_WORDS};
use crate::segment::location::SysvKey;
use crate::segment::options::{OpenMode, SharedOptions};
use crate::sys::mapping::Mapping;
use crate::sys::sysv as sys;

/// Creates or opens the segment of `key` as one holding a `T`; returns the
/// attachment, the segment id and whether this call made the segment.
pub(crate) fn establish(
    key: SysvKey,
    opts: &SharedOptions,
    mode: OpenMode,
    spec: &Spec,
    initial: Option<Initial<'_>>,
) -> Result<(Mapping, i32, bool)> {
    let label = key.to_string();
    if key.is_private() && !mode.creates() {
        return Err(Error::InvalidName {
            name: label,
            reason: "IPC_PRIVATE (SysvKey::private()) always makes a new segment and finds none: \
                     use create or open_or_create, or a key both sides agree on",
        });
    }
    let mut patience = Patience::new();
    let target = Target { spec, initial };
    loop {
        let (id, created) = get_id(&label, key, mode, spec, opts.mode)?;
        match establish_id(&label, key, id, created, opts, mode, &target, &mut patience) {
            Ok(map) => return Ok((map, id, created)),
            // Removed between shmget and shmat: look the key up again.
            Err(Attempt::Vanished) if !patience.is_over() => {}
            Err(Attempt::Vanished) => return Err(Error::NotFound { name: label }),
            Err(Attempt::Failed(e)) => {
                if created && matches!(e, Error::NoSpace { .. } | Error::Io { .. }) {
                    // We made it and could not finish it: leave nothing behind.
                    let _ = sys::remove(id);
                }
                return Err(e);
            }
        }
    }
}

/// Why one attempt on one segment id did not give a mapping.
enum Attempt {
    /// The id went away (`EINVAL`/`EIDRM`) between `shmget` and its use.
    Vanished,
    Failed(Error),
}

impl From<Error> for Attempt {
    fn from(e: Error) -> Attempt {
        Attempt::Failed(e)
    }
}

/// The id of the segment of `key`, and whether this call created it.
fn get_id(
    label: &str,
    key: SysvKey,
    mode: OpenMode,
    spec: &Spec,
    perm: u32,
) -> Result<(i32, bool)> {
    let size = spec.layout().total_size;
    let perm = (perm & 0o777) as i32;
    loop {
        if mode.creates() {
            match sys::get(key.key(), size, libc::IPC_CREAT | libc::IPC_EXCL | perm) {
                Ok(id) => return Ok((id, true)),
                Err(Errno::EEXIST) if mode == OpenMode::OpenOrCreate => {}
                Err(e @ (Errno::EINVAL | Errno::ENOSPC)) => {
                    return Err(creation_error(
                        label,
                        e,
                        size,
                        sys::limits().ok(),
                        sys::usage().ok(),
                        sys::page_size(),
                    ))
                }
                Err(e) => return Err(creation_error(label, e, size, None, None, 0)),
            }
        }
        match sys::get(key.key(), 0, 0) {
            Ok(id) => return Ok((id, false)),
            // Removed between our two calls: try to create it again.
            Err(Errno::ENOENT) if mode == OpenMode::OpenOrCreate => {}
            Err(e) => return Err(os_error(label, "opening", e)),
        }
    }
}

/// Checks, attaches and if need be initialises segment `id`.
#[allow(clippy::too_many_arguments)]
fn establish_id(
    label: &str,
    key: SysvKey,
    id: i32,
    created: bool,
    opts: &SharedOptions,
    mode: OpenMode,
    target: &Target<'_>,
    patience: &mut Patience,
) -> std::result::Result<Mapping, Attempt> {
    let vanished_or = |op, e| match e {
        Errno::EINVAL | Errno::EIDRM => Attempt::Vanished,
        e => Attempt::Failed(os_error(label, op, e)),
    };
    let st = sys::stat(id).map_err(|e| vanished_or("inspecting", e))?;
    let ours = nix::unistd::geteuid().as_raw();
    if created {
        // System V has no umask, but make sure of the mode asked for.
        if st.mode & 0o777 != opts.mode & 0o777 {
            sys::set_mode(id, opts.mode).map_err(|e| vanished_or("setting the mode of", e))?;
        }
    } else if st.uid != ours && !opts.allow_foreign_owner {
        return Err(Attempt::Failed(Error::ForeignOwner {
            name: label.to_owned(),
            owner_uid: st.uid,
            our_uid: ours,
        }));
    }
    let (map, _) = sys::attach_explained(id, mode.writable()).map_err(|e| match e.errno {
        // The stand-in was the trouble: say which file and what is wrong.
        errno if !e.why.is_empty() => Attempt::Failed(Error::Io {
            op: "attaching",
            name: label.to_owned(),
            source: std::io::Error::new(std::io::Error::from(errno).kind(), e.why),
        }),
        Errno::ENOMEM => Attempt::Failed(Error::NoSpace {
            name: label.to_owned(),
            size: st.size as u64,
        }),
        e => vanished_or("attaching", e),
    })?;
    if created && key.is_private() {
        // Nobody can find it by key: let it go with its last detach.
        sys::remove(id).map_err(|e| vanished_or("marking for removal", e))?;
    }
    settle(label, &map, opts.version_flags(), mode, target, patience)?;
    Ok(map)
}

/// What the segment must hold, and what a new one starts with.
struct Target<'a> {
    spec: &'a Spec,
    /// What a new segment holds; `None` when only opening.
    initial: Option<Initial<'a>>,
}

/// What a segment's bytes say, for one whose size fits the spec (any other
/// size is an error).
#[derive(Debug)]
enum Seen {
    /// All zeroes but the lock (perhaps the first half of a creator's
    /// magic): nobody has initialised it yet.
    Fresh,
    /// Our magic, not READY: a creator is writing it, or died doing so.
    NotReady,
    /// Complete and checked: what the spec asks for, in this build's layout.
    Ready,
}

/// Brings the attached segment to READY, or finds it so.
#[allow(unsafe_code)] // initialises memory no reference reaches: see the SAFETY comment
fn settle(
    label: &str,
    map: &Mapping,
    flags: u32,
    mode: OpenMode,
    target: &Target<'_>,
    patience: &mut Patience,
) -> Result<()> {
    let spec = target.spec;
    let incomplete = || Error::Incomplete {
        name: label.to_owned(),
    };
    let ready = || match mode {
        // Lost a race to a concurrent open_or_create, which initialised it.
        OpenMode::Create => Err(Error::AlreadyExists {
            name: label.to_owned(),
        }),
        _ => Ok(()),
    };
    loop {
        if let Seen::Ready = inspect(label, spec, map, false)? {
            return ready();
        }
        if !mode.writable() {
            // A read-only attachment cannot take the lock: wait for the
            // creator to publish READY, as long as the deadline allows.
            if !patience.nap() {
                return Err(incomplete());
            }
            continue;
        }
        // Not READY, and `inspect` found its size fit for the spec (so with
        // room for the lock), and ours or zeroed.
        let lock = map.raw_lock(LOCK_OFFSET);
        let me = lock
            .acquire_until_unrecorded(patience.deadline())
            .ok_or_else(incomplete)?;
        let outcome = match inspect(label, spec, map, true) {
            Ok(Seen::Ready) => Some(ready()),
            Ok(Seen::Fresh | Seen::NotReady) if mode.creates() => {
                let initial = target
                    .initial
                    .expect("create and open_or_create pass a value");
                // A segment another creator made may be of another size
                // that fits the spec (a store's capacity): keep its size.
                let spec = spec.with_total(map.len());
                // The header in atomic words (openers read it without the
                // lock), then the body.
                init::write_header(map, &spec);
                // SAFETY: `spec` is now sized to the mapping, and no handle
                // was made of it (it is not READY). We hold the segment's
                // lock, under which it was just seen not READY: no process
                // following the protocol accesses the body meanwhile
                // (handles are made of READY segments only; `inspect` reads
                // the value of one that is not only under this lock; other
                // initialisers write only while holding it).
                unsafe { init::write_body(map, &spec, initial, flags) };
                // The value is new: whatever poison a dead initialiser left
                // is moot.
                lock.clear_poison();
                Some(Ok(()))
            }
            // Still not READY under the lock: the creator, who writes only
            // while holding it, died.
            Ok(Seen::NotReady) => Some(Err(incomplete())),
            // Nobody has started: `open` waits for a creator that is about
            // to.
            Ok(Seen::Fresh) => None,
            Err(e) => Some(Err(e)),
        };
        lock.release(me, false);
        if let Some(outcome) = outcome {
            return outcome;
        }
        if !patience.nap() {
            return Err(incomplete());
        }
    }
}

/// Reads what the segment says, without writing anything.
///
/// Without the lock (`locked` false), an initialiser may be writing the
/// header meanwhile, so it is read with atomic loads only, in the order the
/// module docs give, and the value (which it writes with plain stores) is
/// not read at all: `Fresh` then only means that the header is zero. With
/// the lock, nobody following the protocol writes, and `Fresh` also means
/// that the value is zero, so a foreign segment is never initialised over.
fn inspect(label: &str, spec: &Spec, map: &Mapping, locked: bool) -> Result<Seen> {
    let len = map.len();
    let n = len.min(HEADER_LEN);
    let mut buf = [0u8; HEADER_LEN];

    let state = if len >= STATE_OFFSET + 4 {
        // A relaxed load and an acquire fence: a read-only attachment
        // allows no more (see `Mapping::atomic_u32`).
        let state = map.atomic_u32(STATE_OFFSET).load(Ordering::Relaxed);
        fence(Ordering::Acquire);
        state
    } else {
        0
    };
    if state == STATE_READY {
        // The release store of READY came after every write of the header,
        // and nobody following the protocol writes it again.
        map.copy_out(0, &mut buf[..n]);
        let checked = header::check(label, spec, &buf[..n], len as u64).map_err(|e| {
            // Another layout: its recorded schema (written before READY,
            // like the header) says what differs.
            header::explain_mismatch(e, spec, &buf[..n], len as u64, |offset, len| {
                let mut schema = vec![0u8; len];
                map.copy_out(offset, &mut schema);
                Some(schema)
            })
        });
        return match checked? {
            Found::Ready => Ok(Seen::Ready),
            // Its state changed back under us: someone wrote over it.
            Found::Initialising if spec.fits(len) => Ok(Seen::NotReady),
            Found::Initialising => Err(wrong_size(label, spec, &buf[..n], len)),
        };
    }

    // Everything but the magic first, then the magic, after a fence.
    let magic_len = MAGIC.len().min(n);
    if n == HEADER_LEN {
        for at in (MAGIC.len()..HEADER_LEN).step_by(4) {
            let word = map.atomic_u32(at).load(Ordering::Relaxed);
            buf[at..at + 4].copy_from_slice(&word.to_ne_bytes());
        }
    } else {
        // Shorter than a header: no initialiser writes it (every shmstore
        // segment is longer), so plain copies will do.
        map.copy_out(magic_len, &mut buf[magic_len..n]);
    }
    let header_zero = buf[magic_len..n].iter().all(|&b| b == 0);
    fence(Ordering::Acquire);
    let words = if len >= MAGIC.len() {
        let words = [
            map.atomic_u32(0).load(Ordering::Relaxed),
            map.atomic_u32(4).load(Ordering::Relaxed),
        ];
        buf[..4].copy_from_slice(&words[0].to_ne_bytes());
        buf[4..8].copy_from_slice(&words[1].to_ne_bytes());
        words
    } else {
        map.copy_out(0, &mut buf[..magic_len]);
        [u32::MAX; 2] // too short to be ours: only the bytes read count
    };

    if words == MAGIC_WORDS && matches!(state, 0 | STATE_INITIALISING) {
        if !spec.fits(len) {
            return Err(wrong_size(label, spec, &buf[..n], len));
        }
        if state == STATE_INITIALISING {
            // The header is complete (its release store came after it):
            // check what can be checked before anyone waits on the lock.
            header::check(label, spec, &buf[..n], len as u64)?;
        }
        return Ok(Seen::NotReady);
    }
    // A creator stores the magic in two words: one may be there already.
    let magic_started = words
        .iter()
        .zip(MAGIC_WORDS)
        .all(|(&w, m)| w == 0 || w == m);
    if state == 0 && header_zero && magic_started {
        if !spec.fits(len) {
            return Err(Error::Corrupt {
                name: label.to_owned(),
                reason: format!(
                    "its size {len} does not match a segment holding {}, \
                     and it holds no shmstore header: made by another program, or for another type",
                    spec.describe()
                ),
            });
        }
        if locked && !body_is_zero(map) {
            return Err(Error::Corrupt {
                name: label.to_owned(),
                reason: "no shmstore magic, and bytes after its first 240 are not zero: \
                         not a shmstore segment"
                    .to_owned(),
            });
        }
        return Ok(Seen::Fresh);
    }
    // Not ours: the check says why (no magic, unknown state, ...).
    Err(match header::check(label, spec, &buf[..n], len as u64) {
        Err(e) => e,
        Ok(_) => Error::Corrupt {
            name: label.to_owned(),
            reason: format!("unexpected state {state}"),
        },
    })
}

/// Whether every byte after the header is zero, the lock aside. Only for a
/// segment at least a header long, under its lock.
fn body_is_zero(map: &Mapping) -> bool {
    let lock = LOCK_OFFSET..LOCK_OFFSET + std::mem::size_of::<RawLock>();
    let mut chunk = [0u8; 4096];
    let mut at = HEADER_LEN;
    while at < map.len() {
        let end = if at < lock.start {
            lock.start.min(map.len())
        } else {
            map.len().min(at + chunk.len())
        };
        let part = &mut chunk[..end - at];
        map.copy_out(at, part);
        if part.iter().any(|&b| b != 0) {
            return false;
        }
        at = end;
        if at == lock.start {
            at = lock.end;
        }
    }
    true
}

/// The error for a segment with our magic, not READY, whose size does not
/// fit the spec: another type's if the header says so, else corrupt.
fn wrong_size(label: &str, spec: &Spec, bytes: &[u8], len: usize) -> Error {
    if let Ok((h, _)) = Header::read_from_prefix(bytes) {
        if h.fingerprint != 0 && h.fingerprint != spec.fingerprint {
            return Error::LayoutMismatch {
                name: label.to_owned(),
                expected_type: spec.type_name,
                expected_fingerprint: spec.fingerprint,
                found_type: h.type_name(),
                found_fingerprint: h.fingerprint,
                // Not ready: its schema may not be written yet.
                changes: Vec::new(),
            };
        }
    }
    Error::Corrupt {
        name: label.to_owned(),
        reason: format!(
            "its size {len} does not match a segment holding {} ({} bytes when new)",
            spec.describe(),
            spec.layout().total_size,
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sys::sysv::{Limits, Usage};

    const LIMITS: Limits = Limits {
        max_bytes: 4096,
        max_segments: 8,
        max_pages: 100,
    };

    #[test]
    fn too_large_names_shmmax() {
        let e = creation_error("k", Errno::EINVAL, 1 << 20, Some(LIMITS), None, 4096);
        let text = e.to_string();
        assert!(matches!(e, Error::SysvLimit { .. }), "{e:?}");
        assert!(
            text.contains("1048576 bytes, larger than the System V limit SHMMAX (4096 bytes, /proc/sys/kernel/shmmax)"),
            "{text}"
        );
        let e = creation_error("k", Errno::EINVAL, 1 << 20, None, None, 4096);
        assert!(e.to_string().contains("SHMMAX (unknown"), "{e}");
    }

    #[test]
    fn no_space_names_the_limit_reached() {
        let full_ids = Usage {
            segments: 8,
            pages: 3,
        };
        let e = creation_error("k", Errno::ENOSPC, 300, Some(LIMITS), Some(full_ids), 4096);
        assert!(e.to_string().contains("SHMMNI"), "{e}");
        assert!(!e.to_string().contains("SHMALL"), "{e}");

        let full_pages = Usage {
            segments: 2,
            pages: 99,
        };
        let e = creation_error(
            "k",
            Errno::ENOSPC,
            8192,
            Some(LIMITS),
            Some(full_pages),
            4096,
        );
        let text = e.to_string();
        assert!(
            text.contains(
                "its 2 page(s) would exceed the System V limit SHMALL (100 pages in all, 99 in use"
            ),
            "{text}"
        );

        let e = creation_error("k", Errno::ENOSPC, 8192, None, None, 4096);
        assert!(
            e.to_string().contains("SHMMNI") && e.to_string().contains("SHMALL"),
            "{e}"
        );
    }

    #[test]
    fn other_errnos() {
        let e = creation_error("k", Errno::ENOMEM, 300, None, None, 4096);
        assert!(matches!(e, Error::NoSpace { size: 300, .. }), "{e:?}");
        let e = creation_error("k", Errno::EEXIST, 300, None, None, 4096);
        assert!(matches!(e, Error::AlreadyExists { .. }), "{e:?}");
        let e = creation_error("k", Errno::EACCES, 300, None, None, 4096);
        assert!(matches!(e, Error::PermissionDenied { .. }), "{e:?}");
        assert!(matches!(
            os_error("k", "opening", Errno::ENOENT),
            Error::NotFound { .. }
        ));
    }

    #[test]
    fn the_magic_words_spell_the_magic() {
        let mut b = [0u8; 8];
        b[..4].copy_from_slice(&MAGIC_WORDS[0].to_ne_bytes());
        b[4..].copy_from_slice(&MAGIC_WORDS[1].to_ne_bytes());
        assert_eq!(b, MAGIC);
    }
}
