//! A decoded value, one field per line: structs indented under their field,
//! lists of structs or lists one item per line, everything else on the
//! field's line as Rust would write it. Opaque bytes (a hand-written
//! `Shareable` type, or a `#[shareable(opaque)]` field) say their type's name.

use shmstore::schema::{Kind, Schema, Value};

/// How many items of a list of structs or lists are shown.
const SHOWN_ITEMS: usize = 32;

/// Whether `v` is written on its label's line.
fn is_inline(v: &Value) -> bool {
    match v {
        Value::Struct { fields, .. } => fields.is_empty(),
        Value::List(items) => items
            .iter()
            .all(|i| !matches!(i, Value::List(_) | Value::Struct { .. })),
        _ => true,
    }
}

/// What is written after the label of an inline value; the type name of a
/// struct (its fields follow on their own lines). `schema` is the value's,
/// where known.
fn head(v: &Value, schema: Option<&Schema>) -> String {
    match v {
        Value::Struct { name, .. } => name.clone(),
        Value::Bytes(b) => match schema {
            Some(s) if matches!(s.kind, Kind::Opaque) && !s.type_name.is_empty() => {
                format!("{v}  ({} bytes of `{}`, opaque)", b.len(), s.type_name)
            }
            _ => format!("{v}  ({} raw bytes: no schema describes them)", b.len()),
        },
        Value::BadStr(_) => format!("{v}  (not UTF-8)"),
        Value::List(items) if !is_inline(v) => format!("{} items", items.len()),
        _ => v.to_string(),
    }
}

/// Appends `label: value` at `indent` spaces, and, for structs and lists of
/// them, their fields or items below, two spaces further in. `width` pads
/// the label (with its colon) so that values in one struct line up.
/// `schema` is the one `v` was read with, if known: it names the type of
/// opaque bytes.
pub fn lines(
    out: &mut String,
    indent: usize,
    label: &str,
    width: usize,
    v: &Value,
    schema: Option<&Schema>,
) {
    out.extend(std::iter::repeat_n(' ', indent));
    out.push_str(label);
    out.push(':');
    out.extend(std::iter::repeat_n(
        ' ',
        width.saturating_sub(label.len() + 1) + 1,
    ));
    out.push_str(&head(v, schema));
    out.push('\n');
    match v {
        Value::Struct { fields, .. } => {
            let w = fields.iter().map(|(n, _)| n.len() + 1).max().unwrap_or(0);
            let schemas = match schema.map(|s| &s.kind) {
                Some(Kind::Struct { fields: f }) if f.len() == fields.len() => Some(f),
                _ => None,
            };
            for (i, (name, value)) in fields.iter().enumerate() {
                let schema = schemas.map(|f| &f[i].schema);
                lines(out, indent + 2, name, w, value, schema);
            }
        }
        Value::List(items) if !is_inline(v) => {
            let shown = items.len().min(SHOWN_ITEMS);
            let w = format!("[{}]:", shown.saturating_sub(1)).len();
            let elem = match schema.map(|s| &s.kind) {
                Some(Kind::Array { elem, .. } | Kind::List { elem, .. }) => Some(&**elem),
                _ => None,
            };
            for (i, item) in items.iter().take(shown).enumerate() {
                lines(out, indent + 2, &format!("[{i}]"), w, item, elem);
            }
            if items.len() > shown {
                out.extend(std::iter::repeat_n(' ', indent + 2));
                out.push_str(&format!("... ({} more)\n", items.len() - shown));
            }
        }
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nested() {
        let v = Value::Struct {
            name: "Config".into(),
            fields: vec![
                ("max".into(), Value::UInt(250)),
                ("name".into(), Value::Str("web".into())),
                (
                    "limits".into(),
                    Value::Struct {
                        name: "Limits".into(),
                        fields: vec![
                            ("lo".into(), Value::Int(-1)),
                            ("high".into(), Value::Float(2.5)),
                        ],
                    },
                ),
                (
                    "ports".into(),
                    Value::List(vec![Value::UInt(80), Value::UInt(443)]),
                ),
            ],
        };
        let mut out = String::new();
        lines(&mut out, 0, "value", 13, &v, None);
        assert_eq!(
            out,
            "value:        Config\n  max:    250\n  name:   \"web\"\n  limits: Limits\n    lo:   -1\n    high: 2.5\n  ports:  [80, 443]\n"
        );
    }
}
