//! What the benchmarks print about the machine: its CPU, its load, and the
//! CPU time that other processes and the hypervisor took while they ran. Included by the benchmark
//! examples with `#[path]`.

use std::mem::MaybeUninit;
use std::time::Instant;

/// CPU time used on the whole machine and by this process and its helpers,
/// to tell how much other processes took while a section ran.
pub struct CpuClock {
    /// Busy and stolen time of all CPUs, in USER_HZ ticks (1/100 s on Linux).
    busy: u64,
    steal: u64,
    /// User and kernel time of this process and its reaped helpers.
    ours_ns: u64,
    at: Instant,
}

impl CpuClock {
    pub fn now() -> CpuClock {
        let (busy, steal) = std::fs::read_to_string("/proc/stat")
            .ok()
            .and_then(|s| {
                let f: Vec<u64> = s
                    .lines()
                    .next()?
                    .split_whitespace()
                    .skip(1)
                    .map_while(|v| v.parse().ok())
                    .collect();
                // user nice system idle iowait irq softirq steal ...
                (f.len() >= 8).then(|| (f[0] + f[1] + f[2] + f[5] + f[6], f[7]))
            })
            .unwrap_or((0, 0));
        CpuClock {
            busy,
            steal,
            ours_ns: rusage_ns(libc::RUSAGE_SELF) + rusage_ns(libc::RUSAGE_CHILDREN),
            at: Instant::now(),
        }
    }

    /// Prints how much CPU time others used since `self`; a new clock.
    pub fn report(self) -> CpuClock {
        let now = CpuClock::now();
        let secs = now.at.duration_since(self.at).as_secs_f64();
        let busy = now.busy.saturating_sub(self.busy) as f64 / 100.0;
        let ours = now.ours_ns.saturating_sub(self.ours_ns) as f64 / 1e9;
        let others = (busy - ours).max(0.0);
        let cpus = std::thread::available_parallelism().map_or(1, |n| n.get()) as f64;
        println!(
            "   [{secs:.1} s; other processes used about {others:.1} CPU-s ({:.0}% of the {cpus} CPUs), the hypervisor stole {:.1} s]",
            100.0 * others / (secs * cpus),
            now.steal.saturating_sub(self.steal) as f64 / 100.0
        );
        now
    }
}

/// User plus kernel CPU time of `who` (getrusage).
fn rusage_ns(who: libc::c_int) -> u64 {
    let mut ru = MaybeUninit::<libc::rusage>::uninit();
    // SAFETY: `ru` is valid for writes of a whole rusage, which getrusage
    // fills in on success.
    if unsafe { libc::getrusage(who, ru.as_mut_ptr()) } != 0 {
        return 0;
    }
    // SAFETY: getrusage returned 0, so it wrote the whole struct.
    let ru = unsafe { ru.assume_init() };
    let ns = |t: libc::timeval| t.tv_sec as u64 * 1_000_000_000 + t.tv_usec as u64 * 1000;
    ns(ru.ru_utime) + ns(ru.ru_stime)
}

/// The first three fields of /proc/loadavg.
pub fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|s| s.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_else(|_| "unknown".into())
}

/// The CPU's model name.
pub fn cpu_model() -> String {
    std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("model name"))
                .map(|v| v.trim_start_matches([' ', '\t', ':']).to_owned())
        })
        .unwrap_or_else(|| "unknown CPU".into())
}
