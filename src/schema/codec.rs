//! The binary form of a schema that segments carry: [`Schema::encode`],
//! [`Schema::decode`] and [`Schema::validate`], by the rules the [module
//! documentation](super) states.

use core::fmt;

use super::{local_problem, name_problem, sanitize};
use super::{Field, Kind, Schema};
use super::{MAX_ALIGN, MAX_DEPTH, MAX_ENCODED_LEN, MAX_NODES, MAX_SCHEMA_NAME_LEN};

/// The first bytes of an encoded schema.
const MAGIC: [u8; 4] = *b"SHSC";
/// The encoding's version, after the magic.
const VERSION: u8 = 1;
/// Magic and version.
const PREFIX_LEN: usize = MAGIC.len() + 1;

const TAG_INT: u8 = 1;
const TAG_FLOAT: u8 = 2;
const TAG_BOOL: u8 = 3;
const TAG_STR: u8 = 4;
const TAG_LIST: u8 = 5;
const TAG_ARRAY: u8 = 6;
const TAG_STRUCT: u8 = 7;
const TAG_OPAQUE: u8 = 8;

/// `Int` flags.
const FLAG_SIGNED: u8 = 1;
const FLAG_ATOMIC: u8 = 2;

// ---------------------------------------------------------------------------
// Errors

/// A schema that [`Schema::decode`] or [`Schema::validate`] refuses. Its
/// message says what is wrong, in which part of the schema, and where in
/// the encoded bytes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SchemaError {
    message: String,
    /// The part of the schema: `Counter.pos[_]`; empty for the whole.
    path: String,
    /// Where in the encoded bytes, when decoding.
    at: Option<usize>,
}

impl SchemaError {
    fn new(message: String, path: String, at: Option<usize>) -> SchemaError {
        SchemaError { message, path, at }
    }
}

impl fmt::Display for SchemaError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)?;
        match (self.path.is_empty(), self.at) {
            (true, None) => Ok(()),
            (true, Some(at)) => write!(f, " (at byte {at} of the schema)"),
            (false, None) => write!(f, " (in `{}`)", self.path),
            (false, Some(at)) => write!(f, " (in `{}`, at byte {at} of the schema)", self.path),
        }
    }
}

impl std::error::Error for SchemaError {}

// ---------------------------------------------------------------------------
// Encode, decode, validate

impl Schema {
    /// The encoded schema, which [`decode`](Self::decode) reads back; see
    /// the [module documentation](crate::schema) for the format.
    ///
    /// A schema that breaks a rule of `decode` (too deep, too many nodes,
    /// too long, a long name or a name with control characters, a huge
    /// alignment, an inconsistent hand-written part) is adjusted so that
    /// the result always decodes: names are cut or cleaned, alignments
    /// clamped, and the parts that do not fit or do not check out become
    /// `Opaque` with their size. A schema that breaks none of them encodes
    /// as it is.
    pub fn encode(&self) -> Vec<u8> {
        let budget = Cost {
            bytes: MAX_ENCODED_LEN - PREFIX_LEN,
            nodes: MAX_NODES,
        };
        let (fitted, cost) = fit(self, 1, budget);
        let mut out = Vec::with_capacity(PREFIX_LEN + cost.bytes);
        out.extend_from_slice(&MAGIC);
        out.push(VERSION);
        write_node(&mut out, &fitted);
        debug_assert_eq!(out.len(), PREFIX_LEN + cost.bytes);
        out
    }

    /// Reads an encoded schema, checking everything (see the [module
    /// documentation](crate::schema)): damaged or implausible bytes are a
    /// [`SchemaError`], never a panic or a large allocation.
    pub fn decode(bytes: &[u8]) -> Result<Schema, SchemaError> {
        if bytes.len() > MAX_ENCODED_LEN {
            return Err(SchemaError::new(
                format!(
                    "the schema is {} bytes long, more than the {MAX_ENCODED_LEN} allowed",
                    bytes.len()
                ),
                String::new(),
                None,
            ));
        }
        let mut r = Reader {
            bytes,
            pos: 0,
            nodes: 0,
            path: String::new(),
        };
        if bytes.get(..MAGIC.len()) != Some(&MAGIC[..]) {
            return Err(r.error("it does not start with the schema magic `SHSC`"));
        }
        r.pos = MAGIC.len();
        let version = r.u8()?;
        if version != VERSION {
            return Err(r.error(format!(
                "encoding version {version}; this build reads version {VERSION}"
            )));
        }
        r.path.clear();
        let schema = r.node(1)?;
        if r.pos != bytes.len() {
            let extra = bytes.len() - r.pos;
            r.path.clear();
            return Err(r.error(format!("{extra} byte(s) follow the schema")));
        }
        Ok(schema)
    }

    /// Checks a schema in memory by the rules of [`decode`](Self::decode),
    /// the encoded length included.
    pub fn validate(&self) -> Result<(), SchemaError> {
        let mut nodes = 0;
        let mut path = String::new();
        validate_node(self, 1, &mut nodes, &mut path)?;
        let len = PREFIX_LEN + node_len(self);
        if len > MAX_ENCODED_LEN {
            return Err(SchemaError::new(
                format!(
                    "the schema would be {len} bytes long, more than the {MAX_ENCODED_LEN} allowed"
                ),
                String::new(),
                None,
            ));
        }
        Ok(())
    }
}

// ---------------------------------------------------------------------------
// Validation

fn validate_node(
    s: &Schema,
    depth: usize,
    nodes: &mut usize,
    path: &mut String,
) -> Result<(), SchemaError> {
    let err = |message: String, path: &str| SchemaError::new(message, path.to_owned(), None);
    if depth > MAX_DEPTH {
        return Err(err(
            format!("nested more than {MAX_DEPTH} levels deep"),
            path,
        ));
    }
    *nodes += 1;
    if *nodes > MAX_NODES {
        return Err(err(format!("more than {MAX_NODES} nodes"), path));
    }
    if let Some(problem) = name_problem(&s.type_name) {
        return Err(err(problem, path));
    }
    if path.is_empty() {
        path.push_str(&s.type_name);
    }
    let len = path.len();
    match &s.kind {
        Kind::List { elem, .. } | Kind::Array { elem, .. } => {
            path.push_str("[_]");
            validate_node(elem, depth + 1, nodes, path)?;
        }
        Kind::Struct { fields } => {
            for field in fields {
                if let Some(problem) = name_problem(&field.name) {
                    return Err(err(problem, path));
                }
                path.truncate(len);
                path.push('.');
                path.push_str(&field.name);
                validate_node(&field.schema, depth + 1, nodes, path)?;
            }
        }
        _ => {}
    }
    path.truncate(len);
    match local_problem(s) {
        Some(problem) => Err(err(problem, path)),
        None => Ok(()),
    }
}

// ---------------------------------------------------------------------------
// Encoding

/// Bytes a varint of `v` takes.
fn varint_len(v: u64) -> usize {
    let bits = 64 - v.leading_zeros() as usize;
    bits.div_ceil(7).max(1)
}

fn write_varint(out: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        out.push((v as u8) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

fn name_len(name: &str) -> usize {
    varint_len(name.len() as u64) + name.len()
}

fn write_name(out: &mut Vec<u8>, name: &str) {
    write_varint(out, name.len() as u64);
    out.extend_from_slice(name.as_bytes());
}

/// The encoded length of a node, as it is.
fn node_len(s: &Schema) -> usize {
    let head = 1 + name_len(&s.type_name) + varint_len(s.size) + 1;
    head.saturating_add(match &s.kind {
        Kind::Int { .. } => 1,
        Kind::Float | Kind::Bool | Kind::Opaque => 0,
        Kind::Str { capacity } => varint_len(*capacity),
        Kind::List { elem, capacity: n } | Kind::Array { elem, len: n } => {
            varint_len(*n).saturating_add(node_len(elem))
        }
        Kind::Struct { fields } => fields
            .iter()
            .fold(varint_len(fields.len() as u64), |acc, f| {
                acc.saturating_add(name_len(&f.name) + varint_len(f.offset))
                    .saturating_add(node_len(&f.schema))
            }),
    })
}

fn write_node(out: &mut Vec<u8>, s: &Schema) {
    let tag = match &s.kind {
        Kind::Int { .. } => TAG_INT,
        Kind::Float => TAG_FLOAT,
        Kind::Bool => TAG_BOOL,
        Kind::Str { .. } => TAG_STR,
        Kind::List { .. } => TAG_LIST,
        Kind::Array { .. } => TAG_ARRAY,
        Kind::Struct { .. } => TAG_STRUCT,
        Kind::Opaque => TAG_OPAQUE,
    };
    out.push(tag);
    write_name(out, &s.type_name);
    write_varint(out, s.size);
    out.push(s.align.trailing_zeros() as u8);
    match &s.kind {
        Kind::Int { signed, atomic } => {
            out.push(if *signed { FLAG_SIGNED } else { 0 } | if *atomic { FLAG_ATOMIC } else { 0 });
        }
        Kind::Float | Kind::Bool | Kind::Opaque => {}
        Kind::Str { capacity } => write_varint(out, *capacity),
        Kind::List { elem, capacity: n } | Kind::Array { elem, len: n } => {
            write_varint(out, *n);
            write_node(out, elem);
        }
        Kind::Struct { fields } => {
            write_varint(out, fields.len() as u64);
            for field in fields {
                write_name(out, &field.name);
                write_varint(out, field.offset);
                write_node(out, &field.schema);
            }
        }
    }
}

/// Encoded bytes and nodes.
#[derive(Clone, Copy, Debug, Default)]
struct Cost {
    bytes: usize,
    nodes: usize,
}

impl Cost {
    fn within(self, budget: Cost) -> bool {
        self.bytes <= budget.bytes && self.nodes <= budget.nodes
    }

    fn plus(self, other: Cost) -> Cost {
        Cost {
            bytes: self.bytes.saturating_add(other.bytes),
            nodes: self.nodes.saturating_add(other.nodes),
        }
    }

    /// `self - other`, for `other` within `self`.
    fn minus(self, other: Cost) -> Cost {
        Cost {
            bytes: self.bytes - other.bytes,
            nodes: self.nodes - other.nodes,
        }
    }

    fn bytes(bytes: usize) -> Cost {
        Cost { bytes, nodes: 0 }
    }
}

/// The alignment to write for `s`: as it is if valid, clamped to
/// `MAX_ALIGN` if a larger power of two, otherwise 1.
fn fitted_align(s: &Schema) -> u64 {
    let align = if s.align.is_power_of_two() {
        s.align.min(MAX_ALIGN)
    } else {
        1
    };
    if s.size % align == 0 {
        align
    } else {
        1
    }
}

/// What an `Opaque` stand-in for `s` costs (with its name cleaned).
fn opaque_cost(s: &Schema) -> Cost {
    Cost {
        bytes: 1 + name_len(&sanitize(&s.type_name)) + varint_len(s.size) + 1,
        nodes: 1,
    }
}

/// `s` adjusted to pass `validate` within `budget` (which must hold at least
/// `opaque_cost(s)`), and what it costs. Unchanged if it already passes and
/// fits.
fn fit(s: &Schema, depth: usize, budget: Cost) -> (Schema, Cost) {
    let name = sanitize(&s.type_name);
    let (size, align) = (s.size, fitted_align(s));
    let head = Cost {
        bytes: 1 + name_len(&name) + varint_len(size) + 1,
        nodes: 1,
    };
    let opaque = || (Schema::new(name.clone(), size, align, Kind::Opaque), head);
    let (kind, cost) = match &s.kind {
        Kind::Int { signed, atomic } => (
            Kind::Int {
                signed: *signed,
                atomic: *atomic,
            },
            head.plus(Cost::bytes(1)),
        ),
        Kind::Float => (Kind::Float, head),
        Kind::Bool => (Kind::Bool, head),
        Kind::Opaque => (Kind::Opaque, head),
        Kind::Str { capacity } => (
            Kind::Str {
                capacity: *capacity,
            },
            head.plus(Cost::bytes(varint_len(*capacity))),
        ),
        Kind::List { elem, capacity: n } | Kind::Array { elem, len: n } => {
            let own = head.plus(Cost::bytes(varint_len(*n)));
            if depth >= MAX_DEPTH || !own.plus(opaque_cost(elem)).within(budget) {
                return opaque();
            }
            let (elem, used) = fit(elem, depth + 1, budget.minus(own));
            let elem = Box::new(elem);
            let kind = match &s.kind {
                Kind::List { .. } => Kind::List { elem, capacity: *n },
                _ => Kind::Array { elem, len: *n },
            };
            (kind, own.plus(used))
        }
        Kind::Struct { fields } => {
            let own = head.plus(Cost::bytes(varint_len(fields.len() as u64)));
            if !fields.is_empty() && depth >= MAX_DEPTH {
                return opaque();
            }
            let field_head =
                |f: &Field| Cost::bytes(name_len(&sanitize(&f.name)) + varint_len(f.offset));
            // What every field costs at least, as `Opaque`.
            let mins: Vec<Cost> = fields
                .iter()
                .map(|f| field_head(f).plus(opaque_cost(&f.schema)))
                .collect();
            let mut reserved = mins.iter().fold(Cost::default(), |acc, c| acc.plus(*c));
            if !own.plus(reserved).within(budget) {
                return opaque();
            }
            let mut left = budget.minus(own);
            let mut fitted = Vec::with_capacity(fields.len());
            for (field, min) in fields.iter().zip(&mins) {
                reserved = reserved.minus(*min);
                let fhead = field_head(field);
                let (schema, used) =
                    fit(&field.schema, depth + 1, left.minus(reserved).minus(fhead));
                left = left.minus(fhead.plus(used));
                fitted.push(Field::new(sanitize(&field.name), field.offset, schema));
            }
            (Kind::Struct { fields: fitted }, budget.minus(left))
        }
    };
    let fitted = Schema::new(name.clone(), size, align, kind);
    if !cost.within(budget) || local_problem(&fitted).is_some() {
        return opaque();
    }
    (fitted, cost)
}

// ---------------------------------------------------------------------------
// Decoding

struct Reader<'a> {
    bytes: &'a [u8],
    pos: usize,
    nodes: usize,
    /// The part being read, for messages.
    path: String,
}

impl Reader<'_> {
    fn error(&self, message: impl Into<String>) -> SchemaError {
        self.error_at(message, self.pos)
    }

    fn error_at(&self, message: impl Into<String>, at: usize) -> SchemaError {
        SchemaError::new(message.into(), self.path.clone(), Some(at))
    }

    fn truncated(&self) -> SchemaError {
        self.error("the schema is cut short")
    }

    fn u8(&mut self) -> Result<u8, SchemaError> {
        let b = *self.bytes.get(self.pos).ok_or_else(|| self.truncated())?;
        self.pos += 1;
        Ok(b)
    }

    fn varint(&mut self) -> Result<u64, SchemaError> {
        let start = self.pos;
        let mut v: u64 = 0;
        for i in 0..10 {
            let b = self.u8()?;
            let bits = u64::from(b & 0x7f);
            if i == 9 && b > 1 {
                return Err(self.error_at("a number does not fit in 64 bits", start));
            }
            v |= bits << (7 * i);
            if b & 0x80 == 0 {
                if b == 0 && i > 0 {
                    return Err(self.error_at("a number is not in its shortest form", start));
                }
                return Ok(v);
            }
        }
        Err(self.error_at("a number does not fit in 64 bits", start))
    }

    fn name(&mut self) -> Result<String, SchemaError> {
        let start = self.pos;
        let len = self.varint()?;
        if len > MAX_SCHEMA_NAME_LEN as u64 {
            return Err(self.error_at(
                format!("a name of {len} bytes, more than the {MAX_SCHEMA_NAME_LEN} allowed"),
                start,
            ));
        }
        let len = len as usize;
        let bytes = self
            .bytes
            .get(self.pos..self.pos + len)
            .ok_or_else(|| self.truncated())?;
        let name =
            core::str::from_utf8(bytes).map_err(|_| self.error_at("a name is not UTF-8", start))?;
        if let Some(problem) = name_problem(name) {
            return Err(self.error_at(problem, start));
        }
        self.pos += len;
        Ok(name.to_owned())
    }

    fn node(&mut self, depth: usize) -> Result<Schema, SchemaError> {
        let start = self.pos;
        if depth > MAX_DEPTH {
            return Err(self.error(format!("nested more than {MAX_DEPTH} levels deep")));
        }
        self.nodes += 1;
        if self.nodes > MAX_NODES {
            return Err(self.error(format!("more than {MAX_NODES} nodes")));
        }
        let tag = self.u8()?;
        if !(TAG_INT..=TAG_OPAQUE).contains(&tag) {
            return Err(self.error_at(format!("unknown kind tag {tag}"), start));
        }
        let type_name = self.name()?;
        if self.path.is_empty() {
            self.path.push_str(&type_name);
        }
        let size = self.varint()?;
        let align_pos = self.pos;
        let align_log2 = self.u8()?;
        if align_log2 > MAX_ALIGN.trailing_zeros() as u8 {
            return Err(self.error_at(
                format!("`{type_name}` has alignment 2^{align_log2}, more than {MAX_ALIGN}"),
                align_pos,
            ));
        }
        let align = 1u64 << align_log2;
        let len = self.path.len();
        let kind = match tag {
            TAG_INT => {
                let flags_pos = self.pos;
                let flags = self.u8()?;
                if flags & !(FLAG_SIGNED | FLAG_ATOMIC) != 0 {
                    return Err(
                        self.error_at(format!("unknown integer flags {flags:#04x}"), flags_pos)
                    );
                }
                Kind::Int {
                    signed: flags & FLAG_SIGNED != 0,
                    atomic: flags & FLAG_ATOMIC != 0,
                }
            }
            TAG_FLOAT => Kind::Float,
            TAG_BOOL => Kind::Bool,
            TAG_STR => Kind::Str {
                capacity: self.varint()?,
            },
            TAG_LIST | TAG_ARRAY => {
                let n = self.varint()?;
                self.path.push_str("[_]");
                let elem = Box::new(self.node(depth + 1)?);
                self.path.truncate(len);
                if tag == TAG_LIST {
                    Kind::List { elem, capacity: n }
                } else {
                    Kind::Array { elem, len: n }
                }
            }
            TAG_STRUCT => {
                let count_pos = self.pos;
                let count = self.varint()?;
                // Each field takes at least 5 bytes, and counts a node.
                let left = (self.bytes.len() - self.pos) as u64;
                if count > left / 5 || count > (MAX_NODES - self.nodes) as u64 {
                    return Err(self.error_at(
                        format!(
                            "`{type_name}` claims {count} fields, more than the schema can hold"
                        ),
                        count_pos,
                    ));
                }
                let mut fields = Vec::with_capacity(count as usize);
                for _ in 0..count {
                    self.path.truncate(len);
                    let name = self.name()?;
                    self.path.push('.');
                    self.path.push_str(&name);
                    let offset = self.varint()?;
                    let schema = self.node(depth + 1)?;
                    fields.push(Field::new(name, offset, schema));
                }
                self.path.truncate(len);
                Kind::Struct { fields }
            }
            _ => Kind::Opaque,
        };
        let schema = Schema::new(type_name, size, align, kind);
        if let Some(problem) = local_problem(&schema) {
            return Err(self.error_at(problem, start));
        }
        Ok(schema)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn varints_round_trip_in_their_shortest_form() {
        for v in [0, 1, 127, 128, 300, u32::MAX as u64, u64::MAX - 1, u64::MAX] {
            let mut out = Vec::new();
            write_varint(&mut out, v);
            assert_eq!(out.len(), varint_len(v), "{v}");
            let mut r = Reader {
                bytes: &out,
                pos: 0,
                nodes: 0,
                path: String::new(),
            };
            assert_eq!(r.varint().unwrap(), v);
            assert_eq!(r.pos, out.len());
        }
        for bad in [
            &[0x80, 0x00][..],
            &[0xff; 10][..],
            &[0x80; 11][..],
            &[0x80][..],
        ] {
            let mut r = Reader {
                bytes: bad,
                pos: 0,
                nodes: 0,
                path: String::new(),
            };
            assert!(r.varint().is_err(), "{bad:?}");
        }
    }

    #[test]
    fn the_documented_encoding_of_u64() {
        let bytes = Schema::of::<u64>().encode();
        let align_log2 = core::mem::align_of::<u64>().trailing_zeros() as u8;
        assert_eq!(
            bytes,
            b"SHSC\x01\x01\x03u64\x08_\x00".map(|b| if b == b'_' { align_log2 } else { b })
        );
    }
}
