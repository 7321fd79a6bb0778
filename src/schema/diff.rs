//! What differs between two layouts of a type: [`Schema::diff`] compares the
//! schema a segment records with the one this build has, field by field, for
//! [`Error::LayoutMismatch`](crate::Error::LayoutMismatch) to say.

use core::fmt;

use super::{Field, Kind, Schema, MAX_DEPTH};

/// The most changes [`Schema::diff`] lists; the rest are counted in a
/// final [`LayoutChange::More`].
pub const MAX_CHANGES: usize = 32;

/// One difference between the layout a segment records and this build's,
/// as [`Schema::diff`] finds it.
///
/// Fields are named by their path from the top-level type: `a`, `inner.b`
/// for a field of a nested struct, `items[]` for the element type of an
/// array or the item type of a `ShmVec` (and `items[].x` for a field of
/// it). Offsets are within the struct that holds the field. "From" is the
/// segment's layout, "to" this build's: a field `removed` is one the
/// segment has and this build's type has not.
///
/// ```
/// use shmstore::schema::{Field, Kind, LayoutChange, Schema};
///
/// let u32_ = Schema::new("u32", 4, 4, Kind::Int { signed: false, atomic: false });
/// let u64_ = Schema::new("u64", 8, 8, Kind::Int { signed: false, atomic: false });
/// let old = Schema::new("Config", 8, 4, Kind::Struct {
///     fields: vec![Field::new("a", 0, u32_.clone()), Field::new("b", 4, u32_.clone())],
/// });
/// let new = Schema::new("Config", 16, 8, Kind::Struct {
///     fields: vec![Field::new("a", 0, u32_), Field::new("c", 8, u64_)],
/// });
/// let changes = old.diff(&new);
/// let text: Vec<String> = changes.iter().map(|c| c.to_string()).collect();
/// assert_eq!(text, [
///     "size changed from 8 to 16 bytes",
///     "alignment changed from 4 to 8",
///     "field `b: u32` removed",
///     "field `c: u64` added at offset 8",
/// ]);
/// assert!(matches!(&changes[2], LayoutChange::Removed { field, .. } if field == "b"));
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum LayoutChange {
    /// The top-level type has another name (or, for an array, string or
    /// list, another length or element type).
    Renamed {
        /// The type the segment holds, as Rust writes it.
        from: String,
        /// This build's type.
        to: String,
    },
    /// The top-level type has another size.
    SizeChanged {
        /// The segment's, in bytes.
        from: u64,
        /// This build's, in bytes.
        to: u64,
    },
    /// The top-level type has another alignment.
    AlignChanged {
        /// The segment's, in bytes.
        from: u64,
        /// This build's, in bytes.
        to: u64,
    },
    /// A field this build has and the segment has not.
    Added {
        /// Its path, e.g. `inner.c`.
        field: String,
        /// Its type, as Rust writes it.
        ty: String,
        /// Its offset in this build.
        offset: u64,
    },
    /// A field the segment has and this build has not.
    Removed {
        /// Its path.
        field: String,
        /// Its type in the segment.
        ty: String,
    },
    /// A field at another offset.
    Moved {
        /// Its path.
        field: String,
        /// Its offset in the segment.
        from: u64,
        /// Its offset in this build.
        to: u64,
    },
    /// A field whose type has the same name but another size (a struct
    /// whose own fields changed, or a type without a schema).
    Resized {
        /// Its path.
        field: String,
        /// Its size in the segment, in bytes.
        from: u64,
        /// Its size in this build, in bytes.
        to: u64,
    },
    /// A field (or element type) of another type: another name, width,
    /// signedness, capacity or length.
    Retyped {
        /// Its path (`items[]` for an element type).
        field: String,
        /// Its type in the segment, as Rust writes it.
        from: String,
        /// Its type in this build.
        to: String,
    },
    /// More changes than [`MAX_CHANGES`]: how many were left out.
    More {
        /// The changes not listed.
        count: usize,
    },
}

impl fmt::Display for LayoutChange {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            LayoutChange::Renamed { from, to } => {
                write!(f, "type changed from `{from}` to `{to}`")
            }
            LayoutChange::SizeChanged { from, to } => {
                write!(f, "size changed from {from} to {to} bytes")
            }
            LayoutChange::AlignChanged { from, to } => {
                write!(f, "alignment changed from {from} to {to}")
            }
            LayoutChange::Added { field, ty, offset } => {
                write!(f, "field `{field}: {ty}` added at offset {offset}")
            }
            LayoutChange::Removed { field, ty } => write!(f, "field `{field}: {ty}` removed"),
            LayoutChange::Moved { field, from, to } => {
                write!(f, "field `{field}` moved from offset {from} to {to}")
            }
            LayoutChange::Resized { field, from, to } => {
                write!(f, "field `{field}` resized from {from} to {to} bytes")
            }
            LayoutChange::Retyped { field, from, to } => {
                write!(f, "field `{field}` changed type from `{from}` to `{to}`")
            }
            LayoutChange::More { count: 1 } => f.write_str("and 1 more change"),
            LayoutChange::More { count } => write!(f, "and {count} more changes"),
        }
    }
}

impl Schema {
    /// What changed from this layout (the one a segment records) to
    /// `expected` (this build's): fields added, removed, moved, resized or
    /// retyped, by path, and the top-level type's name, size and alignment
    /// where they differ. Empty when the two are the same.
    ///
    /// Fields are matched by name, in the order of `expected`, removed ones
    /// first. At most [`MAX_CHANGES`] are listed, then a
    /// [`LayoutChange::More`] counts the rest. See [`LayoutChange`] for an
    /// example.
    pub fn diff(&self, expected: &Schema) -> Vec<LayoutChange> {
        let mut out = Changes {
            list: Vec::new(),
            more: 0,
        };
        let (from, to) = (type_string(self), type_string(expected));
        if from != to {
            out.push(LayoutChange::Renamed { from, to });
        }
        if self.size != expected.size {
            out.push(LayoutChange::SizeChanged {
                from: self.size,
                to: expected.size,
            });
        }
        if self.align != expected.align {
            out.push(LayoutChange::AlignChanged {
                from: self.align,
                to: expected.align,
            });
        }
        if let (Kind::Struct { fields: old }, Kind::Struct { fields: new }) =
            (&self.kind, &expected.kind)
        {
            diff_fields(old, new, "", 1, &mut out);
        }
        if out.more > 0 {
            out.list.push(LayoutChange::More { count: out.more });
        }
        out.list
    }
}

/// The changes found so far, the list capped.
struct Changes {
    list: Vec<LayoutChange>,
    /// Those past the cap.
    more: usize,
}

impl Changes {
    fn push(&mut self, change: LayoutChange) {
        if self.list.len() < MAX_CHANGES {
            self.list.push(change);
        } else {
            self.more += 1;
        }
    }
}

/// The type as Rust writes it (`u64`, `[u8; 4]`, `ShmStr<16>`).
fn type_string(s: &Schema) -> String {
    let mut out = String::new();
    // Writing to a String cannot fail.
    let _ = s.write_type(&mut out, 1);
    out
}

/// `parent.name`, or `name` at the top.
fn join(parent: &str, name: &str) -> String {
    if parent.is_empty() {
        name.to_owned()
    } else {
        format!("{parent}.{name}")
    }
}

/// The changes between two structs' fields; `parent` is the structs' path,
/// `depth` their nesting level.
fn diff_fields(old: &[Field], new: &[Field], parent: &str, depth: usize, out: &mut Changes) {
    // Field counts are bounded by a schema's node limit; names are unique
    // within a struct (`decode` and `validate` check it), so the first
    // match is the match.
    for field in old {
        if !new.iter().any(|n| n.name == field.name) {
            out.push(LayoutChange::Removed {
                field: join(parent, &field.name),
                ty: type_string(&field.schema),
            });
        }
    }
    for field in new {
        let path = join(parent, &field.name);
        let Some(was) = old.iter().find(|o| o.name == field.name) else {
            out.push(LayoutChange::Added {
                field: path,
                ty: type_string(&field.schema),
                offset: field.offset,
            });
            continue;
        };
        if was.offset != field.offset {
            out.push(LayoutChange::Moved {
                field: path.clone(),
                from: was.offset,
                to: field.offset,
            });
        }
        diff_type(&was.schema, &field.schema, &path, depth + 1, out);
    }
}

/// The changes between two types of the field (or element) at `path`.
fn diff_type(old: &Schema, new: &Schema, path: &str, depth: usize, out: &mut Changes) {
    if depth > MAX_DEPTH {
        return;
    }
    match (&old.kind, &new.kind) {
        (Kind::Struct { fields: a }, Kind::Struct { fields: b })
            if old.type_name == new.type_name =>
        {
            if old.size != new.size {
                out.push(LayoutChange::Resized {
                    field: path.to_owned(),
                    from: old.size,
                    to: new.size,
                });
            }
            diff_fields(a, b, path, depth, out);
        }
        (Kind::Array { elem: a, len: m }, Kind::Array { elem: b, len: n })
        | (
            Kind::List {
                elem: a,
                capacity: m,
            },
            Kind::List {
                elem: b,
                capacity: n,
            },
        ) if m == n => {
            diff_type(a, b, &format!("{path}[]"), depth + 1, out);
        }
        _ => {
            let (from, to) = (type_string(old), type_string(new));
            if from != to || old.kind != new.kind {
                out.push(LayoutChange::Retyped {
                    field: path.to_owned(),
                    from,
                    to,
                });
            } else if old.size != new.size {
                out.push(LayoutChange::Resized {
                    field: path.to_owned(),
                    from: old.size,
                    to: new.size,
                });
            }
        }
    }
}

/// The changes from the schema a segment records (`recorded`, its encoded
/// bytes; the value it describes is `value_size` bytes) to `expected`:
/// empty when the bytes do not decode or do not describe a value of that
/// size.
pub(crate) fn recorded_changes(
    recorded: &[u8],
    value_size: u64,
    expected: &Schema,
) -> Vec<LayoutChange> {
    match Schema::decode(recorded) {
        Ok(found) if found.size == value_size => found.diff(expected),
        _ => Vec::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn int(name: &str, size: u64) -> Schema {
        Schema::new(
            name,
            size,
            size,
            Kind::Int {
                signed: name.starts_with('i'),
                atomic: false,
            },
        )
    }

    fn strukt(name: &str, size: u64, align: u64, fields: &[(&str, u64, Schema)]) -> Schema {
        let fields = fields
            .iter()
            .map(|(n, o, s)| Field::new(*n, *o, s.clone()))
            .collect();
        Schema::new(name, size, align, Kind::Struct { fields })
    }

    fn text(changes: &[LayoutChange]) -> Vec<String> {
        changes.iter().map(ToString::to_string).collect()
    }

    #[test]
    fn the_same_layout_has_no_changes() {
        let s = strukt(
            "C",
            8,
            4,
            &[("a", 0, int("u32", 4)), ("b", 4, int("u32", 4))],
        );
        assert!(s.diff(&s.clone()).is_empty());
        assert!(int("u64", 8).diff(&int("u64", 8)).is_empty());
    }

    #[test]
    fn each_kind_of_change_is_named() {
        let old = strukt(
            "C",
            16,
            8,
            &[
                ("a", 0, int("u32", 4)),
                ("b", 4, int("u32", 4)),
                ("c", 8, int("u64", 8)),
            ],
        );
        let new = strukt(
            "C",
            24,
            8,
            &[
                ("c", 0, int("u64", 8)),
                ("a", 8, int("i32", 4)),
                ("d", 16, int("u64", 8)),
            ],
        );
        assert_eq!(
            text(&old.diff(&new)),
            [
                "size changed from 16 to 24 bytes",
                "field `b: u32` removed",
                "field `c` moved from offset 8 to 0",
                "field `a` moved from offset 0 to 8",
                "field `a` changed type from `u32` to `i32`",
                "field `d: u64` added at offset 16",
            ]
        );
    }

    #[test]
    fn top_level_renames_and_alignment() {
        let a = strukt("Old", 8, 8, &[("x", 0, int("u64", 8))]);
        let b = strukt("New", 8, 4, &[("x", 0, int("u32", 4))]);
        assert_eq!(
            text(&a.diff(&b)),
            [
                "type changed from `Old` to `New`",
                "alignment changed from 8 to 4",
                "field `x` changed type from `u64` to `u32`",
            ]
        );
        assert_eq!(
            int("u64", 8).diff(&int("u32", 4)),
            [
                LayoutChange::Renamed {
                    from: "u64".into(),
                    to: "u32".into()
                },
                LayoutChange::SizeChanged { from: 8, to: 4 },
                LayoutChange::AlignChanged { from: 8, to: 4 },
            ]
        );
    }

    #[test]
    fn nested_struct_fields_have_paths() {
        let inner_old = strukt(
            "Inner",
            8,
            4,
            &[("p", 0, int("u32", 4)), ("q", 4, int("u32", 4))],
        );
        let inner_new = strukt("Inner", 4, 4, &[("p", 0, int("u32", 4))]);
        let old = strukt("Outer", 8, 4, &[("inner", 0, inner_old)]);
        let new = strukt("Outer", 4, 4, &[("inner", 0, inner_new)]);
        let changes = old.diff(&new);
        assert_eq!(
            text(&changes),
            [
                "size changed from 8 to 4 bytes",
                "field `inner` resized from 8 to 4 bytes",
                "field `inner.q: u32` removed",
            ]
        );
        assert_eq!(
            changes[2],
            LayoutChange::Removed {
                field: "inner.q".into(),
                ty: "u32".into()
            }
        );
    }

    #[test]
    fn array_elements_are_compared_as_such() {
        let arr = |elem: Schema, len: u64| {
            Schema::new(
                "array",
                elem.size * len,
                elem.align,
                Kind::Array {
                    elem: Box::new(elem),
                    len,
                },
            )
        };
        let old = strukt("C", 16, 4, &[("items", 0, arr(int("u32", 4), 4))]);
        let new = strukt("C", 32, 8, &[("items", 0, arr(int("u64", 8), 4))]);
        assert!(text(&old.diff(&new))
            .contains(&"field `items[]` changed type from `u32` to `u64`".to_owned()));

        // Another length: the whole type, as written.
        let longer = strukt("C", 32, 4, &[("items", 0, arr(int("u32", 4), 8))]);
        assert!(text(&old.diff(&longer))
            .contains(&"field `items` changed type from `[u32; 4]` to `[u32; 8]`".to_owned()));

        // A field of a struct element.
        let elem = |fields: &[(&str, u64, Schema)]| strukt("P", 4, 4, fields);
        let old = strukt(
            "C",
            8,
            4,
            &[("ps", 0, arr(elem(&[("x", 0, int("u32", 4))]), 2))],
        );
        let new = strukt(
            "C",
            8,
            4,
            &[("ps", 0, arr(elem(&[("y", 0, int("u32", 4))]), 2))],
        );
        assert_eq!(
            text(&old.diff(&new)),
            [
                "field `ps[].x: u32` removed",
                "field `ps[].y: u32` added at offset 0"
            ]
        );
    }

    #[test]
    fn the_list_is_capped() {
        let fields = |prefix: &str| -> Vec<(String, u64, Schema)> {
            (0..40u64)
                .map(|i| (format!("{prefix}{i}"), i, int("u8", 1)))
                .collect()
        };
        let make = |prefix: &str| {
            let f = fields(prefix);
            let f: Vec<(&str, u64, Schema)> = f
                .iter()
                .map(|(n, o, s)| (n.as_str(), *o, s.clone()))
                .collect();
            strukt("Many", 40, 1, &f)
        };
        let changes = make("old").diff(&make("new"));
        assert_eq!(changes.len(), MAX_CHANGES + 1);
        assert_eq!(
            changes[MAX_CHANGES],
            LayoutChange::More {
                count: 80 - MAX_CHANGES
            }
        );
        assert_eq!(changes[MAX_CHANGES].to_string(), "and 48 more changes");
        assert_eq!(
            LayoutChange::More { count: 1 }.to_string(),
            "and 1 more change"
        );
    }

    #[test]
    fn recorded_bytes_that_do_not_check_out_give_nothing() {
        let expected = strukt("C", 4, 4, &[("a", 0, int("u32", 4))]);
        let old = strukt("C", 8, 8, &[("b", 0, int("u64", 8))]);
        assert!(recorded_changes(b"garbage", 8, &expected).is_empty());
        let mut bytes = old.encode();
        assert!(recorded_changes(&bytes[..bytes.len() - 1], 8, &expected).is_empty());
        // A schema of another size than the value it should describe.
        assert!(recorded_changes(&bytes, 16, &expected).is_empty());
        assert!(!recorded_changes(&bytes, 8, &expected).is_empty());
        bytes.push(0);
        assert!(recorded_changes(&bytes, 8, &expected).is_empty());
    }
}
