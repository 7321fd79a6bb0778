//! [`Value`]: a value read through a [`Schema`], printed as Rust would
//! write it or as JSON.

use core::fmt;
use std::fmt::Write as _;

use super::{Kind, Schema, MAX_DEPTH};

/// Lists longer than this print their first `SHOWN_ITEMS` items only.
const SHOWN_ITEMS: usize = 32;
/// Byte strings (`Value::Bytes`) longer than this print their first
/// `SHOWN_BYTES` bytes only.
const SHOWN_BYTES: usize = 256;

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

impl Schema {
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
