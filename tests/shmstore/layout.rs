//! What another program reading /dev/shm sees: the value's bytes sit at the
//! documented offset, exactly as `bytemuck::bytes_of` lays them out, after a
//! header that starts with the magic, and the type's schema follows them.
//!
//! bytemuck is the independent judge here: its `Pod` derive proves "no
//! padding, any bit pattern" by its own means, and `bytes_of` gives the
//! value's bytes without going through shmstore.

use shmstore::{Schema, Shareable, Shared, SharedOptions};

// With the feature `bytemuck`, the derive implements `Pod` and `Zeroable` itself.
#[derive(Shareable, Clone, Copy, Debug, PartialEq)]
#[cfg_attr(not(feature = "bytemuck"), derive(bytemuck::Pod, bytemuck::Zeroable))]
#[repr(C)]
struct Reading {
    celsius: f64,
    sensor: u32,
    flags: u16,
    kind: u8,
    spare: u8,
    history: [i16; 4],
}

// With the feature `bytemuck`, the derive implements `Pod` and `Zeroable` itself.
#[derive(Shareable, Clone, Copy, Debug, PartialEq)]
#[cfg_attr(not(feature = "bytemuck"), derive(bytemuck::Pod, bytemuck::Zeroable))]
#[repr(C, align(64))]
struct Wide {
    words: [u64; 8],
}

/// Removes the segment when the test ends, also on failure.
struct Cleanup(String);

impl Drop for Cleanup {
    fn drop(&mut self) {
        let _ = shmstore::unlink(&self.0);
    }
}

fn unique(tag: &str) -> String {
    format!("shmstore-test-layout-{tag}-{}", std::process::id())
}

/// Checks that the schema of `T` follows a value that ends at `end`
/// (8-aligned) and that the file ends with it.
fn schema_follows<T: Shareable>(bytes: &[u8], end: usize) {
    let at = end.div_ceil(8) * 8;
    assert_eq!(
        &bytes[at..at + 4],
        b"SHSC",
        "the schema starts after the value"
    );
    let schema = Schema::decode(&bytes[at..]).expect("the schema decodes, to the file's end");
    assert_eq!(schema, Schema::of::<T>());
}

/// The segment file's bytes, read the way any other program would.
fn file_bytes(name: &str) -> Vec<u8> {
    std::fs::read(format!("/dev/shm/{name}")).expect("segment file in /dev/shm")
}

#[test]
fn value_bytes_are_the_values_own_bytes_at_the_documented_offset() {
    let name = unique("reading");
    let _cleanup = Cleanup(name.clone());
    let value = Reading {
        celsius: -12.5,
        sensor: 0xDEAD_BEEF,
        flags: 0x0102,
        kind: 7,
        spare: 0xFF,
        history: [1, -2, 300, -32768],
    };
    let shared = Shared::create(&name, value).unwrap();

    let bytes = file_bytes(&name);
    assert_eq!(&bytes[..8], b"SHMSTORE", "the header starts with the magic");
    let end = 304 + std::mem::size_of::<Reading>();
    assert_eq!(&bytes[304..end], bytemuck::bytes_of(&value));
    schema_follows::<Reading>(&bytes, end);

    // A write through the lock is what the file holds afterwards.
    shared.lock().unwrap().history[2] = 301;
    let mut expected = value;
    expected.history[2] = 301;
    assert_eq!(&file_bytes(&name)[304..end], bytemuck::bytes_of(&expected));
}

#[test]
fn an_over_aligned_value_starts_on_its_alignment() {
    let name = unique("wide");
    let _cleanup = Cleanup(name.clone());
    let value = Wide {
        words: [1, 2, 3, 4, 5, 6, 7, u64::MAX],
    };
    let shared = SharedOptions::new().create(&name, value).unwrap();
    let bytes = file_bytes(&name);
    // 304 rounded up to 64 is 320.
    assert_eq!(&bytes[320..384], bytemuck::bytes_of(&value));
    schema_follows::<Wide>(&bytes, 384);
    assert_eq!(*shared.lock().unwrap(), value);
}
