//! What `#[derive(Shareable)]` accepts.
//!
//! The derive takes a `#[repr(C)]` (optionally `align(N)`) or
//! `#[repr(transparent)]` struct whose fields are all
//! [`Shareable`](crate::Shareable):
//!
//! | accepted | refused, with a compile error at the field or attribute |
//! |---|---|
//! | `u8`..`u64`, `i8`..`i64`, `f32`, `f64` | `bool`, `char`: not every bit pattern is valid |
//! | `AtomicU8`..`AtomicU64`, `AtomicI8`..`AtomicI64` | `usize`, `isize`: 32- and 64-bit processes disagree |
//! | arrays `[T; N]` of accepted types | references, raw pointers, `String`, `Vec`, `Box`: addresses mean nothing in another process |
//! | other `#[derive(Shareable)]` structs | enums, unions, `u128`/`i128` (alignment changed between compilers) |
//! | [`ShmStr<N>`](crate::ShmStr), [`ShmVec<T, N>`](crate::ShmVec), [`ShmBool`](crate::ShmBool) (see [text, lists and flags](super::fixed)) | padding anywhere (add explicit `_pad` fields), a missing or `packed` repr, generics, types with `Drop` |
//!
//! Another process may write any bytes into the segment, so every byte
//! pattern must be a valid value, and no padding byte may carry this
//! process's uninitialised memory out.
//!
//! ```
//! use std::sync::atomic::AtomicU32;
//! use shmstore::{Shareable, ShmStr};
//!
//! #[derive(Shareable)]
//! #[repr(C)]
//! struct Point { x: i32, y: i32 }
//!
//! #[derive(Shareable)]
//! #[repr(C, align(64))]
//! struct Slot { origin: Point, hits: AtomicU32, name: ShmStr<12>, ids: [u16; 8], _pad: [u8; 20] }
//! ```
//!
//! Padding is refused: here the compiler would put four bytes after `a`.
//!
//! ```compile_fail,E0277
//! #[derive(shmstore::Shareable)]
//! #[repr(C)]
//! struct Padded { a: u32, b: u64 }
//! ```
//!
//! So is a `bool`, whose bytes other than 0 and 1 are undefined behaviour
//! ([`ShmBool`](crate::ShmBool) is the flag that may live in shared memory):
//!
//! ```compile_fail
//! #[derive(shmstore::Shareable)]
//! #[repr(C)]
//! struct Flags { on: bool, _pad: [u8; 7] }
//! ```
//!
//! # The fingerprint
//!
//! The derive also computes a fingerprint over the type's name, size,
//! alignment and each field's name, offset and type; a segment made by a
//! build whose `T` differs in any of these is refused with
//! [`Error::LayoutMismatch`](crate::Error::LayoutMismatch), which names both
//! types. It records the type's schema as well (field names, offsets and
//! kinds), which the library stores in every segment (and every entry of a
//! store) so that tools can show the value without the Rust type: see
//! [`schema`](crate::schema) and [the command](super::command).
//!
//! The fingerprint depends on the type only, so it is the same on every
//! host; the byte order that the value's numbers are stored in is told
//! apart elsewhere: by the segment's header (a segment of the other byte
//! order is [`Error::OtherByteOrder`](crate::Error::OtherByteOrder), see
//! [segments](crate::_design::segment#byte-order-and-pointer-width)) and by
//! what a [mirror](super::mirror) sends with
//! the value.
//!
//! # What changed
//!
//! From that recorded schema, `LayoutMismatch` also says what differs
//! between the segment's layout and this build's, field by field
//! ([`Schema::diff`](crate::Schema::diff)), in its `changes` and its
//! message: here a field removed, one added, and the type of a nested
//! struct's field changed.
//!
//! ```
//! use shmstore::{Error, Shared};
//!
//! mod before {
//!     #[derive(shmstore::Shareable, Clone, Copy, Default)]
//!     #[repr(C)]
//!     pub struct Limits { pub max: u32, pub min: u32 }
//!     #[derive(shmstore::Shareable, Clone, Copy, Default)]
//!     #[repr(C)]
//!     pub struct Config { pub retries: u32, pub timeout_ms: u32, pub limits: Limits }
//! }
//! mod after {
//!     #[derive(shmstore::Shareable, Clone, Copy, Default)]
//!     #[repr(C)]
//!     pub struct Limits { pub max: u64 }
//!     #[derive(shmstore::Shareable, Clone, Copy, Default)]
//!     #[repr(C)]
//!     pub struct Config { pub retries: u32, pub timeout_s: u32, pub limits: Limits }
//! }
//!
//! # let name = format!("doc-guide-what-changed-{}", std::process::id());
//! # struct Unlink(String);
//! # impl Drop for Unlink { fn drop(&mut self) { let _ = shmstore::unlink(&self.0); } }
//! # let _unlink = Unlink(name.clone());
//! let _old = Shared::create(&name, before::Config::default())?; // the old build
//!
//! let err = Shared::<after::Config>::open(&name).unwrap_err(); // the new one
//! let Error::LayoutMismatch { changes, .. } = &err else { unreachable!() };
//! let changes: Vec<String> = changes.iter().map(|c| c.to_string()).collect();
//! assert_eq!(changes, [
//!     "alignment changed from 4 to 8",
//!     "field `timeout_ms: u32` removed",
//!     "field `timeout_s: u32` added at offset 4",
//!     "field `limits.min: u32` removed",
//!     "field `limits.max` changed type from `u32` to `u64`",
//! ]);
//! // The message says the same after the two types and fingerprints.
//! assert!(err.to_string().ends_with(&changes.join("; ")));
//! # Ok::<(), shmstore::Error>(())
//! ```
//!
//! A segment whose schema is missing or damaged gives the error without
//! the list. Fields are matched by name: a renamed field is one removed and
//! one added.
//!
//! A struct whose fields are all atomics is also
//! [`LockFree`](crate::LockFree), without any attribute: see
//! [lock-free atomics](super::atomics).
//!
//! # Another name for the crate
//!
//! The code the derive writes names the crate as `::shmstore`. A crate that
//! depends on it under another name (`shm = { package = "shmstore", ... }`
//! in Cargo.toml), or reaches it only through another crate's re-export,
//! says where it is with `#[shareable(crate = "...")]`, as serde's
//! `#[serde(crate = "...")]` does:
//!
//! ```
//! # pub extern crate shmstore as shm;
//! mod facade {
//!     // What a crate that re-exports shmstore offers its users.
//!     pub use shm as shmstore;
//! }
//!
//! #[derive(shm::Shareable)]
//! #[shareable(crate = "shm")]
//! #[repr(C)]
//! struct Renamed { count: u64 }
//!
//! #[derive(facade::shmstore::Shareable)]
//! #[shareable(crate = "crate::facade::shmstore")]
//! #[repr(C)]
//! struct Reexported { count: u64 }
//! # fn main() {}
//! ```
//!
//! # bytemuck and zerocopy
//!
//! Two features let types of those crates meet shmstore's; both are off by
//! default and pull in no crate of their own (zerocopy is a dependency
//! already).
//!
//! With the feature `bytemuck`, the derive also implements
//! `bytemuck::Zeroable`, and `bytemuck::Pod` when the struct is `Copy`
//! (a struct with atomics is not, and stays `Zeroable` only): a guard then
//! goes to `bytemuck::bytes_of(&*guard)` without bytemuck's own derive.
//! Both impls rest on the checks of the `Shareable` impl (every field
//! `Shareable`, so any bit pattern is valid; no padding). With the feature
//! on, remove `#[derive(bytemuck::Pod, bytemuck::Zeroable)]` from types that
//! derive `Shareable`: the impls would conflict.
//!
//! ```
//! # #[cfg(feature = "bytemuck")] {
//! #[derive(shmstore::Shareable, Clone, Copy)]
//! #[repr(C)]
//! struct Vertex { pos: [f32; 3], color: u32 }
//!
//! let v = Vertex { pos: [0.0, 1.0, 2.0], color: 7 };
//! assert_eq!(bytemuck::bytes_of(&v).len(), 16);
//! # }
//! ```
//!
//! zerocopy's traits are another matter: zerocopy documents that only its
//! own derive may implement them, so ours does not. Put both derives on the
//! type instead. With the feature `zerocopy`, `shmstore::zerocopy` is the
//! zerocopy crate this build uses, so with `#[zerocopy(crate =
//! "shmstore::zerocopy")]` its derives need no dependency of yours:
//!
//! ```
//! # #[cfg(feature = "zerocopy")] {
//! use shmstore::zerocopy::{FromBytes, Immutable, IntoBytes, KnownLayout};
//!
//! #[derive(shmstore::Shareable, FromBytes, IntoBytes, KnownLayout, Immutable)]
//! #[zerocopy(crate = "shmstore::zerocopy")]
//! #[repr(C)]
//! struct Packet { seq: u64, len: u32, flags: u32 }
//!
//! # let name = format!("guide-zerocopy-{}", std::process::id());
//! let shared = shmstore::Shared::create(&name, Packet { seq: 1, len: 2, flags: 0 })?;
//! let guard = shared.lock().unwrap();
//! let bytes: &[u8] = IntoBytes::as_bytes(&*guard);
//! assert_eq!(bytes.len(), 16);
//! # drop(guard); shmstore::unlink(&name)?;
//! # }
//! # Ok::<(), shmstore::Error>(())
//! ```
//!
//! A struct of atomics takes zerocopy's `FromBytes`, `IntoBytes` and
//! `KnownLayout` next to ours, but not `Immutable` (atomics are interior
//! mutability), which zerocopy's derive refuses.
//!
//! The two crates and ours accept and refuse mostly the same types: all
//! three refuse padding, and `bool` (bytemuck's `Pod` and zerocopy's
//! `FromBytes`), and accept fixed-width integers, floats and arrays of them.
//! One difference is deliberate: `usize` and `isize` are `Pod` and zerocopy
//! types, but not `Shareable`, since a 32-bit and a 64-bit process may share
//! the memory and disagree on their size.
//!
//! ## Opaque fields
//!
//! A field of another crate's type that is plain bytes by that crate's
//! account but not `Shareable` may be marked `#[shareable(opaque)]`: with
//! the feature `bytemuck`, a type that is `bytemuck::Pod`; with `zerocopy`,
//! one that is `FromBytes + IntoBytes + Immutable`; with both, either (and
//! `Send + Sync` in every case). The derive checks this at compile time,
//! with an error at the field that names what is missing (or, without
//! either feature, which features allow the attribute). The fingerprint
//! covers the type's name as written, its size and alignment; the schema
//! records it as [`Kind::Opaque`](crate::schema::Kind::Opaque) with that
//! name, which [the command](super::command) shows as hex bytes with the
//! name. `Pod` and `IntoBytes` rule out padding inside the type; padding
//! around the field is refused as for any field. The type's layout across
//! 32- and 64-bit builds is the user's promise (the fingerprint still
//! catches a size difference). A `#[repr(transparent)]` wrapper with one
//! opaque field makes such a type shareable by itself:
//!
//! ```
//! # #[cfg(feature = "bytemuck")] {
//! # mod other_crate {
//! #     #[derive(bytemuck::Pod, bytemuck::Zeroable, Clone, Copy)]
//! #     #[repr(C)]
//! #     pub struct Rgba { pub r: u8, pub g: u8, pub b: u8, pub a: u8 }
//! # }
//! #[derive(shmstore::Shareable, Clone, Copy)]
//! #[repr(transparent)]
//! struct Color(#[shareable(opaque)] other_crate::Rgba);
//! # }
//! ```
//!
//! The same with a zerocopy type:
//!
//! ```
//! # #[cfg(feature = "zerocopy")] {
//! # mod other_crate {
//! #     use shmstore::zerocopy::{FromBytes, Immutable, IntoBytes, KnownLayout};
//! #     #[derive(FromBytes, IntoBytes, KnownLayout, Immutable, Clone, Copy)]
//! #     #[zerocopy(crate = "shmstore::zerocopy")]
//! #     #[repr(C)]
//! #     pub struct Stamp { pub secs: u32, pub nanos: u32 }
//! # }
//! #[derive(shmstore::Shareable, Clone, Copy)]
//! #[repr(C)]
//! struct Event {
//!     id: u64,
//!     #[shareable(opaque)]
//!     at: other_crate::Stamp,
//! }
//! # }
//! ```
