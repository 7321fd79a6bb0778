//! Async readers under tokio: a writer process commits; in another process,
//! reader tasks `await` each change with `changed(seen)`, no thread per
//! task (the process's one background thread sleeps on the counter).
//!
//! ```text
//! cargo run --example async_watch                  # demo: this process writes, a child runs 4 reader tasks
//! cargo run --example async_watch -- readers NAME  # reader tasks on an existing segment
//! ```

use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::Duration;

use shmstore::{Shareable, Shared};

/// What the writer publishes; `round == u64::MAX` tells the readers to stop.
#[derive(Shareable, Clone, Copy, Debug, Default)]
#[repr(C)]
struct Tick {
    round: u64,
    value: u64,
}

type AnyResult<T> = Result<T, Box<dyn std::error::Error>>;

fn main() -> AnyResult<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match args.as_slice() {
        [] => writer(),
        [cmd, name] if cmd == "readers" => readers(name),
        _ => Err("usage: async_watch [readers NAME]".into()),
    }
}

/// Creates the segment, starts the reader process, commits a few rounds.
fn writer() -> AnyResult<()> {
    let name = format!("shmstore-async-watch-{}", std::process::id());
    let shared = Shared::create(&name, Tick::default())?;
    let mut child = Command::new(std::env::current_exe()?)
        .args(["readers", &name])
        .stdout(Stdio::piped())
        .spawn()?;
    // The child says "ready" once its tasks wait.
    let mut out = std::io::BufReader::new(child.stdout.take().expect("piped"));
    let mut line = String::new();
    std::io::BufRead::read_line(&mut out, &mut line)?;
    assert_eq!(line.trim(), "ready");
    for round in 1..=5 {
        let mut tick = shared.lock().unwrap_or_else(|p| p.into_inner());
        tick.round = round;
        tick.value = round * round;
        drop(tick);
        println!("writer: committed round {round}");
        std::thread::sleep(Duration::from_millis(100));
    }
    shared.lock().unwrap_or_else(|p| p.into_inner()).round = u64::MAX;
    for line in std::io::BufRead::lines(out) {
        println!("{}", line?);
    }
    let status = child.wait()?;
    shmstore::unlink(name.as_str())?;
    if !status.success() {
        return Err(format!("the reader process failed: {status}").into());
    }
    Ok(())
}

/// Four tasks on one tokio thread, each following every change.
fn readers(name: &str) -> AnyResult<()> {
    let shared = Arc::new(Shared::<Tick>::open(name)?);
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    rt.block_on(async {
        let mut tasks = Vec::new();
        for task in 0..4 {
            let shared = shared.clone();
            let seen = shared.generation();
            tasks.push(tokio::spawn(async move {
                let mut seen = seen;
                loop {
                    seen = shared.changed(seen).await?;
                    let tick = shared.snapshot().unwrap_or_else(|p| p.into_inner());
                    if tick.round == u64::MAX {
                        return Ok::<_, shmstore::Error>(());
                    }
                    println!(
                        "reader task {task}: round {} value {}",
                        tick.round, tick.value
                    );
                }
            }));
        }
        println!("ready");
        for t in tasks {
            t.await??;
        }
        Ok(())
    })
}
