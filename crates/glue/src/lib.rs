//! What the index's and the partition's ic-cdk glue share: [`endpoints!`] exports each
//! endpoint with ic-cdk, its argument decoded by [`decode`] under the dispatcher's Candid
//! decoding and skipping quotas and its reply encoded by [`encode`] from a cached header, and
//! declares it to `export_candid!` with its Candid types.
//!
//! Candid's cost on a hot path is mostly type work, not bytes: on every message it builds the
//! Rust types' Candid types (the argument's to check the wire against, the reply's to write
//! its type table) and, encoding, serializes and deduplicates the reply's type table.
//! [`endpoints!`] also defines `warm_codecs()`, which the canister calls in `init` and
//! `post_upgrade`: it builds every reply's header ([`flotilla_types::dispatch::reply_header`])
//! and fills candid's memo of every argument's type, in a message whose heap is kept, so
//! queries (whose heap is discarded) find both ready. Both are exactly what candid would
//! build; nothing about decoding (the quotas) or the bytes on the wire changes. The put
//! argument, the hot write path, is decoded without candid's general decoder when its bytes
//! are exactly candid's own encoding of `PutArgs` (see [`decode`]).

/// Decodes an endpoint's argument exactly as the dispatcher does, under the quotas of
/// [`flotilla_types::dispatch::decoder_config`]: an argument that does not decode, or costs
/// more than the quotas, is a reject (a trap before anything ran). A type with a fast path
/// ([`flotilla_types::dispatch::decode_fast`]: `PutArgs`) whose bytes are exactly candid's
/// own encoding of it is decoded without candid's general decoder, to the same value.
pub fn decode<T: candid::CandidType + for<'de> candid::Deserialize<'de> + 'static>(
    bytes: Vec<u8>,
) -> T {
    if let Some(arg) = flotilla_types::dispatch::decode_fast::<T>(&bytes) {
        return arg;
    }
    match flotilla_types::dispatch::decode_args::<(T,)>("the endpoint", &bytes) {
        Ok((arg,)) => arg,
        Err(e) => ic_cdk::trap(e.to_string()),
    }
}

/// Encodes an endpoint's reply with [`flotilla_types::dispatch::encode_reply`]: candid's
/// bytes, from the reply type's cached header.
pub fn encode<T: candid::CandidType + 'static>(reply: T) -> Vec<u8> {
    flotilla_types::dispatch::encode_reply(&reply)
}

/// What `warm_codecs()` (made by [`endpoints!`]) does for one endpoint's reply type: builds
/// and keeps its header.
pub fn warm_reply<R: candid::CandidType + 'static>() {
    flotilla_types::dispatch::reply_header::<R>();
}

/// What `warm_codecs()` does after the reply headers and before the argument types: builds
/// the headers [`decode`]'s fast path compares against (which starts candid's memo afresh).
pub fn warm_fast() {
    flotilla_types::dispatch::warm_fast_decoders();
}

/// What `warm_codecs()` does for one endpoint's argument type, after every reply header (a
/// header's construction starts candid's memo afresh): puts its Candid type in candid's memo,
/// where the decoder's `T::ty()` finds it instead of building it.
pub fn warm_arg<A: candid::CandidType>() {
    A::ty();
}

/// Exports each endpoint with ic-cdk, its argument decoded by [`decode`] (the dispatcher's
/// quotas) and its reply encoded by [`encode`], and declares it to `export_candid!` with its
/// Candid types. ic-cdk declares an endpoint that has its own decoder as taking a blob, so the
/// endpoint is hidden from `export_candid!` and a stub with the same signature declares it
/// instead. Also defines `fn warm_codecs()` over every endpoint's types (see the crate doc),
/// for `init` and `post_upgrade` to call.
#[macro_export]
macro_rules! endpoints {
    (@acc [$($t:ty => $r:ty;)*]) => {
        /// Builds every endpoint's reply header and memoizes every argument's Candid type
        /// (`flotilla_glue`'s crate doc): call in `init` and `post_upgrade`.
        fn warm_codecs() {
            $( $crate::warm_reply::<$r>(); )*
            $crate::warm_fast();
            $( $crate::warm_arg::<$t>(); )*
        }
    };
    (
        @acc [$($acc:tt)*]
        $(#[$meta:meta])*
        $kind:ident async fn $name:ident($arg:ident: $t:ty) -> $r:ty $body:block
        $($rest:tt)*
    ) => {
        $(#[$meta])*
        #[ic_cdk::$kind(decode_with = "flotilla_glue::decode", encode_with = "flotilla_glue::encode", hidden = true)]
        async fn $name($arg: $t) -> $r $body
        $crate::declare!($(#[$meta])* $kind $name($t) -> $r);
        $crate::endpoints!(@acc [$($acc)* $t => $r;] $($rest)*);
    };
    (
        @acc [$($acc:tt)*]
        $(#[$meta:meta])*
        $kind:ident fn $name:ident($arg:ident: $t:ty) -> $r:ty $body:block
        $($rest:tt)*
    ) => {
        $(#[$meta])*
        #[ic_cdk::$kind(decode_with = "flotilla_glue::decode", encode_with = "flotilla_glue::encode", hidden = true)]
        fn $name($arg: $t) -> $r $body
        $crate::declare!($(#[$meta])* $kind $name($t) -> $r);
        $crate::endpoints!(@acc [$($acc)* $t => $r;] $($rest)*);
    };
    ($($items:tt)*) => {
        $crate::endpoints!(@acc [] $($items)*);
    };
}

/// The `export_candid!` declaration of one endpoint of [`endpoints!`].
#[macro_export]
macro_rules! declare {
    ($(#[$meta:meta])* $kind:ident $name:ident($t:ty) -> $r:ty) => {
        mod $name {
            #[allow(unused_imports)]
            use super::*;
            $(#[$meta])*
            #[candid::candid_method($kind)]
            #[allow(dead_code)]
            fn $name(_: $t) -> $r {
                unreachable!("a declaration for export_candid! only")
            }
        }
    };
}
