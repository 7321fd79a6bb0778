//! `shmstore mirror`: keeps a segment (a store entry, a whole store) in
//! step with the same object on other hosts, through Redis. Without a type: the value's
//! bytes travel with the fingerprint, type name and size from the
//! segment's header, and only a segment of the same layout takes them.

use std::time::SystemTime;

use shmstore::mirror::{Direction, Event, Mirror, MirrorOptions, StoreMirror, Target};
use shmstore::Store;

use crate::cmd::{resolve, CliError, CliResult, Resolved};
use crate::out::{self, Json};
use crate::MirrorArgs;

/// `shmstore mirror`.
pub fn mirror(a: &MirrorArgs) -> CliResult {
    let loc = match resolve(&a.target)? {
        Resolved::At(loc) => loc,
        Resolved::SysvId(id) => {
            return Err(CliError(format!(
                "System V id {id} has no key another host could share: mirror a segment by \
                 name, key or file"
            )))
        }
    };
    let direction = match a.direction {
        crate::MirrorDirection::Publish => Direction::Publish,
        crate::MirrorDirection::Subscribe => Direction::Subscribe,
        crate::MirrorDirection::Both => Direction::Both,
    };
    let way = match direction {
        Direction::Publish => "publish",
        Direction::Subscribe => "subscribe",
        Direction::Both => "both",
    };
    let mut opts = MirrorOptions::new(redis_url(a)?);
    if let Some(origin) = &a.origin {
        opts.origin(origin.clone());
    }
    for host in &a.allow_primary {
        opts.allow_primary(host.clone());
    }
    if a.allow_any_primary {
        opts.allow_any_primary();
    }
    #[cfg(feature = "mirror-tls")]
    if let Some(path) = &a.tls_ca_file {
        let pem = std::fs::read(path).map_err(|e| {
            CliError(format!(
                "cannot read the CA certificate {}: {e}",
                path.display()
            ))
        })?;
        opts.tls_root_certificate(pem);
    }
    if let Ok(pw) = std::env::var("SHMSTORE_SENTINEL_PASSWORD") {
        opts.sentinel_password(pw);
    }
    let json = a.json;
    // Sides whose connection was lost: their next `connected` is a
    // reconnection.
    let lost = std::sync::Mutex::new(Vec::<&'static str>::new());
    opts.on_event(move |e| {
        let again = {
            let mut lost = lost.lock().unwrap_or_else(|p| p.into_inner());
            match e {
                Event::Disconnected { side, .. } if !lost.contains(side) => {
                    lost.push(side);
                    false
                }
                Event::Connected { side } => {
                    let was = lost.contains(side);
                    lost.retain(|s| s != side);
                    was
                }
                _ => false,
            }
        };
        print_event(e, again, json)
    });
    let fail = |e: shmstore::mirror::Error| CliError(e.to_string());

    // What is mirrored, for the first line: (JSON fields, text).
    let (running, about, what) = if a.store {
        let store = Store::open(&loc).map_err(|e| CliError(e.to_string()))?;
        let object = a.object.clone().unwrap_or_else(|| store.name().to_owned());
        let entries = store.len().map_err(|e| CliError(e.to_string()))?;
        let m = match direction {
            Direction::Publish => opts.publish_store(&object, &store),
            Direction::Subscribe => opts.subscribe_store(&object, &store),
            _ => opts.both_store(&object, &store),
        }
        .map_err(fail)?;
        let about = vec![
            ("store", Json::str(store.name())),
            ("entries", Json::int(entries as u64)),
            ("object", Json::str(object.as_str())),
        ];
        let what = format!(
            "the store {} ({entries} entries) as `{object}`",
            store.name()
        );
        (Running::Store(m), about, what)
    } else {
        let target = match &a.entry {
            Some(key) => Target::open_entry(&loc, key),
            None => Target::open(&loc),
        }
        .map_err(fail)?;
        let object = a.object.clone().unwrap_or_else(|| target.name().to_owned());
        let about = vec![
            ("segment", Json::str(target.name())),
            ("type", Json::str(target.type_name())),
            ("size", Json::int(target.size() as u64)),
            (
                "fingerprint",
                Json::str(format!("{:#018x}", target.fingerprint())),
            ),
            ("object", Json::str(object.as_str())),
        ];
        let what = format!(
            "{} ({}, {} bytes, fingerprint {:#018x}) as `{object}`",
            target.name(),
            target.type_name(),
            target.size(),
            target.fingerprint()
        );
        let m = opts.start(&object, target, direction).map_err(fail)?;
        (Running::Value(m), about, what)
    };
    let (redis, origin) = running.names();
    if json {
        let mut fields = vec![
            ("time", Json::time(SystemTime::now())),
            ("event", Json::str("started")),
        ];
        fields.extend(about);
        fields.extend([
            ("direction", Json::str(way)),
            ("redis", Json::str(redis)),
            ("origin", Json::str(origin)),
        ]);
        line(Json::Obj(fields));
    } else {
        println!(
            "{} mirroring {what} ({way}) through {redis} as origin {origin}",
            out::local_time(SystemTime::now()),
        );
    }
    // Runs until interrupted, or until Redis refuses us for good.
    loop {
        if let Some(why) = running.failure() {
            return Err(CliError(why));
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
}

/// A running mirror of either kind.
enum Running {
    Value(Mirror),
    Store(StoreMirror),
}

impl Running {
    /// The Redis address (without the password) and the origin.
    fn names(&self) -> (&str, &str) {
        match self {
            Running::Value(m) => (m.redis(), m.origin()),
            Running::Store(m) => (m.redis(), m.origin()),
        }
    }

    fn failure(&self) -> Option<String> {
        match self {
            Running::Value(m) => m.failure(),
            Running::Store(m) => m.failure(),
        }
    }
}

/// The Redis URL: `--redis`, else the first line of `--redis-url-file`,
/// else `SHMSTORE_REDIS_URL`, else the local default.
fn redis_url(a: &MirrorArgs) -> Result<String, CliError> {
    if let Some(url) = &a.redis {
        if has_password(url) {
            eprintln!(
                "shmstore: warning: the password in --redis is visible to every user of this \
                 host (ps); give the URL in a file (--redis-url-file) or in SHMSTORE_REDIS_URL"
            );
        }
        return Ok(url.clone());
    }
    if let Some(path) = &a.redis_url_file {
        let text = std::fs::read_to_string(path).map_err(|e| {
            CliError(format!(
                "cannot read the Redis URL from {}: {e}",
                path.display()
            ))
        })?;
        let url = text.lines().next().unwrap_or("").trim();
        if url.is_empty() {
            return Err(CliError(format!(
                "{} holds no Redis URL on its first line",
                path.display()
            )));
        }
        return Ok(url.to_owned());
    }
    match std::env::var("SHMSTORE_REDIS_URL") {
        Ok(url) if !url.trim().is_empty() => Ok(url.trim().to_owned()),
        _ => Ok("redis://127.0.0.1:6379/".to_owned()),
    }
}

/// Whether a URL carries a password (`USER:PASSWORD@` or `PASSWORD@`).
fn has_password(url: &str) -> bool {
    let rest = url.split_once("://").map_or(url, |(_, r)| r);
    let authority = rest.split(['/', '?', '#']).next().unwrap_or("");
    authority.contains('@')
}

/// Prints one event: a line of text, or a JSON object on one line. A
/// connection made `again` (after one was lost) is `reconnected`.
fn print_event(e: &Event, again: bool, json: bool) {
    if !json {
        let text = match e {
            Event::Connected { side } if again => format!("reconnected ({side})"),
            _ => e.to_string(),
        };
        println!("{} {text}", out::local_time(SystemTime::now()));
        return;
    }
    let mut f: Vec<(&'static str, Json)> = vec![("time", Json::time(SystemTime::now()))];
    let mut kind = |k: &'static str| f.push(("event", Json::str(k)));
    match e {
        Event::Connected { side } => {
            kind(if again { "reconnected" } else { "connected" });
            f.push(("side", Json::str(*side)));
        }
        Event::Disconnected {
            side,
            error,
            retry_in,
        } => {
            kind("disconnected");
            f.push(("side", Json::str(*side)));
            f.push(("error", Json::str(error.as_str())));
            f.push(("retry_in_ms", Json::int(retry_in.as_millis() as u64)));
        }
        Event::Published { rev, generation } => {
            kind("published");
            f.push(("rev", Json::int(*rev)));
            f.push(("generation", Json::int(*generation)));
        }
        Event::Applied {
            rev,
            origin,
            generation,
        } => {
            kind("applied");
            f.push(("rev", Json::int(*rev)));
            f.push(("origin", Json::str(origin.as_str())));
            f.push(("generation", Json::int(*generation)));
        }
        Event::EntryPublished {
            key,
            rev,
            generation,
        } => {
            kind("published");
            f.push(("entry", Json::str(key.as_str())));
            f.push(("rev", Json::int(*rev)));
            f.push(("generation", Json::int(*generation)));
        }
        Event::EntryApplied {
            key,
            rev,
            origin,
            generation,
        } => {
            kind("applied");
            f.push(("entry", Json::str(key.as_str())));
            f.push(("rev", Json::int(*rev)));
            f.push(("origin", Json::str(origin.as_str())));
            f.push(("generation", Json::int(*generation)));
        }
        Event::EntryCreated {
            key,
            type_name,
            origin,
        } => {
            kind("created");
            f.push(("entry", Json::str(key.as_str())));
            f.push(("type", Json::str(type_name.as_str())));
            f.push(("origin", Json::str(origin.as_str())));
        }
        Event::EntryRemoved { key, origin } => {
            kind("removed");
            f.push(("entry", Json::str(key.as_str())));
            f.push(("origin", Json::str(origin.as_str())));
        }
        Event::Refused { reason } => {
            kind("refused");
            f.push(("reason", Json::str(reason.as_str())));
        }
        Event::Failover { from, to } => {
            kind("failover");
            f.push(("from", Json::str(from.as_str())));
            f.push(("to", Json::str(to.as_str())));
        }
        Event::Stopped { error } => {
            kind("stopped");
            f.push(("error", Json::str(error.as_str())));
        }
        other => {
            kind("other");
            f.push(("text", Json::str(other.to_string())));
        }
    }
    line(Json::Obj(f));
}

/// One JSON object on one line, flushed (a supervisor reads it at once).
fn line(j: Json) {
    use std::io::Write;
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "{}", j.render(false));
    let _ = out.flush();
}
