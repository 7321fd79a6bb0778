//! One process owns a configuration, many processes follow it.
//!
//! The writer holds a `Shared<Config>` and changes it under the lock; every
//! reader holds a read-only `SharedReader<Config>` (it needs only read
//! permission: the segment is created with mode 0640, so the group may read
//! it) and sleeps in `wait_for_change` until the writer commits, then takes a
//! lock-free `snapshot` and prints it. Readers never take the lock, so they
//! never slow the writer down, and they never see half of an update.
//!
//! ```text
//! cargo run --example config                        # demo: a writer and 3 reader processes
//! cargo run --example config -- writer NAME         # apply `key=value` lines from stdin
//! cargo run --example config -- writer NAME --every MS [COUNT]
//!                                                   # change something every MS milliseconds
//! cargo run --example config -- reader NAME         # print every new version until shutdown
//! cargo run --example config -- remove NAME         # remove the segment
//! ```
//!
//! Keys for the writer: `listen`, `log_level`, `max_connections`,
//! `timeout_ms`, `backends` (comma-separated ports), `maintenance`
//! (true/false), `shutdown` (true: readers exit).

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::Duration;

use shmstore::{Shareable, Shared, SharedOptions, SharedReader, ShmBool, ShmStr, ShmVec};

/// The shared configuration: fixed-capacity text, numbers, a list and flags.
#[derive(Shareable, Clone, Copy, Debug, Default)]
#[repr(C)]
struct Config {
    listen: ShmStr<64>,
    log_level: ShmStr<16>,
    max_connections: u32,
    timeout_ms: u32,
    backends: ShmVec<u16, 8>,
    maintenance: ShmBool,
    shutdown: ShmBool,
    _reserved: [u8; 2],
}

type AnyResult<T> = Result<T, Box<dyn std::error::Error>>;

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    if let Err(e) = run(&args) {
        eprintln!("config: {e}");
        std::process::exit(1);
    }
}

fn run(args: &[&str]) -> AnyResult<()> {
    match args {
        [] => demo(),
        ["writer", name] => write_from_stdin(name),
        ["writer", name, "--every", ms] => write_every(name, ms.parse()?, u64::MAX),
        ["writer", name, "--every", ms, count] => write_every(name, ms.parse()?, count.parse()?),
        ["reader", name] => follow(name),
        ["remove", name] => Ok(shmstore::unlink(*name)?),
        _ => Err(
            "usage: config [writer NAME [--every MS [COUNT]] | reader NAME | remove NAME]".into(),
        ),
    }
}

/// Creates the segment, or opens the one a previous writer left.
fn open_writer(name: &str) -> AnyResult<Shared<Config>> {
    let mut initial = Config::default();
    initial.listen.set("0.0.0.0:8080")?;
    initial.log_level.set("info")?;
    initial.max_connections = 100;
    initial.timeout_ms = 5_000;
    initial.backends.extend_from_slice(&[9001, 9002])?;
    let shared = SharedOptions::new()
        .mode(0o640) // the group may open it read-only
        .wake_read_only(true) // read-only handles may wait for changes
        .open_or_create(name, initial)?;
    Ok(shared)
}

/// Applies one `key=value` line to the configuration.
fn apply(config: &mut Config, line: &str) -> AnyResult<()> {
    let (key, value) = line
        .split_once('=')
        .ok_or_else(|| format!("`{line}`: expected key=value"))?;
    let (key, value) = (key.trim(), value.trim());
    match key {
        "listen" => config.listen.set(value)?,
        "log_level" => config.log_level.set(value)?,
        "max_connections" => config.max_connections = value.parse()?,
        "timeout_ms" => config.timeout_ms = value.parse()?,
        "backends" => {
            let ports = value
                .split(',')
                .filter(|p| !p.trim().is_empty())
                .map(|p| p.trim().parse::<u16>())
                .collect::<Result<Vec<_>, _>>()?;
            config.backends = ShmVec::try_from(ports.as_slice())?;
        }
        "maintenance" => config.maintenance.set(value.parse()?),
        "shutdown" => config.shutdown.set(value.parse()?),
        _ => return Err(format!("unknown key `{key}`").into()),
    }
    Ok(())
}

/// Changes the configuration from `key=value` lines on stdin; a line is
/// validated on a copy first, so a bad line changes nothing.
fn write_from_stdin(name: &str) -> AnyResult<()> {
    let shared = open_writer(name)?;
    eprintln!(
        "config writer: `{name}` at generation {}; type key=value lines",
        shared.generation()
    );
    for line in std::io::stdin().lock().lines() {
        let line = line?;
        if line.trim().is_empty() {
            continue;
        }
        let mut guard = shared.lock().unwrap_or_else(|p| p.into_inner());
        let mut next = *guard;
        match apply(&mut next, &line) {
            Ok(()) => {
                *guard = next;
                drop(guard);
                eprintln!("committed generation {}", shared.generation());
            }
            Err(e) => eprintln!("not applied: {e}"),
        }
    }
    Ok(())
}

/// Changes something every `ms` milliseconds, `count` times, then sets
/// `shutdown` so that readers exit.
fn write_every(name: &str, ms: u64, count: u64) -> AnyResult<()> {
    let shared = open_writer(name)?;
    let levels = ["info", "debug", "warn", "error"];
    for i in 1..=count {
        std::thread::sleep(Duration::from_millis(ms));
        let mut c = shared.lock().unwrap_or_else(|p| p.into_inner());
        c.max_connections = 100 + i as u32;
        c.log_level.set(levels[i as usize % levels.len()])?;
        c.listen.set(&format!("0.0.0.0:{}", 8080 + i % 10))?;
        c.maintenance.set(i % 3 == 0);
        let n = c.backends.len();
        if n == c.backends.capacity() {
            c.backends.clear();
        }
        c.backends.push(9000 + (i % 1000) as u16)?;
    }
    std::thread::sleep(Duration::from_millis(ms));
    shared
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .shutdown
        .set(true);
    println!("writer: done at generation {}", shared.generation());
    Ok(())
}

/// Prints every version a read-only handle sees, until `shutdown`.
fn follow(name: &str) -> AnyResult<()> {
    let reader = SharedReader::<Config>::open(name)?;
    let me = std::process::id();
    let mut seen = None;
    loop {
        let (config, generation) = match reader.snapshot_with_generation() {
            Ok(read) => read,
            Err(poisoned) => {
                println!("reader {me}: a writer died while writing; showing what it left");
                poisoned.into_inner()
            }
        };
        if seen != Some(generation) {
            println!("reader {me}: generation {generation}: {}", show(&config));
            seen = Some(generation);
        }
        if config.shutdown.get() {
            return Ok(());
        }
        if reader
            .wait_for_change(generation, Duration::from_secs(30))?
            .is_none()
        {
            println!("reader {me}: no change for 30 s");
        }
    }
}

fn show(c: &Config) -> String {
    format!(
        "listen={} log_level={} max_connections={} timeout_ms={} backends={:?} maintenance={} shutdown={}",
        c.listen,
        c.log_level,
        c.max_connections,
        c.timeout_ms,
        c.backends.as_slice(),
        c.maintenance.get(),
        c.shutdown.get()
    )
}

/// Three reader processes follow a writer that changes the configuration
/// five times; each reader must end on the writer's last generation.
fn demo() -> AnyResult<()> {
    /// Removes the demo's segment however the demo ends (a panic included).
    struct Remove(String);
    impl Drop for Remove {
        fn drop(&mut self) {
            let _ = shmstore::unlink(self.0.as_str());
        }
    }
    let name = Remove(format!("config-demo-{}", std::process::id()));
    run_demo(&name.0)
}

fn run_demo(name: &str) -> AnyResult<()> {
    let writer = open_writer(name)?;
    let exe = std::env::current_exe()?;
    let (first_tx, first_rx) = std::sync::mpsc::channel();
    let mut readers = Vec::new();
    for _ in 0..3 {
        let mut child = Command::new(&exe)
            .args(["reader", name])
            .stdout(Stdio::piped())
            .spawn()?;
        let out = BufReader::new(child.stdout.take().expect("stdout is piped"));
        let first_tx = first_tx.clone();
        // Echo the reader's lines as they come; keep its last one.
        let echo = std::thread::spawn(move || {
            let mut last = String::new();
            for line in out.lines().map_while(Result::ok) {
                println!("{line}");
                if last.is_empty() {
                    let _ = first_tx.send(());
                }
                last = line;
            }
            last
        });
        readers.push((child, echo));
    }
    // Start changing things once every reader has printed the first version
    // (it then follows the segment), so that each change shows.
    for _ in 0..readers.len() {
        first_rx.recv_timeout(Duration::from_secs(10))?;
    }
    writer_steps(&writer)?;
    let last = writer.generation();
    println!("writer: committed generation {last} (shutdown)");
    let mut ok = true;
    for (mut child, echo) in readers {
        let status = child.wait()?;
        let last_line = echo.join().map_err(|_| "echo thread panicked")?;
        ok &= status.success() && last_line.contains(&format!("generation {last}:"));
    }
    if ok {
        println!("demo: all 3 readers followed every change to generation {last}");
        Ok(())
    } else {
        Err("a reader failed or did not see the last generation".into())
    }
}

fn writer_steps(writer: &Shared<Config>) -> AnyResult<()> {
    let steps = [
        "log_level=debug",
        "max_connections=250",
        "backends=9001,9002,9003",
        "maintenance=true",
        "listen=127.0.0.1:9090",
    ];
    for step in steps {
        std::thread::sleep(Duration::from_millis(100));
        let mut c = writer.lock().unwrap_or_else(|p| p.into_inner());
        apply(&mut c, step)?;
        drop(c);
        println!("writer: {step} -> generation {}", writer.generation());
    }
    std::thread::sleep(Duration::from_millis(100));
    writer
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .shutdown
        .set(true);
    Ok(())
}
