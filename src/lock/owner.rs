//! Is a lock owner still alive? Thread ids from the lock word are checked
//! against the system (`sys::thread`), with the owner's start time to see
//! through recycled ids.

use crate::sys::thread::{self, Probe};

pub(crate) use crate::sys::thread::{start_time, TID_LIMIT};

/// Whether the thread `tid`, started at `start_low32` (the low 32 bits of its
/// start time, 0 when it could not be read), may still hold a lock.
///
/// Dead: no such thread, a zombie, or a thread with another start time (the
/// id was recycled). When the answer cannot be known (no `/proc`, or `/proc`
/// hides other users' processes) the owner counts as alive: a lock is never
/// taken from a holder that might be running.
pub(crate) fn is_alive(tid: u32, start_low32: u32) -> bool {
    if tid == 0 || tid >= TID_LIMIT {
        return false; // no thread has this id: the word was damaged
    }
    match thread::probe(tid) {
        Probe::Gone | Probe::Exited => false,
        // A thread with another start time has a recycled id.
        Probe::Running { start } => start_low32 == 0 || start as u32 == start_low32,
        Probe::Unknown => true,
    }
}

/// Packs a thread id and start time into an owner identity (never 0: thread
/// ids start at 1).
pub(crate) fn compose_ident(tid: u32, start_time: u64) -> u64 {
    debug_assert!(tid != 0 && tid < TID_LIMIT);
    ((start_time as u32 as u64) << 32) | u64::from(tid)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn this_thread_is_alive_and_has_a_start_time() {
        let tid = thread::current_tid();
        let start = start_time(tid).expect("own stat");
        assert!(is_alive(tid, start as u32));
        assert!(
            !is_alive(tid, start as u32 ^ 1),
            "other start time = recycled id"
        );
    }

    #[test]
    fn impossible_ids_are_dead() {
        assert!(!is_alive(0, 0));
        assert!(!is_alive(TID_LIMIT, 0));
        assert!(!is_alive(u32::MAX >> 1, 0));
    }
}
