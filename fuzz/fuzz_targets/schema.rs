//! Raw bytes into the schema decoder and the value renderer, as a tool
//! meets them in a damaged segment. The input is a 2-byte little-endian
//! length, that many bytes of encoded schema, then the value's bytes.
//!
//! Decoding must return a schema or a `SchemaError`, never panic or
//! allocate much; a schema it accepts must pass `validate`, encode back to
//! what decodes to the same schema, and render any bytes as a value.

#![no_main]

use libfuzzer_sys::fuzz_target;
use shmstore::Schema;

fuzz_target!(|input: &[u8]| {
    let (schema, value) = match input {
        [a, b, rest @ ..] => {
            let n = usize::from(u16::from_le_bytes([*a, *b])).min(rest.len());
            rest.split_at(n)
        }
        _ => (input, &[][..]),
    };
    let decoded = match Schema::decode(schema) {
        Ok(s) => s,
        Err(e) => {
            assert!(!e.to_string().is_empty());
            return;
        }
    };
    decoded.validate().expect("a decoded schema validates");
    let encoded = decoded.encode();
    assert_eq!(encoded, schema, "a decoded schema encodes to other bytes");
    assert_eq!(Schema::decode(&encoded).as_ref(), Ok(&decoded));
    let _ = format!("{decoded} {decoded:#}");
    for bytes in [value, &vec![0xa5; (decoded.size as usize).min(1 << 16)][..]] {
        let v = decoded.value(bytes);
        let _ = (v.to_string(), v.to_json());
    }
});
