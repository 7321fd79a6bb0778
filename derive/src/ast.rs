//! Reads a `DeriveInput` into what the derive cares about. Nothing is refused
//! here except attributes that do not parse: judging is [`crate::valid`]'s job.

use proc_macro2::{Group, TokenStream};
use quote::ToTokens;
use syn::ext::IdentExt;
use syn::spanned::Spanned;
use syn::{
    Attribute, Data, DeriveInput, Fields, Generics, Ident, LitInt, LitStr, Member, Path, Token,
    Type,
};

/// The derive's input.
pub(crate) struct Input<'a> {
    pub ident: &'a Ident,
    pub generics: &'a Generics,
    pub repr: Repr,
    /// The path of the `shmstore` crate from `#[shareable(crate = "...")]`,
    /// if given.
    pub krate: Option<Path>,
    pub body: Body<'a>,
}

/// What kind of item the derive is on.
pub(crate) enum Body<'a> {
    Struct(Struct<'a>),
    /// The `enum` keyword, to point at.
    Enum(Token![enum]),
    /// The `union` keyword, to point at.
    Union(Token![union]),
}

pub(crate) struct Struct<'a> {
    pub fields: Vec<Field<'a>>,
}

pub(crate) struct Field<'a> {
    /// How to name the field in `offset_of!`: `name` or `0`.
    pub member: Member,
    /// The name as written (without `r#`), or the index for a tuple field.
    pub name: String,
    pub ty: &'a Type,
    /// `#[shareable(opaque)]`: a foreign plain-bytes type, checked as such
    /// and recorded as opaque bytes.
    pub opaque: bool,
}

/// Everything the `#[repr(...)]` attributes say, over all of them.
#[derive(Default)]
pub(crate) struct Repr {
    /// `C` or `transparent`.
    pub layout: Option<Layout>,
    /// `align(N)`.
    pub align: Option<LitInt>,
    /// Hints the derive does not accept (`packed`, `Rust`, `u8`, ...), as
    /// written, to point at.
    pub others: Vec<ReprHint>,
}

#[derive(Clone, Copy, PartialEq, Eq)]
pub(crate) enum Layout {
    C,
    Transparent,
}

/// A `repr` hint other than `C`, `transparent` and `align(N)`.
pub(crate) struct ReprHint {
    /// The hint's name: `packed`, `Rust`, `u8`, ...
    pub name: String,
    /// The hint as written, e.g. `packed(2)`, for messages.
    pub written: String,
    /// The whole hint with its arguments, e.g. `packed(2)`.
    pub tokens: TokenStream,
}

impl<'a> Input<'a> {
    pub fn from_syn(input: &'a DeriveInput) -> syn::Result<Self> {
        let body = match &input.data {
            Data::Struct(data) => Body::Struct(Struct {
                fields: fields(&data.fields)?,
            }),
            Data::Enum(data) => Body::Enum(data.enum_token),
            Data::Union(data) => Body::Union(data.union_token),
        };
        Ok(Input {
            ident: &input.ident,
            generics: &input.generics,
            repr: Repr::from_attrs(&input.attrs)?,
            krate: krate(&input.attrs)?,
            body,
        })
    }
}

/// The path given by `#[shareable(crate = "path::to::shmstore")]`, the only
/// key the attribute takes on the type (as `#[serde(crate = "...")]`).
fn krate(attrs: &[Attribute]) -> syn::Result<Option<Path>> {
    let mut krate: Option<Path> = None;
    for attr in attrs
        .iter()
        .filter(|attr| attr.path().is_ident("shareable"))
    {
        attr.parse_nested_meta(|meta| {
            if meta.path.is_ident("crate") {
                let lit: LitStr = meta.value()?.parse()?;
                if krate.is_some() {
                    return Err(meta.error("`crate` is given twice"));
                }
                krate = Some(lit.parse().map_err(|_| {
                    syn::Error::new_spanned(
                        &lit,
                        format_args!(
                            "expected the path of the `shmstore` crate, such as \
                             `\"shm\"` or `\"my_crate::reexports::shmstore\"`, not `{:?}`",
                            lit.value()
                        ),
                    )
                })?);
                Ok(())
            } else {
                Err(meta.error(format_args!(
                    "unknown `shareable` attribute `{}`: the type takes \
                     `#[shareable(crate = \"path::to::shmstore\")]`",
                    meta.path.to_token_stream().to_string().replace(' ', "")
                )))
            }
        })?;
    }
    Ok(krate)
}

fn fields(fields: &Fields) -> syn::Result<Vec<Field<'_>>> {
    fields
        .iter()
        .enumerate()
        .map(|(i, field)| {
            let opaque = opaque(&field.attrs)?;
            Ok(match &field.ident {
                Some(ident) => Field {
                    member: Member::Named(ident.clone()),
                    name: ident.unraw().to_string(),
                    ty: &field.ty,
                    opaque,
                },
                None => Field {
                    member: Member::Unnamed(syn::Index {
                        index: i as u32,
                        span: field.ty.span(),
                    }),
                    name: i.to_string(),
                    ty: &field.ty,
                    opaque,
                },
            })
        })
        .collect()
}

/// Whether a field has `#[shareable(opaque)]`, the only key the attribute
/// takes on a field.
fn opaque(attrs: &[Attribute]) -> syn::Result<bool> {
    let mut opaque = false;
    for attr in attrs
        .iter()
        .filter(|attr| attr.path().is_ident("shareable"))
    {
        attr.parse_nested_meta(|meta| {
            if meta.path.is_ident("opaque") {
                opaque = true;
                Ok(())
            } else {
                Err(meta.error(format_args!(
                    "unknown `shareable` attribute `{}`: a field takes `#[shareable(opaque)]`",
                    meta.path.to_token_stream().to_string().replace(' ', "")
                )))
            }
        })?;
    }
    Ok(opaque)
}

impl Repr {
    fn from_attrs(attrs: &[Attribute]) -> syn::Result<Self> {
        let mut repr = Repr::default();
        for attr in attrs.iter().filter(|attr| attr.path().is_ident("repr")) {
            attr.parse_nested_meta(|meta| {
                let path = &meta.path;
                // Arguments, as in `align(8)` or `packed(2)`.
                let args: Option<Group> = if meta.input.peek(syn::token::Paren) {
                    Some(meta.input.parse()?)
                } else {
                    None
                };
                let layout = if path.is_ident("C") {
                    Some(Layout::C)
                } else if path.is_ident("transparent") {
                    Some(Layout::Transparent)
                } else {
                    None
                };
                match (layout, &args) {
                    (Some(layout), None) => {
                        // A second `C` or `C` with `transparent` is rustc's to refuse.
                        repr.layout.get_or_insert(layout);
                    }
                    (None, Some(args)) if path.is_ident("align") => {
                        repr.align = Some(syn::parse2(args.stream())?);
                    }
                    _ => {
                        let mut tokens = path.to_token_stream();
                        args.to_tokens(&mut tokens);
                        let name = path.to_token_stream().to_string().replace(' ', "");
                        let written = match &args {
                            Some(args) => format!("{name}{args}"),
                            None => name.clone(),
                        };
                        repr.others.push(ReprHint {
                            name,
                            written,
                            tokens,
                        });
                    }
                }
                Ok(())
            })?;
        }
        Ok(repr)
    }
}
