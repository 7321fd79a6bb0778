//! What many `Store` handles cost: a `get` + drop and an insert + remove
//! with 1 and with 4,096 store handles open on the store, and freeing what
//! processes holding 4,096 handles in all held, after they were killed.
//!
//! ```text
//! cargo run --release --example store_handles          # about ten seconds
//! cargo run --release --example store_handles -- 0.1   # SCALE: iterations x 0.1
//! ```
//!
//! 1. `get::<u64>(key)` + drop of the handle, the same key, by one store
//!    handle, while that handle is the only one open, and again while
//!    4,095 more are open (each holding an entry of its own, so that every
//!    slot is used and has a hold list). Then an insert + remove of a key
//!    nobody else holds, the same way: a removal looks at every slot in use
//!    and its list, to see whether anyone holds the entry. Each figure is
//!    the median, with min-max, of 7 timed batches.
//! 2. 16 processes open 4,095 store handles in all (the 4,096th slot is
//!    this process's), and each handle gets the entry `shared` and an
//!    entry of its own process; they are killed (SIGKILL) and `shared` is
//!    removed. The first `free_bytes()` after that finds the 4,095 dead
//!    slots and frees what they held (one presence query per slot, a step
//!    per hold); a second one, with nothing left to free, is the walk of
//!    the heap alone, which both make. Their difference is the recovery of
//!    the dead handles.
//!
//! The store is a POSIX segment named `shmstore-handles-PID`, removed at
//! the end. The figures are for a quiet machine; a busy one makes them
//! noisy, not wrong.

use std::process::{Child, Command, ExitCode, Stdio};
use std::time::{Duration, Instant};

use shmstore::{Error, SharedOptions, Store};

/// Store handles open at once in the second half of section 1, and in all
/// the processes of section 2.
const HANDLES: usize = 4096;
/// Processes of section 2.
const PROCESSES: usize = 16;
/// Timed batches of each figure.
const BATCHES: usize = 7;
/// `get` + drop in a batch (times the scale).
const OPS: f64 = 100_000.0;

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.first().map(String::as_str) == Some("child") {
        return child(&args[1], args[2].parse().expect("a handle count"), &args[3]);
    }
    let scale: f64 = args.first().map_or(1.0, |s| s.parse().expect("SCALE"));
    let name = format!("shmstore-handles-{}", std::process::id());
    let result = run(&name, ((OPS * scale) as usize).max(1));
    let _ = Store::unlink(&name);
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("store_handles: {e}");
            ExitCode::FAILURE
        }
    }
}

fn run(name: &str, ops: usize) -> Result<(), Error> {
    let store = SharedOptions::new().create_store(name, 16 << 20)?;
    store.insert::<u64>("key", 1)?;

    let changes = (ops / 100).max(1);
    println!(
        "1. get + drop of one key ({ops} per batch), and insert + remove of a key \
         ({changes} per batch), by one store handle"
    );
    report(
        "get + drop, 1 store handle open",
        &get_and_drop(&store, ops)?,
    );
    report(
        "insert + remove, 1 store handle open",
        &insert_and_remove(&store, changes)?,
    );
    let mut others = Vec::with_capacity(HANDLES - 1);
    let mut held = Vec::with_capacity(HANDLES - 1);
    for i in 1..HANDLES {
        let other = Store::open(name)?;
        held.push(other.get_or_create::<u64>(&format!("own/{i}"), 0)?);
        others.push(other);
    }
    report(
        &format!("get + drop, {HANDLES} store handles open"),
        &get_and_drop(&store, ops)?,
    );
    report(
        &format!("insert + remove, {HANDLES} store handles open"),
        &insert_and_remove(&store, changes)?,
    );
    drop(held);
    drop(others);

    let dead = HANDLES - 1;
    println!(
        "2. {PROCESSES} processes holding {dead} store handles in all, killed: \
         free_bytes() that frees what they held, then one with nothing to free"
    );
    store.insert::<u64>("shared", 0)?;
    let mut kids = Kids(Vec::new());
    for p in 0..PROCESSES {
        // The last one opens one handle fewer: this process has a slot.
        let handles = HANDLES / PROCESSES - usize::from(p + 1 == PROCESSES);
        let kid = spawn(name, handles, &format!("kid/{p}")).map_err(|e| Error::Io {
            op: "starting a child process of",
            name: name.to_owned(),
            source: e,
        })?;
        kids.0.push(kid);
    }
    for kid in &mut kids.0 {
        wait_ready(kid);
    }
    let before = store.free_bytes()?;
    drop(kids);
    store.remove("shared")?;
    let t = Instant::now();
    let after = store.free_bytes()?;
    let recovering = t.elapsed();
    let t = Instant::now();
    let again = store.free_bytes()?;
    let walking = t.elapsed();
    println!(
        "   free_bytes() finding {dead} dead handles: {:>10.1} us",
        recovering.as_secs_f64() * 1e6
    );
    println!(
        "   free_bytes() with nothing to free:        {:>10.1} us",
        walking.as_secs_f64() * 1e6
    );
    println!(
        "   the recovery of the dead handles:          {:>10.1} us ({} bytes freed)",
        recovering.saturating_sub(walking).as_secs_f64() * 1e6,
        after - before
    );
    assert_eq!(after, again);
    store.check()?;
    Ok(())
}

/// Times `ops` gets + drops of `key` by `store`, in [`BATCHES`] batches;
/// nanoseconds per operation of each batch.
fn get_and_drop(store: &Store, ops: usize) -> Result<Vec<f64>, Error> {
    for _ in 0..ops / 10 {
        drop(store.get::<u64>("key")?);
    }
    let mut batches = Vec::with_capacity(BATCHES);
    for _ in 0..BATCHES {
        let t = Instant::now();
        for _ in 0..ops {
            drop(store.get::<u64>("key")?);
        }
        batches.push(t.elapsed().as_nanos() as f64 / ops as f64);
    }
    Ok(batches)
}

/// Times `ops` inserts + removes of a key by `store` (its handle dropped
/// at once), in [`BATCHES`] batches; nanoseconds per pair of each batch.
fn insert_and_remove(store: &Store, ops: usize) -> Result<Vec<f64>, Error> {
    let mut batches = Vec::with_capacity(BATCHES);
    for _ in 0..BATCHES {
        let t = Instant::now();
        for _ in 0..ops {
            drop(store.insert::<u64>("changing", 0)?);
            store.remove("changing")?;
        }
        batches.push(t.elapsed().as_nanos() as f64 / ops as f64);
    }
    Ok(batches)
}

fn report(what: &str, batches: &[f64]) {
    let mut sorted = batches.to_vec();
    sorted.sort_by(f64::total_cmp);
    println!(
        "   {what:<44} {:>8.1} ns (min {:.1}, max {:.1})",
        sorted[sorted.len() / 2],
        sorted[0],
        sorted[sorted.len() - 1]
    );
}

/// Child processes, killed (SIGKILL) when dropped, also on a panic.
struct Kids(Vec<Child>);

impl Drop for Kids {
    fn drop(&mut self) {
        for kid in &mut self.0 {
            let _ = kid.kill();
            let _ = kid.wait();
        }
    }
}

fn spawn(name: &str, handles: usize, key: &str) -> std::io::Result<Child> {
    Command::new(std::env::current_exe()?)
        .args(["child", name, &handles.to_string(), key])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .spawn()
}

/// Waits for the child's line saying its handles are open.
fn wait_ready(kid: &mut Child) {
    use std::io::BufRead;
    let out = kid.stdout.take().expect("a piped stdout");
    let mut line = String::new();
    std::io::BufReader::new(out)
        .read_line(&mut line)
        .expect("the child's line");
    assert_eq!(line.trim(), "ready", "the child could not hold its handles");
}

/// A child: opens `handles` store handles, each getting `shared` and the
/// entry `key`, says so, and waits to be killed.
fn child(name: &str, handles: usize, key: &str) -> ExitCode {
    let mut kept = Vec::with_capacity(handles);
    for _ in 0..handles {
        let got = Store::open(name).and_then(|store| {
            let shared = store.get::<u64>("shared")?;
            let own = store.get_or_create::<u64>(key, 0)?;
            Ok((store, shared, own))
        });
        match got {
            Ok(k) => kept.push(k),
            Err(e) => {
                eprintln!("child: {e}");
                return ExitCode::FAILURE;
            }
        }
    }
    println!("ready");
    loop {
        std::thread::sleep(Duration::from_secs(60));
    }
}
