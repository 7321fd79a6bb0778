//! The Redis URLs a mirror takes: one server's (parsed by the client), or a
//! Sentinel setup's, `redis+sentinel://[[USER]:PASSWORD@]HOST:PORT[,HOST:PORT...]/MASTER[/DB]`.
//! Messages never quote the password.

use redis::IntoConnectionInfo;

use super::link::Sentinel;

/// What a URL names.
pub(crate) enum Parsed {
    One(redis::ConnectionInfo),
    Sentinel(Sentinel),
}

/// Parses `url`; the error says what is wrong without quoting it.
pub(crate) fn parse(url: &str) -> Result<Parsed, String> {
    let (scheme, rest) = url
        .split_once("://")
        .ok_or_else(|| "no scheme: it starts with redis:// or redis+sentinel://".to_owned())?;
    let tls = match scheme {
        "redis+sentinel" => false,
        "rediss+sentinel" => true,
        "rediss" if !cfg!(feature = "mirror-tls") => return Err(NO_TLS.into()),
        _ => {
            return url
                .into_connection_info()
                .map(Parsed::One)
                // The client's complaints name no part of the URL.
                .map_err(|e| e.to_string());
        }
    };
    let (authority, path) = rest.split_once('/').unwrap_or((rest, ""));
    let (userinfo, hosts) = match authority.rsplit_once('@') {
        Some((u, h)) => (Some(u), h),
        None => (None, authority),
    };
    let mut sentinels = Vec::new();
    for h in hosts.split(',') {
        let (host, port) = h
            .rsplit_once(':')
            .ok_or_else(|| format!("the sentinel `{h}` has no port (HOST:PORT)"))?;
        let port: u16 = port
            .parse()
            .map_err(|_| format!("the sentinel `{h}` has no valid port"))?;
        let host = host.trim_start_matches('[').trim_end_matches(']');
        if host.is_empty() {
            return Err(format!("the sentinel `{h}` has no host"));
        }
        sentinels.push((host.to_owned(), port));
    }
    let path = path.split(['?', '#']).next().unwrap_or("");
    let mut parts = path.split('/').filter(|p| !p.is_empty());
    let master = parts
        .next()
        .ok_or("no master name: redis+sentinel://HOST:PORT/MASTER")?;
    let master = decode(master).ok_or("the master name is not valid percent-encoded text")?;
    let db = match parts.next() {
        Some(d) => d
            .parse::<i64>()
            .map_err(|_| format!("the database `{d}` is not a number"))?,
        None => 0,
    };
    if parts.next().is_some() {
        return Err("too many path parts: /MASTER or /MASTER/DB".into());
    }
    let (username, password) = match userinfo {
        None => (None, None),
        Some(u) => {
            let (user, pass) = match u.split_once(':') {
                Some((user, pass)) => (user, Some(pass)),
                None => ("", Some(u)),
            };
            let user = decode(user).ok_or("the user name is not valid percent-encoded text")?;
            let pass = match pass {
                Some(p) => Some(decode(p).ok_or("the password is not valid percent-encoded text")?),
                None => None,
            };
            ((!user.is_empty()).then_some(user), pass)
        }
    };
    let addr = if tls {
        tls_addr()?
    } else {
        redis::ConnectionAddr::Tcp(String::new(), 0)
    };
    let allowed = Some(sentinels.iter().map(|(h, _)| h.clone()).collect());
    Ok(Parsed::Sentinel(Sentinel {
        sentinels,
        master,
        data: redis::ConnectionInfo {
            addr,
            redis: redis::RedisConnectionInfo {
                db,
                username,
                password,
                ..Default::default()
            },
        },
        auth: redis::RedisConnectionInfo::default(),
        allowed,
    }))
}

/// What a TLS URL gets from a build without TLS.
const NO_TLS: &str = "TLS (rediss://) needs shmstore's feature `mirror-tls`";

/// A TLS address to fill in with the primary's host and port.
fn tls_addr() -> Result<redis::ConnectionAddr, String> {
    if !cfg!(feature = "mirror-tls") {
        return Err(NO_TLS.into());
    }
    "rediss://localhost/"
        .into_connection_info()
        .map(|info| info.addr)
        .map_err(|e| e.to_string())
}

/// Percent-decodes `s`; `None` if it is not valid UTF-8 afterwards.
fn decode(s: &str) -> Option<String> {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' && i + 2 < b.len() {
            let hex = std::str::from_utf8(&b[i + 1..i + 3]).ok()?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sentinel(url: &str) -> Sentinel {
        match parse(url) {
            Ok(Parsed::Sentinel(s)) => s,
            Ok(Parsed::One(_)) => panic!("{url}: one server"),
            Err(e) => panic!("{url}: {e}"),
        }
    }

    #[test]
    fn sentinel_urls_name_sentinels_master_credentials_and_database() {
        let s = sentinel("redis+sentinel://mirror:p%40ss@10.0.0.1:26379,10.0.0.2:26380/main/3");
        assert_eq!(
            s.sentinels,
            [("10.0.0.1".to_owned(), 26379), ("10.0.0.2".to_owned(), 26380)]
        );
        assert_eq!(s.master, "main");
        assert_eq!(s.data.redis.db, 3);
        assert_eq!(s.data.redis.username.as_deref(), Some("mirror"));
        assert_eq!(s.data.redis.password.as_deref(), Some("p@ss"));
        assert_eq!(
            s.allowed,
            Some(vec!["10.0.0.1".to_owned(), "10.0.0.2".to_owned()])
        );
        let s = sentinel("redis+sentinel://:pw@h:1/m");
        assert_eq!((s.data.redis.username, s.data.redis.password.as_deref()), (None, Some("pw")));
        let s = sentinel("redis+sentinel://h:1/m");
        assert_eq!(s.data.redis.password, None);
        assert_eq!(s.data.redis.db, 0);
    }

    #[test]
    fn bad_sentinel_urls_say_why_without_the_password() {
        for url in [
            "redis+sentinel://u:secret@h/m",
            "redis+sentinel://u:secret@h:x/m",
            "redis+sentinel://u:secret@:1/m",
            "redis+sentinel://u:secret@h:1/",
            "redis+sentinel://u:secret@h:1/m/x",
            "redis+sentinel://u:secret@h:1/m/1/2",
            "redis+sentinel://u:secret%ff@h:1/m",
        ] {
            let e = match parse(url) {
                Err(e) => e,
                Ok(_) => panic!("{url} accepted"),
            };
            assert!(!e.contains("secret"), "{e}");
        }
        assert!(matches!(parse("redis://h:6379/"), Ok(Parsed::One(_))));
        assert!(parse("nonsense").is_err());
    }
}
