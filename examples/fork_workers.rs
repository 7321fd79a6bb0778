//! The classic fork-workers counter, on anonymous shared memory: no name in
//! /dev/shm, nothing to clean up; the parent and the children it forks share
//! the segment, and nobody else can reach it.
//!
//! ```text
//! cargo run --release --example fork_workers [WORKERS [ITERS]]
//! ```

use std::process::ExitCode;

use nix::sys::wait::{waitpid, WaitStatus};
use nix::unistd::{fork, ForkResult};
use shmstore::{Shareable, Shared};

#[derive(Shareable, Clone, Copy, Default, Debug)]
#[repr(C)]
struct Counter {
    value: u64,
    last_pid: u32,
    _pad: u32,
}

fn main() -> ExitCode {
    let mut args = std::env::args().skip(1).map(|a| a.parse::<u64>());
    let workers = args.next().unwrap_or(Ok(4)).expect("WORKERS");
    let iters = args.next().unwrap_or(Ok(250_000)).expect("ITERS");

    let counter = Shared::<Counter>::anonymous(Counter::default()).expect("anonymous segment");
    let mut children = Vec::new();
    for _ in 0..workers {
        // SAFETY: this program has a single thread, so the child may do
        // anything the parent could; it only uses the inherited mapping and
        // leaves with _exit, running no destructor of the parent's state.
        match unsafe { fork() }.expect("fork") {
            ForkResult::Child => {
                for _ in 0..iters {
                    let mut g = counter.lock().expect("not poisoned");
                    g.value += 1;
                    g.last_pid = std::process::id();
                }
                // SAFETY: _exit ends the process at once; nothing is left
                // half-done (the guard above has been dropped).
                unsafe { libc::_exit(0) };
            }
            ForkResult::Parent { child } => children.push(child),
        }
    }
    let mut ok = true;
    for child in children {
        ok &= matches!(waitpid(child, None), Ok(WaitStatus::Exited(_, 0)));
    }
    let g = counter.lock().expect("not poisoned");
    let expected = workers * iters;
    println!(
        "{workers} forked workers x {iters} increments on anonymous shared memory: counter = {} (expected {expected}), last by pid {}",
        g.value, g.last_pid
    );
    if ok && g.value == expected {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}
