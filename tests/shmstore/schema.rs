//! Schemas: what `#[derive(Shareable)]` records, how it encodes and decodes,
//! how values read through it print, and that neither damaged encodings nor
//! any bytes make anything panic.

use core::mem::size_of;
use core::sync::atomic::{AtomicI32, AtomicU64};

use shmstore::schema::{Field, Kind, SchemaError, MAX_DEPTH, MAX_ENCODED_LEN, MAX_NODES};
use shmstore::{Schema, Shareable, ShmBool, ShmStr, ShmVec, Value};

// ---------------------------------------------------------------------------
// Types

#[derive(Shareable, Clone, Copy, Default)]
#[repr(C)]
struct Point {
    x: f32,
    y: f32,
}

#[derive(Shareable, Clone, Copy, Default)]
#[repr(C)]
struct Reading {
    at: u32,
    level: i8,
    ok: ShmBool,
    _pad: [u8; 2],
}

#[derive(Shareable, Clone, Copy, Default)]
#[repr(C)]
struct Pair(i16, u16);

#[derive(Shareable, Clone, Copy, Default)]
#[repr(transparent)]
struct Wrapped(u64);

#[derive(Shareable, Default)]
#[repr(C)]
struct Station {
    id: u64,
    offset: i64,
    requests: AtomicU64,
    ratio: f64,
    errors: AtomicI32,
    pos: [Point; 2],
    name: ShmStr<12>,
    readings: ShmVec<Reading, 3>,
    active: ShmBool,
    small: [i8; 3],
    pair: Pair,
    _pad: u32,
    total: Wrapped,
}

/// A type implemented by hand, without a schema.
#[derive(Clone, Copy)]
#[repr(transparent)]
struct Handmade([u8; 6]);

// SAFETY: a byte array: any bit pattern is valid, no padding, no pointers,
// a fixed layout and no drop glue; the fingerprint is this test's own.
unsafe impl Shareable for Handmade {
    const TYPE_NAME: &'static str = "Handmade";
    const FINGERPRINT: u64 = 0x1234;
}

/// A type implemented by hand whose schema lies about its size.
#[derive(Clone, Copy)]
#[repr(transparent)]
struct Liar(u32);

// SAFETY: as for `Handmade`: a `u32`.
unsafe impl Shareable for Liar {
    const TYPE_NAME: &'static str = "Liar";
    const FINGERPRINT: u64 = 0x5678;

    fn schema() -> Schema {
        Schema::new("Liar", 8, 8, Kind::Float)
    }
}

#[derive(Shareable)]
#[repr(C)]
struct HoldsHandmade {
    head: u16,
    blob: Handmade,
    liar: Liar,
}

/// The bytes of `value`, as another process sees them.
fn bytes_of<T: Shareable>(value: &T) -> Vec<u8> {
    // SAFETY: the pointer comes from a reference, so it is valid for reads of
    // size_of::<T>() bytes while `value` is borrowed, nothing writes to it
    // meanwhile, and a `Shareable` type has no padding, so every byte is
    // initialised. The bytes are copied out before the borrow ends.
    unsafe { core::slice::from_raw_parts((value as *const T).cast::<u8>(), size_of::<T>()) }
        .to_vec()
}

fn station() -> Station {
    let mut s = Station {
        id: 7,
        offset: -3,
        requests: AtomicU64::new(1000),
        ratio: 0.25,
        errors: AtomicI32::new(-2),
        pos: [Point { x: 1.5, y: -2.0 }, Point { x: 0.1, y: 3.0 }],
        active: ShmBool::new(true),
        small: [-1, 0, 127],
        pair: Pair(-5, 65535),
        total: Wrapped(u64::MAX),
        ..Default::default()
    };
    s.name.set("Kö\"ln\n").unwrap();
    s.readings
        .push(Reading {
            at: 10,
            level: -1,
            ok: ShmBool::new(true),
            _pad: [0; 2],
        })
        .unwrap();
    s
}

const STATION_TEXT: &str = "Station { id: 7, offset: -3, requests: 1000, ratio: 0.25, errors: -2, \
    pos: [Point { x: 1.5, y: -2 }, Point { x: 0.1, y: 3 }], name: \"Kö\\\"ln\\n\", \
    readings: [Reading { at: 10, level: -1, ok: true, _pad: [0, 0] }], active: true, \
    small: [-1, 0, 127], pair: Pair(-5, 65535), _pad: 0, total: Wrapped(18446744073709551615) }";

const STATION_JSON: &str = "{\"id\":7,\"offset\":-3,\"requests\":1000,\"ratio\":0.25,\"errors\":-2,\
    \"pos\":[{\"x\":1.5,\"y\":-2},{\"x\":0.1,\"y\":3}],\"name\":\"Kö\\\"ln\\n\",\
    \"readings\":[{\"at\":10,\"level\":-1,\"ok\":true,\"_pad\":[0,0]}],\"active\":true,\
    \"small\":[-1,0,127],\"pair\":{\"0\":-5,\"1\":65535},\"_pad\":0,\"total\":{\"0\":18446744073709551615}}";

// ---------------------------------------------------------------------------
// What the derive records

fn int(name: &str, size: u64, signed: bool, atomic: bool) -> Schema {
    Schema::new(name, size, size, Kind::Int { signed, atomic })
}

#[test]
fn the_derive_records_names_offsets_and_kinds() {
    let reading = Schema::new(
        "Reading",
        8,
        4,
        Kind::Struct {
            fields: vec![
                Field::new("at", 0, int("u32", 4, false, false)),
                Field::new("level", 4, int("i8", 1, true, false)),
                Field::new("ok", 5, Schema::new("ShmBool", 1, 1, Kind::Bool)),
                Field::new(
                    "_pad",
                    6,
                    Schema::new(
                        "array",
                        2,
                        1,
                        Kind::Array {
                            elem: Box::new(int("u8", 1, false, false)),
                            len: 2,
                        },
                    ),
                ),
            ],
        },
    );
    assert_eq!(Schema::of::<Reading>(), reading);

    let s = Schema::of::<Station>();
    assert_eq!((s.type_name.as_str(), s.size, s.align), ("Station", 120, 8));
    let Kind::Struct { fields } = &s.kind else {
        panic!("{s:?}")
    };
    let layout: Vec<(&str, u64, String)> = fields
        .iter()
        .map(|f| (f.name.as_str(), f.offset, f.schema.to_string()))
        .collect();
    let expected = [
        ("id", 0, "u64"),
        ("offset", 8, "i64"),
        ("requests", 16, "AtomicU64"),
        ("ratio", 24, "f64"),
        ("errors", 32, "AtomicI32"),
        ("pos", 36, "[Point; 2]"),
        ("name", 52, "ShmStr<12>"),
        ("readings", 68, "ShmVec<Reading, 3>"),
        ("active", 100, "ShmBool"),
        ("small", 101, "[i8; 3]"),
        ("pair", 104, "Pair"),
        ("_pad", 108, "u32"),
        ("total", 112, "Wrapped"),
    ];
    let expected: Vec<(&str, u64, String)> = expected
        .iter()
        .map(|&(n, o, t)| (n, o, t.to_owned()))
        .collect();
    assert_eq!(layout, expected);
    assert_eq!(fields[2].schema, int("AtomicU64", 8, false, true));
    assert_eq!(fields[4].schema, int("AtomicI32", 4, true, true));
    assert_eq!(fields[3].schema.kind, Kind::Float);
    assert_eq!(
        fields[6].schema,
        Schema::new("ShmStr", 16, 1, Kind::Str { capacity: 12 })
    );
    assert_eq!(
        fields[7].schema,
        Schema::new(
            "ShmVec",
            32,
            4,
            Kind::List {
                elem: Box::new(reading),
                capacity: 3
            }
        )
    );
    assert_eq!(
        fields[12].schema,
        Schema::new(
            "Wrapped",
            8,
            8,
            Kind::Struct {
                fields: vec![Field::new("0", 0, int("u64", 8, false, false))]
            }
        )
    );
}

#[test]
fn derived_schemas_round_trip() {
    fn check<T: Shareable>() {
        let schema = Schema::of::<T>();
        schema.validate().unwrap();
        let bytes = schema.encode();
        assert_eq!(
            Schema::decode(&bytes).as_ref(),
            Ok(&schema),
            "{}",
            T::TYPE_NAME
        );
    }
    check::<Station>();
    check::<Reading>();
    check::<Point>();
    check::<Pair>();
    check::<Wrapped>();
    check::<HoldsHandmade>();
    check::<[Station; 3]>();
    check::<ShmVec<Point, 0>>();
    check::<ShmStr<0>>();
    check::<u8>();
    check::<[[[u8; 0]; 1_000_000]; 4]>();
}

#[test]
fn hand_written_impls_are_opaque() {
    assert_eq!(
        Schema::of::<Handmade>(),
        Schema::new("Handmade", 6, 1, Kind::Opaque)
    );
    // A schema that disagrees with the type's real size is not believed.
    assert_eq!(Liar::schema().size, 8);
    assert_eq!(
        Schema::of::<Liar>(),
        Schema::new("Liar", 4, 4, Kind::Opaque)
    );

    let value = HoldsHandmade {
        head: 0x0102,
        blob: Handmade([0x0a, 0xff, 0, 1, 2, 3]),
        liar: Liar(u32::from_ne_bytes([9, 8, 7, 6])),
    };
    let schema = Schema::decode(&Schema::of::<HoldsHandmade>().encode()).unwrap();
    let v = schema.value(&bytes_of(&value));
    assert_eq!(
        v.to_string(),
        "HoldsHandmade { head: 258, blob: <0a ff 00 01 02 03>, liar: <09 08 07 06> }"
    );
    assert_eq!(
        v.to_json(),
        r#"{"head":258,"blob":"0aff00010203","liar":"09080706"}"#
    );
}

// ---------------------------------------------------------------------------
// Values

#[test]
fn a_real_value_prints_as_rust_writes_it() {
    let schema = Schema::decode(&Schema::of::<Station>().encode()).unwrap();
    let bytes = bytes_of(&station());
    let value = schema.value(&bytes);
    assert_eq!(value.to_string(), STATION_TEXT);
    assert_eq!(value.to_json(), STATION_JSON);
    assert_json(&value.to_json());

    // The parts are what they should be.
    let Value::Struct { name, fields } = &value else {
        panic!("{value:?}")
    };
    assert_eq!(name, "Station");
    assert_eq!(fields[0], ("id".to_owned(), Value::UInt(7)));
    assert_eq!(fields[1], ("offset".to_owned(), Value::Int(-3)));
    assert_eq!(
        fields[6],
        ("name".to_owned(), Value::Str("Kö\"ln\n".to_owned()))
    );
    // An f32 comes out as the f64 of its shortest decimal form.
    let Value::List(pos) = &fields[5].1 else {
        panic!()
    };
    let Value::Struct { fields: p, .. } = &pos[1] else {
        panic!()
    };
    assert_eq!(p[0].1, Value::Float(0.1));
}

#[test]
fn pretty_printing_takes_one_line_per_field() {
    let mut r = Reading {
        at: 1,
        level: 2,
        ..Default::default()
    };
    r.ok.set(true);
    let text = format!(
        "{:#}",
        Schema::of::<[Reading; 2]>().value(&bytes_of(&[r, r]))
    );
    let one = "    Reading {\n        at: 1,\n        level: 2,\n        ok: true,\n        _pad: [0, 0],\n    },\n";
    assert_eq!(text, format!("[\n{one}{one}]"));
    let pair = format!("{:#}", Schema::of::<Pair>().value(&bytes_of(&Pair(1, 2))));
    assert_eq!(pair, "Pair(\n    1,\n    2,\n)");
}

#[test]
fn schemas_print_as_types_and_layouts() {
    assert_eq!(Schema::of::<Station>().to_string(), "Station");
    assert_eq!(Schema::of::<[[u8; 2]; 3]>().to_string(), "[[u8; 2]; 3]");
    assert_eq!(
        format!("{:#}", Schema::of::<Reading>()),
        "Reading (8 bytes, align 4)\
         \n       0  at: u32 (4 bytes)\
         \n       4  level: i8 (1 byte)\
         \n       5  ok: ShmBool (1 byte)\
         \n       6  _pad: [u8; 2] (2 bytes)"
    );
    let layout = format!("{:#}", Schema::of::<Station>());
    assert!(layout.contains("\n     104  pair: Pair (4 bytes)\n     104      0: i16 (2 bytes)\n     106      1: u16 (2 bytes)"), "{layout}");
}

#[test]
fn lengths_are_clamped_and_bad_utf8_is_shown() {
    #[derive(Shareable, Default)]
    #[repr(C)]
    struct Texts {
        s: ShmStr<4>,
        v: ShmVec<u16, 2>,
    }
    let schema = Schema::of::<Texts>();
    let mut bytes = bytes_of(&Texts::default());
    // A length past the capacity, and bytes that are not UTF-8.
    bytes[..4].copy_from_slice(&u32::MAX.to_le_bytes());
    bytes[4..8].copy_from_slice(b"ab\xff\0");
    bytes[8..16].copy_from_slice(&u64::MAX.to_le_bytes());
    bytes[16..18].copy_from_slice(&7u16.to_ne_bytes());
    bytes[18..20].copy_from_slice(&9u16.to_ne_bytes());
    let v = schema.value(&bytes);
    assert_eq!(v.to_string(), r#"Texts { s: b"ab\xff\x00", v: [7, 9] }"#);
    assert_eq!(
        v.to_json(),
        r#"{"s":{"invalid_utf8":"61 62ff00"},"v":[7,9]}"#.replace(' ', "")
    );
    // Shorter lengths are taken as they are.
    bytes[..4].copy_from_slice(&2u32.to_le_bytes());
    bytes[8..16].copy_from_slice(&1u64.to_le_bytes());
    assert_eq!(
        schema.value(&bytes).to_string(),
        r#"Texts { s: "ab", v: [7] }"#
    );
}

#[test]
fn long_lists_and_blobs_are_cut_when_printed_but_not_in_json() {
    let bytes: Vec<u8> = (0..40).collect();
    let v = Schema::of::<[u8; 40]>().value(&bytes);
    let first: Vec<String> = (0..32).map(|i| i.to_string()).collect();
    assert_eq!(
        v.to_string(),
        format!("[{}, ... (8 more)]", first.join(", "))
    );
    let all: Vec<String> = (0..40).map(|i| i.to_string()).collect();
    assert_eq!(v.to_json(), format!("[{}]", all.join(",")));

    assert_eq!(Value::Bytes(vec![0x0a, 0xff, 0]).to_string(), "<0a ff 00>");
    assert_eq!(Value::Bytes(vec![]).to_string(), "<>");
    let blob = Value::Bytes(vec![0xab; 300]);
    assert!(blob.to_string().ends_with("ab ab ... (44 more)>"));
    assert_eq!(blob.to_json().len(), 602);
}

#[test]
fn floats_print_as_rust_prints_them() {
    let cases: [(f64, &str, &str); 9] = [
        (2.0, "2", "2"),
        (-0.5, "-0.5", "-0.5"),
        (1e300, "1e300", "1e300"),
        (2.5e-7, "2.5e-7", "2.5e-7"),
        (123456.75, "123456.75", "123456.75"),
        (f64::NAN, "NaN", "null"),
        (f64::INFINITY, "inf", "null"),
        (f64::NEG_INFINITY, "-inf", "null"),
        (-0.0, "-0", "-0"),
    ];
    for (x, text, json) in cases {
        let v = Schema::of::<f64>().value(&x.to_ne_bytes());
        assert_eq!((v.to_string().as_str(), v.to_json().as_str()), (text, json));
    }
    // f32: the shortest decimal form, which gives the f32 back.
    let mut rng = Lcg(3);
    for _ in 0..200_000 {
        let x = f32::from_bits(rng.next() as u32);
        let Value::Float(v) = Schema::of::<f32>().value(&x.to_ne_bytes()) else {
            panic!()
        };
        if x.is_nan() {
            assert!(v.is_nan());
        } else {
            assert_eq!((v as f32).to_bits(), x.to_bits(), "{x:e}");
            assert_eq!(v.to_string().parse::<f32>().unwrap().to_bits(), x.to_bits());
        }
    }
}

#[test]
fn strings_are_escaped_for_text_and_json() {
    let v = Value::Str("tab\t \"q\" \\ \u{1} \u{7f} é 🦀".to_owned());
    assert_eq!(v.to_string(), r#""tab\t \"q\" \\ \u{1} \u{7f} é 🦀""#);
    assert_eq!(v.to_json(), r#""tab\t \"q\" \\ \u0001 \u007f é 🦀""#);
    assert_json(&v.to_json());
    let bad = Value::BadStr(vec![b'a', 0xc3]);
    assert_eq!(bad.to_string(), r#"b"a\xc3""#);
    assert_eq!(bad.to_json(), r#"{"invalid_utf8":"61c3"}"#);
}

#[test]
fn bytes_of_the_wrong_length_are_shown_as_bytes() {
    let schema = Schema::of::<Station>();
    let bytes = bytes_of(&station());
    for len in [0, 1, 119, 121] {
        let mut b = bytes.clone();
        b.resize(len, 0xee);
        assert_eq!(schema.value(&b), Value::Bytes(b.clone()));
    }
    // A field of a hand-made schema that runs past the bytes gets what is
    // there.
    let s = Schema::new(
        "S",
        4,
        1,
        Kind::Struct {
            fields: vec![Field::new("x", 2, int("u32", 4, false, false))],
        },
    );
    assert_eq!(s.value(&[1, 2, 3, 4]).to_string(), "S { x: <03 04> }");
}

#[test]
fn zero_sized_elements_cannot_blow_a_value_up() {
    let s = Schema::of::<[[u8; 0]; 1 << 40]>();
    assert_eq!(s.value(&[]), Value::Bytes(vec![]));
    let small = Schema::of::<[[u8; 0]; 3]>();
    assert_eq!(small.value(&[]).to_string(), "[[], [], []]");
    // A big array of bytes is read in full.
    let big = vec![1u8; 100_000];
    let Value::List(items) = Schema::of::<[u8; 100_000]>().value(&big) else {
        panic!()
    };
    assert_eq!(items.len(), 100_000);
}

// ---------------------------------------------------------------------------
// Validation

/// A node in the documented encoding.
fn node(tag: u8, name: &str, size: u8, align_log2: u8, body: &[u8]) -> Vec<u8> {
    let mut out = vec![tag, name.len() as u8];
    out.extend_from_slice(name.as_bytes());
    out.extend_from_slice(&[size, align_log2]);
    out.extend_from_slice(body);
    out
}

fn encoded(root: &[u8]) -> Vec<u8> {
    let mut out = b"SHSC\x01".to_vec();
    out.extend_from_slice(root);
    out
}

fn decode_err(bytes: &[u8]) -> String {
    match Schema::decode(bytes) {
        Ok(s) => panic!("decoded {s:?}"),
        Err(e) => e.to_string(),
    }
}

#[test]
fn damaged_schemas_say_what_is_wrong() {
    let u32_node = node(1, "u32", 4, 2, &[0]);
    // struct S { x: u32 } of 8 bytes, with x at offset 12.
    let mut body = vec![1, 1, b'x', 12];
    body.extend_from_slice(&u32_node);
    let past = encoded(&node(7, "S", 8, 3, &body));
    assert_eq!(
        decode_err(&past),
        "field `x` at offset 12 (4 bytes) runs past the 8-byte struct `S` (in `S`, at byte 5 of the schema)"
    );
    // The same, in memory.
    let s = Schema::new(
        "S",
        8,
        8,
        Kind::Struct {
            fields: vec![Field::new("x", 12, int("u32", 4, false, false))],
        },
    );
    let err: SchemaError = s.validate().unwrap_err();
    assert_eq!(
        err.to_string(),
        "field `x` at offset 12 (4 bytes) runs past the 8-byte struct `S` (in `S`)"
    );
    // `encode` never writes what `decode` refuses: S becomes opaque.
    assert_eq!(
        Schema::decode(&s.encode()),
        Ok(Schema::new("S", 8, 8, Kind::Opaque))
    );

    let misaligned = {
        let mut body = vec![1, 1, b'x', 2];
        body.extend_from_slice(&u32_node);
        encoded(&node(7, "S", 8, 3, &body))
    };
    assert!(decode_err(&misaligned).starts_with("field `x` at offset 2 is not aligned to 4"));

    let cases: Vec<(Vec<u8>, &str)> = vec![
        (b"SHSX\x01".to_vec(), "does not start with the schema magic"),
        (b"SHSC\x02".to_vec(), "encoding version 2"),
        (encoded(&node(9, "x", 1, 0, &[])), "unknown kind tag 9"),
        (
            encoded(&node(1, "u24", 3, 0, &[0])),
            "is 3 bytes wide (1, 2, 4 or 8)",
        ),
        (
            encoded(&node(1, "u32", 4, 2, &[4])),
            "unknown integer flags",
        ),
        (
            encoded(&node(1, "AtomicU32", 4, 1, &[2])),
            "atomic `AtomicU32` is 4 bytes wide but aligned to 2",
        ),
        (
            encoded(&node(2, "f16", 2, 1, &[])),
            "float `f16` is 2 bytes wide (4 or 8)",
        ),
        (
            encoded(&node(3, "ShmBool", 2, 0, &[])),
            "flag `ShmBool` is 2 bytes (1)",
        ),
        (
            encoded(&node(4, "ShmStr", 9, 0, &[4])),
            "its layout is 4 + 4 bytes aligned to 1",
        ),
        (
            encoded(&node(8, "x", 6, 2, &[])),
            "6 bytes, not a multiple of its alignment 4",
        ),
        (
            encoded(&node(8, "x", 0, 13, &[])),
            "alignment 2^13, more than 4096",
        ),
        (
            encoded(&node(8, "a\u{7}b", 0, 0, &[])),
            "holds a control character",
        ),
        (
            encoded(&node(8, "x", 1, 0, &[0])),
            "1 byte(s) follow the schema",
        ),
        (encoded(&node(8, "x", 1, 0, &[]))[..8].to_vec(), "cut short"),
        (encoded(&[8, 0, 0x80, 0x00, 0]), "not in its shortest form"),
        (
            encoded(&[
                8, 0, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x02, 0,
            ]),
            "does not fit in 64 bits",
        ),
        (encoded(&[8, 0x81, 0x01]), "a name of 129 bytes"),
        (encoded(&[8, 2, 0xff, 0xfe, 0, 0]), "a name is not UTF-8"),
        (
            encoded(&node(7, "S", 8, 3, &[0xff, 0x7f])),
            "`S` claims 16383 fields",
        ),
        (vec![0; MAX_ENCODED_LEN + 1], "65537 bytes long"),
    ];
    for (bytes, expected) in cases {
        let err = decode_err(&bytes);
        assert!(err.contains(expected), "{err:?} should say {expected:?}");
    }

    // An array whose size overflows, and a list of the wrong size.
    let arr = encoded(&node(
        6,
        "array",
        8,
        0,
        &[0xff, 0xff, 0xff, 0xff, 0x0f, 1, 2, b'u', b'8', 2, 0, 0],
    ));
    assert!(decode_err(&arr).contains("the array `array` of 4294967295 elements of 2 bytes"));
    let list = encoded(&node(5, "ShmVec", 10, 0, &[1, 1, 2, b'u', b'8', 1, 0, 0]));
    assert!(decode_err(&list).contains("its layout is 8 + 1 x 1 bytes aligned to 1"));

    // Two fields with one name.
    let mut body = vec![2, 1, b'x', 0];
    body.extend_from_slice(&node(1, "u8", 1, 0, &[0]));
    body.extend_from_slice(&[1, b'x', 1]);
    body.extend_from_slice(&node(1, "u8", 1, 0, &[0]));
    let dup = encoded(&node(7, "S", 2, 0, &body));
    assert!(decode_err(&dup).contains("two fields named `x`"));
}

/// `[[...[u8; 1]...; 1]; 1]` nested `depth` levels (counting the `u8`).
fn nested(depth: usize) -> Schema {
    let mut s = int("u8", 1, false, false);
    for _ in 1..depth {
        s = Schema::new(
            "array",
            1,
            1,
            Kind::Array {
                elem: Box::new(s),
                len: 1,
            },
        );
    }
    s
}

#[test]
fn limits_are_enforced_and_encode_stays_within_them() {
    // Depth.
    let ok = nested(MAX_DEPTH);
    ok.validate().unwrap();
    assert_eq!(Schema::decode(&ok.encode()), Ok(ok.clone()));
    let deep = nested(MAX_DEPTH + 1);
    assert!(deep
        .validate()
        .unwrap_err()
        .to_string()
        .contains("nested more than 16 levels"));
    let mut raw = b"SHSC\x01".to_vec();
    for _ in 0..MAX_DEPTH {
        raw.extend_from_slice(&node(6, "array", 1, 0, &[1]));
    }
    raw.extend_from_slice(&node(1, "u8", 1, 0, &[0]));
    assert!(decode_err(&raw).contains("nested more than 16 levels"));
    // `encode` makes the deepest level opaque.
    let fitted = Schema::decode(&deep.encode()).unwrap();
    let mut s = &fitted;
    for _ in 1..MAX_DEPTH {
        let Kind::Array { elem, .. } = &s.kind else {
            panic!("{s:?}")
        };
        s = elem;
    }
    assert_eq!(*s, Schema::new("array", 1, 1, Kind::Opaque));

    // Nodes.
    let wide = |n: usize| {
        Schema::new(
            "Wide",
            n as u64,
            1,
            Kind::Struct {
                fields: (0..n)
                    .map(|i| Field::new(format!("f{i}"), i as u64, int("u8", 1, false, false)))
                    .collect(),
            },
        )
    };
    let ok = wide(MAX_NODES - 1);
    assert_eq!(Schema::decode(&ok.encode()), Ok(ok));
    let too_many = wide(MAX_NODES);
    assert!(too_many
        .validate()
        .unwrap_err()
        .to_string()
        .contains("more than 4096 nodes"));
    assert_eq!(
        Schema::decode(&too_many.encode()),
        Ok(Schema::new("Wide", 4096, 1, Kind::Opaque))
    );

    // Length: 400 fields with long names are over 64 KiB; the fields that
    // do not fit become opaque, and the struct keeps all of them.
    let inner = Schema::new(
        "E",
        1,
        1,
        Kind::Struct {
            fields: vec![Field::new("y".repeat(100), 0, int("u8", 1, false, false))],
        },
    );
    let long = Schema::new(
        "Long",
        400,
        1,
        Kind::Struct {
            fields: (0..400)
                .map(|i| Field::new(format!("{i:0>120}"), i as u64, inner.clone()))
                .collect(),
        },
    );
    assert!(long
        .validate()
        .unwrap_err()
        .to_string()
        .contains("more than the 65536 allowed"));
    let bytes = long.encode();
    assert!(bytes.len() <= MAX_ENCODED_LEN);
    let fitted = Schema::decode(&bytes).unwrap();
    let Kind::Struct { fields } = &fitted.kind else {
        panic!()
    };
    assert_eq!(fields.len(), 400);
    assert_eq!(fields[0].schema, inner);
    assert_eq!(fields[399].schema, Schema::new("E", 1, 1, Kind::Opaque));

    // Names: cut to 128 bytes at a character boundary, control characters
    // replaced.
    let name = format!("{}\u{1}{}", "é".repeat(50), "x".repeat(100));
    let s = Schema::new(name, 1, 1, Kind::Bool);
    let fitted = Schema::decode(&s.encode()).unwrap();
    assert_eq!(
        fitted.type_name,
        format!("{}\u{fffd}{}", "é".repeat(50), "x".repeat(25))
    );
    assert_eq!(fitted.kind, Kind::Bool);

    // Alignment over 4096 is written as 4096.
    let s = Schema::new("Page", 8192, 8192, Kind::Opaque);
    assert_eq!(
        Schema::decode(&s.encode()),
        Ok(Schema::new("Page", 8192, 4096, Kind::Opaque))
    );
}

#[test]
fn hand_built_schemas_of_any_depth_are_handled() {
    // Far deeper than any limit: nothing recurses past MAX_DEPTH.
    let deep = nested(2000);
    assert!(deep.validate().is_err());
    // Read down to MAX_DEPTH, bytes below.
    let v = deep.value(&[5]).to_string();
    assert_eq!(v, format!("{}<05>{}", "[".repeat(16), "]".repeat(16)));
    let fitted = Schema::decode(&deep.encode()).unwrap();
    assert_eq!(
        fitted,
        Schema::decode(&nested(MAX_DEPTH + 1).encode()).unwrap()
    );
    let text = deep.to_string();
    assert!(
        text.starts_with("[[[[") && text.contains("[_; 1]"),
        "{text}"
    );
    let _ = format!("{deep:#}");
}

// ---------------------------------------------------------------------------
// Fuzzing

/// A deterministic generator (64-bit LCG, high bits), so failures repeat.
struct Lcg(u64);

impl Lcg {
    fn next(&mut self) -> u64 {
        self.0 = self
            .0
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1_442_695_040_888_963_407);
        self.0 ^ (self.0 >> 29)
    }

    fn below(&mut self, n: u64) -> u64 {
        (self.next() >> 16) % n
    }

    fn bytes(&mut self, n: usize) -> Vec<u8> {
        (0..n).map(|_| (self.next() >> 24) as u8).collect()
    }
}

/// Checks what must hold of any decode: an error, or a schema that passes
/// `validate`, encodes to the same bytes, and reads any bytes.
fn check_decode(bytes: &[u8], rng: &mut Lcg) -> bool {
    match Schema::decode(bytes) {
        Err(e) => {
            assert!(!e.to_string().is_empty());
            false
        }
        Ok(s) => {
            s.validate().unwrap();
            assert_eq!(s.encode(), bytes);
            check_values(&s, rng);
            true
        }
    }
}

/// Reads random bytes of the right length (if not huge) and of wrong ones.
fn check_values(s: &Schema, rng: &mut Lcg) {
    let mut lens = vec![0, 1, 7];
    if s.size <= 4096 {
        lens.extend([
            s.size as usize,
            s.size as usize,
            (s.size as usize).saturating_sub(1),
        ]);
    }
    for len in lens {
        let mut bytes = rng.bytes(len);
        // Small lengths often, so that strings and lists have some items.
        if len >= 8 && rng.below(2) == 0 {
            bytes[..8].copy_from_slice(&rng.below(6).to_le_bytes());
        }
        let v = s.value(&bytes);
        // Printing never panics; the JSON is valid.
        let _ = format!("{v} {v:#}");
        assert_json(&v.to_json());
    }
    let _ = format!("{s} {s:#}");
}

#[test]
fn every_damaged_byte_and_truncation_is_caught_or_harmless() {
    let mut rng = Lcg(1);
    let mut decoded = 0;
    let mut cases = 0;
    for original in [
        Schema::of::<Station>().encode(),
        Schema::of::<HoldsHandmade>().encode(),
        Schema::of::<[ShmVec<Pair, 2>; 2]>().encode(),
    ] {
        for len in 0..original.len() {
            cases += 1;
            check_decode(&original[..len], &mut rng);
        }
        for i in 0..original.len() {
            for b in 0..=255u8 {
                if b == original[i] {
                    continue;
                }
                let mut bytes = original.clone();
                bytes[i] = b;
                cases += 1;
                decoded += check_decode(&bytes, &mut rng) as usize;
            }
        }
    }
    assert!(cases > 100_000, "{cases}");
    // Plenty of changes (names, numbers) leave a valid schema.
    assert!(decoded > 1000, "{decoded}");
}

#[test]
fn random_bytes_are_caught_or_harmless() {
    let mut rng = Lcg(2);
    let originals = [
        Schema::of::<Station>().encode(),
        Schema::of::<[Reading; 2]>().encode(),
        Schema::of::<HoldsHandmade>().encode(),
    ];
    let (mut decoded, mut edited_decoded) = (0, 0);
    for i in 0..300_000 {
        let len = rng.below(64) as usize;
        let bytes = match i % 3 {
            // Anything.
            0 => rng.bytes(len),
            // Past the magic, with plausible tags and small numbers.
            1 => {
                let mut b = b"SHSC\x01".to_vec();
                for _ in 0..len {
                    b.push(match rng.below(4) {
                        0 => rng.below(9) as u8,
                        1 => rng.below(4) as u8,
                        2 => b'a' + rng.below(3) as u8,
                        _ => rng.next() as u8,
                    });
                }
                b
            }
            // A real schema with a few bytes overwritten, inserted or removed.
            _ => {
                let mut b = originals[rng.below(3) as usize].clone();
                for _ in 0..1 + rng.below(4) {
                    let at = rng.below(b.len() as u64 + 1) as usize;
                    let byte = if rng.below(2) == 0 {
                        rng.below(16) as u8
                    } else {
                        rng.next() as u8
                    };
                    match rng.below(3) {
                        0 if at < b.len() => b[at] = byte,
                        1 => b.insert(at, byte),
                        _ if at < b.len() => {
                            b.remove(at);
                        }
                        _ => {}
                    }
                }
                b
            }
        };
        let ok = check_decode(&bytes, &mut rng) as usize;
        decoded += ok;
        if i % 3 == 2 {
            edited_decoded += ok;
        }
    }
    assert!(
        decoded > 0 && edited_decoded > 1000,
        "{decoded} {edited_decoded}"
    );
}

/// A random schema: consistent (a layout Rust could produce) when `tidy`,
/// anything at all otherwise.
fn random_schema(rng: &mut Lcg, depth: usize, tidy: bool) -> Schema {
    let wild = |rng: &mut Lcg, tidy_value: u64| -> u64 {
        if tidy || rng.below(3) != 0 {
            tidy_value
        } else {
            match rng.below(4) {
                0 => rng.next(),
                1 => rng.below(20),
                2 => u64::MAX - rng.below(3),
                _ => 1 << rng.below(64),
            }
        }
    };
    let name = |rng: &mut Lcg| -> String {
        match rng.below(if tidy { 2 } else { 4 }) {
            0 => "T".to_owned(),
            1 => format!("T{}", rng.below(100)),
            2 => "\u{0}\n🦀".repeat(rng.below(60) as usize),
            _ => "é".repeat(rng.below(100) as usize),
        }
    };
    let leaf = rng.below(3) == 0 || depth > 18;
    match rng.below(if leaf { 5 } else { 8 }) {
        0 => {
            let size: u64 = 1 << rng.below(4);
            let atomic = rng.below(2) == 0;
            let align = if atomic {
                size
            } else {
                1 << rng.below(size.trailing_zeros() as u64 + 1)
            };
            Schema::new(
                name(rng),
                wild(rng, size),
                wild(rng, align),
                Kind::Int {
                    signed: rng.below(2) == 0,
                    atomic,
                },
            )
        }
        1 => {
            let size = 4 << rng.below(2);
            Schema::new(name(rng), wild(rng, size), wild(rng, size), Kind::Float)
        }
        2 => Schema::new(name(rng), wild(rng, 1), wild(rng, 1), Kind::Bool),
        3 => {
            let n = rng.below(40);
            let cap = wild(rng, n);
            Schema::new(
                name(rng),
                wild(rng, cap.wrapping_add(4)),
                wild(rng, 1),
                Kind::Str { capacity: cap },
            )
        }
        4 => {
            let align = 1 << rng.below(6);
            let size = align * rng.below(5);
            Schema::new(name(rng), wild(rng, size), wild(rng, align), Kind::Opaque)
        }
        5 => {
            let elem = random_schema(rng, depth + 1, tidy);
            let n = rng.below(6);
            let len = wild(rng, n);
            let size = elem.size.wrapping_mul(len);
            let align = elem.align;
            Schema::new(
                "array",
                wild(rng, size),
                wild(rng, align),
                Kind::Array {
                    elem: Box::new(elem),
                    len,
                },
            )
        }
        6 => {
            let mut elem = random_schema(rng, depth + 1, tidy);
            if tidy && elem.align > 8 {
                elem = Schema::new(
                    "u8",
                    1,
                    1,
                    Kind::Int {
                        signed: false,
                        atomic: false,
                    },
                );
            }
            let n = rng.below(5);
            let cap = wild(rng, n);
            let size = elem.size.wrapping_mul(cap).wrapping_add(8);
            let align = elem.align;
            Schema::new(
                "ShmVec",
                wild(rng, size),
                wild(rng, align),
                Kind::List {
                    elem: Box::new(elem),
                    capacity: cap,
                },
            )
        }
        _ => {
            let count = rng.below(6);
            let mut fields = Vec::new();
            let (mut end, mut align) = (0u64, 1u64);
            for i in 0..count {
                let schema = random_schema(rng, depth + 1, tidy);
                let a = schema.align.max(1);
                let offset = end.checked_next_multiple_of(a).unwrap_or(u64::MAX);
                end = offset.saturating_add(schema.size);
                align = align.max(a);
                let fname = if tidy || rng.below(4) != 0 {
                    format!("f{i}")
                } else {
                    name(rng)
                };
                fields.push(Field::new(fname, wild(rng, offset), schema));
            }
            let size = end.checked_next_multiple_of(align).unwrap_or(u64::MAX);
            Schema::new(
                name(rng),
                wild(rng, size),
                wild(rng, align),
                Kind::Struct { fields },
            )
        }
    }
}

#[test]
fn random_schemas_encode_to_what_decode_accepts() {
    let mut rng = Lcg(4);
    let (mut exact, mut tidy_count) = (0, 0);
    for i in 0..20_000 {
        let tidy = i % 2 == 0;
        let s = random_schema(&mut rng, 1, tidy);
        let bytes = s.encode();
        assert!(bytes.len() <= MAX_ENCODED_LEN);
        let decoded = match Schema::decode(&bytes) {
            Ok(d) => d,
            Err(e) => panic!("{e}\n{s:?}"),
        };
        decoded.validate().unwrap();
        // What encode wrote is exactly what decode read.
        assert_eq!(decoded.encode(), bytes);
        if s.validate().is_ok() {
            assert_eq!(decoded, s);
            exact += 1;
        }
        tidy_count += tidy as usize;
        check_values(&s, &mut rng);
        check_values(&decoded, &mut rng);
    }
    assert!(exact > 5000, "{exact} of {tidy_count}");
}

// ---------------------------------------------------------------------------
// A JSON checker

fn assert_json(text: &str) {
    let mut p = Json {
        b: text.as_bytes(),
        i: 0,
    };
    p.value(0);
    p.ws();
    assert_eq!(p.i, p.b.len(), "trailing text in {text}");
}

struct Json<'a> {
    b: &'a [u8],
    i: usize,
}

impl Json<'_> {
    fn peek(&self) -> u8 {
        *self.b.get(self.i).unwrap_or(&0)
    }

    fn eat(&mut self, c: u8) {
        assert_eq!(
            self.peek(),
            c,
            "at {} of {}",
            self.i,
            String::from_utf8_lossy(self.b)
        );
        self.i += 1;
    }

    fn ws(&mut self) {
        while matches!(self.peek(), b' ' | b'\n' | b'\t' | b'\r') {
            self.i += 1;
        }
    }

    fn value(&mut self, depth: usize) {
        assert!(depth < 100);
        self.ws();
        match self.peek() {
            b'{' => {
                self.eat(b'{');
                self.ws();
                if self.peek() != b'}' {
                    loop {
                        self.ws();
                        self.string();
                        self.ws();
                        self.eat(b':');
                        self.value(depth + 1);
                        self.ws();
                        if self.peek() != b',' {
                            break;
                        }
                        self.eat(b',');
                    }
                }
                self.eat(b'}');
            }
            b'[' => {
                self.eat(b'[');
                self.ws();
                if self.peek() != b']' {
                    loop {
                        self.value(depth + 1);
                        self.ws();
                        if self.peek() != b',' {
                            break;
                        }
                        self.eat(b',');
                    }
                }
                self.eat(b']');
            }
            b'"' => self.string(),
            b't' => self.word("true"),
            b'f' => self.word("false"),
            b'n' => self.word("null"),
            _ => self.number(),
        }
    }

    fn word(&mut self, w: &str) {
        for &c in w.as_bytes() {
            self.eat(c);
        }
    }

    fn string(&mut self) {
        self.eat(b'"');
        loop {
            let c = self.peek();
            assert!(c >= 0x20, "raw control byte {c:#x} in a string");
            self.i += 1;
            match c {
                b'"' => return,
                b'\\' => {
                    let e = self.peek();
                    self.i += 1;
                    match e {
                        b'"' | b'\\' | b'/' | b'b' | b'f' | b'n' | b'r' | b't' => {}
                        b'u' => {
                            for _ in 0..4 {
                                assert!(self.peek().is_ascii_hexdigit());
                                self.i += 1;
                            }
                        }
                        _ => panic!("bad escape {e}"),
                    }
                }
                _ => {}
            }
        }
    }

    fn number(&mut self) {
        let start = self.i;
        if self.peek() == b'-' {
            self.i += 1;
        }
        let digits = |p: &mut Self| {
            let s = p.i;
            while p.peek().is_ascii_digit() {
                p.i += 1;
            }
            assert!(
                p.i > s,
                "a number without digits in {}",
                String::from_utf8_lossy(p.b)
            );
        };
        if self.peek() == b'0' {
            self.i += 1;
        } else {
            digits(self);
        }
        if self.peek() == b'.' {
            self.i += 1;
            digits(self);
        }
        if matches!(self.peek(), b'e' | b'E') {
            self.i += 1;
            if matches!(self.peek(), b'+' | b'-') {
                self.i += 1;
            }
            digits(self);
        }
        let text = core::str::from_utf8(&self.b[start..self.i]).unwrap();
        assert!(text.parse::<f64>().is_ok(), "{text}");
    }
}
