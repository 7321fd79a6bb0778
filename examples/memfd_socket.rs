//! Two unrelated processes share a sealed memfd segment, handed over a Unix
//! socket: no name in /dev/shm, and no process holding the descriptor can
//! shrink or grow it (the seals make `ftruncate` fail), so nobody can make
//! the others die of SIGBUS.
//!
//! ```text
//! cargo run --release --example memfd_socket                     # server + 3 clients, one command
//! cargo run --release --example memfd_socket -- serve /tmp/s.sock   # in one terminal
//! cargo run --release --example memfd_socket -- client /tmp/s.sock  # in others
//! ```

use std::os::fd::AsFd;
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode};

use shmstore::{recv_fd, send_fd, Shareable, Shared};

#[derive(Shareable, Clone, Copy, Default, Debug)]
#[repr(C)]
struct Stats {
    requests: u64,
    clients: u64,
}

const INCREMENTS: u64 = 10_000;

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let result = match args.as_slice() {
        [] => demo(),
        ["serve", path] => serve(Path::new(path), None).map(|_| ()),
        ["client", path] => client(Path::new(path)),
        _ => Err("usage: memfd_socket [serve PATH | client PATH]".into()),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("memfd_socket: {e}");
            ExitCode::FAILURE
        }
    }
}

/// Creates the segment and hands its descriptor to every client that
/// connects (`clients` of them, or forever). Returns the segment.
fn serve(path: &Path, clients: Option<u64>) -> Result<Shared<Stats>, String> {
    let stats = Shared::<Stats>::memfd(Stats::default()).map_err(|e| e.to_string())?;
    let _ = std::fs::remove_file(path);
    let listener = UnixListener::bind(path).map_err(|e| format!("bind {}: {e}", path.display()))?;
    eprintln!("serving a memfd segment on {}", path.display());
    let fd = stats.as_fd().expect("a memfd segment has a descriptor");
    let mut served = 0;
    while clients.is_none_or(|n| served < n) {
        let (conn, _) = listener.accept().map_err(|e| e.to_string())?;
        send_fd(&conn, fd.as_fd()).map_err(|e| format!("send_fd: {e}"))?;
        served += 1;
    }
    let _ = std::fs::remove_file(path);
    Ok(stats)
}

/// Receives the segment and works on it.
fn client(path: &Path) -> Result<(), String> {
    let conn = UnixStream::connect(path).map_err(|e| format!("connect {}: {e}", path.display()))?;
    let fd = recv_fd(&conn).map_err(|e| format!("recv_fd: {e}"))?;
    let stats = Shared::<Stats>::from_fd(fd).map_err(|e| e.to_string())?;
    stats.lock().map_err(|_| "poisoned")?.clients += 1;
    for _ in 0..INCREMENTS {
        stats.lock().map_err(|_| "poisoned")?.requests += 1;
    }
    println!("client {}: done", std::process::id());
    Ok(())
}

/// A server and three client processes in one command.
fn demo() -> Result<(), String> {
    let path: PathBuf =
        std::env::temp_dir().join(format!("shmstore-memfd-{}.sock", std::process::id()));
    let exe = std::env::current_exe().map_err(|e| e.to_string())?;
    let server = {
        let path = path.clone();
        std::thread::spawn(move || serve(&path, Some(3)))
    };
    while !path.exists() {
        std::thread::sleep(std::time::Duration::from_millis(5));
    }
    let children: Vec<_> = (0..3)
        .map(|_| Command::new(&exe).arg("client").arg(&path).spawn())
        .collect::<Result<_, _>>()
        .map_err(|e| e.to_string())?;
    let mut ok = true;
    for mut c in children {
        ok &= c.wait().map_err(|e| e.to_string())?.success();
    }
    let segment = server.join().map_err(|_| "server panicked")??;
    let stats = *segment.lock().map_err(|_| "poisoned")?;
    println!(
        "3 client processes shared one sealed memfd segment: {} clients, {} requests (expected {})",
        stats.clients,
        stats.requests,
        3 * INCREMENTS
    );
    if ok && stats.requests == 3 * INCREMENTS && stats.clients == 3 {
        Ok(())
    } else {
        Err("an update was lost or a client failed".into())
    }
}
