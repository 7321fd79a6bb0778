//! `#[derive(Shareable)]` on structs that may live in shared memory: what it
//! implements, and which changes the fingerprint sees.

use core::mem::{align_of, size_of};
use core::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use shmstore::Shareable;

/// The fingerprint of `T`, in const context.
const fn fp<T: Shareable>() -> u64 {
    T::FINGERPRINT
}

#[derive(Shareable)]
#[repr(C)]
struct Named {
    a: u64,
    b: u32,
    c: u16,
    d: u8,
    e: i8,
}

#[derive(Shareable)]
#[repr(C)]
struct Tuple(u32, i32, f64);

#[derive(Shareable)]
#[repr(transparent)]
struct Transparent(u64);

#[derive(Shareable)]
#[repr(transparent)]
struct TransparentWithZst {
    value: u32,
    _none: [u8; 0],
}

#[derive(Shareable)]
#[repr(C, align(8))]
struct Aligned {
    a: u32,
    b: u32,
}

#[derive(Shareable)]
#[repr(C)]
#[repr(align(16))]
struct AlignedTwoAttributes {
    a: [u64; 2],
}

#[derive(Shareable)]
#[repr(C)]
struct Outer {
    header: Named,
    wrapped: Transparent,
    pair: Tuple,
}

#[derive(Shareable)]
#[repr(C)]
struct Table {
    rows: [Aligned; 4],
    grid: [[Tuple; 2]; 3],
}

#[derive(Shareable)]
#[repr(C)]
struct Counters {
    hits: AtomicU64,
    misses: AtomicU32,
    flags: [core::sync::atomic::AtomicU8; 4],
}

#[derive(Shareable)]
#[repr(C)]
struct ExplicitPadding {
    small: u8,
    _pad: [u8; 7],
    big: u64,
}

#[derive(Shareable)]
#[repr(C)]
#[allow(non_camel_case_types)]
struct r#RawNames {
    r#type: u32,
}

const NAMED_FP: u64 = <Named as Shareable>::FINGERPRINT;
const OUTER_FP: u64 = fp::<Outer>();
const TABLE_FP: u64 = <[Table; 2] as Shareable>::FINGERPRINT;

#[test]
fn type_name_is_the_name_as_written() {
    assert_eq!(Named::TYPE_NAME, "Named");
    assert_eq!(Tuple::TYPE_NAME, "Tuple");
    assert_eq!(Transparent::TYPE_NAME, "Transparent");
    assert_eq!(Aligned::TYPE_NAME, "Aligned");
    assert_eq!(Outer::TYPE_NAME, "Outer");
    assert_eq!(RawNames::TYPE_NAME, "RawNames");
}

#[test]
fn fingerprints_are_consts() {
    assert_eq!(NAMED_FP, Named::FINGERPRINT);
    assert_eq!(OUTER_FP, Outer::FINGERPRINT);
    assert_eq!(TABLE_FP, <[Table; 2]>::FINGERPRINT);
    // Each type tells itself from the others.
    let all = [
        Named::FINGERPRINT,
        Tuple::FINGERPRINT,
        Transparent::FINGERPRINT,
        TransparentWithZst::FINGERPRINT,
        Aligned::FINGERPRINT,
        AlignedTwoAttributes::FINGERPRINT,
        Outer::FINGERPRINT,
        Table::FINGERPRINT,
        Counters::FINGERPRINT,
        ExplicitPadding::FINGERPRINT,
        RawNames::FINGERPRINT,
        u64::FINGERPRINT,
    ];
    for (i, a) in all.iter().enumerate() {
        for b in &all[i + 1..] {
            assert_ne!(a, b);
        }
    }
}

#[test]
fn a_transparent_struct_is_not_its_field() {
    assert_eq!(size_of::<Transparent>(), size_of::<u64>());
    assert_ne!(Transparent::FINGERPRINT, u64::FINGERPRINT);
}

#[test]
fn layouts_are_what_the_fields_say() {
    assert_eq!(size_of::<Named>(), 16);
    assert_eq!(size_of::<Tuple>(), 16);
    assert_eq!(size_of::<Aligned>(), 8);
    assert_eq!(align_of::<Aligned>(), 8);
    assert_eq!(align_of::<AlignedTwoAttributes>(), 16);
    assert_eq!(size_of::<Table>(), 4 * 8 + 6 * 16);
}

#[test]
fn derived_structs_are_usable() {
    let counters = Counters {
        hits: AtomicU64::new(1),
        misses: AtomicU32::new(2),
        flags: Default::default(),
    };
    counters.hits.fetch_add(1, Ordering::Relaxed);
    assert_eq!(counters.hits.load(Ordering::Relaxed), 2);
    assert_eq!(counters.misses.load(Ordering::Relaxed), 2);
    assert_eq!(counters.flags[3].load(Ordering::Relaxed), 0);
    let padded = ExplicitPadding {
        small: 1,
        _pad: [0; 7],
        big: 2,
    };
    assert_eq!(padded.small + padded._pad[0] + padded.big as u8, 3);
    let raw = RawNames { r#type: 3 };
    assert_eq!(raw.r#type, 3);
    let zst = TransparentWithZst {
        value: 4,
        _none: [],
    };
    assert_eq!(zst.value + zst._none.len() as u32, 4);
}

/// The same definition, by name, in two modules.
mod a {
    #[derive(shmstore::Shareable)]
    #[repr(C)]
    pub struct Point {
        pub x: i32,
        pub y: i32,
    }

    #[derive(shmstore::Shareable)]
    #[repr(C)]
    pub struct Inner {
        pub value: u32,
    }

    #[derive(shmstore::Shareable)]
    #[repr(C)]
    pub struct Wrapper {
        pub inner: Inner,
    }
}

mod b {
    #[derive(shmstore::Shareable)]
    #[repr(C)]
    pub struct Point {
        pub x: i32,
        pub y: i32,
    }

    #[derive(shmstore::Shareable)]
    #[repr(C)]
    pub struct Inner {
        pub other: u32,
    }

    #[derive(shmstore::Shareable)]
    #[repr(C)]
    pub struct Wrapper {
        pub inner: Inner,
    }
}

mod renamed_field {
    #[derive(shmstore::Shareable)]
    #[repr(C)]
    pub struct Point {
        pub x: i32,
        pub z: i32,
    }
}

mod swapped_fields {
    #[derive(shmstore::Shareable)]
    #[repr(C)]
    pub struct Point {
        pub y: i32,
        pub x: i32,
    }
}

mod renamed_struct {
    #[derive(shmstore::Shareable)]
    #[repr(C)]
    pub struct Position {
        pub x: i32,
        pub y: i32,
    }
}

mod unsigned {
    #[derive(shmstore::Shareable)]
    #[repr(C)]
    pub struct Point {
        pub x: u32,
        pub y: i32,
    }
}

mod float {
    #[derive(shmstore::Shareable)]
    #[repr(C)]
    pub struct Point {
        pub x: f32,
        pub y: i32,
    }
}

mod aligned {
    #[derive(shmstore::Shareable)]
    #[repr(C, align(8))]
    pub struct Point {
        pub x: i32,
        pub y: i32,
    }
}

mod tuple {
    #[derive(shmstore::Shareable)]
    #[repr(C)]
    pub struct Point(pub i32, pub i32);
}

mod transparent {
    #[derive(shmstore::Shareable)]
    #[repr(transparent)]
    pub struct Id(pub u64);

    #[derive(shmstore::Shareable)]
    #[repr(C)]
    pub struct Id2(pub u64);
}

#[test]
fn identical_definitions_have_identical_fingerprints() {
    const A: u64 = <a::Point as Shareable>::FINGERPRINT;
    const B: u64 = <b::Point as Shareable>::FINGERPRINT;
    assert_eq!(A, B);
    assert_eq!(a::Point::TYPE_NAME, b::Point::TYPE_NAME);
    // Nothing in the fingerprint depends on the build: pin one value, so a
    // change to the derive's hashing shows up here as well.
    assert_eq!(a::Point::FINGERPRINT, point_by_hand());
}

/// `a::Point`'s fingerprint, computed as the derive documents it.
fn point_by_hand() -> u64 {
    use shmstore::__private::Fingerprint;
    Fingerprint::new()
        .str("Point")
        .u64(8)
        .u64(4)
        .str("x")
        .u64(0)
        .u64(i32::FINGERPRINT)
        .str("y")
        .u64(4)
        .u64(i32::FINGERPRINT)
        .finish()
}

#[test]
fn renaming_a_field_changes_the_fingerprint() {
    assert_ne!(a::Point::FINGERPRINT, renamed_field::Point::FINGERPRINT);
}

#[test]
fn swapping_two_fields_of_one_type_changes_the_fingerprint() {
    assert_ne!(a::Point::FINGERPRINT, swapped_fields::Point::FINGERPRINT);
}

#[test]
fn renaming_the_struct_changes_the_fingerprint() {
    assert_ne!(a::Point::FINGERPRINT, renamed_struct::Position::FINGERPRINT);
    assert_eq!(renamed_struct::Position::TYPE_NAME, "Position");
}

#[test]
fn a_field_type_of_the_same_size_changes_the_fingerprint() {
    let fps = [
        a::Point::FINGERPRINT,
        unsigned::Point::FINGERPRINT,
        float::Point::FINGERPRINT,
    ];
    assert_ne!(fps[0], fps[1]);
    assert_ne!(fps[0], fps[2]);
    assert_ne!(fps[1], fps[2]);
}

#[test]
fn alignment_and_field_kind_change_the_fingerprint() {
    assert_ne!(a::Point::FINGERPRINT, aligned::Point::FINGERPRINT);
    assert_ne!(a::Point::FINGERPRINT, tuple::Point::FINGERPRINT);
    assert_ne!(transparent::Id::FINGERPRINT, transparent::Id2::FINGERPRINT);
}

#[test]
fn a_nested_field_change_changes_the_outer_fingerprint() {
    assert_ne!(a::Inner::FINGERPRINT, b::Inner::FINGERPRINT);
    assert_ne!(a::Wrapper::FINGERPRINT, b::Wrapper::FINGERPRINT);
}

#[test]
fn arrays_of_structs_depend_on_the_length_and_element() {
    assert_ne!(<[a::Point; 2]>::FINGERPRINT, <[a::Point; 3]>::FINGERPRINT);
    assert_ne!(
        <[a::Point; 2]>::FINGERPRINT,
        <[renamed_field::Point; 2]>::FINGERPRINT
    );
    assert_eq!(<[a::Point; 2]>::FINGERPRINT, <[b::Point; 2]>::FINGERPRINT);
}

/// Names that the expansion also uses, and primitive types shadowed by the
/// user's own: the expansion must not mix them up.
mod clashing_names {
    #![allow(non_camel_case_types, dead_code)]

    struct u64;
    struct usize;
    struct bool;
    struct str;
    struct core;
    struct shmstore;

    #[derive(::shmstore::Shareable)]
    #[repr(C)]
    pub struct DropImpl {
        pub a: u32,
    }

    #[derive(::shmstore::Shareable)]
    #[repr(C)]
    pub struct ZeroSized {
        pub inner: DropImpl,
    }

    #[derive(::shmstore::Shareable)]
    #[repr(C)]
    pub struct PaddingAtEnd {
        pub inner: ZeroSized,
        pub more: [DropImpl; 1],
    }

    #[derive(::shmstore::Shareable)]
    #[repr(C)]
    pub struct PaddingBetweenFields(pub PaddingAtEnd, pub u32);
}

#[test]
fn names_used_by_the_expansion_are_fine() {
    use clashing_names::*;
    assert_eq!(PaddingAtEnd::TYPE_NAME, "PaddingAtEnd");
    assert_ne!(DropImpl::FINGERPRINT, ZeroSized::FINGERPRINT);
    assert_eq!(size_of::<PaddingBetweenFields>(), 12);
    assert_ne!(PaddingBetweenFields::FINGERPRINT, PaddingAtEnd::FINGERPRINT);
}

/// Feature `bytemuck`: derived types are `Zeroable`, and `Pod` when `Copy`.
#[cfg(feature = "bytemuck")]
mod bytemuck_impls {
    use crate::common::Segment;
    use shmstore::{Shareable, Shared};

    #[derive(Shareable, Clone, Copy, Debug, PartialEq)]
    #[repr(C)]
    struct Vertex {
        pos: [f32; 3],
        color: u32,
    }

    /// The same struct by bytemuck's own derive, to compare.
    #[derive(bytemuck::Zeroable, bytemuck::Pod, Clone, Copy)]
    #[repr(C)]
    struct TheirVertex {
        pos: [f32; 3],
        color: u32,
    }

    fn pod<T: bytemuck::Pod>() {}
    fn zeroable<T: bytemuck::Zeroable>() {}

    #[test]
    fn a_guard_goes_to_bytes_of() {
        pod::<Vertex>();
        pod::<TheirVertex>();
        let seg = Segment::new("bytemuck-vertex");
        let value = Vertex {
            pos: [1.0, 2.0, 3.0],
            color: 0xff00_ff00,
        };
        let shared = Shared::create(seg.name(), value).unwrap();
        let guard = shared.lock().unwrap();
        let mine = bytemuck::bytes_of(&*guard);
        let theirs = TheirVertex {
            pos: value.pos,
            color: value.color,
        };
        assert_eq!(mine, bytemuck::bytes_of(&theirs));
        assert_eq!(*bytemuck::from_bytes::<Vertex>(mine), value);
        let zeroed: Vertex = bytemuck::Zeroable::zeroed();
        assert_eq!(zeroed.color, 0);
    }

    /// Atomics: `Zeroable` (as bytemuck has it for atomics), never `Pod`.
    #[derive(Shareable)]
    #[repr(C)]
    struct Counters {
        hits: core::sync::atomic::AtomicU64,
    }

    #[test]
    fn a_struct_of_atomics_is_zeroable() {
        zeroable::<Counters>();
        let zeroed: Counters = bytemuck::Zeroable::zeroed();
        assert_eq!(zeroed.hits.into_inner(), 0);
    }
}

/// Feature `bytemuck`: a field of another crate's `Pod` type, marked
/// `#[shareable(opaque)]`.
#[cfg(feature = "bytemuck")]
mod opaque_fields {
    use crate::common::Segment;
    use shmstore::schema::Kind;
    use shmstore::{Shareable, Shared};

    /// As another crate would define it: `Pod`, not `Shareable`.
    mod foreign {
        #[derive(bytemuck::Pod, bytemuck::Zeroable, Clone, Copy, Debug, PartialEq)]
        #[repr(C)]
        pub struct Rgba {
            pub r: u8,
            pub g: u8,
            pub b: u8,
            pub a: u8,
        }
    }

    #[derive(Shareable, Clone, Copy, Debug, PartialEq)]
    #[repr(C)]
    struct Pixel {
        x: u32,
        #[shareable(opaque)]
        color: foreign::Rgba,
    }

    /// A wrapper makes the foreign type itself shareable.
    #[derive(Shareable, Clone, Copy, Debug, PartialEq)]
    #[repr(transparent)]
    struct Color(#[shareable(opaque)] foreign::Rgba);

    #[test]
    fn a_foreign_pod_field_round_trips() {
        let seg = Segment::new("opaque-pixel");
        let color = foreign::Rgba {
            r: 1,
            g: 2,
            b: 3,
            a: 4,
        };
        let shared = Shared::create(seg.name(), Pixel { x: 9, color }).unwrap();
        shared.lock().unwrap().color.g = 20;
        let other = Shared::<Pixel>::open(seg.name()).unwrap();
        let guard = other.lock().unwrap();
        assert_eq!(guard.color.g, 20);
        assert_eq!(bytemuck::bytes_of(&*guard), [9, 0, 0, 0, 1, 20, 3, 4]);

        let schema = Pixel::schema();
        let Kind::Struct { fields } = &schema.kind else {
            panic!("not a struct: {schema:?}");
        };
        let color = &fields[1].schema;
        assert!(matches!(color.kind, Kind::Opaque), "{color:?}");
        assert_eq!(color.type_name, "foreign::Rgba");
        assert_eq!((color.size, color.align), (4, 1));
    }

    #[test]
    fn a_transparent_wrapper_is_shareable() {
        let seg = Segment::new("opaque-color");
        let rgba = foreign::Rgba {
            r: 5,
            g: 6,
            b: 7,
            a: 8,
        };
        let shared = Shared::create(seg.name(), Color(rgba)).unwrap();
        assert_eq!(shared.lock().unwrap().0, rgba);
        assert_ne!(Color::FINGERPRINT, <[u8; 4]>::FINGERPRINT);
    }
}

/// Feature `zerocopy`: zerocopy's own derives, through `shmstore::zerocopy`,
/// on the same types as ours; and opaque fields of zerocopy types.
#[cfg(feature = "zerocopy")]
mod zerocopy_types {
    use crate::common::Segment;
    use shmstore::schema::Kind;
    use shmstore::zerocopy::{FromBytes, Immutable, IntoBytes, KnownLayout};
    use shmstore::{Shareable, Shared};
    use std::sync::atomic::{AtomicU64, Ordering};

    /// Both derives on one type: no dependency on zerocopy of its own.
    #[derive(Shareable, FromBytes, IntoBytes, KnownLayout, Immutable, Debug, PartialEq)]
    #[zerocopy(crate = "shmstore::zerocopy")]
    #[repr(C)]
    struct Packet {
        seq: u64,
        len: u32,
        flags: u32,
        body: [u8; 8],
    }

    #[test]
    fn a_guard_goes_to_as_bytes() {
        let seg = Segment::new("zerocopy-packet");
        let value = Packet {
            seq: 7,
            len: 3,
            flags: 1,
            body: *b"abcdefgh",
        };
        let shared = Shared::create(seg.name(), value).unwrap();
        shared.lock().unwrap().len = 8;
        let other = Shared::<Packet>::open(seg.name()).unwrap();
        let guard = other.lock().unwrap();
        let bytes = IntoBytes::as_bytes(&*guard);
        assert_eq!(bytes.len(), 24);
        assert_eq!(&bytes[..8], &7u64.to_ne_bytes());
        assert_eq!(&bytes[8..12], &8u32.to_ne_bytes());
        assert_eq!(&bytes[16..], b"abcdefgh");
        let back = Packet::read_from_bytes(bytes).unwrap();
        assert_eq!(back, *guard);
    }

    /// Atomics: zerocopy's `FromBytes`, `IntoBytes` and `KnownLayout` take
    /// them (its `Immutable` does not); ours too, and it is `LockFree`.
    #[derive(Shareable, FromBytes, IntoBytes, KnownLayout)]
    #[zerocopy(crate = "shmstore::zerocopy")]
    #[repr(C)]
    struct Counters {
        hits: AtomicU64,
    }

    #[test]
    fn a_struct_of_atomics_takes_both_derives() {
        fn lock_free<T: shmstore::LockFree>() {}
        lock_free::<Counters>();
        let seg = Segment::new("zerocopy-counters");
        let shared = Shared::create(
            seg.name(),
            Counters {
                hits: AtomicU64::new(0),
            },
        )
        .unwrap();
        shared.lock().unwrap().hits.fetch_add(5, Ordering::Relaxed);
        let zeroed = <Counters as shmstore::zerocopy::FromZeros>::new_zeroed();
        assert_eq!(zeroed.hits.load(Ordering::Relaxed), 0);
        assert_eq!(shared.lock().unwrap().hits.load(Ordering::Relaxed), 5);
    }

    /// As another crate would define it: zerocopy's, not `Shareable`.
    mod foreign {
        use shmstore::zerocopy::{FromBytes, Immutable, IntoBytes, KnownLayout};

        #[derive(FromBytes, IntoBytes, KnownLayout, Immutable, Clone, Copy, Debug, PartialEq)]
        #[zerocopy(crate = "shmstore::zerocopy")]
        #[repr(C)]
        pub struct Stamp {
            pub secs: u32,
            pub nanos: u32,
        }
    }

    #[derive(Shareable, Clone, Copy, Debug, PartialEq)]
    #[repr(C)]
    struct Event {
        id: u64,
        #[shareable(opaque)]
        at: foreign::Stamp,
    }

    /// A wrapper makes the foreign type itself shareable.
    #[derive(Shareable, Clone, Copy, Debug, PartialEq)]
    #[repr(transparent)]
    struct Stamp(#[shareable(opaque)] foreign::Stamp);

    #[test]
    fn a_foreign_zerocopy_field_round_trips() {
        let seg = Segment::new("opaque-event");
        let at = foreign::Stamp { secs: 1, nanos: 2 };
        let shared = Shared::create(seg.name(), Event { id: 9, at }).unwrap();
        shared.lock().unwrap().at.nanos = 20;
        let other = Shared::<Event>::open(seg.name()).unwrap();
        assert_eq!(other.lock().unwrap().at.nanos, 20);

        let schema = Event::schema();
        let Kind::Struct { fields } = &schema.kind else {
            panic!("not a struct: {schema:?}");
        };
        let at = &fields[1].schema;
        assert!(matches!(at.kind, Kind::Opaque), "{at:?}");
        assert_eq!(at.type_name, "foreign::Stamp");
        assert_eq!((at.size, at.align), (8, 4));
    }

    /// shmstore by another path (relative, through a re-export), with an
    /// opaque field: the check names shmstore by that path too.
    mod facade {
        pub use shmstore as shm;
    }

    #[derive(Shareable)]
    #[shareable(crate = "facade::shm")]
    #[repr(C)]
    struct Reexported {
        #[shareable(opaque)]
        at: foreign::Stamp,
    }

    #[test]
    fn an_opaque_field_takes_the_crate_attribute() {
        let schema = Reexported::schema();
        let Kind::Struct { fields } = &schema.kind else {
            panic!("not a struct: {schema:?}");
        };
        assert!(matches!(fields[0].schema.kind, Kind::Opaque), "{schema:?}");
        assert_eq!(fields[0].schema.type_name, "foreign::Stamp");
    }

    #[test]
    fn a_transparent_wrapper_is_shareable() {
        let seg = Segment::new("opaque-stamp");
        let stamp = foreign::Stamp { secs: 5, nanos: 6 };
        let shared = Shared::create(seg.name(), Stamp(stamp)).unwrap();
        assert_eq!(
            Shared::<Stamp>::open(seg.name()).unwrap().lock().unwrap().0,
            stamp
        );
        drop(shared);
        assert_ne!(Stamp::FINGERPRINT, <[u32; 2]>::FINGERPRINT);
    }
}
