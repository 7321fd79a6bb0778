//! How reports are shown: table cells, JSON objects, the `inspect` text and
//! the `watch` lines.

use std::time::SystemTime;

use shmstore::inspect::{
    self, Backend, EntryReport, HeaderInfo, LockState, PidNamespace, Report, SlotInfo, State,
};
use shmstore::schema::{Schema, Value};
use shmstore::{ByteOrder, PoisonInfo};

use crate::out::{self, Json};

/// Whether `r` is a shmstore segment (sound or not): what `ls` lists
/// without `--all`.
pub fn is_shmstore(r: &Report) -> bool {
    r.is_ours()
}

/// Whether the creator runs: `alive`, `dead`, or `in another PID
/// namespace` (where it cannot be checked).
fn creator_liveness(h: &HeaderInfo) -> &'static str {
    match (h.creator_namespace, h.creator_alive) {
        (PidNamespace::Other, _) => "in another PID namespace",
        (_, true) => "alive",
        (_, false) => "dead",
    }
}

/// `pid 4242 alive` / `pid 4242 dead` / `pid 1 in another PID namespace`.
fn creator_cell(h: &HeaderInfo) -> String {
    format!("pid {} {}", h.creator_pid, creator_liveness(h))
}

/// `free`, `held by 4243 (alive)`, `held by 4243 (dead)`, `held by 7 (pid 1
/// in another PID namespace, alive)`, with `, poisoned`.
pub fn lock_text(s: &SlotInfo) -> String {
    let mut t = match s.lock {
        LockState::Free => "free".to_owned(),
        LockState::Held {
            tid,
            alive,
            pid,
            namespace,
            ..
        } => {
            let alive = if alive { "alive" } else { "dead" };
            match (namespace, pid) {
                (PidNamespace::Other, Some(pid)) => {
                    format!("held by {tid} (pid {pid} in another PID namespace, {alive})")
                }
                (PidNamespace::Other, None) => {
                    format!("held by {tid} (in another PID namespace, {alive})")
                }
                _ => format!("held by {tid} ({alive})"),
            }
        }
        _ => "unknown".to_owned(),
    };
    if s.poisoned {
        t += ", poisoned";
    }
    t
}

/// A new segment's temporary name: "unfinished, creator dead" (or alive).
fn unfinished(creator_alive: bool) -> String {
    format!(
        "unfinished, creator {}",
        if creator_alive { "alive" } else { "dead" }
    )
}

/// The TYPE cell.
fn type_cell(r: &Report) -> String {
    match &r.state {
        State::Value { header, .. } => header.type_name.clone(),
        State::Store { entries, .. } => match entries {
            Ok(e) if e.len() == 1 => "store (1 entry)".to_owned(),
            Ok(e) => format!("store ({} entries)", e.len()),
            Err(_) => "store (damaged directory)".to_owned(),
        },
        State::Damaged { .. } => "damaged".to_owned(),
        State::OtherByteOrder { found } => format!("{found} (not this build's byte order)"),
        State::Incomplete { .. } => "incomplete".to_owned(),
        // An object that is no file at all says what it is: "a FIFO ...".
        State::Foreign { reason } if reason.starts_with("a ") || reason.starts_with("an ") => {
            format!("foreign: {reason}")
        }
        State::Foreign { .. } => "foreign".to_owned(),
        State::Unreadable { .. } => "unreadable".to_owned(),
        State::Unfinished { creator_alive, .. } => unfinished(*creator_alive),
        _ => "unknown".to_owned(),
    }
}

/// The LOCK cell: the segment's lock; for a store, its directory's, and
/// how many entries are locked or poisoned.
fn lock_cell(r: &Report) -> String {
    let Some(slot) = r.slot() else {
        return "-".to_owned();
    };
    let mut t = lock_text(slot);
    if let State::Store {
        entries: Ok(entries),
        ..
    } = &r.state
    {
        let held = entries
            .iter()
            .filter(|e| matches!(e.slot.lock, LockState::Held { .. }))
            .count();
        let poisoned = entries.iter().filter(|e| e.slot.poisoned).count();
        let mut parts = Vec::new();
        if held > 0 {
            parts.push(format!("{held} held"));
        }
        if poisoned > 0 {
            parts.push(format!("{poisoned} poisoned"));
        }
        if !parts.is_empty() {
            t += &format!("; entries: {}", parts.join(", "));
        }
    }
    t
}

/// One row of `ls`. SIZE is human (`4.1K`) on a terminal, in bytes in a
/// pipe.
pub fn ls_row(r: &Report, tty: bool) -> Vec<String> {
    let dash = || "-".to_owned();
    let slot = r.slot();
    vec![
        r.name.clone(),
        r.backend.to_string(),
        if tty {
            out::human_size(r.size)
        } else {
            r.size.to_string()
        },
        type_cell(r),
        r.header().map_or_else(dash, creator_cell),
        r.attached.map_or_else(dash, |n| n.to_string()),
        r.present.map_or_else(dash, |p| p.to_string()),
        lock_cell(r),
        slot.map_or_else(dash, |s| s.generation.to_string()),
        slot.and_then(|s| s.changed).map_or_else(dash, out::age),
    ]
}

/// What a segment is, in a few words: `damaged (why)`, `incomplete`, ...
pub fn state_phrase(r: &Report) -> String {
    match &r.state {
        State::Value { .. } => "a value".to_owned(),
        State::Store { .. } => "a store".to_owned(),
        State::Damaged { reason, .. } => format!("damaged ({reason})"),
        State::OtherByteOrder { found } => format!("of another byte order ({})", made_by(*found)),
        State::Incomplete { .. } => "incomplete (its creator has not finished creating it, \
                                     or died doing so)"
            .to_owned(),
        State::Foreign { reason } => format!("not a shmstore segment ({reason})"),
        State::Unreadable { reason } => format!("unreadable ({reason})"),
        State::Unfinished { creator_alive, .. } => unfinished(*creator_alive),
        _ => "of a kind this tool does not know".to_owned(),
    }
}

fn state_key(r: &Report) -> &'static str {
    match &r.state {
        State::Value { .. } => "value",
        State::Store { .. } => "store",
        State::Damaged { .. } => "damaged",
        State::OtherByteOrder { .. } => "other-byte-order",
        State::Incomplete { .. } => "incomplete",
        State::Foreign { .. } => "foreign",
        State::Unreadable { .. } => "unreadable",
        State::Unfinished { .. } => "unfinished",
        _ => "unknown",
    }
}

fn state_reason(r: &Report) -> Option<String> {
    match &r.state {
        State::Damaged { reason, .. }
        | State::Foreign { reason }
        | State::Unreadable { reason } => Some(reason.clone()),
        State::OtherByteOrder { found } => Some(made_by(*found)),
        _ => None,
    }
}

/// Why a segment of the other byte order is not decoded.
fn made_by(found: ByteOrder) -> String {
    format!(
        "made by a {found} build, and this build is {}: its numbers would read as other \
         numbers here",
        ByteOrder::NATIVE
    )
}

/// `0x` and 16 hexadecimal digits.
fn hex64(n: u64) -> String {
    format!("{n:#018x}")
}

/// A path to show for a report, when it has one.
fn path_of(r: &Report) -> Option<String> {
    match r.backend {
        Backend::Posix => Some(format!("/dev/shm/{}", r.name)),
        Backend::File => Some(r.name.clone()),
        _ => None,
    }
}

/// The System V key, for a segment that has one.
fn sysv_key(r: &Report) -> Option<String> {
    (r.backend == Backend::SysV && r.name.starts_with("0x")).then(|| r.name.clone())
}

// ---------------------------------------------------------------------------
// JSON

/// `this`, `other`, `unknown`.
fn namespace_key(ns: PidNamespace) -> &'static str {
    match ns {
        PidNamespace::This => "this",
        PidNamespace::Other => "other",
        _ => "unknown",
    }
}

fn slot_json(s: &SlotInfo) -> Json {
    let (state, holder, alive, pid, namespace) = match s.lock {
        LockState::Free => ("free", Json::Null, Json::Null, Json::Null, Json::Null),
        LockState::Held {
            tid,
            alive,
            pid,
            namespace,
            ..
        } => (
            "held",
            Json::int(tid),
            Json::Bool(alive),
            Json::opt(pid, Json::int),
            Json::str(namespace_key(namespace)),
        ),
        _ => ("unknown", Json::Null, Json::Null, Json::Null, Json::Null),
    };
    Json::Obj(vec![
        ("state", Json::str(state)),
        ("holder_tid", holder),
        ("holder_alive", alive),
        ("holder_pid", pid),
        ("holder_pid_namespace", namespace),
        ("poisoned", Json::Bool(s.poisoned)),
        ("poison", Json::opt(s.poison.as_ref(), poison_json)),
    ])
}

/// What poisoned a lock: cause, process, thread, time and the message.
pub fn poison_json(p: &PoisonInfo) -> Json {
    Json::Obj(vec![
        ("cause", Json::str(p.cause().to_string())),
        ("pid", Json::opt(p.pid(), Json::int)),
        ("tid", Json::int(p.tid())),
        ("time", Json::time(p.time())),
        ("message", Json::str(p.to_string())),
    ])
}

fn value_json(v: &Option<Value>) -> Json {
    Json::opt(v.as_ref(), |v| Json::Raw(v.to_json()))
}

fn schema_error_json(s: &Result<Option<Schema>, String>) -> Json {
    match s {
        Err(e) => Json::str(e),
        Ok(_) => Json::Null,
    }
}

fn entry_json(e: &EntryReport) -> Json {
    Json::Obj(vec![
        ("key", Json::str(&e.key)),
        ("type", Json::str(&e.type_name)),
        ("size", Json::int(e.size)),
        ("fingerprint", Json::str(hex64(e.fingerprint))),
        ("lock", slot_json(&e.slot)),
        ("generation", Json::int(e.slot.generation)),
        ("changed", Json::opt(e.slot.changed, Json::time)),
        ("has_schema", Json::Bool(matches!(e.schema, Ok(Some(_))))),
        ("schema_error", schema_error_json(&e.schema)),
        ("value", value_json(&e.value)),
    ])
}

/// A report as a JSON object. `detail` adds the decoded value (and a
/// store's entries).
pub fn report_json(r: &Report, detail: bool) -> Json {
    let header = r.header();
    let slot = r.slot();
    let entries = match &r.state {
        State::Store { entries, .. } => Some(entries),
        _ => None,
    };
    let staleness = inspect::staleness(r);
    let mut fields = vec![
        ("name", Json::str(&r.name)),
        ("backend", Json::str(r.backend.to_string())),
        ("path", Json::opt(path_of(r), Json::str)),
        ("sysv_key", Json::opt(sysv_key(r), Json::str)),
        ("sysv_id", Json::opt(r.sysv_id, Json::int)),
        ("size", Json::int(r.size)),
        ("owner_uid", Json::int(r.owner_uid)),
        ("owner", Json::opt(out::user_name(r.owner_uid), Json::str)),
        ("mode", Json::str(format!("{:04o}", r.mode))),
        ("attached", Json::opt(r.attached, Json::int)),
        (
            "present",
            Json::opt(r.present, |p| {
                Json::Obj(vec![
                    ("writers", Json::int(p.writers)),
                    ("readers", Json::int(p.readers)),
                ])
            }),
        ),
        ("modified", Json::opt(r.modified, Json::time)),
        ("state", Json::str(state_key(r))),
        ("reason", Json::opt(state_reason(r), Json::str)),
        ("type", Json::opt(header, |h| Json::str(&h.type_name))),
        (
            "fingerprint",
            Json::opt(header, |h| Json::str(hex64(h.fingerprint))),
        ),
        ("version", Json::opt(header, |h| Json::int(h.version))),
        ("value_size", Json::opt(header, |h| Json::int(h.value_size))),
        (
            "creator",
            Json::opt(header, |h| {
                Json::Obj(vec![
                    ("pid", Json::int(h.creator_pid)),
                    ("uid", Json::int(h.creator_uid)),
                    // Unknown (null) for a creator of another PID
                    // namespace: it cannot be checked from here.
                    (
                        "alive",
                        match h.creator_namespace {
                            PidNamespace::Other => Json::Null,
                            _ => Json::Bool(h.creator_alive),
                        },
                    ),
                    (
                        "pid_namespace",
                        Json::str(namespace_key(h.creator_namespace)),
                    ),
                ])
            }),
        ),
        ("created", Json::opt(header, |h| Json::time(h.created))),
        ("lock", Json::opt(slot, slot_json)),
        ("generation", Json::opt(slot, |s| Json::int(s.generation))),
        (
            "changed",
            Json::opt(slot.and_then(|s| s.changed), Json::time),
        ),
        (
            "entry_count",
            Json::opt(entries.and_then(|e| e.as_ref().ok()), |e| {
                Json::int(e.len() as u64)
            }),
        ),
        ("stale", Json::Bool(staleness.is_stale())),
        ("stale_reason", Json::str(staleness.to_string())),
    ];
    if detail {
        let (has_schema, schema_error, value) = match &r.state {
            State::Value { schema, value, .. } => (
                Json::Bool(matches!(schema, Ok(Some(_)))),
                schema_error_json(schema),
                value_json(value),
            ),
            _ => (Json::Null, Json::Null, Json::Null),
        };
        fields.push(("has_schema", has_schema));
        fields.push(("schema_error", schema_error));
        fields.push(("value", value));
        fields.push((
            "entries_error",
            Json::opt(entries.and_then(|e| e.as_ref().err()), Json::str),
        ));
        fields.push((
            "entries",
            Json::opt(entries.and_then(|e| e.as_ref().ok()), |e| {
                Json::Arr(e.iter().map(entry_json).collect())
            }),
        ));
    }
    Json::Obj(fields)
}

// ---------------------------------------------------------------------------
// inspect

/// Lines of `label: value`, labels padded to one width per indentation.
struct Lines {
    out: String,
}

const LABEL_WIDTH: usize = 13;

impl Lines {
    fn kv(&mut self, indent: usize, label: &str, value: impl AsRef<str>) {
        let pad = LABEL_WIDTH.saturating_sub(label.len() + 1);
        self.out.extend(std::iter::repeat_n(' ', indent));
        self.out += label;
        self.out.push(':');
        let value = value.as_ref();
        if !value.is_empty() {
            self.out.extend(std::iter::repeat_n(' ', pad + 1));
            self.out += value;
        }
        self.out.push('\n');
    }

    fn raw(&mut self, indent: usize, text: &str) {
        self.out.extend(std::iter::repeat_n(' ', indent));
        self.out += text;
        self.out.push('\n');
    }
}

fn plural(n: u64, one: &str, many: &str) -> String {
    format!("{n} {}", if n == 1 { one } else { many })
}

fn slot_lines(l: &mut Lines, indent: usize, s: &SlotInfo) {
    l.kv(indent, "lock", lock_text(s));
    if let Some(p) = &s.poison {
        l.kv(indent, "poison", p.to_string());
    }
    l.kv(indent, "generation", s.generation.to_string());
    let changed = match s.changed {
        Some(t) => out::time_and_age(t),
        None if s.generation == 0 => "never".to_owned(),
        None => "not recorded (SharedOptions::record_change_time)".to_owned(),
    };
    l.kv(indent, "changed", changed);
}

/// The decoded value, one field per line; a schema that failed its checks
/// or a missing one is said instead.
fn value_lines(
    l: &mut Lines,
    indent: usize,
    schema: &Result<Option<Schema>, String>,
    value: &Option<Value>,
    size: u64,
) {
    match (schema, value) {
        (Err(e), _) => {
            l.kv(indent, "schema", format!("damaged: {e}"));
            l.kv(indent, "value", "not decoded: its schema cannot be trusted");
        }
        (Ok(None), _) => l.kv(
            indent,
            "value",
            format!(
                "not decoded: {} with no schema (its creator did not store one)",
                plural(size, "byte", "bytes")
            ),
        ),
        (Ok(Some(_)), None) => l.kv(indent, "value", "not decoded"),
        (Ok(Some(s)), Some(v)) => {
            crate::value::lines(&mut l.out, indent, "value", LABEL_WIDTH, v, Some(s))
        }
    }
}

fn header_lines(l: &mut Lines, h: &HeaderInfo) {
    l.kv(0, "fingerprint", hex64(h.fingerprint));
    l.kv(0, "version", h.version.to_string());
    l.kv(
        0,
        "creator",
        format!(
            "pid {} ({}), {}",
            h.creator_pid,
            creator_liveness(h),
            out::user(h.creator_uid)
        ),
    );
    l.kv(0, "created", out::time_and_age(h.created));
}

/// What `inspect` prints.
pub fn inspect_text(r: &Report) -> String {
    let mut l = Lines { out: String::new() };
    l.kv(0, "name", &r.name);
    let backend = match (path_of(r), r.sysv_id) {
        (Some(p), _) if r.backend == Backend::Posix => format!("posix ({p})"),
        (_, Some(id)) => format!("sysv (id {id})"),
        _ => r.backend.to_string(),
    };
    l.kv(0, "backend", backend);
    let size = plural(r.size, "byte", "bytes");
    if r.size < 1024 {
        l.kv(0, "size", size);
    } else {
        l.kv(0, "size", format!("{} ({size})", out::human_size(r.size)));
    }
    l.kv(
        0,
        "owner",
        format!("{}, mode {:04o}", out::user(r.owner_uid), r.mode),
    );
    l.kv(
        0,
        "attached",
        r.attached.map_or_else(
            || {
                "unknown (some processes' memory maps cannot be read; none of the others maps it)"
                    .to_owned()
            },
            |n| plural(n, "process", "processes"),
        ),
    );
    if r.is_ours() {
        l.kv(
            0,
            "present",
            match r.present {
                Some(p) if p.is_empty() => "no process (in any PID namespace)".to_owned(),
                Some(p) => format!("{p} (in any PID namespace)"),
                None => "unknown".to_owned(),
            },
        );
    }
    if let Some(m) = r.modified {
        l.kv(0, "modified", out::time_and_age(m));
    }
    match &r.state {
        State::Value {
            header,
            slot,
            schema,
            value,
        } => {
            l.kv(0, "type", &header.type_name);
            header_lines(&mut l, header);
            l.kv(0, "value size", plural(header.value_size, "byte", "bytes"));
            slot_lines(&mut l, 0, slot);
            value_lines(&mut l, 0, schema, value, header.value_size);
        }
        State::Store {
            header,
            directory,
            capacity,
            entries,
        } => {
            l.kv(0, "type", format!("store ({})", header.type_name));
            header_lines(&mut l, header);
            l.kv(
                0,
                "store size",
                format!(
                    "{} (directory and heap, as created)",
                    plural(header.value_size, "byte", "bytes")
                ),
            );
            match capacity {
                Some((now, max)) => l.kv(
                    0,
                    "capacity",
                    format!(
                        "{} (grows to at most {})",
                        plural(*now, "byte", "bytes"),
                        plural(*max, "byte", "bytes")
                    ),
                ),
                None => l.kv(0, "capacity", "unreadable: its directory is damaged"),
            }
            l.kv(0, "directory", "");
            slot_lines(&mut l, 2, directory);
            match entries {
                Err(e) => l.kv(0, "entries", format!("unreadable: {e}")),
                Ok(entries) if entries.is_empty() => l.kv(0, "entries", "none"),
                Ok(entries) => {
                    l.kv(0, "entries", entries.len().to_string());
                    let mut sorted: Vec<&EntryReport> = entries.iter().collect();
                    sorted.sort_by(|a, b| a.key.cmp(&b.key));
                    for e in sorted {
                        l.raw(2, &format!("{}:", e.key));
                        l.kv(4, "type", &e.type_name);
                        l.kv(4, "size", plural(e.size, "byte", "bytes"));
                        l.kv(4, "fingerprint", hex64(e.fingerprint));
                        slot_lines(&mut l, 4, &e.slot);
                        value_lines(&mut l, 4, &e.schema, &e.value, e.size);
                    }
                }
            }
        }
        State::Damaged { reason, header } => {
            l.kv(0, "state", format!("damaged: {reason}"));
            if let Some(h) = header {
                l.kv(0, "type", &h.type_name);
                header_lines(&mut l, h);
            }
            l.kv(0, "value", "not decoded: the segment fails its checks");
        }
        State::OtherByteOrder { found } => {
            l.kv(0, "state", format!("other byte order: {}", made_by(*found)));
            l.kv(
                0,
                "value",
                format!("not decoded: open or inspect it from a {found} host"),
            );
        }
        State::Incomplete { header } => {
            l.kv(
                0,
                "state",
                "incomplete: its creator has not finished creating it, or died doing so",
            );
            if let Some(h) = header {
                l.kv(0, "type", &h.type_name);
                header_lines(&mut l, h);
            }
        }
        State::Foreign { reason } => {
            l.kv(0, "state", format!("not a shmstore segment: {reason}"));
            l.kv(0, "value", "not decoded: it belongs to another program");
        }
        State::Unreadable { reason } => {
            l.kv(0, "state", format!("unreadable: {reason}"));
        }
        State::Unfinished {
            creator_pid,
            creator_alive,
        } => {
            l.kv(0, "state", unfinished(*creator_alive));
            l.kv(0, "creator", format!("pid {creator_pid}"));
        }
        _ => l.kv(0, "state", "of a kind this tool does not know"),
    }
    let staleness = inspect::staleness(r);
    let stale = if staleness.is_stale() {
        format!("yes: {staleness}")
    } else {
        format!("no: {staleness}")
    };
    if r.is_ours() {
        l.kv(0, "stale", stale);
    }
    l.out
}

// ---------------------------------------------------------------------------
// watch

/// The time a watch line carries: when the change was committed if the
/// segment records it, else now.
fn watch_time(slot: Option<&SlotInfo>) -> String {
    out::local_time(slot.and_then(|s| s.changed).unwrap_or_else(SystemTime::now))
}

fn one_line_value(v: &Option<Value>, schema: &Result<Option<Schema>, String>) -> String {
    match (v, schema) {
        (Some(v), _) => v.to_string(),
        (None, Err(e)) => format!("(not decoded: damaged schema: {e})"),
        (None, Ok(None)) => "(not decoded: no schema)".to_owned(),
        (None, Ok(Some(_))) => "(not decoded)".to_owned(),
    }
}

fn flags(s: &SlotInfo) -> String {
    if s.poisoned {
        "  [poisoned]".to_owned()
    } else {
        String::new()
    }
}

/// One line of `watch`: time, generation, value (or the list of entries).
pub fn watch_line(r: &Report, entry: Option<&str>) -> String {
    match (&r.state, entry) {
        (
            State::Value {
                slot,
                schema,
                value,
                ..
            },
            _,
        ) => format!(
            "{}  gen {}  {}{}",
            watch_time(Some(slot)),
            slot.generation,
            one_line_value(value, schema),
            flags(slot)
        ),
        (State::Store { entries, .. }, Some(key)) => {
            match entries
                .as_ref()
                .ok()
                .and_then(|e| e.iter().find(|e| e.key == key))
            {
                Some(e) => format!(
                    "{}  gen {}  {} = {}{}",
                    watch_time(Some(&e.slot)),
                    e.slot.generation,
                    e.key,
                    one_line_value(&e.value, &e.schema),
                    flags(&e.slot)
                ),
                None => format!("{}  entry `{key}` is gone", watch_time(None)),
            }
        }
        (
            State::Store {
                directory, entries, ..
            },
            None,
        ) => {
            let list = match entries {
                Ok(e) => {
                    let mut e: Vec<&EntryReport> = e.iter().collect();
                    e.sort_by(|a, b| a.key.cmp(&b.key));
                    let names: Vec<String> = e
                        .iter()
                        .map(|e| format!("{} ({})", e.key, e.type_name))
                        .collect();
                    format!(
                        "{}{}{}",
                        plural(names.len() as u64, "entry", "entries"),
                        if names.is_empty() { "" } else { ": " },
                        names.join(", ")
                    )
                }
                Err(e) => format!("entries unreadable: {e}"),
            };
            format!(
                "{}  gen {}  {list}",
                watch_time(Some(directory)),
                directory.generation
            )
        }
        _ => format!("{}  {}", watch_time(None), state_phrase(r)),
    }
}

/// One JSON line of `watch`.
pub fn watch_json(r: &Report, entry: Option<&str>) -> Json {
    let now = ("time", Json::time(SystemTime::now()));
    let name = ("name", Json::str(&r.name));
    let slot_fields = |s: &SlotInfo| {
        vec![
            ("generation", Json::int(s.generation)),
            ("changed", Json::opt(s.changed, Json::time)),
            ("lock", slot_json(s)),
        ]
    };
    match (&r.state, entry) {
        (
            State::Value {
                slot,
                schema,
                value,
                ..
            },
            _,
        ) => {
            let mut f = vec![now, name, ("entry", Json::Null)];
            f.extend(slot_fields(slot));
            f.push(("schema_error", schema_error_json(schema)));
            f.push(("value", value_json(value)));
            Json::Obj(f)
        }
        (State::Store { entries, .. }, Some(key)) => {
            match entries
                .as_ref()
                .ok()
                .and_then(|e| e.iter().find(|e| e.key == key))
            {
                Some(e) => {
                    let mut f = vec![now, name, ("entry", Json::str(key))];
                    f.extend(slot_fields(&e.slot));
                    f.push(("type", Json::str(&e.type_name)));
                    f.push(("schema_error", schema_error_json(&e.schema)));
                    f.push(("value", value_json(&e.value)));
                    Json::Obj(f)
                }
                None => Json::Obj(vec![
                    now,
                    name,
                    ("entry", Json::str(key)),
                    ("gone", Json::Bool(true)),
                ]),
            }
        }
        (
            State::Store {
                directory, entries, ..
            },
            None,
        ) => {
            let mut f = vec![now, name];
            f.extend(slot_fields(directory));
            f.push((
                "entries",
                match entries {
                    Ok(e) => {
                        let mut e: Vec<&EntryReport> = e.iter().collect();
                        e.sort_by(|a, b| a.key.cmp(&b.key));
                        Json::Arr(
                            e.iter()
                                .map(|e| {
                                    Json::Obj(vec![
                                        ("key", Json::str(&e.key)),
                                        ("type", Json::str(&e.type_name)),
                                        ("generation", Json::int(e.slot.generation)),
                                    ])
                                })
                                .collect(),
                        )
                    }
                    Err(_) => Json::Null,
                },
            ));
            f.push((
                "entries_error",
                Json::opt(entries.as_ref().err(), Json::str),
            ));
            Json::Obj(f)
        }
        _ => Json::Obj(vec![now, name, ("state", Json::str(state_key(r)))]),
    }
}
