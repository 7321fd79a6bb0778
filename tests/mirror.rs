//! The mirror (feature `mirror`) between "hosts": processes each in a mount
//! namespace of its own with its own tmpfs on /dev/shm, so that their
//! segments of the same name are different memory, kept in sync through a
//! real `redis-server` on loopback that the tests start and stop.
//!
//! Needs `redis-server` on the PATH (`apt-get install -y redis-server`) and
//! root (for the mount namespaces); without root the tests say so and
//! skip.

mod common;

use std::io::{BufRead, Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::os::unix::fs::MetadataExt;
use std::os::unix::process::CommandExt;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::{command, field, is_root, own_dev_shm, role, say, Kid, Segment, PATIENCE};
use shmstore::mirror::{MirrorOptions, Target};
use shmstore::{Shareable, Shared, SharedOptions, Store};

/// What the hosts share: a version and a value derived from it, so that a
/// torn or mixed value would show.
#[derive(Shareable, Clone, Copy, Default, Debug, PartialEq)]
#[repr(C)]
struct Config {
    version: u64,
    limit: u64,
}

/// The same size and fields under another name: another fingerprint.
#[derive(Shareable, Clone, Copy, Default, Debug, PartialEq)]
#[repr(C)]
struct OtherConfig {
    version: u64,
    limit: u64,
}

trait Versioned: Shareable + Copy + Default + std::fmt::Debug {
    fn of(v: u64) -> Self;
    fn version(&self) -> u64;
    fn limit(&self) -> u64;
}

impl Versioned for Config {
    fn of(v: u64) -> Self {
        Config {
            version: v,
            limit: v * 3,
        }
    }
    fn version(&self) -> u64 {
        self.version
    }
    fn limit(&self) -> u64 {
        self.limit
    }
}

impl Versioned for OtherConfig {
    fn of(v: u64) -> Self {
        OtherConfig {
            version: v,
            limit: v * 3,
        }
    }
    fn version(&self) -> u64 {
        self.version
    }
    fn limit(&self) -> u64 {
        self.limit
    }
}

// ---------------------------------------------------------------------------
// A real redis-server

/// A `redis-server` on a free loopback port, without persistence; killed
/// and reaped when dropped.
struct Redis {
    child: Option<Child>,
    port: u16,
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

impl Redis {
    fn start() -> Redis {
        let mut r = Redis {
            child: None,
            port: free_port(),
        };
        r.up();
        r
    }

    /// Starts it (again) on its port.
    fn up(&mut self) {
        assert!(self.child.is_none());
        let mut cmd = Command::new("redis-server");
        cmd.args([
            "--port",
            &self.port.to_string(),
            "--bind",
            "127.0.0.1",
            "--save",
            "",
            "--appendonly",
            "no",
            "--dir",
            "/tmp",
        ])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null());
        // SAFETY: prctl is async-signal-safe and touches no memory; the
        // server dies with the thread that started it if the test dies.
        unsafe {
            cmd.pre_exec(|| {
                libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL as libc::c_ulong);
                Ok(())
            });
        }
        let child = cmd.spawn().unwrap_or_else(|e| {
            panic!(
                "cannot run redis-server ({e}): install it with `apt-get install -y redis-server`"
            )
        });
        self.child = Some(child);
        let deadline = Instant::now() + PATIENCE;
        loop {
            if let Ok(mut s) = TcpStream::connect(("127.0.0.1", self.port)) {
                let _ = s.set_read_timeout(Some(Duration::from_secs(1)));
                let mut buf = [0u8; 7];
                if s.write_all(b"PING\r\n").is_ok()
                    && s.read_exact(&mut buf).is_ok()
                    && &buf == b"+PONG\r\n"
                {
                    return;
                }
            }
            assert!(Instant::now() < deadline, "redis-server did not come up");
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Kills it (all its data is gone: no persistence).
    fn down(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    fn url(&self) -> String {
        format!("redis://127.0.0.1:{}/", self.port)
    }

    fn con(&self) -> redis::Connection {
        let c = redis::Client::open(self.url()).unwrap();
        let con = c
            .get_connection_with_timeout(Duration::from_secs(5))
            .unwrap();
        con.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        con
    }

    /// A field of the object's hash.
    fn field(&self, object: &str, name: &str) -> Option<Vec<u8>> {
        redis::cmd("HGET")
            .arg(format!("shmstore:mirror:{object}"))
            .arg(name)
            .query(&mut self.con())
            .unwrap()
    }

    fn rev(&self, object: &str) -> u64 {
        self.field(object, "rev")
            .map(|b| String::from_utf8(b).unwrap().parse().unwrap())
            .unwrap_or(0)
    }

    /// Puts a record of a `Config` in the object's hash by hand, as a
    /// mirror of `origin` would: generation 1, revision 1.
    fn forge(&self, object: &str, value: &[u8], fingerprint: &str, origin: &str) {
        let _: () = redis::cmd("HSET")
            .arg(format!("shmstore:mirror:{object}"))
            .arg("value")
            .arg(value)
            .arg("fingerprint")
            .arg(fingerprint)
            .arg(&["type", "Config", "size", "16", "generation", "1"])
            .arg(&["origin", origin, "rev", "1"])
            .query(&mut self.con())
            .unwrap();
    }

    /// Publishes `msg` on the object's channel by hand.
    fn announce(&self, object: &str, msg: &[u8]) {
        self.publish(&format!("shmstore:mirror:{object}"), msg);
    }

    /// Publishes `msg` on a store object's channel by hand.
    fn announce_store(&self, object: &str, msg: &[u8]) {
        self.publish(&format!("shmstore:store:{object}"), msg);
    }

    fn publish(&self, channel: &str, msg: &[u8]) {
        let _: i64 = redis::cmd("PUBLISH")
            .arg(channel)
            .arg(msg)
            .query(&mut self.con())
            .unwrap();
    }

    /// The version in the object's value, as stored in Redis.
    fn version(&self, object: &str) -> Option<u64> {
        let v = self.field(object, "value")?;
        Some(u64::from_ne_bytes(v[..8].try_into().unwrap()))
    }
}

impl Drop for Redis {
    fn drop(&mut self) {
        self.down();
    }
}

// ---------------------------------------------------------------------------
// A loopback link that can be cut

/// A TCP forwarder to a port, whose link can be cut (nothing passes, as
/// when a network drops packets: connections stay open and hang) and
/// restored.
struct Link {
    port: u16,
    cut: Arc<AtomicBool>,
    stop: Arc<AtomicBool>,
}

impl Link {
    fn to(upstream: u16) -> Link {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        listener.set_nonblocking(true).unwrap();
        let port = listener.local_addr().unwrap().port();
        let cut = Arc::new(AtomicBool::new(false));
        let stop = Arc::new(AtomicBool::new(false));
        let (c, s) = (cut.clone(), stop.clone());
        std::thread::spawn(move || {
            while !s.load(Ordering::Relaxed) {
                match listener.accept() {
                    Ok((down, _)) => {
                        let (c, s) = (c.clone(), s.clone());
                        std::thread::spawn(move || {
                            // A connection made while cut gets through only
                            // once the link is restored.
                            while c.load(Ordering::Relaxed) {
                                if s.load(Ordering::Relaxed) {
                                    return;
                                }
                                std::thread::sleep(Duration::from_millis(10));
                            }
                            let Ok(up) = TcpStream::connect(("127.0.0.1", upstream)) else {
                                return;
                            };
                            down.set_nonblocking(false).unwrap();
                            pump_both(down, up, c, s);
                        });
                    }
                    Err(_) => std::thread::sleep(Duration::from_millis(5)),
                }
            }
        });
        Link { port, cut, stop }
    }

    fn cut(&self) {
        self.cut.store(true, Ordering::Relaxed);
    }

    fn restore(&self) {
        self.cut.store(false, Ordering::Relaxed);
    }
}

impl Drop for Link {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

fn pump_both(a: TcpStream, b: TcpStream, cut: Arc<AtomicBool>, stop: Arc<AtomicBool>) {
    let (a2, b2) = (a.try_clone().unwrap(), b.try_clone().unwrap());
    let (c2, s2) = (cut.clone(), stop.clone());
    std::thread::spawn(move || pump(a2, b2, c2, s2));
    pump(b, a, cut, stop);
}

/// Copies `from` to `to`, holding the bytes while the link is cut.
fn pump(mut from: TcpStream, mut to: TcpStream, cut: Arc<AtomicBool>, stop: Arc<AtomicBool>) {
    from.set_read_timeout(Some(Duration::from_millis(50)))
        .unwrap();
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        if stop.load(Ordering::Relaxed) {
            break;
        }
        let n = match from.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) =>
            {
                continue
            }
            Err(_) => break,
        };
        while cut.load(Ordering::Relaxed) && !stop.load(Ordering::Relaxed) {
            std::thread::sleep(Duration::from_millis(10));
        }
        if to.write_all(&buf[..n]).is_err() {
            break;
        }
    }
    let _ = to.shutdown(Shutdown::Both);
    let _ = from.shutdown(Shutdown::Both);
}

// ---------------------------------------------------------------------------
// Hosts

/// How a host is started.
struct HostSpec<'a> {
    port: u16,
    object: &'a str,
    segment: &'a str,
    direction: &'a str,
    /// `config` or `other` (another layout).
    ty: &'a str,
    /// `value` (a segment of its own) or `entry` (entry `cfg` of a store).
    kind: &'a str,
    /// `lib` (a `Mirror` in the host) or `cli` (`shmstore mirror` run by
    /// the host, in its namespace).
    driver: &'a str,
    origin: &'a str,
}

/// A "host": a child process in its own mount namespace with its own
/// /dev/shm, mirroring one segment. Checks that its /dev/shm is not ours.
struct Host {
    kid: Kid,
}

impl Host {
    fn start(s: HostSpec<'_>) -> Host {
        let port = s.port.to_string();
        let mut kid = Kid::spawn(
            "host",
            &[
                &port,
                s.object,
                s.segment,
                s.direction,
                s.ty,
                s.kind,
                s.driver,
                s.origin,
            ],
        );
        let line = kid.expect("shm");
        let ours = std::fs::metadata("/dev/shm").unwrap().dev();
        let theirs: u64 = field(&line, "dev").parse().unwrap();
        assert_ne!(theirs, ours, "host {} shares our /dev/shm", s.origin);
        kid.expect("ready");
        Host { kid }
    }

    fn ask(&mut self, cmd: &str, reply: &str) -> String {
        self.kid.send(cmd);
        self.kid.expect(reply)
    }

    fn set(&mut self, v: u64) -> u64 {
        let r = self.ask(&format!("set {v}"), "set");
        field(&r, "gen").parse().unwrap()
    }

    /// (version, generation) of its local value.
    fn get(&mut self) -> (u64, u64) {
        let r = self.ask("get", "value");
        (
            field(&r, "version").parse().unwrap(),
            field(&r, "gen").parse().unwrap(),
        )
    }

    /// Waits (in the host, with `wait_for_change`) until its local value
    /// has version `v`; its generation then, or `None` after `ms`.
    fn until(&mut self, v: u64, ms: u64) -> Option<u64> {
        let r = self.ask(&format!("until {v} {ms}"), "");
        if r.starts_with("reached") {
            Some(field(&r, "gen").parse().unwrap())
        } else {
            assert!(r.starts_with("timeout"), "{r}");
            // A long wait is one that must succeed: say what the host's
            // mirror did.
            assert!(
                ms < SLOW,
                "no version {v} within {ms} ms ({r}); the host's log:\n{}",
                self.kid.stderr()
            );
            None
        }
    }

    fn stat(&mut self, name: &str) -> u64 {
        let r = self.ask("stats", "stats");
        field(&r, name).parse().unwrap()
    }

    fn refusal(&mut self) -> String {
        self.ask("refusal", "refusal")
    }
}

/// Hosts need root for their namespaces.
fn can_run() -> bool {
    if !is_root() {
        eprintln!("skipped: mirror hosts need root (a mount namespace each)");
        return false;
    }
    true
}

fn object(test: &str) -> String {
    format!("it-{test}-{}", std::process::id())
}

#[test]
fn child_entry() {
    let Some(role) = role() else { return };
    let arg = |i: usize| role[i].as_str();
    let code = match arg(0) {
        "host" => {
            let spec = HostSpec {
                port: arg(1).parse().unwrap(),
                object: arg(2),
                segment: arg(3),
                direction: arg(4),
                ty: arg(5),
                kind: arg(6),
                driver: arg(7),
                origin: arg(8),
            };
            match spec.ty {
                "config" => host::<Config>(&spec),
                _ => host::<OtherConfig>(&spec),
            }
        }
        "store-host" => store_host(&StoreSpec {
            port: arg(1).parse().unwrap(),
            object: arg(2),
            store: arg(3),
            direction: arg(4),
            origin: arg(5),
            capacity: arg(6).parse().unwrap(),
            max: arg(7).parse().unwrap(),
        }),
        other => panic!("unknown role {other}"),
    };
    std::process::exit(code);
}

fn host<T: Versioned>(s: &HostSpec<'_>) -> i32 {
    own_dev_shm();
    say(format!(
        "shm dev={}",
        std::fs::metadata("/dev/shm").unwrap().dev()
    ));
    let url = format!("redis://127.0.0.1:{}/", s.port);
    // The segment in this host's own /dev/shm (gone with the namespace).
    let (shared, store): (Shared<T>, Option<Store>) = match s.kind {
        "value" => (Shared::create(s.segment, T::default()).unwrap(), None),
        _ => {
            let store = Store::create(s.segment, 64 * 1024).unwrap();
            let e = store.insert("cfg", T::default()).unwrap();
            (e, Some(store))
        }
    };
    let mut mirror = None;
    let mut cli = None;
    let cli_lines = Arc::new(std::sync::Mutex::new(Vec::<String>::new()));
    match s.driver {
        "lib" => {
            let target: Target = match &store {
                None => Shared::<T>::open(s.segment).unwrap().into(),
                Some(store) => Target::entry(store, "cfg").unwrap(),
            };
            let origin = s.origin.to_owned();
            let m = MirrorOptions::new(url)
                .origin(s.origin)
                .io_timeout(Duration::from_millis(500))
                .check_interval(Duration::from_millis(200))
                .max_backoff(Duration::from_millis(400))
                .on_event(move |e| eprintln!("[{origin}] {e}"))
                .start(
                    s.object,
                    target,
                    match s.direction {
                        "publish" => shmstore::mirror::Direction::Publish,
                        "subscribe" => shmstore::mirror::Direction::Subscribe,
                        _ => shmstore::mirror::Direction::Both,
                    },
                )
                .unwrap();
            mirror = Some(m);
        }
        _ => {
            let mut cmd = Command::new(cli_path());
            cmd.args(["mirror", s.direction, s.segment, "--redis", &url])
                .args(["--object", s.object, "--origin", s.origin]);
            if store.is_some() {
                cmd.args(["--entry", "cfg"]);
            }
            cli = Some(spawn_collecting(cmd, &cli_lines));
        }
    }
    say("ready");
    while let Some(line) = command() {
        let words: Vec<&str> = line.split_whitespace().collect();
        let num = |i: usize| words[i].parse::<u64>().unwrap();
        match words[0] {
            "set" => {
                *shared.lock().unwrap() = T::of(num(1));
                say(format!("set gen={}", shared.generation()));
            }
            "burst" => {
                for v in num(1)..num(1) + num(2) {
                    *shared.lock().unwrap() = T::of(v);
                }
                say("burst done");
            }
            "get" => {
                let (v, g) = shared.snapshot_with_generation().unwrap();
                assert_eq!(v.limit(), v.version() * 3, "a mixed value: {v:?}");
                say(format!("value version={} gen={g}", v.version()));
            }
            "until" => {
                let (want, deadline) = (num(1), Instant::now() + Duration::from_millis(num(2)));
                loop {
                    let (v, g) = shared.snapshot_with_generation().unwrap();
                    assert_eq!(v.limit(), v.version() * 3, "a mixed value: {v:?}");
                    if v.version() == want {
                        say(format!("reached gen={g}"));
                        break;
                    }
                    let left = deadline.saturating_duration_since(Instant::now());
                    if left.is_zero() {
                        say(format!("timeout version={} gen={g}", v.version()));
                        break;
                    }
                    // Woken by the mirror's write as by a local one.
                    shared.wait_for_change(g, left).unwrap();
                }
            }
            "hold" => {
                let ms = num(1);
                let (tx, rx) = std::sync::mpsc::channel();
                let name = s.segment.to_owned();
                let entry = store.clone();
                std::thread::spawn(move || {
                    let h: Shared<T> = match entry {
                        None => Shared::open(&name).unwrap(),
                        Some(st) => st.get("cfg").unwrap(),
                    };
                    let g = h.lock().unwrap();
                    tx.send(()).unwrap();
                    std::thread::sleep(Duration::from_millis(ms));
                    drop(g);
                });
                rx.recv().unwrap();
                say("held");
            }
            "stats" => say_stats(&mirror.as_ref().unwrap().stats()),
            "printed" => say(printed(&cli_lines, &words[1..])),
            "refusal" => say_refusal(mirror.as_ref().unwrap().last_refusal()),
            "quit" => break,
            other => panic!("unknown command {other}"),
        }
    }
    drop(mirror);
    drop(cli);
    0
}

/// Answers `stats`: every counter of a mirror.
fn say_stats(st: &shmstore::mirror::Stats) {
    say(format!(
        "stats published={} applied={} refused={} echoes={} unchanged={} skipped={} \
         disconnects={} created={} removed={} stale={}",
        st.published,
        st.applied,
        st.refused,
        st.echoes,
        st.unchanged,
        st.skipped,
        st.disconnects,
        st.created,
        st.removed,
        st.stale
    ));
}

/// Answers `refusal`: why the last refusal was made.
fn say_refusal(r: Option<String>) {
    say(format!("refusal {}", r.unwrap_or_default()));
}

/// Runs the command `cmd` (killed when this host dies), keeping each line
/// it prints in `lines`.
fn spawn_collecting(mut cmd: Command, lines: &Arc<std::sync::Mutex<Vec<String>>>) -> KillOnDrop {
    // SAFETY: prctl is async-signal-safe and touches no memory: the
    // command dies with this host.
    unsafe {
        cmd.pre_exec(|| {
            libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL as libc::c_ulong);
            Ok(())
        });
    }
    let mut child = cmd
        .stdout(Stdio::piped())
        .spawn()
        .expect("running shmstore");
    let out = child.stdout.take().unwrap();
    let lines = lines.clone();
    std::thread::spawn(move || {
        for line in std::io::BufReader::new(out).lines().map_while(Result::ok) {
            lines.lock().unwrap().push(line);
        }
    });
    KillOnDrop(child)
}

/// `printed LINE`: the first line the command printed with all `words`
/// (waiting up to 10 s), or `printed -`.
fn printed(lines: &std::sync::Mutex<Vec<String>>, words: &[&str]) -> String {
    let deadline = Instant::now() + Duration::from_secs(10);
    let found = loop {
        let hit = lines
            .lock()
            .unwrap()
            .iter()
            .find(|l| words.iter().all(|w| l.contains(w)))
            .cloned();
        if hit.is_some() || Instant::now() > deadline {
            break hit;
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    format!("printed {}", found.unwrap_or_else(|| "-".into()))
}

struct KillOnDrop(Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[cfg(feature = "cli")]
fn cli_path() -> &'static str {
    env!("CARGO_BIN_EXE_shmstore")
}

#[cfg(not(feature = "cli"))]
fn cli_path() -> &'static str {
    panic!("the shmstore command needs the `cli` feature")
}

fn spec<'a>(
    redis_port: u16,
    object: &'a str,
    segment: &'a str,
    direction: &'a str,
    origin: &'a str,
) -> HostSpec<'a> {
    HostSpec {
        port: redis_port,
        object,
        segment,
        direction,
        ty: "config",
        kind: "value",
        driver: "lib",
        origin,
    }
}

const SLOW: u64 = 20_000;

// ---------------------------------------------------------------------------
// Tests

/// One host writes, another reads the value from its own shared memory,
/// woken by `wait_for_change`; a host that joins late loads the latest
/// value first.
#[test]
fn a_write_on_one_host_reaches_the_shared_memory_of_another() {
    if !can_run() {
        return;
    }
    let redis = Redis::start();
    let obj = object("basic");
    // The same name on every host, and never in our /dev/shm.
    let seg = Segment::new("mirror-basic");
    let mut a = Host::start(spec(redis.port, &obj, seg.name(), "publish", "host-a"));
    let mut b = Host::start(spec(redis.port, &obj, seg.name(), "subscribe", "host-b"));
    assert!(!seg.exists(), "a host's segment is in our /dev/shm");

    a.set(1);
    let g1 = b.until(1, SLOW).expect("B got version 1");
    for v in 2..=5 {
        a.set(v);
    }
    let g5 = b.until(5, SLOW).expect("B got version 5");
    assert!(g5 > g1 && g5 - g1 <= 4, "B's generation went {g1} -> {g5}");

    // What Redis holds: the value with its layout and origin.
    assert_eq!(redis.version(&obj), Some(5));
    assert_eq!(redis.field(&obj, "origin").unwrap(), b"host-a");
    assert_eq!(redis.field(&obj, "size").unwrap(), b"16");
    assert_eq!(
        redis.field(&obj, "fingerprint").unwrap(),
        Config::FINGERPRINT.to_string().as_bytes()
    );

    // A late joiner starts from the latest value.
    let mut c = Host::start(spec(redis.port, &obj, seg.name(), "subscribe", "host-c"));
    c.until(5, SLOW).expect("C loaded version 5");
    assert_eq!(c.stat("refused"), 0);
    assert_eq!(b.stat("refused"), 0);
    assert!(a.stat("published") >= 2);
    assert!(!seg.exists());
}

/// A value of another layout is refused at both ends, and any bytes put in
/// Redis by hand are refused without harm.
#[test]
fn values_of_another_layout_or_malformed_are_refused_never_written() {
    if !can_run() {
        return;
    }
    let redis = Redis::start();
    let obj = object("layout");
    let seg = Segment::new("mirror-layout");
    let mut a = Host::start(spec(redis.port, &obj, seg.name(), "publish", "host-a"));
    let mut other = Host::start(HostSpec {
        ty: "other",
        ..spec(redis.port, &obj, seg.name(), "subscribe", "host-o")
    });
    a.set(7);
    // A's value is in Redis, yet the other layout's host stays as it was.
    assert!(common::eventually(PATIENCE, || redis.version(&obj) == Some(7)));
    assert_eq!(other.until(7, 1500), None);
    assert_eq!(other.get(), (0, 0));
    assert!(common::eventually(PATIENCE, || other.stat("refused") >= 1));
    let why = other.refusal();
    assert!(
        why.contains("OtherConfig") && why.contains("`Config`"),
        "refusal: {why}"
    );
    // A publisher of the other layout cannot overwrite it either.
    let mut p = Host::start(HostSpec {
        ty: "other",
        ..spec(redis.port, &obj, seg.name(), "publish", "host-p")
    });
    p.set(99);
    assert!(common::eventually(PATIENCE, || p.stat("refused") >= 1));
    assert_eq!(redis.version(&obj), Some(7));

    // Garbage in Redis for another object: refused, never written.
    let bad = object("garbage");
    redis.forge(&bad, b"12345", &Config::FINGERPRINT.to_string(), "x");
    let mut b = Host::start(spec(redis.port, &bad, seg.name(), "subscribe", "host-b"));
    // The hash is refused once B has subscribed: announcements reach it.
    assert!(common::eventually(PATIENCE, || b.stat("refused") >= 1));
    for msg in [
        &b"garbage"[..],
        b"",
        b"2\n1\n16\n1\nx\nConfig\nshort",
        b"3\nnot-a-number\n16\n1\nx\nConfig\n0123456789abcdef",
        b"4\n1\n16\n1\nx\nConfig\n0123456789abcdef",
    ] {
        redis.announce(&bad, msg);
    }
    assert!(common::eventually(PATIENCE, || b.stat("refused") >= 6));
    assert_eq!(b.get(), (0, 0), "B wrote something it refused");
    // A valid value still gets through afterwards.
    let mut a2 = Host::start(spec(redis.port, &bad, seg.name(), "publish", "host-a2"));
    a2.set(3);
    b.until(3, SLOW).expect("B got the valid value");
}

/// A value published by a build of the other byte order (a record and an
/// announcement forged by hand, as such a build writes them: the numbers'
/// bytes reversed, the fingerprint field saying `be64` or `le64`) is
/// refused by a subscriber with a message that names both byte orders, and
/// never written; a publisher of this byte order does not write over it.
#[test]
fn a_value_of_the_other_byte_order_is_refused_never_written() {
    if !can_run() {
        return;
    }
    let redis = Redis::start();
    let obj = object("byteorder");
    let seg = Segment::new("mirror-byteorder");
    let token = if cfg!(target_endian = "little") {
        "be64"
    } else {
        "le64"
    };
    let fingerprint = format!("{}:{token}", Config::FINGERPRINT);
    // `Config::of(v)` in the other byte order.
    let value = |v: u64| {
        let mut bytes = v.swap_bytes().to_ne_bytes().to_vec();
        bytes.extend_from_slice(&(v * 3).swap_bytes().to_ne_bytes());
        bytes
    };
    redis.forge(&obj, &value(5), &fingerprint, "host-other");
    let both = |why: &str| {
        why.contains(&format!("{} 64-bit build", common::other_byte_order()))
            && why.contains(&format!("{} 64-bit build", common::this_byte_order()))
    };

    let mut b = Host::start(spec(redis.port, &obj, seg.name(), "subscribe", "host-b"));
    assert!(common::eventually(PATIENCE, || b.stat("refused") >= 1));
    let why = b.refusal();
    assert!(both(&why), "refusal: {why}");
    assert_eq!(b.get(), (0, 0), "B wrote a value of the other byte order");

    // An announcement of the other byte order: refused too.
    let mut msg = format!("2\n{fingerprint}\n16\n2\nhost-other\nConfig\n").into_bytes();
    msg.extend_from_slice(&value(6));
    redis.announce(&obj, &msg);
    assert!(common::eventually(PATIENCE, || b.stat("refused") >= 2));
    assert!(both(&b.refusal()), "refusal: {}", b.refusal());
    assert_eq!(b.get(), (0, 0), "B wrote a value of the other byte order");

    // A publisher of this byte order is refused by the script.
    let mut a = Host::start(spec(redis.port, &obj, seg.name(), "publish", "host-a"));
    a.set(7);
    assert!(common::eventually(PATIENCE, || a.stat("refused") >= 1));
    let why = a.refusal();
    assert!(both(&why), "refusal: {why}");
    assert_eq!(redis.field(&obj, "value"), Some(value(5)), "overwritten");
    assert_eq!(
        redis.field(&obj, "fingerprint"),
        Some(fingerprint.into_bytes())
    );
    assert_eq!(b.stat("applied"), 0);
}

/// Two hosts that both write converge to the last write that reached
/// Redis, and never send each other's values back.
#[test]
fn both_directions_converge_to_the_last_write_and_do_not_echo() {
    if !can_run() {
        return;
    }
    let redis = Redis::start();
    let obj = object("both");
    let seg = Segment::new("mirror-both");
    let mut a = Host::start(spec(redis.port, &obj, seg.name(), "both", "host-a"));
    let mut b = Host::start(spec(redis.port, &obj, seg.name(), "both", "host-b"));
    // Both connected and subscribed: each has had the other's write.
    a.set(100);
    b.until(100, SLOW).expect("B got A's write");
    b.set(101);
    a.until(101, SLOW).expect("A got B's write");
    // One write at a time: each reaches the other, and is not sent back
    // (not even as a no-op that Redis would find unchanged).
    // The counts of those writes first: a host counts its write when Redis
    // replies, which can come after the other host has applied it.
    let mut sent = 0;
    assert!(common::eventually(PATIENCE, || {
        std::thread::sleep(Duration::from_millis(300));
        let now = a.stat("published") + b.stat("published");
        std::mem::replace(&mut sent, now) == now
    }));
    let rev = redis.rev(&obj);
    let (ua, ub) = (a.stat("unchanged"), b.stat("unchanged"));
    a.set(1);
    b.until(1, SLOW).expect("B got A's write");
    b.set(2);
    a.until(2, SLOW).expect("A got B's write");
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(
        a.stat("published") + b.stat("published"),
        sent + 2,
        "two writes, two values stored"
    );
    assert!(redis.rev(&obj) > rev, "the revision did not grow");
    assert_eq!(a.stat("unchanged"), ua, "A sent B's value back");
    assert_eq!(b.stat("unchanged"), ub, "B sent A's value back");
    assert_eq!(redis.version(&obj), Some(2));

    // Both write at once, many times.
    a.kid.send("burst 1000 300");
    b.kid.send("burst 5000 300");
    a.kid.expect("burst done");
    b.kid.expect("burst done");
    // Quiet: the revision stops moving, and everyone holds what Redis holds.
    let mut last = redis.rev(&obj);
    let settled = common::eventually(PATIENCE, || {
        std::thread::sleep(Duration::from_millis(300));
        let now = redis.rev(&obj);
        let quiet = now == last;
        last = now;
        quiet
    });
    assert!(
        settled,
        "the revision kept moving: values echo between hosts"
    );
    let winner = redis.version(&obj).unwrap();
    assert_eq!(
        a.until(winner, SLOW).map(|_| ()),
        Some(()),
        "A differs from Redis"
    );
    assert_eq!(
        b.until(winner, SLOW).map(|_| ()),
        Some(()),
        "B differs from Redis"
    );
    // Some host's write (a write overwritten by the other host's before
    // it was sent is not sent: it lost).
    assert!(
        (1000..1300).contains(&winner) || (5000..5300).contains(&winner),
        "the winner {winner} is not a write of the burst"
    );
}

/// Redis killed and started again (empty): readers keep the last value
/// meanwhile, and the mirrors reconnect and converge to the latest.
#[test]
fn a_restarted_redis_is_reconnected_and_the_latest_value_wins() {
    if !can_run() {
        return;
    }
    let mut redis = Redis::start();
    let obj = object("restart");
    let seg = Segment::new("mirror-restart");
    let mut a = Host::start(spec(redis.port, &obj, seg.name(), "publish", "host-a"));
    let mut b = Host::start(spec(redis.port, &obj, seg.name(), "subscribe", "host-b"));
    a.set(1);
    let g = b.until(1, SLOW).unwrap();

    redis.down();
    a.set(2);
    a.set(3);
    // A host whose mirror starts while Redis is away waits for it.
    let mut c = Host::start(spec(redis.port, &obj, seg.name(), "subscribe", "host-c"));
    // B's readers keep the last good value while Redis is away.
    std::thread::sleep(Duration::from_millis(800));
    assert_eq!(b.get(), (1, g));
    redis.up();
    b.until(3, SLOW).expect("B converged after the restart");
    c.until(3, SLOW)
        .expect("C got the value once Redis came up");
    assert_eq!(redis.version(&obj), Some(3));
    assert!(a.stat("disconnects") >= 1);
    assert!(b.stat("disconnects") >= 1);
    // And it goes on working.
    a.set(4);
    b.until(4, SLOW).unwrap();
}

/// The network between the hosts and Redis cut (packets dropped,
/// connections hanging) and restored.
#[test]
fn a_cut_network_is_noticed_and_the_mirror_converges_when_restored() {
    if !can_run() {
        return;
    }
    let redis = Redis::start();
    let link = Link::to(redis.port);
    let obj = object("cut");
    let seg = Segment::new("mirror-cut");
    let mut a = Host::start(spec(link.port, &obj, seg.name(), "publish", "host-a"));
    let mut b = Host::start(spec(link.port, &obj, seg.name(), "subscribe", "host-b"));
    a.set(1);
    let g = b.until(1, SLOW).unwrap();

    link.cut();
    a.set(2);
    assert_eq!(b.until(2, 1500), None, "a value crossed a cut link");
    assert_eq!(b.get(), (1, g), "B's readers lost the last good value");
    // The hanging connections were given up for dead.
    assert!(common::eventually(PATIENCE, || b.stat("disconnects") >= 1));
    assert!(common::eventually(PATIENCE, || a.stat("disconnects") >= 1));
    a.set(3);
    link.restore();
    b.until(3, SLOW)
        .expect("B converged after the link came back");
}

/// A subscriber that cannot write for a while (its local lock is held)
/// writes the newest value once, not every value it missed.
#[test]
fn a_slow_subscriber_skips_to_the_newest_value() {
    if !can_run() {
        return;
    }
    let redis = Redis::start();
    let obj = object("slow");
    let seg = Segment::new("mirror-slow");
    let mut a = Host::start(spec(redis.port, &obj, seg.name(), "publish", "host-a"));
    let mut b = Host::start(spec(redis.port, &obj, seg.name(), "subscribe", "host-b"));
    a.set(1);
    let g0 = b.until(1, SLOW).unwrap();
    // A local process of B holds the lock (and writes nothing) for 3 s.
    b.ask("hold 3000", "held");
    for v in 2..=51 {
        a.set(v);
    }
    assert!(common::eventually(PATIENCE, || redis.version(&obj) == Some(51)));
    let g1 = b.until(51, SLOW).expect("B got the newest value");
    assert!(
        g1 - g0 <= 2,
        "B wrote {} values for 50 updates (generation {g0} -> {g1})",
        g1 - g0
    );
    assert!(b.stat("applied") <= 3);
}

/// `shmstore mirror` carries a store entry from one host to a plain
/// segment on another (same type, so the same fingerprint).
#[cfg(feature = "cli")]
#[test]
fn the_shmstore_mirror_command_publishes_and_subscribes_without_a_type() {
    if !can_run() {
        return;
    }
    let redis = Redis::start();
    let obj = object("cli");
    let seg = Segment::new("mirror-cli");
    let mut a = Host::start(HostSpec {
        kind: "entry",
        driver: "cli",
        ..spec(redis.port, &obj, seg.name(), "publish", "host-a")
    });
    let mut b = Host::start(HostSpec {
        driver: "cli",
        ..spec(redis.port, &obj, seg.name(), "subscribe", "host-b")
    });
    a.set(9);
    b.until(9, SLOW)
        .expect("B got version 9 through two shmstore commands");
    a.set(10);
    b.until(10, SLOW).expect("B got version 10");
    assert_eq!(redis.field(&obj, "origin").unwrap(), b"host-a");
    assert_eq!(
        redis.field(&obj, "type").unwrap(),
        Config::TYPE_NAME.as_bytes()
    );
    // A subscriber of another layout, through the command, refuses.
    let mut o = Host::start(HostSpec {
        driver: "cli",
        ty: "other",
        ..spec(redis.port, &obj, seg.name(), "subscribe", "host-o")
    });
    a.set(11);
    b.until(11, SLOW).unwrap();
    assert_eq!(o.until(11, 1000), None);
    assert_eq!(o.get(), (0, 0));
    // What the commands told their users.
    let said = o.ask("printed refused OtherConfig", "printed");
    assert!(said.contains("`Config`"), "the refusal printed: {said}");
    let said = b.ask("printed applied origin=host-a", "printed");
    assert_ne!(said, "-", "B's command printed no applied line");
    let said = a.ask("printed published rev=", "printed");
    assert_ne!(said, "-", "A's command printed no published line");
}

/// The typed API in one process, without root: two segment names in one
/// /dev/shm stand for two hosts.
#[test]
fn a_mirror_in_one_process_follows_its_publisher() {
    let redis = Redis::start();
    let obj = object("local");
    let a_seg = Segment::new("mirror-local-a");
    let b_seg = Segment::new("mirror-local-b");
    let a = Shared::<Config>::create(a_seg.name(), Config::default()).unwrap();
    let b = Shared::<Config>::create(b_seg.name(), Config::default()).unwrap();
    let opts = MirrorOptions::new(redis.url());
    let pa = opts
        .publish(&obj, Shared::<Config>::open(a_seg.name()).unwrap())
        .unwrap();
    let sb = opts
        .subscribe(&obj, Shared::<Config>::open(b_seg.name()).unwrap())
        .unwrap();
    let seen = b.generation();
    *a.lock().unwrap() = Config::of(42);
    let deadline = Instant::now() + PATIENCE;
    while b.snapshot().unwrap().version != 42 {
        assert!(Instant::now() < deadline, "B never got 42");
        b.wait_for_change(b.generation(), Duration::from_millis(200))
            .unwrap();
    }
    assert!(b.generation() > seen);
    assert_eq!(b.snapshot().unwrap(), Config::of(42));
    // Counted just after the fact: A counts its reply, B its write.
    assert!(common::eventually(PATIENCE, || pa.stats().published >= 1
        && sb.stats().applied >= 1));
    drop((pa, sb));
}

// ---------------------------------------------------------------------------
// Whole stores

/// A large entry type, for stores that fill up.
#[derive(Shareable, Clone, Copy, Debug, PartialEq)]
#[repr(C)]
struct Big {
    version: u64,
    limit: u64,
    data: [u64; 126],
}

impl Default for Big {
    fn default() -> Self {
        Big::of(0)
    }
}

impl Versioned for Big {
    fn of(v: u64) -> Self {
        Big {
            version: v,
            limit: v * 3,
            data: [v; 126],
        }
    }
    fn version(&self) -> u64 {
        self.version
    }
    fn limit(&self) -> u64 {
        self.limit
    }
}

/// How a store host is started.
struct StoreSpec<'a> {
    port: u16,
    object: &'a str,
    store: &'a str,
    direction: &'a str,
    origin: &'a str,
    capacity: usize,
    /// Its `max_capacity`.
    max: usize,
}

/// A "host" with a store of its own (in its own /dev/shm), mirrored
/// whole; commands name entries by key and type (`config`, `other`,
/// `big`).
struct StoreHost(Host);

/// `ask`, `stat` and `refusal` are a value host's.
impl std::ops::Deref for StoreHost {
    type Target = Host;

    fn deref(&self) -> &Host {
        &self.0
    }
}

impl std::ops::DerefMut for StoreHost {
    fn deref_mut(&mut self) -> &mut Host {
        &mut self.0
    }
}

impl StoreHost {
    /// Starts a host whose store holds `entries` (`key:type:version`)
    /// before its mirror starts.
    fn start(s: StoreSpec<'_>, entries: &[&str]) -> StoreHost {
        StoreHost::started(s, entries, "start")
    }

    /// As [`start`](StoreHost::start), with `shmstore mirror ... --store
    /// --json` as its mirror.
    fn start_cli(s: StoreSpec<'_>, entries: &[&str]) -> StoreHost {
        StoreHost::started(s, entries, "start-cli")
    }

    fn started(s: StoreSpec<'_>, entries: &[&str], start: &str) -> StoreHost {
        let port = s.port.to_string();
        let (capacity, max) = (s.capacity.to_string(), s.max.to_string());
        let mut kid = Kid::spawn(
            "store-host",
            &[
                &port,
                s.object,
                s.store,
                s.direction,
                s.origin,
                &capacity,
                &max,
            ],
        );
        let line = kid.expect("shm");
        let ours = std::fs::metadata("/dev/shm").unwrap().dev();
        let theirs: u64 = field(&line, "dev").parse().unwrap();
        assert_ne!(theirs, ours, "host {} shares our /dev/shm", s.origin);
        for e in entries {
            let [key, ty, v] = e.split(':').collect::<Vec<_>>()[..] else {
                panic!("{e}")
            };
            kid.send(&format!("put {key} {ty} {v}"));
            kid.expect("put");
        }
        kid.send(start);
        kid.expect("ready");
        StoreHost(Host { kid })
    }

    /// Creates (or writes) the entry `key` of type `ty` with version `v`.
    fn put(&mut self, key: &str, ty: &str, v: u64) {
        self.ask(&format!("put {key} {ty} {v}"), "put");
    }

    fn rm(&mut self, key: &str) {
        self.ask(&format!("rm {key}"), "rm");
    }

    /// Waits until the entry `key` opens as `ty` with version `v`.
    fn until(&mut self, key: &str, ty: &str, v: u64, ms: u64) -> bool {
        let r = self.ask(&format!("until {key} {ty} {v} {ms}"), "");
        if r.starts_with("reached") {
            return true;
        }
        assert!(
            ms < SLOW,
            "{key} never reached {ty} {v} ({r}); the host's log:\n{}",
            self.kid.stderr()
        );
        false
    }

    /// Waits as long as [`until`](StoreHost::until) may for the entry
    /// `key` that `writer` wrote to open as `ty` with version `v`; a failure
    /// shows both hosts' logs.
    fn sees(&mut self, writer: &StoreHost, key: &str, ty: &str, v: u64) {
        let r = self.ask(&format!("until {key} {ty} {v} {SLOW}"), "");
        assert!(
            r.starts_with("reached"),
            "{key} never reached {ty} {v} ({r}); this host's log:\n{}\nthe writer's log:\n{}",
            self.kid.stderr(),
            writer.kid.stderr()
        );
    }

    /// Waits until there is no entry `key`.
    fn gone(&mut self, key: &str, ms: u64) -> bool {
        let r = self.ask(&format!("gone {key} {ms}"), "");
        r.starts_with("reached")
    }

    /// Whether an entry `key` exists and, if so, its type and version:
    /// `-`, or `TYPE VERSION`.
    fn has(&mut self, key: &str) -> String {
        self.ask(&format!("has {key}"), "has")
    }

    fn keys(&mut self) -> Vec<String> {
        let r = self.ask("keys", "keys");
        let mut keys: Vec<String> = r.split_whitespace().map(str::to_owned).collect();
        keys.sort();
        keys
    }

    /// Waits until the mirror's stat `name` is at least `n`.
    fn stat_reaches(&mut self, name: &str, n: u64) -> bool {
        common::eventually(PATIENCE, || self.stat(name) >= n)
    }
}

/// A store test's Redis, object name and store name.
struct StoreTest {
    redis: Redis,
    obj: String,
    seg: Segment,
}

/// `None` without root.
fn store_test(test: &str) -> Option<StoreTest> {
    can_run().then(|| StoreTest {
        redis: Redis::start(),
        obj: object(test),
        seg: Segment::new(&format!("mirror-{test}")),
    })
}

impl StoreTest {
    /// A host mirroring the test's store (64 KiB) in `direction`.
    fn host(&self, direction: &str, origin: &str, entries: &[&str]) -> StoreHost {
        self.host_sized(64 * 1024, direction, origin, entries)
    }

    /// A host whose store never grows past `capacity`.
    fn host_sized(
        &self,
        capacity: usize,
        direction: &str,
        origin: &str,
        entries: &[&str],
    ) -> StoreHost {
        self.host_growing(capacity, capacity, direction, origin, entries)
    }

    /// A host whose store of `capacity` bytes may grow to `max`.
    fn host_growing(
        &self,
        capacity: usize,
        max: usize,
        direction: &str,
        origin: &str,
        entries: &[&str],
    ) -> StoreHost {
        StoreHost::start(
            StoreSpec {
                port: self.redis.port,
                object: &self.obj,
                store: self.seg.name(),
                direction,
                origin,
                capacity,
                max,
            },
            entries,
        )
    }
}

/// `(type, version)` of entry `key`, if it opens as one of the test types.
fn entry_version(store: &Store, key: &str) -> Option<(&'static str, u64)> {
    if let Ok(e) = store.get::<Config>(key) {
        return Some(("config", e.snapshot().unwrap().version));
    }
    if let Ok(e) = store.get::<OtherConfig>(key) {
        return Some(("other", e.snapshot().unwrap().version));
    }
    if let Ok(e) = store.get::<Big>(key) {
        let v = e.snapshot().unwrap();
        assert_eq!(v.data, [v.version; 126], "a mixed value");
        return Some(("big", v.version));
    }
    None
}

fn put_entry(store: &Store, key: &str, ty: &str, v: u64) {
    fn put<T: Versioned>(store: &Store, key: &str, v: u64) {
        let e = store.get_or_create::<T>(key, T::default()).unwrap();
        *e.lock().unwrap() = T::of(v);
    }
    match ty {
        "config" => put::<Config>(store, key, v),
        "other" => put::<OtherConfig>(store, key, v),
        _ => put::<Big>(store, key, v),
    }
}

fn store_host(s: &StoreSpec<'_>) -> i32 {
    own_dev_shm();
    say(format!(
        "shm dev={}",
        std::fs::metadata("/dev/shm").unwrap().dev()
    ));
    let store = SharedOptions::new()
        .max_capacity(s.max)
        .create_store(s.store, s.capacity)
        .unwrap();
    let mut mirror = None;
    let mut cli = None;
    let cli_lines = Arc::new(std::sync::Mutex::new(Vec::<String>::new()));
    while let Some(line) = command() {
        let words: Vec<&str> = line.split_whitespace().collect();
        let num = |i: usize| words[i].parse::<u64>().unwrap();
        match words[0] {
            "start" => {
                let origin = s.origin.to_owned();
                let mut opts = MirrorOptions::new(format!("redis://127.0.0.1:{}/", s.port));
                opts.origin(s.origin)
                    .io_timeout(Duration::from_millis(500))
                    .check_interval(Duration::from_millis(200))
                    .max_backoff(Duration::from_millis(400))
                    .on_event(move |e| eprintln!("[{origin}] {e}"));
                mirror = Some(
                    match s.direction {
                        "publish" => opts.publish_store(s.object, &store),
                        "subscribe" => opts.subscribe_store(s.object, &store),
                        _ => opts.both_store(s.object, &store),
                    }
                    .unwrap(),
                );
                say("ready");
            }
            "start-cli" => {
                let url = format!("redis://127.0.0.1:{}/", s.port);
                let mut cmd = Command::new(cli_path());
                cmd.args(["mirror", s.direction, s.store, "--store", "--json"])
                    .args(["--object", s.object, "--origin", s.origin])
                    .env("SHMSTORE_REDIS_URL", url);
                cli = Some(spawn_collecting(cmd, &cli_lines));
                say("ready");
            }
            "printed" => say(printed(&cli_lines, &words[1..])),
            "put" => {
                put_entry(&store, words[1], words[2], num(3));
                say("put");
            }
            "rm" => {
                store.remove(words[1]).unwrap();
                say("rm");
            }
            "until" | "gone" => {
                let gone = words[0] == "gone";
                let (key, ms) = (words[1], num(words.len() - 1));
                let deadline = Instant::now() + Duration::from_millis(ms);
                loop {
                    let g = store.generation();
                    let now = entry_version(&store, key);
                    let reached = if gone {
                        now.is_none() && !store.contains(key).unwrap()
                    } else {
                        now == Some((words[2], num(3)))
                    };
                    if reached {
                        say("reached");
                        break;
                    }
                    if Instant::now() > deadline {
                        say(format!("timeout now={now:?}"));
                        break;
                    }
                    // Entries' writes do not move the store's generation:
                    // look again after a moment either way.
                    store.wait_for_change(g, Duration::from_millis(10)).unwrap();
                }
            }
            "has" => match entry_version(&store, words[1]) {
                Some((ty, v)) => say(format!("has {ty} {v}")),
                None if store.contains(words[1]).unwrap() => say("has ?"),
                None => say("has -"),
            },
            "keys" => {
                let keys: Vec<String> = store
                    .entries()
                    .unwrap()
                    .into_iter()
                    .map(|e| e.key)
                    .collect();
                store.check().unwrap();
                say(format!("keys {}", keys.join(" ")));
            }
            "stats" => say_stats(&mirror.as_ref().unwrap().stats()),
            "refusal" => say_refusal(mirror.as_ref().unwrap().last_refusal()),
            "quit" => break,
            other => panic!("unknown command {other}"),
        }
    }
    drop(mirror);
    drop(cli);
    0
}

/// A publisher's whole store reaches a subscriber on another host: entries
/// of two types created there (opened with `get::<T>`), values following,
/// a removal removing, a local entry the publisher never had removed, and
/// a host that joins late getting the current set.
#[test]
fn a_whole_store_follows_its_publisher() {
    let Some(t) = store_test("store") else {
        return;
    };
    let mut a = t.host(
        "publish",
        "host-a",
        &["a:config:1", "b:other:2", "c:config:3"],
    );
    let mut b = t.host("subscribe", "host-b", &["only-b:config:9"]);
    assert!(b.until("a", "config", 1, SLOW));
    assert!(b.until("b", "other", 2, SLOW));
    assert!(b.until("c", "config", 3, SLOW));
    // Values follow, one entry at a time.
    a.put("a", "config", 5);
    a.put("b", "other", 6);
    assert!(b.until("a", "config", 5, SLOW));
    assert!(b.until("b", "other", 6, SLOW));
    // A removal, a creation.
    a.rm("c");
    a.put("d/new", "config", 7);
    assert!(b.gone("c", SLOW), "c was not removed on B");
    assert!(b.until("d/new", "config", 7, SLOW));
    // The subscribed store follows the publisher's entry set.
    assert!(b.gone("only-b", SLOW), "B kept an entry A never had");
    assert_eq!(b.keys(), ["a", "b", "d/new"]);
    // The counters move just after the entry does: wait for them.
    assert!(b.stat_reaches("created", 4));
    assert!(b.stat_reaches("removed", 2));
    assert_eq!(b.stat("refused"), 0, "{}", b.refusal());

    // A late joiner gets the current set.
    let mut c = t.host("subscribe", "host-c", &[]);
    assert!(c.until("a", "config", 5, SLOW));
    assert!(c.until("b", "other", 6, SLOW));
    assert!(c.until("d/new", "config", 7, SLOW));
    assert_eq!(c.keys(), ["a", "b", "d/new"]);
    assert_eq!(c.stat("refused"), 0, "{}", c.refusal());
    // And both keep following.
    a.put("a", "config", 8);
    assert!(b.until("a", "config", 8, SLOW));
    assert!(c.until("a", "config", 8, SLOW));
}

/// A subscriber's store far smaller than its publisher's grows to take
/// every entry, also one larger than the store was made: nothing refused.
#[test]
fn a_small_subscriber_store_grows_to_take_its_publishers_entries() {
    let Some(t) = store_test("store-grows") else {
        return;
    };
    let entries: Vec<String> = (0..24).map(|i| format!("big/{i}:big:{i}")).collect();
    let entries: Vec<&str> = entries.iter().map(String::as_str).collect();
    let mut a = t.host("publish", "host-a", &entries);
    // 512 bytes: not even one `Big` (1 KiB) fits before it grows.
    let mut b = t.host_growing(512, 1 << 20, "subscribe", "host-b", &[]);
    for i in 0..24 {
        assert!(b.until(&format!("big/{i}"), "big", i, SLOW), "big/{i}");
    }
    a.put("big/0", "big", 100);
    assert!(b.until("big/0", "big", 100, SLOW));
    assert_eq!(b.keys().len(), 24);
    assert_eq!(b.stat("refused"), 0, "{}", b.refusal());
}

/// `shmstore mirror subscribe STORE --store --json`, without a type: the
/// publisher's entries are created with their types, follow, and go;
/// each event is one JSON line.
#[test]
fn the_command_mirrors_a_whole_store_and_prints_json_events() {
    let Some(t) = store_test("store-cli") else {
        return;
    };
    let mut a = t.host("publish", "host-a", &["a:config:1", "b:other:2"]);
    let mut b = StoreHost::start_cli(
        StoreSpec {
            port: t.redis.port,
            object: &t.obj,
            store: t.seg.name(),
            direction: "subscribe",
            origin: "host-b",
            capacity: 64 * 1024,
            max: 64 * 1024,
        },
        &[],
    );
    assert!(b.until("a", "config", 1, SLOW));
    assert!(b.until("b", "other", 2, SLOW));
    a.put("a", "config", 3);
    assert!(b.until("a", "config", 3, SLOW));
    a.rm("b");
    assert!(b.gone("b", SLOW), "b was not removed through the command");
    for words in [
        r#""event":"started" "store":"#,
        r#""event":"created" "entry":"a" "origin":"host-a""#,
        r#""event":"applied" "entry":"a""#,
        r#""event":"removed" "entry":"b""#,
    ] {
        let said = b.ask(&format!("printed {words}"), "printed");
        assert_ne!(said, "-", "the command printed no line with {words}");
        assert!(said.starts_with('{') && said.ends_with('}'), "{said}");
    }
}

/// An entry whose local type differs is refused and left alone; the
/// others follow.
#[test]
fn a_store_entry_of_another_local_type_is_refused_the_others_follow() {
    let Some(t) = store_test("store-type") else {
        return;
    };
    let mut b = t.host("subscribe", "host-b", &["shared:other:4"]);
    let mut a = t.host("publish", "host-a", &["shared:config:1", "plain:config:2"]);
    assert!(b.until("plain", "config", 2, SLOW));
    assert!(b.stat_reaches("refused", 1));
    let why = b.refusal();
    assert!(
        why.contains("OtherConfig") && why.contains("`Config`"),
        "refusal: {why}"
    );
    a.put("shared", "config", 10);
    a.put("plain", "config", 11);
    assert!(b.until("plain", "config", 11, SLOW));
    assert_eq!(
        b.has("shared"),
        "other 4",
        "B's entry of another type was written"
    );
}

/// A subscriber whose store has no room for an entry says so, keeps the
/// rest following, and creates it once room appears.
#[test]
fn a_full_subscriber_store_reports_the_entry_and_creates_it_when_room_appears() {
    let Some(t) = store_test("store-full") else {
        return;
    };
    let mut a = t.host("publish", "host-a", &["small:config:1", "big:big:2"]);
    // A publisher that connects removes from Redis every key its store
    // lacks: B's `pad` must come after A has put its store there.
    let hash = format!("shmstore:store:{}", t.obj);
    let published = common::eventually(PATIENCE, || {
        let full: Option<String> = redis::cmd("HGET")
            .arg(&hash)
            .arg("#full")
            .query(&mut t.redis.con())
            .unwrap();
        full.is_some()
    });
    assert!(published, "A never put its whole store in Redis");
    // Room for `small` and one `big`: B's own `pad` takes the place of A's
    // `big` until B removes it.
    let mut b = t.host_sized(FULL_CAPACITY, "both", "host-b", &["pad:big:0"]);
    assert!(b.until("small", "config", 1, SLOW));
    assert!(b.stat_reaches("refused", 1));
    let why = b.refusal();
    assert!(
        why.contains("store full") && why.contains("big"),
        "refusal: {why}"
    );
    assert_eq!(b.has("big"), "-");
    // The rest keeps working.
    a.put("small", "config", 3);
    assert!(b.until("small", "config", 3, SLOW));
    assert_eq!(b.has("pad"), "big 0");
    // Room appears: `big` comes.
    b.rm("pad");
    assert!(b.until("big", "big", 2, SLOW));
    a.put("big", "big", 4);
    assert!(b.until("big", "big", 4, SLOW));
}

/// A capacity with room for a `Config` entry and one `Big` entry, not two.
const FULL_CAPACITY: usize = 2 * 1024 + 256;

/// A record of a `Config` entry as a publisher writes it into a store's
/// hash: `REV\nGEN\nORIGIN\nFINGERPRINT\nSIZE\nALIGN\nTYPE\nSCHEMA_LEN\n`,
/// the schema, the value; `size` and `schema` as given (to forge them).
fn store_record(rev: u64, size: usize, align: usize, schema: &[u8], value: &[u8]) -> Vec<u8> {
    let mut b = format!(
        "{rev}\n1\nforger\n{}\n{size}\n{align}\nConfig\n{}\n",
        Config::FINGERPRINT,
        schema.len()
    )
    .into_bytes();
    b.extend_from_slice(schema);
    b.extend_from_slice(value);
    b
}

/// Forged fields in a store's hash and forged announcements on its
/// channel: refused, and nothing written beyond what valid records do;
/// thousands of valid-looking fake entries create at most what fits.
#[test]
fn forged_store_records_are_refused_and_fake_entries_create_at_most_what_fits() {
    let Some(t) = store_test("store-forged") else {
        return;
    };
    let hash = format!("shmstore:store:{}", t.obj);
    let schema = shmstore::Schema::of::<Config>().encode();
    let good = |v: u64| {
        let mut value = v.to_ne_bytes().to_vec();
        value.extend_from_slice(&(v * 3).to_ne_bytes());
        value
    };
    let hset = |field: &[u8], value: &[u8]| {
        let _: () = redis::cmd("HSET")
            .arg(&hash)
            .arg(field)
            .arg(value)
            .query(&mut t.redis.con())
            .unwrap();
    };
    // One valid entry, and forged ones of every kind.
    hset(b"valid", &store_record(5, 16, 8, &schema, &good(1)));
    hset(b"bad key!", &store_record(5, 16, 8, &schema, &good(2)));
    hset(
        b"huge",
        &store_record(5, 1 << 30, 8, &schema, &vec![7u8; 200_000]),
    );
    hset(b"short", &store_record(5, 16, 8, &schema, &good(3)[..10]));
    hset(
        b"bad-schema",
        &store_record(5, 16, 8, b"SHSCgarbage", &good(4)),
    );
    let u32_schema = shmstore::Schema::of::<u32>().encode();
    hset(
        b"other-schema",
        &store_record(5, 16, 8, &u32_schema, &good(5)),
    );
    hset(b"bad-align", &store_record(5, 16, 3, &schema, &good(6)));
    hset(b"garbage", b"\xff\xfe\n\n\n");
    hset(b"#rev", b"5");
    let mut b = t.host_sized(16 * 1024, "subscribe", "host-b", &["mine:config:9"]);
    assert!(b.until("valid", "config", 1, SLOW));
    assert!(b.stat_reaches("refused", 7));
    // Announcements: a bad key, a removal of an entry B does not have, a
    // huge value, garbage.
    let announce = |msg: &[u8]| t.redis.announce_store(&t.obj, msg);
    announce(b"bad key\n6\n-\nforger");
    announce(b"nothing-here\n6\n-\nforger");
    let mut huge = b"valid\n".to_vec();
    huge.extend(store_record(6, 1 << 20, 8, &schema, &vec![1u8; 1 << 20]));
    announce(&huge);
    announce(b"\xff\n\n");
    announce(b"");
    assert!(b.stat_reaches("refused", 12));
    // Nothing but the valid entry came; B's own entry is untouched (no
    // publisher completed the hash: nothing local is removed).
    assert_eq!(b.keys(), ["mine", "valid"]);
    assert_eq!(b.has("valid"), "config 1");
    assert_eq!(b.has("mine"), "config 9");
    assert_eq!(b.stat("created"), 1);
    assert_eq!(b.stat("removed"), 0);

    // Thousands of valid-looking fake entries: what fits is created, the
    // rest refused as "store full"; the store stays consistent.
    let mut pipe = redis::pipe();
    for i in 0..3000 {
        pipe.cmd("HSET")
            .arg(&hash)
            .arg(format!("fake-{i}"))
            .arg(store_record(7, 16, 8, &schema, &good(i)))
            .ignore();
    }
    pipe.cmd("HSET").arg(&hash).arg("#rev").arg("7").ignore();
    let _: () = pipe.query(&mut t.redis.con()).unwrap();
    assert!(b.stat_reaches("refused", 100));
    // A rescan of the hash refuses the forged fields above again, so the
    // last refusal may be one of those for a moment: look a few times.
    let full = common::eventually(PATIENCE, || b.refusal().contains("store full"));
    assert!(full, "refusal: {}", b.refusal());
    let keys = b.keys();
    assert!(
        keys.len() > 10 && keys.len() * 256 <= 16 * 1024,
        "{} entries in a 16 KiB store",
        keys.len()
    );
    assert_eq!(b.has("mine"), "config 9");
    assert_eq!(b.has("valid"), "config 1");
}

/// `both_store`: creations, values and removals made on either host reach
/// the other, and the hosts converge.
#[test]
fn both_stores_converge_on_creations_values_and_removals() {
    let Some(t) = store_test("store-both") else {
        return;
    };
    let mut a = t.host("both", "host-a", &["from-a:config:1"]);
    let mut b = t.host("both", "host-b", &["from-b:other:2"]);
    b.sees(&a, "from-a", "config", 1);
    a.sees(&b, "from-b", "other", 2);
    // Values either way.
    b.put("from-a", "config", 3);
    a.sees(&b, "from-a", "config", 3);
    a.put("from-b", "other", 4);
    b.sees(&a, "from-b", "other", 4);
    // Creations and removals either way.
    a.put("new", "config", 5);
    b.sees(&a, "new", "config", 5);
    b.rm("from-a");
    assert!(a.gone("from-a", SLOW), "B's removal did not reach A");
    a.rm("new");
    assert!(b.gone("new", SLOW), "A's removal did not reach B");
    // Both write one entry at once: they converge on one value.
    for v in 10..30 {
        a.put("from-b", "other", v);
        b.put("from-b", "other", 100 + v);
    }
    let settled = common::eventually(PATIENCE, || {
        std::thread::sleep(Duration::from_millis(300));
        a.has("from-b") == b.has("from-b")
    });
    assert!(
        settled,
        "A has {}, B has {}",
        a.has("from-b"),
        b.has("from-b")
    );
    assert_eq!(a.keys(), ["from-b"]);
    assert_eq!(b.keys(), ["from-b"]);
    // Nothing echoes: the store's revision stops moving.
    let rev = || redis_rev(&t.redis, &t.obj);
    let mut last = rev();
    assert!(common::eventually(PATIENCE, || {
        std::thread::sleep(Duration::from_millis(300));
        let now = rev();
        std::mem::replace(&mut last, now.clone()) == now
    }));
}

/// A `both_store` host whose connection drops puts its entries in Redis
/// again when it comes back (Redis may have lost them), but not over a
/// record newer than it has seen: another host's write made meanwhile
/// stays, where the older local value used to overwrite it for every host.
#[test]
fn a_both_store_host_back_from_a_lost_connection_keeps_a_newer_record() {
    let Some(t) = store_test("store-again") else {
        return;
    };
    let mut a = t.host("both", "host-a", &["from-a:config:1"]);
    let hash = format!("shmstore:store:{}", t.obj);
    let mut con = t.redis.con();
    let record = |con: &mut redis::Connection| -> Option<Vec<u8>> {
        redis::cmd("HGET")
            .arg(&hash)
            .arg("from-a")
            .query(con)
            .unwrap()
    };
    assert!(
        common::eventually(PATIENCE, || record(&mut con).is_some()),
        "A never put from-a in Redis"
    );
    // Until A has heard its own record (its publisher idles meanwhile).
    std::thread::sleep(Duration::from_millis(500));
    // Another host's newer write, as Redis would hold it, that A has not
    // heard of: a later revision, another origin, another last byte.
    let mine = record(&mut con).unwrap();
    let text = String::from_utf8_lossy(&mine);
    let (rev, rest) = text.split_once('\n').unwrap();
    let (generation, rest) = rest.split_once('\n').unwrap();
    let (origin, _) = rest.split_once('\n').unwrap();
    assert_eq!(origin, "host-a");
    let at = rev.len() + 1 + generation.len() + 1 + origin.len() + 1;
    let mut newer =
        format!("{}\n7\nhost-c\n", rev.parse::<u64>().unwrap() + 1_000_000).into_bytes();
    newer.extend_from_slice(&mine[at..]);
    *newer.last_mut().unwrap() ^= 0xff;
    let _: () = redis::cmd("HSET")
        .arg(&hash)
        .arg("from-a")
        .arg(&newer)
        .query(&mut con)
        .unwrap();
    // Drop A's publishing connection (the one that last sent a PING or a
    // write; its subscriber's last read `#rev`).
    let before = a.stat("published") + a.stat("unchanged");
    let clients: String = redis::cmd("CLIENT").arg("LIST").query(&mut con).unwrap();
    let publishing: Vec<&str> = clients
        .lines()
        .filter(|l| l.contains(" cmd=ping ") || l.contains(" cmd=evalsha "))
        .filter_map(|l| l.split_whitespace().find_map(|f| f.strip_prefix("id=")))
        .collect();
    assert_eq!(publishing.len(), 1, "one publishing connection: {clients}");
    let _: () = redis::cmd("CLIENT")
        .arg("KILL")
        .arg("ID")
        .arg(publishing[0])
        .query(&mut con)
        .unwrap();
    assert!(a.stat_reaches("disconnects", 1), "A did not see the cut");
    // Back, it has put its entry again (or left it): Redis answered.
    assert!(
        common::eventually(PATIENCE, || a.stat("published") + a.stat("unchanged")
            > before),
        "A did not put its entries again"
    );
    let now = record(&mut con).unwrap_or_default();
    assert!(
        now == newer,
        "A's older value replaced the newer record: {:?}",
        String::from_utf8_lossy(&now)
    );
}

fn redis_rev(redis: &Redis, obj: &str) -> Option<Vec<u8>> {
    redis::cmd("HGET")
        .arg(format!("shmstore:store:{obj}"))
        .arg("#rev")
        .query(&mut redis.con())
        .unwrap()
}
