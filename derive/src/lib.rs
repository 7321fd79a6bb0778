//! The `#[derive(Shareable)]` macro of [`shmstore`](https://docs.rs/shmstore).
//!
//! Use it through `shmstore`, which re-exports it next to the trait of the
//! same name: `use shmstore::Shareable;`. The expansion names only
//! `::shmstore::__private::...` and `::shmstore::schema::...` paths, or the
//! same under the path that `#[shareable(crate = "...")]` gives.
//!
//! The macro works in three steps, each in its own module:
//!
//! 1. `ast` reads the input into a small model of what matters here: the
//!    `repr` attributes, the kind of item and its fields.
//! 2. `valid` refuses what cannot live in shared memory and says why, as a
//!    compile error pointing at the offending tokens.
//! 3. `expand` writes the `unsafe impl`, the layout fingerprint, the schema
//!    that tools read the value with, the checks that only the compiler can
//!    make (every field is `Shareable`, no padding, no drop glue), and the
//!    `LockFree` impl that applies when every field is made of atomics.

extern crate proc_macro;

mod ast;
mod expand;
mod valid;

use proc_macro::TokenStream;
use syn::{parse_macro_input, DeriveInput};

/// Implements `shmstore::Shareable` for a struct that may live in shared
/// memory, and computes its layout fingerprint.
///
/// The struct must
///
/// - be `#[repr(C)]` (optionally with `align(N)`) or `#[repr(transparent)]`,
///   and not `packed`;
/// - have at least one field, and no generic parameters;
/// - have only `Shareable` fields: fixed-width integers and floats, their
///   atomics, arrays of `Shareable` types, and other derived structs (not
///   `bool`, `char`, `usize`/`isize`, `u128`/`i128`, enums, references,
///   pointers or heap types);
/// - have no padding: every byte belongs to a field, so add explicit fields
///   such as `_pad: [u8; N]` where the compiler would insert padding;
/// - not implement `Drop`.
///
/// Anything else is a compile error, at the offending tokens, that says what
/// to change; a field of type `bool`, `String`, `&str` or `Vec<T>` gets one
/// that names its replacement: `ShmBool`, `ShmStr<N>` or `ShmVec<T, N>`.
///
/// `#[shareable(crate = "path::to::shmstore")]` on the struct makes the
/// generated code name shmstore by that path instead of `::shmstore`, as
/// serde's `#[serde(crate = "...")]` does: for a crate that depends on
/// shmstore under another name (`shm = { package = "shmstore", ... }`, then
/// `crate = "shm"`) or reaches it through another crate's re-export
/// (`crate = "other::shmstore"`).
///
/// `#[shareable(opaque)]` on a field accepts a field of any `bytemuck::Pod +
/// Send + Sync` type (shmstore's feature `bytemuck`) or any zerocopy
/// `FromBytes + IntoBytes + Immutable + Send + Sync` type (feature
/// `zerocopy`), recorded as opaque bytes of that type's name; see
/// shmstore's guide, `_guide::derive`.
///
/// When every field is made of atomics only (`AtomicU8`..`AtomicU64`,
/// `AtomicI8`..`AtomicI64`, arrays of them, or other such derived structs),
/// the struct is also `shmstore::LockFree`, so a `shmstore::SharedAtomic`
/// (from `Shared::into_atomic`, or `SharedAtomic::open_or_create` and its
/// siblings) hands it out as `&T` without the lock. Otherwise it is not,
/// without any error at the derive: the compiler decides, and refuses the
/// struct with an error that names it only where `LockFree` is required.
///
/// `TYPE_NAME` is the struct's name as written. `FINGERPRINT` hashes the
/// name, size and alignment, then each field's name (or index), offset and
/// `FINGERPRINT`, in order: it differs whenever two builds would disagree on
/// the layout, and is equal for identical definitions wherever they are.
///
/// `schema()` describes the struct for tools that show a segment's value
/// without the type: a `shmstore::schema::Kind::Struct` with the name, size,
/// alignment and each field's name, offset and `schema()`, in order.
#[proc_macro_derive(Shareable, attributes(shareable))]
pub fn derive_shareable(input: TokenStream) -> TokenStream {
    let input = parse_macro_input!(input as DeriveInput);
    derive(&input)
        .unwrap_or_else(syn::Error::into_compile_error)
        .into()
}

fn derive(input: &DeriveInput) -> syn::Result<proc_macro2::TokenStream> {
    let input = ast::Input::from_syn(input)?;
    let replaced = valid::replaced_types(&input);
    let valid = valid::validate(&input).map_err(|mut error| {
        replaced.iter().for_each(|(_, e)| error.combine(e.clone()));
        error
    })?;
    let Some(((_, first), rest)) = replaced.split_first() else {
        return Ok(expand::expand(&valid));
    };
    // A field of a type with a replacement: say which, and check only that
    // the other fields are `Shareable`, so that one compile reports every
    // field to change (and not these twice).
    let mut error = first.clone();
    rest.iter().for_each(|(_, e)| error.combine(e.clone()));
    let skip: Vec<usize> = replaced.iter().map(|(i, _)| *i).collect();
    let mut tokens = error.into_compile_error();
    tokens.extend(expand::field_checks(&valid, &skip));
    Ok(tokens)
}
