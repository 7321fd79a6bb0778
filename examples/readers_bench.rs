//! What readers cost, and what they cost the writer: lock-free snapshots
//! against a plain copy of the same bytes and against mmap-sync, writer
//! throughput with busy readers, and how fast `wait_for_change` wakes up.
//!
//! ```text
//! cargo run --release --example readers_bench          # the whole run, well under 2 minutes
//! cargo run --release --example readers_bench -- 0.2   # SCALE: iterations, windows and samples x 0.2
//! ```
//!
//! Everything is measured in one run, with the variants of each section
//! interleaved in rotating order, so that the ratios compare like with like
//! (absolute times drift between runs on a VM). Sections:
//!
//! 1. A snapshot of a 64-byte value (`Shared::snapshot`,
//!    `SharedReader::snapshot`) against a plain copy of the same bytes out
//!    of the same segment (`ptr::read` at offset 304 of our own mapping of
//!    `/dev/shm/NAME`) and against mmap-sync's `read` of the same 64 bytes.
//! 2. The same for 4 KiB against a 4 KiB `memcpy`.
//! 3. Writer commits per second with 0 and with 4 busy reader processes:
//!    wall-clock rate, rate per second of the writer's own CPU time, and
//!    wall rate with the readers at nice 19; with readers that snapshot
//!    once per 10 µs and spin on their own clock in between (busy, but off
//!    the shared cache lines: this separates what readers cost the writer
//!    through cache-line traffic from what they cost in CPU time); and,
//!    for contrast, with readers that `lock()` to read.
//! 4. Wake-up latency from a commit in one process to `wait_for_change`
//!    returning in another (a `Shared` and a `SharedReader` waiter), next to
//!    a raw futex wake measured the same way.
//! 5. What a writer's lock + write + unlock costs with nobody watching, with
//!    a watcher (that pauses 1 ms after each change, or re-arms at once), and
//!    on a `wake_read_only` segment (one `FUTEX_WAKE` per commit); and one
//!    commit that wakes a sleeping waiter (from section 4).
//!
//! Helper processes are this program re-executed with a role argument. Every
//! object this run makes is named `readers_bench_PID_...` and removed at the
//! end, also when the run fails. Speed is printed, never asserted.

#[path = "common/machine.rs"]
mod machine;
#[allow(dead_code)] // its store cleanup is for the store benchmarks
#[path = "common/run.rs"]
mod run;
use machine::{cpu_model, load_average, CpuClock};
use run::leftovers;

use std::ffi::{c_void, OsStr};
use std::hint::black_box;
use std::io::{BufRead, BufReader, Write};
use std::mem::{align_of, size_of, MaybeUninit};
use std::num::NonZeroUsize;
use std::os::fd::AsFd;
use std::process::{Child, ChildStdout, Command, ExitCode, Stdio};
use std::ptr::{self, NonNull};
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::PoisonError;
use std::time::{Duration, Instant};

use mmap_sync::synchronizer::Synchronizer;
use nix::fcntl::OFlag;
use nix::sys::mman::{mmap, munmap, shm_open, shm_unlink, MapFlags, ProtFlags};
use nix::sys::stat::Mode;
use nix::time::{clock_gettime, ClockId};
use shmstore::{Shareable, Shared, SharedOptions, SharedReader};

/// The 64-byte value. Writers change words 0..7; word 7 becomes [`STOP`]
/// when a run is over, which tells helper processes to report and exit.
#[derive(Shareable, Clone, Copy, Default, Debug, PartialEq)]
#[repr(C)]
struct Small {
    words: [u64; 8],
}

/// The 4 KiB value of section 2.
#[derive(Shareable, Clone, Copy, PartialEq)]
#[repr(C)]
struct Page {
    words: [u64; 512],
}

/// The same 64 bytes for mmap-sync, archived with rkyv (native byte order:
/// the archived form is eight plain `u64`s).
#[derive(rkyv::Archive, rkyv::Serialize)]
#[archive(check_bytes)]
struct SyncSmall {
    words: [u64; 8],
}

/// Where a `Shared<T>`'s value starts in its segment, for `T` aligned to at
/// most 32 (see the layout in src/segment/header.rs); checked at run time below.
const VALUE_OFFSET: usize = 304;
/// Word 7 of a [`Small`] once a run is over.
const STOP: u64 = u64::MAX;
/// Busy reader processes in section 3.
const READERS: usize = 4;

const _: () = assert!(size_of::<Small>() == 64);
const _: () = assert!(size_of::<Page>() == 4096);

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let result = match args.as_slice() {
        [] => bench(1.0),
        [scale] => match scale.parse::<f64>() {
            Ok(s) if s > 0.0 && s <= 100.0 => bench(s),
            _ => Err(usage()),
        },
        ["reader", kind, name, nice, pace] => match (nice.parse(), pace.parse()) {
            (Ok(nice), Ok(pace)) => reader(kind, name, nice, pace),
            _ => Err(usage()),
        },
        ["watcher", kind, name, pause] => match pause.parse() {
            Ok(pause) => watcher(kind, name, pause),
            Err(_) => Err(usage()),
        },
        ["waiter", kind, name, last] => match last.parse() {
            Ok(last) => waiter(kind, name, last),
            Err(_) => Err(usage()),
        },
        _ => Err(usage()),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(msg) => {
            eprintln!("readers_bench: {msg}");
            ExitCode::from(2)
        }
    }
}

fn usage() -> String {
    "usage: readers_bench [SCALE]   (SCALE > 0, default 1: iterations, windows and samples)".into()
}

/// How much of everything a run does.
struct Config {
    /// Copies per timed batch in section 1.
    iters_small: u64,
    /// Copies per timed batch in section 2.
    iters_page: u64,
    /// Timed batches of each variant in sections 1 and 2.
    reps: usize,
    /// How long the writer writes in each window of sections 3 and 5.
    window: Duration,
    /// Windows of each scenario in sections 3 and 5.
    windows: usize,
    /// Wake-up samples of each kind in section 4.
    samples: usize,
    /// The samples are taken in this many rounds, kinds rotating.
    rounds: usize,
    /// Pause before each sample, so that the waiter is asleep.
    gap: Duration,
}

impl Config {
    fn new(scale: f64) -> Config {
        let n = |base: f64, min: f64| (base * scale).max(min) as u64;
        Config {
            iters_small: n(2_000_000.0, 10_000.0),
            iters_page: n(200_000.0, 1_000.0),
            reps: 11,
            window: Duration::from_millis(n(500.0, 20.0)),
            windows: 5,
            samples: n(2000.0, 40.0) as usize,
            rounds: 4,
            gap: Duration::from_millis(1),
        }
    }
}

fn bench(scale: f64) -> Result<(), String> {
    let started = Instant::now();
    let cfg = Config::new(scale);
    let prefix = format!("readers_bench_{}", std::process::id());
    println!(
        "readers_bench: {} CPUs ({}), Linux {}; scale {scale}; every figure below is from this one run.",
        std::thread::available_parallelism().map_or(0, |n| n.get()),
        cpu_model(),
        std::fs::read_to_string("/proc/sys/kernel/osrelease")
            .unwrap_or_default()
            .trim(),
    );
    println!(
        "Load average before the run: {} (other busy processes on this machine distort every figure).",
        load_average()
    );
    println!(
        "Medians of interleaved repetitions in rotating order, with (min-max; n); ratios are median / median."
    );

    let clock = CpuClock::now();
    let small = section_small(&cfg, &prefix)?;
    let clock = clock.report();
    let page = section_page(&cfg, &prefix)?;
    let clock = clock.report();
    let writer = section_writer(&cfg, &prefix)?;
    let clock = clock.report();
    let wake = section_wake(&cfg, &prefix)?;
    let clock = clock.report();
    section_write_cost(&cfg, &prefix, &wake)?;
    clock.report();

    println!();
    println!("Summary of the targets:");
    for line in small.iter().chain(&page).chain(&writer) {
        println!("  {line}");
    }
    let left = leftovers(&prefix);
    println!("Load average after the run: {}.", load_average());
    println!(
        "Objects of this run left in /dev/shm: {}. Took {:.1} s.",
        if left.is_empty() {
            "none".to_owned()
        } else {
            left.join(", ")
        },
        started.elapsed().as_secs_f64()
    );
    Ok(())
}

// ---------------------------------------------------------------------------
// Sections 1 and 2: copies out of the same mapping.

/// Runs `op` `iters` times; nanoseconds per call.
#[inline(always)]
fn per_op(iters: u64, mut op: impl FnMut()) -> f64 {
    let t = Instant::now();
    for _ in 0..iters {
        op();
    }
    t.elapsed().as_nanos() as f64 / iters as f64
}

/// A variant of sections 1 and 2: runs its loop of n copies, returns ns/op.
type Variant<'a> = (&'static str, Box<dyn FnMut(u64) -> f64 + 'a>);

/// Runs every variant `reps` times (after one warm-up batch each), in an
/// order that rotates by one every repetition; the samples of each.
fn interleave(variants: &mut [Variant<'_>], iters: u64, reps: usize) -> Vec<Vec<f64>> {
    for (_, run) in variants.iter_mut() {
        run(iters / 4 + 1);
    }
    let k = variants.len();
    let mut samples = vec![Vec::with_capacity(reps); k];
    for rep in 0..reps {
        for j in 0..k {
            let i = (j + rep) % k;
            samples[i].push((variants[i].1)(iters));
        }
    }
    samples
}

fn section_small(cfg: &Config, prefix: &str) -> Result<Vec<String>, String> {
    let name = format!("{prefix}_small");
    let mut value = Small::default();
    for (i, w) in value.words.iter_mut().enumerate() {
        *w = 0x0101_0101_0101_0101 * (i as u64 + 1);
    }
    let shared = Shared::create(name.as_str(), value).map_err(|e| e.to_string())?;
    let _rm = Remove::Segment(name.clone());
    let reader = SharedReader::<Small>::open(name.as_str()).map_err(|e| e.to_string())?;
    let (map, raw) = own_mapping::<Small>(&name)?;
    // SAFETY: `raw` is in bounds of `map` and aligned (own_mapping checks
    // both), `map` lives until the end of this function, and nothing writes
    // this segment during the section, so the read races with nothing.
    let plain = unsafe { ptr::read(raw) };
    if plain != value || reader.snapshot().ok() != Some(value) {
        return Err(format!(
            "the value is not at offset {VALUE_OFFSET} of /dev/shm/{name}: the layout changed"
        ));
    }

    // mmap-sync: written once by one Synchronizer, read by others (one per
    // variant, since `read` takes `&mut self`), on tmpfs as its README advises.
    let sync_prefix = format!("/dev/shm/{prefix}_mmapsync");
    let _rm_sync =
        ["_state", "_data_0", "_data_1"].map(|s| Remove::File(format!("{sync_prefix}{s}")));
    let sync_path = OsStr::new(&sync_prefix);
    Synchronizer::new(sync_path)
        .write(&SyncSmall { words: value.words }, Duration::from_secs(1))
        .map_err(|e| format!("mmap-sync write: {e}"))?;
    let mut sync_checked = Synchronizer::new(sync_path);
    let mut sync_unchecked = Synchronizer::new(sync_path);
    // SAFETY: the result is dropped at once, well within the grace period
    // given to `write`, and no writer runs during this section.
    let check = unsafe { sync_checked.read::<SyncSmall>(true) }
        .map_err(|e| format!("mmap-sync read: {e}"))?
        .words;
    if check != value.words {
        return Err("mmap-sync read back other bytes than it wrote".into());
    }

    let mut variants: Vec<Variant<'_>> = vec![
        (
            "plain copy: ptr::read at offset 304 of own mapping",
            Box::new(|n| {
                per_op(n, || {
                    let p = black_box(raw);
                    // SAFETY: as for `plain` above.
                    let v = unsafe { ptr::read(p) };
                    black_box(&v);
                })
            }),
        ),
        (
            "Shared::snapshot",
            Box::new(|n| {
                per_op(n, || {
                    let v = shared.snapshot().unwrap_or_else(PoisonError::into_inner);
                    black_box(&v);
                })
            }),
        ),
        (
            "SharedReader::snapshot",
            Box::new(|n| {
                per_op(n, || {
                    let v = reader.snapshot().unwrap_or_else(PoisonError::into_inner);
                    black_box(&v);
                })
            }),
        ),
        (
            "mmap-sync 2.0.4 read::<T>(check_bytes=true) + copy out",
            Box::new(|n| {
                per_op(n, || {
                    // SAFETY: as for `check` above: the guard is dropped
                    // within this call, long before the grace period ends.
                    let r = unsafe { sync_checked.read::<SyncSmall>(true) };
                    let v = r.expect("mmap-sync read").words;
                    black_box(&v);
                })
            }),
        ),
        (
            "mmap-sync 2.0.4 read::<T>(check_bytes=false) + copy out",
            Box::new(|n| {
                per_op(n, || {
                    // SAFETY: as above; the bytes were validated by the
                    // checked read before the loop and nothing writes them.
                    let r = unsafe { sync_unchecked.read::<SyncSmall>(false) };
                    let v = r.expect("mmap-sync read").words;
                    black_box(&v);
                })
            }),
        ),
        (
            "plain copy into a reused buffer (copy_nonoverlapping)",
            Box::new(|n| {
                let mut buf = Small::default();
                per_op(n, || {
                    let p = black_box(raw);
                    // SAFETY: as for `plain` above; `buf` is a separate local.
                    unsafe { ptr::copy_nonoverlapping(p, &mut buf, 1) };
                    black_box(&mut buf);
                })
            }),
        ),
        (
            "Shared::snapshot_into a reused buffer",
            Box::new(|n| {
                let mut buf = Small::default();
                per_op(n, || {
                    let g = shared
                        .snapshot_into(&mut buf)
                        .unwrap_or_else(PoisonError::into_inner);
                    black_box((&mut buf, g));
                })
            }),
        ),
    ];
    let names: Vec<&str> = variants.iter().map(|v| v.0).collect();
    let samples = interleave(&mut variants, cfg.iters_small, cfg.reps);
    drop(variants);
    drop(map);

    println!();
    println!(
        "1. Copy of a 64-byte value out of one segment, nobody writing ({} copies per batch)",
        cfg.iters_small
    );
    print_table("ns/op", &names, &samples);
    let m: Vec<f64> = samples.iter().map(|s| Stats::of(s).median).collect();
    let mut summary = Vec::new();
    let checks = [
        ("Shared::snapshot / plain copy", m[1] / m[0], 2.0),
        ("SharedReader::snapshot / plain copy", m[2] / m[0], 2.0),
        (
            "Shared::snapshot / mmap-sync (check_bytes=true)",
            m[1] / m[3],
            1.0,
        ),
        (
            "SharedReader::snapshot / mmap-sync (check_bytes=true)",
            m[2] / m[3],
            1.0,
        ),
        (
            "Shared::snapshot / mmap-sync (check_bytes=false)",
            m[1] / m[4],
            1.0,
        ),
        (
            "SharedReader::snapshot / mmap-sync (check_bytes=false)",
            m[2] / m[4],
            1.0,
        ),
    ];
    for (what, ratio, target) in checks {
        summary.push(ratio_line("1.", what, ratio, target));
    }
    summary.push(ratio_line(
        "1.",
        "Shared::snapshot_into / plain copy into a buffer",
        m[6] / m[5],
        2.0,
    ));
    print_ratios(&summary);
    Ok(summary)
}

fn section_page(cfg: &Config, prefix: &str) -> Result<Vec<String>, String> {
    let name = format!("{prefix}_page");
    let mut value = Page { words: [0; 512] };
    for (i, w) in value.words.iter_mut().enumerate() {
        *w = i as u64 * 0x9e37_79b9_7f4a_7c15;
    }
    let shared = Shared::create(name.as_str(), value).map_err(|e| e.to_string())?;
    let _rm = Remove::Segment(name.clone());
    let reader = SharedReader::<Page>::open(name.as_str()).map_err(|e| e.to_string())?;
    let (map, raw) = own_mapping::<Page>(&name)?;
    // SAFETY: as in section 1: in bounds, aligned, `map` lives, nobody writes.
    let plain = unsafe { ptr::read(raw) };
    if plain != value {
        return Err(format!(
            "the value is not at offset {VALUE_OFFSET} of /dev/shm/{name}: the layout changed"
        ));
    }
    let mut variants: Vec<Variant<'_>> = vec![
        (
            "plain 4 KiB memcpy: ptr::read at offset 304 of own mapping",
            Box::new(|n| {
                per_op(n, || {
                    let p = black_box(raw);
                    // SAFETY: as for `plain` above.
                    let v = unsafe { ptr::read(p) };
                    black_box(&v);
                })
            }),
        ),
        (
            "Shared::snapshot",
            Box::new(|n| {
                per_op(n, || {
                    let v = shared.snapshot().unwrap_or_else(PoisonError::into_inner);
                    black_box(&v);
                })
            }),
        ),
        (
            "SharedReader::snapshot",
            Box::new(|n| {
                per_op(n, || {
                    let v = reader.snapshot().unwrap_or_else(PoisonError::into_inner);
                    black_box(&v);
                })
            }),
        ),
        (
            "plain 4 KiB memcpy into a reused buffer (copy_nonoverlapping)",
            Box::new(|n| {
                let mut buf = Page { words: [0; 512] };
                per_op(n, || {
                    let p = black_box(raw);
                    // SAFETY: as for `plain` above; `buf` is a separate local.
                    unsafe { ptr::copy_nonoverlapping(p, &mut buf, 1) };
                    black_box(&mut buf);
                })
            }),
        ),
        (
            "Shared::snapshot_into a reused buffer",
            Box::new(|n| {
                let mut buf = Page { words: [0; 512] };
                per_op(n, || {
                    let g = shared
                        .snapshot_into(&mut buf)
                        .unwrap_or_else(PoisonError::into_inner);
                    black_box((&mut buf, g));
                })
            }),
        ),
    ];
    let names: Vec<&str> = variants.iter().map(|v| v.0).collect();
    let samples = interleave(&mut variants, cfg.iters_page, cfg.reps);
    drop(variants);
    drop(map);

    println!();
    println!(
        "2. Copy of a 4 KiB value ([u64; 512]) out of one segment, nobody writing ({} copies per batch)",
        cfg.iters_page
    );
    print_table("ns/op", &names, &samples);
    let m: Vec<f64> = samples.iter().map(|s| Stats::of(s).median).collect();
    let summary = vec![
        ratio_line("2.", "Shared::snapshot / memcpy (4 KiB)", m[1] / m[0], 2.0),
        ratio_line(
            "2.",
            "SharedReader::snapshot / memcpy (4 KiB)",
            m[2] / m[0],
            2.0,
        ),
        ratio_line(
            "2.",
            "Shared::snapshot_into / memcpy into a buffer (4 KiB)",
            m[4] / m[3],
            2.0,
        ),
    ];
    print_ratios(&summary);
    Ok(summary)
}

/// Maps `/dev/shm/NAME` read-only ourselves; the mapping and a pointer to
/// the `T` at [`VALUE_OFFSET`] in it.
fn own_mapping<T>(name: &str) -> Result<(Map, *const T), String> {
    let path = format!("/dev/shm/{name}");
    let file = std::fs::File::open(&path).map_err(|e| format!("{path}: {e}"))?;
    let len = file.metadata().map_err(|e| format!("{path}: {e}"))?.len() as usize;
    if len < VALUE_OFFSET + size_of::<T>() {
        return Err(format!("{path} is {len} bytes, too small for its value"));
    }
    let map = Map::new(&file, len, false)?;
    let raw = map.at(VALUE_OFFSET).cast::<T>();
    if raw as usize % align_of::<T>() != 0 {
        return Err(format!(
            "offset {VALUE_OFFSET} is not aligned for the value"
        ));
    }
    Ok((map, raw))
}

// ---------------------------------------------------------------------------
// Sections 3 and 5: a writer that commits as fast as it can.

/// What one window of writing did.
struct Window {
    commits: u64,
    wall_ns: u64,
    cpu_ns: u64,
    sys_ns: u64,
}

/// Commits locked writes that change words 0..7 of the value, as fast as
/// possible, for `window`.
fn write_for(shared: &Shared<Small>, window: Duration) -> Result<Window, String> {
    let span = window.as_nanos() as u64;
    let (cpu0, sys0) = (thread_cpu_ns(), thread_sys_ns());
    let t0 = now_ns();
    let mut commits = 0u64;
    let mut t1 = t0;
    while t1 - t0 < span {
        for _ in 0..64 {
            let mut g = shared.lock().map_err(|_| "the lock is poisoned")?;
            commits += 1;
            for w in &mut g.words[..7] {
                *w = commits;
            }
        }
        t1 = now_ns();
    }
    Ok(Window {
        commits,
        wall_ns: t1 - t0,
        cpu_ns: thread_cpu_ns() - cpu0,
        sys_ns: thread_sys_ns() - sys0,
    })
}

/// Tells the helpers of a segment that the run is over.
fn stop(shared: &Shared<Small>) {
    shared.lock().unwrap_or_else(PoisonError::into_inner).words[7] = STOP;
}

/// One scenario of section 3: its label and its readers, if any.
struct Scenario {
    label: &'static str,
    readers: Option<Readers>,
}

/// The reader processes of a section 3 scenario.
#[derive(Clone, Copy)]
struct Readers {
    /// `snapshot` or `lock`.
    role: &'static str,
    nice: i32,
    /// 0: read in a tight loop; else one read per `pace_us` µs, spinning on
    /// the local clock in between (busy, but off the shared cache lines).
    pace_us: u64,
}

/// What one window of a section 3 scenario measured.
struct WriterSample {
    window: Window,
    /// Reads per second of all readers together.
    reads_per_s: f64,
}

fn section_writer(cfg: &Config, prefix: &str) -> Result<Vec<String>, String> {
    let scenarios = [
        Scenario {
            label: "0 readers",
            readers: None,
        },
        Scenario {
            label: "4 readers in a SharedReader::snapshot loop",
            readers: Some(Readers {
                role: "snapshot",
                nice: 0,
                pace_us: 0,
            }),
        },
        Scenario {
            label: "4 snapshot readers at nice 19",
            readers: Some(Readers {
                role: "snapshot",
                nice: 19,
                pace_us: 0,
            }),
        },
        Scenario {
            label: "4 snapshot readers, 1 per 10 us, spinning between",
            readers: Some(Readers {
                role: "snapshot",
                nice: 0,
                pace_us: 10,
            }),
        },
        Scenario {
            label: "4 readers in a lock() loop (Mutex-only)",
            readers: Some(Readers {
                role: "lock",
                nice: 0,
                pace_us: 0,
            }),
        },
        Scenario {
            label: "4 lock() readers at nice 19",
            readers: Some(Readers {
                role: "lock",
                nice: 19,
                pace_us: 0,
            }),
        },
    ];
    let k = scenarios.len();
    let mut samples: Vec<Vec<WriterSample>> = (0..k).map(|_| Vec::new()).collect();
    let mut run = 0;
    for rep in 0..cfg.windows {
        for j in 0..k {
            let i = (j + rep) % k;
            run += 1;
            let name = format!("{prefix}_w{run}");
            samples[i].push(writer_window(cfg, &name, scenarios[i].readers)?);
        }
    }

    println!();
    println!(
        "3. Writer commit rate (locked writes changing 64 bytes; {} windows of {} ms each) with reader processes",
        cfg.windows,
        cfg.window.as_millis()
    );
    println!(
        "   {:<50} {:>22} {:>6} {:>22} {:>6} {:>9} {:>8} {:>14}",
        "readers",
        "wall commits/s",
        "vs 0",
        "per writer-CPU-s",
        "vs 0",
        "CPU/wall",
        "kernel",
        "reads/s (all)"
    );
    let med = |s: &[WriterSample], f: &dyn Fn(&WriterSample) -> f64| {
        Stats::of(&s.iter().map(f).collect::<Vec<_>>())
    };
    let wall = |s: &WriterSample| s.window.commits as f64 * 1e9 / s.window.wall_ns as f64;
    let cpu = |s: &WriterSample| s.window.commits as f64 * 1e9 / s.window.cpu_ns.max(1) as f64;
    let base_wall = med(&samples[0], &wall).median;
    let base_cpu = med(&samples[0], &cpu).median;
    let mut rows = Vec::new();
    for (sc, s) in scenarios.iter().zip(&samples) {
        let w = med(s, &wall);
        let c = med(s, &cpu);
        let share = med(s, &|s| s.window.cpu_ns as f64 / s.window.wall_ns as f64).median;
        let kernel = med(s, &|s| {
            s.window.sys_ns as f64 / s.window.cpu_ns.max(1) as f64
        })
        .median;
        let reads = med(s, &|s| s.reads_per_s).median;
        println!(
            "   {:<50} {:>22} {:>5.0}% {:>22} {:>5.0}% {:>8.0}% {:>7.0}% {:>14}",
            sc.label,
            w.fmt_rate(),
            100.0 * w.median / base_wall,
            c.fmt_rate(),
            100.0 * c.median / base_cpu,
            100.0 * share,
            100.0 * kernel,
            if sc.readers.is_some() {
                format!("{:.2e}", reads)
            } else {
                "-".into()
            }
        );
        rows.push((w.median / base_wall, c.median / base_cpu));
    }
    println!(
        "   (CPU/wall: share of the window the writer thread was on a CPU; kernel: share of its CPU time in the kernel)"
    );
    let summary = vec![
        pct_line(
            "3a.",
            "4 snapshot readers, wall commit rate vs 0 readers",
            rows[1].0,
        ),
        pct_line(
            "3b.",
            "4 snapshot readers, commits per writer-CPU-second vs 0 readers",
            rows[1].1,
        ),
        pct_line(
            "3c.",
            "4 snapshot readers at nice 19, wall commit rate vs 0 readers",
            rows[2].0,
        ),
        pct_line(
            "3-.",
            "4 snapshot readers, 1 per 10 us each: commits per writer-CPU-second",
            rows[3].1,
        ),
        pct_line(
            "3-.",
            "contrast: 4 lock() readers, wall commit rate vs 0 readers",
            rows[4].0,
        ),
        pct_line(
            "3-.",
            "contrast: 4 lock() readers, commits per writer-CPU-second",
            rows[4].1,
        ),
        pct_line(
            "3-.",
            "contrast: 4 lock() readers at nice 19, wall commit rate",
            rows[5].0,
        ),
    ];
    print_ratios(&summary);
    Ok(summary)
}

/// One window of section 3 on a new segment `name`, with `READERS` reader
/// processes, if any.
fn writer_window(
    cfg: &Config,
    name: &str,
    readers: Option<Readers>,
) -> Result<WriterSample, String> {
    let shared = Shared::create(name, Small::default()).map_err(|e| e.to_string())?;
    let _rm = Remove::Segment(name.to_owned());
    let mut helpers = Vec::new();
    if let Some(r) = readers {
        let (nice, pace) = (r.nice.to_string(), r.pace_us.to_string());
        for _ in 0..READERS {
            helpers.push(Helper::spawn(&["reader", r.role, name, &nice, &pace])?);
        }
        for h in &mut helpers {
            h.expect("ready")?;
        }
        // Let every reader get going before the window opens.
        std::thread::sleep(Duration::from_millis(30));
    }
    let window = write_for(&shared, cfg.window)?;
    stop(&shared);
    let mut reads_per_s = 0.0;
    for h in &mut helpers {
        let line = h.line()?;
        let nums = numbers(&line, "reads");
        match nums.as_slice() {
            [reads, ns] if *ns > 0 => reads_per_s += *reads as f64 * 1e9 / *ns as f64,
            _ => return Err(format!("a reader said {line:?}")),
        }
        h.finish()?;
    }
    Ok(WriterSample {
        window,
        reads_per_s,
    })
}

/// Role: a reader of section 3. Snapshots (`snapshot`, through a read-only
/// handle) or locks and copies (`lock`) in a loop until word 7 is `STOP`;
/// with `pace_us` > 0, snapshots once per `pace_us` µs and spins on the
/// local clock in between.
fn reader(kind: &str, name: &str, nice: i32, pace_us: u64) -> Result<(), String> {
    if nice != 0 {
        set_nice(nice)?;
    }
    let parent = nix::unistd::getppid();
    let mut reads = 0u64;
    let t0;
    match kind {
        "snapshot" => {
            let r = SharedReader::<Small>::open(name).map_err(|e| e.to_string())?;
            say("ready")?;
            t0 = now_ns();
            let mut next = t0;
            loop {
                let v = r.snapshot().unwrap_or_else(PoisonError::into_inner);
                reads += 1;
                if v.words[7] == STOP || (reads % 65536 == 0 && orphaned(parent)) {
                    break;
                }
                if pace_us > 0 {
                    next += pace_us * 1000;
                    while now_ns() < next {
                        std::hint::spin_loop();
                    }
                }
            }
        }
        "lock" => {
            let s = Shared::<Small>::open(name).map_err(|e| e.to_string())?;
            say("ready")?;
            t0 = now_ns();
            loop {
                let v = *s.lock().unwrap_or_else(PoisonError::into_inner);
                reads += 1;
                if v.words[7] == STOP || (reads % 65536 == 0 && orphaned(parent)) {
                    break;
                }
            }
        }
        _ => return Err(usage()),
    }
    say(&format!("reads {reads} {}", now_ns() - t0))
}

// ---------------------------------------------------------------------------
// Section 4: wake-up latency.

/// What one kind of waiter measured.
#[derive(Default)]
struct WakeResult {
    /// From the writer's time stamp to the waiter's clock read after waking.
    latency: Vec<u64>,
    /// The writer's lock + stamp + unlock (or store + FUTEX_WAKE), with the
    /// waiter asleep.
    commit: Vec<u64>,
    /// Samples the waiter did not see on their own (merged with the next).
    missed: usize,
}

const WAKE_KINDS: [(&str, &str); 3] = [
    ("shared", "Shared::wait_for_change (V bit)"),
    ("reader", "SharedReader::wait_for_change (wake_read_only)"),
    ("futex", "raw FUTEX_WAIT / FUTEX_WAKE, shared AtomicU32"),
];

/// Samples per batch discarded at the start (the waiter is settling in).
const WARMUP: u64 = 10;

fn section_wake(cfg: &Config, prefix: &str) -> Result<Vec<WakeResult>, String> {
    let k = WAKE_KINDS.len();
    let mut results: Vec<WakeResult> = (0..k).map(|_| WakeResult::default()).collect();
    let per_round = cfg.samples.div_ceil(cfg.rounds) as u64;
    let mut batch = 0;
    for round in 0..cfg.rounds {
        for j in 0..k {
            let i = (j + round) % k;
            batch += 1;
            let name = format!("{prefix}_wake{batch}");
            wake_batch(cfg, &name, WAKE_KINDS[i].0, per_round, &mut results[i])?;
        }
    }

    println!();
    println!(
        "4. Wake-up latency: commit in one process -> the waiter's clock read in another ({} samples each, {} ms apart, {} rounds)",
        per_round * cfg.rounds as u64,
        cfg.gap.as_millis(),
        cfg.rounds
    );
    println!(
        "   {:<50} {:>10} {:>10} {:>10} {:>7}   {:>26}",
        "waiter", "median us", "p99 us", "max us", "missed", "writer's commit: median/p99 us"
    );
    for ((_, label), r) in WAKE_KINDS.iter().zip(&mut results) {
        r.latency.sort_unstable();
        r.commit.sort_unstable();
        println!(
            "   {:<50} {:>10.1} {:>10.1} {:>10.1} {:>7}   {:>15.2} / {:.2}",
            label,
            pct(&r.latency, 50.0) / 1e3,
            pct(&r.latency, 99.0) / 1e3,
            r.latency.last().copied().unwrap_or(0) as f64 / 1e3,
            r.missed,
            pct(&r.commit, 50.0) / 1e3,
            pct(&r.commit, 99.0) / 1e3,
        );
    }
    let f = pct(&results[2].latency, 50.0);
    println!(
        "   ratios of medians to the raw futex: Shared {:.2}, SharedReader {:.2}",
        pct(&results[0].latency, 50.0) / f,
        pct(&results[1].latency, 50.0) / f
    );
    Ok(results)
}

/// The layout of the raw futex baseline's own shm object.
#[repr(C)]
struct FutexPage {
    word: AtomicU32,
    _pad: AtomicU32,
    stamp: AtomicU64,
    index: AtomicU64,
}

/// One batch of `n` samples (plus the warm-up) with a new waiter process.
fn wake_batch(
    cfg: &Config,
    name: &str,
    kind: &str,
    n: u64,
    out: &mut WakeResult,
) -> Result<(), String> {
    let last = WARMUP + n - 1;
    // The writer side: a segment, or the raw object, and how to commit.
    let shared;
    let raw;
    let _rm;
    match kind {
        "futex" => {
            raw = Some(RawShm::create(name)?);
            _rm = Remove::RawShm(name.to_owned());
            shared = None;
        }
        _ => {
            let mut opts = SharedOptions::new();
            opts.wake_read_only(kind == "reader");
            shared = Some(
                opts.create(name, Small::default())
                    .map_err(|e| e.to_string())?,
            );
            _rm = Remove::Segment(name.to_owned());
            raw = None;
        }
    }
    let mut waiter = Helper::spawn(&["waiter", kind, name, &last.to_string()])?;
    waiter.expect("ready")?;
    std::thread::sleep(Duration::from_millis(20));
    let mut commit = Vec::with_capacity(n as usize);
    for k in 0..=last {
        std::thread::sleep(cfg.gap);
        let ta = now_ns();
        if let Some(s) = &shared {
            let mut g = s.lock().map_err(|_| "the lock is poisoned")?;
            g.words[0] = now_ns();
            g.words[1] = k;
        } else if let Some(r) = &raw {
            let p = r.page();
            p.stamp.store(now_ns(), Ordering::Relaxed);
            p.index.store(k, Ordering::Relaxed);
            p.word.fetch_add(1, Ordering::Release);
            futex_wake(&p.word);
        }
        let tb = now_ns();
        if k >= WARMUP {
            commit.push(tb - ta);
        }
    }
    let mut seen = 0;
    loop {
        let line = waiter.line()?;
        if line == "done" {
            break;
        }
        match numbers(&line, "lat").as_slice() {
            [k, ns] => {
                if *k >= WARMUP {
                    out.latency.push(*ns);
                    seen += 1;
                }
            }
            _ => return Err(format!("a waiter said {line:?}")),
        }
    }
    waiter.finish()?;
    out.missed += (n as usize).saturating_sub(seen);
    out.commit.extend(commit);
    Ok(())
}

/// Role: a waiter of section 4. Sleeps until a commit, reads the clock,
/// then the writer's time stamp; reports every latency when it has seen
/// sample `last`.
fn waiter(kind: &str, name: &str, last: u64) -> Result<(), String> {
    let timeout = Duration::from_secs(10);
    let mut lats: Vec<(u64, u64)> = Vec::new();
    match kind {
        "shared" => {
            let s = Shared::<Small>::open(name).map_err(|e| e.to_string())?;
            let mut seen = s.generation();
            say("ready")?;
            loop {
                let g = s
                    .wait_for_change(seen, timeout)
                    .map_err(|e| e.to_string())?
                    .ok_or("no commit within 10 s")?;
                let now = now_ns();
                let v = s.snapshot().unwrap_or_else(PoisonError::into_inner);
                seen = g;
                lats.push((v.words[1], now.saturating_sub(v.words[0])));
                if v.words[1] >= last {
                    break;
                }
            }
        }
        "reader" => {
            let r = SharedReader::<Small>::open(name).map_err(|e| e.to_string())?;
            let mut seen = r.generation();
            say("ready")?;
            loop {
                let g = r
                    .wait_for_change(seen, timeout)
                    .map_err(|e| e.to_string())?
                    .ok_or("no commit within 10 s")?;
                let now = now_ns();
                let v = r.snapshot().unwrap_or_else(PoisonError::into_inner);
                seen = g;
                lats.push((v.words[1], now.saturating_sub(v.words[0])));
                if v.words[1] >= last {
                    break;
                }
            }
        }
        "futex" => {
            let shm = RawShm::open(name)?;
            let p = shm.page();
            let mut seen = p.word.load(Ordering::Acquire);
            say("ready")?;
            let deadline = Instant::now() + timeout;
            loop {
                let w = p.word.load(Ordering::Acquire);
                if w == seen {
                    if Instant::now() > deadline {
                        return Err("no wake within 10 s".into());
                    }
                    futex_wait(&p.word, seen, timeout);
                    continue;
                }
                let now = now_ns();
                seen = w;
                let k = p.index.load(Ordering::Relaxed);
                lats.push((k, now.saturating_sub(p.stamp.load(Ordering::Relaxed))));
                if k >= last {
                    break;
                }
            }
        }
        _ => return Err(usage()),
    }
    let mut out = String::with_capacity(lats.len() * 16);
    for (k, ns) in lats {
        out.push_str(&format!("lat {k} {ns}\n"));
    }
    out.push_str("done");
    say(&out)
}

// ---------------------------------------------------------------------------
// Section 5: what a commit costs the writer.

/// A watcher process of section 5: its role and its pause (µs) after each
/// change it sees.
type Watcher = (&'static str, u64);

fn section_write_cost(cfg: &Config, prefix: &str, wake: &[WakeResult]) -> Result<(), String> {
    // (label, wake_read_only, watcher role and its pause after each change in µs)
    let configs: [(&str, bool, Option<Watcher>); 6] = [
        ("nobody watching", false, None),
        (
            "Shared watcher: wait, snapshot, 1 ms pause, again",
            false,
            Some(("shared", 1000)),
        ),
        (
            "Shared watcher re-arming at once (no pause)",
            false,
            Some(("shared", 0)),
        ),
        ("wake_read_only(true), nobody watching", true, None),
        (
            "wake_read_only(true), SharedReader watcher, 1 ms pause",
            true,
            Some(("reader", 1000)),
        ),
        (
            "wake_read_only(true), SharedReader watcher, no pause",
            true,
            Some(("reader", 0)),
        ),
    ];
    let k = configs.len();
    let mut samples: Vec<Vec<(Window, [u64; 2])>> = (0..k).map(|_| Vec::new()).collect();
    let mut run = 0;
    for rep in 0..cfg.windows {
        for j in 0..k {
            let i = (j + rep) % k;
            let (_, wro, role) = configs[i];
            run += 1;
            let name = format!("{prefix}_c{run}");
            let mut opts = SharedOptions::new();
            opts.wake_read_only(wro);
            let shared = opts
                .create(name.as_str(), Small::default())
                .map_err(|e| e.to_string())?;
            let _rm = Remove::Segment(name.clone());
            let mut helper = match role {
                Some((role, pause)) => {
                    let mut h = Helper::spawn(&["watcher", role, &name, &pause.to_string()])?;
                    h.expect("ready")?;
                    std::thread::sleep(Duration::from_millis(20));
                    Some(h)
                }
                None => None,
            };
            let window = write_for(&shared, cfg.window / 2)?;
            stop(&shared);
            let mut watched = [0; 2];
            if let Some(h) = &mut helper {
                let line = h.line()?;
                match numbers(&line, "watched").as_slice() {
                    [r, s] => watched = [*r, *s],
                    _ => return Err(format!("a watcher said {line:?}")),
                }
                h.finish()?;
            }
            samples[i].push((window, watched));
        }
    }

    // Single commits after a pause, nobody watching, as section 4 times
    // them with a waiter asleep.
    let lone = [false, true].map(|wro| {
        let name = format!("{prefix}_lone{}", u8::from(wro));
        let mut opts = SharedOptions::new();
        opts.wake_read_only(wro);
        let shared = opts.create(name.as_str(), Small::default());
        (name, shared)
    });
    let _rm_lone = lone
        .each_ref()
        .map(|(name, _)| Remove::Segment(name.clone()));
    let mut lone_ns = [Vec::new(), Vec::new()];
    let n = (cfg.samples / 4).max(20);
    for _ in 0..n {
        for ((_, shared), out) in lone.iter().zip(&mut lone_ns) {
            let shared = shared.as_ref().map_err(|e| e.to_string())?;
            std::thread::sleep(cfg.gap);
            let ta = now_ns();
            {
                let mut g = shared.lock().map_err(|_| "the lock is poisoned")?;
                g.words[0] = ta;
            }
            out.push(now_ns() - ta);
        }
    }
    for v in &mut lone_ns {
        v.sort_unstable();
    }

    println!();
    println!(
        "5. Writer's lock + write (7 words) + unlock in a loop, as fast as it can ({} windows of {} ms)",
        cfg.windows,
        (cfg.window / 2).as_millis()
    );
    println!(
        "   {:<56} {:>24} {:>7} {:>32}",
        "segment and watcher", "ns/op", "kernel", "watcher: returns / sleeps / commits"
    );
    for ((label, _, role), s) in configs.iter().zip(&samples) {
        let ns = Stats::of(
            &s.iter()
                .map(|(w, _)| w.wall_ns as f64 / w.commits as f64)
                .collect::<Vec<_>>(),
        );
        let kernel = Stats::of(
            &s.iter()
                .map(|(w, _)| w.sys_ns as f64 / w.cpu_ns.max(1) as f64)
                .collect::<Vec<_>>(),
        );
        let watched = if role.is_some() {
            let returns: u64 = s.iter().map(|(_, z)| z[0]).sum();
            let sleeps: u64 = s.iter().map(|(_, z)| z[1]).sum();
            let commits: u64 = s.iter().map(|(w, _)| w.commits).sum();
            format!("{returns} / {sleeps} / {commits}")
        } else {
            "-".into()
        };
        println!(
            "   {:<56} {:>24} {:>6.0}% {:>32}",
            label,
            ns.fmt(1),
            100.0 * kernel.median,
            watched
        );
    }
    println!(
        "   (kernel: share of the writer's CPU time spent in the kernel, i.e. in FUTEX_WAKE; returns: wait_for_change"
    );
    println!(
        "   returned a change; sleeps: the watcher really slept in it and was woken; totals over all windows)"
    );
    println!(
        "   One commit after a {} ms pause, lock to after unlock ({n} each; with a waiter asleep: from section 4):",
        cfg.gap.as_millis()
    );
    for (label, v) in ["nobody watching", "wake_read_only(true), nobody watching"]
        .iter()
        .zip(&lone_ns)
    {
        println!(
            "   {:<56} {:>7.0} ns median, {:.0} ns p99",
            label,
            pct(v, 50.0),
            pct(v, 99.0)
        );
    }
    for ((_, label), r) in WAKE_KINDS.iter().zip(wake) {
        println!(
            "   {:<56} {:>7.0} ns median, {:.0} ns p99",
            label,
            pct(&r.commit, 50.0),
            pct(&r.commit, 99.0)
        );
    }
    Ok(())
}

/// Role: a watcher of section 5: `wait_for_change`, a snapshot, a pause of
/// `pause_us` (a follower handling the change), in a loop until word 7 is
/// `STOP`. Reports how often the wait returned a change, and how often it
/// really slept in the kernel (voluntary context switches, less the pauses).
fn watcher(kind: &str, name: &str, pause_us: u64) -> Result<(), String> {
    let parent = nix::unistd::getppid();
    let timeout = Duration::from_millis(100);
    let pause = Duration::from_micros(pause_us);
    let mut returns = 0u64;
    let mut pauses = 0u64;
    // Some(handle) for the kind asked for; the loops below are the same.
    let shared;
    let reader;
    match kind {
        "shared" => {
            shared = Some(Shared::<Small>::open(name).map_err(|e| e.to_string())?);
            reader = None;
        }
        "reader" => {
            reader = Some(SharedReader::<Small>::open(name).map_err(|e| e.to_string())?);
            shared = None;
        }
        _ => return Err(usage()),
    }
    let generation = || match (&shared, &reader) {
        (Some(s), _) => s.generation(),
        (_, Some(r)) => r.generation(),
        _ => unreachable!(),
    };
    let wait = |seen| match (&shared, &reader) {
        (Some(s), _) => s.wait_for_change(seen, timeout).map_err(|e| e.to_string()),
        (_, Some(r)) => r.wait_for_change(seen, timeout).map_err(|e| e.to_string()),
        _ => unreachable!(),
    };
    let snapshot = || match (&shared, &reader) {
        (Some(s), _) => s.snapshot().unwrap_or_else(PoisonError::into_inner),
        (_, Some(r)) => r.snapshot().unwrap_or_else(PoisonError::into_inner),
        _ => unreachable!(),
    };
    let mut seen = generation();
    say("ready")?;
    let switches0 = voluntary_switches();
    loop {
        if let Some(g) = wait(seen)? {
            seen = g;
            returns += 1;
        }
        if snapshot().words[7] == STOP || orphaned(parent) {
            break;
        }
        if !pause.is_zero() {
            std::thread::sleep(pause);
            pauses += 1;
        }
    }
    let sleeps = voluntary_switches()
        .saturating_sub(switches0)
        .saturating_sub(pauses);
    say(&format!("watched {returns} {sleeps}"))
}

// ---------------------------------------------------------------------------
// Helper processes.

/// A helper process (this program with a role argument) and its output.
struct Helper {
    child: Child,
    stdout: BufReader<ChildStdout>,
}

impl Helper {
    fn spawn(args: &[&str]) -> Result<Helper, String> {
        let exe = std::env::current_exe().map_err(|e| format!("current_exe: {e}"))?;
        let mut child = Command::new(exe)
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .spawn()
            .map_err(|e| format!("spawning a helper: {e}"))?;
        let stdout = BufReader::new(child.stdout.take().expect("piped"));
        Ok(Helper { child, stdout })
    }

    /// The next line the helper prints.
    fn line(&mut self) -> Result<String, String> {
        let mut s = String::new();
        match self.stdout.read_line(&mut s) {
            Ok(n) if n > 0 => Ok(s.trim().to_owned()),
            _ => Err("a helper process exited early (see its error above)".into()),
        }
    }

    fn expect(&mut self, what: &str) -> Result<(), String> {
        let l = self.line()?;
        if l == what {
            Ok(())
        } else {
            Err(format!("a helper said {l:?} instead of {what:?}"))
        }
    }

    /// Waits for the helper to exit; an error if it failed.
    fn finish(&mut self) -> Result<(), String> {
        let status = self.child.wait().map_err(|e| e.to_string())?;
        if status.success() {
            Ok(())
        } else {
            Err(format!("a helper process failed: {status}"))
        }
    }
}

impl Drop for Helper {
    fn drop(&mut self) {
        // Reached with a live child only when the run failed: end it.
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// Prints a line for the parent and flushes it.
fn say(line: &str) -> Result<(), String> {
    let mut out = std::io::stdout().lock();
    writeln!(out, "{line}")
        .and_then(|()| out.flush())
        .map_err(|e| e.to_string())
}

/// Whether the parent that started this helper is gone (then stop).
fn orphaned(parent: nix::unistd::Pid) -> bool {
    nix::unistd::getppid() != parent
}

/// The numbers after `tag` in a line such as `"reads 12 345"`.
fn numbers(line: &str, tag: &str) -> Vec<u64> {
    let mut parts = line.split_whitespace();
    if parts.next() != Some(tag) {
        return Vec::new();
    }
    parts.map_while(|p| p.parse().ok()).collect()
}

// ---------------------------------------------------------------------------
// Cleanup, mappings, futexes, clocks.

/// Something this run made, removed when the guard drops (also on errors).
enum Remove {
    Segment(String),
    RawShm(String),
    File(String),
}

impl Drop for Remove {
    fn drop(&mut self) {
        match self {
            Remove::Segment(name) => {
                let _ = shmstore::unlink(name.as_str());
            }
            Remove::RawShm(name) => {
                let _ = shm_unlink(format!("/{name}").as_str());
            }
            Remove::File(path) => {
                let _ = std::fs::remove_file(path);
            }
        }
    }
}

/// A shared mapping of a whole object, unmapped when dropped.
struct Map {
    ptr: NonNull<c_void>,
    len: usize,
}

impl Map {
    /// Maps the first `len` bytes of `fd`, which the caller has checked the
    /// object has.
    fn new(fd: impl AsFd, len: usize, writable: bool) -> Result<Map, String> {
        let size = NonZeroUsize::new(len).ok_or("cannot map 0 bytes")?;
        let prot = if writable {
            ProtFlags::PROT_READ | ProtFlags::PROT_WRITE
        } else {
            ProtFlags::PROT_READ
        };
        // SAFETY: with no address hint the kernel picks unused addresses, so
        // no existing memory is replaced; the descriptor is open for the
        // access `prot` asks; the object has at least `len` bytes (the
        // caller checked), so no access within them can fault.
        let ptr = unsafe { mmap(None, size, prot, MapFlags::MAP_SHARED, fd, 0) }
            .map_err(|e| format!("mmap: {e}"))?;
        Ok(Map { ptr, len })
    }

    /// The address `offset` bytes into the mapping.
    fn at(&self, offset: usize) -> *const u8 {
        self.ptr.as_ptr().cast::<u8>().wrapping_add(offset)
    }
}

impl Drop for Map {
    fn drop(&mut self) {
        // SAFETY: `ptr` and `len` describe exactly the mapping made in
        // `new`, unmapped only here; every pointer into it is used only
        // while the `Map` lives (they are derived from `&self`).
        let _ = unsafe { munmap(self.ptr, self.len) };
    }
}

/// The raw futex baseline's own small POSIX shm object.
struct RawShm {
    map: Map,
}

impl RawShm {
    const LEN: usize = 4096;

    fn create(name: &str) -> Result<RawShm, String> {
        let fd = shm_open(
            format!("/{name}").as_str(),
            OFlag::O_RDWR | OFlag::O_CREAT | OFlag::O_EXCL,
            Mode::from_bits_truncate(0o600),
        )
        .map_err(|e| format!("shm_open {name}: {e}"))?;
        nix::unistd::ftruncate(&fd, Self::LEN as i64).map_err(|e| format!("ftruncate: {e}"))?;
        Ok(RawShm {
            map: Map::new(&fd, Self::LEN, true)?,
        })
    }

    fn open(name: &str) -> Result<RawShm, String> {
        let fd = shm_open(format!("/{name}").as_str(), OFlag::O_RDWR, Mode::empty())
            .map_err(|e| format!("shm_open {name}: {e}"))?;
        let len = nix::sys::stat::fstat(&fd)
            .map_err(|e| e.to_string())?
            .st_size;
        if len < Self::LEN as i64 {
            return Err(format!("{name} is {len} bytes, expected {}", Self::LEN));
        }
        Ok(RawShm {
            map: Map::new(&fd, Self::LEN, true)?,
        })
    }

    fn page(&self) -> &FutexPage {
        // SAFETY: the mapping is page-aligned, readable and writable, and
        // larger than a FutexPage; it lives as long as `self`. A new object
        // is zero-filled and every bit pattern is a valid set of atomics, and
        // both processes access these bytes only through the atomics.
        unsafe { &*self.map.at(0).cast::<FutexPage>() }
    }
}

/// Sleeps while `word` holds `expected`, at most `timeout` (a shared futex:
/// the word is in memory shared between processes).
fn futex_wait(word: &AtomicU32, expected: u32, timeout: Duration) {
    let ts = libc::timespec {
        tv_sec: timeout.as_secs() as libc::time_t,
        tv_nsec: timeout.subsec_nanos() as libc::c_long,
    };
    // SAFETY: `word` is a live, aligned AtomicU32 that FUTEX_WAIT only reads
    // atomically; `ts` is a valid timespec that outlives the call; the last
    // two arguments are unused by FUTEX_WAIT. Errors (EAGAIN, EINTR,
    // ETIMEDOUT) need no handling: the caller re-reads the word.
    unsafe {
        libc::syscall(
            libc::SYS_futex,
            word.as_ptr(),
            libc::FUTEX_WAIT,
            expected,
            &ts as *const libc::timespec,
            ptr::null::<u32>(),
            0u32,
        );
    }
}

/// Wakes every sleeper on `word`, in any process.
fn futex_wake(word: &AtomicU32) {
    // SAFETY: FUTEX_WAKE uses the address of the live `word` only to find
    // sleepers and reads no memory; the unused arguments are ignored.
    unsafe {
        libc::syscall(
            libc::SYS_futex,
            word.as_ptr(),
            libc::FUTEX_WAKE,
            i32::MAX,
            ptr::null::<libc::timespec>(),
            ptr::null::<u32>(),
            0u32,
        );
    }
}

/// Lowers this (single-threaded) process's priority to nice `nice`.
fn set_nice(nice: i32) -> Result<(), String> {
    // SAFETY: setpriority takes plain integers and touches no memory of ours.
    let rc = unsafe { libc::setpriority(libc::PRIO_PROCESS, 0, nice) };
    if rc == 0 {
        Ok(())
    } else {
        Err(format!("setpriority: {}", std::io::Error::last_os_error()))
    }
}

fn now_ns() -> u64 {
    let t = clock_gettime(ClockId::CLOCK_MONOTONIC).expect("CLOCK_MONOTONIC");
    t.tv_sec() as u64 * 1_000_000_000 + t.tv_nsec() as u64
}

/// CPU time of the calling thread, user and kernel.
fn thread_cpu_ns() -> u64 {
    let t = clock_gettime(ClockId::CLOCK_THREAD_CPUTIME_ID).expect("CLOCK_THREAD_CPUTIME_ID");
    t.tv_sec() as u64 * 1_000_000_000 + t.tv_nsec() as u64
}

/// Kernel-mode CPU time of the calling thread (getrusage RUSAGE_THREAD).
fn thread_sys_ns() -> u64 {
    let mut ru = MaybeUninit::<libc::rusage>::uninit();
    // SAFETY: `ru` is valid for writes of a whole rusage, which getrusage
    // fills in on success.
    let rc = unsafe { libc::getrusage(libc::RUSAGE_THREAD, ru.as_mut_ptr()) };
    if rc != 0 {
        return 0;
    }
    // SAFETY: getrusage returned 0, so it wrote the whole struct.
    let ru = unsafe { ru.assume_init() };
    ru.ru_stime.tv_sec as u64 * 1_000_000_000 + ru.ru_stime.tv_usec as u64 * 1000
}

/// Voluntary context switches of this process so far (each real sleep in
/// the kernel is one).
fn voluntary_switches() -> u64 {
    std::fs::read_to_string("/proc/thread-self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("voluntary_ctxt_switches:"))
                .and_then(|v| v.trim().parse().ok())
        })
        .unwrap_or(0)
}

// ---------------------------------------------------------------------------
// Statistics and printing.

struct Stats {
    median: f64,
    min: f64,
    max: f64,
    n: usize,
}

impl Stats {
    fn of(samples: &[f64]) -> Stats {
        let mut v = samples.to_vec();
        v.sort_by(f64::total_cmp);
        let n = v.len();
        let median = match n {
            0 => f64::NAN,
            _ if n % 2 == 1 => v[n / 2],
            _ => (v[n / 2 - 1] + v[n / 2]) / 2.0,
        };
        Stats {
            median,
            min: v.first().copied().unwrap_or(f64::NAN),
            max: v.last().copied().unwrap_or(f64::NAN),
            n,
        }
    }

    fn fmt(&self, digits: usize) -> String {
        format!(
            "{:.d$} ({:.d$}-{:.d$}; n={})",
            self.median,
            self.min,
            self.max,
            self.n,
            d = digits
        )
    }

    fn fmt_rate(&self) -> String {
        format!(
            "{:.2}M ({:.2}-{:.2})",
            self.median / 1e6,
            self.min / 1e6,
            self.max / 1e6
        )
    }
}

/// The `p`th percentile of sorted `v` (nearest rank), as f64.
fn pct(v: &[u64], p: f64) -> f64 {
    if v.is_empty() {
        return f64::NAN;
    }
    let rank = ((p / 100.0) * v.len() as f64).ceil() as usize;
    v[rank.clamp(1, v.len()) - 1] as f64
}

fn print_table(unit: &str, names: &[&str], samples: &[Vec<f64>]) {
    let width = names.iter().map(|n| n.len()).max().unwrap_or(0);
    println!("   {:<width$}   {unit} (median; min-max; n)", "what");
    for (name, s) in names.iter().zip(samples) {
        println!("   {:<width$}   {}", name, Stats::of(s).fmt(2));
    }
}

fn ratio_line(section: &str, what: &str, ratio: f64, target: f64) -> String {
    let verdict = if ratio <= target { "met" } else { "NOT met" };
    format!("{section} {what}: {ratio:.2} (target <= {target}: {verdict})")
}

fn pct_line(section: &str, what: &str, fraction: f64) -> String {
    let verdict = if section.starts_with("3-") {
        "no target"
    } else if fraction >= 0.8 {
        "target >= 80%: met"
    } else {
        "target >= 80%: NOT met"
    };
    format!("{section} {what}: {:.0}% ({verdict})", 100.0 * fraction)
}

fn print_ratios(lines: &[String]) {
    for l in lines {
        println!("   {l}");
    }
}
