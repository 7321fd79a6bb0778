//! The `shmstore` command-line tool (feature `cli`), run as a user runs it,
//! on segments that real processes (this test binary run again, see
//! `common`) made, hold, died in, or that the test damaged on purpose.
//!
//! 1. `ls` and `inspect` of a value: every column, and the value decoded
//!    field by field (a nested struct indented, an array, a `ShmStr`).
//! 2. A lock holder killed with SIGKILL: `held by TID (dead)`, creator
//!    dead; once the next locker took it over, `free, poisoned`.
//! 3. A store of three entries: `store (3 entries)`, each entry decoded.
//! 4. A System V segment: listed as `sysv`, inspected by `--key`.
//! 5. A file-backed segment, inspected and removed by `--file`.
//! 6. A foreign file in /dev/shm: hidden, shown with `--all`, never
//!    decoded, not removed without `--force`.
//! 7. Damaged segments (schema bytes, a schema that disagrees with the
//!    value, the header, an unfinished header, hostile value bytes)
//!    reported as such, never decoded as garbage, no panic.
//! 8. `--json` of `ls` and `inspect`, parsed and checked.
//! 9. `watch --count 2` (and `--json`, `--entry`) prints the value now and
//!    after each change a child commits, then exits.
//! 10. `gc --dry-run` and `gc`: only stale segments (POSIX and System V);
//!     `rm` refuses live, locked, foreign and other users' segments without
//!     `--force`.
//! 11. Errors: one `shmstore: ` line and status 1; usage errors status 2.
//! 12. With the feature `zerocopy`: a `#[shareable(opaque)]` field shown as
//!     hex bytes with its type's name (next to 1).
//! 13. Across PID namespaces (as root, section 10b): a segment whose
//!     creator, in a PID namespace of its own, holds it open is shown
//!     present (`1 writer`, creator `pid 1 in another PID namespace`) and
//!     kept by `gc`, then removed once that process is killed; a reader
//!     there keeps it too; a lock holder there (of a value or a store
//!     entry) is shown with its pid there, alive, then dead; `gc` removes
//!     orphaned System V stand-ins of this IPC namespace only.
//!
//! Other tests (and other programs) have segments in /dev/shm at the same
//! time, so every assertion on `ls` or `gc` looks only at this test's own
//! names. `gc` removes every stale segment of this user, which includes
//! those of the other tests here whose creators have exited: those tests
//! take [`world`] for reading, the `gc` test takes it for writing.

mod common;

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Read};
use std::os::unix::fs::{FileExt, FileTypeExt};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::mpsc::{self, Receiver};
use std::sync::{PoisonError, RwLock, RwLockReadGuard, RwLockWriteGuard};
use std::time::{Duration, Instant};

use common::{
    command, eventually, field, gettid, role, say, spawn, Apart, Counter, Key, Kid, Segment,
    PATIENCE,
};
use serde_json::{json, Value as Json};
use shmstore::{Shareable, SharedOptions, ShmStr, SysvKey};

/// This file's range of System V keys (see `common::Key`).
const KEY_BASE: u32 = 0x6200_0000;

/// The binary under test.
const BIN: &str = env!("CARGO_BIN_EXE_shmstore");

// ===========================================================================
// Test types

/// A nested struct.
#[derive(Shareable, Clone, Copy, Default, Debug, PartialEq)]
#[repr(C)]
struct Point {
    x: i32,
    y: i32,
}

/// A value with a nested struct, an array and a string.
#[derive(Shareable, Clone, Copy, Default)]
#[repr(C)]
struct Gauge {
    value: u64,
    origin: Point,
    samples: [u16; 4],
    name: ShmStr<16>,
    _pad: u32,
}

/// What every `Gauge` here holds besides `value` and `name`.
const ORIGIN: Point = Point { x: 7, y: -3 };
const SAMPLES: [u16; 4] = [1, 2, 3, 4];

fn gauge(value: u64, name: &str) -> Gauge {
    let mut g = Gauge {
        value,
        origin: ORIGIN,
        samples: SAMPLES,
        ..Gauge::default()
    };
    g.name.set(name).expect("a short name");
    g
}

// ===========================================================================
// Children

#[test]
fn child_entry() {
    let Some(args) = role() else { return };
    let arg = |i: usize| args[i].as_str();
    let code = match arg(0) {
        "make" => make(arg(1), arg(2), arg(3).parse().unwrap(), arg(4), arg(5)),
        "store" => store(arg(1), arg(2)),
        "relock" => relock(arg(1)),
        "hold-entry" => hold_entry(arg(1), arg(2)),
        "read" => read(arg(1)),
        other => panic!("unknown role {other}"),
    };
    std::process::exit(code);
}

/// Creates a `Gauge` (`value`, `text`) on `backend` (`posix` name, `sysv`
/// decimal key, `file` path) with change times recorded, commits one write
/// (generation 1), then:
/// - `exit`: says `ready` and exits, leaving the segment behind;
/// - `drop-stay`: drops its handle, says `ready` and runs until `quit`;
/// - `stay`: says `ready`, then takes `set N` commands (each one committed
///   write of `value = N`, answered `done`) until `quit` or end of input;
/// - `hold`: locks, says `ready tid=TID` and keeps the lock until killed.
fn make(backend: &str, at: &str, value: u64, text: &str, then: &str) -> i32 {
    let mut opts = SharedOptions::new();
    opts.record_change_time(true);
    let v = gauge(value, text);
    let shared = match backend {
        "posix" => opts.create(at, v),
        "sysv" => opts.create(SysvKey::new(at.parse().unwrap()), v),
        "file" => opts.create(Path::new(at), v),
        other => panic!("unknown backend {other}"),
    }
    .expect("creating the segment");
    shared.lock().expect("a new lock").value = value;
    match then {
        "exit" => {
            drop(shared);
            say("ready");
            0
        }
        "drop-stay" => {
            // The creator runs on without mapping its segment.
            drop(shared);
            say("ready");
            while command().is_some_and(|c| c != "quit") {}
            0
        }
        "stay" => {
            say("ready");
            while let Some(c) = command() {
                if c == "quit" {
                    break;
                }
                if let Some(n) = c.strip_prefix("set ") {
                    shared.lock().expect("not poisoned").value = n.parse().unwrap();
                    say("done");
                }
            }
            0
        }
        "hold" => {
            // Locked, but not written through: no write is in progress.
            let g = shared.lock().expect("a new lock");
            say(format!("ready tid={}", gettid()));
            while command().is_some() {}
            drop(g);
            3
        }
        other => panic!("unknown ending {other}"),
    }
}

/// Opens the `Gauge` at `name`, locks it (which must find it poisoned: its
/// holder died), unlocks it without writing, says `poisoned` and exits.
fn relock(name: &str) -> i32 {
    let shared = SharedOptions::new()
        .open::<Gauge>(name)
        .expect("opening the segment");
    match shared.lock() {
        Ok(_) => panic!("the lock of a dead holder is not poisoned"),
        Err(e) => drop(e.into_inner()),
    }
    say("poisoned");
    0
}

/// Opens the store at `name`, locks its `Counter` entry `key`, writes
/// `value = 99` through the lock, says `ready tid=TID pid=PID` and keeps
/// the lock until killed.
fn hold_entry(name: &str, key: &str) -> i32 {
    let store = shmstore::Store::open(name).expect("opening the store");
    let entry = store.get::<Counter>(key).expect("the entry");
    let mut g = entry.lock().expect("not poisoned");
    g.value = 99;
    say(format!("ready tid={} pid={}", gettid(), std::process::id()));
    while command().is_some() {}
    drop(g);
    3
}

/// Opens the `Gauge` at `name` read-only, says `ready value=N` and runs
/// until the end of its input (or until killed).
fn read(name: &str) -> i32 {
    let reader = SharedOptions::new()
        .open_read_only::<Gauge>(name)
        .expect("opening the segment read-only");
    say(format!(
        "ready value={}",
        reader.snapshot().expect("not poisoned").value
    ));
    while command().is_some() {}
    0
}

/// Creates a store at `name` with three entries (`alpha`: a `Gauge`,
/// `beta`: a `Counter`, `gamma`: a `Point`), then `exit`s or `stay`s as
/// [`make`] does; staying, `set KEY N` sets `value` of `alpha` or `beta`.
fn store(name: &str, then: &str) -> i32 {
    let mut opts = SharedOptions::new();
    opts.record_change_time(true);
    let store = opts
        .create_store(name, 64 * 1024)
        .expect("creating the store");
    let alpha = store.insert("alpha", gauge(11, "first")).expect("alpha");
    let beta = store
        .insert(
            "beta",
            Counter {
                value: 22,
                last_pid: 4242,
                _pad: 0,
            },
        )
        .expect("beta");
    let gamma = store.insert("gamma", Point { x: 5, y: -6 }).expect("gamma");
    say("ready");
    if then == "stay" {
        while let Some(c) = command() {
            let words: Vec<&str> = c.split_whitespace().collect();
            match words[..] {
                ["quit"] => break,
                ["set", key, n] => {
                    let n: u64 = n.parse().unwrap();
                    match key {
                        "alpha" => alpha.lock().expect("not poisoned").value = n,
                        "beta" => beta.lock().expect("not poisoned").value = n,
                        other => panic!("no entry {other}"),
                    }
                    say("done");
                }
                _ => panic!("unknown command {c}"),
            }
        }
    }
    drop((alpha, beta, gamma, store));
    0
}

/// Starts a child that makes a `Gauge` and waits until it is ready (for
/// `exit`, until it has exited); returns it and the rest of its `ready`
/// line.
fn make_gauge(backend: &str, at: &str, value: u64, text: &str, then: &str) -> (Kid, String) {
    let v = value.to_string();
    let mut kid = Kid::spawn("make", &[backend, at, &v, text, then]);
    let said = kid.expect("ready");
    if then == "exit" {
        kid.wait_success();
    }
    (kid, said)
}

/// Starts a child that makes a store (see [`store`]) and stays.
fn make_store(name: &str) -> Kid {
    let mut kid = Kid::spawn("store", &[name, "stay"]);
    kid.expect("ready");
    kid
}

// ===========================================================================
// Running the tool

/// The tests whose segments `gc` must not remove under them read-lock this;
/// the `gc` test write-locks it.
static WORLD: RwLock<()> = RwLock::new(());

fn world() -> RwLockReadGuard<'static, ()> {
    WORLD.read().unwrap_or_else(PoisonError::into_inner)
}

fn whole_world() -> RwLockWriteGuard<'static, ()> {
    WORLD.write().unwrap_or_else(PoisonError::into_inner)
}

/// What one run of the tool did.
struct Out {
    args: Vec<String>,
    code: Option<i32>,
    stdout: String,
    stderr: String,
}

impl Out {
    fn describe(&self) -> String {
        format!(
            "`shmstore {}` exited with {:?}\n--- stdout:\n{}--- stderr:\n{}",
            self.args.join(" "),
            self.code,
            self.stdout,
            self.stderr
        )
    }

    /// Asserts that it succeeded (and did not panic); returns stdout.
    #[track_caller]
    fn ok(&self) -> &str {
        self.no_panic();
        assert_eq!(self.code, Some(0), "{}", self.describe());
        assert!(self.stderr.is_empty(), "{}", self.describe());
        &self.stdout
    }

    /// Asserts that it failed with status 1, nothing on stdout and one
    /// `shmstore: ` line on stderr; returns that line.
    #[track_caller]
    fn error(&self) -> &str {
        self.no_panic();
        assert_eq!(self.code, Some(1), "{}", self.describe());
        let lines: Vec<&str> = self.stderr.lines().collect();
        assert!(
            lines.len() == 1 && lines[0].starts_with("shmstore: "),
            "expected one `shmstore: ...` line on stderr: {}",
            self.describe()
        );
        lines[0]
    }

    /// Asserts that it neither panicked nor died of a signal.
    #[track_caller]
    fn no_panic(&self) {
        assert!(
            self.code.is_some(),
            "killed by a signal: {}",
            self.describe()
        );
        assert!(
            self.code != Some(101) && !self.stderr.contains("panicked"),
            "the tool panicked: {}",
            self.describe()
        );
    }
}

/// Starts `shmstore ARGS` with stdin closed and stdout and stderr piped.
fn start_shmstore(args: &[&str]) -> std::process::Child {
    spawn(
        Command::new(BIN)
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped()),
    )
}

/// Runs `shmstore ARGS` with stdout and stderr piped (so tables come out
/// tab-separated), killing it if it runs longer than [`PATIENCE`].
fn run(args: &[&str]) -> Out {
    let mut child = start_shmstore(args);
    let mut out = child.stdout.take().unwrap();
    let mut err = child.stderr.take().unwrap();
    let stdout = std::thread::spawn(move || {
        let mut s = Vec::new();
        let _ = out.read_to_end(&mut s);
        String::from_utf8_lossy(&s).into_owned()
    });
    let stderr = std::thread::spawn(move || {
        let mut s = Vec::new();
        let _ = err.read_to_end(&mut s);
        String::from_utf8_lossy(&s).into_owned()
    });
    let deadline = Instant::now() + PATIENCE;
    let status = loop {
        if let Some(s) = child.try_wait().expect("waitpid") {
            break s;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!(
                "`shmstore {}` still running after {PATIENCE:?}",
                args.join(" ")
            );
        }
        std::thread::sleep(Duration::from_millis(5));
    };
    Out {
        args: args.iter().map(|s| (*s).to_owned()).collect(),
        code: status.code(),
        stdout: stdout.join().unwrap(),
        stderr: stderr.join().unwrap(),
    }
}

/// A tab-separated table (heading row first) as rows of heading -> cell,
/// keyed by the first column; only the rows whose first cell is one of
/// `names`.
#[track_caller]
fn table(
    out: &Out,
    heads_wanted: &[&str],
    names: &[&str],
) -> HashMap<String, HashMap<String, String>> {
    let text = out.ok();
    let mut lines = text.lines();
    let Some(first) = lines.next() else {
        return HashMap::new();
    };
    let heads: Vec<&str> = first.split('\t').collect();
    for want in heads_wanted {
        assert!(heads.contains(want), "no {want} column: {}", out.describe());
    }
    let mut rows = HashMap::new();
    for line in lines {
        let cells: Vec<&str> = line.split('\t').collect();
        assert_eq!(
            cells.len(),
            heads.len(),
            "a row `{line}` with another number of cells than the heading: {}",
            out.describe()
        );
        if !names.contains(&cells[0]) {
            continue;
        }
        let row: HashMap<String, String> = heads
            .iter()
            .zip(&cells)
            .map(|(h, c)| ((*h).to_owned(), (*c).to_owned()))
            .collect();
        assert!(
            rows.insert(cells[0].to_owned(), row).is_none(),
            "{} listed twice: {}",
            cells[0],
            out.describe()
        );
    }
    rows
}

const LS_COLUMNS: [&str; 10] = [
    "NAME", "BACKEND", "SIZE", "TYPE", "CREATOR", "ATTACHED", "PRESENT", "LOCK", "GEN", "CHANGED",
];

/// The rows of `ls` (with `extra` arguments) whose NAME is one of `names`.
fn ls_rows(extra: &[&str], names: &[&str]) -> HashMap<String, HashMap<String, String>> {
    let mut args = vec!["ls"];
    args.extend_from_slice(extra);
    table(&run(&args), &LS_COLUMNS, names)
}

/// The `ls` row of `name`, which must be listed.
#[track_caller]
fn ls_row(extra: &[&str], name: &str) -> HashMap<String, String> {
    ls_rows(extra, &[name])
        .remove(name)
        .unwrap_or_else(|| panic!("`shmstore ls {}` does not list {name}", extra.join(" ")))
}

/// Whether `ls` lists `name`.
fn listed(name: &str) -> bool {
    !ls_rows(&[], &[name]).is_empty()
}

/// The rows of `gc` (with `extra` arguments) for `names`: name -> (ACTION,
/// WHY).
fn gc_rows(extra: &[&str], names: &[&str]) -> HashMap<String, (String, String)> {
    let mut args = vec!["gc"];
    args.extend_from_slice(extra);
    // Only this test's segments: never a stale segment of anything else
    // on the machine.
    args.extend_from_slice(names);
    table(&run(&args), &["NAME", "ACTION", "WHY"], names)
        .into_iter()
        .map(|(k, mut row)| {
            let action = row.remove("ACTION").unwrap();
            let why = row.remove("WHY").unwrap();
            (k, (action, why))
        })
        .collect()
}

/// Parses JSON output.
#[track_caller]
fn parse_json(out: &Out) -> Json {
    serde_json::from_str(out.ok()).unwrap_or_else(|e| panic!("not JSON ({e}): {}", out.describe()))
}

/// `text`'s lines with runs of blanks made one space, trimmed.
fn normalised(text: &str) -> Vec<String> {
    text.lines()
        .map(|l| l.split_whitespace().collect::<Vec<_>>().join(" "))
        .collect()
}

/// The index of the first line of `text` that is (blanks aside) `line`.
fn line_index(text: &str, line: &str) -> Option<usize> {
    normalised(text).iter().position(|l| l == line)
}

/// Whether some line of `text` is (blanks aside) `line`.
fn has_line(text: &str, line: &str) -> bool {
    line_index(text, line).is_some()
}

/// The index of the line `line`, which must be there.
#[track_caller]
fn must_line(text: &str, line: &str) -> usize {
    line_index(text, line).unwrap_or_else(|| panic!("no line `{line}` in:\n{text}"))
}

/// The indentation of line `i` of `text`.
fn indent(text: &str, i: usize) -> usize {
    let l = text.lines().nth(i).unwrap();
    l.len() - l.trim_start().len()
}

/// Asserts that `text` shows a `Gauge` decoded field by field from line
/// `from` on: `value`, `origin` with `x` and `y` indented under it,
/// `samples`, `name`, in that order.
#[track_caller]
fn assert_gauge_fields(text: &str, value: u64, name: &str) {
    let at = |line: &str| must_line(text, line);
    let value_at = at(&format!("value: {value}"));
    let origin_at = normalised(text)
        .iter()
        .position(|l| l.starts_with("origin:"))
        .unwrap_or_else(|| panic!("no `origin:` line in:\n{text}"));
    let x_at = at(&format!("x: {}", ORIGIN.x));
    let y_at = at(&format!("y: {}", ORIGIN.y));
    let samples_at = at("samples: [1, 2, 3, 4]");
    let name_at = at(&format!("name: \"{name}\""));
    assert!(
        value_at < origin_at
            && origin_at < x_at
            && x_at < y_at
            && y_at < samples_at
            && samples_at < name_at,
        "the fields are not in order:\n{text}"
    );
    assert!(
        indent(text, x_at) > indent(text, origin_at) && indent(text, y_at) == indent(text, x_at),
        "the nested struct's fields are not indented under `origin`:\n{text}"
    );
    assert_eq!(
        indent(text, origin_at),
        indent(text, value_at),
        "`origin` is not a sibling of `value`:\n{text}"
    );
}

/// The key as the tool shows it (`0x62001234`).
fn key_text(key: &Key) -> String {
    format!("{:#010x}", key.key().key() as u32)
}

/// A path for a file segment, removed when dropped.
struct TempPath(PathBuf);

impl TempPath {
    fn new(test: &str) -> TempPath {
        let unique = Segment::new(test);
        TempPath(std::env::temp_dir().join(unique.name()))
    }

    fn text(&self) -> &str {
        self.0.to_str().unwrap()
    }
}

impl Drop for TempPath {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

/// Reads 8 bytes (native order) at `at` of a file.
fn read_u64(path: &Path, at: u64) -> u64 {
    let f = std::fs::File::open(path).expect("opening the segment's file");
    let mut b = [0u8; 8];
    f.read_exact_at(&mut b, at).expect("reading the header");
    u64::from_ne_bytes(b)
}

/// Writes `bytes` at `at` of a file.
fn write_at(path: &Path, at: u64, bytes: &[u8]) {
    let f = std::fs::OpenOptions::new()
        .write(true)
        .open(path)
        .expect("opening the segment's file for writing");
    f.write_all_at(bytes, at).expect("writing into the segment");
}

/// Where the header keeps its state (`u32`), the total size, the value's
/// size and the schema's length (`u32`), and where a `Gauge` and its
/// `name` start (src/segment/header.rs: `Header`, `Layout`).
const STATE_AT: u64 = 12;
const TOTAL_SIZE_AT: u64 = 24;
const VALUE_SIZE_AT: u64 = 40;
const SCHEMA_LEN_AT: u64 = 108;
const VALUE_AT: u64 = 304;
const NAME_IN_GAUGE: u64 = 24;

/// Where the schema of the segment at `path` starts, and its length.
fn schema_span(path: &Path) -> (u64, u64) {
    let total = read_u64(path, TOTAL_SIZE_AT);
    let len = read_u64(path, SCHEMA_LEN_AT) & 0xffff_ffff;
    assert!(len > 0, "the segment carries no schema");
    (total - len, len)
}

// ===========================================================================
// 1. A value

#[test]
fn ls_and_inspect_show_a_value_field_by_field() {
    let _w = world();
    let seg = Segment::new("cli-value");
    let (kid, _) = make_gauge("posix", seg.name(), 1234, "hello", "stay");

    let row = ls_row(&[], seg.name());
    assert_eq!(row["BACKEND"], "posix", "{row:?}");
    assert!(row["TYPE"].ends_with("Gauge"), "{row:?}");
    assert_eq!(
        row["CREATOR"],
        format!("pid {} alive", kid.pid()),
        "{row:?}"
    );
    assert_eq!(row["ATTACHED"], "1", "{row:?}");
    assert_eq!(row["LOCK"], "free", "{row:?}");
    assert_eq!(row["GEN"], "1", "{row:?}");
    assert!(
        row["CHANGED"] == "now" || row["CHANGED"].ends_with("s ago"),
        "{row:?}"
    );
    let size = std::fs::metadata(seg.path()).unwrap().len();
    assert_eq!(row["SIZE"], size.to_string(), "{row:?}");

    let out = run(&["inspect", seg.name()]);
    let text = out.ok();
    assert!(
        has_line(text, &format!("name: {}", seg.name())),
        "{}",
        out.describe()
    );
    assert!(
        normalised(text)
            .iter()
            .any(|l| l.starts_with("type:") && l.ends_with("Gauge")),
        "no type: {}",
        out.describe()
    );
    assert!(
        normalised(text)
            .iter()
            .any(|l| l.starts_with(&format!("creator: pid {} (alive)", kid.pid()))),
        "no live creator: {}",
        out.describe()
    );
    assert!(has_line(text, "lock: free"), "{}", out.describe());
    assert!(has_line(text, "generation: 1"), "{}", out.describe());
    assert!(has_line(text, "attached: 1 process"), "{}", out.describe());
    assert_gauge_fields(text, 1234, "hello");

    // A leading `/` or `/dev/shm/` names the same object.
    for form in [format!("/{}", seg.name()), seg.path().display().to_string()] {
        let out = run(&["inspect", &form]);
        assert_gauge_fields(out.ok(), 1234, "hello");
    }
}

/// Another crate's plain-bytes type (zerocopy's), not `Shareable`.
#[cfg(feature = "zerocopy")]
mod foreign {
    use shmstore::zerocopy::{FromBytes, Immutable, IntoBytes, KnownLayout};

    #[derive(FromBytes, IntoBytes, KnownLayout, Immutable, Clone, Copy)]
    #[zerocopy(crate = "shmstore::zerocopy")]
    #[repr(C)]
    pub struct Stamp {
        pub secs: u32,
        pub nanos: u32,
    }
}

/// A value with a `#[shareable(opaque)]` field.
#[cfg(feature = "zerocopy")]
#[derive(Shareable)]
#[repr(C)]
struct Event {
    id: u64,
    #[shareable(opaque)]
    at: foreign::Stamp,
}

#[cfg(feature = "zerocopy")]
#[test]
fn inspect_shows_an_opaque_field_as_hex_with_its_type() {
    let _w = world();
    let seg = Segment::new("cli-opaque");
    let at = foreign::Stamp {
        secs: 0x0403_0201,
        nanos: 0x0807_0605,
    };
    let shared = shmstore::Shared::create(seg.name(), Event { id: 42, at }).unwrap();

    let out = run(&["inspect", seg.name()]);
    let text = out.ok();
    assert!(has_line(text, "id: 42"), "{}", out.describe());
    // The bytes in memory order: the host's (little-endian on every
    // platform shmstore supports).
    let hex = if cfg!(target_endian = "little") {
        "<01 02 03 04 05 06 07 08>"
    } else {
        "<04 03 02 01 08 07 06 05>"
    };
    assert!(
        has_line(
            text,
            &format!("at: {hex} (8 bytes of `foreign::Stamp`, opaque)")
        ),
        "{}",
        out.describe()
    );
    drop(shared);
}

// ===========================================================================
// 2. A killed lock holder

#[test]
fn a_killed_lock_holder_shows_as_dead() {
    let _w = world();
    let seg = Segment::new("cli-killed");
    let (mut kid, said) = make_gauge("posix", seg.name(), 77, "held", "hold");
    let pid = kid.pid();
    let tid: u32 = field(&said, "tid").parse().unwrap();

    let row = ls_row(&[], seg.name());
    assert_eq!(row["LOCK"], format!("held by {tid} (alive)"), "{row:?}");
    assert_eq!(row["CREATOR"], format!("pid {pid} alive"), "{row:?}");

    kid.kill();
    kid.wait();

    let row = ls_row(&[], seg.name());
    assert_eq!(row["LOCK"], format!("held by {tid} (dead)"), "{row:?}");
    assert_eq!(row["CREATOR"], format!("pid {pid} dead"), "{row:?}");
    assert_eq!(row["GEN"], "1", "{row:?}");

    let out = run(&["inspect", seg.name()]);
    let text = out.ok();
    assert!(
        has_line(text, &format!("lock: held by {tid} (dead)")),
        "lock holder not shown dead: {}",
        out.describe()
    );
    assert!(
        normalised(text)
            .iter()
            .any(|l| l.starts_with(&format!("creator: pid {pid} (dead)"))),
        "creator not shown dead: {}",
        out.describe()
    );
    // The holder did not write: the value is whole and decoded.
    assert_gauge_fields(text, 77, "held");

    // The next locker finds it poisoned, takes it over and unlocks.
    let mut next = Kid::spawn("relock", &[seg.name()]);
    next.expect("poisoned");
    next.wait_success();
    let poisoned = ls_row(&[], seg.name());
    assert_eq!(poisoned["LOCK"], "free, poisoned", "{poisoned:?}");
    let out = run(&["inspect", seg.name()]);
    assert!(
        has_line(out.ok(), "lock: free, poisoned"),
        "{}",
        out.describe()
    );
    let v = parse_json(&run(&["inspect", "--json", seg.name()]));
    let lock = &v["lock"];
    assert_eq!(lock["state"], "free", "{v:#}");
    assert_eq!(lock["holder_tid"], json!(null), "{v:#}");
    assert_eq!(lock["holder_alive"], json!(null), "{v:#}");
    assert_eq!(lock["poisoned"], true, "{v:#}");
    assert_eq!(lock["poison"]["cause"], "killed", "{v:#}");
    assert_eq!(lock["poison"]["pid"], json!(pid), "{v:#}");
    assert_eq!(lock["poison"]["tid"], json!(tid), "{v:#}");

    // Nobody had it mapped after the kill.
    assert_eq!(row["ATTACHED"], "0", "{row:?}");
}

#[test]
fn unpoison_clears_a_killed_holders_poison_and_says_whose_it_was() {
    let _w = world();
    let seg = Segment::new("cli-unpoison");
    let (mut kid, said) = make_gauge("posix", seg.name(), 5, "held", "hold");
    let pid = kid.pid();
    let tid: u32 = field(&said, "tid").parse().unwrap();
    kid.kill();
    kid.wait();
    let mut next = Kid::spawn("relock", &[seg.name()]);
    next.expect("poisoned");
    next.wait_success();

    let out = run(&["inspect", seg.name()]);
    let text = out.ok();
    let poison = format!("process {pid} (thread {tid}) was killed");
    assert!(
        normalised(text)
            .iter()
            .any(|l| l.starts_with("poison: ") && l.contains(&poison)),
        "inspect does not show the poison: {}",
        out.describe()
    );

    let out = run(&["unpoison", seg.name()]);
    let said = out.ok();
    assert!(
        said.starts_with(&format!("cleared the poison of `{}`: ", seg.name()))
            && said.contains(&poison),
        "{}",
        out.describe()
    );
    let out = run(&["inspect", seg.name()]);
    let text = out.ok();
    assert!(has_line(text, "lock: free"), "{}", out.describe());
    assert!(
        !normalised(text).iter().any(|l| l.starts_with("poison:")),
        "{}",
        out.describe()
    );

    let out = run(&["unpoison", seg.name()]);
    assert!(out.ok().contains("was not poisoned"), "{}", out.describe());
    let v = parse_json(&run(&["unpoison", "--json", seg.name()]));
    assert_eq!(v["cleared"], json!(null), "{v:#}");
}

#[test]
fn unpoison_entry_takes_a_dead_holders_entry_over_and_clears_it() {
    let _w = world();
    let seg = Segment::new("cli-unpoison-entry");
    let mut owner = make_store(seg.name());
    let mut kid = Kid::spawn("hold-entry", &[seg.name(), "beta"]);
    let said = kid.expect("ready");
    let tid: u32 = field(&said, "tid").parse().unwrap();
    let pid = kid.pid();
    kid.kill();
    kid.wait();

    // Not yet poisoned: nobody has taken the lock over. unpoison does.
    let out = run(&["unpoison", seg.name(), "--entry", "beta"]);
    let said = out.ok();
    assert!(
        said.contains("entry `beta`")
            && said.contains(&format!("process {pid} (thread {tid}) was killed")),
        "{}",
        out.describe()
    );
    let v = parse_json(&run(&["inspect", "--json", seg.name()]));
    let beta = v["entries"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["key"] == "beta")
        .unwrap()
        .clone();
    assert_eq!(beta["lock"]["state"], "free", "{v:#}");
    assert_eq!(beta["lock"]["poison"], json!(null), "{v:#}");
    // The dead holder's write was committed by the takeover.
    assert_eq!(beta["value"]["value"], 99, "{v:#}");

    // Poisoned by a locker that took over: inspect shows it on the entry.
    let mut kid = Kid::spawn("hold-entry", &[seg.name(), "beta"]);
    kid.expect("ready");
    kid.kill();
    kid.wait();
    let store = shmstore::Store::open(seg.name()).unwrap();
    drop(
        store
            .get::<Counter>("beta")
            .unwrap()
            .lock()
            .expect_err("poisoned"),
    );
    let v = parse_json(&run(&["inspect", "--json", seg.name()]));
    let beta = v["entries"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["key"] == "beta")
        .unwrap()
        .clone();
    assert_eq!(beta["lock"]["poison"]["cause"], "killed", "{v:#}");
    let out = run(&["inspect", seg.name()]);
    assert!(out.ok().contains("--entry beta"), "{}", out.describe());
    run(&["unpoison", seg.name(), "--entry", "beta"]).ok();
    assert!(store.get::<Counter>("beta").unwrap().lock().is_ok());

    let out = run(&["unpoison", seg.name(), "--entry", "nope"]);
    assert!(out.error().contains("nope"), "{}", out.describe());
    owner.send("quit");
    owner.wait_success();
}

#[test]
fn unpoison_without_write_permission_fails_clearly() {
    if common::is_root() {
        eprintln!("skipped: root may write anything");
        return;
    }
    let _w = world();
    let seg = Segment::new("cli-unpoison-ro");
    make_gauge("posix", seg.name(), 1, "ro", "exit");
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(seg.path(), std::fs::Permissions::from_mode(0o400)).unwrap();
    let out = run(&["unpoison", seg.name()]);
    assert!(
        out.error().contains("permission denied"),
        "{}",
        out.describe()
    );
}

// ===========================================================================
// 3. A store

#[test]
fn a_store_lists_and_decodes_its_entries() {
    let _w = world();
    let seg = Segment::new("cli-store");
    let kid = make_store(seg.name());

    let row = ls_row(&[], seg.name());
    assert_eq!(row["TYPE"], "store (3 entries)", "{row:?}");
    assert_eq!(row["BACKEND"], "posix", "{row:?}");
    assert_eq!(
        row["CREATOR"],
        format!("pid {} alive", kid.pid()),
        "{row:?}"
    );
    assert_eq!(row["LOCK"], "free", "{row:?}");

    let out = run(&["inspect", seg.name()]);
    let text = out.ok();
    let at = |line: &str| must_line(text, line);
    let alpha = at("alpha:");
    let beta = at("beta:");
    let gamma = at("gamma:");
    assert!(alpha < beta && beta < gamma, "{}", out.describe());
    // alpha: a Gauge, decoded field by field (between its key and beta's).
    let alpha_text: String = text.lines().collect::<Vec<_>>()[alpha..beta].join("\n");
    assert_gauge_fields(&alpha_text, 11, "first");
    // beta: a Counter.
    let v = at("value: 22");
    let p = at("last_pid: 4242");
    assert!(beta < v && v < p && p < gamma, "{}", out.describe());
    // gamma: a Point.
    let x = at("x: 5");
    let y = at("y: -6");
    assert!(gamma < x && x < y, "{}", out.describe());
    for key_line in [alpha, beta, gamma] {
        assert!(
            indent(text, key_line + 1) > indent(text, key_line),
            "an entry's details are not indented under its key: {}",
            out.describe()
        );
    }
}

// ===========================================================================
// 4. System V

#[test]
fn a_sysv_segment_is_listed_and_inspected_by_key() {
    let _w = world();
    let key = Key::in_range(KEY_BASE);
    let (kid, _) = make_gauge("sysv", &key.arg(), 555, "sysv", "stay");
    let name = key_text(&key);

    let row = ls_row(&[], &name);
    assert_eq!(row["BACKEND"], "sysv", "{row:?}");
    assert!(row["TYPE"].ends_with("Gauge"), "{row:?}");
    assert_eq!(
        row["CREATOR"],
        format!("pid {} alive", kid.pid()),
        "{row:?}"
    );
    assert_eq!(row["ATTACHED"], "1", "{row:?}");
    assert_eq!(row["GEN"], "1", "{row:?}");
    assert_eq!(row["LOCK"], "free", "{row:?}");

    // By key in hexadecimal or decimal, or by the name ls shows.
    for args in [
        ["inspect", "--key", name.as_str()],
        ["inspect", "--key", key.arg().as_str()],
        ["inspect", name.as_str(), "--json"],
    ] {
        let out = run(&args);
        if args.contains(&"--json") {
            let v = parse_json(&out);
            assert_eq!(v["backend"], "sysv", "{v:#}");
            assert_eq!(v["value"]["value"], 555, "{v:#}");
        } else {
            assert_gauge_fields(out.ok(), 555, "sysv");
        }
    }
}

// ===========================================================================
// 5. A file

#[test]
fn a_file_segment_is_inspected_and_removed_by_path() {
    let _w = world();
    let path = TempPath::new("cli-file");
    let (mut kid, _) = make_gauge("file", path.text(), 99, "on disk", "stay");

    let out = run(&["inspect", "--file", path.text()]);
    let text = out.ok();
    assert_gauge_fields(text, 99, "on disk");
    assert!(has_line(text, "attached: 1 process"), "{}", out.describe());

    // Mapped by a live process: refused without --force.
    let line = run(&["rm", "--file", path.text()]).error().to_owned();
    assert!(line.contains("--force"), "{line}");
    assert!(path.0.exists(), "rm removed a mapped file");
    kid.send("quit");
    kid.wait_success();
    // Stale now: removed.
    run(&["rm", "--file", path.text()]).ok();
    assert!(!path.0.exists(), "rm --file left the file");
}

// ===========================================================================
// 6. A foreign file

#[test]
fn a_foreign_file_is_hidden_never_decoded_and_not_removed() {
    let _w = world();
    let seg = Segment::new("cli-foreign");
    std::fs::write(
        seg.path(),
        b"not a shmstore segment, just somebody else's bytes\n".repeat(20),
    )
    .unwrap();

    assert!(
        !listed(seg.name()),
        "a foreign file is listed without --all"
    );
    let row = ls_row(&["--all"], seg.name());
    assert_eq!(row["TYPE"], "foreign", "{row:?}");
    assert_eq!(row["BACKEND"], "posix", "{row:?}");
    assert_eq!(row["CREATOR"], "-", "{row:?}");
    let all = parse_json(&run(&["ls", "--all", "--json"]));
    assert_eq!(json_entry(&all, seg.name())["state"], "foreign");
    let none = parse_json(&run(&["ls", "--json"]));
    assert!(
        !none
            .as_array()
            .unwrap()
            .iter()
            .any(|o| o["name"] == seg.name()),
        "a foreign file is in ls --json without --all"
    );

    let out = run(&["inspect", seg.name()]);
    let text = out.ok();
    assert!(
        text.contains("foreign") || text.contains("not a shmstore segment"),
        "inspect does not say it is foreign: {}",
        out.describe()
    );
    assert!(
        !text.contains("somebody"),
        "foreign bytes shown: {}",
        out.describe()
    );
    let v = parse_json(&run(&["inspect", "--json", seg.name()]));
    assert_eq!(v["state"], "foreign", "{v:#}");
    assert_eq!(v["value"], Json::Null, "{v:#}");

    let line = run(&["rm", seg.name()]).error().to_owned();
    assert!(
        line.contains("--force"),
        "the refusal does not say how: {line}"
    );
    assert!(seg.exists(), "rm removed a foreign file without --force");
    run(&["rm", "--force", seg.name()]).ok();
    assert!(!seg.exists(), "rm --force left the foreign file");
}

// ===========================================================================
// 7. Damaged segments

/// Asserts that `inspect` (text and JSON) and `ls` report a segment whose
/// schema cannot be trusted without decoding its value; `marker` is the
/// value's `name`, which must not appear.
#[track_caller]
fn assert_schema_reported(seg: &Segment, value: u64, marker: &str) {
    let out = run(&["inspect", seg.name()]);
    let text = out.ok();
    assert!(
        normalised(text)
            .iter()
            .any(|l| l.starts_with("schema: damaged")),
        "the schema is not reported damaged: {}",
        out.describe()
    );
    assert!(
        !has_line(text, &format!("value: {value}")) && !text.contains(marker),
        "decoded anyway: {}",
        out.describe()
    );

    let v = parse_json(&run(&["inspect", "--json", seg.name()]));
    assert!(v["schema_error"].is_string(), "{v:#}");
    assert_eq!(v["value"], Json::Null, "{v:#}");

    // ls lists it without decoding anything; no panic.
    let row = ls_row(&[], seg.name());
    assert!(!row["TYPE"].contains(marker), "{row:?}");
}

#[test]
fn a_damaged_schema_is_reported_not_decoded() {
    let _w = world();
    // Garbage over the whole schema.
    let seg = Segment::new("cli-badschema");
    make_gauge("posix", seg.name(), 4321, "intact", "exit");
    let (at, len) = schema_span(&seg.path());
    write_at(&seg.path(), at, &vec![0xA5; len as usize]);
    assert_schema_reported(&seg, 4321, "intact");

    // A well-formed schema that describes a bigger value than there is:
    // `SHSC`, version 1, tag 7 (struct), the name, then the size.
    let seg = Segment::new("cli-liarschema");
    make_gauge("posix", seg.name(), 4322, "intact", "exit");
    let (at, _) = schema_span(&seg.path());
    let mut head = [0u8; 64];
    std::fs::File::open(seg.path())
        .unwrap()
        .read_exact_at(&mut head, at)
        .unwrap();
    assert_eq!(&head[..6], b"SHSC\x01\x07", "the schema encoding changed");
    let name_len = head[6] as usize;
    let size_at = 7 + name_len;
    assert_eq!(
        head[size_at] as usize,
        std::mem::size_of::<Gauge>(),
        "the schema encoding changed: {head:?}"
    );
    write_at(&seg.path(), at + size_at as u64, &[56]);
    assert_schema_reported(&seg, 4322, "intact");
}

/// Checks that `inspect` (text and `--json`) reports the segment `name`
/// (made by `make_gauge` with 8765 and "intact") in the state `state` (the
/// start of its line) and `json_state`, and does not decode its value;
/// returns the JSON.
#[track_caller]
fn assert_reported_not_decoded(name: &str, state: &str, json_state: &str) -> Json {
    let out = run(&["inspect", name]);
    let text = out.ok();
    assert!(
        normalised(text).iter().any(|l| l.starts_with(state)),
        "not reported as `{state}`: {}",
        out.describe()
    );
    assert!(
        !has_line(text, "value: 8765") && !text.contains("intact"),
        "decoded anyway: {}",
        out.describe()
    );
    let v = parse_json(&run(&["inspect", "--json", name]));
    assert_eq!(v["state"], json_state, "{v:#}");
    assert_eq!(v["value"], Json::Null, "{v:#}");
    v
}

#[test]
fn a_damaged_header_is_reported_not_decoded() {
    let _w = world();
    let seg = Segment::new("cli-badheader");
    make_gauge("posix", seg.name(), 8765, "intact", "exit");
    // The value's size: far larger than the segment.
    write_at(&seg.path(), VALUE_SIZE_AT, &(1u64 << 40).to_ne_bytes());

    let row = ls_row(&[], seg.name());
    assert_eq!(row["TYPE"], "damaged", "{row:?}");
    assert_eq!(row["LOCK"], "-", "{row:?}");

    let v = assert_reported_not_decoded(seg.name(), "state: damaged", "damaged");
    assert!(v["reason"].is_string(), "{v:#}");

    // A header cut off: a segment shorter than a header, with our magic.
    let short = Segment::new("cli-shortheader");
    std::fs::write(short.path(), b"SHMSTORE\x03\x00\x00\x00").unwrap();
    let row = ls_row(&[], short.name());
    assert_eq!(row["TYPE"], "damaged", "{row:?}");
    let out = run(&["inspect", short.name()]);
    assert!(
        normalised(out.ok())
            .iter()
            .any(|l| l.starts_with("state: damaged")),
        "{}",
        out.describe()
    );
}

/// A segment made by a build of the other byte order (its header forged by
/// hand, every number's bytes reversed), as a file on a disk shared with a
/// host of the other byte order would be: `ls` and `inspect` say so, never
/// decode it, and `rm` keeps it without --force.
#[test]
fn a_segment_of_the_other_byte_order_is_reported_as_such() {
    let _w = world();
    let both = format!(
        "made by a {} build, and this build is {}",
        common::other_byte_order(),
        common::this_byte_order()
    );
    let seg = Segment::new("cli-byteorder");
    make_gauge("posix", seg.name(), 8765, "intact", "exit");
    common::forge_other_byte_order(&seg.path());

    let row = ls_row(&[], seg.name());
    assert_eq!(
        row["TYPE"],
        format!(
            "{} (not this build's byte order)",
            common::other_byte_order()
        ),
        "{row:?}"
    );
    assert_eq!(row["LOCK"], "-", "{row:?}");

    let state = format!("state: other byte order: {both}");
    let v = assert_reported_not_decoded(seg.name(), &state, "other-byte-order");
    assert!(
        v["reason"].as_str().is_some_and(|r| r.contains(&both)),
        "{v:#}"
    );

    let line = run(&["rm", seg.name()]).error().to_owned();
    assert!(line.contains("another byte order"), "{line}");
    assert!(seg.exists(), "rm removed it without --force");

    // A file segment on a shared disk: the same.
    let path = TempPath::new("cli-byteorder-file");
    make_gauge("file", path.text(), 4321, "on disk", "exit");
    common::forge_other_byte_order(&path.0);
    let out = run(&["inspect", "--file", path.text()]);
    assert!(
        normalised(out.ok()).iter().any(|l| l.starts_with(&state)),
        "not reported: {}",
        out.describe()
    );
}

#[test]
fn an_unfinished_segment_is_listed_as_incomplete() {
    let _w = world();
    let seg = Segment::new("cli-incomplete");
    make_gauge("posix", seg.name(), 2468, "unfinished", "exit");
    // Its state as a creator that died before finishing leaves it.
    write_at(&seg.path(), STATE_AT, &1u32.to_ne_bytes());

    let row = ls_row(&[], seg.name());
    assert_eq!(row["TYPE"], "incomplete", "{row:?}");
    assert!(row["CREATOR"].ends_with(" dead"), "{row:?}");
    let out = run(&["inspect", seg.name()]);
    let text = out.ok();
    assert!(
        normalised(text)
            .iter()
            .any(|l| l.starts_with("state: incomplete")),
        "{}",
        out.describe()
    );
    assert!(
        !has_line(text, "value: 2468") && !text.contains("unfinished"),
        "decoded anyway: {}",
        out.describe()
    );
    let v = parse_json(&run(&["inspect", "--json", seg.name()]));
    assert_eq!(v["state"], "incomplete", "{v:#}");
    assert_eq!(v["value"], Json::Null, "{v:#}");
    let line = run(&["watch", seg.name()]).error().to_owned();
    assert!(line.contains("incomplete"), "{line}");
}

#[test]
fn hostile_value_bytes_are_shown_safely() {
    let _w = world();
    let seg = Segment::new("cli-hostile");
    make_gauge("posix", seg.name(), 31337, "fine", "exit");
    // The string's length far beyond its capacity, its bytes not UTF-8.
    write_at(
        &seg.path(),
        VALUE_AT + NAME_IN_GAUGE,
        &u32::MAX.to_le_bytes(),
    );
    write_at(&seg.path(), VALUE_AT + NAME_IN_GAUGE + 4, &[0xff; 16]);

    let out = run(&["inspect", seg.name()]);
    let text = out.ok();
    assert!(has_line(text, "value: 31337"), "{}", out.describe());
    let name_line = normalised(text)
        .into_iter()
        .find(|l| l.starts_with("name: ") && !l.contains(seg.name()))
        .unwrap_or_else(|| panic!("no name field: {}", out.describe()));
    assert!(
        name_line.len() < 120,
        "the string is shown past its capacity: {name_line}"
    );
    let v = parse_json(&run(&["inspect", "--json", seg.name()]));
    assert_eq!(v["value"]["value"], 31337, "{v:#}");
    assert!(
        !v["value"]["name"].is_null(),
        "the bad string vanished: {v:#}"
    );
}

// ===========================================================================
// 8. JSON

/// The object of `name` in the array `ls --json` printed.
#[track_caller]
fn json_entry(all: &Json, name: &str) -> Json {
    let arr = all.as_array().expect("ls --json prints an array");
    let mine: Vec<&Json> = arr.iter().filter(|o| o["name"] == name).collect();
    assert_eq!(mine.len(), 1, "{name} in ls --json: {all:#}");
    mine[0].clone()
}

#[test]
fn json_output_parses_and_has_every_field() {
    let _w = world();
    let seg = Segment::new("cli-json");
    let (kid, _) = make_gauge("posix", seg.name(), 1234, "hello", "stay");
    let killed = Segment::new("cli-json-killed");
    let (mut holder, said) = make_gauge("posix", killed.name(), 5, "gone", "hold");
    let holder_pid = holder.pid();
    let holder_tid: u32 = field(&said, "tid").parse().unwrap();
    holder.kill();
    holder.wait();
    let store = Segment::new("cli-json-store");
    let _skid = make_store(store.name());

    // A command another test runs meanwhile (`ls`, `inspect`, `watch`) maps
    // every segment for a moment, and counts as attached (and present) then:
    // look again, a few times, until only the creator is (and nobody is
    // in the killed holder's).
    let mut all = parse_json(&run(&["ls", "--json"]));
    for _ in 0..10 {
        let o = json_entry(&all, seg.name());
        let k = json_entry(&all, killed.name());
        if o["attached"] == 1
            && o["present"]["writers"] == 1
            && o["present"]["readers"] == 0
            && k["attached"] == 0
        {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(200));
        all = parse_json(&run(&["ls", "--json"]));
    }
    let o = json_entry(&all, seg.name());
    let size = std::fs::metadata(seg.path()).unwrap().len();
    assert_eq!(o["backend"], "posix", "{o:#}");
    assert_eq!(o["path"], seg.path().display().to_string(), "{o:#}");
    assert_eq!(o["size"], size, "{o:#}");
    assert_eq!(o["state"], "value", "{o:#}");
    assert!(o["type"].as_str().unwrap().ends_with("Gauge"), "{o:#}");
    assert_eq!(
        o["creator"],
        json!({"pid": kid.pid(), "uid": nix::unistd::geteuid().as_raw(), "alive": true,
               "pid_namespace": "this"}),
        "{o:#}"
    );
    assert_eq!(o["attached"], 1, "{o:#}");
    assert_eq!(o["generation"], 1, "{o:#}");
    assert_eq!(o["lock"]["state"], "free", "{o:#}");
    assert_eq!(o["lock"]["poisoned"], false, "{o:#}");
    assert!(o["changed"].is_string(), "{o:#}");
    assert_eq!(o["stale"], false, "{o:#}");
    // Its creator shows itself in it (another test's `ls` may add a reader
    // for a moment).
    assert_eq!(o["present"]["writers"], 1, "{o:#}");

    let o = json_entry(&all, killed.name());
    assert_eq!(o["creator"]["pid"], holder_pid, "{o:#}");
    assert_eq!(o["creator"]["alive"], false, "{o:#}");
    assert_eq!(
        o["lock"],
        json!({"state": "held", "holder_tid": holder_tid, "holder_alive": false,
               "holder_pid": holder_pid, "holder_pid_namespace": "unknown",
               "poisoned": false, "poison": null}),
        "{o:#}"
    );
    let killed_json = o;

    let o = json_entry(&all, store.name());
    assert_eq!(o["state"], "store", "{o:#}");
    assert_eq!(o["entry_count"], 3, "{o:#}");

    let v = parse_json(&run(&["inspect", "--json", seg.name()]));
    assert_eq!(
        v["value"],
        json!({
            "value": 1234,
            "origin": {"x": ORIGIN.x, "y": ORIGIN.y},
            "samples": SAMPLES,
            "name": "hello",
            "_pad": 0,
        }),
        "{v:#}"
    );
    assert_eq!(v["schema_error"], Json::Null, "{v:#}");
    assert_eq!(v["has_schema"], true, "{v:#}");

    // A store's entries, each with its value.
    let v = parse_json(&run(&["inspect", "--json", store.name()]));
    let entries = v["entries"]
        .as_array()
        .unwrap_or_else(|| panic!("no `entries` array in {v:#}"));
    let keys: Vec<&str> = entries.iter().map(|e| e["key"].as_str().unwrap()).collect();
    let mut sorted = keys.clone();
    sorted.sort_unstable();
    assert_eq!(sorted, ["alpha", "beta", "gamma"], "{v:#}");
    let entry = |key: &str| entries.iter().find(|e| e["key"] == key).unwrap();
    assert_eq!(entry("alpha")["value"]["name"], "first", "{v:#}");
    assert_eq!(entry("alpha")["value"]["value"], 11, "{v:#}");
    assert_eq!(
        entry("beta")["value"],
        json!({"value": 22, "last_pid": 4242, "_pad": 0}),
        "{v:#}"
    );
    assert_eq!(entry("gamma")["value"], json!({"x": 5, "y": -6}), "{v:#}");
    assert_eq!(entry("gamma")["lock"]["state"], "free", "{v:#}");

    // The killed holder's segment: nobody has it mapped, so it is stale.
    let o = killed_json;
    assert_eq!(o["attached"], 0, "{o:#}");
    assert_eq!(o["present"]["writers"], 0, "{o:#}");
    assert_eq!(o["stale"], true, "{o:#}");
}

// ===========================================================================
// 9. watch

/// A running `shmstore watch`, its stdout lines on a channel.
struct Watch {
    child: std::process::Child,
    lines: Receiver<String>,
    seen: Vec<String>,
    stderr: std::thread::JoinHandle<String>,
}

impl Watch {
    fn start(args: &[&str]) -> Watch {
        let mut child = start_shmstore(args);
        let (tx, lines) = mpsc::channel();
        let out = child.stdout.take().unwrap();
        std::thread::spawn(move || {
            for line in BufReader::new(out).lines() {
                let Ok(line) = line else { break };
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        let mut err = child.stderr.take().unwrap();
        let stderr = std::thread::spawn(move || {
            let mut s = String::new();
            let _ = err.read_to_string(&mut s);
            s
        });
        Watch {
            child,
            lines,
            seen: Vec::new(),
            stderr,
        }
    }

    /// Waits for the next line, which must satisfy `pred`.
    #[track_caller]
    fn next(&mut self, what: &str, pred: impl Fn(&str) -> bool) {
        match self.lines.recv_timeout(PATIENCE) {
            Ok(l) => {
                let ok = pred(&l);
                self.seen.push(l);
                assert!(
                    ok,
                    "watch printed something else than {what}; it printed:\n{}",
                    self.seen.join("\n")
                );
            }
            Err(e) => panic!(
                "watch printed no {what} ({e:?}); it printed:\n{}",
                self.seen.join("\n")
            ),
        }
    }

    /// Asserts that it prints nothing for a while.
    #[track_caller]
    fn quiet(&mut self, why: &str) {
        if let Ok(l) = self.lines.recv_timeout(Duration::from_millis(300)) {
            self.seen.push(l);
            panic!("watch printed a line {why}:\n{}", self.seen.join("\n"));
        }
    }

    /// Waits for it to exit; its status code and stderr.
    fn finish(mut self) -> (Option<i32>, Vec<String>, String) {
        let deadline = Instant::now() + PATIENCE;
        let status = loop {
            if let Some(s) = self.child.try_wait().expect("waitpid") {
                break s;
            }
            if Instant::now() > deadline {
                let _ = self.child.kill();
                panic!(
                    "watch still running after {PATIENCE:?}; it printed:\n{}",
                    self.seen.join("\n")
                );
            }
            std::thread::sleep(Duration::from_millis(5));
        };
        while let Ok(l) = self.lines.recv_timeout(Duration::from_secs(2)) {
            self.seen.push(l);
        }
        let seen = std::mem::take(&mut self.seen);
        let stderr = std::mem::replace(&mut self.stderr, std::thread::spawn(String::new));
        (status.code(), seen, stderr.join().unwrap())
    }
}

impl Drop for Watch {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Whether a one-line `Gauge { value: N, ... }` (or `Counter { ... }`) in
/// `line` shows `value: N` with generation `generation`.
fn shows(line: &str, generation: u64, value: u64) -> bool {
    line.contains(&format!("gen {generation} ")) && line.contains(&format!("{{ value: {value},"))
}

#[test]
fn watch_prints_the_value_and_each_change_then_stops() {
    let _w = world();
    let seg = Segment::new("cli-watch");
    let (mut kid, _) = make_gauge("posix", seg.name(), 100, "watched", "stay");

    let mut watch = Watch::start(&["watch", seg.name(), "--count", "2"]);
    watch.next("the value now", |l| {
        shows(l, 1, 100)
            && l.contains("Gauge { value: 100, origin: Point { x: 7, y: -3 }, samples: [1, 2, 3, 4], name: \"watched\"")
    });
    // Nothing changes: nothing printed.
    watch.quiet("without a change");
    kid.send("set 101");
    kid.expect("done");
    watch.next("the change to 101", |l| shows(l, 2, 101));
    kid.send("set 102");
    kid.expect("done");
    watch.next("the change to 102", |l| shows(l, 3, 102));
    let (code, seen, stderr) = watch.finish();
    assert_eq!(
        (code, seen.len(), stderr.as_str()),
        (Some(0), 3, ""),
        "watch --count 2 did not stop after two changes; it printed:\n{}\nstderr: {stderr}",
        seen.join("\n")
    );
}

#[test]
fn watch_json_prints_one_object_per_version() {
    let _w = world();
    let seg = Segment::new("cli-watch-json");
    let (mut kid, _) = make_gauge("posix", seg.name(), 7, "j", "stay");

    let mut watch = Watch::start(&["watch", "--json", seg.name(), "--count", "1"]);
    watch.next("the value now", |l| l.contains("\"generation\":1"));
    kid.send("set 8");
    kid.expect("done");
    watch.next("the change", |l| l.contains("\"generation\":2"));
    let (code, seen, stderr) = watch.finish();
    assert_eq!(code, Some(0), "{}\n{stderr}", seen.join("\n"));
    let objects: Vec<Json> = seen
        .iter()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("line `{l}` is not JSON: {e}")))
        .collect();
    let got: Vec<(&Json, &Json, &Json)> = objects
        .iter()
        .map(|o| (&o["name"], &o["generation"], &o["value"]["value"]))
        .collect();
    let name = json!(seg.name());
    assert_eq!(
        got,
        [(&name, &json!(1), &json!(7)), (&name, &json!(2), &json!(8))],
        "{objects:#?}"
    );
    assert_eq!(objects[1]["value"]["name"], "j", "{objects:#?}");

    // --count 0: the value once.
    let out = run(&["watch", seg.name(), "--count", "0"]);
    let lines: Vec<&str> = out.ok().lines().collect();
    assert!(
        lines.len() == 1 && shows(lines[0], 2, 8),
        "{}",
        out.describe()
    );
}

#[test]
fn watch_entry_follows_one_entry_of_a_store() {
    let _w = world();
    let seg = Segment::new("cli-watch-entry");
    let mut kid = make_store(seg.name());

    let mut watch = Watch::start(&["watch", seg.name(), "--entry", "beta", "--count", "1"]);
    watch.next("beta now", |l| {
        l.contains("beta = ") && l.contains("Counter { value: 22, last_pid: 4242")
    });
    // A change of another entry is not a change of beta.
    kid.send("set alpha 12");
    kid.expect("done");
    watch.quiet("for a change of another entry");
    kid.send("set beta 23");
    kid.expect("done");
    watch.next("beta changed", |l| {
        l.contains("beta = ") && l.contains("{ value: 23,")
    });
    let (code, seen, stderr) = watch.finish();
    assert_eq!(code, Some(0), "{}\n{stderr}", seen.join("\n"));
    assert_eq!(seen.len(), 2, "{}", seen.join("\n"));
}

#[test]
fn watch_ends_with_an_error_when_the_segment_goes() {
    let _w = world();
    let seg = Segment::new("cli-watch-gone");
    let (_kid, _) = make_gauge("posix", seg.name(), 1, "x", "stay");
    let mut watch = Watch::start(&["watch", seg.name()]);
    watch.next("the value now", |l| shows(l, 1, 1));
    run(&["rm", "--force", seg.name()]).ok();
    let (code, seen, stderr) = watch.finish();
    assert_eq!(code, Some(1), "{}\n{stderr}", seen.join("\n"));
    let lines: Vec<&str> = stderr.lines().collect();
    assert!(
        lines.len() == 1 && lines[0].starts_with("shmstore: ") && lines[0].contains("removed"),
        "{stderr}"
    );
}

// ===========================================================================
// 10. gc and rm

/// Gives the segment at `path` to user and group 65534 (nobody).
fn give_away(path: &Path) {
    nix::unistd::chown(
        path,
        Some(nix::unistd::Uid::from_raw(65534)),
        Some(nix::unistd::Gid::from_raw(65534)),
    )
    .expect("chown");
}

#[test]
fn gc_removes_only_stale_segments() {
    let _w = whole_world();
    let dead = Segment::new("cli-gc-dead");
    make_gauge("posix", dead.name(), 1, "dead", "exit");
    let killed = Segment::new("cli-gc-killed");
    let (mut holder, _) = make_gauge("posix", killed.name(), 2, "killed", "hold");
    holder.kill();
    holder.wait();
    let dead_store = Segment::new("cli-gc-dead-store");
    let mut skid = Kid::spawn("store", &[dead_store.name(), "exit"]);
    skid.expect("ready");
    skid.wait_success();
    let live = Segment::new("cli-gc-live");
    let (_kid, _) = make_gauge("posix", live.name(), 3, "live", "stay");
    let store = Segment::new("cli-gc-store");
    let _skid = make_store(store.name());
    let foreign = Segment::new("cli-gc-foreign");
    std::fs::write(foreign.path(), b"somebody else's").unwrap();
    // Another user's stale segment (root can make one).
    let other = Segment::new("cli-gc-other");
    let other_user = common::is_root();
    if other_user {
        make_gauge("posix", other.name(), 6, "other", "exit");
        give_away(&other.path());
    } else {
        eprintln!("not root: no segment of another user");
    }
    let names = [
        dead.name(),
        killed.name(),
        dead_store.name(),
        live.name(),
        store.name(),
        foreign.name(),
        other.name(),
    ];
    let stale = [dead.name(), killed.name(), dead_store.name()];
    let action =
        |rows: &HashMap<String, (String, String)>, name: &str| rows.get(name).map(|r| r.0.clone());

    let rows = gc_rows(&["--dry-run"], &names);
    for name in [live.name(), store.name()] {
        assert_eq!(
            action(&rows, name).as_deref(),
            Some("kept"),
            "{name}: {rows:#?}"
        );
    }
    assert!(!rows.contains_key(foreign.name()), "{rows:#?}");
    if other_user {
        let (action, why) = &rows[other.name()];
        assert_eq!(action, "kept", "{rows:#?}");
        assert!(why.contains("--force"), "{rows:#?}");
    }
    for name in stale {
        assert_eq!(
            action(&rows, name).as_deref(),
            Some("would remove"),
            "{name}: {rows:#?}"
        );
    }
    if other_user {
        let forced = gc_rows(&["--dry-run", "--force"], &[other.name()]);
        assert_eq!(forced[other.name()].0, "would remove", "{forced:#?}");
    }
    for seg in [&dead, &killed, &dead_store, &live, &store, &foreign, &other] {
        assert!(
            seg.exists() || (!other_user && seg.name() == other.name()),
            "a dry run removed {}",
            seg.name()
        );
    }

    let rows = gc_rows(&[], &names);
    for name in stale {
        assert_eq!(
            action(&rows, name).as_deref(),
            Some("removed"),
            "{name}: {rows:#?}"
        );
    }
    assert!(!dead.exists(), "gc left the dead segment");
    assert!(!killed.exists(), "gc left the segment of the killed holder");
    assert!(!dead_store.exists(), "gc left the dead store");
    assert!(live.exists(), "gc removed a live segment");
    assert!(store.exists(), "gc removed a live store");
    assert!(foreign.exists(), "gc removed a foreign file");
    if other_user {
        assert!(other.exists(), "gc removed another user's segment");
    }
    // Nothing stale of ours is left.
    let again = gc_rows(&["--dry-run"], &names);
    assert!(
        again.values().all(|(action, _)| action == "kept"),
        "{again:#?}"
    );
}

#[test]
fn gc_removes_a_stale_sysv_segment_only() {
    let _w = whole_world();
    let dead = Key::in_range(KEY_BASE);
    make_gauge("sysv", &dead.arg(), 5, "dead sysv", "exit");
    let live = Key::in_range(KEY_BASE);
    let (_kid, _) = make_gauge("sysv", &live.arg(), 6, "live sysv", "stay");
    let (dead_name, live_name) = (key_text(&dead), key_text(&live));
    let names = [dead_name.as_str(), live_name.as_str()];

    let rows = gc_rows(&["--dry-run"], &names);
    assert_eq!(rows[dead_name.as_str()].0, "would remove", "{rows:#?}");
    assert_eq!(rows[live_name.as_str()].0, "kept", "{rows:#?}");
    assert!(listed(&dead_name), "a dry run removed the System V segment");

    let rows = gc_rows(&[], &names);
    assert_eq!(rows[dead_name.as_str()].0, "removed", "{rows:#?}");
    assert_eq!(rows[live_name.as_str()].0, "kept", "{rows:#?}");
    assert!(!listed(&dead_name), "gc left the dead System V segment");
    assert!(listed(&live_name), "gc removed the live System V segment");
}

#[test]
fn rm_refuses_a_live_segment_without_force() {
    let _w = world();
    let live = Segment::new("cli-rm-live");
    let (_kid, _) = make_gauge("posix", live.name(), 1, "live", "stay");
    let line = run(&["rm", live.name()]).error().to_owned();
    assert!(
        line.contains(live.name()) && line.contains("--force"),
        "the refusal does not name it or say how: {line}"
    );
    assert!(live.exists(), "rm removed a live segment");
    run(&["rm", "--force", live.name()]).ok();
    assert!(!live.exists(), "rm --force left it");

    let held = Segment::new("cli-rm-held");
    let (_holder, _) = make_gauge("posix", held.name(), 1, "held", "hold");
    run(&["rm", held.name()]).error();
    assert!(held.exists(), "rm removed a segment whose lock is held");

    let dead = Segment::new("cli-rm-dead");
    make_gauge("posix", dead.name(), 1, "dead", "exit");
    // A command another test runs meanwhile (`ls`, `inspect`) maps every
    // segment for a moment: then `rm` rightly refuses; ask again.
    let mut out = run(&["rm", dead.name()]);
    for _ in 0..10 {
        if out.code == Some(0) || !out.stderr.contains("has it mapped") {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(200));
        out = run(&["rm", dead.name()]);
    }
    out.ok();
    assert!(!dead.exists(), "rm left a stale segment");
    run(&["rm", dead.name()]).error();
}

#[test]
fn rm_by_key_refuses_a_live_sysv_segment_without_force() {
    let _w = world();
    let key = Key::in_range(KEY_BASE);
    let name = key_text(&key);
    let (mut kid, _) = make_gauge("sysv", &key.arg(), 1, "live sysv", "stay");
    run(&["rm", "--key", &name]).error();
    assert!(listed(&name), "rm removed a live System V segment");
    kid.send("quit");
    kid.wait_success();
    run(&["rm", "--key", &name]).ok();
    assert!(!listed(&name), "rm left a stale System V segment");
}

#[test]
fn rm_refuses_another_users_segment_without_force() {
    if !common::is_root() {
        eprintln!("skipped: needs root to give a segment to another user");
        return;
    }
    let _w = world();
    let seg = Segment::new("cli-rm-other");
    make_gauge("posix", seg.name(), 1, "other", "exit");
    give_away(&seg.path());
    let line = run(&["rm", seg.name()]).error().to_owned();
    assert!(line.contains("65534"), "{line}");
    assert!(seg.exists());
    run(&["rm", "--force", seg.name()]).ok();
    assert!(!seg.exists());
}

/// Damaged segments (our magic, a header that is wrong, or cut short) are
/// never stale: `gc` keeps them, `rm` refuses them without `--force`.
#[test]
fn damaged_segments_are_kept_by_gc_and_need_force_to_rm() {
    let _w = whole_world();
    let truncated = Segment::new("cli-gc-truncated");
    make_gauge("posix", truncated.name(), 1, "cut", "exit");
    let len = std::fs::metadata(truncated.path()).unwrap().len();
    std::fs::OpenOptions::new()
        .write(true)
        .open(truncated.path())
        .unwrap()
        .set_len(len - 8)
        .unwrap();
    let bad = Segment::new("cli-gc-badheader");
    make_gauge("posix", bad.name(), 2, "bad", "exit");
    write_at(&bad.path(), VALUE_SIZE_AT, &(1u64 << 40).to_ne_bytes());
    let names = [truncated.name(), bad.name()];

    for extra in [&["--dry-run"][..], &[]] {
        let rows = gc_rows(extra, &names);
        for name in names {
            let (action, why) = &rows[name];
            assert_eq!(action, "kept", "{name}: {rows:#?}");
            assert!(why.contains("damaged"), "{name}: {rows:#?}");
        }
    }
    for seg in [&truncated, &bad] {
        assert!(seg.exists(), "gc removed the damaged {}", seg.name());
        let line = run(&["rm", seg.name()]).error().to_owned();
        assert!(
            line.contains("damaged") && line.contains("--force"),
            "{line}"
        );
        assert!(
            seg.exists(),
            "rm removed the damaged {} without --force",
            seg.name()
        );
        run(&["rm", "--force", seg.name()]).ok();
        assert!(!seg.exists(), "rm --force left {}", seg.name());
    }
}

/// One definition of live for `rm` and `gc`: a segment whose creator still
/// runs is live even when no process maps it.
#[test]
fn rm_and_gc_agree_that_a_running_creator_keeps_its_segment_live() {
    let _w = whole_world();
    let seg = Segment::new("cli-live-creator");
    let (mut kid, _) = make_gauge("posix", seg.name(), 1, "unmapped", "drop-stay");
    let row = ls_row(&[], seg.name());
    assert_eq!(row["ATTACHED"], "0", "{row:?}");
    let (action, why) = gc_rows(&[], &[seg.name()]).remove(seg.name()).unwrap();
    assert_eq!(action, "kept", "{why}");
    assert!(why.contains("creator") && why.contains("running"), "{why}");
    let line = run(&["rm", seg.name()]).error().to_owned();
    assert!(
        line.contains("creator") && line.contains("running") && line.contains("--force"),
        "{line}"
    );
    assert!(seg.exists(), "rm removed a segment whose creator runs");
    kid.send("quit");
    kid.wait_success();
    run(&["rm", seg.name()]).ok();
    assert!(!seg.exists(), "rm left a stale segment");
}

/// A FIFO, a socket, a directory and a symbolic link under a name: listed
/// by `ls --all` as foreign, saying what they are; `inspect`, `rm` and `gc`
/// answer at once and leave them alone.
#[test]
fn objects_that_are_no_files_are_foreign_and_never_block_the_command() {
    let _w = whole_world();
    let fifo = Segment::new("cli-fifo");
    nix::unistd::mkfifo(
        &fifo.path(),
        nix::sys::stat::Mode::from_bits_truncate(0o600),
    )
    .unwrap();
    let socket = Segment::new("cli-socket");
    let _bound = std::os::unix::net::UnixListener::bind(socket.path()).unwrap();
    let dir = Segment::new("cli-dir");
    std::fs::create_dir(dir.path()).unwrap();
    let link = Segment::new("cli-link");
    std::os::unix::fs::symlink("/nonexistent/shmstore-cli", link.path()).unwrap();
    let kinds = [
        (&fifo, "FIFO"),
        (&socket, "socket"),
        (&dir, "directory"),
        (&link, "symbolic link"),
    ];
    let names: Vec<&str> = kinds.iter().map(|(s, _)| s.name()).collect();

    let rows = ls_rows(&["--all"], &names);
    let hidden = ls_rows(&[], &names);
    for (seg, word) in kinds {
        let row = &rows
            .get(seg.name())
            .unwrap_or_else(|| panic!("ls --all does not list {}: {rows:#?}", seg.name()));
        assert!(
            row["TYPE"].starts_with("foreign") && row["TYPE"].contains(word),
            "{row:?}"
        );
        assert!(!hidden.contains_key(seg.name()), "listed without --all");
        let out = run(&["inspect", seg.name()]);
        assert!(out.ok().contains(word), "{}", out.describe());
        let line = run(&["rm", seg.name()]).error().to_owned();
        assert!(line.contains("--force"), "{line}");
    }
    let gc = gc_rows(&[], &names);
    assert!(gc.is_empty(), "gc judged foreign objects: {gc:#?}");
    assert!(std::fs::symlink_metadata(fifo.path())
        .unwrap()
        .file_type()
        .is_fifo());
    assert!(dir.path().is_dir());
    assert!(std::fs::symlink_metadata(link.path())
        .unwrap()
        .file_type()
        .is_symlink());
    let _ = std::fs::remove_file(fifo.path());
    let _ = std::fs::remove_file(socket.path());
    let _ = std::fs::remove_dir(dir.path());
    let _ = std::fs::remove_file(link.path());
}

/// The temporary name of a new segment (`.shmstore-new.HASH.PID.N`): hidden
/// from `ls` unless `--all`, shown as unfinished with whether its creator
/// runs; `gc` removes it once its creator is dead.
#[test]
fn unfinished_temporary_names_are_hidden_and_collected_when_their_creator_is_dead() {
    let _w = whole_world();
    // A pid that cannot run (above the kernel's limit), and ours.
    let n = std::process::id();
    let dead = format!(".shmstore-new.00000000c11dead0.{}.{n}", 1 << 23);
    let alive = format!(".shmstore-new.00000000c11a11e0.{n}.{n}");
    for name in [&dead, &alive] {
        std::fs::write(Path::new("/dev/shm").join(name), b"SHMSTORE").unwrap();
    }
    let names = [dead.as_str(), alive.as_str()];
    assert!(ls_rows(&[], &names).is_empty(), "temporary names listed");
    let rows = ls_rows(&["--all"], &names);
    assert_eq!(rows[&dead]["TYPE"], "unfinished, creator dead", "{rows:#?}");
    assert_eq!(
        rows[&alive]["TYPE"], "unfinished, creator alive",
        "{rows:#?}"
    );

    let gc = gc_rows(&[], &names);
    assert_eq!(gc[&dead].0, "removed", "{gc:#?}");
    assert_eq!(gc[&alive].0, "kept", "{gc:#?}");
    assert!(!Path::new("/dev/shm").join(&dead).exists());
    assert!(Path::new("/dev/shm").join(&alive).exists());
    std::fs::remove_file(Path::new("/dev/shm").join(&alive)).unwrap();
}

// ===========================================================================
// 10b. Across PID namespaces
//
// Children in PID (and mount) namespaces of their own, as containers that
// share /dev/shm and the System V IPC namespace with the host: `ls` and
// `inspect` say who is present and where a lock holder is; `gc` keeps a
// segment while a process of any namespace is present in it, and removes
// it once the kernel tells that all of them are gone. They need root (new
// PID namespaces): without it they print "skip: needs root" and pass.

/// Whether the tests of this section can run here.
fn can_make_namespaces() -> bool {
    if common::is_root() {
        return true;
    }
    eprintln!("skip: needs root");
    false
}

/// The `ls` row of `name` once `ok` holds for it (within 5 s).
#[track_caller]
fn ls_row_once(
    name: &str,
    what: &str,
    ok: impl Fn(&HashMap<String, String>) -> bool,
) -> HashMap<String, String> {
    let mut row = ls_row(&[], name);
    let shown = eventually(Duration::from_secs(5), || {
        row = ls_row(&[], name);
        ok(&row)
    });
    assert!(shown, "{name}: never {what}: {row:?}");
    row
}

#[test]
fn gc_keeps_a_segment_present_in_another_pid_namespace_until_its_processes_die() {
    if !can_make_namespaces() {
        return;
    }
    // No other test's `ls` maps the segment meanwhile (it would be a reader).
    let _w = whole_world();
    let seg = Segment::new("cli-ns-creator");
    let mut creator = Kid::spawn_in(
        Apart::container(),
        "make",
        &["posix", seg.name(), "7", "apart", "stay"],
    );
    creator.expect("ready");

    let row = ls_row(&[], seg.name());
    // The creator is init of its own namespace: pid 1 there.
    assert_eq!(row["CREATOR"], "pid 1 in another PID namespace", "{row:?}");
    assert_eq!(row["PRESENT"], "1 writer", "{row:?}");
    let o = json_entry(&parse_json(&run(&["ls", "--json"])), seg.name());
    assert_eq!(o["present"], json!({"writers": 1, "readers": 0}), "{o:#}");
    assert_eq!(o["creator"]["pid"], 1, "{o:#}");
    assert_eq!(o["creator"]["pid_namespace"], "other", "{o:#}");
    // Whether it runs cannot be checked from here: neither true nor false.
    assert_eq!(o["creator"]["alive"], Json::Null, "{o:#}");
    assert_eq!(o["stale"], false, "{o:#}");
    let out = run(&["inspect", seg.name()]);
    let text = out.ok();
    assert!(
        normalised(text)
            .iter()
            .any(|l| l.starts_with("creator: pid 1 (in another PID namespace)")),
        "{}",
        out.describe()
    );
    assert!(
        has_line(text, "present: 1 writer (in any PID namespace)"),
        "{}",
        out.describe()
    );

    let rows = gc_rows(&[], &[seg.name()]);
    let (action, why) = &rows[seg.name()];
    assert_eq!(action, "kept", "{rows:#?}");
    assert_eq!(why, "1 writer present", "{rows:#?}");
    assert!(seg.exists(), "gc removed a segment its creator uses");
    let refused = run(&["rm", seg.name()]).error().to_owned();
    assert!(refused.contains("1 writer present"), "{refused}");

    // Once the creator is gone, nothing keeps the segment: it used to be
    // kept forever, its creator's liveness being unknowable from here.
    creator.kill_player();
    ls_row_once(seg.name(), "left by its creator", |r| {
        r["PRESENT"] == "none" && r["ATTACHED"] == "0"
    });
    let rows = gc_rows(&[], &[seg.name()]);
    let (action, why) = &rows[seg.name()];
    assert_eq!(action, "removed", "{rows:#?}");
    assert_eq!(
        why,
        "creator pid 1 in another PID namespace, no process present, not mapped by any \
         process, lock free",
        "{rows:#?}"
    );
    assert!(!seg.exists(), "gc left the segment");
}

#[test]
fn a_reader_in_another_pid_namespace_keeps_gc_away() {
    if !can_make_namespaces() {
        return;
    }
    let _w = whole_world();
    let seg = Segment::new("cli-ns-reader");
    make_gauge("posix", seg.name(), 8, "read", "exit");
    let mut reader = Kid::spawn_in(Apart::container(), "read", &[seg.name()]);
    assert_eq!(reader.expect("ready"), "value=8");

    let row = ls_row(&[], seg.name());
    assert_eq!(row["PRESENT"], "1 reader", "{row:?}");
    let rows = gc_rows(&[], &[seg.name()]);
    assert_eq!(
        rows[seg.name()],
        ("kept".to_owned(), "1 reader present".to_owned()),
        "{rows:#?}"
    );
    assert!(seg.exists(), "gc removed a segment a reader uses");

    reader.kill_player();
    ls_row_once(seg.name(), "left by its reader", |r| {
        r["PRESENT"] == "none" && r["ATTACHED"] == "0"
    });
    let rows = gc_rows(&[], &[seg.name()]);
    assert_eq!(rows[seg.name()].0, "removed", "{rows:#?}");
    assert!(!seg.exists(), "gc left the segment");
}

#[test]
fn a_lock_holder_in_another_pid_namespace_is_shown_as_such() {
    if !can_make_namespaces() {
        return;
    }
    let _w = world();
    let seg = Segment::new("cli-ns-holder");
    let mut holder = Kid::spawn_in(
        Apart::container(),
        "make",
        &["posix", seg.name(), "9", "held", "hold"],
    );
    let said = holder.expect("ready");
    let tid: u32 = field(&said, "tid").parse().unwrap();
    // A holder in this namespace, for comparison.
    let here = Segment::new("cli-ns-holder-here");
    let (mut local, said) = make_gauge("posix", here.name(), 10, "here", "hold");
    let local_tid: u32 = field(&said, "tid").parse().unwrap();
    // A store entry locked from another namespace.
    let store = Segment::new("cli-ns-holder-store");
    let _skid = make_store(store.name());
    let mut entry_holder = Kid::spawn_in(Apart::container(), "hold-entry", &[store.name(), "beta"]);
    let said = entry_holder.expect("ready");
    let entry_tid: u32 = field(&said, "tid").parse().unwrap();
    assert_eq!(field(&said, "pid"), "1", "{said}");

    let apart = format!("held by {tid} (pid 1 in another PID namespace, alive)");
    let row = ls_row(&[], seg.name());
    assert_eq!(row["LOCK"], apart, "{row:?}");
    let out = run(&["inspect", seg.name()]);
    assert!(
        has_line(out.ok(), &format!("lock: {apart}")),
        "{}",
        out.describe()
    );
    let v = parse_json(&run(&["inspect", "--json", seg.name()]));
    assert_eq!(v["lock"]["holder_tid"], tid, "{v:#}");
    assert_eq!(v["lock"]["holder_pid"], 1, "{v:#}");
    assert_eq!(v["lock"]["holder_pid_namespace"], "other", "{v:#}");
    assert_eq!(v["lock"]["holder_alive"], true, "{v:#}");

    let v = parse_json(&run(&["inspect", "--json", here.name()]));
    assert_eq!(v["lock"]["holder_tid"], local_tid, "{v:#}");
    assert_eq!(v["lock"]["holder_pid"], local.pid(), "{v:#}");
    assert_eq!(v["lock"]["holder_pid_namespace"], "this", "{v:#}");
    let row = ls_row(&[], here.name());
    assert_eq!(
        row["LOCK"],
        format!("held by {local_tid} (alive)"),
        "{row:?}"
    );

    let out = run(&["inspect", store.name()]);
    let entry_line = format!("lock: held by {entry_tid} (pid 1 in another PID namespace, alive)");
    assert!(has_line(out.ok(), &entry_line), "{}", out.describe());
    let v = parse_json(&run(&["inspect", "--json", store.name()]));
    let beta = v["entries"]
        .as_array()
        .and_then(|e| e.iter().find(|e| e["key"] == "beta"))
        .unwrap_or_else(|| panic!("no entry beta: {v:#}"));
    assert_eq!(beta["lock"]["holder_pid_namespace"], "other", "{v:#}");
    assert_eq!(beta["lock"]["holder_pid"], 1, "{v:#}");

    // Killed: dead, wherever it ran.
    holder.kill_player();
    entry_holder.kill_player();
    local.kill();
    local.wait();
    let dead = format!("held by {tid} (dead)");
    ls_row_once(seg.name(), "shown with its holder dead", |r| {
        r["LOCK"] == dead
    });
    let out = run(&["inspect", seg.name()]);
    assert!(
        has_line(out.ok(), &format!("lock: {dead}")),
        "{}",
        out.describe()
    );
    let v = parse_json(&run(&["inspect", "--json", seg.name()]));
    assert_eq!(v["lock"]["holder_alive"], false, "{v:#}");
    assert_eq!(v["lock"]["holder_pid"], 1, "{v:#}");
    let row = ls_row(&[], here.name());
    assert_eq!(
        row["LOCK"],
        format!("held by {local_tid} (dead)"),
        "{row:?}"
    );
    let entry_dead = format!("lock: held by {entry_tid} (dead)");
    let mut text = String::new();
    let shown = eventually(Duration::from_secs(5), || {
        text = run(&["inspect", store.name()]).ok().to_owned();
        has_line(&text, &entry_dead)
    });
    assert!(shown, "the entry's holder not shown dead:\n{text}");
}

/// Removes a file on drop (a stand-in a test made, if gc did not).
struct RemoveOnDrop(PathBuf);

impl Drop for RemoveOnDrop {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

/// The stand-in name of System V segment `id` in the IPC namespace of
/// inode `ns`.
fn stand_in_name(ns: u64, id: i32) -> String {
    format!(".shmstore-sysv.{ns}.{id}")
}

/// This process's IPC namespace inode.
fn ipc_namespace() -> u64 {
    use std::os::unix::fs::MetadataExt;
    std::fs::metadata("/proc/self/ns/ipc").unwrap().ino()
}

#[test]
fn gc_removes_orphaned_sysv_stand_ins_only() {
    let _w = whole_world();
    let ns = ipc_namespace();
    // A segment removed behind the library's back (as `ipcrm` does).
    let gone = Key::in_range(KEY_BASE);
    make_gauge("sysv", &gone.arg(), 11, "gone", "exit");
    let gone_id = json_entry(&parse_json(&run(&["ls", "--json"])), &key_text(&gone))["sysv_id"]
        .as_i64()
        .expect("a System V id") as i32;
    let removed_name = stand_in_name(ns, gone_id);
    let removed_path = Path::new("/dev/shm").join(&removed_name);
    let _clean = RemoveOnDrop(removed_path.clone());
    assert!(removed_path.exists(), "no stand-in for the segment");
    // SAFETY: IPC_RMID takes no buffer (a null pointer, as the manual page
    // passes); `gone_id` is the id of this test's own segment.
    let rc = unsafe { libc::shmctl(gone_id, libc::IPC_RMID, std::ptr::null_mut()) };
    assert_eq!(
        rc,
        0,
        "shmctl(IPC_RMID): {}",
        std::io::Error::last_os_error()
    );
    // One made by hand, for an id no segment has.
    let listed_ids = std::fs::read_to_string("/proc/sysvipc/shm").unwrap();
    let free_id = (0x7ff0_0000 + (std::process::id() & 0xffff) as i32..)
        .find(|id| {
            !listed_ids
                .lines()
                .any(|l| l.split_whitespace().nth(1) == Some(&id.to_string()))
        })
        .unwrap();
    let by_hand_name = stand_in_name(ns, free_id);
    let by_hand = Path::new("/dev/shm").join(&by_hand_name);
    let _clean2 = RemoveOnDrop(by_hand.clone());
    std::fs::write(&by_hand, b"").unwrap();
    // One of another IPC namespace (whose segments cannot be seen here).
    let foreign_ns_name = stand_in_name(ns ^ 1, free_id);
    let foreign_ns = Path::new("/dev/shm").join(&foreign_ns_name);
    let _clean3 = RemoveOnDrop(foreign_ns.clone());
    std::fs::write(&foreign_ns, b"").unwrap();
    // A live segment's.
    let live = Key::in_range(KEY_BASE);
    let (_kid, _) = make_gauge("sysv", &live.arg(), 12, "live", "stay");
    let live_id = json_entry(&parse_json(&run(&["ls", "--json"])), &key_text(&live))["sysv_id"]
        .as_i64()
        .expect("a System V id") as i32;
    let live_name = stand_in_name(ns, live_id);
    let live_path = Path::new("/dev/shm").join(&live_name);
    assert!(live_path.exists(), "no stand-in for the live segment");
    // Its creator shows itself in it through the stand-in.
    let row = ls_row(&[], &key_text(&live));
    assert_eq!(row["PRESENT"], "1 writer", "{row:?}");

    // `ls` never lists stand-ins, even with --all.
    let everything = run(&["ls", "--all"]);
    assert!(
        !everything.ok().contains(".shmstore-sysv."),
        "{}",
        everything.describe()
    );

    let names = [
        removed_name.as_str(),
        by_hand_name.as_str(),
        foreign_ns_name.as_str(),
        live_name.as_str(),
    ];
    let rows = gc_rows(&["--dry-run"], &names);
    for (name, id) in [(&removed_name, gone_id), (&by_hand_name, free_id)] {
        assert_eq!(
            rows.get(name.as_str()),
            Some(&(
                "would remove".to_owned(),
                format!("stand-in of System V segment id {id}, which no longer exists")
            )),
            "{rows:#?}"
        );
    }
    assert!(!rows.contains_key(&foreign_ns_name), "{rows:#?}");
    assert!(!rows.contains_key(&live_name), "{rows:#?}");
    assert!(
        removed_path.exists() && by_hand.exists(),
        "a dry run removed a stand-in"
    );

    let rows = gc_rows(&[], &names);
    for name in [&removed_name, &by_hand_name] {
        assert_eq!(rows[name.as_str()].0, "removed", "{rows:#?}");
    }
    assert!(
        !removed_path.exists(),
        "gc left the stand-in of a removed segment"
    );
    assert!(!by_hand.exists(), "gc left an orphaned stand-in");
    assert!(
        foreign_ns.exists(),
        "gc removed another IPC namespace's stand-in"
    );
    assert!(live_path.exists(), "gc removed a live segment's stand-in");
    assert!(listed(&key_text(&live)), "gc removed the live segment");
}

// ===========================================================================
// 11. Errors

#[test]
fn errors_are_one_line_and_usage_errors_exit_2() {
    let missing = format!("shmstore-it-cli-missing-{}", std::process::id());
    let line = run(&["inspect", &missing]).error().to_owned();
    assert!(
        line.contains(&missing),
        "the error does not name it: {line}"
    );
    run(&["rm", &missing]).error();
    run(&["rm", "--force", &missing]).error();
    run(&["watch", &missing, "--count", "1"]).error();
    run(&["inspect", "--file", "/nonexistent/shmstore-cli"]).error();
    run(&["inspect", "bad/name"]).error();
    run(&["inspect", "--key", "0x62ffffff"]).error();

    for args in [
        &["frobnicate"][..],
        &[],
        &["inspect"],
        &["inspect", "a", "--key", "1"],
        &["ls", "--bogus"],
        &["watch", "x", "--count", "many"],
        &["inspect", "--key", "nonsense"],
    ] {
        let out = run(args);
        out.no_panic();
        assert_eq!(out.code, Some(2), "{}", out.describe());
        assert!(out.stdout.is_empty(), "{}", out.describe());
    }
}
