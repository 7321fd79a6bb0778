//! Is a lock owner still alive? A lock word names its holder by thread id
//! and process incarnation (`compose_ident`): a thread of this process is
//! checked in `/proc/self/task` (`sys::thread`), another process by whether
//! it still shows its incarnation in the segment (`sys::presence`). Process
//! ids recorded elsewhere (a segment's creator) are still checked with their
//! start time (`is_alive`).

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

/// This process's incarnation (see `sys::presence`).
pub(crate) fn incarnation() -> std::io::Result<u64> {
    crate::sys::presence::incarnation()
}

/// Whether the process of incarnation `x` may still use the segment this
/// process maps at `addr`: this process, or one that shows itself there.
/// When that cannot be told, it counts as alive.
pub(crate) fn present(addr: usize, x: u64) -> bool {
    if crate::sys::presence::incarnation().is_ok_and(|mine| mine == x) {
        return true;
    }
    crate::sys::presence::presence(addr, x) != crate::sys::presence::Presence::Absent
}

/// Whether thread `tid` of this process may still hold a lock: no such
/// thread, or one that has exited, is dead; when `/proc` cannot tell, it
/// counts as alive.
pub(crate) fn thread_runs(tid: u32) -> bool {
    tid != 0 && tid < TID_LIMIT && thread::runs_here(tid).unwrap_or(true)
}

/// Packs a thread id and its process's incarnation (40 bits, see
/// `sys::presence`) into an owner identity: the thread id in bits 0-21,
/// the incarnation's low 8 bits in bits 22-29 and its high 32 bits in bits
/// 32-63 (bits 30 and 31 are the lock's flags). Never 0: thread ids start
/// at 1.
pub(crate) fn compose_ident(tid: u32, incarnation: u64) -> u64 {
    debug_assert!(tid != 0 && tid < TID_LIMIT);
    debug_assert!(incarnation < 1 << crate::sys::presence::INCARNATION_BITS);
    ((incarnation >> 8) << 32) | ((incarnation & 0xff) << 22) | u64::from(tid)
}

/// The thread id in an owner identity (or a lock word).
pub(crate) fn tid_of(ident: u64) -> u32 {
    (ident & u64::from(TID_LIMIT - 1)) as u32
}

/// The incarnation in an owner identity (or a lock word).
pub(crate) fn incarnation_of(ident: u64) -> u64 {
    ((ident >> 32) << 8) | ((ident >> 22) & 0xff)
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
    fn identities_hold_thread_and_incarnation_apart_from_the_flags() {
        let x = (1 << crate::sys::presence::INCARNATION_BITS) - 1;
        let v = compose_ident(TID_LIMIT - 1, x);
        assert_eq!(v & (3 << 30), 0, "the flag bits stay clear");
        assert_eq!(tid_of(v), TID_LIMIT - 1);
        assert_eq!(incarnation_of(v), x);
        let v = compose_ident(7, 0x12_3456_789a) | (3 << 30);
        assert_eq!((tid_of(v), incarnation_of(v)), (7, 0x12_3456_789a));
    }

    #[test]
    fn impossible_ids_are_dead() {
        assert!(!is_alive(0, 0));
        assert!(!is_alive(TID_LIMIT, 0));
        assert!(!is_alive(u32::MAX >> 1, 0));
    }
}
