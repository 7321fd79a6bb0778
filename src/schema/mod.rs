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
//! A build that finds a segment of another layout of its type compares the
//! two schemas with [`Schema::diff`]: the [`LayoutChange`]s it lists are
//! what [`Error::LayoutMismatch`](crate::Error::LayoutMismatch) says.
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
//! - a name that is not UTF-8, is longer than [`MAX_SCHEMA_NAME_LEN`]
//!   bytes, holds a control character, or repeats another field's name in
//!   the same struct;
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

mod codec;
mod diff;
mod value;

pub use codec::SchemaError;
pub(crate) use diff::recorded_changes;
pub use diff::{LayoutChange, MAX_CHANGES};
pub use value::Value;

/// The deepest nesting a schema may have: the top-level type is level 1,
/// its fields, elements or items level 2, and so on.
pub const MAX_DEPTH: usize = 16;
/// The most nodes (the top-level type, and every field, element and item
/// type under it) a schema may have.
pub const MAX_NODES: usize = 4096;
/// The longest encoded schema, in bytes.
pub const MAX_ENCODED_LEN: usize = 64 * 1024;
/// The longest type or field name a schema records, in bytes (segment
/// names have a limit of their own, [`MAX_SEGMENT_NAME_LEN`](crate::MAX_SEGMENT_NAME_LEN)).
pub const MAX_SCHEMA_NAME_LEN: usize = 128;
/// The largest alignment.
pub const MAX_ALIGN: u64 = 4096;

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
    /// `TYPE_NAME` of its [`Shareable`](crate::Shareable) impl).
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
    /// A type that implements `Shareable` by hand without giving a schema,
    /// or the type of a `#[shareable(opaque)]` field (another crate's
    /// plain-bytes type): its value is shown as bytes, with the type name.
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
    /// [`Shareable::schema`](crate::Shareable::schema).
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
    /// [`Shareable::schema`](crate::Shareable::schema).
    pub fn new(name: impl Into<String>, offset: u64, schema: Schema) -> Field {
        Field {
            name: name.into(),
            offset,
            schema,
        }
    }
}

// ---------------------------------------------------------------------------
// Checks that decode, validate and encode share

/// Why `name` cannot be a type or field name.
fn name_problem(name: &str) -> Option<String> {
    if name.len() > MAX_SCHEMA_NAME_LEN {
        Some(format!(
            "a name of {} bytes, more than the {MAX_SCHEMA_NAME_LEN} allowed",
            name.len()
        ))
    } else if name.chars().any(char::is_control) {
        Some(format!("the name {name:?} holds a control character"))
    } else {
        None
    }
}

/// `name` made acceptable: control characters replaced, cut to
/// `MAX_SCHEMA_NAME_LEN` bytes at a character boundary.
fn sanitize(name: &str) -> String {
    let mut out: String = name
        .chars()
        .map(|c| if c.is_control() { '\u{fffd}' } else { c })
        .collect();
    if out.len() > MAX_SCHEMA_NAME_LEN {
        let mut end = MAX_SCHEMA_NAME_LEN;
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

#[cfg(test)]
mod tests {
    use super::*;

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
}
