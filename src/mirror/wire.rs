//! What a mirror keeps in Redis and sends through it, and how what comes
//! back is checked. Any bytes may come from Redis: parsing never panics,
//! and a record is used only if every field is present and well-formed.

use redis::Value;

/// The prefix of every key and channel a mirror uses.
pub(crate) const PREFIX: &str = "shmstore:mirror:";

/// Stores a value and announces it, atomically, unless Redis holds a value
/// of another layout under that name (refused: returns `{-1, fingerprint,
/// type}`), or exactly these bytes already (nothing changes: `{0, rev}`),
/// or, in `init` mode, anything at all (`{2, rev}`). Otherwise counts one
/// more revision and returns `{1, rev}`.
///
/// KEYS[1]: the object's hash. ARGV: value, fingerprint, type name, size,
/// generation, origin, channel, mode (`set` or `init`).
pub(crate) const PUBLISH_SCRIPT: &str = r#"
if ARGV[8] == 'init' and redis.call('EXISTS', KEYS[1]) == 1 then
  return {2, tonumber(redis.call('HGET', KEYS[1], 'rev')) or 0}
end
local fp = redis.call('HGET', KEYS[1], 'fingerprint')
if fp and fp ~= ARGV[2] then
  return {-1, fp, redis.call('HGET', KEYS[1], 'type') or ''}
end
if fp and redis.call('HGET', KEYS[1], 'value') == ARGV[1] then
  return {0, tonumber(redis.call('HGET', KEYS[1], 'rev')) or 0}
end
local rev = redis.call('HINCRBY', KEYS[1], 'rev', 1)
redis.call('HSET', KEYS[1], 'value', ARGV[1], 'fingerprint', ARGV[2], 'type', ARGV[3],
  'size', ARGV[4], 'generation', ARGV[5], 'origin', ARGV[6])
redis.call('PUBLISH', ARGV[7], rev .. '\n' .. ARGV[2] .. '\n' .. ARGV[4] .. '\n' ..
  ARGV[5] .. '\n' .. ARGV[6] .. '\n' .. ARGV[3] .. '\n' .. ARGV[1])
return {1, rev}
"#;

/// One value as Redis holds or announces it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Record {
    /// Redis's revision: every accepted write counts one.
    pub rev: u64,
    pub fingerprint: u64,
    pub type_name: String,
    pub size: u64,
    /// The generation of the value on the host that published it.
    pub generation: u64,
    /// The mirror that published it.
    pub origin: String,
    pub value: Vec<u8>,
}

impl Record {
    /// What tells two writes apart: the writer and its generation (a
    /// writer's generations only grow).
    pub(crate) fn stamp(&self) -> (String, u64) {
        (self.origin.clone(), self.generation)
    }
}

/// Parses an announcement: six lines (revision, fingerprint, size,
/// generation, origin, type name), then the value's bytes.
pub(crate) fn parse_message(payload: &[u8]) -> Result<Record, String> {
    let mut parts = payload.splitn(7, |&b| b == b'\n');
    let mut next = |what: &str| {
        parts
            .next()
            .ok_or_else(|| format!("an announcement without {what}"))
    };
    let rev = number(next("a revision")?, "revision")?;
    let fingerprint = number(next("a fingerprint")?, "fingerprint")?;
    let size = number(next("a size")?, "size")?;
    let generation = number(next("a generation")?, "generation")?;
    let origin = text(next("an origin")?, "origin")?;
    let type_name = text(next("a type name")?, "type name")?;
    let value = next("a value")?.to_vec();
    Ok(Record {
        rev,
        fingerprint,
        type_name,
        size,
        generation,
        origin,
        value,
    })
}

/// Parses the reply to `HGETALL`: `None` if there is no such key.
pub(crate) fn parse_hash(reply: &Value) -> Result<Option<Record>, String> {
    let items: Vec<(&Value, &Value)> = match reply {
        Value::Array(items) => {
            if items.len() % 2 != 0 {
                return Err("an odd number of hash fields".into());
            }
            items.chunks(2).map(|p| (&p[0], &p[1])).collect()
        }
        Value::Map(pairs) => pairs.iter().map(|(k, v)| (k, v)).collect(),
        Value::Nil => Vec::new(),
        other => return Err(format!("not a hash: {other:?}")),
    };
    if items.is_empty() {
        return Ok(None);
    }
    let field = |name: &str| -> Result<&[u8], String> {
        items
            .iter()
            .find(|(k, _)| bytes(k) == Some(name.as_bytes()))
            .and_then(|(_, v)| bytes(v))
            .ok_or_else(|| format!("the hash has no `{name}` field"))
    };
    Ok(Some(Record {
        rev: number(field("rev")?, "rev")?,
        fingerprint: number(field("fingerprint")?, "fingerprint")?,
        type_name: text(field("type")?, "type")?,
        size: number(field("size")?, "size")?,
        generation: number(field("generation")?, "generation")?,
        origin: text(field("origin")?, "origin")?,
        value: field("value")?.to_vec(),
    }))
}

/// The bytes of a string reply.
pub(crate) fn bytes(v: &Value) -> Option<&[u8]> {
    match v {
        Value::BulkString(b) => Some(b),
        Value::SimpleString(s) => Some(s.as_bytes()),
        _ => None,
    }
}

/// An integer reply, or a string holding one.
pub(crate) fn integer(v: &Value) -> Option<i64> {
    match v {
        Value::Int(i) => Some(*i),
        other => std::str::from_utf8(bytes(other)?).ok()?.parse().ok(),
    }
}

fn number(b: &[u8], what: &str) -> Result<u64, String> {
    std::str::from_utf8(b)
        .ok()
        .and_then(|s| s.parse::<u64>().ok())
        .ok_or_else(|| format!("the {what} is not a number: {:?}", shorten(b)))
}

fn text(b: &[u8], what: &str) -> Result<String, String> {
    match std::str::from_utf8(b) {
        Ok(s) if s.len() <= 256 && !s.chars().any(char::is_control) => Ok(s.to_owned()),
        _ => Err(format!(
            "the {what} is not a short line of text: {:?}",
            shorten(b)
        )),
    }
}

/// At most 40 bytes of `b`, for messages.
fn shorten(b: &[u8]) -> String {
    let s = String::from_utf8_lossy(&b[..b.len().min(40)]).into_owned();
    if b.len() > 40 {
        s + "..."
    } else {
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_announcement_round_trips_and_garbage_is_refused() {
        let msg = b"7\n42\n3\n9\nhost-a/1\nConfig\na\nb";
        let r = parse_message(msg).unwrap();
        assert_eq!((r.rev, r.fingerprint, r.size, r.generation), (7, 42, 3, 9));
        assert_eq!(
            (r.origin.as_str(), r.type_name.as_str()),
            ("host-a/1", "Config")
        );
        // The value is the rest, newlines included.
        assert_eq!(r.value, b"a\nb");
        for bad in [
            &b""[..],
            b"garbage",
            b"1\n2\n3",
            b"x\n2\n3\n4\no\nt\nv",
            b"1\n2\n3\n99999999999999999999999\no\nt\nv",
            b"1\n2\n3\n4\no\xff\nt\nv",
        ] {
            assert!(parse_message(bad).is_err(), "{bad:?} accepted");
        }
    }

    #[test]
    fn a_hash_needs_every_field() {
        let s = |x: &str| Value::BulkString(x.as_bytes().to_vec());
        let full = vec![
            s("value"),
            s("ab"),
            s("fingerprint"),
            s("5"),
            s("type"),
            s("T"),
            s("size"),
            s("2"),
            s("generation"),
            s("3"),
            s("origin"),
            s("o"),
            s("rev"),
            s("4"),
        ];
        let r = parse_hash(&Value::Array(full.clone())).unwrap().unwrap();
        assert_eq!((r.rev, r.value.as_slice()), (4, &b"ab"[..]));
        assert_eq!(parse_hash(&Value::Array(vec![])).unwrap(), None);
        for drop in 0..7 {
            let mut cut = full.clone();
            cut.drain(drop * 2..drop * 2 + 2);
            assert!(parse_hash(&Value::Array(cut)).is_err());
        }
        assert!(parse_hash(&Value::Array(full[..13].to_vec())).is_err());
        assert!(parse_hash(&Value::Int(3)).is_err());
    }
}
