//! Two "hosts" on one machine, each with its own shared memory, kept in
//! step through a local Redis server.
//!
//! ```text
//! cargo run --release --features mirror --example mirror
//! cargo run --release --features mirror --example mirror -- redis://127.0.0.1:6379/
//! ```
//!
//! Without a URL it starts `redis-server` itself (on a free loopback port,
//! without persistence) and stops it at the end. Host A writes a `Config`
//! five times; host B, another process, reads it from its own segment,
//! sleeping in `wait_for_change` until the mirror writes there.
//!
//! Run as root, each host is a process in a mount namespace of its own with
//! its own tmpfs on /dev/shm: both use the segment name `mirror-demo`, and
//! they are different memory, as on two machines. Otherwise the hosts
//! share /dev/shm and use two names, `mirror-demo-a` and `mirror-demo-b`.

#[path = "common/redis_server.rs"]
mod redis_server;

use std::io::{BufRead, BufReader};
use std::os::unix::process::CommandExt;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use redis_server::KillOnDrop;
use shmstore::mirror::MirrorOptions;
use shmstore::{Shareable, Shared, ShmStr};

/// What the hosts share.
#[derive(Shareable, Clone, Copy, Default)]
#[repr(C)]
struct Config {
    version: u64,
    max_connections: u32,
    port: u32,
    banner: ShmStr<44>,
}

const OBJECT: &str = "mirror-demo";
const ROUNDS: u64 = 5;

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if args.get(1).map(String::as_str) == Some("--host") {
        return host(&args[2], &args[3]);
    }
    let mut server = None;
    let url = match args.get(1) {
        Some(url) => url.clone(),
        None => {
            let (child, url) = redis_server::start();
            server = Some(child);
            url
        }
    };
    let own_shm = nix::unistd::geteuid().is_root();
    println!(
        "shmstore mirror demo: two hosts kept in step through Redis at {url}\n{}",
        if own_shm {
            "each host has its own /dev/shm (a mount namespace and tmpfs of its own): \
             both use the segment name `mirror-demo`"
        } else {
            "not root: the hosts share /dev/shm and use the names mirror-demo-a and \
             mirror-demo-b (run as root for a /dev/shm each)"
        }
    );
    let exe = std::env::current_exe().unwrap();
    let spawn = |role: &str| {
        let mut cmd = Command::new(&exe);
        cmd.args(["--host", role, &url]).stdout(Stdio::piped());
        // SAFETY: prctl is async-signal-safe and touches no memory: the
        // host dies with the demo.
        unsafe {
            cmd.pre_exec(|| {
                libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL as libc::c_ulong);
                Ok(())
            });
        }
        KillOnDrop(cmd.spawn().expect("starting a host"))
    };
    // B first, so that it is listening when A starts writing.
    let mut b = spawn("b");
    let b_out = BufReader::new(b.0.stdout.take().unwrap());
    let mut a = spawn("a");
    let a_out = BufReader::new(a.0.stdout.take().unwrap());
    let relay = std::thread::spawn(move || {
        for line in a_out.lines().map_while(Result::ok) {
            println!("{line}");
        }
    });
    for line in b_out.lines().map_while(Result::ok) {
        println!("{line}");
    }
    let _ = relay.join();
    let ok = b.0.wait().map(|s| s.success()).unwrap_or(false);
    let _ = a.0.wait();
    drop(server);
    if !ok {
        eprintln!("host B did not see every version");
        std::process::exit(1);
    }
    println!("done: B saw every version A wrote, in its own shared memory");
}

/// One host: A writes, B reads.
fn host(role: &str, url: &str) {
    let name = if own_dev_shm() {
        OBJECT.to_owned()
    } else {
        format!("{OBJECT}-{role}")
    };
    let config = shmstore::SharedOptions::new()
        .remove_on_drop(true)
        .create(name.as_str(), Config::default())
        .expect("creating the host's segment");
    let mut opts = MirrorOptions::new(url);
    let tag = role.to_uppercase();
    opts.origin(format!("host-{role}"))
        .on_event(move |e| println!("[{tag}]   its mirror: {e}"));
    let handle = Shared::<Config>::open(name.as_str()).unwrap();
    if role == "a" {
        let _mirror = opts.publish(OBJECT, handle).expect("starting the mirror");
        std::thread::sleep(Duration::from_millis(300));
        for v in 1..=ROUNDS {
            {
                let mut g = config.lock().unwrap();
                g.version = v;
                g.max_connections = 100 * v as u32;
                g.port = 8000 + v as u32;
                g.banner
                    .set_truncated(&format!("hello from host A, round {v}"));
            }
            println!("[A] wrote version {v} into its /dev/shm/{name}");
            std::thread::sleep(Duration::from_millis(400));
        }
        return;
    }
    let _mirror = opts.subscribe(OBJECT, handle).expect("starting the mirror");
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut seen = config.generation();
    while Instant::now() < deadline {
        let Some(now) = config
            .wait_for_change(seen, Duration::from_secs(1))
            .expect("the config segment stays whole")
        else {
            continue;
        };
        seen = now;
        let c = config.snapshot().unwrap();
        println!(
            "[B] its /dev/shm/{name} changed (generation {now}): version {}, \
             max_connections {}, port {}, banner {:?}",
            c.version,
            c.max_connections,
            c.port,
            c.banner.to_string_lossy()
        );
        if c.version == ROUNDS {
            return;
        }
    }
    std::process::exit(1);
}

/// As root: this process into a mount namespace of its own, with a fresh
/// tmpfs on /dev/shm (mounts made private first, so that nothing reaches
/// the rest of the machine). Whether it worked.
fn own_dev_shm() -> bool {
    if !nix::unistd::geteuid().is_root() {
        return false;
    }
    // SAFETY: unshare takes flags only.
    if unsafe { libc::unshare(libc::CLONE_NEWNS) } != 0 {
        return false;
    }
    // SAFETY: a propagation change: the target is a valid C string, the
    // others may be null.
    let private = unsafe {
        libc::mount(
            std::ptr::null(),
            c"/".as_ptr(),
            std::ptr::null(),
            libc::MS_REC | libc::MS_PRIVATE,
            std::ptr::null(),
        )
    };
    if private != 0 {
        eprintln!("cannot make mounts private: staying on the machine's /dev/shm");
        std::process::exit(1);
    }
    // SAFETY: all pointers are valid C strings that outlive the call.
    let rc = unsafe {
        libc::mount(
            c"mirror-demo".as_ptr(),
            c"/dev/shm".as_ptr(),
            c"tmpfs".as_ptr(),
            0,
            c"size=1m,mode=1777".as_ptr().cast(),
        )
    };
    rc == 0
}
