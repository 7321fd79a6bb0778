//! What a whole-store mirror keeps in Redis and announces, and how what
//! comes back is checked (see "What is in Redis" in the
//! [module docs](super)). Any bytes may come from Redis: parsing never
//! panics, never allocates more than the bytes it was given, and a record
//! is used only if every part is present, well-formed and plausible for
//! the local store.

use crate::mirror::wire::{self as value_wire, number, text, Build};
use crate::schema::Schema;

/// The prefix of a store's hash and channel.
pub(crate) const PREFIX: &str = "shmstore:store:";

/// The hash field holding the store's revision: the highest revision of
/// any entry's record (`#` is never in an entry key).
pub(crate) const REV_FIELD: &str = "#rev";

/// The hash field a publisher sets to its origin once every one of its
/// entries is in the hash: a subscriber removes local entries Redis does
/// not name only when it is there.
pub(crate) const FULL_FIELD: &str = "#full";

/// Stores one entry's record (`set`: unless Redis holds the same content;
/// `init`: only if Redis holds nothing for the key; `again`: as `set`,
/// unless Redis holds a record of the key newer than the revision ARGV[8],
/// the newest this mirror has seen of it) or its tombstone
/// (`del`: unless Redis holds a tombstone already; also when it holds no
/// record at all, since subscribers may have the entry from a write Redis
/// lost in a failover), gives it a
/// revision, bumps the store's and announces `KEY\nRECORD` on the channel.
/// Returns `{1, rev}` when written, `{0, rev}` when nothing changed.
///
/// A revision is never lower than one Redis holds for the key or the
/// store, than the `floor` the mirror sends (the highest it has seen), or
/// than Redis's clock in microseconds: after a failover that lost writes,
/// revisions do not go back.
///
/// KEYS[1]: the hash. ARGV: mode, entry key, floor, generation, origin,
/// channel, content (`FINGERPRINT\nSIZE\nALIGN\nTYPE\nSCHEMA_LEN\n` then
/// the schema's and the value's bytes; empty for `del`), the revision seen
/// (`again`; 0 otherwise).
pub(crate) const WRITE_SCRIPT: &str = r#"
local old = redis.call('HGET', KEYS[1], ARGV[2])
local oldrev = 0
local oldbody = nil
if old then
  local a = string.find(old, '\n', 1, true)
  oldrev = tonumber(string.sub(old, 1, (a or 0) - 1)) or 0
  local b = a and string.find(old, '\n', a + 1, true)
  local c = b and string.find(old, '\n', b + 1, true)
  if b and string.sub(old, a + 1, b - 1) == '-' then
    oldbody = '-'
  elseif c then
    oldbody = string.sub(old, c + 1)
  end
end
if ARGV[1] == 'init' and old then
  return {0, string.format('%.0f', oldrev)}
end
if ARGV[1] == 'del' and oldbody == '-' then
  return {0, string.format('%.0f', oldrev)}
end
if ARGV[1] == 'again' and oldrev > (tonumber(ARGV[8]) or 0) then
  return {0, string.format('%.0f', oldrev)}
end
if (ARGV[1] == 'set' or ARGV[1] == 'again') and oldbody == ARGV[7] then
  return {0, string.format('%.0f', oldrev)}
end
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local srev = tonumber(redis.call('HGET', KEYS[1], '#rev')) or 0
local rev = math.max(oldrev + 1, srev + 1, (tonumber(ARGV[3]) or 0) + 1, now)
local revs = string.format('%.0f', rev)
local record
if ARGV[1] == 'del' then
  record = revs .. '\n-\n' .. ARGV[5]
else
  record = revs .. '\n' .. ARGV[4] .. '\n' .. ARGV[5] .. '\n' .. ARGV[7]
end
redis.call('HSET', KEYS[1], ARGV[2], record, '#rev', revs)
redis.call('PUBLISH', ARGV[6], ARGV[2] .. '\n' .. record)
return {1, revs}
"#;

/// One piece of the hash: `HSCAN` from cursor ARGV[1], about ARGV[2]
/// fields, each value longer than ARGV[3] bytes replaced by its length
/// (an integer), so that no record too big for the local store ever
/// crosses the network. Returns `{cursor, field, value-or-length, ...}`.
pub(crate) const SCAN_SCRIPT: &str = r#"
local r = redis.call('HSCAN', KEYS[1], ARGV[1], 'COUNT', ARGV[2])
local out = {r[1]}
local max = tonumber(ARGV[3])
local items = r[2]
for i = 1, #items, 2 do
  out[#out + 1] = items[i]
  if #items[i + 1] > max then
    out[#out + 1] = #items[i + 1]
  else
    out[#out + 1] = items[i + 1]
  end
end
return out
"#;

/// What a record says of an entry.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Body {
    /// The entry, with its value.
    Entry(Entry),
    /// The entry was removed.
    Removed,
}

/// An entry as its publisher has it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Entry {
    pub fingerprint: u64,
    pub type_name: String,
    pub align: usize,
    pub schema: Vec<u8>,
    pub value: Vec<u8>,
}

/// One entry's record, as the hash holds it or an announcement carries it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Record {
    pub key: String,
    /// Redis's revision of this write (see [`WRITE_SCRIPT`]).
    pub rev: u64,
    /// The entry's generation on the host that wrote it.
    pub generation: u64,
    /// The mirror that wrote it.
    pub origin: String,
    pub body: Body,
}

/// The content part of a record, as [`WRITE_SCRIPT`] takes it.
pub(crate) fn content(
    fingerprint: u64,
    type_name: &str,
    size: usize,
    align: usize,
    schema: &[u8],
    value: &[u8],
) -> Vec<u8> {
    let mut out = format!(
        "{}\n{size}\n{align}\n{type_name}\n{}\n",
        value_wire::fingerprint_field(fingerprint, Build::NATIVE),
        schema.len()
    )
    .into_bytes();
    out.extend_from_slice(schema);
    out.extend_from_slice(value);
    out
}

/// Parses an announcement, `KEY\nRECORD`, for a store of `capacity`
/// bytes.
pub(crate) fn parse_announcement(payload: &[u8], capacity: usize) -> Result<Record, String> {
    let Some(nl) = payload.iter().position(|&b| b == b'\n') else {
        return Err("an announcement without a key".into());
    };
    let key = parse_key(&payload[..nl])?;
    parse_record(key, &payload[nl + 1..], capacity)
}

/// `key`, if it is a valid entry key (a field of the hash or the first
/// line of an announcement).
pub(crate) fn parse_key(b: &[u8]) -> Result<String, String> {
    let key = std::str::from_utf8(b).map_err(|_| "a key that is not text".to_owned())?;
    crate::store::check_key(key).map_err(|e| e.to_string())?;
    Ok(key.to_owned())
}

/// Parses the record of entry `key` for a store of `capacity` bytes:
/// `REV\nGENERATION\nORIGIN\nFINGERPRINT\nSIZE\nALIGN\nTYPE\nSCHEMA_LEN\n`
/// then the schema and the value, or a tombstone `REV\n-\nORIGIN`.
///
/// The value must be exactly `SIZE` bytes, no larger than the store; the
/// schema must decode and describe a type of that size and alignment.
pub(crate) fn parse_record(key: String, b: &[u8], capacity: usize) -> Result<Record, String> {
    let mut lines = b.splitn(9, |&c| c == b'\n');
    let mut next = |what: &str| {
        lines
            .next()
            .ok_or_else(|| format!("`{key}`: a record without {what}"))
    };
    let rev = number(next("a revision")?, "revision")?;
    let second = next("a generation")?;
    if second == b"-" {
        let origin = text(next("an origin")?, "origin")?;
        if lines.next().is_some() {
            return Err(format!("`{key}`: a removal with more after it"));
        }
        return Ok(Record {
            key,
            rev,
            generation: 0,
            origin,
            body: Body::Removed,
        });
    }
    let generation = number(second, "generation")?;
    let origin = text(next("an origin")?, "origin")?;
    let (fingerprint, build) = value_wire::parse_fingerprint(next("a fingerprint")?)?;
    let size = number(next("a size")?, "size")?;
    let align = number(next("an alignment")?, "alignment")?;
    let type_name = text(next("a type name")?, "type name")?;
    let schema_len = number(next("a schema length")?, "schema length")?;
    let rest = next("a value")?;
    let bad = |why: String| Err(format!("`{key}` from {origin}: {why}"));
    if build != Build::NATIVE {
        return bad(format!(
            "published by a {build} build, and this host is a {} build: its numbers would \
             read as other numbers here",
            Build::NATIVE
        ));
    }
    if size > capacity as u64 {
        return bad(format!(
            "a value of {size} bytes, larger than this store ({capacity} bytes)"
        ));
    }
    if schema_len > crate::schema::MAX_ENCODED_LEN as u64 || schema_len > rest.len() as u64 {
        return bad(format!(
            "a schema of {schema_len} bytes in a record of {}",
            rest.len()
        ));
    }
    let (schema, value) = rest.split_at(schema_len as usize);
    if value.len() as u64 != size {
        return bad(format!("it says {size} bytes and has {}", value.len()));
    }
    if align == 0 || !align.is_power_of_two() || align > 64 || size % align != 0 {
        return bad(format!(
            "an alignment of {align} for a value of {size} bytes"
        ));
    }
    if type_name.is_empty() || type_name.len() > 128 {
        return bad(format!("a type name of {} bytes", type_name.len()));
    }
    if !schema.is_empty() {
        let decoded = Schema::decode(schema).map_err(|e| format!("`{key}`: its schema: {e}"))?;
        if decoded.size != size || decoded.align != align {
            return bad(format!(
                "its schema describes {} bytes aligned to {}, the record {size} aligned to \
                 {align}",
                decoded.size, decoded.align
            ));
        }
    }
    Ok(Record {
        key,
        rev,
        generation,
        origin,
        body: Body::Entry(Entry {
            fingerprint,
            type_name,
            align: align as usize,
            schema: schema.to_vec(),
            value: value.to_vec(),
        }),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn u64_schema() -> Vec<u8> {
        Schema::of::<u64>().encode()
    }

    fn record(schema: &[u8], value: &[u8], size: usize, align: usize) -> Vec<u8> {
        let mut b = b"7\n3\nhost-a\n".to_vec();
        b.extend(content(
            <u64 as crate::Shareable>::FINGERPRINT,
            "u64",
            size,
            align,
            schema,
            value,
        ));
        b
    }

    #[test]
    fn a_record_round_trips() {
        let b = record(&u64_schema(), &5u64.to_ne_bytes(), 8, 8);
        let r = parse_record("k".into(), &b, 1024).unwrap();
        assert_eq!((r.rev, r.generation, r.origin.as_str()), (7, 3, "host-a"));
        let Body::Entry(e) = r.body else { panic!() };
        assert_eq!((e.align, e.type_name.as_str()), (8, "u64"));
        assert_eq!(e.value, 5u64.to_ne_bytes());
        assert_eq!(e.schema, u64_schema());
        let r = parse_announcement(b"a/b\n9\n-\nhost-b", 1024).unwrap();
        assert_eq!((r.key.as_str(), r.rev, r.body), ("a/b", 9, Body::Removed));
    }

    #[test]
    fn forged_records_are_refused_without_panicking() {
        let v = 5u64.to_ne_bytes();
        let s = u64_schema();
        let bad: Vec<Vec<u8>> = vec![
            b"".to_vec(),
            b"x".to_vec(),
            b"1\n-\nhost\nmore".to_vec(),
            b"1\n2\n3".to_vec(),
            // A huge value, a lying size, another alignment.
            record(&s, &v, 1 << 40, 8),
            record(&s, &v, 16, 8),
            record(&s, &v, 8, 3),
            record(&s, &v, 8, 128),
            // A schema that does not decode, or describes another size.
            record(b"garbage", &v, 8, 8),
            record(&Schema::of::<u32>().encode(), &v, 8, 8),
            {
                let mut b = b"1\n2\nhost\n1\n8\n8\nu64\n99999\n".to_vec();
                b.extend_from_slice(&v);
                b
            },
        ];
        for b in &bad {
            assert!(parse_record("k".into(), b, 1024).is_err(), "{b:?} accepted");
        }
        // Too big for a small store.
        assert!(parse_record("k".into(), &record(&s, &v, 8, 8), 4).is_err());
        for key in [&b"bad key"[..], b"", b"\xff", &[b'k'; 200]] {
            let mut msg = key.to_vec();
            msg.extend_from_slice(b"\n1\n-\nhost");
            assert!(parse_announcement(&msg, 1024).is_err());
        }
        assert!(parse_announcement(b"no-newline", 1024).is_err());
        // Every prefix of a good record, and every byte flipped: no panic.
        let good = record(&s, &v, 8, 8);
        for n in 0..good.len() {
            let _ = parse_record("k".into(), &good[..n], 1024);
            let mut flipped = good.clone();
            flipped[n] ^= 0xff;
            let _ = parse_record("k".into(), &flipped, 1024);
        }
    }
}
