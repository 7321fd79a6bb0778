//! Is a lock owner still alive? Thread ids from the lock word are checked
//! against `/proc`, with the owner's start time to see through recycled ids.

use std::io;

use nix::errno::Errno;
use nix::sys::signal::kill;
use nix::unistd::Pid;

/// The largest thread id Linux hands out (`PID_MAX_LIMIT`, 2^22).
pub(crate) const TID_LIMIT: u32 = 1 << 22;

/// What `/proc/TID/task/TID/stat` says of a thread: its state letter and its
/// start time in clock ticks after boot (field 22).
fn stat(tid: u32) -> io::Result<(u8, u64)> {
    let text = std::fs::read(format!("/proc/{tid}/task/{tid}/stat"))?;
    parse_stat(&text).ok_or_else(|| io::Error::new(io::ErrorKind::InvalidData, "bad stat line"))
}

/// Parses a stat line. The command name (field 2) may hold spaces and
/// parentheses, so fields are counted from the last `)`.
fn parse_stat(text: &[u8]) -> Option<(u8, u64)> {
    let close = text.iter().rposition(|&b| b == b')')?;
    let rest = std::str::from_utf8(&text[close + 1..]).ok()?;
    let mut fields = rest.split_ascii_whitespace();
    let state = fields.next()?.bytes().next()?; // field 3
    let start = fields.nth(18)?.parse().ok()?; // field 22
    Some((state, start))
}

/// The start time of thread `tid`, in clock ticks after boot.
pub(crate) fn start_time(tid: u32) -> Option<u64> {
    stat(tid).ok().map(|(_, start)| start)
}

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
    // kill(tid, 0) finds any thread by id, also where /proc hides it.
    if kill(Pid::from_raw(tid as i32), None) == Err(Errno::ESRCH) {
        return false;
    }
    match stat(tid) {
        Ok((state, start)) => {
            let dead = matches!(state, b'Z' | b'X' | b'x');
            let recycled = start_low32 != 0 && start as u32 != start_low32;
            !(dead || recycled)
        }
        Err(e) if e.kind() == io::ErrorKind::NotFound => false,
        Err(_) => true,
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
    fn parses_names_with_spaces_and_parens() {
        let line =
            b"4242 (a) b (c)) S 1 4242 4242 0 -1 4194560 100 0 0 0 1 2 0 0 20 0 1 0 987654 1000 10";
        assert_eq!(parse_stat(line), Some((b'S', 987654)));
    }

    #[test]
    fn this_thread_is_alive_and_has_a_start_time() {
        let tid = nix::unistd::gettid().as_raw() as u32;
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
