//! A throwaway Redis Sentinel setup on loopback, for the failover example
//! and tests: a primary and a replica that require a password, with an ACL
//! user for mirrors that may touch only shmstore's keys and channels, and
//! three sentinels that watch them (quorum 2, a primary counts as down
//! after 1 s). Everything runs from a scratch folder and is killed when the
//! [`Setup`] drops (or when the program that started it dies).
//! Included with `#[path]` (needs `redis-server` and `redis-sentinel`).

#![allow(dead_code)]

use std::io::{BufRead, BufReader, Write};
use std::net::{TcpListener, TcpStream};
use std::os::unix::process::CommandExt;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// The servers' own password (the default user's, `requirepass`).
pub const ADMIN_PASSWORD: &str = "admin-pw-7f3a";
/// The mirrors' ACL user and its password.
pub const USER: &str = "mirror";
pub const PASSWORD: &str = "mirror-pw-91c2";
/// The master's name in the sentinels' configuration.
pub const MASTER: &str = "main";

/// What the mirrors' user may do: shmstore's keys and channels, and the
/// commands a mirror runs (its scripts' commands included). The README's
/// Sentinel section gives this same line.
pub const ACL: &str = "on >mirror-pw-91c2 resetchannels ~shmstore:* &shmstore:* \
                       +@read +@write +@pubsub +@scripting +@connection +role +time";

/// A child process, killed and reaped when this drops.
struct Proc(Child);

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// One server or sentinel: its port, config file and process (if up).
struct Node {
    port: u16,
    conf: PathBuf,
    sentinel: bool,
    proc: Option<Proc>,
}

/// A primary, a replica and three sentinels.
pub struct Setup {
    dir: PathBuf,
    servers: Vec<Node>,
    sentinels: Vec<Node>,
    /// With TLS: the primary's TLS port (besides its plain one) and the
    /// CA certificate (PEM) its certificate is signed by.
    tls: Option<(u16, Vec<u8>)>,
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Sends one inline command and reads its reply's lines (those of the
/// `AUTH` before it first, with `auth`). The reply ends where the answer to
/// a `PING` sent after it starts: sentinels do not know `QUIT`, and would
/// keep the connection open until the read timeout.
fn ask(port: u16, auth: Option<&str>, cmd: &str) -> Option<Vec<String>> {
    const END: &str = "shmstore-setup-end";
    let mut s = TcpStream::connect(("127.0.0.1", port)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(2))).ok()?;
    let mut text = String::new();
    if let Some(pw) = auth {
        text.push_str(&format!("AUTH {pw}\r\n"));
    }
    text.push_str(cmd);
    text.push_str(&format!("\r\nPING {END}\r\nQUIT\r\n"));
    s.write_all(text.as_bytes()).ok()?;
    let mut lines: Vec<String> = BufReader::new(s)
        .lines()
        .map_while(Result::ok)
        .take_while(|l| l != END)
        .collect();
    // The PING's answer is a bulk string: its length line came first.
    if lines.last() == Some(&format!("${}", END.len())) {
        lines.pop();
    }
    Some(lines)
}

/// Makes a CA and a server certificate for 127.0.0.1 signed by it in
/// `dir` (`ca.pem`, `server.pem`, `server.key`) with `openssl`; the CA's
/// certificate.
fn make_certificates(dir: &std::path::Path) -> Vec<u8> {
    let openssl = |args: &[&str]| {
        let out = Command::new("openssl")
            .args(args)
            .current_dir(dir)
            .output()
            .expect("running openssl (apt-get install -y openssl)");
        assert!(
            out.status.success(),
            "openssl {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    };
    let key = ["-newkey", "rsa:2048", "-nodes"];
    openssl(
        &[
            &["req", "-x509"][..],
            &key,
            &[
                "-keyout",
                "ca.key",
                "-out",
                "ca.pem",
                "-days",
                "2",
                "-subj",
                "/CN=shmstore test CA",
            ],
        ]
        .concat(),
    );
    openssl(
        &[
            &["req"][..],
            &key,
            &[
                "-keyout",
                "server.key",
                "-out",
                "server.csr",
                "-subj",
                "/CN=127.0.0.1",
            ],
        ]
        .concat(),
    );
    std::fs::write(dir.join("ext"), "subjectAltName=IP:127.0.0.1\n").unwrap();
    openssl(&[
        "x509",
        "-req",
        "-in",
        "server.csr",
        "-CA",
        "ca.pem",
        "-CAkey",
        "ca.key",
        "-CAcreateserial",
        "-out",
        "server.pem",
        "-days",
        "2",
        "-extfile",
        "ext",
    ]);
    std::fs::read(dir.join("ca.pem")).unwrap()
}

/// The primary's port, as the sentinel on `port` names it.
fn named_by(port: u16) -> Option<u16> {
    let lines = ask(
        port,
        None,
        &format!("SENTINEL GET-MASTER-ADDR-BY-NAME {MASTER}"),
    )?;
    // *2, $9, 127.0.0.1, $5, PORT
    lines.get(4).and_then(|p| p.parse().ok())
}

impl Setup {
    /// Starts everything and waits until the replica is in sync and every
    /// sentinel knows the replica and the other sentinels.
    pub fn start() -> Setup {
        Setup::with(true, false)
    }

    /// The primary alone, with its password and ACL user (no replica, no
    /// sentinels): see [`direct_url`](Setup::direct_url).
    pub fn single() -> Setup {
        Setup::with(false, false)
    }

    /// [`single`](Setup::single), also listening for TLS (see
    /// [`tls_url`](Setup::tls_url)) with a certificate for 127.0.0.1 from a
    /// CA made for the run ([`ca`](Setup::ca)).
    pub fn single_tls() -> Setup {
        Setup::with(false, true)
    }

    fn with(sentinels: bool, tls: bool) -> Setup {
        for program in ["redis-server", "redis-sentinel"] {
            if Command::new(program)
                .arg("--version")
                .stdout(Stdio::null())
                .status()
                .is_err()
            {
                eprintln!(
                    "cannot run {program}: install it (apt-get install -y redis-server \
                     redis-sentinel)"
                );
                std::process::exit(1);
            }
        }
        let dir = std::env::temp_dir().join(format!(
            "shmstore-sentinel-{}-{}",
            std::process::id(),
            free_port()
        ));
        std::fs::create_dir_all(&dir).unwrap();
        let mut setup = Setup {
            dir,
            servers: Vec::new(),
            sentinels: Vec::new(),
            tls: None,
        };
        let mut tls_conf = String::new();
        if tls {
            let port = free_port();
            let ca = make_certificates(&setup.dir);
            let d = setup.dir.display();
            tls_conf = format!(
                "tls-port {port}\ntls-cert-file {d}/server.pem\ntls-key-file {d}/server.key\n\
                 tls-ca-cert-file {d}/ca.pem\ntls-auth-clients no\n"
            );
            setup.tls = Some((port, ca));
        }
        let primary = free_port();
        let replicas: &[Option<u16>] = if sentinels {
            &[None, Some(primary)]
        } else {
            &[None]
        };
        for &replica_of in replicas {
            let port = if replica_of.is_none() {
                primary
            } else {
                free_port()
            };
            let conf = setup.dir.join(format!("redis-{port}.conf"));
            let mut text = format!(
                "port {port}\nbind 127.0.0.1\nsave \"\"\nappendonly no\ndir {}\n\
                 requirepass {ADMIN_PASSWORD}\nmasterauth {ADMIN_PASSWORD}\n\
                 user {USER} {ACL}\nrepl-diskless-sync-delay 0\n",
                setup.dir.display()
            );
            if let Some(p) = replica_of {
                text.push_str(&format!("replicaof 127.0.0.1 {p}\n"));
            } else {
                text.push_str(&tls_conf);
            }
            std::fs::write(&conf, text).unwrap();
            setup.servers.push(Node {
                port,
                conf,
                sentinel: false,
                proc: None,
            });
        }
        for _ in 0..if sentinels { 3 } else { 0 } {
            let port = free_port();
            let conf = setup.dir.join(format!("sentinel-{port}.conf"));
            let text = format!(
                "port {port}\nbind 127.0.0.1\ndir {}\n\
                 sentinel monitor {MASTER} 127.0.0.1 {primary} 2\n\
                 sentinel auth-pass {MASTER} {ADMIN_PASSWORD}\n\
                 sentinel down-after-milliseconds {MASTER} 1000\n\
                 sentinel failover-timeout {MASTER} 5000\n\
                 sentinel parallel-syncs {MASTER} 1\n",
                setup.dir.display()
            );
            std::fs::write(&conf, text).unwrap();
            setup.sentinels.push(Node {
                port,
                conf,
                sentinel: true,
                proc: None,
            });
        }
        for i in 0..setup.servers.len() {
            Setup::up(&mut setup.servers[i]);
        }
        if sentinels {
            setup.wait_synced();
            for i in 0..setup.sentinels.len() {
                Setup::up(&mut setup.sentinels[i]);
            }
            setup.wait_known();
        }
        setup
    }

    fn up(node: &mut Node) {
        assert!(node.proc.is_none());
        let mut cmd = Command::new(if node.sentinel {
            "redis-sentinel"
        } else {
            "redis-server"
        });
        cmd.arg(&node.conf)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        // SAFETY: the closure runs in the child between fork and exec, where
        // only async-signal-safe calls are allowed: prctl is one, and it
        // touches no memory. The server dies with the program that started it.
        unsafe {
            cmd.pre_exec(|| {
                libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL as libc::c_ulong);
                Ok(())
            });
        }
        node.proc = Some(Proc(cmd.spawn().expect("starting a Redis server")));
        let deadline = Instant::now() + Duration::from_secs(10);
        let auth = (!node.sentinel).then_some(ADMIN_PASSWORD);
        while Instant::now() < deadline {
            if let Some(lines) = ask(node.port, auth, "PING") {
                if lines.iter().any(|l| l == "+PONG") {
                    return;
                }
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        panic!("a Redis server on port {} did not answer", node.port);
    }

    /// Until some replica of the current primary has a working link to it.
    pub fn wait_synced(&self) {
        let deadline = Instant::now() + Duration::from_secs(30);
        while Instant::now() < deadline {
            for n in self.servers.iter().filter(|n| n.proc.is_some()) {
                let lines = ask(n.port, Some(ADMIN_PASSWORD), "INFO replication");
                let lines = lines.unwrap_or_default();
                if lines.iter().any(|l| l.trim() == "role:slave")
                    && lines.iter().any(|l| l.trim() == "master_link_status:up")
                {
                    return;
                }
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        panic!("no replica got in sync with the primary within 30 s");
    }

    /// Until every sentinel knows a replica and two other sentinels.
    fn wait_known(&self) {
        let deadline = Instant::now() + Duration::from_secs(30);
        'wait: while Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(100));
            for s in &self.sentinels {
                let info = ask(s.port, None, "INFO sentinel").unwrap_or_default();
                let ready = info.iter().any(|l| {
                    l.contains(&format!("name={MASTER},status=ok"))
                        && l.contains("slaves=1,sentinels=3")
                });
                if !ready {
                    continue 'wait;
                }
            }
            return;
        }
        panic!("the sentinels did not find the replica and each other within 30 s");
    }

    /// `redis+sentinel://USER:PASSWORD@127.0.0.1:P1,127.0.0.1:P2,127.0.0.1:P3/main`.
    pub fn url(&self, user: &str, password: &str) -> String {
        let hosts: Vec<String> = self
            .sentinels
            .iter()
            .map(|s| format!("127.0.0.1:{}", s.port))
            .collect();
        format!(
            "redis+sentinel://{user}:{password}@{}/{MASTER}",
            hosts.join(",")
        )
    }

    /// `redis://USER:PASSWORD@127.0.0.1:PORT/` of the (first) primary;
    /// `USER` may be empty (the legacy password alone).
    pub fn direct_url(&self, user: &str, password: &str) -> String {
        format!(
            "redis://{user}:{password}@127.0.0.1:{}/",
            self.servers[0].port
        )
    }

    /// `rediss://USER:PASSWORD@127.0.0.1:TLS_PORT/` (with `single_tls`).
    pub fn tls_url(&self, user: &str, password: &str) -> String {
        let (port, _) = self.tls.as_ref().expect("a setup with TLS");
        format!("rediss://{user}:{password}@127.0.0.1:{port}/")
    }

    /// The CA certificate (PEM) the TLS port's certificate is signed by.
    pub fn ca(&self) -> Vec<u8> {
        self.tls.as_ref().expect("a setup with TLS").1.clone()
    }

    /// The port of the (first) primary.
    pub fn first_port(&self) -> u16 {
        self.servers[0].port
    }

    /// The sentinels' ports, comma-separated.
    pub fn sentinel_ports(&self) -> String {
        let ports: Vec<String> = self.sentinels.iter().map(|s| s.port.to_string()).collect();
        ports.join(",")
    }

    /// The port of the primary, as the first sentinel that answers names it.
    pub fn primary(&self) -> Option<u16> {
        self.sentinels.iter().find_map(|s| named_by(s.port))
    }

    /// The port of a server that is up and is not `primary`.
    pub fn replica(&self, primary: u16) -> Option<u16> {
        self.servers
            .iter()
            .find(|n| n.port != primary && n.proc.is_some())
            .map(|n| n.port)
    }

    /// Cuts the replica on `port` off its primary (it cannot log in
    /// again: its `masterauth` is made wrong), or lets it back. A cut
    /// replica falls behind: what the primary acknowledges meanwhile, a
    /// failover loses. (Stopping the replica would not do: what the
    /// primary sent waits in the socket, and a stopped replica reads it
    /// all when it goes on, even after the primary died.)
    pub fn cut(&self, port: u16, cut: bool) {
        let pw = if cut {
            "not-the-password"
        } else {
            ADMIN_PASSWORD
        };
        let reply = self.admin(port, &format!("CONFIG SET masterauth {pw}"));
        assert!(
            reply.iter().filter(|l| *l == "+OK").count() >= 2,
            "{reply:?}"
        );
        if cut {
            self.admin(port, "CLIENT KILL TYPE master");
        }
    }

    /// Kills (SIGKILL) the server on `port`.
    pub fn kill(&mut self, port: u16) {
        let n = self.servers.iter_mut().find(|n| n.port == port).unwrap();
        n.proc = None;
    }

    /// Starts the server on `port` again, once no sentinel names it as
    /// the primary any more (the sentinels then make it a replica of the
    /// current primary, within about a second). Restarted sooner, a killed
    /// primary comes back as an empty primary that some sentinels still
    /// name, and clients may write there until it is made a replica.
    pub fn restart(&mut self, port: u16) {
        let deadline = Instant::now() + Duration::from_secs(30);
        while self
            .sentinels
            .iter()
            .any(|s| named_by(s.port) == Some(port))
        {
            assert!(Instant::now() < deadline, "the sentinels still name {port}");
            std::thread::sleep(Duration::from_millis(20));
        }
        let n = self.servers.iter_mut().find(|n| n.port == port).unwrap();
        Setup::up(n);
    }

    /// Waits until a server other than `old` is the primary: when it
    /// says so itself (`ROLE`), which is the moment the sentinels' leader
    /// promoted it, before any sentinel names it to clients. Its port and
    /// that moment (within 5 ms).
    pub fn wait_promotion(&self, old: u16, timeout: Duration) -> Option<(u16, Instant)> {
        let deadline = Instant::now() + timeout;
        while Instant::now() < deadline {
            for n in self
                .servers
                .iter()
                .filter(|n| n.port != old && n.proc.is_some())
            {
                let reply = self.admin(n.port, "ROLE");
                // +OK (AUTH), *3, $6, master, ...
                if reply.get(3).map(String::as_str) == Some("master") {
                    return Some((n.port, Instant::now()));
                }
            }
            std::thread::sleep(Duration::from_millis(5));
        }
        None
    }

    /// Waits until a sentinel names `primary`; when it first did (within
    /// 5 ms).
    pub fn wait_named(&self, primary: u16, timeout: Duration) -> Option<Instant> {
        let deadline = Instant::now() + timeout;
        while Instant::now() < deadline {
            if self
                .sentinels
                .iter()
                .any(|s| named_by(s.port) == Some(primary))
            {
                return Some(Instant::now());
            }
            std::thread::sleep(Duration::from_millis(5));
        }
        None
    }

    /// Runs `cmd` (inline) on the server on `port` as the admin; its reply
    /// lines.
    pub fn admin(&self, port: u16, cmd: &str) -> Vec<String> {
        ask(port, Some(ADMIN_PASSWORD), cmd).unwrap_or_default()
    }
}

impl Drop for Setup {
    fn drop(&mut self) {
        self.sentinels.clear();
        self.servers.clear();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
