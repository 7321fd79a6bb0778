//! The [`Shareable`] trait: which types may live in shared memory, their
//! layout fingerprints and their schemas.

use core::sync::atomic::{
    AtomicI16, AtomicI32, AtomicI64, AtomicI8, AtomicU16, AtomicU32, AtomicU64, AtomicU8,
};

use crate::schema::{Kind, Schema};

/// A type whose values may live in memory that other processes map and write.
///
/// Implement it with `#[derive(Shareable)]` on a `#[repr(C)]` (or
/// `#[repr(transparent)]`) struct; the derive proves every condition below at
/// compile time and computes [`FINGERPRINT`](Shareable::FINGERPRINT). It is
/// implemented here for the fixed-width integers and floats, the fixed-width
/// atomics and arrays of `Shareable` types.
///
/// # Safety
///
/// Implementing this trait by hand promises all of the following:
///
/// - **Any bit pattern is a valid value**: another process may write any
///   bytes, so no field may have a validity invariant (`bool`, `char`, enums,
///   references and `NonZero*` are out).
/// - **No padding**: every byte belongs to a field, so no uninitialised byte is
///   ever copied into memory that another process reads.
/// - **No pointers or addresses**: they mean nothing in another process
///   (`usize`/`isize` are out too: 32- and 64-bit processes disagree on them).
/// - **A fixed layout** (`#[repr(C)]` or `#[repr(transparent)]` over such
///   fields) that does not depend on the compiler version or options.
/// - **No drop glue**: a value in shared memory is never dropped.
/// - [`FINGERPRINT`](Shareable::FINGERPRINT) changes whenever the name, size,
///   alignment, a field's name, offset or type changes.
///
/// [`schema`](Shareable::schema) is not part of the promise: a wrong schema
/// makes tools show the value wrongly, nothing worse.
#[diagnostic::on_unimplemented(
    message = "`{Self}` cannot live in shared memory (it is not `Shareable`)",
    label = "not `Shareable`",
    note = "shared memory holds plain data that any process may overwrite: use fixed-width integers, floats, their atomics, arrays of them, or a `#[repr(C)]` struct with `#[derive(Shareable)]`",
    note = "`bool`, `char`, `usize`/`isize`, enums, references, raw pointers and heap types such as `String`, `Vec` or `Box` are not allowed",
    note = "`shmstore::ShmBool` replaces `bool`, `shmstore::ShmStr<N>` a `String` or `&str`, and `shmstore::ShmVec<T, N>` a `Vec<T>`: they keep their contents inline, with a fixed capacity",
    note = "another crate's `bytemuck::Pod` type (feature `bytemuck`) or zerocopy `FromBytes + IntoBytes + Immutable` type (feature `zerocopy`) can be a field marked `#[shareable(opaque)]`, or made shareable by a `#[repr(transparent)]` wrapper with one such field"
)]
pub unsafe trait Shareable: Sized + Send + Sync + 'static {
    /// The type's name as written in the source, kept in the segment header
    /// so that errors can say which type a segment holds.
    const TYPE_NAME: &'static str;

    /// A hash of the type's layout: its name, size and alignment, and the
    /// name, offset and fingerprint of every field. Two builds agree on it
    /// exactly when they agree on the layout.
    const FINGERPRINT: u64;

    /// What the type is made of, written into every segment that holds it
    /// so that tools can show the value field by field without the type:
    /// see [`Schema`]. `#[derive(Shareable)]` describes each field; it is
    /// given here for the integers, floats, atomics and arrays, and for
    /// [`ShmStr`](crate::ShmStr), [`ShmVec`](crate::ShmVec) and
    /// [`ShmBool`](crate::ShmBool).
    ///
    /// The default, for a hand-written impl, is [`Kind::Opaque`]: the
    /// value is shown as bytes. Use [`Schema::of`] rather than calling this
    /// directly: it also checks the size and alignment.
    fn schema() -> Schema {
        Schema::new(
            Self::TYPE_NAME,
            core::mem::size_of::<Self>() as u64,
            core::mem::align_of::<Self>() as u64,
            Kind::Opaque,
        )
    }
}

/// The bytes of `value`, to write into a new segment.
pub(crate) fn into_bytes<T: Shareable>(value: T) -> Vec<u8> {
    let size = core::mem::size_of::<T>();
    // SAFETY: `value` is a live, owned `T` that nobody else can reach, and
    // a `Shareable` type has no padding, so all `size` bytes are
    // initialised; the slice lives only until they are copied.
    let bytes = unsafe { core::slice::from_raw_parts((&value as *const T).cast::<u8>(), size) };
    bytes.to_vec()
}

/// A const FNV-1a (64-bit) hasher for layout fingerprints.
///
/// Generated code calls it through `::shmstore::__private::Fingerprint`.
#[derive(Clone, Copy, Debug)]
#[doc(hidden)]
pub struct Fingerprint(u64);

impl Fingerprint {
    const OFFSET: u64 = 0xcbf2_9ce4_8422_2325;
    const PRIME: u64 = 0x0000_0100_0000_01b3;

    /// Starts a fingerprint.
    pub const fn new() -> Self {
        Fingerprint(Self::OFFSET)
    }

    /// Mixes in raw bytes.
    pub const fn bytes(self, bytes: &[u8]) -> Self {
        let mut h = self.0;
        let mut i = 0;
        while i < bytes.len() {
            h ^= bytes[i] as u64;
            h = h.wrapping_mul(Self::PRIME);
            i += 1;
        }
        Fingerprint(h)
    }

    /// Mixes in a string, length first so that `("ab", "c")` and `("a", "bc")` differ.
    pub const fn str(self, s: &str) -> Self {
        self.u64(s.len() as u64).bytes(s.as_bytes())
    }

    /// Mixes in a number.
    pub const fn u64(self, v: u64) -> Self {
        self.bytes(&v.to_le_bytes())
    }

    /// The finished hash.
    pub const fn finish(self) -> u64 {
        self.0
    }
}

impl Default for Fingerprint {
    fn default() -> Self {
        Self::new()
    }
}

/// The fingerprint of a type with no fields of its own (a primitive).
const fn primitive<T>(name: &str) -> u64 {
    Fingerprint::new()
        .str(name)
        .u64(core::mem::size_of::<T>() as u64)
        .u64(core::mem::align_of::<T>() as u64)
        .finish()
}

macro_rules! primitives {
    ($($t:ty),* $(,)?) => {$(
        // SAFETY: a fixed-width integer, float or atomic of one has no padding,
        // no pointer, no drop glue, a layout fixed by the language, and every
        // bit pattern is a valid value.
        unsafe impl Shareable for $t {
            const TYPE_NAME: &'static str = stringify!($t);
            const FINGERPRINT: u64 = primitive::<$t>(stringify!($t));

            fn schema() -> Schema {
                Schema::primitive(
                    stringify!($t),
                    core::mem::size_of::<$t>(),
                    core::mem::align_of::<$t>(),
                )
            }
        }
    )*};
}

// u128/i128 are left out: their alignment changed between compiler versions.
primitives!(u8, u16, u32, u64, i8, i16, i32, i64, f32, f64);
primitives!(AtomicU8, AtomicU16, AtomicU32, AtomicU64, AtomicI8, AtomicI16, AtomicI32, AtomicI64,);

// SAFETY: an array has no padding between elements (size is a multiple of the
// alignment), and inherits every other property from its element type.
unsafe impl<T: Shareable, const N: usize> Shareable for [T; N] {
    const TYPE_NAME: &'static str = "array";
    const FINGERPRINT: u64 = Fingerprint::new()
        .str("[T; N]")
        .u64(N as u64)
        .u64(T::FINGERPRINT)
        .finish();

    fn schema() -> Schema {
        Schema::new(
            Self::TYPE_NAME,
            core::mem::size_of::<Self>() as u64,
            core::mem::align_of::<Self>() as u64,
            Kind::Array {
                elem: Box::new(Schema::of::<T>()),
                len: N as u64,
            },
        )
    }
}

impl Schema {
    /// The schema of `T`: `T::schema()`, or, if that disagrees with `T`'s
    /// real size or alignment (a wrong hand-written impl), `Opaque` with
    /// the real ones.
    pub fn of<T: Shareable>() -> Schema {
        Schema::checked(
            T::schema(),
            T::TYPE_NAME,
            core::mem::size_of::<T>(),
            core::mem::align_of::<T>(),
        )
    }
}

// What a `#[shareable(opaque)]` field's type must be: plain bytes by another
// crate's account, `bytemuck::Pod` (feature `bytemuck`) or zerocopy's
// `FromBytes + IntoBytes + Immutable` (feature `zerocopy`). Blanket impls of
// one trait for both would overlap, so each has its own marker trait, and the
// derive's check `(&&OpaqueProbe::<F>::NEW).check()` picks whichever `F`
// implements (autoref dispatch: `ViaPod` on `&&OpaqueProbe<F>`, then
// `ViaZerocopy` on `&OpaqueProbe<F>`, then the inherent `check` of
// `OpaqueProbe<F>`, whose bound fails with the message that says what is
// missing). Every path that compiles goes through `OpaquePod` or
// `OpaqueZerocopy`, whose blanket impls are the proof.

/// A `bytemuck::Pod + Send + Sync` type (feature `bytemuck`), which a
/// `#[shareable(opaque)]` field may have.
///
/// # Safety
///
/// Every bit pattern is a valid value, with no padding, pointer, interior
/// mutability or drop glue; shared between threads safely.
#[diagnostic::on_unimplemented(
    message = "`{Self}` cannot be an opaque field: it is not `bytemuck::Pod`",
    label = "not `bytemuck::Pod`",
    note = "a `#[shareable(opaque)]` field may have any type that is `bytemuck::Pod + Send + Sync` (shmstore's feature `bytemuck`): every bit pattern valid, no padding"
)]
#[doc(hidden)]
pub unsafe trait OpaquePod: Sized + Send + Sync + 'static {}

// SAFETY: `Pod` promises every bit pattern valid, no padding, and no
// pointer, interior mutability or drop glue (it is `Copy`); `Send + Sync`
// is required here.
#[cfg(feature = "bytemuck")]
unsafe impl<T: bytemuck::Pod + Send + Sync> OpaquePod for T {}

/// A zerocopy `FromBytes + IntoBytes + Immutable + Send + Sync` type
/// (feature `zerocopy`), which a `#[shareable(opaque)]` field may have.
///
/// # Safety
///
/// As for [`OpaquePod`].
#[diagnostic::on_unimplemented(
    message = "`{Self}` cannot be an opaque field: it is not zerocopy's `FromBytes + IntoBytes + Immutable`",
    label = "not `FromBytes + IntoBytes + Immutable`",
    note = "a `#[shareable(opaque)]` field may have any type that is `zerocopy::FromBytes + zerocopy::IntoBytes + zerocopy::Immutable + Send + Sync` (shmstore's feature `zerocopy`): every bit pattern valid, no padding, no interior mutability"
)]
#[doc(hidden)]
pub unsafe trait OpaqueZerocopy: Sized + Send + Sync + 'static {}

// SAFETY: `FromBytes` promises every bit pattern valid, `IntoBytes` no
// padding (every byte initialised), `Immutable` no interior mutability;
// neither `FromBytes` nor `IntoBytes` allows a pointer or reference field
// whose bytes would have to be a valid address. Drop glue is ruled out by
// the derive's `needs_drop` check on the whole struct. `Send + Sync` is
// required here.
#[cfg(feature = "zerocopy")]
unsafe impl<T> OpaqueZerocopy for T where
    T: zerocopy::FromBytes + zerocopy::IntoBytes + zerocopy::Immutable + Send + Sync + 'static
{
}

/// The bound an opaque field's type that is neither [`OpaquePod`] nor
/// [`OpaqueZerocopy`] fails, with both features on. Never implemented.
#[diagnostic::on_unimplemented(
    message = "`{Self}` cannot be an opaque field: it is neither `bytemuck::Pod` nor zerocopy's `FromBytes + IntoBytes + Immutable`",
    label = "neither `bytemuck::Pod` nor `FromBytes + IntoBytes + Immutable`",
    note = "a `#[shareable(opaque)]` field may have any type that is `bytemuck::Pod + Send + Sync` (feature `bytemuck`) or `zerocopy::FromBytes + zerocopy::IntoBytes + zerocopy::Immutable + Send + Sync` (feature `zerocopy`): every bit pattern valid, no padding"
)]
#[doc(hidden)]
pub trait OpaqueEither {}

/// The bound an opaque field fails without either feature. Never
/// implemented.
#[diagnostic::on_unimplemented(
    message = "`{Self}` cannot be an opaque field: `#[shareable(opaque)]` needs shmstore's feature `bytemuck` or `zerocopy`",
    label = "opaque field without the feature `bytemuck` or `zerocopy`",
    note = "with the feature `bytemuck`, an opaque field may have any `bytemuck::Pod + Send + Sync` type; with `zerocopy`, any `zerocopy::FromBytes + zerocopy::IntoBytes + zerocopy::Immutable + Send + Sync` type"
)]
#[doc(hidden)]
pub trait OpaqueFeature {}

/// What the derive's check of an opaque field's type is called on.
#[doc(hidden)]
pub struct OpaqueProbe<T>(core::marker::PhantomData<fn() -> T>);

impl<T> OpaqueProbe<T> {
    /// The probe, for `(&&OpaqueProbe::<F>::NEW).check()`.
    pub const NEW: Self = OpaqueProbe(core::marker::PhantomData);
}

/// `F: OpaquePod`: the first choice of the check.
#[doc(hidden)]
pub trait ViaPod {
    /// Compiles: the type is plain bytes.
    fn check(self);
}

impl<T: OpaquePod> ViaPod for &&OpaqueProbe<T> {
    fn check(self) {}
}

/// `F: OpaqueZerocopy`: the second choice of the check.
#[doc(hidden)]
pub trait ViaZerocopy {
    /// Compiles: the type is plain bytes.
    fn check(self);
}

impl<T: OpaqueZerocopy> ViaZerocopy for &OpaqueProbe<T> {
    fn check(self) {}
}

/// The last choice, when `F` is neither: a bound `F` does not meet, whose
/// message is the error at the field.
impl<T> OpaqueProbe<T> {
    /// Does not compile: the type is not plain bytes by any enabled
    /// feature's account.
    #[cfg(all(feature = "bytemuck", not(feature = "zerocopy")))]
    pub fn check(self)
    where
        T: OpaquePod,
    {
    }

    /// Does not compile: as above.
    #[cfg(all(feature = "zerocopy", not(feature = "bytemuck")))]
    pub fn check(self)
    where
        T: OpaqueZerocopy,
    {
    }

    /// Does not compile: as above.
    #[cfg(all(feature = "bytemuck", feature = "zerocopy"))]
    pub fn check(self)
    where
        T: OpaqueEither,
    {
    }

    /// Does not compile: as above.
    #[cfg(not(any(feature = "bytemuck", feature = "zerocopy")))]
    pub fn check(self)
    where
        T: OpaqueFeature,
    {
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fingerprints_tell_types_apart() {
        assert_ne!(u32::FINGERPRINT, i32::FINGERPRINT);
        assert_ne!(u64::FINGERPRINT, AtomicU64::FINGERPRINT);
        assert_ne!(<[u8; 4]>::FINGERPRINT, <[u8; 5]>::FINGERPRINT);
        assert_ne!(<[u8; 4]>::FINGERPRINT, u32::FINGERPRINT);
        assert_ne!(<[[u8; 2]; 3]>::FINGERPRINT, <[[u8; 3]; 2]>::FINGERPRINT);
    }

    #[test]
    fn primitives_and_arrays_have_schemas() {
        let int = |signed, atomic| Kind::Int { signed, atomic };
        assert_eq!(u8::schema(), Schema::new("u8", 1, 1, int(false, false)));
        assert_eq!(i16::schema(), Schema::new("i16", 2, 2, int(true, false)));
        assert_eq!(f64::schema().kind, Kind::Float);
        assert_eq!(
            AtomicU32::schema(),
            Schema::new("AtomicU32", 4, 4, int(false, true))
        );
        assert_eq!(AtomicI64::schema().kind, int(true, true));
        let array = <[[u16; 3]; 2]>::schema();
        assert_eq!(
            (array.type_name.as_str(), array.size, array.align),
            ("array", 12, 2)
        );
        let Kind::Array { elem, len: 2 } = array.kind else {
            panic!("{array:?}")
        };
        assert_eq!(
            elem.kind,
            Kind::Array {
                elem: Box::new(u16::schema()),
                len: 3
            }
        );
    }

    #[test]
    fn string_boundaries_count() {
        let a = Fingerprint::new().str("ab").str("c").finish();
        let b = Fingerprint::new().str("a").str("bc").finish();
        assert_ne!(a, b);
    }
}
