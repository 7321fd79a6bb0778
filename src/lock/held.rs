//! Who is this thread, as a lock owner, and which locks it holds.
//!
//! The identity is the thread's kernel thread id and its process's
//! incarnation (see `sys::presence`), cached per thread and reset in a
//! forked child. Beside it,
//! each thread keeps the addresses of the locks it holds: a lock word that
//! names this thread is only this thread's lock if it is on that list (or
//! reaches the same memory as a lock on it). Anything else is a word a peer
//! wrote, and is treated as naming no holder (see [`crate::lock`]).

use std::cell::{Cell, RefCell};

/// How many held locks a thread records in its fixed slots; more go to a
/// list on the heap (a cold path: threads rarely hold more at once).
const SLOTS: usize = 16;

/// One thread's lock state. Only the thread itself touches it.
struct State {
    /// This thread's owner identity; 0 until first computed.
    ident: Cell<u64>,
    /// `pid << 32 | tid`, what a lock records as its last holder; computed
    /// with `ident`.
    mine: Cell<u64>,
    /// The addresses of locks this thread holds.
    held: [Cell<usize>; SLOTS],
    /// How many of `held` are in use.
    depth: Cell<usize>,
    /// How many entries of [`SPILL`] are in use (a forked child sets this
    /// to 0 without touching the list).
    spilled: Cell<usize>,
}

thread_local! {
    static STATE: State = const {
        State {
            ident: Cell::new(0),
            mine: Cell::new(0),
            held: [const { Cell::new(0) }; SLOTS],
            depth: Cell::new(0),
            spilled: Cell::new(0),
        }
    };
    /// The addresses of held locks beyond the slots; the first
    /// `State::spilled` entries are in use.
    static SPILL: RefCell<Vec<usize>> = const { RefCell::new(Vec::new()) };
}

/// This thread's owner identity (see [`crate::lock`] for the encoding).
#[inline]
pub(crate) fn ident() -> u64 {
    let here = Here::new();
    let v = state(&here).ident.get();
    if v != 0 {
        v
    } else {
        compute()
    }
}

/// This thread as a lock records its holder: `pid << 32 | tid` (see
/// [`RawLock`](crate::lock::RawLock)'s `holder`).
#[inline]
pub(crate) fn mine() -> u64 {
    let here = Here::new();
    let v = state(&here).mine.get();
    if v != 0 {
        v
    } else {
        compute();
        state(&here).mine.get()
    }
}

/// This thread's owner identity and its record as a holder (what
/// [`ident`] and [`mine`] return), from one look at the thread's state:
/// the two are computed together, so one test covers both.
#[inline(always)]
pub(crate) fn ident_and_mine() -> (u64, u64) {
    let here = Here::new();
    let s = state(&here);
    let v = s.ident.get();
    if v != 0 {
        (v, s.mine.get())
    } else {
        (compute(), s.mine.get())
    }
}

#[cold]
#[inline(never)]
fn compute() -> u64 {
    static AT_FORK: parking_lot::Once = parking_lot::Once::new();
    AT_FORK.call_once(|| {
        // SAFETY: `reset_in_child` is an `extern "C" fn()` that only writes
        // thread-local Cells of the calling thread, which is
        // async-signal-safe enough for a fork child handler (no locks, no
        // allocation). Passing None for the prepare and parent handlers is
        // allowed.
        let rc = unsafe { libc::pthread_atfork(None, None, Some(reset_in_child)) };
        // Without the handler a forked child would reuse its parent's
        // identity and could unlock the parent's lock: refuse to go on.
        assert_eq!(rc, 0, "shmstore: pthread_atfork failed ({rc})");
    });
    let tid = crate::sys::thread::current_tid();
    // A process that cannot show itself to others must not take locks:
    // they would take them over as a dead holder's.
    let x = crate::sys::presence::incarnation()
        .unwrap_or_else(|e| panic!("shmstore: cannot draw this process's incarnation: {e}"));
    let v = crate::lock::owner::compose_ident(tid, x);
    let pid = std::process::id();
    let here = Here::new();
    state(&here).ident.set(v);
    state(&here).mine.set(u64::from(pid) << 32 | u64::from(tid));
    v
}

/// A place on the calling thread's stack: a borrow of this thread's state
/// lives no longer than it (zero-sized, and not `Send`).
struct Here(std::marker::PhantomData<*const ()>);

impl Here {
    /// A place here, on the caller's stack (a local binding, never a
    /// constant, whose borrow could be promoted to `'static`).
    #[inline(always)]
    fn new() -> Here {
        Here(std::marker::PhantomData)
    }
}

/// This thread's state, for as long as `_here`, a local of the caller, lives.
/// `LocalKey::with` with a closure this small is inlined to one
/// thread-pointer-relative address, where a larger closure made it an
/// indirect call on every lock and unlock (measured).
#[inline(always)]
fn state(_here: &Here) -> &State {
    let p = STATE.with(|s| s as *const State);
    // SAFETY: `p` is this thread's `STATE`, at a fixed address for as long
    // as the thread runs: it has no destructor (asserted above), so it is
    // never torn down before the thread ends, whatever other thread-local
    // destructors call in here. The reference lives no longer than `_here`,
    // a local of a frame on this thread's stack, so it cannot outlive the
    // thread; and it cannot reach another thread: `State` holds `Cell`s, so
    // it is not `Sync` and `&State` is not `Send`.
    unsafe { &*p }
}

/// Records that this thread now holds the lock at `at`.
#[inline(always)]
pub(crate) fn acquired(at: usize) {
    let here = Here::new();
    let s = state(&here);
    let d = s.depth.get();
    match s.held.get(d) {
        Some(slot) => {
            slot.set(at);
            s.depth.set(d + 1);
        }
        None => spill(s, at),
    }
}

#[cold]
#[inline(never)]
fn spill(s: &State, at: usize) {
    // Gone only while the thread's own destructors run; the lock is then
    // not recorded, and its release, not finding the list either, goes
    // ahead (see `released_out_of_order`).
    let _ = SPILL.try_with(|v| {
        let mut v = v.borrow_mut();
        v.truncate(s.spilled.get());
        v.push(at);
        s.spilled.set(v.len());
    });
}

/// Strikes the lock at `at` off this thread's list. `false` if it was not
/// on it: the caller is a guard that a forked child inherited from its
/// parent, whose thread still holds the lock (the child's list starts
/// empty).
#[inline(always)]
pub(crate) fn released(at: usize) -> bool {
    // Locks are mostly released in the opposite order of taking them.
    released_last(at) || released_out_of_order(at)
}

/// [`released`] when the lock at `at` is the last one this thread took,
/// as it mostly is: strikes it off and returns `true`. Otherwise `false`,
/// with nothing changed: the caller then calls `released`.
#[inline(always)]
pub(crate) fn released_last(at: usize) -> bool {
    let here = Here::new();
    let s = state(&here);
    let top = s.depth.get().wrapping_sub(1);
    // One comparison tells both that there is a top and that it is in the
    // slots.
    match s.held.get(top) {
        Some(slot) if slot.get() == at => {
            s.depth.set(top);
            true
        }
        _ => false,
    }
}

#[cold]
#[inline(never)]
fn released_out_of_order(at: usize) -> bool {
    let here = Here::new();
    let s = state(&here);
    let d = s.depth.get();
    if let Some(i) = (0..d).rev().find(|&i| s.held[i].get() == at) {
        for j in i..d - 1 {
            s.held[j].set(s.held[j + 1].get());
        }
        s.depth.set(d - 1);
        return true;
    }
    SPILL
        .try_with(|v| {
            let mut v = v.borrow_mut();
            v.truncate(s.spilled.get());
            let Some(i) = v.iter().rposition(|&a| a == at) else {
                return false;
            };
            v.remove(i);
            s.spilled.set(v.len());
            true
        })
        // The list is gone (the thread's destructors are running), so this
        // cannot be told: release, as before there was a list.
        .unwrap_or(true)
}

/// What this thread holds, as seen from the lock at one address.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Holding {
    /// This thread holds the lock at this address.
    Here,
    /// It does not hold the lock at this address; these are the addresses
    /// of the locks it does hold (another mapping of the same memory may be
    /// among them).
    Others(Vec<usize>),
}

/// Whether this thread holds the lock at `at`.
pub(crate) fn holding(at: usize) -> Holding {
    let here = Here::new();
    let s = state(&here);
    let mut all: Vec<usize> = s.held[..s.depth.get()].iter().map(Cell::get).collect();
    let spilled = SPILL.try_with(|v| all.extend_from_slice(&v.borrow()[..s.spilled.get()]));
    // Without the list (the thread's destructors are running) the answer
    // that never lets two holders in.
    if spilled.is_err() || all.contains(&at) {
        Holding::Here
    } else {
        Holding::Others(all)
    }
}

/// Runs in the child after `fork()`: the child's only thread has a new
/// thread id, so its cached identity must be computed again, and it holds
/// none of the locks its parent's thread held (their words name the parent).
extern "C" fn reset_in_child() {
    let _ = STATE.try_with(|s| {
        s.ident.set(0);
        s.mine.set(0);
        s.depth.set(0);
        s.spilled.set(0);
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_held_locks_in_any_release_order() {
        assert_eq!(holding(8), Holding::Others(vec![]));
        acquired(8);
        acquired(16);
        acquired(24);
        assert_eq!(holding(16), Holding::Here);
        assert_eq!(holding(32), Holding::Others(vec![8, 16, 24]));
        assert!(released(16));
        assert_eq!(holding(16), Holding::Others(vec![8, 24]));
        // Never taken by this thread (a guard a forked child inherited).
        assert!(!released(4096));
        assert_eq!(holding(4096), Holding::Others(vec![8, 24]));
        released(24);
        released(8);
        assert_eq!(holding(8), Holding::Others(vec![]));
    }

    #[test]
    fn beyond_the_slots_locks_are_still_recorded() {
        let n = SLOTS + 5;
        for i in 1..=n {
            acquired(i * 8);
        }
        assert_eq!(holding(8), Holding::Here);
        assert_eq!(holding(n * 8), Holding::Here);
        let Holding::Others(all) = holding(4096) else {
            panic!("not held")
        };
        assert_eq!(all.len(), n);
        // Out of order: one from the slots, one from the list.
        released(3 * 8);
        released((SLOTS + 2) * 8);
        assert!(matches!(holding(3 * 8), Holding::Others(_)));
        assert!(matches!(holding((SLOTS + 2) * 8), Holding::Others(_)));
        acquired(4096);
        assert_eq!(holding(4096), Holding::Here);
        released(4096);
        for i in (1..=n).rev() {
            released(i * 8);
        }
        assert_eq!(holding(8), Holding::Others(vec![]));
    }
}
