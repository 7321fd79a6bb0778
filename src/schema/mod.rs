//! Type schemas: what a segment's value is made of, field by field, so that
//! a tool without the Rust type at hand can show it.
//!
//! `#[derive(Shareable)]` records a [`Schema`] of the struct (its name, size
//! and alignment, and each field's name, offset and schema), and the library
//! writes it, [encoded](Schema::encode), into every segment it creates. A
//! tool reads it back with [`Schema::decode`], which checks everything and
//! returns a [`SchemaError`] for anything damaged or implausible, and then
//! turns the value's bytes into a [`Value`] with [`Schema::value`], which
//! prints as Rust would write it, or as JSON:
//!
//! ```
//! use shmstore::{Schema, Shareable, ShmStr};
//!
//! #[derive(Shareable, Clone, Copy, Default)]
//! #[repr(C)]
//! struct Counter { value: u64, last_pid: u32, name: ShmStr<8> }
//!
//! let encoded = Schema::of::<Counter>().encode();
//! let schema = Schema::decode(&encoded)?; // in the tool, from the segment
//!
//! let mut c = Counter { value: 1234, last_pid: 4242, ..Default::default() };
//! c.name.set("abc").unwrap();
//! # fn bytes_of(c: &Counter) -> Vec<u8> {
//! #     let mut b = c.value.to_ne_bytes().to_vec();
//! #     b.extend_from_slice(&c.last_pid.to_ne_bytes());
//! #     b.extend_from_slice(&3u32.to_le_bytes());
//! #     b.extend_from_slice(b"abc\0\0\0\0\0");
//! #     b
//! # }
//! let value = schema.value(&bytes_of(&c)); // the value's bytes, from the segment
//! assert_eq!(value.to_string(), r#"Counter { value: 1234, last_pid: 4242, name: "abc" }"#);
//! assert_eq!(value.to_json(), r#"{"value":1234,"last_pid":4242,"name":"abc"}"#);
//! # Ok::<(), shmstore::schema::SchemaError>(())
//! ```
//!
//! # What a schema says
//!
//! Every node has a type name, a size and an alignment, and a [`Kind`]:
//! integers (signed or not, atomic or not; the width is the size), floats,
//! [`ShmBool`](crate::ShmBool), [`ShmStr`](crate::ShmStr),
//! [`ShmVec`](crate::ShmVec), arrays, structs with their fields, and
//! `Opaque` for a type implemented by hand without a schema (shown as
//! bytes). Numbers are read in the host's byte order (a segment never leaves
//! its host); the lengths of `ShmStr` and `ShmVec` are little-endian, as
//! their layouts say.
//!
//! # Encoding
//!
//! All integers marked *varint* are unsigned LEB128 (7 bits per byte, least
//! significant group first, high bit set on every byte but the last), in
//! their shortest form and at most 64 bits.
//!
//! ```text
//! schema := "SHSC" version:u8 (= 1) node           nothing may follow
//! node   := tag:u8 name size:varint align_log2:u8 (<= 12) body
//! name   := len:varint (<= 128) UTF-8 bytes (no control characters)
//! body   := tag 1 Int:    flags:u8 (bit 0 signed, bit 1 atomic, others 0)
//!         | tag 2 Float:  (nothing)
//!         | tag 3 Bool:   (nothing)
//!         | tag 4 Str:    capacity:varint
//!         | tag 5 List:   capacity:varint node         (the item)
//!         | tag 6 Array:  len:varint node              (the element)
//!         | tag 7 Struct: count:varint count x (name offset:varint node)
//!         | tag 8 Opaque: (nothing)
//! ```
//!
//! `u64` is `01 03 "u64" 08 03 00`: tag 1, name, size 8, alignment 2³,
//! unsigned and not atomic.
//!
//! # Validation
//!
//! [`Schema::decode`] trusts nothing. It refuses, with a [`SchemaError`]
//! that says what is wrong and where:
//!
//! - more than [`MAX_ENCODED_LEN`] bytes, a wrong magic or version, an
//!   unknown tag, a truncated or over-long varint, bytes left over;
//! - nesting deeper than [`MAX_DEPTH`] levels, more than [`MAX_NODES`] nodes
//!   in all (every field, element and item type counts one, whatever the
//!   array's length);
//! - a name that is not UTF-8, is longer than [`MAX_NAME_LEN`] bytes, holds a
//!   control character, or repeats another field's name in the same struct;
//! - an alignment that is not a power of two up to [`MAX_ALIGN`], a size that
//!   is not a multiple of it;
//! - an integer not 1, 2, 4 or 8 bytes wide, a float not 4 or 8, a bool not
//!   1, any of them aligned to more than its size (an atomic: not exactly
//!   its size);
//! - a `Str` whose size is not `4 + capacity` or whose alignment is not 1
//!   or whose capacity does not fit in 32 bits; a `List` whose size is not
//!   `8 + capacity * item size`, whose alignment is not the item's, or whose
//!   item is aligned to more than 8 (these are the layouts of `ShmStr` and
//!   `ShmVec`); an array whose size is not `len * element size` or whose
//!   alignment is not the element's (all products checked for overflow);
//! - a field that runs past its struct, sits at an offset that is not a
//!   multiple of its alignment, or is aligned to more than its struct.
//!
//! Lengths read from the bytes are checked against what is left before
//! anything is allocated, so a decode allocates at most a small multiple of
//! its input. [`Schema::validate`] makes the same checks on a schema in
//! memory.
//!
//! [`Schema::encode`] always produces bytes that `decode` accepts: a schema
//! from real types passes every check and encodes as it is (so
//! `decode(encode(s)) == s`) unless it is too big, and whatever breaks a
//! rule (a name over 128 bytes is cut, one with control characters has them
//! replaced, an alignment over 4096 is written as 4096, a type too deep,
//! too big or inconsistent becomes `Opaque` with its size) is adjusted so
//! that it does not.
//!
//! [`Schema::value`] never panics, whatever the schema and the bytes.

use core::fmt;
use std::collections::HashSet;
use std::fmt::Write as _;

/// The deepest nesting a schema may have: the top-level type is level 1,
/// its fields, elements or items level 2, and so on.
pub const MAX_DEPTH: usize = 16;
/// The most nodes (the top-level type, and every field, element and item
/// type under it) a schema may have.
pub const MAX_NODES: usize = 4096;
/// The longest encoded schema, in bytes.
pub const MAX_ENCODED_LEN: usize = 64 * 1024;
/// The longest type or field name, in bytes.
pub const MAX_NAME_LEN: usize = 128;
/// The largest alignment.
pub const MAX_ALIGN: u64 = 4096;

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

/// Lists longer than this print their first `SHOWN_ITEMS` items only.
const SHOWN_ITEMS: usize = 32;
/// Byte strings (`Value::Bytes`) longer than this print their first
/// `SHOWN_BYTES` bytes only.
const SHOWN_BYTES: usize = 256;

// ---------------------------------------------------------------------------
// The model

/// What a type is made of: its name, size, alignment and [`Kind`].
///
/// Get the schema of a type with [`Schema::of`]; `#[derive(Shareable)]`
/// writes it for structs. See the [module documentation](self).
#[derive(Clone, Debug, PartialEq)]
#[non_exhaustive]
pub struct Schema {
    /// The type's name: a struct's name as written, `u64`, `AtomicU32`,
    /// `ShmStr`, `ShmVec`, `ShmBool`, or `array` for arrays (the
    /// `TYPE_NAME` of its [`Shareable`] impl).
    pub type_name: String,
    /// The size in bytes.
    pub size: u64,
    /// The alignment in bytes.
    pub align: u64,
    /// What it is.
    pub kind: Kind,
}

/// What kind of type a [`Schema`] describes.
#[derive(Clone, Debug, PartialEq)]
#[non_exhaustive]
pub enum Kind {
    /// An integer or an atomic integer, `size` bytes wide (1, 2, 4 or 8),
    /// in the host's byte order.
    Int {
        /// `i8`..`i64` and their atomics.
        signed: bool,
        /// `AtomicU8`..`AtomicI64`.
        atomic: bool,
    },
    /// `f32` (size 4) or `f64` (size 8).
    Float,
    /// [`ShmBool`](crate::ShmBool): one byte, any non-zero byte is true.
    Bool,
    /// [`ShmStr<N>`](crate::ShmStr): a little-endian `u32` length, clamped
    /// to the capacity, then `capacity` bytes of UTF-8. Size `4 + capacity`.
    Str {
        /// `N`.
        capacity: u64,
    },
    /// [`ShmVec<T, N>`](crate::ShmVec): a little-endian `u64` length,
    /// clamped to the capacity, then `capacity` items at offset 8. Size
    /// `8 + capacity * elem.size`.
    List {
        /// The item's schema.
        elem: Box<Schema>,
        /// `N`.
        capacity: u64,
    },
    /// `[T; N]`: `len` elements, one after the other.
    Array {
        /// The element's schema.
        elem: Box<Schema>,
        /// `N`.
        len: u64,
    },
    /// A struct with `#[derive(Shareable)]`, fields in declaration order.
    Struct {
        /// Its fields; a tuple struct's are named `0`, `1`, ...
        fields: Vec<Field>,
    },
    /// A type that implements `Shareable` by hand without giving a schema:
    /// its value is shown as bytes.
    Opaque,
}

/// A field of a struct: its name, where it starts, and its type's schema.
#[derive(Clone, Debug, PartialEq)]
#[non_exhaustive]
pub struct Field {
    /// The name as written (without `r#`), or the index in a tuple struct.
    pub name: String,
    /// The offset from the start of the struct, in bytes.
    pub offset: u64,
    /// The field's type.
    pub schema: Schema,
}

impl Schema {
    /// A schema made of these parts, for a hand-written
    /// [`Shareable::schema`].
    pub fn new(type_name: impl Into<String>, size: u64, align: u64, kind: Kind) -> Schema {
        Schema {
            type_name: type_name.into(),
            size,
            align,
            kind,
        }
    }

    /// `schema` if it has this size and alignment, `Opaque` with them
    /// otherwise: [`Schema::of`] for the derive, which spells the field's
    /// type in `<F as Shareable>` only.
    pub(crate) fn checked(schema: Schema, type_name: &str, size: usize, align: usize) -> Schema {
        let (size, align) = (size as u64, align as u64);
        if schema.size == size && schema.align == align {
            schema
        } else {
            Schema::new(type_name, size, align, Kind::Opaque)
        }
    }

    /// The schema of a primitive `Shareable` type, from its name.
    pub(crate) fn primitive(name: &'static str, size: usize, align: usize) -> Schema {
        let atomic = name.starts_with("Atomic");
        let kind = match name.trim_start_matches("Atomic").as_bytes().first() {
            Some(b'f') => Kind::Float,
            Some(b'i' | b'I') => Kind::Int {
                signed: true,
                atomic,
            },
            _ => Kind::Int {
                signed: false,
                atomic,
            },
        };
        Schema::new(name, size as u64, align as u64, kind)
    }

    /// The encoded schema, which [`decode`](Self::decode) reads back; see
    /// the [module documentation](self) for the format.
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
    /// documentation](self)): damaged or implausible bytes are a
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

    /// The value of this type held in `bytes`, which should be exactly
    /// [`size`](Self::size) bytes: the value's bytes in a segment.
    ///
    /// Never panics, whatever the schema and the bytes: bytes of another
    /// length, and parts that do not agree with their schema, come out as
    /// [`Value::Bytes`]. Lengths of strings and lists are clamped to their
    /// capacities, as `ShmStr` and `ShmVec` do, and strings that are not
    /// UTF-8 come out as [`Value::BadStr`]. A value has at most
    /// `16 * bytes.len() + 65536` parts (only arrays of zero-sized elements
    /// can come near); past that, the rest is shown as bytes.
    pub fn value(&self, bytes: &[u8]) -> Value {
        let mut budget = (bytes.len() as u64)
            .saturating_mul(16)
            .saturating_add(65536);
        value_of(self, bytes, 1, &mut budget)
    }

    /// The type as Rust writes it: `u64`, `[u8; 4]`, `ShmStr<16>`,
    /// `ShmVec<u16, 8>`, a struct's name; `_` for parts nested deeper than
    /// [`MAX_DEPTH`].
    fn write_type(&self, out: &mut dyn fmt::Write, depth: usize) -> fmt::Result {
        if depth > MAX_DEPTH {
            return out.write_str("_");
        }
        match &self.kind {
            Kind::Str { capacity } => write!(out, "ShmStr<{capacity}>"),
            Kind::List { elem, capacity } => {
                out.write_str("ShmVec<")?;
                elem.write_type(out, depth + 1)?;
                write!(out, ", {capacity}>")
            }
            Kind::Array { elem, len } => {
                out.write_str("[")?;
                elem.write_type(out, depth + 1)?;
                write!(out, "; {len}]")
            }
            _ => out.write_str(&self.type_name),
        }
    }

    /// The layout, one line per field with its offset from the start of the
    /// outermost value, nested structs indented.
    fn write_layout(&self, f: &mut fmt::Formatter<'_>, base: u64, depth: usize) -> fmt::Result {
        let Kind::Struct { fields } = &self.kind else {
            return Ok(());
        };
        for field in fields {
            let offset = base.saturating_add(field.offset);
            write!(
                f,
                "\n{offset:>8}  {:indent$}{}: ",
                "",
                field.name,
                indent = depth * 4
            )?;
            field.schema.write_type(f, depth + 2)?;
            match field.schema.size {
                1 => f.write_str(" (1 byte)")?,
                size => write!(f, " ({size} bytes)")?,
            }
            if depth < MAX_DEPTH {
                field.schema.write_layout(f, offset, depth + 1)?;
            }
        }
        Ok(())
    }
}

/// The type as Rust writes it (`Counter`, `[u32; 4]`, `ShmStr<16>`); with
/// `{:#}`, the layout: the size and alignment, then each field (nested
/// structs' too) with its offset and size.
impl fmt::Display for Schema {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.write_type(f, 1)?;
        if f.alternate() {
            write!(f, " ({} bytes, align {})", self.size, self.align)?;
            self.write_layout(f, 0, 0)?;
        }
        Ok(())
    }
}

impl Field {
    /// A field made of these parts, for a hand-written
    /// [`Shareable::schema`].
    pub fn new(name: impl Into<String>, offset: u64, schema: Schema) -> Field {
        Field {
            name: name.into(),
            offset,
            schema,
        }
    }
}

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
// Checks shared by decode, validate and encode

/// Why `name` cannot be a type or field name.
fn name_problem(name: &str) -> Option<String> {
    if name.len() > MAX_NAME_LEN {
        Some(format!(
            "a name of {} bytes, more than the {MAX_NAME_LEN} allowed",
            name.len()
        ))
    } else if name.chars().any(char::is_control) {
        Some(format!("the name {name:?} holds a control character"))
    } else {
        None
    }
}

/// `name` made acceptable: control characters replaced, cut to
/// `MAX_NAME_LEN` bytes at a character boundary.
fn sanitize(name: &str) -> String {
    let mut out: String = name
        .chars()
        .map(|c| if c.is_control() { '\u{fffd}' } else { c })
        .collect();
    if out.len() > MAX_NAME_LEN {
        let mut end = MAX_NAME_LEN;
        while !out.is_char_boundary(end) {
            end -= 1;
        }
        out.truncate(end);
    }
    out
}

/// What is wrong with `s` itself, given its children (which are checked on
/// their own): sizes, alignments and offsets. Names are checked apart.
fn local_problem(s: &Schema) -> Option<String> {
    let (size, align) = (s.size, s.align);
    let name = &s.type_name;
    if !align.is_power_of_two() || align > MAX_ALIGN {
        return Some(format!(
            "`{name}` has alignment {align}, which is not a power of two up to {MAX_ALIGN}"
        ));
    }
    if size % align != 0 {
        return Some(format!(
            "`{name}` is {size} bytes, not a multiple of its alignment {align}"
        ));
    }
    match &s.kind {
        Kind::Int { atomic, .. } => {
            if !matches!(size, 1 | 2 | 4 | 8) {
                return Some(format!(
                    "the integer `{name}` is {size} bytes wide (1, 2, 4 or 8)"
                ));
            }
            if *atomic && align != size {
                return Some(format!(
                    "the atomic `{name}` is {size} bytes wide but aligned to {align}"
                ));
            }
            if align > size {
                return Some(format!(
                    "the integer `{name}` is {size} bytes wide but aligned to {align}"
                ));
            }
        }
        Kind::Float => {
            if !matches!(size, 4 | 8) {
                return Some(format!("the float `{name}` is {size} bytes wide (4 or 8)"));
            }
            if align > size {
                return Some(format!(
                    "the float `{name}` is {size} bytes wide but aligned to {align}"
                ));
            }
        }
        Kind::Bool => {
            if size != 1 {
                return Some(format!("the flag `{name}` is {size} bytes (1)"));
            }
        }
        Kind::Str { capacity } => {
            if *capacity > u64::from(u32::MAX) {
                return Some(format!(
                    "the string `{name}` has capacity {capacity}, more than a 32-bit length can say"
                ));
            }
            if align != 1 || Some(size) != capacity.checked_add(4) {
                return Some(format!(
                    "the string `{name}` of capacity {capacity} is {size} bytes aligned to \
                     {align}; its layout is 4 + {capacity} bytes aligned to 1"
                ));
            }
        }
        Kind::List { elem, capacity } => {
            let expected = elem
                .size
                .checked_mul(*capacity)
                .and_then(|items| items.checked_add(8));
            if elem.align > 8 {
                return Some(format!(
                    "the list `{name}` has items aligned to {}, more than 8",
                    elem.align
                ));
            }
            if Some(size) != expected || align != elem.align {
                return Some(format!(
                    "the list `{name}` of {capacity} items of {} bytes is {size} bytes aligned \
                     to {align}; its layout is 8 + {capacity} x {} bytes aligned to {}",
                    elem.size, elem.size, elem.align
                ));
            }
        }
        Kind::Array { elem, len } => {
            if Some(size) != elem.size.checked_mul(*len) || align != elem.align {
                return Some(format!(
                    "the array `{name}` of {len} elements of {} bytes (aligned to {}) is {size} \
                     bytes aligned to {align}",
                    elem.size, elem.align
                ));
            }
        }
        Kind::Struct { fields } => {
            let mut names = HashSet::with_capacity(fields.len());
            for field in fields {
                let (fname, offset) = (&field.name, field.offset);
                let (fsize, falign) = (field.schema.size, field.schema.align);
                if !names.insert(fname.as_str()) {
                    return Some(format!(
                        "the struct `{name}` has two fields named `{fname}`"
                    ));
                }
                if offset.checked_add(fsize).is_none_or(|end| end > size) {
                    return Some(format!(
                        "field `{fname}` at offset {offset} ({fsize} bytes) runs past the \
                         {size}-byte struct `{name}`"
                    ));
                }
                if falign > align {
                    return Some(format!(
                        "field `{fname}` is aligned to {falign}, more than its struct `{name}` ({align})"
                    ));
                }
                // `falign` is a power of two: the child was checked first.
                if falign == 0 || offset % falign != 0 {
                    return Some(format!(
                        "field `{fname}` at offset {offset} is not aligned to {falign}"
                    ));
                }
            }
        }
        Kind::Opaque => {}
    }
    None
}

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
        if len > MAX_NAME_LEN as u64 {
            return Err(self.error_at(
                format!("a name of {len} bytes, more than the {MAX_NAME_LEN} allowed"),
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

// ---------------------------------------------------------------------------
// Values

/// A value read through a [`Schema`] by [`Schema::value`].
///
/// `Display` writes it as Rust would (`{:#}` on several lines, indented),
/// [`to_json`](Value::to_json) as JSON:
///
/// ```text
/// Counter { value: 1234, last_pid: 4242, name: "abc", pos: [1.5, 2], flags: true }
/// {"value":1234,"last_pid":4242,"name":"abc","pos":[1.5,2],"flags":true}
/// ```
#[derive(Clone, Debug, PartialEq)]
#[non_exhaustive]
pub enum Value {
    /// An unsigned integer or atomic.
    UInt(u64),
    /// A signed integer or atomic.
    Int(i64),
    /// An `f64`, or an `f32` as the `f64` closest to its shortest decimal
    /// form (so that it prints as Rust prints the `f32`: `0.1`, not
    /// `0.10000000149011612`); `as f32` gives the stored `f32` back.
    Float(f64),
    /// A [`ShmBool`](crate::ShmBool): any non-zero byte is true.
    Bool(bool),
    /// A [`ShmStr`](crate::ShmStr) holding valid UTF-8.
    Str(String),
    /// A `ShmStr` holding bytes that are not UTF-8 (the length clamped to
    /// the capacity, as `ShmStr` does).
    BadStr(Vec<u8>),
    /// An array, or a [`ShmVec`](crate::ShmVec)'s items (the length clamped
    /// to the capacity, as `ShmVec` does).
    List(Vec<Value>),
    /// A struct: its name, and its fields in order.
    Struct {
        /// The struct's name.
        name: String,
        /// Each field's name and value.
        fields: Vec<(String, Value)>,
    },
    /// The bytes of an `Opaque` type, or of a part whose bytes do not match
    /// its schema.
    Bytes(Vec<u8>),
}

fn value_of(s: &Schema, bytes: &[u8], depth: usize, budget: &mut u64) -> Value {
    if bytes.len() as u64 != s.size || depth > MAX_DEPTH || *budget == 0 {
        return Value::Bytes(bytes.to_vec());
    }
    *budget -= 1;
    match &s.kind {
        Kind::Int { signed, .. } => {
            int(bytes, *signed).unwrap_or_else(|| Value::Bytes(bytes.to_vec()))
        }
        Kind::Float => match *bytes {
            [a, b, c, d] => Value::Float(f32_as_f64(f32::from_ne_bytes([a, b, c, d]))),
            [a, b, c, d, e, f, g, h] => Value::Float(f64::from_ne_bytes([a, b, c, d, e, f, g, h])),
            _ => Value::Bytes(bytes.to_vec()),
        },
        Kind::Bool => match *bytes {
            [b] => Value::Bool(b != 0),
            _ => Value::Bytes(bytes.to_vec()),
        },
        Kind::Str { capacity } => {
            let (Some(len), Some(text)) = (bytes.get(..4), bytes.get(4..)) else {
                return Value::Bytes(bytes.to_vec());
            };
            if text.len() as u64 != *capacity {
                return Value::Bytes(bytes.to_vec());
            }
            let len = u32::from_le_bytes([len[0], len[1], len[2], len[3]]) as usize;
            let text = &text[..len.min(text.len())];
            match core::str::from_utf8(text) {
                Ok(s) => Value::Str(s.to_owned()),
                Err(_) => Value::BadStr(text.to_vec()),
            }
        }
        Kind::List { elem, capacity } => {
            let (Some(len), Some(items)) = (bytes.get(..8), bytes.get(8..)) else {
                return Value::Bytes(bytes.to_vec());
            };
            if Some(items.len() as u64) != elem.size.checked_mul(*capacity) {
                return Value::Bytes(bytes.to_vec());
            }
            let mut len_le = [0u8; 8];
            len_le.copy_from_slice(len);
            let len = u64::from_le_bytes(len_le).min(*capacity);
            match elements(elem, items, len, depth, budget) {
                Some(items) => Value::List(items),
                None => Value::Bytes(bytes.to_vec()),
            }
        }
        Kind::Array { elem, len } => {
            if Some(s.size) != elem.size.checked_mul(*len) {
                return Value::Bytes(bytes.to_vec());
            }
            match elements(elem, bytes, *len, depth, budget) {
                Some(items) => Value::List(items),
                None => Value::Bytes(bytes.to_vec()),
            }
        }
        Kind::Struct { fields } => {
            let mut values = Vec::with_capacity(fields.len().min(bytes.len().saturating_add(64)));
            for field in fields {
                let start = usize::try_from(field.offset)
                    .unwrap_or(usize::MAX)
                    .min(bytes.len());
                let end = usize::try_from(field.offset.saturating_add(field.schema.size))
                    .unwrap_or(usize::MAX)
                    .min(bytes.len());
                let value = value_of(&field.schema, &bytes[start..end], depth + 1, budget);
                values.push((field.name.clone(), value));
            }
            Value::Struct {
                name: s.type_name.clone(),
                fields: values,
            }
        }
        Kind::Opaque => Value::Bytes(bytes.to_vec()),
    }
}

/// An integer of `bytes.len()` bytes (1, 2, 4 or 8), in the host's order.
fn int(bytes: &[u8], signed: bool) -> Option<Value> {
    Some(match bytes.len() {
        1 => {
            let [b] = <[u8; 1]>::try_from(bytes).ok()?;
            if signed {
                Value::Int(i64::from(b as i8))
            } else {
                Value::UInt(u64::from(b))
            }
        }
        2 => {
            let b = <[u8; 2]>::try_from(bytes).ok()?;
            if signed {
                Value::Int(i64::from(i16::from_ne_bytes(b)))
            } else {
                Value::UInt(u64::from(u16::from_ne_bytes(b)))
            }
        }
        4 => {
            let b = <[u8; 4]>::try_from(bytes).ok()?;
            if signed {
                Value::Int(i64::from(i32::from_ne_bytes(b)))
            } else {
                Value::UInt(u64::from(u32::from_ne_bytes(b)))
            }
        }
        8 => {
            let b = <[u8; 8]>::try_from(bytes).ok()?;
            if signed {
                Value::Int(i64::from_ne_bytes(b))
            } else {
                Value::UInt(u64::from_ne_bytes(b))
            }
        }
        _ => return None,
    })
}

/// The first `count` elements of `elem` packed in `bytes` (which holds at
/// least that many), or `None` if the budget runs out.
fn elements(
    elem: &Schema,
    bytes: &[u8],
    count: u64,
    depth: usize,
    budget: &mut u64,
) -> Option<Vec<Value>> {
    let size = usize::try_from(elem.size).ok()?;
    if count > *budget {
        return None;
    }
    // `count` is at most the budget, itself bounded by the input's length.
    let mut items = Vec::with_capacity(count as usize);
    for i in 0..count as usize {
        if *budget == 0 {
            return None;
        }
        let start = i.checked_mul(size)?;
        let part = bytes.get(start..start.checked_add(size)?)?;
        items.push(value_of(elem, part, depth + 1, budget));
    }
    Some(items)
}

/// The `f64` closest to the shortest decimal form of `x`, if that gives `x`
/// back; `x` exactly otherwise.
fn f32_as_f64(x: f32) -> f64 {
    if !x.is_finite() {
        return f64::from(x);
    }
    match x.to_string().parse::<f64>() {
        Ok(v) if v as f32 == x => v,
        _ => f64::from(x),
    }
}

/// A float as Rust's `Display` writes it (`2`, `1.5`, `NaN`, `inf`), with
/// an exponent for very large and very small magnitudes (`1e300`, `2.5e-7`),
/// as `Debug` does.
fn write_float(out: &mut dyn fmt::Write, v: f64) -> fmt::Result {
    let abs = v.abs();
    if v.is_finite() && abs != 0.0 && !(1e-4..1e16).contains(&abs) {
        write!(out, "{v:e}")
    } else {
        write!(out, "{v}")
    }
}

fn write_hex(out: &mut dyn fmt::Write, bytes: &[u8], sep: &str) -> fmt::Result {
    for (i, b) in bytes.iter().enumerate() {
        if i > 0 {
            out.write_str(sep)?;
        }
        write!(out, "{b:02x}")?;
    }
    Ok(())
}

/// Whether a value prints on one line even with `{:#}`.
fn is_scalar(v: &Value) -> bool {
    match v {
        Value::List(items) => items
            .iter()
            .all(|v| !matches!(v, Value::List(_) | Value::Struct { .. })),
        Value::Struct { .. } => false,
        _ => true,
    }
}

/// Field names `0`, `1`, ...: a tuple struct.
fn is_tuple(fields: &[(String, Value)]) -> bool {
    !fields.is_empty()
        && fields
            .iter()
            .enumerate()
            .all(|(i, (name, _))| *name == i.to_string())
}

/// Writes `v`; `indent` is `Some(level)` for `{:#}`.
fn write_value(f: &mut fmt::Formatter<'_>, v: &Value, indent: Option<usize>) -> fmt::Result {
    let newline = |f: &mut fmt::Formatter<'_>, level: usize| write!(f, "\n{:1$}", "", level * 4);
    match v {
        Value::UInt(n) => write!(f, "{n}"),
        Value::Int(n) => write!(f, "{n}"),
        Value::Float(x) => write_float(f, *x),
        Value::Bool(b) => write!(f, "{b}"),
        Value::Str(s) => write!(f, "{s:?}"),
        Value::BadStr(b) => write!(f, "b\"{}\"", b.escape_ascii()),
        Value::Bytes(b) => {
            f.write_str("<")?;
            write_hex(f, &b[..b.len().min(SHOWN_BYTES)], " ")?;
            if b.len() > SHOWN_BYTES {
                write!(f, " ... ({} more)", b.len() - SHOWN_BYTES)?;
            }
            f.write_str(">")
        }
        Value::List(items) => {
            let shown = &items[..items.len().min(SHOWN_ITEMS)];
            let more = items.len() - shown.len();
            match indent {
                Some(level) if !is_scalar(v) => {
                    f.write_str("[")?;
                    for item in shown {
                        newline(f, level + 1)?;
                        write_value(f, item, Some(level + 1))?;
                        f.write_str(",")?;
                    }
                    if more > 0 {
                        newline(f, level + 1)?;
                        write!(f, "... ({more} more)")?;
                    }
                    newline(f, level)?;
                    f.write_str("]")
                }
                _ => {
                    f.write_str("[")?;
                    for (i, item) in shown.iter().enumerate() {
                        if i > 0 {
                            f.write_str(", ")?;
                        }
                        write_value(f, item, None)?;
                    }
                    if more > 0 {
                        write!(f, ", ... ({more} more)")?;
                    }
                    f.write_str("]")
                }
            }
        }
        Value::Struct { name, fields } => {
            f.write_str(name)?;
            if fields.is_empty() {
                return Ok(());
            }
            let tuple = is_tuple(fields);
            let (open, close) = if tuple { ("(", ")") } else { (" {", "}") };
            f.write_str(open)?;
            match indent {
                Some(level) => {
                    for (name, value) in fields {
                        newline(f, level + 1)?;
                        if !tuple {
                            write!(f, "{name}: ")?;
                        }
                        write_value(f, value, Some(level + 1))?;
                        f.write_str(",")?;
                    }
                    newline(f, level)?;
                }
                None => {
                    for (i, (name, value)) in fields.iter().enumerate() {
                        f.write_str(match (i, tuple) {
                            (0, true) => "",
                            (0, false) => " ",
                            _ => ", ",
                        })?;
                        if !tuple {
                            write!(f, "{name}: ")?;
                        }
                        write_value(f, value, None)?;
                    }
                    if !tuple {
                        f.write_str(" ")?;
                    }
                }
            }
            f.write_str(close)
        }
    }
}

/// As Rust writes values: `Counter { value: 1234, name: "abc", pos: [1.5, 2],
/// flags: true }`; tuple structs as `Pair(1, 2)`; strings quoted and
/// escaped as `Debug` does; strings that are not UTF-8 as `b"ab\xff"`;
/// bytes in hex as `<0a ff 00>` (the first 256, then `... (N more)`);
/// lists of more than 32 items as their first 32 then `, ... (N more)`.
/// With `{:#}`, structs and lists of structs or lists take one line per
/// item, indented by four spaces.
impl fmt::Display for Value {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let indent = f.alternate().then_some(0);
        write_value(f, self, indent)
    }
}

impl Value {
    /// The value as JSON, on one line: structs as objects (fields in
    /// order), arrays and lists as arrays (every item), integers as
    /// numbers (all 64 bits, whatever a reader's doubles keep), finite
    /// floats as numbers and NaN and infinities as `null`, strings as
    /// strings, bytes as a string of hex digits (`"0aff00"`), and strings
    /// that are not UTF-8 as `{"invalid_utf8": "<hex>"}`.
    pub fn to_json(&self) -> String {
        let mut out = String::new();
        // Writing to a String cannot fail.
        let _ = json(&mut out, self);
        out
    }
}

fn json(out: &mut String, v: &Value) -> fmt::Result {
    match v {
        Value::UInt(n) => write!(out, "{n}"),
        Value::Int(n) => write!(out, "{n}"),
        Value::Float(x) if x.is_finite() => write_float(out, *x),
        Value::Float(_) => out.write_str("null"),
        Value::Bool(b) => write!(out, "{b}"),
        Value::Str(s) => json_str(out, s),
        Value::BadStr(b) => {
            out.write_str("{\"invalid_utf8\":\"")?;
            write_hex(out, b, "")?;
            out.write_str("\"}")
        }
        Value::Bytes(b) => {
            out.write_str("\"")?;
            write_hex(out, b, "")?;
            out.write_str("\"")
        }
        Value::List(items) => {
            out.write_str("[")?;
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.write_str(",")?;
                }
                json(out, item)?;
            }
            out.write_str("]")
        }
        Value::Struct { fields, .. } => {
            out.write_str("{")?;
            for (i, (name, value)) in fields.iter().enumerate() {
                if i > 0 {
                    out.write_str(",")?;
                }
                json_str(out, name)?;
                out.write_str(":")?;
                json(out, value)?;
            }
            out.write_str("}")
        }
    }
}

fn json_str(out: &mut String, s: &str) -> fmt::Result {
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if u32::from(c) < 0x20 || c == '\u{7f}' || c == '\u{2028}' || c == '\u{2029}' => {
                write!(out, "\\u{:04x}", u32::from(c))?;
            }
            c => out.push(c),
        }
    }
    out.push('"');
    Ok(())
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
    fn primitives_are_classified_by_name() {
        let kinds = [
            (
                "u8",
                Kind::Int {
                    signed: false,
                    atomic: false,
                },
            ),
            (
                "i64",
                Kind::Int {
                    signed: true,
                    atomic: false,
                },
            ),
            ("f32", Kind::Float),
            (
                "AtomicU16",
                Kind::Int {
                    signed: false,
                    atomic: true,
                },
            ),
            (
                "AtomicI32",
                Kind::Int {
                    signed: true,
                    atomic: true,
                },
            ),
        ];
        for (name, kind) in kinds {
            assert_eq!(Schema::primitive(name, 4, 4).kind, kind, "{name}");
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

    #[test]
    fn f32_values_print_as_rust_prints_them() {
        for x in [
            0.1f32,
            1.0 / 3.0,
            16_777_217.0,
            f32::MIN_POSITIVE,
            1e-45,
            f32::MAX,
            -0.0,
        ] {
            let v = f32_as_f64(x);
            assert_eq!(v as f32, x);
            let mut s = String::new();
            write_float(&mut s, v).unwrap();
            assert_eq!(s.parse::<f32>().unwrap(), x, "{s}");
        }
        let mut s = String::new();
        write_float(&mut s, f32_as_f64(0.1)).unwrap();
        assert_eq!(s, "0.1");
    }
}
