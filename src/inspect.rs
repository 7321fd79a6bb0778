//! Looking at segments without knowing their types: what the `shmstore`
//! command shows.
//!
//! [`scan`] finds every object in /dev/shm and every System V segment and
//! reports on each; [`report`] reports on one: its owner and size, whether it is a shmstore
//! segment at all, its header, the state of its lock, its generation, and
//! its value decoded with the schema the creator stored in it (for a store,
//! every entry's). Nothing here writes to a segment or trusts what it reads:
//! segments are mapped read-only, every number is checked before use, and a
//! damaged header, directory or schema is reported as such.

use std::collections::HashMap;
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use crate::error::{ByteOrder, Error, Result};
use crate::lock::seqlock::{self, Versions};
use crate::lock::slot::RawSlot;
use crate::lock::RawLock;
use crate::poison::PoisonInfo;
use crate::schema::{Schema, Value};
use crate::segment::header::{
    self, Header, Mapped, Unusable, KIND_STORE, KIND_VALUE, LOCK_OFFSET, MAGIC, VERSIONS_OFFSET,
};
use crate::segment::location::{IntoLocation, Location, Place, SysvKey};
use crate::segment::publish;
use crate::sys::mapping::Mapping;
use crate::sys::sysv;
use nix::fcntl::{open, OFlag};
use nix::sys::stat::{fstat, Mode};

/// Where a segment lives.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Backend {
    /// A POSIX shared-memory object in /dev/shm.
    Posix,
    /// A System V segment.
    SysV,
    /// A regular file.
    File,
}

impl std::fmt::Display for Backend {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Backend::Posix => "posix",
            Backend::SysV => "sysv",
            Backend::File => "file",
        })
    }
}

/// What [`report`] and [`scan`] found about a segment.
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct Report {
    /// The POSIX name (without `/`), the System V key (`0x53484d01`, or
    /// `private:ID` for a private or removed segment) or the path.
    pub name: String,
    /// Where it is, for [`remove`] or for opening it.
    pub location: Location,
    /// Its backend.
    pub backend: Backend,
    /// Its size in bytes.
    pub size: u64,
    /// The owner's user id.
    pub owner_uid: u32,
    /// Its permission bits.
    pub mode: u32,
    /// The System V segment id.
    pub sysv_id: Option<i32>,
    /// How many attachments it has: the kernel's count for System V; for
    /// POSIX and files, the processes that map it according to
    /// `/proc/*/maps`. Processes whose maps this user may not read (other
    /// users', unless root) are not counted.
    pub attached: Option<u64>,
    /// The processes that show themselves in the segment, in any PID
    /// namespace (see [`Presence`]); `None` when that cannot be told (a
    /// System V segment whose stand-in is missing, or an object that is
    /// not a shmstore segment's).
    pub present: Option<Presence>,
    /// The file's modification time (System V: the last change of its
    /// attributes). Writes through mappings do not change it; see
    /// [`SlotInfo::changed`].
    pub modified: Option<SystemTime>,
    /// What is in it.
    pub state: State,
}

/// The processes that show themselves in a segment, as the kernel tells
/// every PID namespace that shares the segment: each process that maps a
/// segment holds a lock on its object that the kernel drops when the
/// process dies, whichever namespace it runs in (processes of another IPC
/// namespace, or that share a file from another host, are not seen).
///
/// `writers` (mapped for writing: only those can hold its locks) is exact;
/// `readers` (mapped read-only) is an upper bound, as any process that may
/// read the segment can add to it.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct Presence {
    /// Processes that map the segment for writing.
    pub writers: u64,
    /// Processes that map it read-only.
    pub readers: u64,
}

impl From<crate::sys::presence::Count> for Presence {
    fn from(c: crate::sys::presence::Count) -> Presence {
        Presence {
            writers: c.writers,
            readers: c.readers,
        }
    }
}

impl Presence {
    /// Whether no process shows itself in the segment.
    pub fn is_empty(&self) -> bool {
        self.writers == 0 && self.readers == 0
    }
}

/// `1 writer`, `2 writers, 1 reader`, `none`.
impl std::fmt::Display for Presence {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let part = |n: u64, what: &str| format!("{n} {what}{}", if n == 1 { "" } else { "s" });
        match (self.writers, self.readers) {
            (0, 0) => f.write_str("none"),
            (w, 0) => f.write_str(&part(w, "writer")),
            (0, r) => f.write_str(&part(r, "reader")),
            (w, r) => write!(f, "{}, {}", part(w, "writer"), part(r, "reader")),
        }
    }
}

/// Where a process is, seen from the PID namespace of the process that
/// inspects: a segment's creator or a lock's holder.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum PidNamespace {
    /// In this PID namespace: its pid is the one shown.
    This,
    /// In another PID namespace: its pid is the one that namespace gives
    /// it, which may name another process here (or none).
    Other,
    /// It cannot be told (a holder that is dead, or whose process may not
    /// be looked at; a creator recorded without its namespace).
    Unknown,
}

/// What a segment holds, as far as it can be told.
#[derive(Clone, Debug)]
#[non_exhaustive]
pub enum State {
    /// Not a shmstore segment (no magic): never decoded.
    Foreign {
        /// Why it is taken for foreign.
        reason: String,
    },
    /// It could not be read (permissions).
    Unreadable {
        /// Why.
        reason: String,
    },
    /// Our magic, but made by a build of the other byte order (a file on
    /// a disk that hosts of both byte orders share): its numbers would read
    /// as other numbers here, so nothing past the magic is decoded, and
    /// opening it gives [`Error::OtherByteOrder`].
    OtherByteOrder {
        /// The byte order of the build that made it.
        found: ByteOrder,
    },
    /// Our magic, but something in it is wrong.
    Damaged {
        /// What is wrong.
        reason: String,
        /// The header, if it could be parsed.
        header: Option<HeaderInfo>,
    },
    /// A new segment's temporary name (`.shmstore-new.…`): its creator is
    /// still making it, or died doing so. `shmstore ls` shows these only
    /// with `--all`; `shmstore gc` removes those whose creator is dead.
    Unfinished {
        /// The creating process.
        creator_pid: i32,
        /// Whether it still runs.
        creator_alive: bool,
    },
    /// Our magic, but never finished: a name only ever shows complete
    /// segments, so this one was made by an older build or left so by
    /// someone writing to it.
    Incomplete {
        /// The header, if it was written.
        header: Option<HeaderInfo>,
    },
    /// One value (a `Shared<T>`).
    Value {
        /// The header.
        header: HeaderInfo,
        /// Its lock and generation.
        slot: SlotInfo,
        /// The schema the creator stored (`Ok(None)`: none; `Err`: damaged).
        schema: std::result::Result<Option<Schema>, String>,
        /// The value decoded with the schema, when there is a sound one.
        value: Option<Value>,
    },
    /// A store of entries.
    Store {
        /// The header.
        header: HeaderInfo,
        /// The directory's lock, and its generation (entries created or
        /// removed).
        directory: SlotInfo,
        /// The bytes its entries can take now, and at most once it has
        /// grown as far as it may (see
        /// [`Store::max_capacity`](crate::Store::max_capacity)); `None`
        /// if its directory is damaged.
        capacity: Option<(u64, u64)>,
        /// The entries, or why they could not be read.
        entries: std::result::Result<Vec<EntryReport>, String>,
    },
}

/// What a segment's header says.
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct HeaderInfo {
    /// The type's name (`shmstore::Store` for a store).
    pub type_name: String,
    /// The type's layout fingerprint.
    pub fingerprint: u64,
    /// The format version.
    pub version: u32,
    /// The creating process.
    pub creator_pid: u32,
    /// The creator's user id.
    pub creator_uid: u32,
    /// Whether the creating process is still running (the same process:
    /// its start time is checked too). Always `false` for a creator in
    /// another PID namespace ([`creator_namespace`](Self::creator_namespace)),
    /// which cannot be checked from here.
    pub creator_alive: bool,
    /// The creator's PID namespace, as the header records it: this one (its
    /// pid is checked), another one (then `creator_pid` is the pid that
    /// namespace gave it, and only whether processes are still
    /// [present](Report::present) can tell whether the segment is in use),
    /// or unknown (not recorded: checked as in this one).
    pub creator_namespace: PidNamespace,
    /// When it was created.
    pub created: SystemTime,
    /// The value's size (for a store: its directory and heap).
    pub value_size: u64,
}

/// A lock and its generation.
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct SlotInfo {
    /// Who holds the lock.
    pub lock: LockState,
    /// Whether the lock is poisoned.
    pub poisoned: bool,
    /// What poisoned it, as the segment records it (`None` when it is not
    /// poisoned).
    pub poison: Option<PoisonInfo>,
    /// How many writes have been committed.
    pub generation: u64,
    /// When the last write was committed, if the segment records it
    /// ([`SharedOptions::record_change_time`](crate::SharedOptions::record_change_time)).
    pub changed: Option<SystemTime>,
}

/// Who holds a lock.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum LockState {
    /// Nobody.
    Free,
    /// Thread `tid`, alive or dead.
    #[non_exhaustive]
    Held {
        /// The holder's thread id, as its own PID namespace numbers it.
        tid: u32,
        /// Whether it is still running (told by the kernel in any PID
        /// namespace; when it cannot be told, it counts as running).
        alive: bool,
        /// Its process id, as its own PID namespace numbers it, when the
        /// lock records it (the last holder recorded is this thread; not
        /// while the lock is poisoned, when the record names the poisoner,
        /// unless that is the same thread).
        pid: Option<u32>,
        /// Whether the holder is a process of this PID namespace: only a
        /// running holder can be placed ([`PidNamespace::Unknown`] for a
        /// dead one).
        namespace: PidNamespace,
    },
}

/// One entry of a store.
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct EntryReport {
    /// Its key.
    pub key: String,
    /// Its type's name.
    pub type_name: String,
    /// The value's size.
    pub size: u64,
    /// The type's layout fingerprint.
    pub fingerprint: u64,
    /// Its lock and generation.
    pub slot: SlotInfo,
    /// Its schema (`Ok(None)`: none; `Err`: damaged).
    pub schema: std::result::Result<Option<Schema>, String>,
    /// The value decoded with the schema.
    pub value: Option<Value>,
}

impl Report {
    /// The header, if the segment is ours and it could be read.
    pub fn header(&self) -> Option<&HeaderInfo> {
        match &self.state {
            State::Value { header, .. } | State::Store { header, .. } => Some(header),
            State::Damaged { header, .. } | State::Incomplete { header } => header.as_ref(),
            State::Foreign { .. }
            | State::Unreadable { .. }
            | State::Unfinished { .. }
            | State::OtherByteOrder { .. } => None,
        }
    }

    /// The segment's own lock: the value's, or a store's directory lock.
    pub fn slot(&self) -> Option<&SlotInfo> {
        match &self.state {
            State::Value { slot, .. } => Some(slot),
            State::Store { directory, .. } => Some(directory),
            _ => None,
        }
    }

    /// Whether this is a shmstore segment (complete or not, sound or not).
    pub fn is_ours(&self) -> bool {
        !matches!(self.state, State::Foreign { .. } | State::Unreadable { .. })
    }
}

/// Every object in /dev/shm and every System V segment this process may
/// see, inspected; foreign ones included (as [`State::Foreign`]).
pub fn scan() -> Vec<Report> {
    let maps = Attachments::read();
    let mut out = Vec::new();
    if let Ok(dir) = std::fs::read_dir("/dev/shm") {
        // Every object, whatever its type: FIFOs, sockets, directories and
        // links are reported as foreign, temporary names as unfinished.
        // System V segments' stand-ins belong to their segments.
        let mut names: Vec<String> = dir
            .flatten()
            .filter_map(|e| e.file_name().into_string().ok())
            .filter(|n| !n.starts_with(crate::sys::sysv::STAND_IN_PREFIX))
            .collect();
        names.sort();
        for name in names {
            if let Ok(loc) = Location::posix(&name) {
                if let Ok(r) = inspect_with(&loc, &maps) {
                    out.push(r);
                }
            }
        }
    }
    for seg in sysv::list() {
        out.push(inspect_sysv(&seg));
    }
    out
}

/// Reports on the segment at `at` (a POSIX name, a [`SysvKey`] or a path),
/// as [`scan`] does on every segment.
///
/// ```no_run
/// use shmstore::inspect::{self, State};
///
/// let report = inspect::report("my-counter")?;
/// if let State::Value { value: Some(value), slot, .. } = &report.state {
///     println!("{value} (generation {})", slot.generation);
/// }
/// # Ok::<(), shmstore::Error>(())
/// ```
pub fn report(at: impl IntoLocation) -> Result<Report> {
    inspect_with(&at.into_location()?, &Attachments::read())
}

fn inspect_with(loc: &Location, maps: &Attachments) -> Result<Report> {
    match &loc.0 {
        Place::Posix(name) => {
            let path = PathBuf::from(format!("/dev/shm/{}", name.as_str()));
            inspect_file(
                loc.clone(),
                name.as_str().to_owned(),
                Backend::Posix,
                &path,
                maps,
            )
        }
        Place::File(path) => inspect_file(
            loc.clone(),
            path.display().to_string(),
            Backend::File,
            path,
            maps,
        ),
        Place::SysV(key) => {
            let label = key.to_string();
            let seg = sysv::list()
                .into_iter()
                .find(|s| s.key == key.key() && !key.is_private())
                .ok_or(Error::NotFound { name: label })?;
            Ok(inspect_sysv(&seg))
        }
    }
}

/// Removes the segment of a report: unlinks the name or file, or marks the
/// System V segment (by id) for removal.
pub fn remove(report: &Report) -> Result<()> {
    match (report.backend, report.sysv_id) {
        (Backend::SysV, Some(id)) => crate::segment::Remover::SysV(id).remove(),
        _ => crate::segment::unlink(&report.location),
    }
}

/// The stand-in of a System V segment that no longer exists (see
/// [`orphaned_stand_ins`]).
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct StandIn {
    /// Its path (`/dev/shm/.shmstore-sysv.IPCNS.ID`).
    pub path: PathBuf,
    /// The id of the segment it stood for.
    pub sysv_id: i32,
    /// Its owner's user id.
    pub owner_uid: u32,
}

/// The stand-ins left behind in /dev/shm by System V segments of this IPC
/// namespace that no longer exist: what `shmstore gc` removes besides
/// stale segments.
///
/// A System V segment has no file, so its users show themselves in an
/// empty file in /dev/shm that stands for it, named after the IPC
/// namespace and the segment's id; [`remove`] removes it with its segment,
/// but a segment removed by other means (`ipcrm`, or a process killed
/// between the two steps) leaves it behind. Stand-ins of other IPC
/// namespaces that share this /dev/shm are never listed: whether their
/// segments exist cannot be told from here.
pub fn orphaned_stand_ins() -> Vec<StandIn> {
    sysv::orphaned_stand_ins()
        .into_iter()
        .filter_map(|(path, id)| {
            let meta = std::fs::symlink_metadata(&path).ok()?;
            Some(StandIn {
                path,
                sysv_id: id,
                owner_uid: meta.uid(),
            })
        })
        .collect()
}

/// Removes an orphaned stand-in, if it still is one: its segment still
/// does not exist and no process shows itself in it (one that attached
/// the segment before it was removed keeps its presence there until it
/// detaches). Otherwise an [`Error::Io`] of kind
/// [`ResourceBusy`](std::io::ErrorKind::ResourceBusy) says why it stays.
pub fn remove_stand_in(stand_in: &StandIn) -> Result<()> {
    let name = stand_in.path.display().to_string();
    let busy = |reason: &str| Error::Io {
        op: "removing",
        name: name.clone(),
        source: std::io::Error::new(std::io::ErrorKind::ResourceBusy, reason.to_owned()),
    };
    let io = |e: std::io::Error| Error::Io {
        op: "removing",
        name: name.clone(),
        source: e,
    };
    let fd = open_path(&stand_in.path, false).map_err(|e| io(e.into()))?;
    let st = fstat(fd.as_fd()).map_err(|e| io(e.into()))?;
    if publish::kind_of(st.st_mode).is_some() {
        return Err(busy("not a regular file"));
    }
    match crate::sys::presence::count(fd.as_fd()) {
        Some(c) if c.writers == 0 && c.readers == 0 => {}
        Some(_) => return Err(busy("processes that attached its segment still use it")),
        None => return Err(busy("whether processes use it cannot be told")),
    }
    // Asked last, just before the unlink: a segment made with this id
    // since exists before its users open the stand-in.
    if sysv::exists(stand_in.sysv_id) {
        return Err(busy("its System V segment exists"));
    }
    // The same file as the one looked at (not one made since).
    let now = std::fs::symlink_metadata(&stand_in.path).map_err(io)?;
    if (now.dev(), now.ino()) != (st.st_dev, st.st_ino) {
        return Err(busy("it was replaced meanwhile"));
    }
    std::fs::remove_file(&stand_in.path).map_err(io)
}

/// Whether the segment of `report` is stale, that is whether `shmstore gc`
/// may remove it (and `shmstore rm` remove it without `--force`), and why:
/// it is ours (a shmstore segment of this user), not damaged, and not
/// live.
///
/// *Live*, the one definition `gc` and `rm` share: a process shows itself
/// in the segment ([`Report::present`], in any PID namespace) or maps it
/// here (or whether one does is unknown), its creator still runs (also
/// when it no longer maps it), or a running thread holds its lock (for a
/// store, its directory's or an entry's). A creator in another PID
/// namespace cannot be checked from here: its segment is live while any
/// process is present in it, and while that cannot be told
/// ([`Staleness::CreatorElsewhere`]); once the kernel tells that every
/// process that mapped it is gone, it is stale like any other. A damaged
/// segment (our magic, a wrong header or cut short) is never stale: what
/// it holds may still be read. A new segment's temporary name ([`State::Unfinished`]) is stale
/// once its creator is dead.
///
/// ```no_run
/// use shmstore::inspect;
///
/// for report in inspect::scan() {
///     let staleness = inspect::staleness(&report);
///     if staleness.is_stale() {
///         println!("removing {}: {staleness}", report.name);
///         inspect::remove(&report)?;
///     }
/// }
/// # Ok::<(), shmstore::Error>(())
/// ```
pub fn staleness(report: &Report) -> Staleness {
    let header = match &report.state {
        State::Foreign { .. } => return Staleness::Foreign,
        State::Unreadable { reason } => {
            return Staleness::Unreadable {
                reason: reason.clone(),
            }
        }
        State::Damaged { reason, .. } => {
            return Staleness::Damaged {
                reason: reason.clone(),
            }
        }
        State::OtherByteOrder { found } => return Staleness::OtherByteOrder { found: *found },
        _ => report.header(),
    };
    let me = nix::unistd::geteuid().as_raw();
    if report.owner_uid != me {
        return Staleness::OtherOwner {
            uid: report.owner_uid,
        };
    }
    if let State::Unfinished {
        creator_pid,
        creator_alive,
    } = report.state
    {
        // Mapped by its creator only, while it runs.
        return match creator_alive {
            true => Staleness::CreatorRunning {
                pid: creator_pid as u32,
            },
            false => Staleness::Stale {
                creator_pid: Some(creator_pid as u32),
                creator_elsewhere: false,
                lock: None,
            },
        };
    }
    match header {
        Some(h) if h.creator_alive => return Staleness::CreatorRunning { pid: h.creator_pid },
        Some(_) => {}
        None if matches!(report.state, State::Incomplete { .. }) => {}
        None => return Staleness::NoHeader,
    }
    if let Some(p) = report.present.filter(|p| !p.is_empty()) {
        return Staleness::Present {
            writers: p.writers,
            readers: p.readers,
        };
    }
    let elsewhere = header.is_some_and(|h| h.creator_namespace == PidNamespace::Other);
    if elsewhere && report.present.is_none() {
        return Staleness::CreatorElsewhere {
            pid: header.map_or(0, |h| h.creator_pid),
        };
    }
    match report.attached {
        Some(0) => {}
        Some(count) => return Staleness::Attached { count },
        None => return Staleness::AttachedUnknown,
    }
    let live = |s: &SlotInfo| match s.lock {
        LockState::Held {
            tid, alive: true, ..
        } => Some(tid),
        _ => None,
    };
    if let Some(tid) = report.slot().and_then(live) {
        return Staleness::LockHeld { tid };
    }
    if let State::Store {
        entries: Ok(entries),
        ..
    } = &report.state
    {
        if let Some((e, tid)) = entries.iter().find_map(|e| Some((e, live(&e.slot)?))) {
            return Staleness::EntryLockHeld {
                key: e.key.clone(),
                tid,
            };
        }
    }
    Staleness::Stale {
        creator_pid: header.map(|h| h.creator_pid),
        creator_elsewhere: elsewhere,
        lock: report.slot().map(|s| s.lock),
    }
}

/// What [`staleness`] found: [`Stale`](Staleness::Stale), with what makes
/// the segment so, or the reason it is not. `Display` says it in words, as
/// `shmstore ls` and `gc` show it.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Staleness {
    /// Stale: ours, its creator dead, nobody has it mapped, and no lock held
    /// by a running thread.
    Stale {
        /// The creator, which is dead; `None` for a segment left incomplete
        /// before its creator was recorded.
        creator_pid: Option<u32>,
        /// Whether the creator ran in another PID namespace: then it is
        /// not known to be dead, only to have left the segment with every
        /// other process (none is [present](Report::present)).
        creator_elsewhere: bool,
        /// The segment's own lock (a store's directory lock): free, or held
        /// by a thread that is dead; `None` if it could not be read.
        lock: Option<LockState>,
    },
    /// Not a shmstore segment: never stale.
    Foreign,
    /// The segment could not be read.
    Unreadable {
        /// Why.
        reason: String,
    },
    /// Our magic, but a header that is wrong or a segment cut short: never
    /// stale, so that nobody loses what may be read from it
    /// (`shmstore rm --force` removes it).
    Damaged {
        /// What is wrong.
        reason: String,
    },
    /// Made by a build of the other byte order: never stale, as whether
    /// its creator runs or a lock is held cannot be read from here (another
    /// host's file, most likely; `shmstore rm --force` removes it).
    OtherByteOrder {
        /// The byte order of the build that made it.
        found: ByteOrder,
    },
    /// Another user owns the segment.
    OtherOwner {
        /// The owner's user id.
        uid: u32,
    },
    /// The creating process is still running.
    CreatorRunning {
        /// Its process id.
        pid: u32,
    },
    /// The header cannot be read, so whether its creator runs is unknown.
    NoHeader,
    /// Processes have the segment mapped.
    Attached {
        /// How many.
        count: u64,
    },
    /// Whether any process has the segment mapped is unknown.
    AttachedUnknown,
    /// Processes show themselves in the segment (in this PID namespace or
    /// another).
    Present {
        /// How many map it for writing.
        writers: u64,
        /// How many map it read-only (at most).
        readers: u64,
    },
    /// Its creator ran in another PID namespace, where whether it still
    /// runs cannot be checked, and whether any process is present in the
    /// segment cannot be told either.
    CreatorElsewhere {
        /// Its process id in that namespace.
        pid: u32,
    },
    /// A running thread holds the segment's lock.
    LockHeld {
        /// The holder's thread id.
        tid: u32,
    },
    /// A running thread holds the lock of an entry of the store.
    EntryLockHeld {
        /// The entry's key.
        key: String,
        /// The holder's thread id.
        tid: u32,
    },
}

impl Staleness {
    /// Whether the segment is stale: `shmstore gc` would remove it.
    pub fn is_stale(&self) -> bool {
        matches!(self, Staleness::Stale { .. })
    }
}

/// For a stale segment what makes it so (`creator pid 4242 dead, not mapped
/// by any process, lock free`); otherwise why it is not (`3 attached`).
impl std::fmt::Display for Staleness {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Staleness::Stale {
                creator_pid,
                creator_elsewhere,
                lock,
            } => {
                match (creator_pid, creator_elsewhere) {
                    (Some(pid), true) => write!(
                        f,
                        "creator pid {pid} in another PID namespace, no process present"
                    )?,
                    (Some(pid), false) => write!(f, "creator pid {pid} dead")?,
                    (None, _) => f.write_str("incomplete, no creator recorded")?,
                }
                f.write_str(", not mapped by any process")?;
                match lock {
                    Some(LockState::Held { tid, .. }) => write!(f, ", lock holder {tid} dead"),
                    Some(_) => f.write_str(", lock free"),
                    None => Ok(()),
                }
            }
            Staleness::Foreign => f.write_str("not a shmstore segment"),
            Staleness::Unreadable { reason } => write!(f, "unreadable: {reason}"),
            Staleness::Damaged { reason } => write!(f, "damaged ({reason})"),
            Staleness::OtherByteOrder { found } => write!(
                f,
                "made by a {found} build, and this build is {}",
                ByteOrder::NATIVE
            ),
            Staleness::OtherOwner { uid } => write!(f, "owned by uid {uid}"),
            Staleness::CreatorRunning { pid } => {
                write!(f, "its creator, pid {pid}, is running")
            }
            Staleness::NoHeader => f.write_str("its header cannot be read"),
            Staleness::Attached { count } => write!(f, "{count} attached"),
            Staleness::AttachedUnknown => f.write_str("whether anyone has it mapped is unknown"),
            Staleness::Present { writers, readers } => write!(
                f,
                "{} present",
                Presence {
                    writers: *writers,
                    readers: *readers
                }
            ),
            Staleness::CreatorElsewhere { pid } => write!(
                f,
                "its creator, pid {pid}, is in another PID namespace, and whether any \
                 process is present cannot be told"
            ),
            Staleness::LockHeld { .. } => f.write_str("its lock is held by a running thread"),
            Staleness::EntryLockHeld { key, .. } => {
                write!(f, "the lock of entry `{key}` is held by a running thread")
            }
        }
    }
}

/// Sleeps until the value of the segment at `at` (or, with `entry`, of that
/// entry of the store at `at`; for a store without `entry`, its list of
/// entries) changes from generation `seen`; returns the new generation, or
/// `None` after `timeout`.
///
/// Sleeps on the segment's change notification when it can: with write
/// permission (it marks the lock word as watched, as a writable handle
/// does) or when the segment wakes read-only watchers. Otherwise it looks
/// every 100 ms.
pub fn wait_for_change(
    at: impl IntoLocation,
    entry: Option<&str>,
    seen: u64,
    timeout: Duration,
) -> Result<Option<u64>> {
    let loc = at.into_location()?;
    if let Some(key) = entry {
        // Through a store handle: it holds the entry, so its memory cannot
        // be freed and reused while we sleep on it.
        if let Ok(store) = crate::Store::open(&loc) {
            let held = store.raw_entry(key)?;
            return Ok(held.slot.wait_for_change(seen, timeout));
        }
        // Read-only: look every 100 ms.
        return seqlock::poll(seen, timeout, Duration::from_millis(100), || {
            let r = report(&loc)?;
            match r.state {
                State::Store {
                    entries: Ok(entries),
                    ..
                } => entries
                    .iter()
                    .find(|e| e.key == key)
                    .map(|e| e.slot.generation)
                    .ok_or_else(|| Error::NotFound {
                        name: format!("{}/{key}", r.name),
                    }),
                _ => Err(Error::NotFound {
                    name: format!("{}/{key}", r.name),
                }),
            }
        });
    }
    let slot = segment_lock(&loc.label(), map_any(&loc)?)?;
    Ok(slot.wait_for_change(seen, timeout))
}

/// The segment's own lock and versions in `map` (of the segment `label`),
/// as a slot without value bytes: the lock of a value, or a store's
/// directory lock. A segment whose header is not ours and ready is refused.
fn segment_lock(label: &str, map: Mapping) -> Result<RawSlot> {
    let mapped = header::read_mapped(&map).map_err(|u| u.into_error(label))?;
    if mapped.layout.is_none() || !matches!(mapped.header.kind, KIND_VALUE | KIND_STORE) {
        return Err(Error::Incomplete {
            name: label.to_owned(),
        });
    }
    Ok(RawSlot::new(
        Box::new(map),
        LOCK_OFFSET,
        VERSIONS_OFFSET,
        VERSIONS_OFFSET,
        0,
    ))
}

// ---------------------------------------------------------------------------
// Reading

/// Maps the segment at `loc`, read-write if permitted, else read-only
/// ([`Mapping::is_writable`] says which).
pub(crate) fn map_any(loc: &Location) -> Result<Mapping> {
    let label = loc.label();
    match &loc.0 {
        Place::SysV(key) => {
            let id = crate::sys::sysv::get(key.key(), 0, 0)
                .map_err(|e| Error::from_errno(&label, "opening", e))?;
            match crate::sys::sysv::attach(id, true) {
                Ok((map, _)) => Ok(map),
                Err(_) => crate::sys::sysv::attach(id, false)
                    .map(|(map, _)| map)
                    .map_err(|e| Error::from_errno(&label, "attaching", e)),
            }
        }
        Place::Posix(name) => {
            let path = PathBuf::from(format!("/dev/shm/{}", name.as_str()));
            map_path(&label, &path)
        }
        Place::File(path) => map_path(&label, path),
    }
}

fn open_path(path: &Path, writable: bool) -> nix::Result<OwnedFd> {
    let access = if writable {
        OFlag::O_RDWR
    } else {
        OFlag::O_RDONLY
    };
    // Never blocks (a FIFO), never follows a link, never takes a terminal.
    open(
        path,
        access | OFlag::O_NOFOLLOW | OFlag::O_NONBLOCK | OFlag::O_NOCTTY | OFlag::O_CLOEXEC,
        Mode::empty(),
    )
}

fn map_path(label: &str, path: &Path) -> Result<Mapping> {
    let not_ours = |kind: &str| Error::Corrupt {
        name: label.to_owned(),
        reason: format!("{kind}, not a shmstore segment"),
    };
    if let Some(kind) = publish::foreign_kind(path) {
        return Err(not_ours(kind));
    }
    let (fd, writable) = match open_path(path, true) {
        Ok(fd) => (fd, true),
        Err(_) => (
            open_path(path, false).map_err(|e| Error::from_errno(label, "opening", e))?,
            false,
        ),
    };
    let st = fstat(fd.as_fd()).map_err(|e| Error::from_errno(label, "inspecting", e))?;
    if let Some(kind) = publish::kind_of(st.st_mode) {
        return Err(not_ours(kind));
    }
    let size = st.st_size as usize;
    if size < std::mem::size_of::<Header>() {
        return Err(Error::Corrupt {
            name: label.to_owned(),
            reason: format!("{size} bytes: too short for a shmstore header"),
        });
    }
    let map = Mapping::map(fd.as_fd(), size, writable).map_err(|e| Error::Io {
        op: "mapping",
        name: label.to_owned(),
        source: e,
    })?;
    Ok(map)
}

fn inspect_file(
    location: Location,
    name: String,
    backend: Backend,
    path: &Path,
    maps: &Attachments,
) -> Result<Report> {
    let meta = std::fs::symlink_metadata(path).map_err(|e| match e.kind() {
        std::io::ErrorKind::NotFound => Error::NotFound { name: name.clone() },
        _ => Error::Io {
            op: "inspecting",
            name: name.clone(),
            source: e,
        },
    })?;
    let mut report = Report {
        name,
        location,
        backend,
        size: meta.size(),
        owner_uid: meta.uid(),
        mode: meta.mode() & 0o777,
        sysv_id: None,
        attached: maps.count(path),
        present: None,
        modified: meta.modified().ok(),
        state: State::Foreign {
            reason: String::new(),
        },
    };
    if let Some(kind) = publish::foreign_kind(path) {
        report.state = State::Foreign {
            reason: kind.to_owned(),
        };
        return Ok(report);
    }
    let file_name = path.file_name().and_then(|n| n.to_str()).unwrap_or("");
    if let Some(pid) = publish::temp_creator(file_name) {
        report.state = State::Unfinished {
            creator_pid: pid,
            creator_alive: publish::temp_creator_alive(path, pid),
        };
        return Ok(report);
    }
    let fd = match open_path(path, false) {
        Ok(fd) => fd,
        Err(e) => {
            report.state = State::Unreadable {
                reason: e.desc().to_owned(),
            };
            return Ok(report);
        }
    };
    // Swapped for something else since we looked: never read it.
    if let Some(kind) = fstat(fd.as_fd())
        .ok()
        .and_then(|st| publish::kind_of(st.st_mode))
    {
        report.state = State::Foreign {
            reason: kind.to_owned(),
        };
        return Ok(report);
    }
    // Counted before this process maps it (which shows this process as a
    // reader too).
    report.present = crate::sys::presence::count(fd.as_fd()).map(Presence::from);
    // The size of what we map is what fstat says now.
    let size = fstat(fd.as_fd()).map_or(0, |st| st.st_size as usize);
    report.size = size as u64;
    report.state = if size < MAGIC.len() {
        State::Foreign {
            reason: format!("{size} bytes: too short to be a shmstore segment"),
        }
    } else {
        match Mapping::map(fd.as_fd(), size, false) {
            // A segment shrunk while we read it gave zeros for its missing
            // part (see `sys::sigbus`): nothing read from it can be shown.
            Ok(map) => match read_state(&map) {
                _ if map.is_cut() => State::Unreadable {
                    reason: format!("it was shrunk below {size} bytes while being read"),
                },
                state => state,
            },
            Err(e) => State::Unreadable {
                reason: e.to_string(),
            },
        }
    };
    if matches!(report.state, State::Foreign { .. }) {
        // Nothing of ours shows itself in another program's object.
        report.present = None;
    }
    name_poison(&mut report);
    Ok(report)
}

fn inspect_sysv(seg: &sysv::Listed) -> Report {
    let key = SysvKey::new(seg.key);
    let name = if key.is_private() {
        format!("private:{}", seg.id)
    } else {
        format!("{:#010x}", seg.key as u32)
    };
    // Counted before this process attaches it (which shows this process
    // as a reader too).
    let present = sysv::open_stand_in(seg.id)
        .and_then(|fd| crate::sys::presence::count(fd.as_fd()))
        .map(Presence::from);
    let state = match crate::sys::sysv::attach(seg.id, false) {
        Ok((map, _)) if map.len() >= MAGIC.len() => read_state(&map),
        Ok(_) => State::Foreign {
            reason: "too short to be a shmstore segment".into(),
        },
        Err(e) => State::Unreadable {
            reason: e.desc().to_owned(),
        },
    };
    let present = present.filter(|_| !matches!(state, State::Foreign { .. }));
    let mut report = Report {
        name,
        location: Location::sysv(key),
        backend: Backend::SysV,
        size: seg.size,
        owner_uid: seg.uid,
        mode: seg.mode & 0o777,
        sysv_id: Some(seg.id),
        attached: Some(seg.nattch),
        present,
        modified: Some(UNIX_EPOCH + Duration::from_secs(seg.ctime)),
        state,
    };
    name_poison(&mut report);
    report
}

/// Puts the segment's name (and entries' keys) into the poison records of
/// `report`, which `slot_info` read without them.
fn name_poison(report: &mut Report) {
    let name = report.name.clone();
    let named = |slot: &mut SlotInfo, segment: String, entry: Option<(String, String)>| {
        slot.poison = slot.poison.take().map(|p| p.named(segment, entry));
    };
    match &mut report.state {
        State::Value { slot, .. } => named(slot, name, None),
        State::Store {
            directory, entries, ..
        } => {
            named(directory, name.clone(), None);
            for e in entries.iter_mut().flatten() {
                let entry = Some((name.clone(), e.key.clone()));
                named(&mut e.slot, format!("{name}/{}", e.key), entry);
            }
        }
        _ => {}
    }
}

/// Clears the poison of the value at `at` (or, with `entry`, of that entry
/// of the store at `at`; for a store without `entry`, of its directory's
/// lock), as `shmstore unpoison` does; returns what it cleared (`None`: it
/// was not poisoned).
///
/// It opens the segment for writing
/// ([`Error::PermissionDenied`] without write permission) and takes the
/// lock, waiting for a live holder; a dead holder's lock is taken over,
/// which commits the write it left unfinished. Then it clears the poison
/// and releases the lock. A store entry is found by its key
/// ([`Error::NotFound`] otherwise).
///
/// ```no_run
/// if let Some(cleared) = shmstore::inspect::unpoison("jobs", None)? {
///     println!("cleared: {cleared}");
/// }
/// # Ok::<(), shmstore::Error>(())
/// ```
pub fn unpoison(at: impl IntoLocation, entry: Option<&str>) -> Result<Option<PoisonInfo>> {
    let loc = at.into_location()?;
    let label = loc.label();
    let (slot, segment, entry) = match entry {
        Some(key) => {
            let store = crate::Store::open(&loc)?;
            let held = store.raw_entry(key)?;
            (held.slot, held.label, Some((label, key.to_owned())))
        }
        None => {
            let map = map_any(&loc)?;
            if !map.is_writable() {
                return Err(Error::PermissionDenied { name: label });
            }
            (segment_lock(&label, map)?, label, None)
        }
    };
    let me = slot.raw().acquire();
    // Dropped at the end: commits a write a dead holder left unfinished.
    let _held = slot.held(me);
    let cleared = slot.raw().raw_poison();
    slot.raw().clear_poison();
    Ok(cleared.map(|raw| PoisonInfo::from_raw(segment, entry, raw)))
}

fn header_info(h: &Header) -> HeaderInfo {
    HeaderInfo {
        type_name: h.type_name(),
        fingerprint: h.fingerprint,
        version: h.version,
        creator_pid: h.creator_pid,
        creator_uid: h.creator_uid,
        creator_alive: creator_namespace(h) != PidNamespace::Other && creator_alive(h),
        creator_namespace: creator_namespace(h),
        created: UNIX_EPOCH + Duration::from_nanos(h.created_unix_ns),
        value_size: h.value_size,
    }
}

/// The creator's PID namespace, seen from this one.
fn creator_namespace(h: &Header) -> PidNamespace {
    let ours = crate::segment::header::pid_namespace();
    match (h.pid_ns, ours) {
        (0, _) | (_, 0) => PidNamespace::Unknown,
        (theirs, ours) if theirs == ours => PidNamespace::This,
        _ => PidNamespace::Other,
    }
}

/// Whether the creator runs, checked in this namespace (a creator of
/// another one is left to the caller: see `creator_namespace`).
fn creator_alive(h: &Header) -> bool {
    h.creator_pid != 0
        && h.creator_pid < crate::lock::owner::TID_LIMIT
        && crate::lock::owner::is_alive(h.creator_pid, h.creator_start as u32)
}

/// What the mapped bytes of a segment say.
pub(crate) fn read_state(map: &Mapping) -> State {
    let Mapped { header: h, layout } = match header::read_mapped(map) {
        Ok(mapped) => mapped,
        Err(Unusable::Foreign(reason)) => return State::Foreign { reason },
        Err(Unusable::Damaged { reason, header }) => {
            return State::Damaged {
                reason,
                header: header.map(|h| header_info(&h)),
            };
        }
        Err(Unusable::OtherByteOrder(found)) => return State::OtherByteOrder { found },
    };
    let Some(layout) = layout else {
        return State::Incomplete {
            header: Some(header_info(&h)),
        };
    };
    let size = h.value_size as usize;
    let schema_len = h.schema_len as usize;
    let damaged = |reason: String| State::Damaged {
        reason,
        header: Some(header_info(&h)),
    };
    let header = header_info(&h);
    let directory = slot_info(map.raw_lock(LOCK_OFFSET), map.versions(VERSIONS_OFFSET));
    match h.kind {
        KIND_VALUE => {
            let schema = read_schema(map, layout.schema_offset, schema_len, size);
            let value = match &schema {
                Ok(Some(s)) => Some(s.value(&consistent_copy(
                    map,
                    map.versions(VERSIONS_OFFSET),
                    layout.value_offset,
                    size,
                ))),
                _ => None,
            };
            State::Value {
                header,
                slot: directory,
                schema,
                value,
            }
        }
        // A store grows past the size its header was made with: its heap
        // is what its meta says, inside the object as it is now.
        KIND_STORE => State::Store {
            entries: entry_reports(map, layout.value_offset, map.len() - layout.value_offset),
            capacity: crate::store::capacity_of(map, layout.value_offset, map.len() - layout.value_offset),
            header,
            directory,
        },
        other => damaged(format!("unknown kind {other}")),
    }
}

/// The reports of the entries of the store whose content is at `content`
/// (`size` bytes) of a read-only mapping, read without the directory lock.
fn entry_reports(
    map: &Mapping,
    content: usize,
    size: usize,
) -> std::result::Result<Vec<EntryReport>, String> {
    let entries = crate::store::list_entries(map, content, size)?;
    Ok(entries
        .into_iter()
        .map(|e| {
            let slot = e.at + e.layout.slot;
            let versions = map.versions(slot + crate::lock::LOCK_SIZE);
            let schema = read_schema(
                map,
                e.at + e.layout.schema,
                e.layout.schema_len,
                e.value_size,
            );
            let value = match &schema {
                Ok(Some(s)) => Some(s.value(&consistent_copy(
                    map,
                    versions,
                    e.at + e.layout.value,
                    e.value_size,
                ))),
                _ => None,
            };
            EntryReport {
                key: String::from_utf8_lossy(&e.key).into_owned(),
                type_name: e.type_name,
                size: e.value_size as u64,
                fingerprint: e.fingerprint,
                slot: slot_info(map.raw_lock(slot), versions),
                schema,
                value,
            }
        })
        .collect())
}

/// The lock and generation of a slot.
pub(crate) fn slot_info(lock: &RawLock, versions: &Versions) -> SlotInfo {
    SlotInfo {
        lock: lock_state(lock),
        poisoned: lock.is_poisoned(),
        // Named by `name_poison` once the segment's name is known.
        poison: lock
            .raw_poison()
            .map(|raw| PoisonInfo::from_raw(String::new(), None, raw)),
        generation: versions.generation(),
        changed: versions
            .changed()
            .map(|s| UNIX_EPOCH + Duration::from_secs(u64::from(s))),
    }
}

/// Who holds `lock`, and where (see [`LockState::Held`]).
fn lock_state(lock: &RawLock) -> LockState {
    use crate::lock::owner;
    use crate::sys::presence::{self, Presence};
    let (word, record) = lock.holder_words();
    let Some((tid, alive)) = lock.holder() else {
        return LockState::Free;
    };
    // The record names the holder if its thread id is the word's (the same
    // word: the holder may have changed between the two looks).
    let pid = (owner::tid_of(word) == tid && record as u32 == tid && record >> 32 != 0)
        .then_some((record >> 32) as u32);
    let x = owner::incarnation_of(word);
    let addr = lock as *const RawLock as usize;
    let namespace = if !alive || owner::tid_of(word) != tid {
        PidNamespace::Unknown
    } else if presence::incarnation().is_ok_and(|mine| mine == x) {
        // This process's own thread.
        PidNamespace::This
    } else if presence::presence(addr, x) != Presence::Present {
        PidNamespace::Unknown
    } else {
        // Alive, shown in the segment: a thread of this namespace if the
        // process this namespace numbers as the thread's own holds the
        // incarnation's presence lock; else one of another namespace
        // (its thread id names no thread here, or another process's).
        match crate::sys::thread::thread_group(tid) {
            None => PidNamespace::Other,
            Some(tgid) if pid.is_some_and(|p| p != tgid) => PidNamespace::Other,
            Some(tgid) => match presence::shown_by(addr, tgid, x) {
                Some(true) => PidNamespace::This,
                Some(false) => PidNamespace::Other,
                None => PidNamespace::Unknown,
            },
        }
    };
    LockState::Held {
        tid,
        alive,
        pid,
        namespace,
    }
}

/// The schema stored at `offset` (`len` bytes), checked against the value's
/// `size`.
pub(crate) fn read_schema(
    map: &Mapping,
    offset: usize,
    len: usize,
    size: usize,
) -> std::result::Result<Option<Schema>, String> {
    if len == 0 {
        return Ok(None);
    }
    if offset.checked_add(len).is_none_or(|end| end > map.len()) {
        return Err("the schema runs past the end of the segment".into());
    }
    let mut bytes = vec![0u8; len];
    map.copy_out(offset, &mut bytes);
    let schema = Schema::decode(&bytes).map_err(|e| format!("damaged schema: {e}"))?;
    if schema.size != size as u64 {
        return Err(format!(
            "the schema describes {} bytes, the value is {size}",
            schema.size
        ));
    }
    Ok(Some(schema))
}

/// A copy of `size` bytes at `offset` that no committed write overlapped,
/// if one can be had in a few tries (else the last copy).
pub(crate) fn consistent_copy(
    map: &Mapping,
    versions: &Versions,
    offset: usize,
    size: usize,
) -> Vec<u8> {
    let mut out = vec![0u8; size];
    for _ in 0..100 {
        if versions
            .copy_quiet(|| map.copy_out(offset, &mut out))
            .is_some()
        {
            return out;
        }
        std::thread::yield_now();
    }
    map.copy_out(offset, &mut out);
    out
}

/// Which files processes map, from the /proc/*/maps this user may read.
struct Attachments {
    counts: HashMap<PathBuf, u64>,
}

impl Attachments {
    fn read() -> Attachments {
        Attachments {
            counts: crate::sys::maps::mapped_files(),
        }
    }

    fn count(&self, path: &Path) -> Option<u64> {
        let path = std::fs::canonicalize(path).unwrap_or_else(|_| path.to_owned());
        Some(self.counts.get(&path).copied().unwrap_or(0))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::segment::header::FORMAT_VERSION;

    fn header(creator_alive: bool) -> HeaderInfo {
        HeaderInfo {
            type_name: "Counter".into(),
            fingerprint: 1,
            version: FORMAT_VERSION,
            creator_pid: 4242,
            creator_uid: 0,
            creator_alive,
            creator_namespace: PidNamespace::This,
            created: UNIX_EPOCH,
            value_size: 8,
        }
    }

    fn held(tid: u32, alive: bool) -> LockState {
        LockState::Held {
            tid,
            alive,
            pid: None,
            namespace: PidNamespace::Unknown,
        }
    }

    fn slot(lock: LockState) -> SlotInfo {
        SlotInfo {
            lock,
            poisoned: false,
            poison: None,
            generation: 0,
            changed: None,
        }
    }

    /// Ours, its creator dead, unmapped, its lock free: stale.
    fn stale_value() -> Report {
        Report {
            name: "x".into(),
            location: Location::posix("x").unwrap(),
            backend: Backend::Posix,
            size: 4096,
            owner_uid: nix::unistd::geteuid().as_raw(),
            mode: 0o600,
            sysv_id: None,
            attached: Some(0),
            present: Some(Presence::default()),
            modified: None,
            state: State::Value {
                header: header(false),
                slot: slot(LockState::Free),
                schema: Ok(None),
                value: None,
            },
        }
    }

    fn said(r: &Report) -> (bool, String) {
        let s = staleness(r);
        (s.is_stale(), s.to_string())
    }

    #[test]
    fn staleness_says_why_in_the_words_the_command_prints() {
        let r = stale_value();
        assert_eq!(
            staleness(&r),
            Staleness::Stale {
                creator_pid: Some(4242),
                creator_elsewhere: false,
                lock: Some(LockState::Free)
            }
        );
        let stale = |s: &str| (true, s.to_owned());
        assert_eq!(
            said(&r),
            stale("creator pid 4242 dead, not mapped by any process, lock free")
        );

        let mut dead_holder = stale_value();
        if let State::Value { slot: s, .. } = &mut dead_holder.state {
            *s = slot(held(7, false));
        }
        assert_eq!(
            said(&dead_holder),
            stale("creator pid 4242 dead, not mapped by any process, lock holder 7 dead")
        );

        // A creator in another PID namespace, with nobody present: stale,
        // said so.
        let mut elsewhere = stale_value();
        if let State::Value { header: h, .. } = &mut elsewhere.state {
            h.creator_namespace = PidNamespace::Other;
        }
        assert_eq!(
            said(&elsewhere),
            stale(
                "creator pid 4242 in another PID namespace, no process present, not mapped \
                 by any process, lock free"
            )
        );

        let incomplete = Report {
            state: State::Incomplete { header: None },
            ..stale_value()
        };
        assert_eq!(
            said(&incomplete),
            stale("incomplete, no creator recorded, not mapped by any process")
        );

        let cases: Vec<(Report, &str)> = vec![
            (
                Report {
                    state: State::Foreign {
                        reason: "no magic".into(),
                    },
                    ..stale_value()
                },
                "not a shmstore segment",
            ),
            (
                Report {
                    state: State::Unreadable {
                        reason: "permission denied".into(),
                    },
                    ..stale_value()
                },
                "unreadable: permission denied",
            ),
            (
                Report {
                    owner_uid: nix::unistd::geteuid().as_raw() + 1,
                    ..stale_value()
                },
                "owned by uid",
            ),
            (
                Report {
                    state: State::Incomplete {
                        header: Some(header(true)),
                    },
                    ..stale_value()
                },
                "its creator, pid 4242, is running",
            ),
            (
                Report {
                    state: State::Damaged {
                        reason: "bad".into(),
                        header: None,
                    },
                    ..stale_value()
                },
                "damaged (bad)",
            ),
            (
                // Damaged with a header whose creator is dead: still kept.
                Report {
                    state: State::Damaged {
                        reason: "truncated".into(),
                        header: Some(header(false)),
                    },
                    ..stale_value()
                },
                "damaged (truncated)",
            ),
            (
                Report {
                    state: State::OtherByteOrder {
                        found: ByteOrder::NATIVE.other(),
                    },
                    ..stale_value()
                },
                "made by a",
            ),
            (
                Report {
                    attached: Some(3),
                    ..stale_value()
                },
                "3 attached",
            ),
            (
                Report {
                    attached: None,
                    ..stale_value()
                },
                "whether anyone has it mapped is unknown",
            ),
            (
                // Present in another namespace, mapped by nobody here.
                Report {
                    present: Some(Presence {
                        writers: 1,
                        readers: 2,
                    }),
                    ..stale_value()
                },
                "1 writer, 2 readers present",
            ),
            (
                Report {
                    present: Some(Presence {
                        writers: 0,
                        readers: 1,
                    }),
                    ..stale_value()
                },
                "1 reader present",
            ),
            (
                Report {
                    present: None,
                    ..elsewhere.clone()
                },
                "its creator, pid 4242, is in another PID namespace, and whether any process \
                 is present cannot be told",
            ),
            (
                Report {
                    state: State::Value {
                        header: header(false),
                        slot: slot(held(7, true)),
                        schema: Ok(None),
                        value: None,
                    },
                    ..stale_value()
                },
                "its lock is held by a running thread",
            ),
            (
                Report {
                    state: State::Store {
                        header: header(false),
                        directory: slot(LockState::Free),
                        capacity: Some((4096, 4096)),
                        entries: Ok(vec![EntryReport {
                            key: "jobs".into(),
                            type_name: "Counter".into(),
                            size: 8,
                            fingerprint: 1,
                            slot: slot(held(9, true)),
                            schema: Ok(None),
                            value: None,
                        }]),
                    },
                    ..stale_value()
                },
                "the lock of entry `jobs` is held by a running thread",
            ),
        ];
        for (report, why) in cases {
            let (is_stale, text) = said(&report);
            assert!(!is_stale && text.starts_with(why), "{text:?}, not {why:?}");
        }
        assert_eq!(
            staleness(&Report {
                attached: Some(3),
                ..stale_value()
            }),
            Staleness::Attached { count: 3 }
        );
    }
}
