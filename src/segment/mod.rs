//! Creating and opening a segment safely, whatever the backend: POSIX and
//! file segments (published whole under their name, and looked at before
//! they are opened: [`publish`]), memfd and anonymous memory here, System V
//! (the segment's own lock serialises its initialisation) in [`sysv`]; the
//! header and its check in [`header`], a new segment's body in [`init`],
//! names in [`name`] and [`location`], the backends that only seal and
//! remove in [`backend`].
//!
//! The protocol, step by step, and what each step defends against:
//! `shmstore::_design::segment` (src/_design/segment.rs).

use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};
use std::path::PathBuf;
use std::sync::{Arc, OnceLock};

use nix::errno::Errno;
use nix::sys::stat::fstat;
use nix::sys::uio::pread;

use crate::error::{Error, Result};
use crate::segment::backend::memfd;
use crate::segment::header::{Found, Header, Spec};
use crate::segment::location::{IntoLocation, Location, Place};
use crate::segment::name::Name;
use crate::segment::options::{OpenMode, SharedOptions};
use crate::sys::mapping::Mapping;
use crate::types::shareable::Shareable;

pub(crate) use crate::segment::init::Initial;
pub(crate) use crate::segment::publish::ObjectId;

pub(crate) mod backend;
pub(crate) mod header;
pub(crate) mod init;
pub(crate) mod location;
pub(crate) mod migrate;
pub(crate) mod name;
pub(crate) mod options;
pub(crate) mod publish;
pub(crate) mod sysv;

/// A mapped segment and what else its handle keeps.
pub(crate) struct Established {
    pub map: Mapping,
    pub remover: Remover,
    /// Whether this call made the segment.
    pub created: bool,
    /// The object under the name when it was opened (POSIX and file):
    /// what a migration replaces ([`publish::Prepared::replace`]).
    pub id: Option<ObjectId>,
}

/// Creates or opens the segment at `loc` as one holding a `T`.
///
/// `value` is the initial value, required unless `mode` opens only.
pub(crate) fn establish<T: Shareable>(
    loc: &Location,
    opts: &SharedOptions,
    mode: OpenMode,
    value: Option<T>,
) -> Result<Established> {
    let (spec, schema) = value_spec::<T>();
    let content = value.map(crate::types::shareable::into_bytes);
    let initial = content.as_deref().map(|content| Initial {
        content,
        schema: &schema,
    });
    establish_spec(loc, opts, mode, &spec, initial)
}

/// The spec of a segment holding one `T`, and `T`'s encoded schema.
pub(crate) fn value_spec<T: Shareable>() -> (Spec, Vec<u8>) {
    let schema = crate::schema::Schema::of::<T>().encode();
    (Spec::of::<T>(schema.len()), schema)
}

/// Creates or opens the segment at `loc` as one of `spec`.
///
/// What a new segment holds is `initial`, required unless `mode` opens
/// only.
pub(crate) fn establish_spec(
    loc: &Location,
    opts: &SharedOptions,
    mode: OpenMode,
    spec: &Spec,
    initial: Option<Initial<'_>>,
) -> Result<Established> {
    let label = loc.label();
    let remover = match &loc.0 {
        Place::Posix(_) | Place::File(_) => remover_of(loc),
        Place::SysV(key) => {
            let (map, id, created) = sysv::establish(*key, opts, mode, spec, initial)?;
            return Ok(Established {
                map,
                remover: Remover::SysV(id),
                created,
                id: None,
            });
        }
    };
    let (map, created, id) = establish_named(&label, loc, opts, mode, spec, initial)?;
    if map.is_cut() {
        // Shrunk by another process between our size check and now: what
        // the checks read past the new end was zeros (see `sys::sigbus`).
        return Err(Error::Truncated {
            name: label,
            mapped: map.len() as u64,
        });
    }
    Ok(Established {
        map,
        remover,
        created,
        id: Some(id),
    })
}

/// How to remove the POSIX or file name `loc` (a System V segment is
/// removed by its id, which only its opening gives).
pub(crate) fn remover_of(loc: &Location) -> Remover {
    match &loc.0 {
        Place::Posix(name) => Remover::Posix(name.clone()),
        Place::File(path) => Remover::File(path.clone()),
        Place::SysV(_) => Remover::None,
    }
}

/// Creates or opens a POSIX or file segment by publication: an existing
/// name is opened as it is (see [`publish::open_existing`]); a new segment
/// is made complete under a temporary name and put under the name only if
/// the name is still free; the loser of that race opens the winner's.
/// Returns the mapping, whether this call created it, and its object.
fn establish_named(
    label: &str,
    loc: &Location,
    opts: &SharedOptions,
    mode: OpenMode,
    spec: &Spec,
    initial: Option<Initial<'_>>,
) -> Result<(Mapping, bool, ObjectId)> {
    loop {
        if mode != OpenMode::Create {
            match publish::open_existing(loc, mode.writable()) {
                Ok((fd, id)) => return Ok((open_fd(label, opts, mode, fd, spec)?, false, id)),
                Err(Error::NotFound { .. }) if mode == OpenMode::OpenOrCreate => {}
                Err(e) => return Err(e),
            }
        }
        let initial = initial.expect("create and open_or_create pass a value");
        let prepared = publish::prepare(loc, opts, spec, initial)?;
        let id = prepared.id();
        match prepared.publish()? {
            Some(map) => return Ok((map, true, id)),
            None if mode == OpenMode::Create => {
                return Err(Error::AlreadyExists {
                    name: label.to_owned(),
                })
            }
            // Lost the race: open the winner's, complete by construction.
            None => {}
        }
    }
}

/// Makes a new sealed memfd segment holding `value`; returns the mapping and
/// the descriptor to share.
pub(crate) fn memfd<T: Shareable>(value: T) -> Result<(Mapping, OwnedFd)> {
    let fd = memfd::create(T::TYPE_NAME)?;
    let label = format!("memfd:{}", T::TYPE_NAME);
    let content = crate::types::shareable::into_bytes(value);
    let (spec, schema) = value_spec::<T>();
    let initial = Initial {
        content: &content,
        schema: &schema,
    };
    let map = init::initialise(&label, fd.as_fd(), &spec, initial, 0)?;
    memfd::seal(&fd, &label)?;
    Ok((map, fd))
}

/// Maps a segment from a descriptor received from another process; only
/// sealed memfds are accepted.
pub(crate) fn from_fd<T: Shareable>(fd: &OwnedFd, opts: &SharedOptions) -> Result<Mapping> {
    let label = format!("descriptor {}", fd.as_raw_fd());
    memfd::check_sealed(fd, &label)?;
    check_owner(&label, opts, fd)?;
    let size = fstat(fd)
        .map_err(|e| Error::from_errno(&label, "inspecting", e))?
        .st_size as u64;
    match read_header(&label, &value_spec::<T>().0, fd.as_fd(), size)? {
        Found::Ready => {
            // Through a description of this process's own: the one received
            // may carry the sender's presence, which a mapping made from it
            // would keep alive after the sender died.
            let own = crate::sys::presence::own_description(fd.as_fd()).map_err(|e| {
                Error::Io {
                    op: "reopening",
                    name: label.clone(),
                    source: e,
                }
            })?;
            Mapping::map(own.as_fd(), size as usize, true).map_err(|e| Error::Io {
                op: "mapping",
                name: label,
                source: e,
            })
        }
        Found::Initialising => Err(Error::Incomplete { name: label }),
    }
}

/// Makes an anonymous shared segment holding `value`: this process and the
/// children it forks afterwards share it.
pub(crate) fn anonymous<T: Shareable>(value: T) -> Result<Mapping> {
    let content = crate::types::shareable::into_bytes(value);
    let (spec, schema) = value_spec::<T>();
    let initial = Initial {
        content: &content,
        schema: &schema,
    };
    anonymous_spec(&spec, initial)
}

/// Makes an anonymous shared segment of `spec` holding `initial`.
#[allow(unsafe_code)] // initialises memory no reference reaches: see the SAFETY comment
pub(crate) fn anonymous_spec(spec: &Spec, initial: Initial<'_>) -> Result<Mapping> {
    let layout = spec.layout();
    let label = format!("anonymous:{}", spec.type_name);
    let map = Mapping::anonymous(layout.total_size).map_err(|e| match e.raw_os_error() {
        Some(libc::ENOMEM) => Error::NoSpace {
            name: label.clone(),
            size: layout.total_size as u64,
        },
        _ => Error::Io {
            op: "mapping",
            name: label.clone(),
            source: e,
        },
    })?;
    // The kernel zeroed the mapping: the lock is unlocked already.
    init::write_header(&map, spec);
    // SAFETY: the mapping is new and private to this call: no other thread
    // or process can reach it, and no handle was made of it, before we
    // return it.
    unsafe { init::write_body(&map, spec, initial, 0) };
    Ok(map)
}

/// Maps an existing segment of `spec` from `fd`, a regular file under a
/// name: a name only ever shows complete segments (they are published
/// whole), so an empty, short or unfinished object is
/// [`Error::Corrupt`] at once, never waited for.
fn open_fd(
    name: &str,
    opts: &SharedOptions,
    mode: OpenMode,
    fd: OwnedFd,
    spec: &Spec,
) -> Result<Mapping> {
    check_owner(name, opts, &fd)?;
    let corrupt = |reason: String| Error::Corrupt {
        name: name.to_owned(),
        reason,
    };
    let size = fstat(&fd)
        .map_err(|e| Error::from_errno(name, "inspecting", e))?
        .st_size as u64;
    if size == 0 {
        return Err(corrupt("empty".into()));
    }
    if size < init::HEADER_LEN as u64 {
        let mut magic = [0u8; header::MAGIC.len()];
        let got = read_at(fd.as_fd(), &mut magic)
            .map_err(|e| Error::from_errno(name, "reading the header of", e))?;
        let whose = if got == magic.len() && magic == header::MAGIC {
            "cut short"
        } else {
            "no shmstore magic: not a shmstore segment"
        };
        return Err(corrupt(format!(
            "{size} bytes, shorter than a header ({whose})"
        )));
    }
    match read_header(name, spec, fd.as_fd(), size)? {
        Found::Ready => {
            Mapping::map(fd.as_fd(), size as usize, mode.writable()).map_err(|e| Error::Io {
                op: "mapping",
                name: name.to_owned(),
                source: e,
            })
        }
        Found::Initialising => Err(corrupt("never finished by its creator".into())),
    }
}

/// Refuses an object that another user owns, unless allowed.
fn check_owner(name: &str, opts: &SharedOptions, fd: &OwnedFd) -> Result<()> {
    let st = fstat(fd).map_err(|e| Error::from_errno(name, "inspecting", e))?;
    let ours = nix::unistd::geteuid().as_raw();
    if st.st_uid != ours && !opts.allow_foreign_owner {
        return Err(Error::ForeignOwner {
            name: name.to_owned(),
            owner_uid: st.st_uid,
            our_uid: ours,
        });
    }
    Ok(())
}

/// Reads the header of an object of `size` bytes with `pread` and checks it
/// against `spec` (see [`header::check`]).
fn read_header(name: &str, spec: &Spec, fd: BorrowedFd<'_>, size: u64) -> Result<Found> {
    let mut buf = [0u8; std::mem::size_of::<Header>()];
    let want = buf.len().min(size as usize);
    let got = read_at(fd, &mut buf[..want])
        .map_err(|e| Error::from_errno(name, "reading the header of", e))?;
    header::check(name, spec, &buf[..got], size).map_err(|e| {
        // Another layout: its recorded schema says what differs.
        header::explain_mismatch(e, spec, &buf[..got], size, |offset, len| {
            let mut schema = vec![0u8; len];
            let mut done = 0;
            while done < len {
                let at = i64::try_from(offset + done).ok()?;
                match pread(fd, &mut schema[done..], at) {
                    Ok(0) => return None,
                    Ok(n) => done += n,
                    Err(Errno::EINTR) => {}
                    Err(_) => return None,
                }
            }
            Some(schema)
        })
    })
}

/// Reads up to `buf.len()` bytes from offset 0; returns how many were read.
fn read_at(fd: BorrowedFd<'_>, buf: &mut [u8]) -> nix::Result<usize> {
    let mut got = 0;
    while got < buf.len() {
        match pread(fd, &mut buf[got..], got as i64) {
            Ok(0) => break,
            Ok(n) => got += n,
            Err(Errno::EINTR) => {}
            Err(e) => return Err(e),
        }
    }
    Ok(got)
}

/// What a handle owns of its segment besides the memory: the name errors
/// give, how to remove the segment's name and whether to when the handle is
/// dropped, and whether it lends its descriptor for sharing (a memfd's).
#[derive(Debug)]
pub(crate) struct Handle {
    pub label: Label,
    pub remover: Remover,
    pub remove_on_drop: bool,
    /// Whether the mapping's descriptor is to be lent for sharing (a
    /// memfd: see `Mapping::descriptor`).
    pub shares_fd: bool,
    /// Whether the call that made this handle made its segment.
    pub created: bool,
    /// Whether that call migrated the segment from another type
    /// (`open_or_migrate`).
    pub migrated: bool,
    /// The mismatch that call replaced (`replace_on_mismatch`).
    pub replaced: Option<Box<Error>>,
}

impl Handle {
    /// A handle that removes nothing: a nameless segment's, or a store
    /// entry's.
    pub(crate) fn nameless(label: Label, shares_fd: bool) -> Handle {
        Handle {
            label,
            remover: Remover::None,
            remove_on_drop: false,
            shares_fd,
            created: false,
            migrated: false,
            replaced: None,
        }
    }
}

/// A handle's name in errors: given whole (a segment's, made when it is
/// opened), or, for a store entry's handle, `STORE/KEY` put together from
/// its parts the first time it is asked for, so that making an entry's
/// handle formats nothing.
#[derive(Debug)]
pub(crate) struct Label {
    whole: OnceLock<String>,
    /// For a store entry's handle: the store's name and the entry's key.
    entry: Option<(Arc<str>, String)>,
}

impl Label {
    /// The name `label`, as it is.
    pub(crate) fn whole(label: String) -> Label {
        Label {
            whole: OnceLock::from(label),
            entry: None,
        }
    }

    /// The name of the entry `key` of the store called `store`.
    pub(crate) fn entry(store: Arc<str>, key: String) -> Label {
        Label {
            whole: OnceLock::new(),
            entry: Some((store, key)),
        }
    }

    /// The name.
    pub(crate) fn as_str(&self) -> &str {
        self.whole.get_or_init(|| match &self.entry {
            Some((store, key)) => format!("{store}/{key}"),
            None => String::new(),
        })
    }

    /// For a store entry's handle: the store's name and the entry's key.
    pub(crate) fn entry_names(&self) -> Option<(String, String)> {
        self.entry
            .as_ref()
            .map(|(store, key)| (store.to_string(), key.clone()))
    }
}

impl std::ops::Deref for Label {
    type Target = str;

    fn deref(&self) -> &str {
        self.as_str()
    }
}

impl Drop for Handle {
    fn drop(&mut self) {
        if self.remove_on_drop {
            let _ = self.remover.remove();
        }
    }
}

/// How to remove the name of the segment a handle maps.
#[derive(Debug)]
pub(crate) enum Remover {
    Posix(Name),
    File(PathBuf),
    /// The segment's id: removal is by id, so a new segment that took the
    /// key meanwhile is not touched.
    SysV(i32),
    /// Nameless (memfd, anonymous): nothing to remove.
    None,
}

impl Remover {
    pub(crate) fn remove(&self) -> Result<()> {
        match self {
            Remover::Posix(name) => backend::posix::unlink(name),
            Remover::File(path) => backend::file::unlink(path),
            Remover::SysV(id) => backend::sysv::remove_id(*id),
            Remover::None => Ok(()),
        }
    }

    /// What the kernel says of the segment, for a System V one.
    pub(crate) fn sysv_info(&self) -> Option<Result<crate::SysvInfo>> {
        match self {
            Remover::SysV(id) => Some(backend::sysv::info(*id)),
            _ => None,
        }
    }
}

/// Removes the name `at`, whatever its segment holds: a POSIX name
/// (`shm_unlink`), a file (`unlink`) or a System V key (`IPC_RMID`).
///
/// Handles that are open keep working and keep the memory until they are
/// dropped; later opens get [`Error::NotFound`](crate::Error::NotFound), as
/// does removing a name that does not exist. A System V segment lives on
/// until the last process detaches. This is the one call for every kind of
/// segment: values, stores and segments of any type.
///
/// ```
/// # let name = format!("doc-unlink-{}", std::process::id());
/// let c = shmstore::Shared::create(&name, 7u64)?;
/// shmstore::unlink(&name)?;
/// assert_eq!(*c.lock().unwrap(), 7); // the handle still works
/// assert!(matches!(shmstore::unlink(&name), Err(shmstore::Error::NotFound { .. })));
/// # Ok::<(), shmstore::Error>(())
/// ```
pub fn unlink(at: impl IntoLocation) -> Result<()> {
    let loc = at.into_location()?;
    match &loc.0 {
        Place::Posix(name) => backend::posix::unlink(name),
        Place::File(path) => backend::file::unlink(path),
        Place::SysV(key) => backend::sysv::remove_key(*key),
    }
}
