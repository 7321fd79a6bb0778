//! Helpers for tests that run parts of themselves in other processes.
//!
//! A child process is this test binary run again with `--exact <entry>` and
//! the role to play in the `SHMSTORE_CHILD` environment variable. The entry
//! is the `child_entry` test of the file that spawns the child (see
//! [`entry_of`]): `child_entry` in tests/cli.rs, `shared::child_entry` in
//! tests/shmstore/shared.rs; it returns at once unless that variable is set.
//! Children talk to the parent in lines on stdout that start with `@@ `
//! (everything else there is the test harness talking) and take commands as
//! lines on stdin.
//!
//! Every child is SIGKILLed and reaped when its [`Kid`] is dropped, and gets
//! SIGKILL from the kernel if the thread that started it goes away, so no
//! child outlives its test even when an assertion fails. Every segment name
//! comes from [`Segment`], which unlinks it when dropped.

#![allow(dead_code)]

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::os::unix::process::ExitStatusExt;
use std::path::PathBuf;
use std::process::{Child, ChildStdin, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

/// The numbers in a segment's header (src/segment/header.rs, `Header`):
/// the offset and width of each; the magic and the type name are bytes.
pub const HEADER_NUMBERS: [(usize, usize); 17] = [
    (8, 4),   // version
    (12, 4),  // state
    (16, 4),  // header_size
    (20, 4),  // kind
    (24, 8),  // total_size
    (32, 8),  // fingerprint
    (40, 8),  // value_size
    (48, 8),  // value_align
    (56, 8),  // value_offset
    (64, 8),  // lock_offset
    (72, 4),  // creator_pid
    (76, 4),  // creator_uid
    (80, 8),  // creator_start
    (88, 8),  // pid_ns
    (96, 8),  // created_unix_ns
    (104, 4), // type_name_len
    (108, 4), // schema_len
];

/// Rewrites the header of the segment file at `path` as a build of the
/// other byte order writes it: the bytes of every number reversed, built by
/// hand from the documented layout. Returns the file's new contents.
pub fn forge_other_byte_order(path: &std::path::Path) -> Vec<u8> {
    let mut bytes = std::fs::read(path).expect("reading the segment");
    for (at, len) in HEADER_NUMBERS {
        bytes[at..at + len].reverse();
    }
    std::fs::write(path, &bytes).expect("writing the forged header");
    bytes
}

/// `big-endian` or `little-endian`: the byte order of builds other than
/// this one, as messages name it.
pub fn other_byte_order() -> &'static str {
    if cfg!(target_endian = "little") {
        "big-endian"
    } else {
        "little-endian"
    }
}

/// This build's byte order, as messages name it.
pub fn this_byte_order() -> &'static str {
    if cfg!(target_endian = "little") {
        "little-endian"
    } else {
        "big-endian"
    }
}

/// The variable that carries a child's role (`role:arg:arg...`).
pub const CHILD_ENV: &str = "SHMSTORE_CHILD";
/// The variable that carries the entry test a child was started for.
const ENTRY_ENV: &str = "SHMSTORE_CHILD_ENTRY";
/// The variable that carries the parent's pid (for the parent-death check).
const PARENT_ENV: &str = "SHMSTORE_CHILD_PARENT";
/// The name of the `#[test]` function that plays roles in children, one in
/// each file that starts children.
pub const ENTRY: &str = "child_entry";
/// What every protocol line starts with.
const TAG: &str = "@@ ";
/// How long a parent waits for a line or an exit it expects, at most. Only a
/// guard against hanging forever: nothing is measured with it.
pub const PATIENCE: Duration = Duration::from_secs(30);

// ---------------------------------------------------------------------------
// Names

static SEQ: AtomicU32 = AtomicU32::new(0);

/// A segment name unique to this test, process and call; unlinked on drop
/// (whatever it holds, and ignoring `NotFound`).
pub struct Segment {
    name: String,
}

impl Segment {
    pub fn new(test: &str) -> Segment {
        let n = SEQ.fetch_add(1, Ordering::Relaxed);
        Segment {
            name: format!("shmstore-it-{test}-{}-{n}", std::process::id()),
        }
    }

    /// Takes care of a name made some other way.
    pub fn exact(name: String) -> Segment {
        Segment { name }
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    /// Where the object lives in the file system.
    pub fn path(&self) -> PathBuf {
        PathBuf::from(format!("/dev/shm/{}", self.name))
    }

    pub fn exists(&self) -> bool {
        self.path().symlink_metadata().is_ok()
    }
}

impl Drop for Segment {
    fn drop(&mut self) {
        // The type parameter does not matter to unlink.
        let _ = shmstore::unlink(&self.name);
        // And what creators of this name killed mid-way left.
        for temp in temporaries(&self.name) {
            let _ = std::fs::remove_file(format!("/dev/shm/{temp}"));
        }
    }
}

/// The temporary names in /dev/shm of segments being made under `name`
/// (hidden files named after a hash of the final name: FNV-1a, 64 bits, in
/// hex, as src/segment/publish.rs makes them).
pub fn temporaries(name: &str) -> Vec<String> {
    let hash = name.bytes().fold(0xcbf2_9ce4_8422_2325u64, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
    });
    let stem = format!(".shmstore-new.{hash:016x}.");
    std::fs::read_dir("/dev/shm")
        .map(|dir| {
            dir.filter_map(|e| e.ok()?.file_name().into_string().ok())
                .filter(|n| n.starts_with(&stem))
                .collect()
        })
        .unwrap_or_default()
}

// ---------------------------------------------------------------------------
// Parent side

/// A child process playing a role; killed and reaped when dropped.
pub struct Kid {
    child: Child,
    role: String,
    stdin: Option<ChildStdin>,
    lines: Receiver<String>,
    stderr: Arc<Mutex<String>>,
    /// Closed when the stderr reader has read to the end.
    stderr_done: Receiver<()>,
    status: Option<ExitStatus>,
}

impl Kid {
    /// Starts this binary again to play `role` with `args`, in the
    /// `child_entry` test of the file this is called from.
    #[track_caller]
    pub fn spawn(role: &str, args: &[&str]) -> Kid {
        let mut spec = role.to_owned();
        for a in args {
            assert!(!a.contains(':'), "argument {a:?} may not contain ':'");
            spec.push(':');
            spec.push_str(a);
        }
        let entry = entry_of(std::panic::Location::caller().file());
        let exe = std::env::current_exe().expect("current_exe");
        let mut child = Command::new(exe)
            .args(["--exact", &entry, "--nocapture", "--test-threads=1", "-q"])
            .env(CHILD_ENV, &spec)
            .env(ENTRY_ENV, &entry)
            .env(PARENT_ENV, std::process::id().to_string())
            // Roles put large values on the stack of the harness's thread.
            .env("RUST_MIN_STACK", (16 << 20).to_string())
            .env_remove("RUST_BACKTRACE")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawning a child process");

        let (tx, lines) = mpsc::channel();
        let out = child.stdout.take().unwrap();
        std::thread::spawn(move || {
            for line in BufReader::new(out).lines() {
                let Ok(line) = line else { break };
                // The harness may print on the same line before us.
                if let Some(at) = line.find(TAG) {
                    if tx.send(line[at + TAG.len()..].to_owned()).is_err() {
                        break;
                    }
                }
            }
        });
        let stderr = Arc::new(Mutex::new(String::new()));
        let mut err = child.stderr.take().unwrap();
        let sink = stderr.clone();
        let (done, stderr_done) = mpsc::channel::<()>();
        std::thread::spawn(move || {
            let _done = done; // dropped at the end of the child's stderr
            let mut buf = [0u8; 4096];
            while let Ok(n) = err.read(&mut buf) {
                if n == 0 {
                    break;
                }
                sink.lock()
                    .unwrap()
                    .push_str(&String::from_utf8_lossy(&buf[..n]));
            }
        });
        let stdin = child.stdin.take();
        Kid {
            child,
            role: spec,
            stdin,
            lines,
            stderr,
            stderr_done,
            status: None,
        }
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// What the child wrote on stderr so far (for failure messages); all
    /// of it once the child has been reaped (the reader is given up to 2 s
    /// to reach the end).
    pub fn stderr(&self) -> String {
        if self.status.is_some() {
            let _ = self.stderr_done.recv_timeout(Duration::from_secs(2));
        }
        self.stderr.lock().unwrap().clone()
    }

    fn describe(&self) -> String {
        format!(
            "child {} ({}), stderr:\n{}",
            self.child.id(),
            self.role,
            self.stderr()
        )
    }

    /// The next protocol line, or `None` if none comes within `timeout`
    /// (or the child closed its stdout).
    pub fn line_within(&mut self, timeout: Duration) -> Option<String> {
        self.lines.recv_timeout(timeout).ok()
    }

    /// The next protocol line, which must start with `prefix`; returns the
    /// rest of it (trimmed).
    pub fn expect(&mut self, prefix: &str) -> String {
        match self.lines.recv_timeout(PATIENCE) {
            Ok(l) => match l.strip_prefix(prefix) {
                Some(rest) => rest.trim().to_owned(),
                None => panic!("expected `{prefix}...`, got `{l}` from {}", self.describe()),
            },
            Err(RecvTimeoutError::Timeout) => {
                panic!(
                    "no `{prefix}` line within {PATIENCE:?} from {}",
                    self.describe()
                )
            }
            Err(RecvTimeoutError::Disconnected) => {
                // Let the stderr reader catch up before reporting.
                let status = self.wait_within(Duration::from_secs(2));
                std::thread::sleep(Duration::from_millis(50));
                panic!(
                    "child ended ({status:?}) before saying `{prefix}`: {}",
                    self.describe()
                )
            }
        }
    }

    /// Sends a command line to the child.
    pub fn send(&mut self, line: &str) {
        let stdin = self.stdin.as_mut().expect("stdin still open");
        writeln!(stdin, "{line}").expect("writing to the child");
        stdin.flush().unwrap();
    }

    /// SIGKILLs the child (does not reap it).
    pub fn kill(&mut self) {
        self.child.kill().expect("SIGKILL");
    }

    /// Waits up to `timeout` for the child to exit; reaps it.
    pub fn wait_within(&mut self, timeout: Duration) -> Option<ExitStatus> {
        if self.status.is_some() {
            return self.status;
        }
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(s) = self.child.try_wait().expect("waitpid") {
                self.status = Some(s);
                return Some(s);
            }
            if Instant::now() >= deadline {
                return None;
            }
            std::thread::sleep(Duration::from_millis(2));
        }
    }

    /// Waits for the child to exit and returns its status.
    pub fn wait(&mut self) -> ExitStatus {
        match self.wait_within(PATIENCE) {
            Some(s) => s,
            None => panic!("still running after {PATIENCE:?}: {}", self.describe()),
        }
    }

    /// Waits for the child to exit and asserts it exited with code 0.
    pub fn wait_success(&mut self) {
        let status = self.wait();
        assert!(
            status.success(),
            "exited with {status:?} (signal {:?}): {}",
            status.signal(),
            self.describe()
        );
    }
}

impl Drop for Kid {
    fn drop(&mut self) {
        if self.status.is_none() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// The `child_entry` test of the test file at `file` (a path that ends in
/// `tests/...`), as the harness names it: `child_entry` for a test binary of
/// one file (tests/cli.rs) or the root of one (tests/shmstore/main.rs),
/// `store::processes::child_entry` for the module in
/// tests/shmstore/store/processes.rs.
pub fn entry_of(file: &str) -> String {
    let parts: Vec<&str> = std::path::Path::new(file)
        .iter()
        .map(|p| p.to_str().expect("a UTF-8 path"))
        .collect();
    let tests = parts
        .iter()
        .rposition(|p| *p == "tests")
        .unwrap_or_else(|| panic!("{file} is not under tests/"));
    // Leave out the binary's own file or folder, and `.rs`.
    let mut path: Vec<&str> = parts[tests + 2..].to_vec();
    if let Some(last) = path.last_mut() {
        *last = last.strip_suffix(".rs").unwrap_or(last);
    }
    if path.last().is_some_and(|m| *m == "main" || *m == "mod") {
        path.pop();
    }
    path.push(ENTRY);
    path.join("::")
}

/// Waits for the tests that need the whole machine to themselves (they keep
/// every core busy with processes of their own), so that no two of them
/// run at once, in any module. Tests that only need a few processes do not
/// take it.
pub fn heavy() -> MutexGuard<'static, ()> {
    static HEAVY: Mutex<()> = Mutex::new(());
    HEAVY.lock().unwrap_or_else(PoisonError::into_inner)
}

/// The state letter of process `pid` in /proc (`R`, `S`, `Z`, ...).
pub fn proc_state(pid: u32) -> Option<char> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let close = text.rfind(')')?;
    text[close + 1..].split_whitespace().next()?.chars().next()
}

/// Waits until `cond` holds, for up to `timeout`; whether it did.
pub fn eventually(timeout: Duration, mut cond: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + timeout;
    loop {
        if cond() {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(2));
    }
}

// ---------------------------------------------------------------------------
// Child side

/// The role this process is to play, if it is a child; arms the
/// parent-death signal first.
pub fn role() -> Option<Vec<String>> {
    let spec = std::env::var(CHILD_ENV).ok()?;
    // SAFETY: prctl(PR_SET_PDEATHSIG) takes a signal number and no pointers.
    let rc = unsafe { libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL as libc::c_ulong) };
    assert_eq!(rc, 0, "prctl(PR_SET_PDEATHSIG)");
    // The parent may have gone before the signal was armed.
    let parent: u32 = std::env::var(PARENT_ENV).ok()?.parse().ok()?;
    if std::os::unix::process::parent_id() != parent {
        std::process::exit(99);
    }
    Some(spec.split(':').map(str::to_owned).collect())
}

/// The role this process is to play on its main thread, before the test
/// harness starts any thread, if it is a child started by the file this is
/// called from with a role whose name starts with `main-`. Called from a
/// function in `.init_array`: every such function of the binary runs in
/// every child, and only the one of the file that started it plays.
#[track_caller]
pub fn main_thread_role() -> Option<Vec<String>> {
    let spec = std::env::var(CHILD_ENV).ok()?;
    let entry = std::env::var(ENTRY_ENV).ok()?;
    if !spec.starts_with("main-") || entry != entry_of(std::panic::Location::caller().file()) {
        return None;
    }
    role()
}

/// Says `msg` to the parent.
pub fn say(msg: impl std::fmt::Display) {
    // A leading newline keeps the line apart from whatever the harness
    // printed without one.
    let mut out = std::io::stdout().lock();
    writeln!(out, "\n{TAG}{msg}").unwrap();
    out.flush().unwrap();
}

/// The next command from the parent (`None` at end of input: the parent
/// closed stdin or died).
pub fn command() -> Option<String> {
    let mut line = String::new();
    match std::io::stdin().lock().read_line(&mut line) {
        Ok(0) | Err(_) => None,
        Ok(_) => Some(line.trim().to_owned()),
    }
}

/// This thread's kernel id.
pub fn gettid() -> u32 {
    nix::unistd::gettid().as_raw() as u32
}

/// The length of a segment holding one `T`: header and lock area (304
/// bytes, rounded up to `T`'s alignment), the value, then its schema
/// (8-aligned), as src/header.rs lays them out.
pub fn segment_len<T: shmstore::Shareable>() -> usize {
    let align = std::mem::align_of::<T>();
    let value_at = 304usize.div_ceil(align) * align;
    let end = value_at + std::mem::size_of::<T>();
    end.div_ceil(8) * 8 + shmstore::Schema::of::<T>().encode().len()
}

/// The README's counter.
#[derive(shmstore::Shareable, Clone, Copy, Default, Debug, PartialEq)]
#[repr(C)]
pub struct Counter {
    pub value: u64,
    pub last_pid: u32,
    pub _pad: u32,
}

/// The size of `Counter` with other field names.
#[derive(shmstore::Shareable, Clone, Copy, Default, Debug)]
#[repr(C)]
pub struct Tally {
    pub count: u64,
    pub pid: u32,
    pub spare: u32,
}

/// `Counter` with one more field.
#[derive(shmstore::Shareable, Clone, Copy, Default, Debug)]
#[repr(C)]
pub struct Wider {
    pub value: u64,
    pub last_pid: u32,
    pub _pad: u32,
    pub extra: u64,
}

/// The name of an error's variant, for children to report to the parent.
pub fn variant(e: &shmstore::Error) -> &'static str {
    use shmstore::Error;
    match e {
        Error::NotFound { .. } => "NotFound",
        Error::AlreadyExists { .. } => "AlreadyExists",
        Error::InvalidName { .. } => "InvalidName",
        Error::LayoutMismatch { .. } => "LayoutMismatch",
        Error::Corrupt { .. } => "Corrupt",
        Error::Incomplete { .. } => "Incomplete",
        Error::PermissionDenied { .. } => "PermissionDenied",
        Error::ForeignOwner { .. } => "ForeignOwner",
        Error::OtherByteOrder { .. } => "OtherByteOrder",
        Error::NoSpace { .. } => "NoSpace",
        Error::SysvLimit { .. } => "SysvLimit",
        Error::Io { .. } => "Io",
        _ => "other",
    }
}

/// "ok", or the name of the error's variant.
pub fn outcome<T>(r: Result<T, shmstore::Error>) -> &'static str {
    match r {
        Ok(_) => "ok",
        Err(e) => variant(&e),
    }
}

/// The error of `r`, which must have failed.
#[track_caller]
pub fn failure<T>(r: Result<T, shmstore::Error>) -> shmstore::Error {
    match r {
        Ok(_) => panic!("expected an error, got a handle"),
        Err(e) => e,
    }
}

/// The value of `key=` in a line of `key=value` words.
#[track_caller]
pub fn field<'a>(line: &'a str, key: &str) -> &'a str {
    line.split_whitespace()
        .find_map(|w| w.strip_prefix(key)?.strip_prefix('='))
        .unwrap_or_else(|| panic!("no {key}= in `{line}`"))
}

/// Whether the tests run as root (some need it, and say so when skipped).
pub fn is_root() -> bool {
    nix::unistd::geteuid().is_root()
}

/// What a racer in a create/open_or_create race tells the parent: on
/// success, the `_pad` marker of the value it found (who initialised it)
/// after 1000 locked increments; on failure, the error's variant.
pub fn report_race(got: Result<shmstore::Shared<Counter>, shmstore::Error>) {
    match got {
        Ok(c) => {
            let first_pad = c.lock().expect("not poisoned")._pad;
            for _ in 0..1000 {
                c.lock().expect("not poisoned").value += 1;
            }
            say(format!("result=ok pad={first_pad} created={}", c.created()));
        }
        Err(e) => say(format!("result={} ({e})", variant(&e))),
    }
}

/// How many keys each range has given out in this process.
static KEY_SEQ: Mutex<BTreeMap<u32, u32>> = Mutex::new(BTreeMap::new());

/// A System V key unique to this process and call, in the range `base` of
/// one test file (backends/sysv.rs uses `0x3000_0000`, readers.rs
/// `0x5000_0000`, so tests running at once never meet): keys are
/// `base | pid << 6 | n`, for the first 64 keys of each range. Its segment
/// is marked for removal (`IPC_RMID`) when the guard is dropped, whatever it
/// holds.
pub struct Key(pub shmstore::SysvKey);

impl Key {
    pub fn in_range(base: u32) -> Key {
        let n = {
            let mut seq = KEY_SEQ.lock().unwrap_or_else(PoisonError::into_inner);
            let next = seq.entry(base).or_insert(0);
            *next += 1;
            *next - 1
        };
        assert!(n < 64, "out of keys in the range {base:#x}");
        let raw = base | ((std::process::id() & 0x3f_ffff) << 6) | n;
        let key = shmstore::SysvKey::new(raw as i32);
        // A crashed earlier run of a process with our pid may have left it.
        let _ = shmstore::unlink(key);
        Key(key)
    }

    pub fn key(&self) -> shmstore::SysvKey {
        self.0
    }

    /// The key as a child process's argument.
    pub fn arg(&self) -> String {
        self.0.key().to_string()
    }
}

impl Drop for Key {
    fn drop(&mut self) {
        // The type does not matter to unlink; NotFound is fine.
        let _ = shmstore::unlink(self.0);
    }
}

/// Starts children that said "ready" at the same moment (each waits for a
/// "go" line), then waits for all of them to succeed.
pub fn race_to_the_end(kids: &mut [Kid]) {
    for k in kids.iter_mut() {
        k.expect("ready");
    }
    for k in kids.iter_mut() {
        k.send("go");
    }
    for k in kids.iter_mut() {
        k.wait_success();
    }
}
