//! Who is this thread, as a lock owner: its kernel thread id and the low 32
//! bits of its start time, cached per thread and reset in a forked child.

use std::cell::Cell;

thread_local! {
    /// This thread's owner identity; 0 until first computed.
    static IDENT: Cell<u64> = const { Cell::new(0) };
}

/// This thread's owner identity (see [`crate::lock`] for the encoding).
#[inline]
pub(crate) fn ident() -> u64 {
    let v = IDENT.with(Cell::get);
    if v != 0 {
        v
    } else {
        compute()
    }
}

#[cold]
fn compute() -> u64 {
    static AT_FORK: parking_lot::Once = parking_lot::Once::new();
    AT_FORK.call_once(|| {
        // SAFETY: `reset_in_child` is an `extern "C" fn()` that only writes a
        // thread-local Cell of the calling thread, which is async-signal-safe
        // enough for a fork child handler (no locks, no allocation). Passing
        // None for the prepare and parent handlers is allowed.
        let rc = unsafe { libc::pthread_atfork(None, None, Some(reset_in_child)) };
        // Without the handler a forked child would reuse its parent's
        // identity and could unlock the parent's lock: refuse to go on.
        assert_eq!(rc, 0, "shmstore: pthread_atfork failed ({rc})");
    });
    let tid = nix::unistd::gettid().as_raw() as u32;
    let start = crate::owner::start_time(tid).unwrap_or(0);
    let v = crate::lock::compose_ident(tid, start);
    IDENT.with(|c| c.set(v));
    v
}

/// Runs in the child after `fork()`: the child's only thread has a new
/// thread id, so its cached identity must be computed again.
extern "C" fn reset_in_child() {
    let _ = IDENT.try_with(|c| c.set(0));
}
