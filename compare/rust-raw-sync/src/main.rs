//! Peers rust-raw-sync and rust-raw-sync-abort: a raw_sync `Mutex` at the
//! start of a shared_memory segment, the u64 counter right after it,
//! PROCS children made with fork(2).
//!
//! Usage: rust-raw-sync PROCS ITERS | rust-raw-sync crash
//!
//! The peer names itself after the panic strategy it was built with (see
//! Cargo.toml). The start barrier and end times live in an anonymous shared
//! mapping of their own, as in the C harness (../c/harness.h).

use std::process::ExitCode;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::time::Duration;

use raw_sync::locks::{LockImpl, LockInit, Mutex};
use raw_sync::Timeout;
use shared_memory::{Shmem, ShmemConf};

const PEER: &str = if cfg!(panic = "abort") {
    "rust-raw-sync-abort"
} else {
    "rust-raw-sync"
};
const OS_ID: &str = "/shmstore-compare_rust-raw-sync";
const MAX_PROCS: usize = 256;

/// Start barrier and end times, shared with the children.
#[repr(C, align(64))]
struct Harness {
    ready: AtomicU32,
    _pad0: [u8; 60],
    go: AtomicU32,
    _pad1: [u8; 60],
    end_ns: [AtomicU64; MAX_PROCS],
}

fn harness() -> &'static Harness {
    // SAFETY: a fresh anonymous shared mapping, zero-filled (a valid Harness:
    // atomics and bytes only), never unmapped while the process lives.
    unsafe {
        let p = libc::mmap(
            std::ptr::null_mut(),
            std::mem::size_of::<Harness>(),
            libc::PROT_READ | libc::PROT_WRITE,
            libc::MAP_SHARED | libc::MAP_ANONYMOUS,
            -1,
            0,
        );
        assert!(p != libc::MAP_FAILED, "mmap (harness)");
        &*(p as *const Harness)
    }
}

fn now_ns() -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: ts is a valid timespec to write to.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
    ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64
}

/// The segment (a stale one of a killed run removed first; removed again
/// when dropped, as its owner), the mutex at its start and the counter.
fn segment() -> (Shmem, Box<dyn LockImpl>, *mut u64) {
    let name = std::ffi::CString::new(OS_ID).unwrap();
    // SAFETY: a valid C string.
    unsafe { libc::shm_unlink(name.as_ptr()) };
    let shmem = ShmemConf::new()
        .size(4096)
        .os_id(OS_ID)
        .create()
        .expect("shared_memory: create");
    let base = shmem.as_ptr();
    // SAFETY: base points to 4096 writable bytes; the counter is 8-byte
    // aligned right after the mutex, well inside them.
    unsafe {
        let counter = base.add((Mutex::size_of(Some(base)) + 7) & !7);
        let (mutex, _) = Mutex::new(base, counter).expect("raw_sync: Mutex::new");
        *(counter as *mut u64) = 0;
        (shmem, mutex, counter as *mut u64)
    }
}

/// Forks a child that runs `f` and leaves with `_exit`, so that it never
/// runs the parent's destructors (which would remove the segment).
fn fork_child(f: impl FnOnce()) -> libc::pid_t {
    // SAFETY: the process has one thread; the child only touches memory it
    // inherited and leaves with _exit.
    let pid = unsafe { libc::fork() };
    assert!(pid >= 0, "fork");
    if pid == 0 {
        let ok = std::panic::catch_unwind(std::panic::AssertUnwindSafe(f)).is_ok();
        // SAFETY: ends the child without running destructors.
        unsafe { libc::_exit(if ok { 0 } else { 3 }) };
    }
    pid
}

fn wait(pid: libc::pid_t) -> bool {
    let mut status = 0;
    // SAFETY: pid is our child; status is a valid int to write to.
    let r = unsafe { libc::waitpid(pid, &mut status, 0) };
    r == pid && libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0
}

fn bench(procs: usize, iters: u64) -> ExitCode {
    let h = harness();
    let (shmem, mutex, counter) = segment();
    let pids: Vec<_> = (0..procs)
        .map(|i| {
            let mutex = &mutex;
            fork_child(move || {
                h.ready.fetch_add(1, Ordering::SeqCst);
                while h.go.load(Ordering::Acquire) == 0 {
                    std::thread::yield_now();
                }
                for _ in 0..iters {
                    let guard = mutex.lock().expect("lock");
                    // SAFETY: the guard's data pointer is the counter, and we hold the lock.
                    unsafe { *(*guard as *mut u64) += 1 };
                }
                h.end_ns[i].store(now_ns(), Ordering::Release);
            })
        })
        .collect();
    while (h.ready.load(Ordering::Acquire) as usize) < procs {
        std::thread::yield_now();
    }
    let t0 = now_ns();
    h.go.store(1, Ordering::Release);
    let failed = pids.into_iter().filter(|&pid| !wait(pid)).count(); // waits for all
    let t1 = h.end_ns[..procs]
        .iter()
        .map(|e| e.load(Ordering::Acquire))
        .max()
        .unwrap_or(t0);
    // SAFETY: every child has exited; nobody else writes the counter.
    let total = unsafe { counter.read_volatile() };
    drop(mutex);
    drop(shmem);
    let expected = procs as u64 * iters;
    let ns = t1.saturating_sub(t0);
    println!(
        "{{\"peer\": \"{PEER}\", \"procs\": {procs}, \"iters\": {iters}, \"total\": {total}, \"expected\": {expected}, \"secs\": {:.6}, \"ns_per_op\": {:.2}}}",
        ns as f64 / 1e9,
        ns as f64 / expected as f64
    );
    if failed == 0 && total == expected {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}

/// A holder is killed with the lock; can the survivor lock again within 2 s?
fn crash_test() -> ExitCode {
    let h = harness();
    let (shmem, mutex, _counter) = segment();
    let holder = fork_child(|| {
        std::mem::forget(mutex.lock().expect("lock"));
        h.ready.store(1, Ordering::Release);
        loop {
            std::thread::sleep(Duration::from_secs(60));
        }
    });
    let held = (0..5000).any(|_| {
        std::thread::sleep(Duration::from_millis(1));
        h.ready.load(Ordering::Acquire) == 1
    });
    // SAFETY: holder is our child.
    unsafe { libc::kill(holder, libc::SIGKILL) };
    wait(holder);
    // raw_sync's timed try_lock is pthread_mutex_timedlock on Linux.
    let (outcome, detail) = match (held, mutex.try_lock(Timeout::Val(Duration::from_secs(2)))) {
        (false, _) => ("errors", "the holder never took the lock".to_owned()),
        (true, Ok(_)) => (
            "errors",
            "try_lock succeeded with no notice that the owner died".to_owned(),
        ),
        (true, Err(e)) if e.to_string().ends_with(&format!(": {}", libc::ETIMEDOUT)) => (
            "hangs",
            format!("try_lock(Timeout::Val(2 s)) -> Err({e}) = ETIMEDOUT: the mutex is not robust"),
        ),
        (true, Err(e)) => ("errors", format!("try_lock(Timeout::Val(2 s)) -> Err({e})")),
    };
    drop(mutex);
    drop(shmem);
    println!("{{\"peer\": \"{PEER}\", \"crash_test\": \"{outcome}\", \"detail\": \"{detail}\"}}");
    ExitCode::SUCCESS
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match args.as_slice() {
        [c] if c == "crash" => crash_test(),
        [p, i] => match (p.parse::<usize>(), i.parse::<u64>()) {
            (Ok(p), Ok(i)) if (1..=MAX_PROCS).contains(&p) && i >= 1 => bench(p, i),
            _ => usage(),
        },
        _ => usage(),
    }
}

fn usage() -> ExitCode {
    eprintln!(
        "usage: rust-raw-sync PROCS ITERS | rust-raw-sync crash   (PROCS 1..=256, ITERS >= 1)"
    );
    ExitCode::from(2)
}
