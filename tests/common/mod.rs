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
//! child outlives its test even when an assertion fails. [`Kid::spawn_in`]
//! starts one in namespaces of its own (a PID namespace, where it is init
//! under a process of ours that reaps it, a mount namespace, a user
//! namespace) or as another user; the same holds for it. Every segment name
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

/// A store's layout as tests that write its bytes need it (src/store/heap.rs):
/// its handle table starts 256 bytes into the content, 4,096 slots of 16
/// bytes, then the buckets (8 bytes each).
pub const STORE_HANDLES_FROM_CONTENT: usize = 256;
/// See [`STORE_HANDLES_FROM_CONTENT`].
pub const STORE_HANDLE_SLOTS: usize = 4096;
/// See [`STORE_HANDLES_FROM_CONTENT`].
pub const STORE_HANDLE_BYTES: usize = 16;

/// A store's meta fields that tell how big it is and where its buckets are
/// (src/store/heap.rs), as offsets from the content's start, each a `u64`
/// in the host's byte order: the in-place table's bucket count (fixed at
/// creation), the heap's bytes now (never more than the object allows),
/// the table (0: the in-place one after the handle table; else the low 32
/// bits are the block index of a [`STORE_TABLE`] block whose buckets start
/// [`STORE_TABLE_BUCKETS_FROM_BLOCK`] bytes into it, the high 32 bits the
/// log2 of its bucket count) and the most the heap may grow to.
pub const STORE_M_BUCKETS: usize = 8;
/// See [`STORE_M_BUCKETS`].
pub const STORE_M_HEAP: usize = 16;
/// See [`STORE_M_BUCKETS`].
pub const STORE_M_TABLE: usize = 192;
/// See [`STORE_M_BUCKETS`].
pub const STORE_M_MAX_HEAP: usize = 200;
/// A formatted store's format word (its first four content bytes): "ST03".
pub const STORE_FORMATTED: u32 = 0x5354_3033;
/// The state word (at +16 of a block) of a block that holds the buckets of
/// a table grown out of its place: "TABL".
pub const STORE_TABLE: u32 = 0x5441_424c;
/// Where a table block's buckets start in it.
pub const STORE_TABLE_BUCKETS_FROM_BLOCK: usize = 64;

/// Where the parts of a store lie in its bytes `b` (a copy of the whole
/// object), read off its header and meta as the layout above says.
#[derive(Clone, Copy, Debug)]
pub struct StoreParts {
    /// Where the content starts (the header's value offset).
    pub content: usize,
    /// The in-place bucket table (`M_BUCKETS` buckets of 8 bytes, padded
    /// to 64).
    pub buckets_at: usize,
    /// Where block index 1 starts.
    pub heap_at: usize,
    /// The meta's `M_HEAP`, `M_TABLE` and `M_MAX_HEAP` as they are.
    pub heap: u64,
    pub table: u64,
    pub max_heap: u64,
}

impl StoreParts {
    pub fn of(b: &[u8]) -> StoreParts {
        let u64_at = |at: usize| u64::from_ne_bytes(b[at..at + 8].try_into().unwrap());
        let content = u64_at(56) as usize;
        let buckets = u64_at(content + STORE_M_BUCKETS) as usize;
        let buckets_at =
            content + STORE_HANDLES_FROM_CONTENT + STORE_HANDLE_SLOTS * STORE_HANDLE_BYTES;
        StoreParts {
            content,
            buckets_at,
            heap_at: buckets_at + (buckets * 8).div_ceil(64) * 64,
            heap: u64_at(content + STORE_M_HEAP),
            table: u64_at(content + STORE_M_TABLE),
            max_heap: u64_at(content + STORE_M_MAX_HEAP),
        }
    }

    /// Where block index `index` (as buckets and slots name blocks) starts.
    pub fn block_at(&self, index: u32) -> usize {
        self.heap_at + 64 * (index as usize - 1)
    }

    /// The table block's index and bucket count, if the table left its
    /// place.
    pub fn table_block(&self) -> Option<(u32, u64)> {
        (self.table != 0).then(|| (self.table as u32, 1u64 << (self.table >> 32).min(63)))
    }
}

/// The bytes a store handle's first hold list takes from the store while
/// the handle holds entries (src/store/heap.rs `FIRST_LIST`: up to 24 held
/// entries; `free_bytes` frees an emptied one).
pub const HOLD_LIST: usize = 128;

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

/// A directory of one test's files (file segments, witnesses) under the
/// temporary directory, unique to this process and call, removed with
/// everything in it when dropped.
pub struct TempDir(PathBuf);

impl TempDir {
    /// A new directory of mode 0755.
    pub fn new(test: &str) -> TempDir {
        TempDir::with_mode(test, 0o755)
    }

    /// A new directory of mode `mode` (1777, as /tmp, lets every user
    /// create files, each removable by its owner only).
    pub fn with_mode(test: &str, mode: u32) -> TempDir {
        use std::os::unix::fs::PermissionsExt;
        let n = SEQ.fetch_add(1, Ordering::Relaxed);
        let dir = std::env::temp_dir().join(format!("shmstore-{test}-{}-{n}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir(&dir).unwrap();
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(mode)).unwrap();
        TempDir(dir)
    }

    pub fn path(&self) -> &std::path::Path {
        &self.0
    }

    /// The path of `name` in it.
    pub fn join(&self, name: &str) -> PathBuf {
        self.0.join(name)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
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
    /// The process playing the role, when it is not `child` (a child in a
    /// PID namespace of its own).
    player: Option<u32>,
}

impl Kid {
    /// Starts this binary again to play `role` with `args`, in the
    /// `child_entry` test of the file this is called from.
    #[track_caller]
    pub fn spawn(role: &str, args: &[&str]) -> Kid {
        let entry = entry_of(std::panic::Location::caller().file());
        let (mut cmd, spec) = command_for(role, args, &entry);
        let child = spawn(&mut cmd);
        Kid::started(child, spec, None)
    }

    /// Like [`Kid::spawn`], in the namespaces (and as the user) `apart`
    /// says: see [`Apart`]. In a PID namespace of its own the child plays
    /// its role as the namespace's init (pid 1), under a process of ours
    /// that waits for it (the one [`Kid::pid`] names); [`Kid::player`] is
    /// the player's pid as this process sees it.
    #[track_caller]
    pub fn spawn_in(apart: Apart, role: &str, args: &[&str]) -> Kid {
        use std::os::unix::process::CommandExt;
        let entry = entry_of(std::panic::Location::caller().file());
        let (mut cmd, spec) = command_for(role, args, &entry);
        if apart.pid_ns {
            // The player's parent is outside its namespace: getppid() says 0.
            cmd.env(PARENT_ENV, "0");
        }
        let setup = apart.setup();
        // SAFETY: the closure runs in the forked child before exec, where
        // only async-signal-safe calls are allowed: it makes system calls
        // only (`Setup::run`), on buffers made before the fork, and does not
        // allocate, lock or touch anything another thread may hold.
        unsafe {
            cmd.pre_exec(move || setup.run());
        }
        let child = cmd.spawn().expect("spawning a child process apart");
        Kid::started(child, spec, apart.pid_ns.then_some(apart))
    }

    fn started(mut child: Child, spec: String, apart: Option<Apart>) -> Kid {
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
        // The player exists once spawn returns (it has exec'd); it may
        // have ended already, which the status of `child` then tells.
        let player = apart.and_then(|_| {
            let outer = child.id();
            match players_of(outer).as_slice() {
                [] => None,
                [one] => Some(*one),
                more => panic!("process {outer} should have one child, has {more:?}"),
            }
        });
        Kid {
            child,
            role: spec,
            stdin,
            lines,
            stderr,
            stderr_done,
            status: None,
            player,
        }
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// The process that plays the role, as this process sees it: the
    /// child itself, or for a child in a PID namespace of its own (see
    /// [`Kid::spawn_in`]) the child's child, init of that namespace.
    pub fn player(&self) -> u32 {
        self.player.unwrap_or_else(|| self.child.id())
    }

    /// SIGKILLs the process that plays the role (see [`Kid::player`]);
    /// reaps nothing.
    pub fn kill_player(&mut self) {
        nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(self.player() as i32),
            nix::sys::signal::Signal::SIGKILL,
        )
        .expect("SIGKILL");
    }

    /// Closes the child's stdin (its end of input).
    pub fn close_stdin(&mut self) {
        self.stdin = None;
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
            "child {} ({}), {}stderr:\n{}",
            self.child.id(),
            self.role,
            where_it_stands(self.child.id()),
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

    /// SIGKILLs the child, reaps it and asserts that the kill is what
    /// ended it (not an exit of its own before the kill came); `context`
    /// begins the message otherwise.
    pub fn kill_and_reap(&mut self, context: &str) {
        self.kill();
        self.reap_killed(context);
    }

    /// Reaps a child SIGKILLed earlier (see [`Kid::kill_and_reap`]).
    pub fn reap_killed(&mut self, context: &str) {
        let status = self.wait();
        assert_eq!(
            status.signal(),
            Some(libc::SIGKILL),
            "{context}: the child ended by itself ({status:?}): {}",
            self.stderr()
        );
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
            if let Some(player) = self.player {
                // The process between us and the player reaps it and exits
                // (once its stdin is closed, if it keeps a zombie). Only
                // while the player is its child: its pid may be free again.
                if parent_of(player) == Some(self.child.id()) {
                    let _ = nix::sys::signal::kill(
                        nix::unistd::Pid::from_raw(player as i32),
                        nix::sys::signal::Signal::SIGKILL,
                    );
                }
                self.stdin = None;
                if self.wait_within(Duration::from_secs(5)).is_some() {
                    return;
                }
            }
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// The command that runs this binary again to play `role` with `args` in
/// the test `entry`, and the role as the child gets it.
fn command_for(role: &str, args: &[&str], entry: &str) -> (Command, String) {
    let mut spec = role.to_owned();
    for a in args {
        assert!(!a.contains(':'), "argument {a:?} may not contain ':'");
        spec.push(':');
        spec.push_str(a);
    }
    let exe = std::env::current_exe().expect("current_exe");
    let mut cmd = Command::new(exe);
    cmd.args(["--exact", entry, "--nocapture", "--test-threads=1", "-q"])
        .env(CHILD_ENV, &spec)
        .env(ENTRY_ENV, entry)
        .env(PARENT_ENV, std::process::id().to_string())
        // Roles put large values on the stack of the harness's thread.
        .env("RUST_MIN_STACK", (16 << 20).to_string())
        .env_remove("RUST_BACKTRACE")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    (cmd, spec)
}

/// The variable that tells a child started by [`spawn`] from the forked
/// copy of its parent it begins as.
const SPAWN_ENV: &str = "SHMSTORE_TEST_SPAWN";
/// How long a child may stay the forked copy of its parent before [`spawn`]
/// takes it for stuck there.
const EXEC_PATIENCE: Duration = Duration::from_secs(10);
/// How many times [`spawn`] starts a child that gets stuck before its
/// program runs.
const SPAWN_TRIES: u32 = 3;

/// Starts `cmd` and returns once the child runs its program, as
/// `cmd.spawn()` does natively (`posix_spawn` returns after the exec).
///
/// Under user-mode emulation (qemu-user 7.2, which runs the aarch64 tests)
/// the fork is the emulator's: `spawn` returns at once, and a fork made
/// while other threads of the emulator hold one of its locks leaves a child
/// that waits for that lock forever, before the exec, with none of its
/// program's code run (in about one run in five of the aarch64 suite). Such a child is
/// SIGKILLed, reaped and started again, up to [`SPAWN_TRIES`] times, with a
/// note on stderr; a child that has reached its program is never started
/// twice. The child's environment tells: /proc shows the new program's
/// once it has exec'd, with a mark set here.
pub fn spawn(cmd: &mut Command) -> Child {
    static NEXT: AtomicU32 = AtomicU32::new(0);
    for attempt in 1..=SPAWN_TRIES {
        let mark = format!(
            "{}-{}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        );
        cmd.env(SPAWN_ENV, &mark);
        let mut child = cmd
            .spawn()
            .unwrap_or_else(|e| panic!("starting {cmd:?}: {e}"));
        let needle = format!("{SPAWN_ENV}={mark}");
        let deadline = Instant::now() + EXEC_PATIENCE;
        loop {
            // Unreadable or empty once it has ended (which the forked copy
            // never does by itself); its program's environment once exec'd.
            let started = match std::fs::read(format!("/proc/{}/environ", child.id())) {
                Ok(env) => env.is_empty() || env.split(|b| *b == 0).any(|v| v == needle.as_bytes()),
                Err(_) => true,
            };
            if started {
                return child;
            }
            if Instant::now() >= deadline {
                break;
            }
            std::thread::sleep(Duration::from_millis(1));
        }
        let stuck = where_it_stands(child.id());
        let _ = child.kill();
        let _ = child.wait();
        assert!(
            attempt < SPAWN_TRIES,
            "{cmd:?}: {SPAWN_TRIES} children in a row stayed the forked copy of this process \
             for {EXEC_PATIENCE:?}; the last: {stuck}"
        );
        eprintln!(
            "{cmd:?}: the child stayed the forked copy of this process for {EXEC_PATIENCE:?} \
             (stuck before its exec): started it again. It stood: {stuck}"
        );
    }
    unreachable!()
}

/// Where a child that has not answered stands, as /proc shows it: whether
/// it has started this binary again, and each thread's
/// state, kernel wait channel and system call. Empty once it is reaped.
fn where_it_stands(pid: u32) -> String {
    let dir = format!("/proc/{pid}");
    let read = |f: &str| std::fs::read_to_string(format!("{dir}/{f}")).unwrap_or_default();
    let Ok(cmdline) = std::fs::read(format!("{dir}/cmdline")) else {
        return String::new();
    };
    // Started again, its command line names the entry test; the parent's
    // does not.
    let started = if String::from_utf8_lossy(&cmdline).contains(ENTRY) {
        "yes"
    } else {
        "no, still the forked copy of the parent"
    };
    let mut out = format!(
        "started again: {started}; command line {:?}\n",
        String::from_utf8_lossy(&cmdline).replace('\0', " ")
    );
    let mut tasks: Vec<String> = std::fs::read_dir(format!("{dir}/task"))
        .map(|d| {
            d.filter_map(|e| e.ok()?.file_name().into_string().ok())
                .collect()
        })
        .unwrap_or_default();
    tasks.sort();
    for t in tasks {
        let state = stat_state(&format!("{dir}/task/{t}/stat")).unwrap_or('?');
        let wchan = read(&format!("task/{t}/wchan"));
        let syscall = read(&format!("task/{t}/syscall"));
        out.push_str(&format!(
            "  thread {t}: state {state}, wchan {wchan}, syscall {}\n",
            syscall.trim()
        ));
    }
    out
}

// ---------------------------------------------------------------------------
// Children in namespaces of their own

/// Where [`Kid::spawn_in`] starts a child, as `unshare(1)` would: `unshare
/// -p -f --kill-child` for `pid_ns`, with `--mount-proc` for `mount_proc`,
/// `setpriv --reuid --regid --clear-groups` for `user`, `unshare -U -r`
/// for `user_ns`. All of it needs root (but `user_ns` alone).
#[derive(Clone, Copy, Debug, Default)]
pub struct Apart {
    /// A PID namespace of its own, where the child is init (pid 1). It
    /// dies with the process of ours that waits for it.
    pub pid_ns: bool,
    /// Also a mount namespace of its own (mounts private) with a /proc of
    /// its PID namespace; it sees the same files, /tmp and /dev/shm.
    pub mount_proc: bool,
    /// Runs as this user id and group id, with no other groups.
    pub user: Option<u32>,
    /// A user namespace of its own where it is root (uid and gid 0), mapped
    /// to the user it runs as outside.
    pub user_ns: bool,
    /// With `pid_ns`: when the player dies, the process that waits for it
    /// leaves it a zombie until the child's stdin is closed (or the `Kid`
    /// dropped).
    pub keep_zombie: bool,
}

impl Apart {
    /// In a PID namespace of its own.
    pub fn pid_ns() -> Apart {
        Apart {
            pid_ns: true,
            ..Apart::default()
        }
    }

    /// In PID and mount namespaces of its own, with its own /proc.
    pub fn container() -> Apart {
        Apart {
            pid_ns: true,
            mount_proc: true,
            ..Apart::default()
        }
    }

    fn setup(&self) -> Setup {
        assert!(
            self.pid_ns || !(self.mount_proc || self.keep_zombie),
            "mount_proc and keep_zombie need pid_ns"
        );
        let uid = self.user.unwrap_or_else(|| nix::unistd::geteuid().as_raw());
        let gid = self.user.unwrap_or_else(|| nix::unistd::getegid().as_raw());
        Setup {
            apart: *self,
            parent: std::process::id() as libc::pid_t,
            uid_map: format!("0 {uid} 1\n").into_bytes(),
            gid_map: format!("0 {gid} 1\n").into_bytes(),
        }
    }
}

/// What the child of [`Kid::spawn_in`] does between fork and exec, with
/// everything it needs made beforehand.
struct Setup {
    apart: Apart,
    /// The test process, which the child's parent-death signal watches.
    parent: libc::pid_t,
    uid_map: Vec<u8>,
    gid_map: Vec<u8>,
}

/// `Err` with the last OS error if `rc` is negative.
fn os(rc: libc::c_long) -> std::io::Result<()> {
    if rc < 0 {
        Err(std::io::Error::last_os_error())
    } else {
        Ok(())
    }
}

impl Setup {
    /// Runs in the forked child, before exec: system calls only.
    fn run(&self) -> std::io::Result<()> {
        let a = self.apart;
        if let Some(id) = a.user {
            // SAFETY: setgroups with a count of 0 reads no pointer; setgid
            // and setuid take integers. The child is single-threaded.
            unsafe {
                os(libc::setgroups(0, std::ptr::null()).into())?;
                os(libc::setgid(id).into())?;
                os(libc::setuid(id).into())?;
                // Changing users made /proc/self root's: make it ours again
                // to write the maps below.
                os(libc::prctl(libc::PR_SET_DUMPABLE, 1).into())?;
            }
        }
        if a.user_ns {
            // SAFETY: unshare takes flags; the child is single-threaded, as
            // a new user namespace requires.
            os(unsafe { libc::unshare(libc::CLONE_NEWUSER) }.into())?;
            write_all(c"/proc/self/setgroups", b"deny")?;
            write_all(c"/proc/self/uid_map", &self.uid_map)?;
            write_all(c"/proc/self/gid_map", &self.gid_map)?;
        }
        if !a.pid_ns {
            return Ok(());
        }
        let mut flags = libc::CLONE_NEWPID;
        if a.mount_proc {
            flags |= libc::CLONE_NEWNS;
        }
        // SAFETY: prctl(PR_SET_PDEATHSIG) and getppid take and return
        // integers; unshare takes flags.
        unsafe {
            os(libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL as libc::c_ulong).into())?;
            if libc::getppid() != self.parent {
                libc::_exit(99);
            }
            os(libc::unshare(flags).into())?;
        }
        // SAFETY: this child of a fork has one thread, so forking it again
        // is sound; both sides go on with system calls only.
        let player = unsafe { libc::fork() };
        os(player.into())?;
        if player > 0 {
            self.wait_for(player);
        }
        // The player: init of the new PID namespace. It dies with the
        // process above (which its parent-death signal watches).
        // SAFETY: as above; the strings are NUL-terminated literals and the
        // other pointers may be null for these calls.
        unsafe {
            os(libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL as libc::c_ulong).into())?;
            if a.mount_proc {
                // Mounts made here must not reach the test's namespace.
                os(libc::mount(
                    std::ptr::null(),
                    c"/".as_ptr(),
                    std::ptr::null(),
                    libc::MS_REC | libc::MS_PRIVATE,
                    std::ptr::null(),
                )
                .into())?;
                os(libc::mount(
                    c"proc".as_ptr(),
                    c"/proc".as_ptr(),
                    c"proc".as_ptr(),
                    libc::MS_NOSUID | libc::MS_NODEV | libc::MS_NOEXEC,
                    std::ptr::null(),
                )
                .into())?;
            }
        }
        Ok(())
    }

    /// The process between the test and the player: waits for the player,
    /// then ends as it ended (the same signal, or the same exit code).
    fn wait_for(&self, player: libc::pid_t) -> ! {
        // SAFETY: system calls on integers and on local buffers: closing
        // descriptors this process does not use (among them the one std
        // waits on to learn that exec happened, which the player closes on
        // exec), waiting, reading one byte, exiting.
        unsafe {
            if libc::syscall(libc::SYS_close_range, 3u32, u32::MAX, 0u32) < 0 {
                for fd in 3..1024 {
                    libc::close(fd);
                }
            }
            if self.apart.keep_zombie {
                let mut info = std::mem::zeroed::<libc::siginfo_t>();
                while libc::waitid(
                    libc::P_PID,
                    player as libc::id_t,
                    &mut info,
                    libc::WEXITED | libc::WNOWAIT,
                ) < 0
                    && *libc::__errno_location() == libc::EINTR
                {}
                // Dead and not reaped: a zombie until stdin ends.
                let mut byte = 0u8;
                while libc::read(0, (&mut byte as *mut u8).cast(), 1) > 0 {}
            }
            let mut status = 0;
            while libc::waitpid(player, &mut status, 0) < 0 {
                if *libc::__errno_location() != libc::EINTR {
                    libc::_exit(98);
                }
            }
            if libc::WIFSIGNALED(status) {
                let sig = libc::WTERMSIG(status);
                libc::signal(sig, libc::SIG_DFL);
                libc::kill(libc::getpid(), sig);
                libc::_exit(128 + sig);
            }
            libc::_exit(libc::WEXITSTATUS(status))
        }
    }
}

/// Writes `bytes` to the file at `path` with one `write` (the way files
/// under /proc/self want their contents).
fn write_all(path: &std::ffi::CStr, bytes: &[u8]) -> std::io::Result<()> {
    // SAFETY: `path` is NUL-terminated; `bytes` is valid for its length;
    // the descriptor is closed before returning.
    unsafe {
        let fd = libc::open(path.as_ptr(), libc::O_WRONLY | libc::O_CLOEXEC);
        os(fd.into())?;
        let n = libc::write(fd, bytes.as_ptr().cast(), bytes.len());
        libc::close(fd);
        os(n as libc::c_long)?;
    }
    Ok(())
}

/// The children of process `pid` (from each process's `PPid`).
fn players_of(pid: u32) -> Vec<u32> {
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    dir.filter_map(|e| e.ok()?.file_name().to_str()?.parse::<u32>().ok())
        .filter(|p| parent_of(*p) == Some(pid))
        .collect()
}

/// The parent of process `pid` (`PPid` in /proc/PID/status), if it exists.
fn parent_of(pid: u32) -> Option<u32> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("PPid:"))?
        .trim()
        .parse()
        .ok()
}

/// The ids of process `pid` in each PID namespace it is in, from ours
/// down to its own (`NSpid` in /proc/PID/status).
pub fn ns_pids(pid: u32) -> Vec<u32> {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines().find_map(|l| l.strip_prefix("NSpid:")).map(|v| {
                v.split_whitespace()
                    .filter_map(|n| n.parse().ok())
                    .collect()
            })
        })
        .unwrap_or_default()
}

/// The inode of the PID namespace of process `pid` (`self` for this one).
pub fn pid_ns_of(pid: &str) -> u64 {
    use std::os::unix::fs::MetadataExt;
    std::fs::metadata(format!("/proc/{pid}/ns/pid"))
        .map(|m| m.ino())
        .unwrap_or_else(|e| panic!("/proc/{pid}/ns/pid: {e}"))
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

/// Runs `f` on a thread of its own and returns what it returns; fails if
/// it takes longer than `limit` (a hang, named `what`), and with its own
/// panic if it panics.
pub fn within<R: Send + 'static>(
    limit: Duration,
    what: &str,
    f: impl FnOnce() -> R + Send + 'static,
) -> R {
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(f));
        let _ = tx.send(r);
    });
    match rx.recv_timeout(limit) {
        Ok(Ok(r)) => r,
        Ok(Err(p)) => std::panic::resume_unwind(p),
        Err(_) => panic!("{what}: still running after {limit:?} (a hang)"),
    }
}

/// The state letter of process `pid` in /proc (`R`, `S`, `Z`, ...).
pub fn proc_state(pid: u32) -> Option<char> {
    stat_state(&format!("/proc/{pid}/stat"))
}

/// The state letter in the `stat` file at `path` (a process's or a
/// thread's): the field after the command name, which is in parentheses.
fn stat_state(path: &str) -> Option<char> {
    let text = std::fs::read_to_string(path).ok()?;
    let close = text.rfind(')')?;
    text[close + 1..].split_whitespace().next()?.chars().next()
}

/// The number in the environment variable `name` (a test's size, which
/// CI's slower runs lower), or `default` without it.
pub fn env_count(name: &str, default: u64) -> u64 {
    match std::env::var(name) {
        Ok(v) => v
            .parse()
            .unwrap_or_else(|_| panic!("{name}={v} is not a number")),
        Err(_) => default,
    }
}

/// `n` scaled by `SHMSTORE_TEST_PERCENT` (a percentage, 100 without it),
/// at least `min`: the number of processes, kills or operations of a
/// multi-process store test. CI's emulated and sanitizer runs, where each
/// process start costs tens of milliseconds, run a part of each.
pub fn scaled(n: u64, min: u64) -> u64 {
    (n * env_count("SHMSTORE_TEST_PERCENT", 100) / 100).max(min)
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
/// (8-aligned), as src/segment/header.rs lays them out.
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

/// Moves this process (its only thread that matters: this one, which
/// starts every other) into a mount namespace of its own, with a fresh
/// tmpfs on /dev/shm. See tests/shmstore/shared.rs (`small_tmpfs`). Used by
/// the mirror tests, whose "hosts" each have their own /dev/shm.
pub fn own_dev_shm() {
    let err = std::io::Error::last_os_error;
    // SAFETY: unshare takes flags only; it moves this thread (and the
    // threads and processes it starts afterwards) into the new namespace.
    let rc = unsafe { libc::unshare(libc::CLONE_NEWNS) };
    assert_eq!(rc, 0, "unshare: {}", err());
    // SAFETY: a propagation change: the target is a valid C string, the
    // source, type and data may be null.
    let rc = unsafe {
        libc::mount(
            std::ptr::null(),
            c"/".as_ptr(),
            std::ptr::null(),
            libc::MS_REC | libc::MS_PRIVATE,
            std::ptr::null(),
        )
    };
    assert_eq!(rc, 0, "making mounts private: {}", err());
    // SAFETY: all pointers are valid C strings that outlive the call.
    let rc = unsafe {
        libc::mount(
            c"shmstore-mirror-test".as_ptr(),
            c"/dev/shm".as_ptr(),
            c"tmpfs".as_ptr(),
            0,
            c"size=1m,mode=1777".as_ptr().cast(),
        )
    };
    assert_eq!(rc, 0, "mounting a tmpfs on /dev/shm: {}", err());
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

/// A deterministic pseudo-random sequence (splitmix64) for tests that
/// draw kill points, pauses and bytes: any seed, zero included, gives a
/// full sequence, and a printed seed repeats a run.
pub struct Rng(pub u64);

impl Rng {
    pub fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// A number below `n` (0 for an `n` of 0).
    pub fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }
}
