//! What a mirror keeps in Redis and sends through it, and how what comes
//! back is checked. Any bytes may come from Redis: parsing never panics,
//! and a record is used only if every field is present and well-formed.

use std::fmt;

use redis::Value;

use crate::error::ByteOrder;

/// The prefix of every key and channel a mirror uses.
pub(crate) const PREFIX: &str = "shmstore:mirror:";

/// Stores a value and announces it, atomically, unless Redis holds a value
/// of another layout under that name (refused: returns `{-1, fingerprint,
/// type}`), or exactly these bytes already (nothing changes: `{0, rev}`),
/// or, in `init` mode, anything at all (`{2, rev}`). Otherwise gives the
/// write the next revision and returns `{1, rev}`.
///
/// A revision is larger than the one stored, than `floor` (the largest
/// this mirror has seen), and than the server's clock in microseconds. So
/// revisions never go backwards, even on a server that lost writes: a
/// replica promoted after a failover, or a server restarted without its
/// data, numbers its first write past any the old one gave (unless its
/// clock is behind the old server's by more than the failover took).
///
/// KEYS[1]: the object's hash. ARGV: value, fingerprint, type name, size,
/// generation, origin, channel, mode (`set` or `init`), floor.
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
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local stored = tonumber(redis.call('HGET', KEYS[1], 'rev')) or 0
local rev = string.format('%.0f', math.max(stored + 1, (tonumber(ARGV[9]) or 0) + 1, now))
redis.call('HSET', KEYS[1], 'rev', rev, 'value', ARGV[1], 'fingerprint', ARGV[2],
  'type', ARGV[3], 'size', ARGV[4], 'generation', ARGV[5], 'origin', ARGV[6])
redis.call('PUBLISH', ARGV[7], rev .. '\n' .. ARGV[2] .. '\n' .. ARGV[4] .. '\n' ..
  ARGV[5] .. '\n' .. ARGV[6] .. '\n' .. ARGV[3] .. '\n' .. ARGV[1])
return {1, tonumber(rev)}
"#;

/// What a value's bytes mean besides its layout: the byte order and
/// pointer width of the build that published it.
///
/// It travels in the fingerprint field, after the fingerprint and a colon
/// (`1234:be64`), except for a little-endian 64-bit build's, whose field is
/// the fingerprint alone: as every earlier build's was, so a record without
/// it is a little-endian 64-bit build's, and such builds old and new read
/// each other's records. A build of another byte order or width has
/// another fingerprint field, so the publishing script refuses its write
/// over the value of another, as it refuses another layout, and older
/// builds refuse its records as malformed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Build {
    pub order: ByteOrder,
    /// `usize::BITS`.
    pub pointer_bits: u32,
}

impl Build {
    /// This build.
    pub(crate) const NATIVE: Build = Build {
        order: ByteOrder::NATIVE,
        pointer_bits: usize::BITS,
    };

    /// What every build before the field existed was.
    const IMPLIED: Build = Build {
        order: ByteOrder::Little,
        pointer_bits: 64,
    };

    /// `le64`, `be64`, `le32`, ...
    fn token(self) -> String {
        let order = match self.order {
            ByteOrder::Little => "le",
            ByteOrder::Big => "be",
        };
        format!("{order}{}", self.pointer_bits)
    }

    fn parse(token: &str) -> Option<Build> {
        let (order, bits) = match token.split_at_checked(2)? {
            ("le", bits) => (ByteOrder::Little, bits),
            ("be", bits) => (ByteOrder::Big, bits),
            _ => return None,
        };
        let pointer_bits = match bits {
            "16" => 16,
            "32" => 32,
            "64" => 64,
            _ => return None,
        };
        Some(Build {
            order,
            pointer_bits,
        })
    }
}

impl fmt::Display for Build {
    /// `big-endian 64-bit`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}-bit", self.order, self.pointer_bits)
    }
}

/// The fingerprint field of a value of layout `fingerprint` published by
/// `build` (see [`Build`]).
pub(crate) fn fingerprint_field(fingerprint: u64, build: Build) -> String {
    if build == Build::IMPLIED {
        fingerprint.to_string()
    } else {
        format!("{fingerprint}:{}", build.token())
    }
}

/// Parses a fingerprint field (see [`Build`]).
pub(crate) fn parse_fingerprint(b: &[u8]) -> Result<(u64, Build), String> {
    let bad = || format!("the fingerprint is not a number: {:?}", shorten(b));
    let s = std::str::from_utf8(b).map_err(|_| bad())?;
    let (number, build) = match s.split_once(':') {
        None => (s, Build::IMPLIED),
        Some((number, token)) => {
            let build = Build::parse(token).ok_or_else(|| {
                format!(
                    "the fingerprint names an unknown byte order or pointer width: {:?}",
                    shorten(b)
                )
            })?;
            (number, build)
        }
    };
    let fingerprint = number.parse::<u64>().map_err(|_| bad())?;
    Ok((fingerprint, build))
}

/// One value as Redis holds or announces it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Record {
    /// Redis's revision: every accepted write counts one.
    pub rev: u64,
    pub fingerprint: u64,
    /// The byte order and pointer width of the build that published it.
    pub build: Build,
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
    let (fingerprint, build) = parse_fingerprint(next("a fingerprint")?)?;
    let size = number(next("a size")?, "size")?;
    let generation = number(next("a generation")?, "generation")?;
    let origin = text(next("an origin")?, "origin")?;
    let type_name = text(next("a type name")?, "type name")?;
    let value = next("a value")?.to_vec();
    Ok(Record {
        rev,
        fingerprint,
        build,
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
    let (fingerprint, build) = parse_fingerprint(field("fingerprint")?)?;
    Ok(Some(Record {
        rev: number(field("rev")?, "rev")?,
        fingerprint,
        build,
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

/// A decimal number of digits only (no sign, no spaces).
pub(crate) fn number(b: &[u8], what: &str) -> Result<u64, String> {
    std::str::from_utf8(b)
        .ok()
        .filter(|s| !s.is_empty() && s.bytes().all(|c| c.is_ascii_digit()))
        .and_then(|s| s.parse::<u64>().ok())
        .ok_or_else(|| format!("the {what} is not a number: {:?}", shorten(b)))
}

/// A line of at most 256 bytes of text without control characters.
pub(crate) fn text(b: &[u8], what: &str) -> Result<String, String> {
    match std::str::from_utf8(b) {
        Ok(s) if s.len() <= 256 && !s.chars().any(char::is_control) => Ok(s.to_owned()),
        _ => Err(format!(
            "the {what} is not a short line of text: {:?}",
            shorten(b)
        )),
    }
}

/// At most 40 bytes of `b`, for messages.
pub(crate) fn shorten(b: &[u8]) -> String {
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
    fn the_fingerprint_field_carries_byte_order_and_pointer_width() {
        let builds = [
            (ByteOrder::Little, 64, "42"),
            (ByteOrder::Big, 64, "42:be64"),
            (ByteOrder::Little, 32, "42:le32"),
            (ByteOrder::Big, 32, "42:be32"),
        ];
        for (order, pointer_bits, field) in builds {
            let build = Build {
                order,
                pointer_bits,
            };
            assert_eq!(fingerprint_field(42, build), field);
            assert_eq!(parse_fingerprint(field.as_bytes()), Ok((42, build)));
        }
        // What every earlier build wrote, and what this build writes.
        assert_eq!(parse_fingerprint(b"7").unwrap().1, Build::IMPLIED);
        let native = fingerprint_field(7, Build::NATIVE);
        assert_eq!(parse_fingerprint(native.as_bytes()), Ok((7, Build::NATIVE)));
        for bad in [
            &b""[..],
            b":be64",
            b"42:",
            b"42:be",
            b"42:BE64",
            b"42:xx64",
            b"42:be63",
            b"42:be64:le64",
            b"42 be64",
            b"42:\xffe64",
            b"42:be\xff",
            b"-1:le64",
            b"99999999999999999999999:be64",
        ] {
            assert!(parse_fingerprint(bad).is_err(), "{bad:?} accepted");
        }
    }

    #[test]
    fn a_record_of_another_byte_order_says_so() {
        let r = parse_message(b"7\n42:be64\n3\n9\nhost-a/1\nConfig\nabc").unwrap();
        assert_eq!((r.fingerprint, r.build.order), (42, ByteOrder::Big));
        assert_eq!(r.build.to_string(), "big-endian 64-bit");
        let r = parse_message(b"7\n42\n3\n9\nhost-a/1\nConfig\nabc").unwrap();
        assert_eq!(r.build, Build::IMPLIED);
        assert_eq!(r.build.to_string(), "little-endian 64-bit");
        assert!(parse_message(b"7\n42:zz64\n3\n9\nhost-a/1\nConfig\nabc").is_err());
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
        let mut big = full.clone();
        big[3] = s("5:be64");
        let r = parse_hash(&Value::Array(big.clone())).unwrap().unwrap();
        assert_eq!((r.fingerprint, r.build.order), (5, ByteOrder::Big));
        big[3] = s("5:be64x");
        assert!(parse_hash(&Value::Array(big)).is_err());
        assert!(parse_hash(&Value::Int(3)).is_err());
    }
}
