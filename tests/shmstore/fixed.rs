//! The fixed-capacity types `ShmStr`, `ShmVec` and `ShmBool`: whatever bytes
//! another process leaves in them, reading never panics or misbehaves (lengths
//! are clamped, UTF-8 is checked, any non-zero byte is true); writing keeps
//! them valid and zeroes what it frees; their layouts are the documented ones,
//! and they round-trip through a real segment inside a derived struct.

use core::mem::{align_of, size_of, size_of_val};
use std::collections::hash_map::DefaultHasher;
use std::hash::{Hash, Hasher};
use std::sync::atomic::{AtomicU32, Ordering};

use crate::common::Rng;
use shmstore::{CapacityError, Shareable, Shared, ShmBool, ShmStr, ShmVec};

// ---------------------------------------------------------------------------
// Helpers

/// The bytes of `value`, as another process sees them.
fn bytes_of<T: Shareable>(value: &T) -> &[u8] {
    // SAFETY: the pointer comes from a reference, so it is valid for reads of
    // size_of::<T>() bytes for the borrow's lifetime; a `Shareable` type has no
    // padding, so every one of those bytes is initialised.
    unsafe { core::slice::from_raw_parts((value as *const T).cast::<u8>(), size_of::<T>()) }
}

/// A `T` made of exactly these bytes, as another process could leave it.
fn from_bytes<T: Shareable>(bytes: &[u8]) -> T {
    assert_eq!(bytes.len(), size_of::<T>());
    // SAFETY: `bytes` holds size_of::<T>() readable bytes, `read_unaligned`
    // needs no alignment, and every bit pattern is a valid `T: Shareable`.
    unsafe { core::ptr::read_unaligned(bytes.as_ptr().cast::<T>()) }
}

/// The bytes of a slice of `Shareable` items.
fn bytes_of_slice<T: Shareable>(items: &[T]) -> &[u8] {
    // SAFETY: the pointer and length come from a slice, so the memory is
    // readable for size_of_val(items) bytes for the borrow's lifetime, and
    // `Shareable` items have no padding, so every byte is initialised.
    unsafe { core::slice::from_raw_parts(items.as_ptr().cast::<u8>(), size_of_val(items)) }
}

fn hash_of<T: Hash>(value: &T) -> u64 {
    let mut h = DefaultHasher::new();
    value.hash(&mut h);
    h.finish()
}

/// What hostile bytes are drawn with: a deterministic generator, so that
/// failures repeat.
impl Rng {
    /// A byte that is often part of a multi-byte UTF-8 sequence, or breaks one.
    fn utf8ish_byte(&mut self) -> u8 {
        const PIECES: &[u8] = &[
            b'a', b'z', b' ', 0x00, 0x7f, // ASCII
            0xc3, 0xa9, // é
            0xe2, 0x82, 0xac, // €
            0xf0, 0x9f, 0xa6, 0x80, // 🦀
            0x80, 0xbf, // lone continuation bytes
            0xc0, 0xc1, 0xf5, 0xff, // never valid
            0xed, 0xa0, // a surrogate's start
        ];
        if self.below(4) == 0 {
            self.next() as u8
        } else {
            PIECES[self.below(PIECES.len() as u64) as usize]
        }
    }

    /// A length field: mostly around the capacity, sometimes anything.
    fn length(&mut self, capacity: usize) -> u64 {
        match self.below(6) {
            0 => self.next(),
            1 => u64::MAX - self.below(3),
            2 => u32::MAX as u64 - self.below(3),
            _ => self.below(capacity as u64 + 3),
        }
    }
}

// ---------------------------------------------------------------------------
// Hostile bytes

/// Checks everything a reader can do with a `ShmStr<N>` made of `raw`.
fn check_hostile_str<const N: usize>(raw: &[u8]) {
    let s: ShmStr<N> = from_bytes(raw);
    let stored = u32::from_le_bytes(raw[..4].try_into().unwrap()) as usize;
    let len = stored.min(N);
    assert_eq!(s.len(), len, "stored length {stored}, capacity {N}");
    assert_eq!(s.is_empty(), len == 0);
    assert_eq!(s.capacity(), N);
    assert_eq!(s.as_bytes(), &raw[4..4 + len]);
    // std decides what UTF-8 is.
    let expected = core::str::from_utf8(&raw[4..4 + len]);
    assert_eq!(s.as_str(), expected);
    assert_eq!(
        s.to_string_lossy(),
        String::from_utf8_lossy(&raw[4..4 + len])
    );
    assert_eq!(s.to_string(), s.to_string_lossy());
    let debug = format!("{s:?}");
    match expected {
        Ok(text) => assert_eq!(debug, format!("{text:?}")),
        Err(_) => assert!(debug.starts_with("b\""), "{debug}"),
    }
    // Compared with text, it is what `as_str` gives; invalid UTF-8 equals
    // no string, not even its lossy rendering.
    match expected {
        Ok(text) => {
            assert!(s == *text, "{raw:x?}");
            assert!(text == s, "{raw:x?}");
        }
        Err(_) => assert!(s != *s.to_string_lossy(), "{raw:x?}"),
    }
    // Equality and hashing see the clamped bytes only.
    let mut same = s;
    let mut extra = raw.to_vec();
    extra[4 + len..].iter_mut().for_each(|b| *b = 0x5a);
    let other: ShmStr<N> = from_bytes(&extra);
    assert_eq!(s, other);
    assert_eq!(hash_of(&s), hash_of(&other));
    // Writing over garbage leaves a valid value with a zeroed tail.
    same.set_truncated("x€");
    assert!(same.as_str().is_ok());
    assert!(bytes_of(&same)[4 + same.len()..].iter().all(|&b| b == 0));
}

#[test]
fn a_string_of_random_bytes_reads_clamped_and_checked() {
    let mut rng = Rng(0x5eed_0000_0000_0001);
    fn one<const N: usize>(rng: &mut Rng) {
        let mut raw = vec![0u8; 4 + N];
        for b in &mut raw[4..] {
            *b = rng.utf8ish_byte();
        }
        let len = rng.length(N) as u32;
        raw[..4].copy_from_slice(&len.to_le_bytes());
        check_hostile_str::<N>(&raw);
    }
    let (mut valid, mut invalid) = (0, 0);
    for _ in 0..3000 {
        one::<0>(&mut rng);
        one::<1>(&mut rng);
        one::<5>(&mut rng);
        one::<16>(&mut rng);
        one::<31>(&mut rng);
        // Count both outcomes, so the test is known to exercise both.
        let mut raw = [0u8; 4 + 8];
        for b in &mut raw[4..] {
            *b = rng.utf8ish_byte();
        }
        raw[0] = rng.below(9) as u8;
        match from_bytes::<ShmStr<8>>(&raw).as_str() {
            Ok(_) => valid += 1,
            Err(_) => invalid += 1,
        }
        check_hostile_str::<8>(&raw);
    }
    assert!(
        valid > 100 && invalid > 100,
        "{valid} valid, {invalid} invalid"
    );
}

#[test]
fn a_string_with_hand_made_bad_bytes() {
    /// A `ShmStr<8>` whose length field says `len` and whose bytes start with `bytes`.
    fn raw(len: u32, bytes: &[u8]) -> [u8; 12] {
        let mut raw = [0u8; 12];
        raw[..4].copy_from_slice(&len.to_le_bytes());
        raw[4..4 + bytes.len()].copy_from_slice(bytes);
        raw
    }
    let cases: &[(u32, &[u8], Option<&str>)] = &[
        // Length past the capacity: clamped to 8.
        (9, b"abcdefgh", Some("abcdefgh")),
        (u32::MAX, b"abcdefgh", Some("abcdefgh")),
        (0x8000_0000, b"abcdefgh", Some("abcdefgh")),
        (3, b"abcdefgh", Some("abc")),
        (0, b"abcdefgh", Some("")),
        // Invalid UTF-8.
        (1, &[0xff], None),
        (1, &[0x80], None),                   // a lone continuation byte
        (3, b"a\xbfb", None),                 // one in the middle
        (2, &[0xc0, 0x80], None),             // an overlong NUL
        (3, &[0xed, 0xa0, 0x80], None),       // a surrogate
        (4, &[0xf4, 0x90, 0x80, 0x80], None), // past U+10FFFF
        (1, "é".as_bytes(), None),            // a character cut by the length
        (u32::MAX, b"abcdefg\xc3", None),     // cut by the capacity
        // Valid multi-byte characters.
        (2, "é".as_bytes(), Some("é")),
        (8, "a€🦀".as_bytes(), Some("a€🦀")),
    ];
    for &(len, bytes, expected) in cases {
        let raw = raw(len, bytes);
        check_hostile_str::<8>(&raw);
        let s: ShmStr<8> = from_bytes(&raw);
        assert_eq!(s.as_str().ok(), expected, "{raw:x?}");
        assert!(s.len() <= 8);
    }
    let s: ShmStr<8> = from_bytes(&raw(3, b"a\xffb"));
    assert_eq!(format!("{s:?}"), r#"b"a\xffb""#);
    assert_eq!(s.to_string(), "a\u{fffd}b");
    assert_eq!(format!("{s:>5}|"), "  a\u{fffd}b|", "Display pads");
}

/// Checks everything a reader can do with a `ShmVec<T, N>` made of `raw`.
fn check_hostile_vec<T, const N: usize>(raw: &[u8])
where
    T: Shareable + Copy + PartialEq + core::fmt::Debug,
{
    let v: ShmVec<T, N> = from_bytes(raw);
    let stored = u64::from_le_bytes(raw[..8].try_into().unwrap());
    let len = stored.min(N as u64) as usize;
    assert_eq!(v.len(), len, "stored length {stored}, capacity {N}");
    assert_eq!(v.is_empty(), len == 0);
    assert_eq!(v.capacity(), N);
    assert_eq!(v.as_slice().len(), len);
    assert_eq!(v.iter().count(), len);
    assert_eq!((&v).into_iter().count(), len);
    // The items are the bytes the peer wrote (compared as bytes: NaN != NaN).
    let live = len * size_of::<T>();
    assert_eq!(bytes_of_slice(v.as_slice()), &raw[8..8 + live]);
    let _ = format!("{v:?}");

    let zero: T = from_bytes(&vec![0; size_of::<T>()]);
    let mut w = v;
    if len < N {
        w.push(zero).unwrap();
        assert_eq!(w.len(), len + 1);
    } else {
        let err = w.push(zero).unwrap_err();
        assert_eq!((err.needed(), err.capacity()), (N + 1, N));
        assert_eq!(bytes_of(&w), raw, "a failed push changes nothing");
    }
    let mut w = v;
    assert_eq!(w.pop().is_some(), len > 0);
    assert_eq!(w.len(), len.saturating_sub(1));
    w.clear();
    assert!(w.is_empty());
    assert!(
        bytes_of(&w).iter().all(|&b| b == 0),
        "clear zeroes every slot"
    );
}

#[test]
fn a_vector_of_random_bytes_reads_clamped() {
    let mut rng = Rng(0x5eed_0000_0000_0002);
    fn one<T, const N: usize>(rng: &mut Rng)
    where
        T: Shareable + Copy + PartialEq + core::fmt::Debug,
    {
        let mut raw = vec![0u8; size_of::<ShmVec<T, N>>()];
        for b in &mut raw[8..] {
            *b = rng.next() as u8;
        }
        let len = rng.length(N);
        raw[..8].copy_from_slice(&len.to_le_bytes());
        check_hostile_vec::<T, N>(&raw);
    }
    for _ in 0..2000 {
        one::<u8, 0>(&mut rng);
        one::<u8, 3>(&mut rng);
        one::<u16, 5>(&mut rng);
        one::<u32, 4>(&mut rng);
        one::<u64, 3>(&mut rng);
        one::<f64, 4>(&mut rng); // NaNs and infinities included
        one::<[u8; 3], 5>(&mut rng);
    }
}

#[test]
fn a_vector_with_hand_made_lengths() {
    for stored in [0, 1, 3, 4, 5, 1 << 32, 1 << 63, u64::MAX - 1, u64::MAX] {
        let mut raw = [0xeeu8; 8 + 4 * 4];
        raw[..8].copy_from_slice(&stored.to_le_bytes());
        check_hostile_vec::<u32, 4>(&raw);
        let v: ShmVec<u32, 4> = from_bytes(&raw);
        assert_eq!(v.len(), (stored.min(4)) as usize);
        assert!(v.iter().all(|&x| x == 0xeeee_eeee));
    }
}

#[test]
fn any_nonzero_byte_is_true() {
    for byte in 0..=u8::MAX {
        let b: ShmBool = from_bytes(&[byte]);
        assert_eq!(b.get(), byte != 0, "byte {byte}");
        assert_eq!(bool::from(b), byte != 0);
        assert_eq!(b, ShmBool::new(byte != 0));
        assert_eq!(hash_of(&b), hash_of(&ShmBool::new(byte != 0)));
        assert_eq!(format!("{b:?}"), format!("{}", byte != 0));
    }
    let two: ShmBool = from_bytes(&[2]);
    let max: ShmBool = from_bytes(&[255]);
    assert!(two.get() && max.get());
    assert_eq!(two, max);
}

// ---------------------------------------------------------------------------
// Behaviour

#[test]
fn a_string_too_long_is_refused_and_the_value_unchanged() {
    let mut s = ShmStr::<4>::try_from("abc").unwrap();
    let before = bytes_of(&s).to_vec();
    let err: CapacityError = s.set("hello").unwrap_err();
    assert_eq!(err.needed(), 5);
    assert_eq!(err.capacity(), 4);
    assert_eq!(err.to_string(), "the string needs 5 bytes, capacity is 4");
    assert_eq!(bytes_of(&s), before);
    assert_eq!(s.as_str(), Ok("abc"));

    // Bytes, not characters, count: "€€" is 6 bytes.
    let err = ShmStr::<5>::try_from("€€").unwrap_err();
    assert_eq!((err.needed(), err.capacity()), (6, 5));
    // Exactly full is fine.
    assert_eq!(ShmStr::<6>::try_from("€€").unwrap().len(), 6);
    assert_eq!(ShmStr::<0>::try_from("").unwrap().as_str(), Ok(""));
    assert!(ShmStr::<0>::try_from("a").is_err());

    let boxed: Box<dyn std::error::Error> = Box::new(err);
    assert_eq!(boxed.to_string(), "the string needs 6 bytes, capacity is 5");
}

#[test]
fn set_truncated_cuts_at_a_character_boundary() {
    let mut s = ShmStr::<5>::new();
    // (input, what fits in 5 bytes)
    let cases = [
        ("abc", "abc"),
        ("abcdefgh", "abcde"),
        ("a🦀", "a🦀"),   // 1 + 4: exactly full
        ("ab🦀", "ab"),   // the crab would end at byte 6
        ("€€", "€"),      // 3 + 3
        ("éééé", "éé"),   // 2 + 2, the third would end at 6
        ("aéééé", "aéé"), // 1 + 2 + 2
        ("🦀🦀", "🦀"),
        ("", ""),
    ];
    for (input, expected) in cases {
        s.set_truncated(input);
        assert_eq!(s.as_str(), Ok(expected), "{input}");
        assert!(
            bytes_of(&s)[4 + expected.len()..].iter().all(|&b| b == 0),
            "{input}: bytes past the length are zeroed"
        );
    }
    let mut empty = ShmStr::<0>::new();
    empty.set_truncated("🦀");
    assert_eq!(empty.as_str(), Ok(""));
    let mut three = ShmStr::<3>::new();
    three.set_truncated("🦀");
    assert_eq!(three.as_str(), Ok(""), "a 4-byte character never fits in 3");
}

#[test]
fn a_shorter_string_leaves_no_stale_bytes() {
    let mut s = ShmStr::<12>::try_from("secret-token").unwrap();
    s.set("hi").unwrap();
    assert_eq!(bytes_of(&s), b"\x02\x00\x00\x00hi\0\0\0\0\0\0\0\0\0\0");
    s.clear();
    assert!(s.is_empty());
    assert!(bytes_of(&s).iter().all(|&b| b == 0));
    assert_eq!(s, ShmStr::default());

    // Over a peer's garbage too.
    let mut raw = [0xffu8; 4 + 12];
    raw[..4].copy_from_slice(&2u32.to_le_bytes());
    let mut s: ShmStr<12> = from_bytes(&raw);
    s.set("ok").unwrap();
    assert_eq!(bytes_of(&s), b"\x02\x00\x00\x00ok\0\0\0\0\0\0\0\0\0\0");
}

#[test]
fn strings_compare_debug_and_display_as_str_does() {
    let a = ShmStr::<16>::try_from("grüße").unwrap();
    let b = ShmStr::<16>::try_from("grüße").unwrap();
    assert_eq!(a, b);
    assert_eq!(hash_of(&a), hash_of(&b));
    assert_ne!(a, ShmStr::<16>::try_from("gruesse").unwrap());
    assert_eq!(format!("{a}"), "grüße");
    assert_eq!(format!("{a:?}"), "\"grüße\"");
    assert_eq!(a.to_string_lossy(), "grüße");
    assert_eq!(a.as_bytes(), "grüße".as_bytes());
    assert_eq!((a.len(), a.capacity(), a.is_empty()), (7, 16, false));
    let empty = ShmStr::<16>::new();
    assert_eq!((empty.len(), empty.is_empty()), (0, true));
    assert_eq!(format!("{empty:?}"), "\"\"");
}

#[test]
fn strings_compare_with_text_on_either_side() {
    use std::borrow::Cow;
    let name = ShmStr::<8>::try_from("web").unwrap();
    let text: &str = "web";
    let owned = String::from("web");
    let cow: Cow<'_, str> = Cow::Borrowed("web");
    assert!(name == "web");
    assert!("web" == name);
    assert!(name == *text);
    assert!(*text == name);
    assert!(name == owned);
    assert!(owned == name);
    assert!(name == cow);
    assert!(cow == name);
    assert_eq!(name, "web");
    assert_ne!(name, "web ");
    assert_ne!(name, "we");
    assert_ne!(name, String::new());
    assert_eq!(ShmStr::<8>::new(), "");
    // Bytes past the length do not count, and a length a peer wrote past
    // the capacity is clamped before comparing.
    let mut raw = *b"\xff\xff\xff\xffabcdefgh";
    assert_eq!(from_bytes::<ShmStr<8>>(&raw), "abcdefgh");
    raw[..4].copy_from_slice(&2u32.to_le_bytes());
    assert_eq!(from_bytes::<ShmStr<8>>(&raw), "ab");
    // A character cut by the length equals neither its bytes as text nor
    // the replacement character.
    let mut raw = [0u8; 4 + 8];
    raw[..4].copy_from_slice(&1u32.to_le_bytes());
    raw[4..6].copy_from_slice("é".as_bytes());
    let cut: ShmStr<8> = from_bytes(&raw);
    assert!(cut != "é" && cut != "\u{fffd}");
}

#[test]
fn vectors_compare_with_slices_arrays_and_vecs() {
    let v = ShmVec::<u16, 4>::try_from(&[80u16, 443][..]).unwrap();
    let slice: &[u16] = &[80, 443];
    let array: &[u16; 2] = &[80, 443];
    assert!(v == [80, 443]);
    assert!(v == array);
    assert!(v == *slice);
    assert!(v == slice);
    assert!(*slice == v);
    assert!(slice == v);
    assert!(v == vec![80, 443]);
    assert!(vec![80, 443] == v);
    assert_eq!(v, [80, 443]);
    assert_ne!(v, [80]);
    assert_ne!(v, [80, 443, 0], "slots past the length are not items");
    assert_eq!(ShmVec::<u16, 4>::new(), []);
    // Items of another type that compares with them.
    let names = ShmVec::<ShmStr<8>, 2>::try_from(&[ShmStr::try_from("a").unwrap()][..]).unwrap();
    assert!(names == ["a"]);
}

#[test]
fn pushing_past_the_capacity_is_refused() {
    let mut v = ShmVec::<u32, 3>::new();
    assert!(v.is_empty());
    v.push(1).unwrap();
    v.push(2).unwrap();
    v.push(3).unwrap();
    let before = bytes_of(&v).to_vec();
    let err = v.push(4).unwrap_err();
    assert_eq!((err.needed(), err.capacity()), (4, 3));
    assert_eq!(err.to_string(), "the vector needs 4 items, capacity is 3");
    assert_eq!(bytes_of(&v), before);
    assert_eq!(v.as_slice(), [1, 2, 3]);

    let mut none = ShmVec::<u64, 0>::new();
    assert_eq!(none.push(7).unwrap_err().needed(), 1);
    assert_eq!(none.pop(), None);
}

#[test]
fn extend_from_slice_is_all_or_nothing() {
    let mut v = ShmVec::<u16, 4>::try_from(&[1u16, 2][..]).unwrap();
    let before = bytes_of(&v).to_vec();
    let err = v.extend_from_slice(&[3, 4, 5]).unwrap_err();
    assert_eq!((err.needed(), err.capacity()), (5, 4));
    assert_eq!(bytes_of(&v), before, "nothing was added");
    v.extend_from_slice(&[3, 4]).unwrap();
    assert_eq!(v.as_slice(), [1, 2, 3, 4]);
    v.extend_from_slice(&[]).unwrap();
    assert_eq!(v.len(), 4);
    assert_eq!(v.extend_from_slice(&[9]).unwrap_err().needed(), 5);

    let err = ShmVec::<u16, 2>::try_from(&[1u16, 2, 3][..]).unwrap_err();
    assert_eq!((err.needed(), err.capacity()), (3, 2));
}

#[test]
fn shortening_a_vector_zeroes_the_freed_slots() {
    let mut v = ShmVec::<u32, 4>::try_from(&[0xaaaa_aaaa; 4][..]).unwrap();
    assert_eq!(v.pop(), Some(0xaaaa_aaaa));
    assert_eq!(&bytes_of(&v)[8 + 12..], [0; 4], "the popped slot is zeroed");
    v.truncate(1);
    assert_eq!(v.as_slice(), [0xaaaa_aaaa]);
    assert_eq!(&bytes_of(&v)[8 + 4..], [0; 12]);
    v.truncate(3); // longer than it is: nothing happens
    assert_eq!(v.len(), 1);
    v.clear();
    assert!(bytes_of(&v).iter().all(|&b| b == 0));
    assert_eq!(v, ShmVec::default());

    // Slots a peer filled past the length are zeroed by truncate too.
    let mut raw = [0xeeu8; 8 + 4 * 4];
    raw[..8].copy_from_slice(&3u64.to_le_bytes());
    let mut v: ShmVec<u32, 4> = from_bytes(&raw);
    v.truncate(1);
    assert_eq!(&bytes_of(&v)[8 + 4..], [0; 12]);
}

#[test]
fn a_vector_is_a_slice_of_its_items() {
    let mut v = ShmVec::<i64, 8>::try_from(&[5i64, -1, 3][..]).unwrap();
    v.sort();
    assert_eq!(*v, [-1, 3, 5]);
    for x in &mut v {
        *x *= 10;
    }
    v.as_mut_slice()[0] = 0;
    assert_eq!(v.iter().sum::<i64>(), 80);
    assert_eq!((&v).into_iter().copied().max(), Some(50));
    assert_eq!(format!("{v:?}"), "[0, 30, 50]");
    assert_eq!((v.len(), v.capacity(), v.is_empty()), (3, 8, false));

    // Equality and hashing ignore what lies past the length.
    let mut raw = [0x11u8; 8 + 8 * 8];
    raw[..8].copy_from_slice(&3u64.to_le_bytes());
    let mut w: ShmVec<i64, 8> = from_bytes(&raw);
    w.copy_from_slice(&[0, 30, 50]);
    assert_eq!(v, w);
    assert_eq!(hash_of(&v), hash_of(&w));
    w[2] = 51;
    assert_ne!(v, w);
}

#[test]
fn bool_api() {
    let mut b = ShmBool::default();
    assert!(!b.get());
    b.set(true);
    assert!(b.get());
    assert_eq!(bytes_of(&b), [1]);
    b.set(false);
    assert_eq!(bytes_of(&b), [0]);
    assert_eq!(ShmBool::from(true), ShmBool::new(true));
    assert_ne!(ShmBool::new(true), ShmBool::new(false));
    assert!(bool::from(ShmBool::new(true)));
    assert_eq!(format!("{:?}", ShmBool::new(false)), "false");
    assert!(ShmBool::new(true) == true);
    assert!(false == ShmBool::new(false));
    assert_eq!(
        from_bytes::<ShmBool>(&[2]),
        true,
        "any non-zero byte is true"
    );
}

// ---------------------------------------------------------------------------
// Fingerprints and layout

#[test]
fn fingerprints_tell_capacities_and_items_apart() {
    const STR8: u64 = <ShmStr<8> as Shareable>::FINGERPRINT;
    const STR16: u64 = <ShmStr<16> as Shareable>::FINGERPRINT;
    assert_ne!(STR8, STR16);
    let all = [
        STR8,
        STR16,
        ShmStr::<0>::FINGERPRINT,
        ShmVec::<u32, 4>::FINGERPRINT,
        ShmVec::<u64, 4>::FINGERPRINT,
        ShmVec::<i32, 4>::FINGERPRINT,
        ShmVec::<f32, 4>::FINGERPRINT,
        ShmVec::<u32, 5>::FINGERPRINT,
        ShmVec::<u8, 8>::FINGERPRINT,
        ShmVec::<ShmStr<4>, 2>::FINGERPRINT,
        ShmVec::<ShmStr<5>, 2>::FINGERPRINT,
        ShmBool::FINGERPRINT,
        u8::FINGERPRINT,
        <[u8; 12]>::FINGERPRINT,
    ];
    for (i, a) in all.iter().enumerate() {
        for (j, b) in all.iter().enumerate().skip(i + 1) {
            assert_ne!(a, b, "fingerprints {i} and {j}");
        }
    }
    assert_eq!(ShmStr::<8>::FINGERPRINT, ShmStr::<8>::FINGERPRINT);
    assert_eq!(ShmStr::<8>::TYPE_NAME, "ShmStr");
    assert_eq!(ShmVec::<u8, 1>::TYPE_NAME, "ShmVec");
    assert_eq!(ShmBool::TYPE_NAME, "ShmBool");
}

#[test]
fn sizes_and_alignments_are_as_documented() {
    macro_rules! str_layout {
        ($($n:literal),*) => {$(
            assert_eq!(size_of::<ShmStr<$n>>(), 4 + $n);
            assert_eq!(align_of::<ShmStr<$n>>(), 1);
        )*};
    }
    str_layout!(0, 1, 3, 5, 7, 13, 16, 255, 1021);

    macro_rules! vec_layout {
        ($($t:ty, $n:literal, $size:literal, $align:literal;)*) => {$(
            assert_eq!(size_of::<ShmVec<$t, $n>>(), $size, stringify!(ShmVec<$t, $n>));
            assert_eq!(size_of::<ShmVec<$t, $n>>(), 8 + $n * size_of::<$t>());
            assert_eq!(align_of::<ShmVec<$t, $n>>(), $align, stringify!(ShmVec<$t, $n>));
        )*};
    }
    vec_layout! {
        u8, 0, 8, 1;
        u8, 3, 11, 1;
        u16, 3, 14, 2;
        u32, 5, 28, 4;
        u32, 1, 12, 4;
        f32, 7, 36, 4;
        u64, 3, 32, 8;
        i64, 1, 16, 8;
        [u8; 3], 5, 23, 1;
        ShmStr<5>, 3, 35, 1;
        ShmBool, 9, 17, 1;
    }
    assert_eq!(size_of::<ShmBool>(), 1);
    assert_eq!(align_of::<ShmBool>(), 1);
}

#[test]
fn the_bytes_are_where_the_docs_say() {
    // ShmStr: u32 length, little-endian, then the bytes, then zeros.
    let s = ShmStr::<7>::try_from("hé").unwrap();
    assert_eq!(bytes_of(&s), [3, 0, 0, 0, b'h', 0xc3, 0xa9, 0, 0, 0, 0]);
    // ShmVec: u64 length, little-endian, then the items at offset 8.
    let v = ShmVec::<u16, 3>::try_from(&[1u16, 0x0203][..]).unwrap();
    assert_eq!(bytes_of(&v), [2, 0, 0, 0, 0, 0, 0, 0, 1, 0, 3, 2, 0, 0]);
    let v = ShmVec::<u64, 1>::try_from(&[u64::MAX][..]).unwrap();
    assert_eq!(
        bytes_of(&v),
        [1, 0, 0, 0, 0, 0, 0, 0, 255, 255, 255, 255, 255, 255, 255, 255]
    );
    assert_eq!(bytes_of(&ShmBool::new(true)), [1]);
}

/// The derive accepts the three types as fields, and refuses padding around
/// them as around any other field: `Config` only builds because of `_pad`.
#[derive(Shareable, Clone, Copy, Default, Debug, PartialEq)]
#[repr(C)]
struct Config {
    version: u64,          // 0..8
    ports: ShmVec<u16, 8>, // 8..32, alignment 2
    name: ShmStr<32>,      // 32..68, alignment 1
    enabled: ShmBool,      // 68
    verbose: ShmBool,      // 69
    _pad: [u8; 2],         // 70..72: the size is a multiple of 8
}

/// Fields of alignment 1 pack without any padding, for odd capacities too.
#[derive(Shareable, Clone, Copy, Default)]
#[repr(C)]
struct Packed {
    a: ShmStr<3>,
    b: ShmBool,
    c: ShmVec<u8, 5>,
    d: ShmStr<0>,
}

#[test]
fn derived_structs_of_these_fields_have_no_padding() {
    assert_eq!(size_of::<Config>(), 72);
    assert_eq!(
        size_of::<Config>(),
        8 + size_of::<ShmVec<u16, 8>>() + size_of::<ShmStr<32>>() + 2 * size_of::<ShmBool>() + 2
    );
    assert_eq!(align_of::<Config>(), 8);
    assert_eq!(size_of::<Packed>(), 7 + 1 + 13 + 4);
    assert_eq!(align_of::<Packed>(), 1);
    assert_ne!(Config::FINGERPRINT, Packed::FINGERPRINT);
    let p = Packed::default();
    assert!(p.a.is_empty() && !p.b.get() && p.c.is_empty() && p.d.is_empty());
}

// ---------------------------------------------------------------------------
// Through a real segment

/// Unlinks the segment when the test ends, also on failure.
struct Cleanup(String);

impl Drop for Cleanup {
    fn drop(&mut self) {
        let _ = shmstore::unlink(&self.0);
    }
}

fn unique() -> Cleanup {
    static SEQ: AtomicU32 = AtomicU32::new(0);
    let n = SEQ.fetch_add(1, Ordering::Relaxed);
    Cleanup(format!("shmstore-test-fixed-{}-{n}", std::process::id()))
}

#[test]
fn a_config_round_trips_through_a_segment() {
    let seg = unique();
    let mut initial = Config {
        version: 1,
        ..Config::default()
    };
    initial.name.set("primary").unwrap();
    initial.ports.extend_from_slice(&[80, 443]).unwrap();
    let shared = Shared::create(&seg.0, initial).unwrap();
    {
        let mut g = shared.lock().unwrap();
        assert_eq!(*g, initial);
        g.version += 1;
        g.name
            .set_truncated("a name longer than thirty-two bytes, cut");
        g.ports.push(8080).unwrap();
        g.enabled.set(true);
    }
    drop(shared);

    let reopened = Shared::<Config>::open(&seg.0).unwrap();
    let g = reopened.lock().unwrap();
    assert_eq!(g.version, 2);
    assert_eq!(g.name.as_str(), Ok("a name longer than thirty-two by"));
    assert_eq!(g.ports.as_slice(), [80, 443, 8080]);
    assert!(g.enabled.get());
    assert!(!g.verbose.get());
}

#[test]
fn garbage_a_peer_writes_into_a_segment_reads_back_clamped() {
    use std::io::{Seek, SeekFrom, Write};

    let seg = unique();
    let shared = Shared::create(&seg.0, Config::default()).unwrap();
    // Play a peer that writes through the file, not through this crate: the
    // header says where the value is (its `value_offset`, a u64 at byte 56).
    let path = format!("/dev/shm/{}", seg.0);
    let header = std::fs::read(&path).unwrap();
    let value_at = u64::from_ne_bytes(header[56..64].try_into().unwrap());
    assert!(value_at as usize + size_of::<Config>() <= header.len());
    let mut garbage = [0u8; 72];
    garbage[..8].copy_from_slice(&7u64.to_le_bytes()); // version
    garbage[8..16].copy_from_slice(&u64::MAX.to_le_bytes()); // ports.len
    garbage[16..32].fill(0xab); // 8 ports of 0xabab
    garbage[32..36].copy_from_slice(&1000u32.to_le_bytes()); // name.len
    garbage[36..68].copy_from_slice(b"valid until here\xff\xfe and then not!");
    garbage[68] = 2; // enabled
    garbage[69] = 255; // verbose
    {
        let _g = shared.lock().unwrap(); // a well-behaved peer holds the lock
        let mut f = std::fs::OpenOptions::new().write(true).open(&path).unwrap();
        f.seek(SeekFrom::Start(value_at)).unwrap();
        f.write_all(&garbage).unwrap();
    }

    let reopened = Shared::<Config>::open(&seg.0).unwrap();
    let mut g = reopened.lock().unwrap();
    assert_eq!(g.version, 7);
    assert_eq!(g.ports.len(), 8);
    assert!(g.ports.iter().all(|&p| p == 0xabab));
    assert_eq!(g.name.len(), 32);
    assert!(g.name.as_str().is_err());
    assert!(g
        .name
        .to_string_lossy()
        .starts_with("valid until here\u{fffd}"));
    assert!(g.enabled.get() && g.verbose.get());
    let _ = format!("{:?}", *g);

    // Writing through the guard makes it valid again.
    g.name.set("fixed").unwrap();
    g.ports.truncate(2);
    g.enabled.set(false);
    drop(g);
    let bytes = std::fs::read(&path).unwrap();
    let value = &bytes[value_at as usize..];
    assert_eq!(value[8..16], 2u64.to_le_bytes());
    assert_eq!(value[20..32], [0; 12], "freed slots are zeroed");
    assert_eq!(&value[32..41], b"\x05\0\0\0fixed");
    assert!(
        value[41..68].iter().all(|&b| b == 0),
        "stale bytes are zeroed"
    );
    assert_eq!(value[68], 0);
}
