//! Several processes increment one shared counter under shmstore's lock.
//!
//! ```text
//! cargo run --release --example counter                 # 4 processes, a readable summary
//! cargo run --release --example counter -- PROCS ITERS  # one JSON line (compare/README.md)
//! cargo run --release --example counter -- crash        # kill a lock holder, recover
//! cargo run --release --example counter -- --sysv PROCS ITERS   # the same on System V
//! cargo run --release --example counter -- --atomic PROCS ITERS # fetch_add, no lock
//! ```
//!
//! Built under a name that ends in `-sysv` (as compare/'s `shmstore-sysv`),
//! it uses System V without the flag; under a name that ends in `-atomic`
//! (as `shmstore-atomic`), it runs as `--atomic`.
//!
//! With `--atomic` the counter is an `AtomicU64` in a struct of atomics only
//! ([`shmstore::LockFree`]), and each increment is one `fetch_add` through
//! a `SharedAtomic`, without the lock: the shmstore counterpart of compare/'s
//! `c-atomic`, the floor for a shared counter. There is no lock to recover
//! in that mode, so its `crash` says so and exits 0, as `c-atomic` does.
//!
//! Workers are this same program re-executed with a role argument; they
//! share nothing with the parent but the segment and a pipe each (for the
//! start signal and their end time). The JSON line follows the protocol of
//! the comparison programs in `compare/` (see its README): timing covers
//! the increment phase only, from the parent's start signal to the latest
//! worker's end, on CLOCK_MONOTONIC. Exits non-zero if an update was lost.

use std::io::{BufRead, BufReader, Write};
use std::process::{Child, ChildStdin, ChildStdout, Command, ExitCode, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::TryLockError;
use std::time::{Duration, Instant};

use nix::time::{clock_gettime, ClockId};
use shmstore::{Location, Shareable, Shared, SharedAtomic, SysvKey};

/// The counter of the README.
#[derive(Shareable, Clone, Copy, Default, Debug)]
#[repr(C)]
struct Counter {
    value: u64,
    last_pid: u32,
    _pad: u32,
}

/// The counter of `--atomic` runs: atomics only, so `Shared::get` hands it
/// out without the lock.
#[derive(Shareable, Default, Debug)]
#[repr(C)]
struct AtomicCounter {
    value: AtomicU64,
}

/// Which backend a run uses; the peers protocol gives each peer a fixed
/// name (or key), removed first if a killed run left it.
#[derive(Clone, Copy, PartialEq)]
enum Backend {
    Posix,
    SysV,
}

impl Backend {
    fn peer(self) -> &'static str {
        match self {
            Backend::Posix => "shmstore",
            Backend::SysV => "shmstore-sysv",
        }
    }

    fn arg(self) -> &'static str {
        match self {
            Backend::Posix => "posix",
            Backend::SysV => "sysv",
        }
    }

    fn from_arg(s: &str) -> Backend {
        if s == "sysv" {
            Backend::SysV
        } else {
            Backend::Posix
        }
    }

    /// The segment of the benchmark (`crash == false`) or of the crash test.
    fn location(self, crash: bool) -> Location {
        match (self, crash) {
            (Backend::Posix, false) => Location::posix("peers_shmstore").unwrap(),
            (Backend::Posix, true) => Location::posix("peers_shmstore_crash").unwrap(),
            (Backend::SysV, false) => Location::sysv(SysvKey::new(0x5348_4d01)),
            (Backend::SysV, true) => Location::sysv(SysvKey::new(0x5348_4d02)),
        }
    }

    /// The peer name and segment of `--atomic` benchmarks (another type, so
    /// another name than the locked counter's).
    fn atomic_peer(self) -> &'static str {
        match self {
            Backend::Posix => "shmstore-atomic",
            Backend::SysV => "shmstore-sysv-atomic",
        }
    }

    fn atomic_location(self) -> Location {
        match self {
            Backend::Posix => Location::posix("peers_shmstore_atomic").unwrap(),
            Backend::SysV => Location::sysv(SysvKey::new(0x5348_4d03)),
        }
    }
}

fn main() -> ExitCode {
    let exe = std::env::args().next().unwrap_or_default();
    let mut args: Vec<String> = std::env::args().skip(1).collect();
    let mut backend = if exe.ends_with("-sysv") {
        Backend::SysV
    } else {
        Backend::Posix
    };
    let mut atomic = exe.ends_with("-atomic");
    loop {
        match args.first().map(String::as_str) {
            Some("--sysv") => backend = Backend::SysV,
            Some("--atomic") => atomic = true,
            _ => break,
        }
        args.remove(0);
    }
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let result = match args.as_slice() {
        [] if atomic => friendly_atomic(backend),
        [] => friendly(backend),
        ["crash"] if atomic => crash_atomic(backend),
        ["crash"] => crash_test(backend),
        ["worker", b, iters] => worker(Backend::from_arg(b), iters.parse().expect("ITERS")),
        ["worker-atomic", b, iters] => {
            worker_atomic(Backend::from_arg(b), iters.parse().expect("ITERS"))
        }
        ["crash-holder", b] => crash_holder(Backend::from_arg(b)),
        [procs, iters] => match (procs.parse(), iters.parse()) {
            (Ok(p), Ok(i)) if (1..=256).contains(&p) && i >= 1 => {
                bench(backend, atomic, p, i, true)
            }
            _ => Err(usage()),
        },
        _ => Err(usage()),
    };
    match result {
        Ok(code) => code,
        Err(msg) => {
            eprintln!("counter: {msg}");
            ExitCode::from(2)
        }
    }
}

fn usage() -> String {
    "usage: counter [--sysv] [--atomic] [PROCS ITERS | crash]   (PROCS 1..=256, ITERS >= 1)".into()
}

fn now_ns() -> u64 {
    let t = clock_gettime(ClockId::CLOCK_MONOTONIC).expect("CLOCK_MONOTONIC");
    t.tv_sec() as u64 * 1_000_000_000 + t.tv_nsec() as u64
}

/// Removes the segment when dropped, also when the run fails half-way.
struct Unlink(Location);

impl Drop for Unlink {
    fn drop(&mut self) {
        let _ = shmstore::unlink(&self.0);
    }
}

/// A worker process and the pipes to it.
struct Worker {
    child: Child,
    stdin: ChildStdin,
    stdout: BufReader<ChildStdout>,
}

impl Worker {
    fn spawn(args: &[&str]) -> Result<Worker, String> {
        let exe = std::env::current_exe().map_err(|e| format!("current_exe: {e}"))?;
        let mut child = Command::new(exe)
            .args(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .map_err(|e| format!("spawning a worker: {e}"))?;
        let stdin = child.stdin.take().expect("piped");
        let stdout = BufReader::new(child.stdout.take().expect("piped"));
        Ok(Worker {
            child,
            stdin,
            stdout,
        })
    }

    /// The next line the worker prints.
    fn line(&mut self) -> Result<String, String> {
        let mut s = String::new();
        match self.stdout.read_line(&mut s) {
            Ok(n) if n > 0 => Ok(s.trim().to_owned()),
            _ => Err("a worker exited early (see its error above)".into()),
        }
    }
}

impl Drop for Worker {
    fn drop(&mut self) {
        // Reached with a live child only when the run failed: end it.
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

struct Outcome {
    total: u64,
    expected: u64,
    secs: f64,
    workers_ok: bool,
}

/// The counter of a run, locked or atomic.
enum Handle {
    Locked(Shared<Counter>),
    Atomic(SharedAtomic<AtomicCounter>),
}

fn run(backend: Backend, atomic: bool, procs: usize, iters: u64) -> Result<Outcome, String> {
    let at = if atomic {
        backend.atomic_location()
    } else {
        backend.location(false)
    };
    let _ = shmstore::unlink(&at); // a stale one from a killed run
    let counter = if atomic {
        Handle::Atomic(
            SharedAtomic::create(&at, AtomicCounter::default()).map_err(|e| e.to_string())?,
        )
    } else {
        Handle::Locked(Shared::create(&at, Counter::default()).map_err(|e| e.to_string())?)
    };
    let _cleanup = Unlink(at);

    let iters_arg = iters.to_string();
    let role = if atomic { "worker-atomic" } else { "worker" };
    let mut workers = (0..procs)
        .map(|_| Worker::spawn(&[role, backend.arg(), &iters_arg]))
        .collect::<Result<Vec<_>, _>>()?;
    for w in &mut workers {
        let l = w.line()?;
        if l != "ready" {
            return Err(format!("worker said {l:?} instead of ready"));
        }
    }
    let t0 = now_ns();
    for w in &mut workers {
        w.stdin
            .write_all(b"go\n")
            .map_err(|e| format!("starting a worker: {e}"))?;
    }
    let mut t1 = t0;
    let mut workers_ok = true;
    for w in &mut workers {
        let end = w.line()?;
        let ns = end
            .strip_prefix("end ")
            .and_then(|n| n.parse::<u64>().ok())
            .ok_or_else(|| format!("worker said {end:?} instead of its end time"))?;
        t1 = t1.max(ns);
        let status = w.child.wait().map_err(|e| e.to_string())?;
        workers_ok &= status.success();
    }
    let total = match &counter {
        Handle::Locked(c) => c.lock().map_err(|_| "the lock is poisoned")?.value,
        Handle::Atomic(c) => c.get().value.load(Ordering::SeqCst),
    };
    Ok(Outcome {
        total,
        expected: procs as u64 * iters,
        secs: (t1 - t0) as f64 / 1e9,
        workers_ok,
    })
}

fn bench(
    backend: Backend,
    atomic: bool,
    procs: usize,
    iters: u64,
    json: bool,
) -> Result<ExitCode, String> {
    let o = run(backend, atomic, procs, iters)?;
    let peer = if atomic {
        backend.atomic_peer()
    } else {
        backend.peer()
    };
    let kind = if atomic { "atomic" } else { "locked" };
    let ns_per_op = o.secs * 1e9 / o.expected as f64;
    if json {
        println!(
            "{{\"peer\": \"{peer}\", \"procs\": {procs}, \"iters\": {iters}, \"total\": {}, \"expected\": {}, \"secs\": {:.6}, \"ns_per_op\": {ns_per_op:.2}}}",
            o.total, o.expected, o.secs
        );
    } else {
        println!(
            "{procs} processes x {iters} {kind} increments: counter = {} (expected {}), {ns_per_op:.1} ns per increment",
            o.total, o.expected
        );
    }
    if o.total != o.expected || !o.workers_ok {
        eprintln!(
            "counter: LOST UPDATES or a failed worker: counter = {}, expected {}",
            o.total, o.expected
        );
        return Ok(ExitCode::FAILURE);
    }
    Ok(ExitCode::SUCCESS)
}

fn friendly(backend: Backend) -> Result<ExitCode, String> {
    println!("shmstore counter: separate processes share one Counter in shared memory.");
    let code = bench(backend, false, 4, 1_000_000, false)?;
    if code == ExitCode::SUCCESS {
        println!("No update was lost. Now a lock holder is killed with SIGKILL:");
        crash_test(backend)?;
        println!("(`counter PROCS ITERS` prints the benchmark line of compare/run.sh.)");
    }
    Ok(code)
}

// Not inlined into `main`: there, beside everything else `main` keeps,
// the loop's pointers are spilled to the stack and loaded again on every
// round (9 more instructions per increment, of 68, counted with callgrind).
// A program's hot loop is in a function of its own, as here.
#[inline(never)]
fn worker(backend: Backend, iters: u64) -> Result<ExitCode, String> {
    let counter = Shared::<Counter>::open(backend.location(false)).map_err(|e| e.to_string())?;
    race(|| {
        for _ in 0..iters {
            let mut g = counter.lock().map_err(|_| "the lock is poisoned")?;
            g.value += 1;
        }
        Ok(())
    })
}

/// The worker's side of the protocol: says "ready", waits for the line that
/// starts everyone at once, runs `work`, and says when it ended.
fn race(work: impl FnOnce() -> Result<(), String>) -> Result<ExitCode, String> {
    let mut out = std::io::stdout().lock();
    writeln!(out, "ready")
        .and_then(|()| out.flush())
        .map_err(|e| e.to_string())?;
    let mut go = String::new();
    std::io::stdin()
        .read_line(&mut go)
        .map_err(|e| e.to_string())?;
    work()?;
    let end = now_ns();
    writeln!(out, "end {end}")
        .and_then(|()| out.flush())
        .map_err(|e| e.to_string())?;
    Ok(ExitCode::SUCCESS)
}

/// `friendly` for `--atomic`: the same run, and no crash test, since there
/// is no lock to lose.
fn friendly_atomic(backend: Backend) -> Result<ExitCode, String> {
    println!("shmstore counter: separate processes share one AtomicCounter in shared memory.");
    let code = bench(backend, true, 4, 1_000_000, false)?;
    if code == ExitCode::SUCCESS {
        println!(
            "No update was lost. No lock was taken, so a killed process leaves nothing to recover."
        );
        println!("(`counter --atomic PROCS ITERS` prints the benchmark line of compare/run.sh.)");
    }
    Ok(code)
}

/// A worker of `--atomic` runs: one `fetch_add` per increment, through a
/// `SharedAtomic`, without the lock.
fn worker_atomic(backend: Backend, iters: u64) -> Result<ExitCode, String> {
    let counter = SharedAtomic::<AtomicCounter>::open(backend.atomic_location())
        .map_err(|e| e.to_string())?;
    race(|| {
        let value = &counter.get().value;
        for _ in 0..iters {
            value.fetch_add(1, Ordering::Relaxed);
        }
        Ok(())
    })
}

/// The crash test of `--atomic`: there is no lock that a killed process
/// could hold, so there is nothing to test; says so, as the peers' c-atomic
/// does.
fn crash_atomic(backend: Backend) -> Result<ExitCode, String> {
    let peer = backend.atomic_peer();
    println!(
        "{{\"peer\": \"{peer}\", \"crash_test\": \"n/a\", \"detail\": \"no lock to hold: each increment is one fetch_add through a SharedAtomic, so a killed process leaves nothing to recover\"}}"
    );
    Ok(ExitCode::SUCCESS)
}

/// Child of the crash test: takes the lock, writes, says so, and waits to be killed.
fn crash_holder(backend: Backend) -> Result<ExitCode, String> {
    let counter = Shared::<Counter>::open(backend.location(true)).map_err(|e| e.to_string())?;
    let mut g = counter.lock().map_err(|_| "the lock is poisoned")?;
    g.value = 1;
    g.last_pid = std::process::id();
    println!("locked");
    loop {
        std::thread::sleep(Duration::from_secs(60));
    }
}

fn crash_test(backend: Backend) -> Result<ExitCode, String> {
    let at = backend.location(true);
    let _ = shmstore::unlink(&at);
    let counter = Shared::create(&at, Counter::default()).map_err(|e| e.to_string())?;
    let _cleanup = Unlink(at);
    let mut holder = Worker::spawn(&["crash-holder", backend.arg()])?;
    if holder.line()? != "locked" {
        return Err("the holder did not take the lock".into());
    }
    let holder_pid = holder.child.id();
    holder.child.kill().map_err(|e| e.to_string())?; // SIGKILL
    holder.child.wait().map_err(|e| e.to_string())?;

    let t = Instant::now();
    let (outcome, detail) = match counter.try_lock_for(Duration::from_secs(2)) {
        Err(TryLockError::Poisoned(p)) => {
            let ms = t.elapsed().as_millis();
            let mut g = p.into_inner();
            let left = *g;
            g.value += 1;
            drop(g);
            counter.clear_poison();
            let relock = counter.try_lock_for(Duration::from_secs(2));
            let value = relock.as_ref().map(|g| g.value).unwrap_or(0);
            let ok = relock.is_ok() && left.value == 1 && left.last_pid == holder_pid;
            (
                if ok { "recovers" } else { "errors" },
                format!(
                    "lock after SIGKILL of the holder -> poisoned in {ms} ms; holder's write kept (value={}, last_pid={}); clear_poison; relock -> {}; counter={value}",
                    left.value,
                    left.last_pid,
                    if relock.is_ok() { "ok" } else { "failed" },
                ),
            )
        }
        Ok(_) => (
            "errors",
            "lock acquired with no owner-died notice".to_owned(),
        ),
        Err(TryLockError::WouldBlock) => ("hangs", "try_lock_for(2 s) timed out".to_owned()),
    };
    let peer = backend.peer();
    println!("{{\"peer\": \"{peer}\", \"crash_test\": \"{outcome}\", \"detail\": \"{detail}\"}}");
    Ok(if outcome == "recovers" {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}
