//! Changing a shared type while the service runs.
//!
//! Three worker processes of "build 1" count requests in a
//! `Shared<v1::Stats>`. Then two processes of "build 2", whose `Stats` has
//! a new field, start and call `open_or_migrate`: exactly one of them
//! copies the old counts into the new layout and puts the new segment in
//! place of the old one, atomically; the other opens the result. Each
//! build-1 worker finds its lock poisoned with `PoisonCause::Superseded` at
//! its next `lock()`, says so and exits (a real service would restart as
//! build 2). The build-2 processes carry on counting in the new segment.
//! At the end the count equals every increment any process made: none was
//! lost in the change.
//!
//! ```text
//! cargo run --release --example migrate
//! ```

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use shmstore::{PoisonCause, Shared, SharedOptions};

/// The type as build 1 knows it.
mod v1 {
    #[derive(shmstore::Shareable, Clone, Copy, Debug, Default)]
    #[repr(C)]
    pub struct Stats {
        pub requests: u64,
    }
}

/// The type as build 2 knows it: a new field, and a record of migrations.
mod v2 {
    #[derive(shmstore::Shareable, Clone, Copy, Debug, Default)]
    #[repr(C)]
    pub struct Stats {
        pub requests: u64,
        pub errors: u64,
        pub migrations: u32,
        pub _pad: u32,
    }
}

type AnyResult<T> = Result<T, Box<dyn std::error::Error>>;

const V1_WORKERS: usize = 3;
const V2_WORKERS: usize = 2;
const V2_INCREMENTS: u64 = 100_000;

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let result = match args.as_slice() {
        [] => demo(),
        ["v1", name] => build1_worker(name),
        ["v2", name] => build2_worker(name),
        _ => Err("usage: migrate [v1 NAME | v2 NAME]".into()),
    };
    if let Err(e) = result {
        eprintln!("migrate: {e}");
        std::process::exit(1);
    }
}

fn demo() -> AnyResult<()> {
    let name = format!("example-migrate-{}", std::process::id());
    let _ = shmstore::unlink(&name);
    Shared::create(&name, v1::Stats::default())?;
    println!("shmstore migrate: build-1 workers count in a v1::Stats; build 2 migrates it while they run.");

    let v1: Vec<Child> = (0..V1_WORKERS)
        .map(|_| spawn("v1", &name))
        .collect::<AnyResult<_>>()?;
    std::thread::sleep(Duration::from_millis(300));
    let v2: Vec<Child> = (0..V2_WORKERS)
        .map(|_| spawn("v2", &name))
        .collect::<AnyResult<_>>()?;

    let mut counted = 0;
    let mut migrations = 0;
    for child in v1.into_iter().chain(v2) {
        let line = last_line(child)?;
        println!("  {line}");
        counted += field(&line, "increments=")?;
        migrations += field(&line, "migrated=")?;
    }
    let stats = Shared::<v2::Stats>::open(&name)?;
    let total = stats.lock().map_err(|_| "poisoned")?.requests;
    shmstore::unlink(&name)?;
    println!(
        "requests = {total}, increments made by all processes = {counted}; migrated {migrations} time(s), by one process"
    );
    if total != counted || migrations != 1 {
        return Err("an update was lost or the value migrated more than once".into());
    }
    println!("No update was lost.");
    Ok(())
}

/// A build-1 worker: counts until its segment is superseded.
fn build1_worker(name: &str) -> AnyResult<()> {
    let stats = Shared::<v1::Stats>::open(name)?;
    let mut increments = 0u64;
    loop {
        match stats.lock() {
            Ok(mut g) => {
                g.requests += 1;
                increments += 1;
            }
            Err(_) => {
                let info = stats.poison_info().ok_or("poisoned, with no record")?;
                if info.cause() != PoisonCause::Superseded {
                    return Err(info.to_string().into());
                }
                println!(
                    "build 1, pid {}: superseded (by pid {}); exiting. increments={increments} migrated=0",
                    std::process::id(),
                    info.pid().unwrap_or(0)
                );
                return Ok(());
            }
        }
    }
}

/// A build-2 worker: opens (migrating if it is first) and counts.
fn build2_worker(name: &str) -> AnyResult<()> {
    let stats =
        SharedOptions::new().open_or_migrate(name, v2::Stats::default(), |old: v1::Stats| {
            v2::Stats {
                requests: old.requests,
                migrations: 1,
                ..Default::default()
            }
        })?;
    for _ in 0..V2_INCREMENTS {
        stats.lock().map_err(|_| "poisoned")?.requests += 1;
    }
    println!(
        "build 2, pid {}: {} the segment, then counted. increments={V2_INCREMENTS} migrated={}",
        std::process::id(),
        if stats.migrated() {
            "migrated"
        } else {
            "opened"
        },
        u64::from(stats.migrated())
    );
    Ok(())
}

fn spawn(role: &str, name: &str) -> AnyResult<Child> {
    Ok(Command::new(std::env::current_exe()?)
        .args([role, name])
        .stdout(Stdio::piped())
        .spawn()?)
}

/// The last line a child printed; fails if it failed.
fn last_line(mut child: Child) -> AnyResult<String> {
    let out = child.stdout.take().ok_or("no stdout")?;
    let last = BufReader::new(out).lines().map_while(Result::ok).last();
    if !child.wait()?.success() {
        return Err("a worker failed".into());
    }
    last.ok_or_else(|| "a worker printed nothing".into())
}

fn field(line: &str, key: &str) -> AnyResult<u64> {
    let at = line.find(key).ok_or("a worker's line lacks a count")? + key.len();
    let digits: String = line[at..]
        .chars()
        .take_while(char::is_ascii_digit)
        .collect();
    Ok(digits.parse()?)
}
