//! Refuses, with a compile error pointing at the offending tokens, every input
//! the macro can judge by itself. What needs the type checker (fields that are
//! not `Shareable`, padding, drop glue) is left to checks that
//! [`crate::expand`] writes into the expansion.

use crate::ast::{Body, Field, Input, Layout, Repr};
use proc_macro2::TokenStream;
use quote::{quote, ToTokens};
use syn::{Error, GenericParam, Ident, LitInt, PathArguments, Type};

/// An input that passed every check: a non-generic struct with at least one
/// field and a fixed layout.
pub(crate) struct Valid<'a> {
    pub ident: &'a Ident,
    pub layout: Layout,
    /// `N` of `align(N)`, if given.
    pub align: Option<&'a LitInt>,
    pub fields: &'a [Field<'a>],
    /// The path of the `shmstore` crate: `::shmstore`, or what
    /// `#[shareable(crate = "...")]` says.
    pub krate: TokenStream,
}

pub(crate) fn validate<'a>(input: &'a Input<'a>) -> syn::Result<Valid<'a>> {
    // Which item it is decides everything else: an enum's `repr` or generics
    // are not worth a word.
    let fields = match &input.body {
        Body::Enum(enum_token) => {
            return Err(Error::new_spanned(
                enum_token,
                "`#[derive(Shareable)]` cannot be used on an enum: another process may \
                 write any bytes, and most bit patterns are not a valid variant, so reading \
                 one would be undefined behaviour; store the discriminant in an integer \
                 field (e.g. `kind: u8`) of a `#[repr(C)]` struct and convert it when \
                 reading",
            ))
        }
        Body::Union(union_token) => {
            return Err(Error::new_spanned(
                union_token,
                "`#[derive(Shareable)]` cannot be used on a union: which field is active \
                 is not stored anywhere, so a process cannot know how to read what another \
                 one wrote; use a `#[repr(C)]` struct with an integer tag field and a byte \
                 array (`[u8; N]`) that you decode according to the tag",
            ))
        }
        Body::Struct(data) => &data.fields,
    };

    let mut errors = Errors::default();
    errors.extend(generics(input));
    let (layout, repr_errors) = repr(&input.repr);
    let no_repr_error = repr_errors.is_empty();
    errors.extend(repr_errors);
    if layout.is_none() && no_repr_error {
        // A refused hint already says what to write instead.
        errors.push(missing_repr(input.ident));
    }
    if fields.is_empty() {
        errors.push(Error::new_spanned(
            input.ident,
            format_args!(
                "`#[derive(Shareable)]` needs a struct with at least one field: `{}` has \
                 none, so it takes no bytes and has nothing to share between processes",
                input.ident
            ),
        ));
    }
    errors.finish()?;
    let layout = layout.ok_or_else(|| missing_repr(input.ident))?;
    Ok(Valid {
        ident: input.ident,
        layout,
        align: input.repr.align.as_ref(),
        fields,
        krate: match &input.krate {
            Some(path) => path.to_token_stream(),
            None => quote!(::shmstore),
        },
    })
}

fn generics(input: &Input) -> Vec<Error> {
    let generics = input.generics;
    let mut errors = Vec::new();
    let lifetimes: Vec<_> = generics.lifetimes().collect();
    if !lifetimes.is_empty() {
        for lifetime in lifetimes {
            errors.push(Error::new_spanned(
                lifetime,
                "`#[derive(Shareable)]` cannot be used on a struct with a lifetime parameter: \
                 a value in shared memory cannot borrow anything, since an address means \
                 nothing in another process; own the data instead, e.g. in a `[u8; N]` array",
            ));
        }
    }
    let others: Vec<_> = generics
        .params
        .iter()
        .filter(|param| !matches!(param, GenericParam::Lifetime(_)))
        .collect();
    if let (Some(first), Some(last)) = (others.first(), others.last()) {
        errors.push(Error::new_spanned(
            quote::quote!(#first #last),
            "`#[derive(Shareable)]` does not support generic structs yet: give every field a \
             concrete type (write one struct per instantiation you need)",
        ));
    }
    errors
}

fn repr(repr: &Repr) -> (Option<Layout>, Vec<Error>) {
    let errors = repr
        .others
        .iter()
        .map(|hint| {
            let message = match hint.name.as_str() {
                "packed" => format!(
                    "`#[derive(Shareable)]` cannot be used with `#[repr({})]`: packed fields \
                     can sit at unaligned addresses, where atomics cannot work and references \
                     are undefined behaviour; remove it, and make every byte a field instead \
                     (add explicit fields such as `_pad: [u8; N]`)",
                    hint.written
                ),
                "Rust" => "`#[derive(Shareable)]` cannot be used with `#[repr(Rust)]`: the \
                           default Rust layout can change between builds, and every process \
                           must agree on it; use `#[repr(C)]` instead"
                    .to_owned(),
                _ => format!(
                    "`#[derive(Shareable)]` cannot be used with `#[repr({})]`: it accepts \
                     `#[repr(C)]`, `#[repr(C, align(N))]` and `#[repr(transparent)]`, whose \
                     layouts every build and every process agree on",
                    hint.written
                ),
            };
            Error::new_spanned(&hint.tokens, message)
        })
        .collect();
    (repr.layout, errors)
}

/// The fields of a struct whose types cannot live in shared memory but have
/// a replacement that can, each with an error that names the replacement;
/// by index.
pub(crate) fn replaced_types(input: &Input) -> Vec<(usize, Error)> {
    let Body::Struct(data) = &input.body else {
        return Vec::new();
    };
    data.fields
        .iter()
        .enumerate()
        .filter_map(|(i, field)| Some((i, replaced_type(field)?)))
        .collect()
}

/// A field of a type that cannot live in shared memory but has a
/// replacement that can: `bool`, `String`, `str` and `Vec<T>`, recognised by
/// how they are written. rustc would refuse them too (they are not
/// `Shareable`), with a message that cannot name the replacement.
fn replaced_type(field: &Field) -> Option<Error> {
    let ty = strip_groups(field.ty);
    let message = match ty {
        Type::Reference(reference) if is_str(&reference.elem) => format!(
            "`{}` cannot live in shared memory: a reference is an address, which means \
             nothing in another process; use `shmstore::ShmStr<N>`, a string of at most `N` \
             bytes stored inline (`ShmStr::new()`, `.set(\"...\")?`, `.as_str()`)",
            ty.to_token_stream().to_string().replace("& ", "&")
        ),
        _ if is_str(ty) => "`str` cannot be a field in shared memory: its length is not \
             fixed; use `shmstore::ShmStr<N>`, a string of at most `N` bytes stored inline \
             (`ShmStr::new()`, `.set(\"...\")?`, `.as_str()`)"
            .to_owned(),
        _ if last_segment(ty, "bool").is_some_and(|args| args.is_none()) && is_bare(ty) => {
            "`bool` cannot live in shared memory: another process may write any byte, and \
             a `bool` holding anything but 0 or 1 is undefined behaviour; use \
             `shmstore::ShmBool`, a flag of one byte where any value other than 0 reads as \
             `true` (`ShmBool::new(true)`, `.get()`, `.set(false)`)"
                .to_owned()
        }
        _ if last_segment(ty, "String").is_some_and(|args| args.is_none())
            && std_path(ty, &["string", "String"]) =>
        {
            "`String` cannot live in shared memory: it points to heap memory of this \
             process, which others cannot read; use `shmstore::ShmStr<N>`, a string of at \
             most `N` bytes stored inline (`ShmStr::new()`, `.set(\"...\")?`, `.as_str()`)"
                .to_owned()
        }
        _ if last_segment(ty, "Vec").is_some_and(|args| args == Some(1))
            && std_path(ty, &["vec", "Vec"]) =>
        {
            "`Vec` cannot live in shared memory: it points to heap memory of this process, \
             which others cannot read; use `shmstore::ShmVec<T, N>`, a list of at most `N` \
             items stored inline (`ShmVec::new()`, `.push(item)?`, `.as_slice()`)"
                .to_owned()
        }
        _ => return None,
    };
    Some(Error::new_spanned(field.ty, message))
}

fn strip_groups(mut ty: &Type) -> &Type {
    while let Type::Group(group) = ty {
        ty = &group.elem;
    }
    if let Type::Paren(paren) = ty {
        return strip_groups(&paren.elem);
    }
    ty
}

fn is_str(ty: &Type) -> bool {
    let ty = strip_groups(ty);
    last_segment(ty, "str").is_some_and(|args| args.is_none())
        && std_path(ty, &["primitive", "str"])
}

/// `Some(number of generic arguments or None)` when `ty` is a path whose
/// last segment is `name`.
fn last_segment(ty: &Type, name: &str) -> Option<Option<usize>> {
    let Type::Path(path) = ty else { return None };
    if path.qself.is_some() {
        return None;
    }
    let last = path.path.segments.last()?;
    if last.ident != name {
        return None;
    }
    match &last.arguments {
        PathArguments::None => Some(None),
        PathArguments::AngleBracketed(args) => Some(Some(args.args.len())),
        PathArguments::Parenthesized(_) => None,
    }
}

fn is_bare(ty: &Type) -> bool {
    matches!(ty, Type::Path(path) if path.path.segments.len() == 1 && path.path.leading_colon.is_none())
}

/// Whether `ty` is written bare (`Vec<T>`) or as a path into `std`, `alloc`
/// or `core` ending with `tail` (`std::vec::Vec<T>`): not some other crate's
/// type of the same name.
fn std_path(ty: &Type, tail: &[&str]) -> bool {
    let Type::Path(path) = ty else { return false };
    let segments: Vec<String> = path
        .path
        .segments
        .iter()
        .map(|s| s.ident.to_string())
        .collect();
    match segments.as_slice() {
        [_] => path.path.leading_colon.is_none(),
        [krate, rest @ ..] => ["std", "alloc", "core"].contains(&krate.as_str()) && rest == tail,
        [] => false,
    }
}

fn missing_repr(ident: &Ident) -> Error {
    Error::new_spanned(
        ident,
        format_args!(
            "`#[derive(Shareable)]` needs `#[repr(C)]` or `#[repr(transparent)]` on \
             `{ident}`: the default Rust layout can change between builds, and every \
             process must agree on it"
        ),
    )
}

/// Collects errors so that one compile reports them all.
#[derive(Default)]
struct Errors(Option<Error>);

impl Errors {
    fn push(&mut self, error: Error) {
        match &mut self.0 {
            Some(errors) => errors.combine(error),
            None => self.0 = Some(error),
        }
    }

    fn finish(self) -> syn::Result<()> {
        self.0.map_or(Ok(()), Err)
    }
}

impl Extend<Error> for Errors {
    fn extend<I: IntoIterator<Item = Error>>(&mut self, iter: I) {
        iter.into_iter().for_each(|error| self.push(error));
    }
}
