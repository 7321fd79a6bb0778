//! How a mirror reaches Redis, and keeps reaching it: the server (one, or
//! the primary that Redis Sentinel names), credentials, timeouts, and the
//! loop that reconnects with growing pauses. Every kind of mirror (a value,
//! a whole store) runs its threads on one [`Runner`].

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant};

use redis::{ErrorKind, RedisError, RedisResult};

use super::{Event, OnEvent, Stats};

/// How often idle threads look at the stop flag.
pub(crate) const TICK: Duration = Duration::from_millis(100);
/// The first pause before reconnecting.
const FIRST_BACKOFF: Duration = Duration::from_millis(50);

/// Where the data lives.
pub(crate) enum Servers {
    /// One Redis server.
    One(redis::ConnectionInfo),
    /// Whichever server the sentinels name as the primary.
    Sentinel(Sentinel),
}

/// A master name, the sentinels that know it, and how to talk to the
/// servers they name.
pub(crate) struct Sentinel {
    /// Host and port of each sentinel, in the order given.
    pub sentinels: Vec<(String, u16)>,
    /// The master's name in the sentinels' configuration.
    pub master: String,
    /// The data servers' credentials, database and TLS (its address is
    /// replaced by the primary's).
    pub data: redis::ConnectionInfo,
    /// The sentinels' own credentials, if they require any.
    pub auth: redis::RedisConnectionInfo,
    /// The hosts a named primary may be on; `None`: any.
    pub allowed: Option<Vec<String>>,
}

/// How to reach Redis, for every thread of one mirror.
pub(crate) struct Link {
    servers: Servers,
    /// The address without its password, for messages.
    shown: String,
    io_timeout: Duration,
    max_backoff: Duration,
    on_event: Option<OnEvent>,
    /// The primary last connected to (Sentinel), to report a failover
    /// once per mirror.
    primary: Mutex<Option<String>>,
    /// The sentinel that answered last: asked first next time.
    first_sentinel: AtomicU64,
    /// A root certificate (PEM) that TLS connections trust instead of the
    /// system's.
    #[cfg_attr(not(feature = "mirror-tls"), allow(dead_code))]
    tls_root: Option<Vec<u8>>,
}

impl Link {
    pub(crate) fn new(
        servers: Servers,
        shown: String,
        io_timeout: Duration,
        max_backoff: Duration,
        on_event: Option<OnEvent>,
        tls_root: Option<Vec<u8>>,
    ) -> Link {
        Link {
            servers,
            shown,
            io_timeout,
            max_backoff,
            on_event,
            primary: Mutex::new(None),
            first_sentinel: AtomicU64::new(0),
            tls_root,
        }
    }

    /// A client for `info`, trusting the root certificate given, if any
    /// (for TLS addresses).
    pub(crate) fn client(&self, info: redis::ConnectionInfo) -> RedisResult<redis::Client> {
        #[cfg(feature = "mirror-tls")]
        if let (Some(pem), redis::ConnectionAddr::TcpTls { .. }) = (&self.tls_root, &info.addr) {
            return redis::Client::build_with_tls(
                info,
                redis::TlsCertificates {
                    client_tls: None,
                    root_cert: Some(pem.clone()),
                },
            );
        }
        redis::Client::open(info)
    }

    /// The address as messages give it (no password).
    pub(crate) fn shown(&self) -> &str {
        &self.shown
    }

    pub(crate) fn event(&self, e: Event) {
        if let Some(f) = &self.on_event {
            f(&e);
        }
    }

    /// A connection to the server that holds the data, with the I/O
    /// timeout set.
    pub(crate) fn connect(&self) -> RedisResult<redis::Connection> {
        match &self.servers {
            Servers::One(info) => self.open(&self.client(info.clone())?),
            Servers::Sentinel(s) => self.connect_primary(s),
        }
    }

    fn open(&self, client: &redis::Client) -> RedisResult<redis::Connection> {
        let con = client.get_connection_with_timeout(self.io_timeout)?;
        con.set_read_timeout(Some(self.io_timeout))?;
        con.set_write_timeout(Some(self.io_timeout))?;
        Ok(con)
    }

    /// Asks the sentinels for the primary, connects to it, and checks that
    /// it says it is the primary (a sentinel may not have noticed a
    /// failover yet).
    fn connect_primary(&self, s: &Sentinel) -> RedisResult<redis::Connection> {
        let (host, port) = self.ask_sentinels(s)?;
        let mut info = s.data.clone();
        info.addr = match info.addr {
            redis::ConnectionAddr::TcpTls {
                insecure,
                tls_params,
                ..
            } => redis::ConnectionAddr::TcpTls {
                host: host.clone(),
                port,
                insecure,
                tls_params,
            },
            _ => redis::ConnectionAddr::Tcp(host.clone(), port),
        };
        let mut con = self.open(&self.client(info)?)?;
        let role: redis::Value = redis::cmd("ROLE").query(&mut con)?;
        let is_primary = match &role {
            redis::Value::Array(items) => {
                items.first().and_then(super::wire::bytes) == Some(b"master")
            }
            _ => false,
        };
        let at = format!("{host}:{port}");
        if !is_primary {
            return Err(RedisError::from((
                ErrorKind::TryAgain,
                "not the primary",
                format!("{at}, which the sentinels name for `{}`, is not its primary (yet)", s.master),
            )));
        }
        let mut last = lock(&self.primary);
        if last.as_deref() != Some(at.as_str()) {
            if let Some(from) = last.replace(at.clone()) {
                self.event(Event::Failover { from, to: at });
            }
        }
        Ok(con)
    }

    /// Waits until `end`, `stop`, or a sentinel's announcement that the
    /// master `s.master` has a new primary; `Err` if no sentinel could be
    /// asked (the caller then just waits).
    fn watch_switch(&self, s: &Sentinel, end: Instant, stop: &AtomicBool) -> RedisResult<()> {
        let i = self.first_sentinel.load(Ordering::Relaxed) as usize % s.sentinels.len();
        let (host, port) = &s.sentinels[i];
        let info = redis::ConnectionInfo {
            addr: redis::ConnectionAddr::Tcp(host.clone(), *port),
            redis: s.auth.clone(),
        };
        let mut con = self.open(&redis::Client::open(info)?)?;
        let mut sub = con.as_pubsub();
        sub.subscribe("+switch-master")?;
        while !stop.load(Ordering::Relaxed) {
            let left = end.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Ok(());
            }
            sub.set_read_timeout(Some(left.min(TICK)))?;
            match sub.get_message() {
                // "MASTER OLD-HOST OLD-PORT NEW-HOST NEW-PORT"
                Ok(msg) => {
                    let text = msg.get_payload_bytes();
                    if text.split(|&b| b == b' ').next() == Some(s.master.as_bytes()) {
                        return Ok(());
                    }
                }
                Err(e) if e.is_timeout() => {}
                Err(e) => return Err(e),
            }
        }
        Ok(())
    }

    /// The primary's host and port, from the first sentinel that knows.
    fn ask_sentinels(&self, s: &Sentinel) -> RedisResult<(String, u16)> {
        let n = s.sentinels.len();
        let first = self.first_sentinel.load(Ordering::Relaxed) as usize % n;
        let mut failures = Vec::new();
        for i in (0..n).map(|k| (first + k) % n) {
            let (host, port) = &s.sentinels[i];
            match self.ask_sentinel(s, host, *port) {
                Ok(Some(addr)) => {
                    self.first_sentinel.store(i as u64, Ordering::Relaxed);
                    return self.check_allowed(s, addr, host, *port);
                }
                Ok(None) => {
                    failures.push(format!("{host}:{port} knows no master `{}`", s.master))
                }
                Err(e) if is_fatal(&e) => return Err(e),
                Err(e) => failures.push(format!("{host}:{port}: {e}")),
            }
        }
        Err(RedisError::from((
            ErrorKind::IoError,
            "no sentinel named a primary",
            failures.join("; "),
        )))
    }

    fn ask_sentinel(
        &self,
        s: &Sentinel,
        host: &str,
        port: u16,
    ) -> RedisResult<Option<(String, u16)>> {
        let info = redis::ConnectionInfo {
            addr: redis::ConnectionAddr::Tcp(host.to_owned(), port),
            redis: redis::RedisConnectionInfo {
                db: 0,
                ..s.auth.clone()
            },
        };
        let mut con = self.open(&redis::Client::open(info)?)?;
        let reply: Option<(String, u16)> = redis::cmd("SENTINEL")
            .arg("GET-MASTER-ADDR-BY-NAME")
            .arg(&s.master)
            .query(&mut con)?;
        Ok(reply)
    }

    fn check_allowed(
        &self,
        s: &Sentinel,
        (host, port): (String, u16),
        by: &str,
        by_port: u16,
    ) -> RedisResult<(String, u16)> {
        match &s.allowed {
            Some(hosts) if !hosts.contains(&host) => Err(RedisError::from((
                ErrorKind::TryAgain,
                "primary not allowed",
                format!(
                    "sentinel {by}:{by_port} names {host}:{port} as the primary of `{}`, a host \
                     that is not allowed ({}): not followed; allow it with `allow_primary` \
                     (`--allow-primary`)",
                    s.master,
                    hosts.join(", ")
                ),
            ))),
            _ => Ok((host, port)),
        }
    }
}

/// Whether an error means that trying again cannot help: the server
/// refused our credentials, or this user may not run what a mirror needs.
pub(crate) fn is_fatal(e: &RedisError) -> bool {
    e.kind() == ErrorKind::AuthenticationFailed
        || matches!(e.code(), Some("WRONGPASS" | "NOAUTH" | "NOPERM"))
}

/// Whether an error from Redis means the connection is unusable (as
/// opposed to Redis refusing this one command).
pub(crate) fn is_connection_error(e: &RedisError) -> bool {
    e.is_io_error()
        || e.is_timeout()
        || e.is_connection_dropped()
        || e.is_connection_refusal()
        || matches!(
            e.kind(),
            ErrorKind::BusyLoadingError
                | ErrorKind::TryAgain
                | ErrorKind::MasterDown
                // A primary demoted to a replica: find the new one.
                | ErrorKind::ReadOnly
        )
        || is_fatal(e)
}

/// The counters behind [`Stats`], bumped by a mirror's threads.
#[derive(Default)]
pub(crate) struct Counts {
    pub published: AtomicU64,
    pub unchanged: AtomicU64,
    pub skipped: AtomicU64,
    pub echoes: AtomicU64,
    pub applied: AtomicU64,
    pub refused: AtomicU64,
    pub disconnects: AtomicU64,
    pub created: AtomicU64,
    pub removed: AtomicU64,
    pub stale: AtomicU64,
}

impl Counts {
    /// Counts one more in `counter`.
    pub(crate) fn bump(counter: &AtomicU64) {
        counter.fetch_add(1, Ordering::Relaxed);
    }
}

/// Starts a mirror's threads on `core`: a listener and an applier if it
/// subscribes, a publisher if it publishes; named `shmstore-KIND-ROLE`.
pub(crate) fn spawn_threads<C: Send + Sync + 'static>(
    core: &std::sync::Arc<C>,
    kind: &str,
    direction: super::Direction,
    [listener, applier, publisher]: [fn(&C); 3],
) -> Vec<std::thread::JoinHandle<()>> {
    let spawn = |role: &str, f: fn(&C)| {
        let core = std::sync::Arc::clone(core);
        std::thread::Builder::new()
            .name(format!("shmstore-{kind}-{role}"))
            .spawn(move || f(&core))
            .expect("spawning a mirror thread")
    };
    let mut threads = Vec::new();
    if direction.subscribes() {
        threads.push(spawn("listen", listener));
        threads.push(spawn("apply", applier));
    }
    if direction.publishes() {
        threads.push(spawn("publish", publisher));
    }
    threads
}

/// What the threads of one mirror share to talk to Redis and to report:
/// the link, the stop flag, the counters, the last refusal and why the
/// mirror stopped by itself, if it did.
pub(crate) struct Runner {
    pub(crate) link: Link,
    stop: AtomicBool,
    pub(crate) counts: Counts,
    last_refusal: Mutex<Option<String>>,
    failure: Mutex<Option<String>>,
}

impl Runner {
    pub(crate) fn new(link: Link) -> Runner {
        Runner {
            link,
            stop: AtomicBool::new(false),
            counts: Counts::default(),
            last_refusal: Mutex::new(None),
            failure: Mutex::new(None),
        }
    }

    /// What the mirror did so far.
    pub(crate) fn stats(&self) -> Stats {
        let c = &self.counts;
        let get = |a: &AtomicU64| a.load(Ordering::Relaxed);
        Stats {
            published: get(&c.published),
            unchanged: get(&c.unchanged),
            skipped: get(&c.skipped),
            echoes: get(&c.echoes),
            applied: get(&c.applied),
            refused: get(&c.refused),
            disconnects: get(&c.disconnects),
            created: get(&c.created),
            removed: get(&c.removed),
            stale: get(&c.stale),
        }
    }

    /// Counts a refusal, keeps its reason and reports it.
    pub(crate) fn refuse(&self, reason: String) {
        Counts::bump(&self.counts.refused);
        *lock(&self.last_refusal) = Some(reason.clone());
        self.event(Event::Refused { reason });
    }

    /// Why the last refused value was refused.
    pub(crate) fn last_refusal(&self) -> Option<String> {
        lock(&self.last_refusal).clone()
    }

    pub(crate) fn stopped(&self) -> bool {
        self.stop.load(Ordering::Relaxed)
    }

    /// Tells every thread to stop.
    pub(crate) fn stop(&self) {
        self.stop.store(true, Ordering::Relaxed);
    }

    /// The stop flag, for waits that watch it.
    pub(crate) fn stop_flag(&self) -> &AtomicBool {
        &self.stop
    }

    /// Why the mirror stopped by itself (see [`is_fatal`]).
    pub(crate) fn failure(&self) -> Option<String> {
        lock(&self.failure).clone()
    }

    pub(crate) fn event(&self, e: Event) {
        self.link.event(e);
    }

    /// Sleeps `d` unless stopped meanwhile.
    pub(crate) fn pause(&self, d: Duration) {
        let end = Instant::now() + d;
        while !self.stopped() {
            let now = Instant::now();
            if now >= end {
                return;
            }
            std::thread::sleep((end - now).min(TICK));
        }
    }

    /// Runs `session` until stopped, reconnecting after each failure with
    /// a growing pause. A failure that no retry can mend (credentials
    /// refused, a command this user may not run) stops the whole mirror
    /// instead, reported as [`Event::Stopped`] and by
    /// [`Mirror::failure`](super::Mirror::failure).
    pub(crate) fn keep_connected(
        &self,
        side: &'static str,
        mut session: impl FnMut() -> RedisResult<()>,
    ) {
        let mut backoff = Backoff::new(self.link.max_backoff);
        while !self.stopped() {
            let started = Instant::now();
            match session() {
                Ok(()) => return,
                Err(e) if is_fatal(&e) => {
                    self.fail(explain_fatal(&e, &self.link.shown));
                    return;
                }
                Err(e) => {
                    // A connection that worked for a while starts over
                    // with short pauses.
                    if started.elapsed() > self.link.max_backoff * 2 {
                        backoff.reset();
                    }
                    let retry_in = backoff.next();
                    Counts::bump(&self.counts.disconnects);
                    self.event(Event::Disconnected {
                        side,
                        error: e.to_string(),
                        retry_in,
                    });
                    self.pause_for_retry(retry_in);
                }
            }
        }
    }

    /// The pause before a retry: with Sentinel, it ends early when a
    /// sentinel announces a new primary for the master (`+switch-master`),
    /// so that a failover is followed at once, not after the pause.
    fn pause_for_retry(&self, d: Duration) {
        let Servers::Sentinel(s) = &self.link.servers else {
            return self.pause(d);
        };
        let end = Instant::now() + d;
        if self.link.watch_switch(s, end, &self.stop).is_err() {
            self.pause(end.saturating_duration_since(Instant::now()));
        }
    }

    /// Stops the mirror for good, saying why (once).
    fn fail(&self, error: String) {
        {
            let mut failure = lock(&self.failure);
            if failure.is_some() {
                return;
            }
            *failure = Some(error.clone());
        }
        self.stop();
        self.event(Event::Stopped { error });
    }
}

/// What a user reads when Redis refused us for good.
pub(crate) fn explain_fatal(e: &RedisError, shown: &str) -> String {
    explain_fatal_text(shown, &e.to_string())
}

/// [`explain_fatal`] of what the server `shown` said.
pub(crate) fn explain_fatal_text(shown: &str, said: &str) -> String {
    if said.contains("NOPERM") {
        format!(
            "{shown}: this Redis user may not run a command a mirror needs ({said}); grant it \
             what the mirror's documentation lists (Authentication)"
        )
    } else {
        format!("{shown} refused the credentials: wrong user name or password ({said})")
    }
}

/// Locks `m`, whatever a panicking holder left (every value guarded here
/// is whole after each statement).
pub(crate) fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// Keeps an idle connection checked: a publisher that has nothing to send
/// would otherwise learn that Redis went away (a failover, a restart that
/// lost its data) only at its next write, and restore what Redis lost only
/// then.
pub(crate) struct Heartbeat {
    last: Instant,
    every: Duration,
}

impl Heartbeat {
    pub(crate) fn new(every: Duration) -> Heartbeat {
        Heartbeat {
            last: Instant::now(),
            every,
        }
    }

    /// The connection was just used.
    pub(crate) fn used(&mut self) {
        self.last = Instant::now();
    }

    /// `PING`s `con` if it was not used for the check interval; `Err` if
    /// it is dead (the session then starts again, and restores what Redis
    /// lost).
    pub(crate) fn check(&mut self, con: &mut redis::Connection) -> RedisResult<()> {
        if self.last.elapsed() >= self.every {
            redis::cmd("PING").query::<()>(con)?;
            self.used();
        }
        Ok(())
    }
}

/// Pauses that double, with jitter, up to a maximum.
pub(crate) struct Backoff {
    next: Duration,
    max: Duration,
    seed: u64,
}

impl Backoff {
    pub(crate) fn new(max: Duration) -> Backoff {
        let seed = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(1, |d| d.subsec_nanos() as u64 | 1);
        Backoff {
            next: FIRST_BACKOFF,
            max,
            seed,
        }
    }

    pub(crate) fn reset(&mut self) {
        self.next = FIRST_BACKOFF;
    }

    pub(crate) fn next(&mut self) -> Duration {
        let d = self.next.min(self.max);
        self.next = (self.next * 2).min(self.max);
        // xorshift: 75% to 125% of the pause, so that many hosts that lost
        // Redis together do not come back in step.
        self.seed ^= self.seed << 13;
        self.seed ^= self.seed >> 7;
        self.seed ^= self.seed << 17;
        let permille = 750 + self.seed % 501;
        d * permille as u32 / 1000
    }
}

/// `url` without its password: `redis://user:***@host/`. Every message,
/// event and `Debug` output shows URLs this way.
pub(crate) fn redact(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        // Not a URL: it may still hold a secret, so show none of it.
        return "(a malformed URL)".to_owned();
    };
    let end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let (authority, path) = rest.split_at(end);
    match authority.rfind('@') {
        Some(at) => {
            let (userinfo, host) = authority.split_at(at);
            let user = userinfo.split_once(':').map_or(userinfo, |(u, _)| u);
            let shown = if userinfo.contains(':') {
                format!("{user}:***")
            } else {
                // `redis://password@host` is how some give a password alone.
                "***".to_owned()
            };
            format!("{scheme}://{shown}{host}{path}")
        }
        None => url.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn redacted_urls_keep_everything_but_the_password() {
        for (url, shown) in [
            ("redis://h:6379/", "redis://h:6379/"),
            ("redis://u:secret@h:6379/0", "redis://u:***@h:6379/0"),
            ("redis://:secret@h/", "redis://:***@h/"),
            ("rediss://secret@h", "rediss://***@h"),
            ("redis://u:p@ss@h/", "redis://u:***@h/"),
            (
                "redis+sentinel://u:pw@a:26379,b:26379/m",
                "redis+sentinel://u:***@a:26379,b:26379/m",
            ),
            ("secret", "(a malformed URL)"),
        ] {
            assert_eq!(redact(url), shown, "{url}");
            assert!(!redact(url).contains("secret") && !redact(url).contains("pw@"));
        }
    }
}
