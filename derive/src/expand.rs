//! Writes the `unsafe impl Shareable` for a [`Valid`] input, with the checks
//! that only the compiler can make:
//!
//! - every field is `Shareable`, with the error on the field's type;
//! - no padding, with the error on the field after the gap (or on the struct
//!   name for padding at the end), saying how many bytes to fill;
//! - a non-zero size and no drop glue.
//!
//! It also writes `Shareable::schema` (the struct's name, size, alignment and
//! each field's name, offset and schema), and the `unsafe impl LockFree`,
//! which applies only when every field is made of atomics (see
//! [`lock_free`]).
//!
//! Generated code names nothing but `::shmstore::__private::...` and
//! `::shmstore::schema::...` paths (with the path that
//! `#[shareable(crate = "...")]` gives instead of `::shmstore`, for a crate
//! that depends on shmstore under another name or through a re-export), so
//! it works whatever the user has in
//! scope, and in `no_std` crates.

use crate::ast::{Field, Layout};
use crate::valid::Valid;
use proc_macro2::{Span, TokenStream, TokenTree};
use quote::{quote, quote_spanned, ToTokens};
use syn::ext::IdentExt;
use syn::spanned::Spanned;
use syn::{Ident, Member};

pub(crate) fn expand(input: &Valid) -> TokenStream {
    let ident = input.ident;
    let name = ident_name(ident);
    let krate = &input.krate;
    let private = quote!(#krate::__private);
    let mem = quote!(#private::core::mem);
    // Primitive types by path: a user's `struct u64` cannot change them.
    let prim = quote!(#private::core::primitive);

    // `<F as Shareable>::FINGERPRINT` is also the check that every field is
    // `Shareable`: `F` is the field type's own tokens, so rustc's error (the
    // trait's `on_unimplemented` message) lands on the field's type. A separate
    // `assert_shareable::<F>()` would report every such field twice.
    let fingerprint_fields = input.fields.iter().map(|field| {
        let Field { member, name, .. } = field;
        let fingerprint = field_fingerprint(input, field);
        quote! {
            .str(#name)
            .u64(#mem::offset_of!(#ident, #member) as #prim::u64)
            .u64(#fingerprint)
        }
    });
    let schema = schema(input);
    let layout_checks = layout_checks(input);
    let lock_free = lock_free(input);
    let bytemuck = bytemuck(input);

    quote! {
        const _: () = {
            #[automatically_derived]
            // SAFETY: the checks below prove every field `Shareable` (so any bit
            // pattern is valid, with no pointer and no drop glue), the layout
            // fixed by `repr`, no padding, a non-zero size and no `Drop` impl.
            unsafe impl #private::Shareable for #ident {
                const TYPE_NAME: &'static #prim::str = #name;
                const FINGERPRINT: #prim::u64 = #private::Fingerprint::new()
                    .str(#name)
                    .u64(#mem::size_of::<#ident>() as #prim::u64)
                    .u64(#mem::align_of::<#ident>() as #prim::u64)
                    #(#fingerprint_fields)*
                    .finish();

                #schema
            }

            #lock_free

            #bytemuck

            #layout_checks
        };
    }
}

/// Only the check that every field but those at the indices `skip` is
/// `Shareable`, with rustc's error at the field's type: what is written
/// when some fields have a type that [`crate::valid`] refuses already.
pub(crate) fn field_checks(input: &Valid, skip: &[usize]) -> TokenStream {
    let krate = &input.krate;
    let checks = input
        .fields
        .iter()
        .enumerate()
        .filter(|(i, _)| !skip.contains(i))
        .map(|(_, field)| {
            let fingerprint = field_fingerprint(input, field);
            quote! {
                const _: #krate::__private::core::primitive::u64 = #fingerprint;
            }
        });
    quote!(#(#checks)*)
}

/// A field's fingerprint: its type's `FINGERPRINT`, which is also the check
/// that it is `Shareable`, with rustc's error at the field's type; for an
/// opaque field, a hash of its type's name as written, size and alignment,
/// after `(&&OpaqueProbe::<F>::NEW).check()`, the check that it is plain
/// bytes (`bytemuck::Pod` or zerocopy's traits, by the features on).
fn field_fingerprint(input: &Valid, field: &Field) -> TokenStream {
    let krate = &input.krate;
    let private = quote!(#krate::__private);
    let ty = field.ty;
    if !field.opaque {
        return quote!(<#ty as #private::Shareable>::FINGERPRINT);
    }
    let type_name = type_name(ty);
    // The check is a function never called (trait methods cannot run in a
    // const), spanned at the field's type so that the error lands there.
    let spanned = respan(&private, ty.span());
    let check = quote_spanned! {ty.span()=>
        (&&#spanned::OpaqueProbe::<#ty>::NEW).check();
    };
    quote!({
        #[allow(dead_code)]
        fn __opaque_check() {
            #[allow(unused_imports)]
            use #private::{ViaPod as _, ViaZerocopy as _};
            #check
        }
        #private::Fingerprint::new()
            .str("opaque")
            .str(#type_name)
            .u64(#private::core::mem::size_of::<#ty>() as #private::core::primitive::u64)
            .u64(#private::core::mem::align_of::<#ty>() as #private::core::primitive::u64)
            .finish()
    })
}

/// A type as written, for an opaque field's schema and fingerprint.
fn type_name(ty: &syn::Type) -> String {
    ty.to_token_stream()
        .to_string()
        .replace(" :: ", "::")
        .replace(" < ", "<")
        .replace(" >", ">")
        .replace(" ,", ",")
}

/// `fn schema()`: a `Kind::Struct` with each field's name, offset and
/// schema, in declaration order.
///
/// A field's schema is `<F as Shareable>::schema()`, checked against `F`'s
/// size and alignment as `Schema::of` does (a wrong hand-written schema
/// makes that field `Opaque`, not the struct inconsistent). `F` is spelled
/// `<F as Shareable>` with the field type's own tokens, like the
/// fingerprint's `<F as Shareable>::FINGERPRINT`, so that a field that is
/// not `Shareable` gives rustc the same error at the same place, which it
/// reports once (`Schema::of::<F>()` would add an error of its own).
fn schema(input: &Valid) -> TokenStream {
    let ident = input.ident;
    let name = ident_name(ident);
    let krate = &input.krate;
    let private = quote!(#krate::__private);
    let schema = quote!(#krate::schema);
    let mem = quote!(#private::core::mem);
    let prim = quote!(#private::core::primitive);
    let count = input.fields.len();
    let fields = input.fields.iter().map(|field| {
        let Field {
            member, name, ty, ..
        } = field;
        if field.opaque {
            let type_name = type_name(ty);
            return quote! {
                __fields.push(#schema::Field::new(
                    #name,
                    #mem::offset_of!(#ident, #member) as #prim::u64,
                    #schema::Schema::new(
                        #type_name,
                        #mem::size_of::<#ty>() as #prim::u64,
                        #mem::align_of::<#ty>() as #prim::u64,
                        #schema::Kind::Opaque,
                    ),
                ));
            };
        }
        quote! {
            __fields.push(#schema::Field::new(
                #name,
                #mem::offset_of!(#ident, #member) as #prim::u64,
                #private::checked_schema(
                    <#ty as #private::Shareable>::schema(),
                    <#ty as #private::Shareable>::TYPE_NAME,
                    #mem::size_of::<#ty>(),
                    #mem::align_of::<#ty>(),
                ),
            ));
        }
    });
    quote! {
        fn schema() -> #schema::Schema {
            let mut __fields = #private::Vec::with_capacity(#count);
            #(#fields)*
            #schema::Schema::new(
                #name,
                #mem::size_of::<#ident>() as #prim::u64,
                #mem::align_of::<#ident>() as #prim::u64,
                #schema::Kind::Struct { fields: __fields },
            )
        }
    }
}

/// `LockFree` for the struct, which holds when every field is made of
/// atomics only; and `AtomicField`, so that the struct counts as such a
/// field of others.
///
/// The compiler decides, not the macro (which sees only the fields' type
/// names): each bound is under a `for<'__a>`, so rustc accepts the impls
/// whether it holds or not (a plain bound on concrete types that does not
/// hold is an error), and applies them only where they hold. A struct with
/// other fields is not `LockFree`, without any error here. The bounds ask
/// for `AtomicField<Struct>`, not `LockFree`, so that the error on
/// `Shared::into_atomic` names the struct (see `src/types/lockfree.rs`),
/// and each one carries the field type's span, so that rustc's note "unsatisfied trait
/// bound introduced here" points at the field.
fn lock_free(input: &Valid) -> TokenStream {
    let ident = input.ident;
    // `for<'__a>` makes rustc accept a bound that does not hold. The
    // lifetime is the macro's own, so that `unused_lifetimes` leaves it be.
    let hrtb = |at: Span| {
        let a = syn::Lifetime::new("'__a", Span::call_site().located_at(at));
        quote_spanned!(at=> for<#a>)
    };
    let bounds = input.fields.iter().map(|field| {
        let ty = field.ty;
        let hrtb = hrtb(ty.span());
        let krate = respan(&input.krate, ty.span());
        quote_spanned!(ty.span()=> #hrtb #ty: #krate::__private::AtomicField<#ident>)
    });
    let krate = respan(&input.krate, ident.span());
    let hrtb = hrtb(ident.span());
    // The impl's type parameter, which must not be the struct's own name.
    let mut param = "__S".to_owned();
    while *ident == param {
        param.push('_');
    }
    let param = Ident::new(&param, ident.span());
    // The impls carry the spans of the struct's name and fields: rustc takes
    // an impl with a derive's spans for a `derive` on a generic type, and
    // says "type parameter would need to implement" and "consider manually
    // implementing" instead of pointing at the field.
    quote_spanned! {ident.span()=>
        #[automatically_derived]
        // SAFETY: the layout checks below prove that every byte belongs to a
        // field (no padding), and the bounds that every field is made of
        // atomics only; so every byte is inside an atomic.
        unsafe impl #krate::__private::LockFree for #ident
        where
            // `LockFree: Shareable`; a struct that is not `Shareable` after
            // all (a field that is not `Send`) is reported once, above.
            #hrtb #ident: #krate::__private::Shareable,
            #(#bounds,)*
        {
        }

        #[automatically_derived]
        // SAFETY: as for `LockFree`, which this requires.
        unsafe impl<#param> #krate::__private::AtomicField<#param> for #ident
        where
            #hrtb #ident: #krate::__private::LockFree,
        {
        }
    }
}

/// `tokens` with every span set to `span` (the crate's path, written into
/// impls that carry the spans of the struct's name and fields).
fn respan(tokens: &TokenStream, span: Span) -> TokenStream {
    tokens
        .clone()
        .into_iter()
        .map(|mut token| {
            if let TokenTree::Group(group) = &token {
                let mut new =
                    proc_macro2::Group::new(group.delimiter(), respan(&group.stream(), span));
                new.set_span(span);
                token = TokenTree::Group(new);
            } else {
                token.set_span(span);
            }
            token
        })
        .collect()
}

/// With the feature `bytemuck`: `bytemuck::Zeroable`, and `bytemuck::Pod`
/// where the struct is `Copy` (which a struct with atomics is not), so that
/// a guard can go to `bytemuck::bytes_of` without a second derive.
///
/// As for `LockFree`, the `Copy` bound is under a `for<'__a>`, so rustc
/// accepts the impl whether the struct is `Copy` or not, and applies it only
/// where it is.
#[cfg(feature = "bytemuck")]
fn bytemuck(input: &Valid) -> TokenStream {
    let ident = input.ident;
    let bytemuck = respan(&input.krate, ident.span());
    let a = syn::Lifetime::new("'__a", Span::call_site().located_at(ident.span()));
    quote_spanned! {ident.span()=>
        #[automatically_derived]
        // SAFETY: the `Shareable` impl above rests on the checks below: every
        // field is `Shareable`, so any bit pattern (all zeros too) is a valid
        // value of it, and there is no padding between or after the fields.
        unsafe impl #bytemuck::__private::bytemuck::Zeroable for #ident {}

        #[automatically_derived]
        // SAFETY: as for `Zeroable`: no padding (the checks below), any bit
        // pattern valid (every field `Shareable`), `repr(C)` or
        // `repr(transparent)`; and `Copy`, the bound, rules out atomics and
        // any other interior mutability.
        unsafe impl #bytemuck::__private::bytemuck::Pod for #ident
        where
            for<#a> #ident: #bytemuck::__private::core::marker::Copy,
        {
        }
    }
}

#[cfg(not(feature = "bytemuck"))]
fn bytemuck(_: &Valid) -> TokenStream {
    TokenStream::new()
}

/// The name as written, without `r#`.
fn ident_name(ident: &Ident) -> String {
    ident.unraw().to_string()
}

/// Checks that the struct has a non-zero size, no padding and no `Drop` impl.
///
/// Each is a trait implemented for one value of a const parameter only, say
/// `PaddingBetweenFields<0>`, and a use of
/// `<T as PaddingBetweenFields<{ padding }>>::OK`: when the
/// value is wrong, rustc reports the trait's `on_unimplemented` message, with
/// the actual value filled in, at the place `T` is spelled, which is made the
/// offending field (or the struct's name). A `const` that panics would be
/// simpler, but rustc reports a panic in a derive's output at the
/// `#[derive(...)]` attribute whatever span it is given, and a const panic
/// message cannot format a number.
fn layout_checks(input: &Valid) -> TokenStream {
    let ident = input.ident;
    let name = ident_name(ident);
    let krate = &input.krate;
    let mem = quote!(#krate::__private::core::mem);
    let prim = quote!(#krate::__private::core::primitive);
    let size = quote!(#mem::size_of::<#ident>());
    let padding_note = "every byte of a value in shared memory must belong to a field: \
                        padding bytes are uninitialised, and other processes would read them";
    let mut checks = Checks::new(input);

    checks.push(Check {
        name: "ZeroSized",
        span: ident.span(),
        params: quote!(const ZERO_SIZED: #prim::bool),
        impl_generics: quote!(),
        implemented: quote!(false),
        actual: quote!({ #size == 0 }),
        message: format!("`{name}` is zero-sized: it has nothing to share between processes"),
        label: "zero-sized".to_owned(),
        notes: vec!["all of its fields take no bytes; give it a field that holds data".to_owned()],
    });

    // `repr(transparent)` has the layout of its one non-zero-sized field, so
    // it has no padding, and its zero-sized fields all sit at offset 0.
    if input.layout == Layout::C {
        let end_of = |field: &Field| {
            let Field { member, ty, .. } = field;
            quote!((#mem::offset_of!(#ident, #member) + #mem::size_of::<#ty>()))
        };
        for pair in input.fields.windows(2) {
            let (before, after) = (&pair[0], &pair[1]);
            let end = end_of(before);
            let member = &after.member;
            let (a, b) = (&before.name, &after.name);
            checks.push(Check {
                name: "PaddingBetweenFields",
                span: after.member_span(),
                params: quote!(const N: #prim::usize),
                impl_generics: quote!(),
                implemented: quote!(0),
                actual: quote!({ #mem::offset_of!(#ident, #member) - #end }),
                message: format!(
                    "`{name}` has {{N}} byte(s) of padding between fields `{a}` and `{b}`"
                ),
                label: format!("{{N}} byte(s) of padding before field `{b}`"),
                notes: vec![
                    padding_note.to_owned(),
                    format!(
                        "add a field {} between `{a}` and `{b}`, or order the fields from \
                         the largest alignment to the smallest",
                        match before.member {
                            Member::Named(_) => format!("`_pad_{a}: [u8; {{N}}]`"),
                            Member::Unnamed(_) => "of type `[u8; {N}]`".to_owned(),
                        }
                    ),
                ],
            });
        }
        if let Some(last) = input.fields.last() {
            let end = end_of(last);
            let l = &last.name;
            let why = match input.align {
                Some(align) => {
                    format!("`#[repr(align({align}))]` makes its size a multiple of {{ALIGN}}")
                }
                None => "its size is rounded up to a multiple of its alignment, {ALIGN}".to_owned(),
            };
            checks.push(Check {
                name: "PaddingAtEnd",
                span: ident.span(),
                params: quote!(const N: #prim::usize, const ALIGN: #prim::usize),
                impl_generics: quote!(const ALIGN: #prim::usize),
                implemented: quote!(0, ALIGN),
                actual: quote!({ #size - #end }, { #mem::align_of::<#ident>() }),
                message: format!(
                    "`{name}` has {{N}} byte(s) of padding at its end, after field `{l}`"
                ),
                label: "{N} byte(s) of padding at the end".to_owned(),
                notes: vec![
                    why,
                    padding_note.to_owned(),
                    match last.member {
                        Member::Named(_) => "add a last field `_pad: [u8; {N}]`",
                        Member::Unnamed(_) => "add a last field of type `[u8; {N}]`",
                    }
                    .to_owned(),
                ],
            });
        }
    }

    // A field with drop glue is not `Shareable`, which is reported already.
    let field_types = input.fields.iter().map(|field| field.ty);
    checks.push(Check {
        name: "DropImpl",
        span: ident.span(),
        params: quote!(const HAS_DROP_IMPL: #prim::bool),
        impl_generics: quote!(),
        implemented: quote!(false),
        actual: quote!({
            #mem::needs_drop::<#ident>() #(&& !#mem::needs_drop::<#field_types>())*
        }),
        message: format!(
            "`{name}` implements `Drop`, but a value in shared memory is never dropped"
        ),
        label: "implements `Drop`".to_owned(),
        notes: vec![
            "other processes go on using the value after this one is done with it, \
                     so its destructor would never run at the right time; remove the `Drop` \
                     impl"
                .to_owned(),
        ],
    });

    checks.tokens
}

/// One check: `trait Name<params>` implemented for `T` with the `implemented`
/// arguments only, and used with the `actual` ones.
struct Check {
    /// The trait's name, which rustc shows: "the trait `PaddingAtEnd<8, 16>`
    /// is not implemented for `T`, but trait `PaddingAtEnd<0, 16>` is".
    name: &'static str,
    /// Where the error shows.
    span: Span,
    params: TokenStream,
    impl_generics: TokenStream,
    implemented: TokenStream,
    actual: TokenStream,
    /// The `on_unimplemented` texts, which can name the `params`, as `{N}`.
    message: String,
    label: String,
    notes: Vec<String>,
}

/// The checks written so far.
struct Checks<'a> {
    ident: &'a Ident,
    /// Every identifier of the input that the checks mention: a check's trait
    /// must not shadow any of them.
    taken: Vec<String>,
    tokens: TokenStream,
}

impl<'a> Checks<'a> {
    fn new(input: &'a Valid) -> Self {
        let mut taken = vec![input.ident.to_string()];
        for field in input.fields {
            idents(field.ty.to_token_stream(), &mut taken);
        }
        Checks {
            ident: input.ident,
            taken,
            tokens: TokenStream::new(),
        }
    }

    fn push(&mut self, check: Check) {
        let Check {
            name,
            span,
            params,
            impl_generics,
            implemented,
            actual,
            message,
            label,
            notes,
        } = check;
        let ident = self.ident;
        let mut name = name.to_owned();
        while self.taken.contains(&name) {
            name.push_str("Check");
        }
        let name = Ident::new(&name, Span::call_site());
        // rustc reports the error where `T` is spelled in `<T as Check<..>>`.
        // That `T` gets the place of `span` and the macro's hygiene, so that
        // lints still treat it as generated code.
        let mut at = ident.clone();
        at.set_span(Span::call_site().located_at(span));
        // Each check in a block of its own, so the trait names do not clash.
        self.tokens.extend(quote! {
            const _: () = {
                #[diagnostic::on_unimplemented(
                    message = #message,
                    label = #label,
                    #(note = #notes,)*
                )]
                trait #name<#params> {
                    const OK: () = ();
                }
                impl<#impl_generics> #name<#implemented> for #ident {}
                const _: () = <#at as #name<#actual>>::OK;
            };
        });
    }
}

/// Collects the identifiers in `tokens`.
fn idents(tokens: TokenStream, out: &mut Vec<String>) {
    for token in tokens {
        match token {
            TokenTree::Ident(ident) => out.push(ident.unraw().to_string()),
            TokenTree::Group(group) => idents(group.stream(), out),
            TokenTree::Punct(_) | TokenTree::Literal(_) => {}
        }
    }
}

impl Field<'_> {
    /// Where to report a problem with the field: its name, or its type for a
    /// tuple field.
    fn member_span(&self) -> Span {
        match &self.member {
            Member::Named(ident) => ident.span(),
            Member::Unnamed(_) => self.ty.span(),
        }
    }
}
