//! Fixed-capacity types for shared memory: strings, vectors and flags that
//! stay sound whatever bytes a peer writes.
//!
//! `String` and `Vec` point into one process's heap, and a `bool` holding 2
//! is undefined behaviour, so none of them may live in shared memory.
//! [`ShmStr`], [`ShmVec`] and [`ShmBool`] keep their contents inline, in a
//! layout with no padding, and have no validity invariant at all: another
//! process may write any bytes into them at any time, and every accessor
//! validates what it reads instead of trusting it.
//!
//! - A stored length is clamped to the capacity `N` on every read, so no
//!   accessor ever reads past the inline buffer.
//! - A string's bytes are checked for UTF-8 on every [`ShmStr::as_str`]: bad
//!   bytes are an error, never undefined behaviour.
//! - A flag is false for the byte 0 and true for every other byte.
//!
//! Methods that write keep the bytes past the length zeroed, so that stale
//! data does not linger in the segment.

use core::fmt;
use core::hash::{Hash, Hasher};
use core::mem::{align_of, offset_of, size_of};
use core::ops::{Deref, DerefMut};
use core::str::Utf8Error;
use std::borrow::Cow;

use crate::schema::{Kind, Schema};
use crate::types::shareable::{Fingerprint, Shareable};

// ---------------------------------------------------------------------------
// CapacityError

/// What a [`CapacityError`] counts.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
enum Unit {
    /// A [`ShmStr`]'s bytes.
    Bytes,
    /// A [`ShmVec`]'s items.
    Items,
}

/// A stored length as a peer may have written it, clamped to the capacity.
const fn clamped(stored: u64, capacity: usize) -> usize {
    if stored < capacity as u64 {
        stored as usize
    } else {
        capacity
    }
}

/// A value does not fit in a [`ShmStr`] or [`ShmVec`]: it needs
/// [`needed`](CapacityError::needed) bytes or items, and there is room for
/// [`capacity`](CapacityError::capacity). The value written to is unchanged.
///
/// ```
/// use shmstore::ShmStr;
///
/// let err = ShmStr::<4>::try_from("hello").unwrap_err();
/// assert_eq!((err.needed(), err.capacity()), (5, 4));
/// assert_eq!(err.to_string(), "the string needs 5 bytes, capacity is 4");
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct CapacityError {
    needed: usize,
    capacity: usize,
    unit: Unit,
}

impl CapacityError {
    fn bytes(needed: usize, capacity: usize) -> Self {
        CapacityError {
            needed,
            capacity,
            unit: Unit::Bytes,
        }
    }

    fn items(needed: usize, capacity: usize) -> Self {
        CapacityError {
            needed,
            capacity,
            unit: Unit::Items,
        }
    }

    /// How many bytes (for a [`ShmStr`]) or items (for a [`ShmVec`]) the
    /// operation needed, counting those already there.
    pub fn needed(&self) -> usize {
        self.needed
    }

    /// How many bytes or items fit: the type's `N`.
    pub fn capacity(&self) -> usize {
        self.capacity
    }
}

impl fmt::Display for CapacityError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let (what, unit) = match self.unit {
            Unit::Bytes => ("string", "bytes"),
            Unit::Items => ("vector", "items"),
        };
        write!(
            f,
            "the {what} needs {} {unit}, capacity is {}",
            self.needed, self.capacity
        )
    }
}

impl std::error::Error for CapacityError {}

// ---------------------------------------------------------------------------
// ShmStr

/// A UTF-8 string of at most `N` bytes, stored inline: a `String` for shared
/// memory.
///
/// # Layout
///
/// `#[repr(C)]`: the length as a little-endian `u32` in 4 bytes, then `N`
/// bytes. Size `4 + N`, alignment 1, so there is never padding and a
/// `ShmStr` fits anywhere in a struct.
///
/// # The validation rule
///
/// Another process may write any bytes into a `ShmStr` at any time, so
/// nothing read from it is trusted:
///
/// - the stored length is clamped to `N` on every read ([`len`](Self::len),
///   [`as_bytes`](Self::as_bytes), and everything built on them);
/// - [`as_str`](Self::as_str) checks the bytes for UTF-8 on every call and
///   returns `Err` for invalid UTF-8 (say, a string cut inside a character),
///   never undefined behaviour; [`to_string_lossy`](Self::to_string_lossy),
///   `Display` and `Debug` show such bytes too;
/// - comparisons and hashing look at the clamped bytes only; compared with
///   a `str`, `&str`, `String` or `Cow<str>` (on either side of `==`), a
///   `ShmStr` is equal when [`as_str`](Self::as_str) gives that text, so
///   invalid UTF-8 equals no string.
///
/// Writes ([`set`](Self::set), [`set_truncated`](Self::set_truncated),
/// [`clear`](Self::clear)) always leave valid UTF-8 of at most `N` bytes and
/// zero the bytes past it, so stale data does not linger in the segment.
///
/// A `&str` from [`as_str`](Self::as_str) borrows the shared bytes: take it
/// through a lock guard (or from a copy), as for every other value.
///
/// ```
/// use shmstore::{Shareable, ShmStr};
///
/// #[derive(Shareable, Clone, Copy, Default)]
/// #[repr(C)]
/// struct Status {
///     message: ShmStr<28>, // 32 bytes
///     code: u32,
/// }
///
/// let mut status = Status::default();
/// status.message.set("all good")?;
/// assert_eq!(status.message, "all good");
///
/// // Too long: an error, and the value is unchanged.
/// assert!(status.message.set("a message of more than twenty-eight bytes").is_err());
/// assert_eq!(status.message.as_str(), Ok("all good"));
///
/// // Or keep what fits, cut at a character boundary.
/// status.message.set_truncated("ünïcödé ünïcödé ünïcödé ünïcödé");
/// assert_eq!(status.message.as_str(), Ok("ünïcödé ünïcödé ün")); // 27 bytes: 'ï' would need 29
/// assert_eq!(status.message.len(), 27);
/// # Ok::<(), shmstore::CapacityError>(())
/// ```
#[derive(Clone, Copy)]
#[repr(C)]
pub struct ShmStr<const N: usize> {
    /// The length in bytes, a little-endian `u32`; clamped to `N` on read.
    len: [u8; 4],
    /// The string's bytes, then zeros.
    bytes: [u8; N],
}

impl<const N: usize> ShmStr<N> {
    /// Stops the build (when `ShmStr<N>` is used) if the length cannot be
    /// stored, and proves the layout has no padding.
    const LAYOUT: () = {
        assert!(
            N as u64 <= u32::MAX as u64,
            "ShmStr<N> stores its length in 32 bits: N must be at most u32::MAX"
        );
        assert!(size_of::<Self>() == 4 + N && align_of::<Self>() == 1);
    };

    /// An empty string.
    pub const fn new() -> Self {
        let () = Self::LAYOUT;
        ShmStr {
            len: [0; 4],
            bytes: [0; N],
        }
    }

    /// The length in bytes: the stored length, clamped to `N`.
    pub const fn len(&self) -> usize {
        clamped(u32::from_le_bytes(self.len) as u64, N)
    }

    /// Whether the length is 0.
    pub const fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The most bytes it can hold: `N`.
    pub const fn capacity(&self) -> usize {
        N
    }

    /// The bytes of the string (`len()` of them), whether UTF-8 or not.
    pub fn as_bytes(&self) -> &[u8] {
        &self.bytes[..self.len()]
    }

    /// The string, or `Err` if the bytes are not UTF-8, which only another
    /// process writing them directly can cause.
    pub fn as_str(&self) -> Result<&str, Utf8Error> {
        core::str::from_utf8(self.as_bytes())
    }

    /// The string, with every invalid UTF-8 sequence replaced by U+FFFD;
    /// borrowed when the bytes are valid.
    pub fn to_string_lossy(&self) -> Cow<'_, str> {
        String::from_utf8_lossy(self.as_bytes())
    }

    /// Replaces the string with `s`, or fails with a [`CapacityError`] and
    /// leaves the value unchanged if `s` is longer than `N` bytes.
    pub fn set(&mut self, s: &str) -> Result<(), CapacityError> {
        if s.len() > N {
            return Err(CapacityError::bytes(s.len(), N));
        }
        self.store(s.as_bytes());
        Ok(())
    }

    /// Replaces the string with the longest prefix of `s` that fits in `N`
    /// bytes and ends on a character boundary.
    pub fn set_truncated(&mut self, s: &str) {
        let mut end = s.len().min(N);
        while !s.is_char_boundary(end) {
            end -= 1;
        }
        self.store(&s.as_bytes()[..end]);
    }

    /// Makes the string empty (and zeroes its bytes).
    pub fn clear(&mut self) {
        self.store(&[]);
    }

    /// Writes `bytes` (at most `N` of them, valid UTF-8) and zeroes the rest.
    fn store(&mut self, bytes: &[u8]) {
        let () = Self::LAYOUT;
        let (head, tail) = self.bytes.split_at_mut(bytes.len());
        head.copy_from_slice(bytes);
        tail.fill(0);
        // LAYOUT proves N, and so `bytes.len()`, fits in a u32.
        self.len = (bytes.len() as u32).to_le_bytes();
    }
}

impl<const N: usize> Default for ShmStr<N> {
    fn default() -> Self {
        Self::new()
    }
}

impl<const N: usize> TryFrom<&str> for ShmStr<N> {
    type Error = CapacityError;

    /// The string `s`, or a [`CapacityError`] if it is longer than `N` bytes.
    fn try_from(s: &str) -> Result<Self, CapacityError> {
        let mut value = Self::new();
        value.set(s)?;
        Ok(value)
    }
}

/// The string, with invalid UTF-8 replaced by U+FFFD.
impl<const N: usize> fmt::Display for ShmStr<N> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(&*self.to_string_lossy(), f)
    }
}

/// The string, quoted like a `&str`; or, if it is not UTF-8, its bytes
/// quoted like a byte string: `b"ab\xff"`.
impl<const N: usize> fmt::Debug for ShmStr<N> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.as_str() {
            Ok(s) => fmt::Debug::fmt(s, f),
            Err(_) => write!(f, "b\"{}\"", self.as_bytes().escape_ascii()),
        }
    }
}

/// Equal when the clamped bytes are; bytes past the length do not count.
impl<const N: usize> PartialEq for ShmStr<N> {
    fn eq(&self, other: &Self) -> bool {
        self.as_bytes() == other.as_bytes()
    }
}

impl<const N: usize> Eq for ShmStr<N> {}

/// Equal when the string is `other`, as [`as_str`](ShmStr::as_str) gives it:
/// bytes that are not UTF-8 equal no `str`.
impl<const N: usize> PartialEq<str> for ShmStr<N> {
    fn eq(&self, other: &str) -> bool {
        // Bytes equal to a `str`'s are valid UTF-8, so this is
        // `self.as_str() == Ok(other)` without the validation.
        self.as_bytes() == other.as_bytes()
    }
}

/// Compares the texts, as `ShmStr == str` does, so that a `ShmStr` compares
/// with `&str`, `String` and `Cow<str>` on either side.
macro_rules! str_eq {
    ($($other:ty),*) => {$(
        impl<const N: usize> PartialEq<$other> for ShmStr<N> {
            fn eq(&self, other: &$other) -> bool {
                *self == **other
            }
        }

        impl<const N: usize> PartialEq<ShmStr<N>> for $other {
            fn eq(&self, other: &ShmStr<N>) -> bool {
                *other == **self
            }
        }
    )*};
}
str_eq!(&str, String, Cow<'_, str>);

impl<const N: usize> PartialEq<ShmStr<N>> for str {
    fn eq(&self, other: &ShmStr<N>) -> bool {
        *other == *self
    }
}

/// Hashes the clamped bytes, consistently with `PartialEq`.
impl<const N: usize> Hash for ShmStr<N> {
    fn hash<H: Hasher>(&self, state: &mut H) {
        self.as_bytes().hash(state);
    }
}

// SAFETY:
// - Any bit pattern is valid: both fields are byte arrays, and no method
//   relies on what they hold (the length is clamped to N on every read, the
//   bytes are checked for UTF-8 by `as_str`).
// - No padding: both fields have alignment 1, so `bytes` starts right after
//   `len` and the size is 4 + N (asserted by LAYOUT, evaluated here).
// - No pointers or addresses: byte arrays only.
// - Fixed layout: `repr(C)` over two byte arrays.
// - No drop glue: the type is `Copy`.
// - The fingerprint is the derive's recipe (name, size, alignment, then each
//   field's name, offset and fingerprint), and `[u8; N]`'s fingerprint mixes
//   in N.
unsafe impl<const N: usize> Shareable for ShmStr<N> {
    const TYPE_NAME: &'static str = "ShmStr";
    const FINGERPRINT: u64 = {
        let () = Self::LAYOUT;
        Fingerprint::new()
            .str("ShmStr")
            .u64(size_of::<Self>() as u64)
            .u64(align_of::<Self>() as u64)
            .str("len")
            .u64(offset_of!(Self, len) as u64)
            .u64(<[u8; 4]>::FINGERPRINT)
            .str("bytes")
            .u64(offset_of!(Self, bytes) as u64)
            .u64(<[u8; N]>::FINGERPRINT)
            .finish()
    };

    /// [`Kind::Str`] of capacity `N`: the layout above.
    fn schema() -> Schema {
        let () = Self::LAYOUT;
        Schema::new(
            Self::TYPE_NAME,
            size_of::<Self>() as u64,
            align_of::<Self>() as u64,
            Kind::Str { capacity: N as u64 },
        )
    }
}

// ---------------------------------------------------------------------------
// ShmVec

/// A value of `T` made of zero bytes.
fn zeroed<T: Shareable>() -> T {
    // SAFETY: `T: Shareable` promises that every bit pattern is a valid `T`,
    // all zeros included.
    unsafe { core::mem::zeroed() }
}

/// A list of at most `N` items of `T`, stored inline: a `Vec` for shared
/// memory.
///
/// # Layout
///
/// `#[repr(C)]`: the length as a little-endian `u64` in 8 bytes, then
/// `[T; N]` at offset 8. Size `8 + N * size_of::<T>()`, alignment that of
/// `T`. There is no padding when `T`'s alignment is at most 8, as for every
/// primitive `Shareable` type: offset 8 is then a multiple of it, and so is
/// the size, since `size_of::<T>()` is. A `T` aligned to more (a struct with
/// `#[repr(align(16))]`, say) stops the build when `ShmVec<T, N>` is used:
///
/// ```compile_fail,E0080
/// use shmstore::{Shareable, ShmVec};
///
/// #[derive(Shareable, Clone, Copy)]
/// #[repr(C, align(16))]
/// struct Wide { words: [u64; 2] }
///
/// let v = ShmVec::<Wide, 4>::new(); // error: ShmVec<T, N> would have padding
/// ```
///
/// # The validation rule
///
/// Another process may write any bytes into a `ShmVec` at any time, so
/// nothing read from it is trusted: the stored length is clamped to `N` on
/// every read, and the items are `Shareable`, so any bytes are valid items.
/// Comparisons, hashing, `Debug` and the slice (`Deref`) see the first
/// [`len`](Self::len) items only. A `ShmVec` compares with a slice, an
/// array or a `Vec` of items, as a `Vec` does.
///
/// Methods that shorten the vector zero the slots they free (`truncate` and
/// `clear` every slot past the new length), so stale items do not linger in
/// the segment.
///
/// ```
/// use shmstore::ShmVec;
///
/// let mut ports = ShmVec::<u16, 4>::new();
/// ports.push(80)?;
/// ports.extend_from_slice(&[443, 8080])?;
/// assert_eq!(ports, [80, 443, 8080]);
///
/// // All or nothing: two more do not fit, so none is added.
/// let err = ports.extend_from_slice(&[1, 2]).unwrap_err();
/// assert_eq!((err.needed(), err.capacity()), (5, 4));
/// assert_eq!(ports.len(), 3);
///
/// // A slice for everything else.
/// ports.sort_unstable_by(|a, b| b.cmp(a));
/// assert_eq!(ports.iter().max(), Some(&8080));
/// assert_eq!(ports.pop(), Some(80));
/// # Ok::<(), shmstore::CapacityError>(())
/// ```
#[derive(Clone, Copy)]
#[repr(C)]
pub struct ShmVec<T: Shareable + Copy, const N: usize> {
    /// The number of items, a little-endian `u64`; clamped to `N` on read.
    len: [u8; 8],
    /// The items, then zeroed slots.
    items: [T; N],
}

impl<T: Shareable + Copy, const N: usize> ShmVec<T, N> {
    /// Proves the layout has no padding; stops the build (when
    /// `ShmVec<T, N>` is used) if `T`'s alignment is over 8.
    const LAYOUT: () = assert!(
        size_of::<Self>() == 8 + size_of::<[T; N]>(),
        "ShmVec<T, N> would have padding: T is aligned to more than 8 bytes, so its items \
         cannot start right after the 8-byte length, and a value in shared memory must \
         have no padding; use a T aligned to at most 8"
    );

    /// An empty vector, every slot zeroed.
    pub const fn new() -> Self {
        let () = Self::LAYOUT;
        // SAFETY: all-zero bytes are a valid `ShmVec`: `len` is a byte array,
        // and `T: Shareable` promises that every bit pattern, all zeros
        // included, is a valid `T`.
        unsafe { core::mem::zeroed() }
    }

    /// The number of items: the stored length, clamped to `N`.
    pub const fn len(&self) -> usize {
        let () = Self::LAYOUT;
        clamped(u64::from_le_bytes(self.len), N)
    }

    /// Whether the length is 0.
    pub const fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The most items it can hold: `N`.
    pub const fn capacity(&self) -> usize {
        N
    }

    /// The items.
    pub fn as_slice(&self) -> &[T] {
        &self.items[..self.len()]
    }

    /// The items, to change in place.
    pub fn as_mut_slice(&mut self) -> &mut [T] {
        let len = self.len();
        &mut self.items[..len]
    }

    /// Appends `item`, or fails with a [`CapacityError`] and leaves the
    /// value unchanged if the vector is full.
    pub fn push(&mut self, item: T) -> Result<(), CapacityError> {
        let len = self.len();
        if len == N {
            return Err(CapacityError::items(N.saturating_add(1), N));
        }
        self.items[len] = item;
        self.set_len(len + 1);
        Ok(())
    }

    /// Removes the last item and returns it (zeroing its slot), or `None`
    /// if the vector is empty.
    pub fn pop(&mut self) -> Option<T> {
        let last = self.len().checked_sub(1)?;
        let item = self.items[last];
        self.items[last] = zeroed();
        self.set_len(last);
        Some(item)
    }

    /// Keeps the first `len` items and zeroes every slot after them; does
    /// nothing if there are no more than `len` items.
    pub fn truncate(&mut self, len: usize) {
        if len >= self.len() {
            return;
        }
        self.items[len..].fill(zeroed());
        self.set_len(len);
    }

    /// Removes every item (and zeroes every slot).
    pub fn clear(&mut self) {
        self.items.fill(zeroed());
        self.set_len(0);
    }

    /// Appends all of `items`, or fails with a [`CapacityError`] and leaves
    /// the value unchanged if they do not all fit.
    pub fn extend_from_slice(&mut self, items: &[T]) -> Result<(), CapacityError> {
        let len = self.len();
        let end = len.saturating_add(items.len());
        if end > N {
            return Err(CapacityError::items(end, N));
        }
        self.items[len..end].copy_from_slice(items);
        self.set_len(end);
        Ok(())
    }

    fn set_len(&mut self, len: usize) {
        self.len = (len as u64).to_le_bytes();
    }
}

impl<T: Shareable + Copy, const N: usize> Default for ShmVec<T, N> {
    fn default() -> Self {
        Self::new()
    }
}

impl<T: Shareable + Copy, const N: usize> TryFrom<&[T]> for ShmVec<T, N> {
    type Error = CapacityError;

    /// A copy of `items`, or a [`CapacityError`] if there are more than `N`.
    fn try_from(items: &[T]) -> Result<Self, CapacityError> {
        let mut value = Self::new();
        value.extend_from_slice(items)?;
        Ok(value)
    }
}

impl<T: Shareable + Copy, const N: usize> Deref for ShmVec<T, N> {
    type Target = [T];

    fn deref(&self) -> &[T] {
        self.as_slice()
    }
}

impl<T: Shareable + Copy, const N: usize> DerefMut for ShmVec<T, N> {
    fn deref_mut(&mut self) -> &mut [T] {
        self.as_mut_slice()
    }
}

impl<'a, T: Shareable + Copy, const N: usize> IntoIterator for &'a ShmVec<T, N> {
    type Item = &'a T;
    type IntoIter = core::slice::Iter<'a, T>;

    fn into_iter(self) -> Self::IntoIter {
        self.as_slice().iter()
    }
}

impl<'a, T: Shareable + Copy, const N: usize> IntoIterator for &'a mut ShmVec<T, N> {
    type Item = &'a mut T;
    type IntoIter = core::slice::IterMut<'a, T>;

    fn into_iter(self) -> Self::IntoIter {
        self.as_mut_slice().iter_mut()
    }
}

/// The items, as a list.
impl<T: Shareable + Copy + fmt::Debug, const N: usize> fmt::Debug for ShmVec<T, N> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_list().entries(self.as_slice()).finish()
    }
}

/// Equal when the items are; slots past the length do not count.
impl<T: Shareable + Copy + PartialEq, const N: usize> PartialEq for ShmVec<T, N> {
    fn eq(&self, other: &Self) -> bool {
        self.as_slice() == other.as_slice()
    }
}

impl<T: Shareable + Copy + Eq, const N: usize> Eq for ShmVec<T, N> {}

/// Compares the items with a slice, an array or a `Vec` on either side, as
/// `Vec` does: equal when they are (slots past the length do not count).
macro_rules! slice_eq {
    ($([$($generics:tt)*] $other:ty),*) => {$(
        impl<T, U, const N: usize, $($generics)*> PartialEq<$other> for ShmVec<T, N>
        where
            T: Shareable + Copy + PartialEq<U>,
        {
            fn eq(&self, other: &$other) -> bool {
                self.as_slice() == &other[..]
            }
        }
    )*};
}
slice_eq!([] [U], [] &[U], [] Vec<U>, [const M: usize] [U; M], [const M: usize] &[U; M]);

/// The other side of `ShmVec == [U]` and the like.
macro_rules! eq_slice {
    ($($other:ty),*) => {$(
        impl<T, U, const N: usize> PartialEq<ShmVec<U, N>> for $other
        where
            T: PartialEq<U>,
            U: Shareable + Copy,
        {
            fn eq(&self, other: &ShmVec<U, N>) -> bool {
                self[..] == *other.as_slice()
            }
        }
    )*};
}
eq_slice!([T], &[T], Vec<T>);

/// Hashes the items, consistently with `PartialEq`.
impl<T: Shareable + Copy + Hash, const N: usize> Hash for ShmVec<T, N> {
    fn hash<H: Hasher>(&self, state: &mut H) {
        self.as_slice().hash(state);
    }
}

// SAFETY:
// - Any bit pattern is valid: `len` is a byte array that no method trusts
//   (it is clamped to N on every read), and `items` is an array of
//   `T: Shareable`, any bit pattern of which is valid.
// - No padding: LAYOUT asserts that the size is exactly the fields' sizes
//   added up, so no byte lies outside them, and an array of `T` has none
//   inside. LAYOUT is evaluated here, so every `Shared` holding a `ShmVec`
//   (its header records FINGERPRINT) and every derived struct around one
//   (its FINGERPRINT mixes this one in) fails to build for a `T` that would
//   give padding; `new`, the only safe way to make a value, evaluates it too.
// - No pointers or addresses: a byte array and `T`s, which have none.
// - Fixed layout: `repr(C)` over fields with fixed layouts.
// - No drop glue: `T: Copy`, so the type is `Copy`.
// - The fingerprint is the derive's recipe (name, size, alignment, then each
//   field's name, offset and fingerprint), and `[T; N]`'s fingerprint mixes
//   in N and `T`'s fingerprint.
unsafe impl<T: Shareable + Copy, const N: usize> Shareable for ShmVec<T, N> {
    const TYPE_NAME: &'static str = "ShmVec";
    const FINGERPRINT: u64 = {
        let () = Self::LAYOUT;
        Fingerprint::new()
            .str("ShmVec")
            .u64(size_of::<Self>() as u64)
            .u64(align_of::<Self>() as u64)
            .str("len")
            .u64(offset_of!(Self, len) as u64)
            .u64(<[u8; 8]>::FINGERPRINT)
            .str("items")
            .u64(offset_of!(Self, items) as u64)
            .u64(<[T; N]>::FINGERPRINT)
            .finish()
    };

    /// [`Kind::List`] of `T`'s schema and capacity `N`: the layout above.
    fn schema() -> Schema {
        let () = Self::LAYOUT;
        Schema::new(
            Self::TYPE_NAME,
            size_of::<Self>() as u64,
            align_of::<Self>() as u64,
            Kind::List {
                elem: Box::new(Schema::of::<T>()),
                capacity: N as u64,
            },
        )
    }
}

// ---------------------------------------------------------------------------
// ShmBool

/// A `bool` for shared memory: one byte, where 0 is false and **any other
/// byte is true**.
///
/// A Rust `bool` holding anything but 0 or 1 is undefined behaviour, and
/// another process may write any byte, so a `bool` cannot be shared.
/// `ShmBool` is `#[repr(transparent)]` over a `u8` (size 1, alignment 1, no
/// padding) and reads every byte as a valid flag. [`set`](Self::set) writes 0
/// or 1. Comparisons and hashing use [`get`](Self::get), so a flag holding 2
/// equals one holding 1.
///
/// ```
/// use shmstore::{Shareable, ShmBool};
///
/// #[derive(Shareable, Clone, Copy, Default)]
/// #[repr(C)]
/// struct Switches { enabled: ShmBool, verbose: ShmBool, _pad: [u8; 2], level: u32 }
///
/// let mut s = Switches::default();
/// assert!(!s.enabled.get());
/// s.enabled.set(true);
/// assert!(s.enabled.get());
/// assert_eq!(s.enabled, ShmBool::from(true));
/// assert_eq!(s.enabled, true);
/// let verbose: bool = s.verbose.into();
/// assert!(!verbose);
/// ```
#[derive(Clone, Copy, Default)]
#[repr(transparent)]
pub struct ShmBool(u8);

impl ShmBool {
    /// A flag holding `value`.
    pub const fn new(value: bool) -> Self {
        ShmBool(value as u8)
    }

    /// `false` if the byte is 0, `true` for any other byte.
    pub const fn get(&self) -> bool {
        self.0 != 0
    }

    /// Stores `value`, as 0 or 1.
    pub fn set(&mut self, value: bool) {
        self.0 = value as u8;
    }
}

impl From<bool> for ShmBool {
    fn from(value: bool) -> Self {
        ShmBool::new(value)
    }
}

impl From<ShmBool> for bool {
    fn from(value: ShmBool) -> Self {
        value.get()
    }
}

/// `true` or `false`, as a `bool` prints.
impl fmt::Debug for ShmBool {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&self.get(), f)
    }
}

/// Equal when [`get`](ShmBool::get) is: any two non-zero bytes are equal.
impl PartialEq for ShmBool {
    fn eq(&self, other: &Self) -> bool {
        self.get() == other.get()
    }
}

impl Eq for ShmBool {}

/// Equal when [`get`](ShmBool::get) is `other`.
impl PartialEq<bool> for ShmBool {
    fn eq(&self, other: &bool) -> bool {
        self.get() == *other
    }
}

/// Equal when `self` is the flag's [`get`](ShmBool::get).
impl PartialEq<ShmBool> for bool {
    fn eq(&self, other: &ShmBool) -> bool {
        *self == other.get()
    }
}

/// Hashes [`get`](ShmBool::get), consistently with `PartialEq`.
impl Hash for ShmBool {
    fn hash<H: Hasher>(&self, state: &mut H) {
        self.get().hash(state);
    }
}

// SAFETY:
// - Any bit pattern is valid: the one field is a `u8`, and every byte means
//   a flag (0 false, anything else true).
// - No padding: `repr(transparent)` over a `u8`, size 1.
// - No pointers or addresses, no drop glue (`Copy`), a fixed layout
//   (`repr(transparent)` over a primitive).
// - The fingerprint is the derive's recipe for a tuple struct.
unsafe impl Shareable for ShmBool {
    const TYPE_NAME: &'static str = "ShmBool";
    const FINGERPRINT: u64 = Fingerprint::new()
        .str("ShmBool")
        .u64(size_of::<Self>() as u64)
        .u64(align_of::<Self>() as u64)
        .str("0")
        .u64(offset_of!(Self, 0) as u64)
        .u64(u8::FINGERPRINT)
        .finish();

    /// [`Kind::Bool`].
    fn schema() -> Schema {
        Schema::new(Self::TYPE_NAME, 1, 1, Kind::Bool)
    }
}
