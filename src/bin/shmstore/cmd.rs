//! The commands.

use std::path::Path;
use std::time::{Duration, SystemTime};

use shmstore::inspect::{self, Report, Staleness, State};
use shmstore::{Error, Location, SysvKey};

use crate::out::{self, Align, Json, Table};
use crate::show;
use crate::Target;

/// A failure: one line, `<what happened>: <what to do>`, printed after
/// `shmstore: `.
pub struct CliError(pub String);

/// What a command returns.
pub type CliResult<T = ()> = Result<T, CliError>;

/// The library's error, with advice for someone at a shell rather than in
/// a program.
fn lib_error(e: Error) -> CliError {
    CliError(match e {
        Error::NotFound { name } => format!(
            "`{name}` does not exist: `shmstore ls` lists the segments \
             (`--all` includes other programs' ones)"
        ),
        Error::PermissionDenied { name } => format!(
            "permission denied for `{name}`: run as its owner or as root \
             (`shmstore ls --all` shows its owner)"
        ),
        Error::InvalidName { name, reason } => format!(
            "`{name}` is not a valid name in /dev/shm ({reason}): \
             use --file PATH for a file-backed segment, --key or --id for System V"
        ),
        Error::Io { op, name, source } => {
            format!("{op} `{name}` failed: {source}: check that it exists and that you may read it")
        }
        e => e.to_string(),
    })
}

/// Parses a System V key: `0x53484d01` (hexadecimal) or decimal, negative
/// included (keys are 32-bit).
pub fn parse_key(s: &str) -> Result<i32, String> {
    let t = s.trim();
    let parsed = if let Some(hex) = t.strip_prefix("0x").or_else(|| t.strip_prefix("0X")) {
        u32::from_str_radix(hex, 16).map(|k| k as i32).ok()
    } else {
        t.parse::<i32>()
            .ok()
            .or_else(|| t.parse::<u32>().ok().map(|k| k as i32))
    };
    match parsed {
        Some(0) => Err("key 0 is IPC_PRIVATE, which finds nothing: use --id ID".into()),
        Some(k) => Ok(k),
        None => Err(format!(
            "`{s}` is not a System V key: give it in hexadecimal (0x53484d01) or decimal"
        )),
    }
}

/// Where a target is.
pub enum Resolved {
    /// A name, key or path.
    At(Location),
    /// A System V segment by id.
    SysvId(i32),
}

impl Resolved {
    fn label(&self) -> String {
        match self {
            Resolved::At(l) => l.to_string(),
            Resolved::SysvId(id) => format!("System V id {id}"),
        }
    }
}

/// Turns the command line's target into a location. A NAME is a name in
/// /dev/shm; a name that is not there but reads as `shmstore ls` prints
/// System V segments (`0x53484d01`, `private:ID`) is that segment.
pub fn resolve(t: &Target) -> CliResult<Resolved> {
    if let Some(k) = t.key {
        return Ok(Resolved::At(Location::sysv(SysvKey::new(k))));
    }
    if let Some(id) = t.id {
        return Ok(Resolved::SysvId(id));
    }
    if let Some(p) = &t.file {
        return Ok(Resolved::At(Location::file(p.clone())));
    }
    let raw = t.name.as_deref().unwrap_or_default();
    let name = raw.strip_prefix("/dev/shm/").unwrap_or(raw);
    let bare = name.strip_prefix('/').unwrap_or(name);
    if !bare.is_empty() && !bare.contains('/') && !Path::new("/dev/shm").join(bare).exists() {
        if let Some(hex) = bare.strip_prefix("0x") {
            if let Ok(k) = u32::from_str_radix(hex, 16) {
                if k != 0 {
                    return Ok(Resolved::At(Location::sysv(SysvKey::new(k as i32))));
                }
            }
        }
        if let Some(id) = bare.strip_prefix("private:") {
            if let Ok(id) = id.parse() {
                return Ok(Resolved::SysvId(id));
            }
        }
    }
    if bare.contains('/') {
        return Err(CliError(format!(
            "`{raw}` is not a name in /dev/shm: use --file {raw} for a file-backed segment"
        )));
    }
    Location::posix(name).map(Resolved::At).map_err(lib_error)
}

/// The report on a target.
fn report_of(r: &Resolved) -> CliResult<Report> {
    match r {
        Resolved::At(loc) => inspect::report(loc).map_err(lib_error),
        Resolved::SysvId(id) => inspect::scan()
            .into_iter()
            .find(|rep| rep.sysv_id == Some(*id))
            .ok_or_else(|| {
                CliError(format!(
                    "there is no System V segment with id {id} that you may see: \
                     `ipcs -m` lists them"
                ))
            }),
    }
}

/// The segments to show, ordered: POSIX by name, then System V by key.
fn scan_sorted() -> Vec<Report> {
    let mut all = inspect::scan();
    all.sort_by(|a, b| {
        let rank = |r: &Report| (r.backend != inspect::Backend::Posix) as u8;
        (rank(a), &a.name).cmp(&(rank(b), &b.name))
    });
    all
}

// ---------------------------------------------------------------------------
// ls

/// `shmstore ls`.
pub fn ls(all: bool, json: bool) -> CliResult {
    let reports: Vec<Report> = scan_sorted()
        .into_iter()
        // New segments' temporary names only with --all.
        .filter(|r| all || (show::is_shmstore(r) && !matches!(r.state, State::Unfinished { .. })))
        .collect();
    let tty = out::stdout_is_terminal();
    if json {
        let items = reports
            .iter()
            .map(|r| show::report_json(r, false))
            .collect();
        out::print(&(Json::Arr(items).render(tty) + "\n"));
        return Ok(());
    }
    let mut table = Table::new(&[
        ("NAME", Align::Left),
        ("BACKEND", Align::Left),
        ("SIZE", Align::Right),
        ("TYPE", Align::Left),
        ("CREATOR", Align::Left),
        ("ATTACHED", Align::Right),
        ("PRESENT", Align::Left),
        ("LOCK", Align::Left),
        ("GEN", Align::Right),
        ("CHANGED", Align::Left),
    ]);
    for r in &reports {
        table.row(show::ls_row(r, tty));
    }
    out::print(&table.render(tty));
    Ok(())
}

// ---------------------------------------------------------------------------
// inspect

/// `shmstore inspect`.
pub fn inspect(t: &Target, json: bool) -> CliResult {
    let report = report_of(&resolve(t)?)?;
    if json {
        let j = show::report_json(&report, true);
        out::print(&(j.render(out::stdout_is_terminal()) + "\n"));
    } else {
        out::print(&show::inspect_text(&report));
    }
    Ok(())
}

// ---------------------------------------------------------------------------
// unpoison

/// `shmstore unpoison`.
pub fn unpoison(t: &Target, entry: Option<&str>, json: bool) -> CliResult {
    let loc = match resolve(t)? {
        Resolved::At(loc) => loc,
        Resolved::SysvId(id) => {
            return Err(CliError(format!(
                "unpoison needs a name, a key or a file, not a System V id ({id}):                  `ipcs -m` shows its key"
            )))
        }
    };
    let what = match entry {
        Some(key) => format!("entry `{key}` of `{loc}`"),
        None => format!("`{loc}`"),
    };
    let cleared = inspect::unpoison(&loc, entry).map_err(lib_error)?;
    if json {
        let j = Json::Obj(vec![
            ("name", Json::str(loc.to_string())),
            ("entry", Json::opt(entry, Json::str)),
            ("cleared", Json::opt(cleared.as_ref(), show::poison_json)),
        ]);
        out::print(&(j.render(out::stdout_is_terminal()) + "\n"));
    } else {
        match cleared {
            Some(info) => out::print(&format!("cleared the poison of {what}: {info}\n")),
            None => out::print(&format!("{what} was not poisoned: nothing to clear\n")),
        }
    }
    Ok(())
}

// ---------------------------------------------------------------------------
// watch

/// What `watch` has shown.
struct Seen {
    generation: u64,
    /// The segment's identity: a segment removed and created again under
    /// the same name is another segment.
    identity: Option<Identity>,
}

/// What tells one segment from another created later under the same name.
#[derive(PartialEq, Eq)]
enum Identity {
    /// Device and inode of the file in /dev/shm or of the file.
    Inode(u64, u64),
    /// A System V segment's id.
    SysvId(i32),
}

/// The identity of the segment `report` describes, as it is now;
/// `NotFound` if it is gone. Cheap: a `stat`, or one read of
/// /proc/sysvipc/shm.
fn identity(report: &Report) -> Result<Option<Identity>, Error> {
    use std::os::unix::fs::MetadataExt;
    let gone = || Error::NotFound {
        name: report.name.clone(),
    };
    if report.backend == inspect::Backend::SysV {
        let Some(key) = report
            .name
            .strip_prefix("0x")
            .and_then(|h| u32::from_str_radix(h, 16).ok())
        else {
            return Ok(None);
        };
        let Ok(text) = std::fs::read_to_string("/proc/sysvipc/shm") else {
            return Ok(None);
        };
        // `key shmid ...`, the key in decimal.
        return text
            .lines()
            .skip(1)
            .find_map(|line| {
                let mut f = line.split_whitespace().map(|f| f.parse::<i64>().ok());
                match (f.next().flatten(), f.next().flatten()) {
                    (Some(k), Some(id)) if k as i32 == key as i32 => Some(id as i32),
                    _ => None,
                }
            })
            .map(|id| Some(Identity::SysvId(id)))
            .ok_or_else(gone);
    }
    let path = match report.backend {
        inspect::Backend::Posix => Path::new("/dev/shm").join(&report.name),
        _ => std::path::PathBuf::from(&report.name),
    };
    match std::fs::symlink_metadata(&path) {
        Ok(m) => Ok(Some(Identity::Inode(m.dev(), m.ino()))),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Err(gone()),
        Err(_) => Ok(None),
    }
}

/// How long `watch` sleeps before it checks that the segment still exists.
const WATCH_RECHECK: Duration = Duration::from_secs(2);

/// `shmstore watch`.
pub fn watch(t: &Target, entry: Option<&str>, json: bool, count: Option<u64>) -> CliResult {
    let target = resolve(t)?;
    let report = report_of(&target)?;
    let loc = match target {
        Resolved::At(loc) => loc,
        // A segment with a key can be waited on by key.
        Resolved::SysvId(_) if !report.name.starts_with("private:") => report.location.clone(),
        Resolved::SysvId(id) => {
            return Err(CliError(format!(
                "System V segment {id} has no key, so it cannot be watched: \
                 `shmstore inspect --id {id}` shows it once"
            )))
        }
    };
    let name = report.name.clone();
    let mut seen = watch_print(&report, entry, json)?;
    seen.identity = identity(&report).map_err(|e| gone(e, &name, entry))?;
    let mut changes = 0u64;
    while count.is_none_or(|n| changes < n) {
        let woke = inspect::wait_for_change(&loc, entry, seen.generation, WATCH_RECHECK)
            .map_err(|e| gone(e, &name, entry))?;
        let id = identity(&report).map_err(|e| gone(e, &name, entry))?;
        let recreated = id.is_some() && id != seen.identity;
        if woke.is_none() && !recreated {
            continue;
        }
        let now = inspect::report(&loc).map_err(|e| gone(e, &name, entry))?;
        if recreated {
            if !json {
                out::print(&format!(
                    "{}  `{name}` was removed and created again\n",
                    out::local_time(SystemTime::now()),
                ));
            }
        } else if watch_generation(&now, entry)? == seen.generation {
            // Woken, but nothing committed since (or already shown).
            continue;
        }
        seen = watch_print(&now, entry, json)?;
        seen.identity = id;
        changes += 1;
    }
    Ok(())
}

/// The error when a watched segment or entry cannot be followed any more.
fn gone(e: Error, name: &str, entry: Option<&str>) -> CliError {
    match (e, entry) {
        (Error::NotFound { .. }, Some(key)) => CliError(format!(
            "entry `{key}` of store `{name}` was removed (or the store was): nothing more to watch"
        )),
        (Error::NotFound { .. }, None) => {
            CliError(format!("`{name}` was removed: nothing more to watch"))
        }
        (e, _) => lib_error(e),
    }
}

/// The generation `watch` follows in `r`.
fn watch_generation(r: &Report, entry: Option<&str>) -> CliResult<u64> {
    match (&r.state, entry) {
        (State::Value { slot, .. }, None) => Ok(slot.generation),
        (State::Store { directory, .. }, None) => Ok(directory.generation),
        (State::Store { entries, .. }, Some(key)) => {
            let entries = entries.as_ref().map_err(|e| {
                CliError(format!(
                    "the entries of store `{}` cannot be read ({e}): \
                     `shmstore inspect {}` says more",
                    r.name, r.name
                ))
            })?;
            entries
                .iter()
                .find(|e| e.key == key)
                .map(|e| e.slot.generation)
                .ok_or_else(|| {
                    CliError(format!(
                        "store `{}` has no entry `{key}`: `shmstore inspect {}` lists its entries",
                        r.name, r.name
                    ))
                })
        }
        (State::Value { .. }, Some(_)) => Err(CliError(format!(
            "`{}` holds one value, not a store: watch it without --entry",
            r.name
        ))),
        _ => Err(CliError(format!(
            "`{}` is {}: only complete shmstore segments can be watched \
             (`shmstore inspect {}` says more)",
            r.name,
            show::state_phrase(r),
            r.name
        ))),
    }
}

/// Prints the line for `r` and returns what was shown.
fn watch_print(r: &Report, entry: Option<&str>, json: bool) -> CliResult<Seen> {
    let generation = watch_generation(r, entry)?;
    let line = if json {
        show::watch_json(r, entry).render(false)
    } else {
        show::watch_line(r, entry)
    };
    out::print(&(line + "\n"));
    Ok(Seen {
        generation,
        identity: None,
    })
}

// ---------------------------------------------------------------------------
// rm

/// `shmstore rm`.
pub fn rm(t: &Target, force: bool) -> CliResult {
    let target = resolve(t)?;
    let report = match report_of(&target) {
        Ok(r) => r,
        // It cannot be inspected, but --force may still remove it by name.
        Err(e) if force => {
            return match &target {
                Resolved::At(loc) => shmstore::unlink(loc).map_err(|le| match le {
                    Error::NotFound { .. } => e,
                    le => lib_error(le),
                }),
                Resolved::SysvId(_) => Err(e),
            };
        }
        Err(e) => return Err(e),
    };
    if !force {
        if let Some(why) = rm_refusal(&report) {
            return Err(CliError(format!(
                "not removing `{}`: {why}; --force removes it anyway",
                report.name
            )));
        }
    }
    inspect::remove(&report).map_err(|e| match e {
        Error::NotFound { .. } => CliError(format!(
            "`{}` does not exist any more: someone removed it first",
            target.label()
        )),
        e => lib_error(e),
    })
}

/// Why `rm` without --force refuses `r`, if it does: whatever `gc` would
/// keep (see [`inspect::staleness`], the one definition of "live" both
/// use): not ours, another user's, damaged, or live (mapped by a process,
/// its creator running, or a lock held by a running thread).
fn rm_refusal(r: &Report) -> Option<String> {
    match &r.state {
        State::Foreign { reason } => {
            return Some(format!("it is not a shmstore segment ({reason})"))
        }
        State::Unreadable { reason } => {
            return Some(format!(
                "it cannot be read ({reason}), so it may not be a shmstore segment"
            ))
        }
        State::Damaged { reason, .. } => {
            return Some(format!(
                "it is a damaged shmstore segment ({reason}): what it holds may still be read"
            ))
        }
        State::OtherByteOrder { .. } => {
            return Some(format!(
                "it is a shmstore segment of another byte order ({}): whether anyone uses \
                 it cannot be told from here",
                inspect::staleness(r)
            ))
        }
        _ => {}
    }
    let me = out::our_uid();
    if r.owner_uid != me {
        return Some(format!(
            "it belongs to {}, not to you, {}",
            out::user(r.owner_uid),
            out::user(me)
        ));
    }
    match inspect::staleness(r) {
        s if s.is_stale() => None,
        Staleness::Attached { count: 1 } => Some("a running process has it mapped".into()),
        Staleness::Attached { count } => Some(format!("{count} running processes have it mapped")),
        Staleness::Present { .. } => Some(format!(
            "processes use it ({}, in any PID namespace)",
            inspect::staleness(r)
        )),
        Staleness::LockHeld { tid } => Some(format!(
            "its lock is held by thread {tid}, which is running"
        )),
        Staleness::EntryLockHeld { key, tid } => Some(format!(
            "the lock of its entry `{key}` is held by thread {tid}, which is running"
        )),
        why => Some(format!("it is live: {why}")),
    }
}

// ---------------------------------------------------------------------------
// gc

/// What gc does with one segment (or System V stand-in).
struct GcRow {
    name: String,
    backend: String,
    sysv_id: Option<i32>,
    action: &'static str,
    reason: String,
}

/// `shmstore gc`.
pub fn gc(dry_run: bool, force: bool, json: bool, prefixes: &[String]) -> CliResult {
    let mut rows = Vec::new();
    let mut failed = 0usize;
    for report in scan_sorted() {
        if !show::is_shmstore(&report) {
            continue;
        }
        if !prefixes.is_empty() && !prefixes.iter().any(|p| report.name.starts_with(p.as_str())) {
            continue;
        }
        let (action, reason) = match stale(&report, force) {
            Err(why) => ("kept", why),
            Ok(why) if dry_run => ("would remove", why),
            Ok(why) => match remove_if_still_stale(&report, force) {
                Ok(()) => ("removed", why),
                Err(CliError(e)) => {
                    failed += 1;
                    ("failed", e)
                }
            },
        };
        rows.push(GcRow {
            name: report.name.clone(),
            backend: report.backend.to_string(),
            sysv_id: report.sysv_id,
            action,
            reason,
        });
    }
    // What System V segments removed by other means left behind.
    for stand_in in inspect::orphaned_stand_ins() {
        let name = stand_in
            .path
            .file_name()
            .map_or_else(String::new, |n| n.to_string_lossy().into_owned());
        if !prefixes.is_empty() && !prefixes.iter().any(|p| name.starts_with(p.as_str())) {
            continue;
        }
        let why = format!(
            "stand-in of System V segment id {}, which no longer exists",
            stand_in.sysv_id
        );
        let (action, reason) = if stand_in.owner_uid != out::our_uid() && !force {
            (
                "kept",
                format!(
                    "{why}; owned by {}; --force includes it",
                    out::user(stand_in.owner_uid)
                ),
            )
        } else if dry_run {
            ("would remove", why)
        } else {
            match inspect::remove_stand_in(&stand_in) {
                Ok(()) => ("removed", why),
                Err(Error::Io { source, .. })
                    if source.kind() == std::io::ErrorKind::ResourceBusy =>
                {
                    ("kept", format!("{why}, but {source}"))
                }
                Err(e) => {
                    failed += 1;
                    ("failed", e.to_string())
                }
            }
        };
        rows.push(GcRow {
            name,
            backend: "sysv".to_owned(),
            sysv_id: Some(stand_in.sysv_id),
            action,
            reason,
        });
    }
    let tty = out::stdout_is_terminal();
    if json {
        let items = rows
            .iter()
            .map(|r| {
                Json::Obj(vec![
                    ("name", Json::str(&r.name)),
                    ("backend", Json::str(&r.backend)),
                    ("sysv_id", Json::opt(r.sysv_id, Json::int)),
                    ("action", Json::str(r.action)),
                    ("reason", Json::str(&r.reason)),
                ])
            })
            .collect();
        out::print(&(Json::Arr(items).render(tty) + "\n"));
    } else {
        let mut table = Table::new(&[
            ("NAME", Align::Left),
            ("BACKEND", Align::Left),
            ("ACTION", Align::Left),
            ("WHY", Align::Left),
        ]);
        for r in &rows {
            table.row(vec![
                r.name.clone(),
                r.backend.clone(),
                r.action.to_owned(),
                r.reason.clone(),
            ]);
        }
        out::print(&table.render(tty));
    }
    if failed > 0 {
        return Err(CliError(format!(
            "{failed} of the stale segments could not be removed: the table says why"
        )));
    }
    Ok(())
}

/// `Ok(why it is stale)` or `Err(why it stays)`. With `force`, other users'
/// segments are judged as if they were ours.
fn stale(r: &Report, force: bool) -> Result<String, String> {
    let verdict = if force && r.owner_uid != out::our_uid() {
        let mut mine = r.clone();
        mine.owner_uid = out::our_uid();
        inspect::staleness(&mine)
    } else {
        inspect::staleness(r)
    };
    match verdict {
        stale if stale.is_stale() => Ok(stale.to_string()),
        why if r.owner_uid != out::our_uid() => Err(format!("{why}; --force includes it")),
        why => Err(why.to_string()),
    }
}

/// Inspects `r` again and removes it if it is still stale and still the
/// same segment.
fn remove_if_still_stale(r: &Report, force: bool) -> CliResult {
    let again = match r.sysv_id {
        Some(id) => inspect::scan().into_iter().find(|x| x.sysv_id == Some(id)),
        None => inspect::report(&r.location).ok(),
    };
    let Some(again) = again else {
        return Err(CliError("it was removed by someone else meanwhile".into()));
    };
    let same = again.header().map(|h| (h.creator_pid, h.created))
        == r.header().map(|h| (h.creator_pid, h.created));
    if !same {
        return Err(CliError("it was replaced meanwhile: not removed".into()));
    }
    stale(&again, force).map_err(|why| CliError(format!("no longer stale: {why}")))?;
    inspect::remove(&again).map_err(|e| CliError(e.to_string()))
}
