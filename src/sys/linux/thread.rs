//! Thread ids, and whether a thread of any process still runs: `gettid`,
//! `kill(tid, 0)` and `/proc/TID/task/TID/stat`, with the thread's start
//! time to see through recycled ids.

use std::io;

use nix::errno::Errno;
use nix::sys::signal::kill;
use nix::unistd::Pid;

/// The largest thread id Linux hands out (`PID_MAX_LIMIT`, 2^22).
pub(crate) const TID_LIMIT: u32 = 1 << 22;

/// The calling thread's kernel thread id (`gettid`): unique among the
/// threads of all processes of the PID namespace while it runs.
pub(crate) fn current_tid() -> u32 {
    nix::unistd::gettid().as_raw() as u32
}

/// What the system says of a thread id.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Probe {
    /// No thread has this id.
    Gone,
    /// The thread has exited (a zombie, not yet reaped).
    Exited,
    /// A thread runs with this id, started `start` clock ticks after boot.
    Running {
        /// Its start time.
        start: u64,
    },
    /// A thread has this id, but its start time cannot be read (no
    /// `/proc`, or `/proc` hides other users' processes).
    Unknown,
}

/// What the system says of thread `tid` now.
pub(crate) fn probe(tid: u32) -> Probe {
    // kill(tid, 0) finds any thread by id, also where /proc hides it.
    if kill(Pid::from_raw(tid as i32), None) == Err(Errno::ESRCH) {
        return Probe::Gone;
    }
    match stat(tid) {
        Ok((b'Z' | b'X' | b'x', _)) => Probe::Exited,
        Ok((_, start)) => Probe::Running { start },
        Err(e) if e.kind() == io::ErrorKind::NotFound => Probe::Gone,
        Err(_) => Probe::Unknown,
    }
}

/// Whether thread `tid` of this process still runs: `Some(false)` if this
/// process has no such thread or it has exited, `None` if `/proc` cannot
/// tell.
pub(crate) fn runs_here(tid: u32) -> Option<bool> {
    match std::fs::read(format!("/proc/self/task/{tid}/stat")) {
        Ok(text) => match parse_stat(&text) {
            Some((b'Z' | b'X' | b'x', _)) => Some(false),
            Some(_) => Some(true),
            None => None,
        },
        Err(e) if e.kind() == io::ErrorKind::NotFound => Some(false),
        Err(_) => None,
    }
}

/// The process (thread group) of thread `tid` of this PID namespace;
/// `None` if there is no such thread here.
pub(crate) fn thread_group(tid: u32) -> Option<u32> {
    if tid == 0 {
        return None;
    }
    let status = std::fs::read_to_string(format!("/proc/{tid}/status")).ok()?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("Tgid:"))
        .and_then(|v| v.trim().parse().ok())
}

/// The start time of thread `tid`, in clock ticks after boot.
pub(crate) fn start_time(tid: u32) -> Option<u64> {
    stat(tid).ok().map(|(_, start)| start)
}

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
    fn this_thread_runs_with_its_start_time() {
        let tid = current_tid();
        let start = start_time(tid).expect("own stat");
        assert_eq!(probe(tid), Probe::Running { start });
    }
}
