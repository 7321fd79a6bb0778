//! Who poisoned a lock, and how: [`PoisonInfo`] and [`PoisonCause`].
//!
//! A lock is poisoned when its holder dies or panics while holding it, or
//! when its segment is migrated to a new layout. The segment records the
//! cause, the thread and the time beside the lock, so any process can learn
//! what happened ([`Shared::poison_info`](crate::Shared::poison_info)) and
//! clear it once the value is checked
//! ([`Shared::clear_poison`](crate::Shared::clear_poison)).

use std::fmt;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use crate::lock::{RawPoison, POISON_KILLED, POISON_PANICKED, POISON_SUPERSEDED};

/// Why a lock is poisoned.
#[non_exhaustive]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum PoisonCause {
    /// A holder was found dead while holding the lock: killed by any
    /// signal, or exited. A write it began may be half done.
    Killed,
    /// A holder's thread panicked while holding the lock (its guard was
    /// dropped during unwinding), as with `std::sync::Mutex`.
    Panicked,
    /// The segment was migrated to a new layout and replaced under its
    /// name (see [`SharedOptions::open_or_migrate`](crate::SharedOptions::open_or_migrate)
    /// and [`Store::get_or_migrate`](crate::Store::get_or_migrate)): this
    /// segment (or entry) is the old one. Reopen the name to reach the new one; writes here are lost to
    /// the new segment's users.
    Superseded,
    /// The segment records a cause this build does not know (written by a
    /// newer build or a peer).
    Unknown,
}

impl PoisonCause {
    /// The cause stored as `code` (non-zero).
    pub(crate) fn from_code(code: u32) -> PoisonCause {
        match code {
            POISON_KILLED => PoisonCause::Killed,
            POISON_PANICKED => PoisonCause::Panicked,
            POISON_SUPERSEDED => PoisonCause::Superseded,
            _ => PoisonCause::Unknown,
        }
    }
}

impl fmt::Display for PoisonCause {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            PoisonCause::Killed => "killed",
            PoisonCause::Panicked => "panicked",
            PoisonCause::Superseded => "superseded",
            PoisonCause::Unknown => "unknown",
        })
    }
}

/// What poisoned a lock: the segment (or store entry), the process and
/// thread, the cause and the time, as the segment records them.
///
/// Its `Display` is one line a user can act on:
///
/// ```text
/// segment "jobs" was poisoned at 2026-12-06 17:20:03 UTC: process 4242 (thread 4243) was killed while holding its lock; the value may be half-written: check it, then call clear_poison() (or run `shmstore unpoison jobs`)
/// ```
///
/// ```
/// use shmstore::{PoisonCause, Shared};
///
/// # let name = format!("doc-poison-info-{}", std::process::id());
/// let c = Shared::<u64>::create(&name, 0)?;
/// let c2 = &c;
/// let _ = std::thread::scope(|s| {
///     s.spawn(|| {
///         let _g = c2.lock().unwrap();
///         panic!("oops");
///     })
///     .join()
/// });
/// let info = c.poison_info().expect("poisoned");
/// assert_eq!(info.cause(), PoisonCause::Panicked);
/// assert_eq!(info.pid(), Some(std::process::id()));
/// c.clear_poison();
/// assert!(c.poison_info().is_none());
/// # shmstore::unlink(&name)?;
/// # Ok::<(), shmstore::Error>(())
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PoisonInfo {
    segment: String,
    /// For a store entry: the store's name and the key.
    entry: Option<(String, String)>,
    pid: Option<u32>,
    tid: u32,
    cause: PoisonCause,
    time: SystemTime,
}

impl PoisonInfo {
    /// The record `raw` of the segment labelled `segment`; for a store
    /// entry, `entry` is the store's name and the entry's key.
    pub(crate) fn from_raw(
        segment: String,
        entry: Option<(String, String)>,
        raw: RawPoison,
    ) -> PoisonInfo {
        let pid = (raw.holder >> 32) as u32;
        PoisonInfo {
            segment,
            entry,
            pid: (pid != 0).then_some(pid),
            tid: raw.holder as u32,
            cause: PoisonCause::from_code(raw.cause),
            // u64 nanoseconds always fit (about 584 years); a clock that
            // cannot add them would give the epoch.
            time: UNIX_EPOCH
                .checked_add(Duration::from_nanos(raw.at_ns))
                .unwrap_or(UNIX_EPOCH),
        }
    }

    /// This record, for the segment labelled `segment` (and, for a store
    /// entry, `entry`: the store's name and the key).
    pub(crate) fn named(mut self, segment: String, entry: Option<(String, String)>) -> PoisonInfo {
        self.segment = segment;
        self.entry = entry;
        self
    }

    /// The segment's name as the handle gives it
    /// ([`Shared::name`](crate::Shared::name)); for a store entry, the
    /// store's name and the key (`store/key`).
    pub fn segment(&self) -> &str {
        &self.segment
    }

    /// The process id of the thread that poisoned the lock; `None` when it
    /// died before recording it (it took the lock while the lock was
    /// poisoned, or a peer wrote the lock word).
    pub fn pid(&self) -> Option<u32> {
        self.pid
    }

    /// The kernel thread id of the thread that poisoned the lock.
    pub fn tid(&self) -> u32 {
        self.tid
    }

    /// Why the lock is poisoned.
    pub fn cause(&self) -> PoisonCause {
        self.cause
    }

    /// When the poison was recorded.
    pub fn time(&self) -> SystemTime {
        self.time
    }

    /// The `shmstore` command that clears this poison.
    fn unpoison_command(&self) -> String {
        match &self.entry {
            Some((store, key)) => format!("shmstore unpoison {store} --entry {key}"),
            None => format!("shmstore unpoison {}", self.segment),
        }
    }
}

impl fmt::Display for PoisonInfo {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let what = if self.entry.is_some() {
            "store entry"
        } else {
            "segment"
        };
        write!(f, "{what} {:?} was poisoned at ", self.segment)?;
        write_utc(f, self.time)?;
        match self.pid {
            Some(pid) => write!(f, ": process {pid} (thread {})", self.tid)?,
            None => write!(f, ": thread {} (process unknown)", self.tid)?,
        }
        let clear = format!("call clear_poison() (or run `{}`)", self.unpoison_command());
        match self.cause {
            PoisonCause::Killed => write!(
                f,
                " was killed while holding its lock; the value may be half-written: \
                 check it, then {clear}"
            ),
            PoisonCause::Panicked => write!(
                f,
                " panicked while holding its lock; the value may be half-written: \
                 check it, then {clear}"
            ),
            PoisonCause::Superseded => write!(
                f,
                " migrated it to a new layout; open the name again to use the new \
                 segment (writes here would be lost to it; to write anyway, {clear})"
            ),
            PoisonCause::Unknown => write!(
                f,
                " poisoned its lock for a reason this build does not know; \
                 check the value, then {clear}"
            ),
        }
    }
}

/// Writes `t` as `YYYY-MM-DD HH:MM:SS UTC` (seconds since the epoch, with
/// "before 1970" for earlier times).
fn write_utc(f: &mut fmt::Formatter<'_>, t: SystemTime) -> fmt::Result {
    let Ok(d) = t.duration_since(UNIX_EPOCH) else {
        return f.write_str("a time before 1970");
    };
    let secs = d.as_secs();
    let (y, mo, day) = civil((secs / 86_400) as i64);
    let s = secs % 86_400;
    write!(
        f,
        "{y:04}-{mo:02}-{day:02} {:02}:{:02}:{:02} UTC",
        s / 3600,
        s / 60 % 60,
        s % 60
    )
}

/// The proleptic Gregorian date of `days` since 1970-01-01 (Howard
/// Hinnant's `civil_from_days`). The `shmstore` command formats its times
/// with it too (through `__private`).
pub fn civil(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y, m, d)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn info(cause: u32, holder: u64, at_ns: u64) -> PoisonInfo {
        PoisonInfo::from_raw(
            "jobs".into(),
            None,
            RawPoison {
                cause,
                holder,
                at_ns,
            },
        )
    }

    #[test]
    fn says_who_and_how() {
        let at = 1_796_577_603 * 1_000_000_000; // 2026-12-06 17:20:03 UTC
        let i = info(POISON_KILLED, 4242 << 32 | 4243, at);
        assert_eq!(
            i.to_string(),
            "segment \"jobs\" was poisoned at 2026-12-06 17:20:03 UTC: process 4242 \
             (thread 4243) was killed while holding its lock; the value may be \
             half-written: check it, then call clear_poison() (or run `shmstore \
             unpoison jobs`)"
        );
        assert_eq!(i.pid(), Some(4242));
        assert_eq!(i.tid(), 4243);
        let i = info(POISON_PANICKED, 7, 0);
        assert_eq!(i.pid(), None);
        assert_eq!(i.cause(), PoisonCause::Panicked);
        assert!(i.to_string().contains("1970-01-01 00:00:00 UTC"), "{i}");
        let e = PoisonInfo::from_raw(
            "st/k".into(),
            Some(("st".into(), "k".into())),
            RawPoison {
                cause: POISON_SUPERSEDED,
                holder: 1 << 32 | 1,
                at_ns: 0,
            },
        );
        assert!(
            e.to_string().contains("shmstore unpoison st --entry k"),
            "{e}"
        );
    }

    #[test]
    fn a_superseded_segment_stays_poisoned_for_handles_without_poisoning() {
        let mut c = crate::Shared::<u64>::memfd(5).unwrap();
        c.slot.set_poisoning(false);
        let lock = c.slot.raw();
        let me = lock.acquire();
        lock.supersede();
        let saved = lock.raw_poison().expect("superseded");
        lock.release(me, false);
        assert_eq!(c.poison_info().unwrap().cause(), PoisonCause::Superseded);
        assert_eq!(c.poison_info().unwrap().pid(), Some(std::process::id()));
        assert!(c.lock().is_err(), "a superseded segment is not written to");
        assert!(matches!(
            c.try_lock(),
            Err(std::sync::TryLockError::Poisoned(_))
        ));
        assert!(c.snapshot().is_err());
        assert!(c.poison_info().is_some());

        // A migration that could not finish puts back what was there.
        c.clear_poison();
        let me = c.slot.raw().acquire();
        c.slot.raw().restore_poison(saved);
        c.slot.raw().release(me, false);
        assert_eq!(c.slot.raw().raw_poison(), Some(saved));

        // An explicit clear_poison lets writes in.
        c.clear_poison();
        *c.lock().unwrap() = 6;
        assert_eq!(c.snapshot().unwrap(), 6);
    }

    #[test]
    fn supersede_overrides_an_earlier_cause() {
        let l = crate::lock::RawLock::new();
        let me = l.acquire();
        l.poison();
        assert_eq!(l.raw_poison().unwrap().cause, POISON_PANICKED);
        l.supersede();
        assert_eq!(l.raw_poison().unwrap().cause, POISON_SUPERSEDED);
        l.release(me, false);
    }

    #[test]
    fn garbage_records_still_print() {
        for (cause, holder, at) in [(u32::MAX, u64::MAX, u64::MAX), (99, 0, 1), (4, 1 << 63, 0)] {
            let i = info(cause, holder, at);
            assert_eq!(i.cause(), PoisonCause::Unknown);
            assert!(!i.to_string().is_empty());
            assert!(i.time() >= UNIX_EPOCH);
        }
    }
}
