//! A throwaway `redis-server` for the mirror examples: on a free loopback
//! port, without persistence, stopped when its handle drops (or when the
//! example dies). Included by those examples with `#[path]`.

use std::io::{BufRead, BufReader, Write};
use std::net::{TcpListener, TcpStream};
use std::os::unix::process::CommandExt;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A child process, killed and reaped when this drops.
pub struct KillOnDrop(pub Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Starts `redis-server` and waits until it answers; returns it and its
/// URL. Exits with a message saying what to install if it cannot run.
pub fn start() -> (KillOnDrop, String) {
    let port = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let mut cmd = Command::new("redis-server");
    cmd.args(["--port", &port.to_string(), "--bind", "127.0.0.1"])
        .args(["--save", "", "--appendonly", "no", "--dir", "/tmp"])
        .stdout(Stdio::null());
    // SAFETY: the closure runs in the child between fork and exec, where
    // only async-signal-safe calls are allowed: prctl is one, and it
    // touches no memory. It makes the server die with the example.
    unsafe {
        cmd.pre_exec(|| {
            libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL as libc::c_ulong);
            Ok(())
        });
    }
    let server = KillOnDrop(cmd.spawn().unwrap_or_else(|e| {
        eprintln!("cannot run redis-server ({e}): install it (apt-get install -y redis-server) or give a redis:// URL");
        std::process::exit(1)
    }));
    let deadline = Instant::now() + Duration::from_secs(10);
    while Instant::now() < deadline {
        if let Ok(mut s) = TcpStream::connect(("127.0.0.1", port)) {
            if s.write_all(b"PING\r\n").is_ok() {
                let mut line = String::new();
                if BufReader::new(s).read_line(&mut line).is_ok() && line.starts_with("+PONG") {
                    return (server, format!("redis://127.0.0.1:{port}/"));
                }
            }
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    eprintln!("redis-server did not answer within 10 s");
    std::process::exit(1)
}
