//! What the index's and the partition's ic-cdk glue share: [`endpoints!`] exports each
//! endpoint with ic-cdk, its argument decoded by [`decode`] under the dispatcher's Candid
//! decoding and skipping quotas, and declares it to `export_candid!` with its Candid types.

/// Decodes an endpoint's argument exactly as the dispatcher does, under the quotas of
/// [`flotilla_types::dispatch::decoder_config`]: an argument that does not decode, or costs
/// more than the quotas, is a reject (a trap before anything ran).
pub fn decode<T: candid::CandidType + for<'de> candid::Deserialize<'de>>(bytes: Vec<u8>) -> T {
    match flotilla_types::dispatch::decode_args::<(T,)>("the endpoint", &bytes) {
        Ok((arg,)) => arg,
        Err(e) => ic_cdk::trap(e.to_string()),
    }
}

/// Exports each endpoint with ic-cdk, its argument decoded by [`decode`] (the dispatcher's
/// quotas), and declares it to `export_candid!` with its Candid types. ic-cdk declares an
/// endpoint that has its own decoder as taking a blob, so the endpoint is hidden from
/// `export_candid!` and a stub with the same signature declares it instead.
#[macro_export]
macro_rules! endpoints {
    () => {};
    (
        $(#[$meta:meta])*
        $kind:ident async fn $name:ident($arg:ident: $t:ty) -> $r:ty $body:block
        $($rest:tt)*
    ) => {
        $(#[$meta])*
        #[ic_cdk::$kind(decode_with = "flotilla_glue::decode", hidden = true)]
        async fn $name($arg: $t) -> $r $body
        $crate::declare!($(#[$meta])* $kind $name($t) -> $r);
        $crate::endpoints!($($rest)*);
    };
    (
        $(#[$meta:meta])*
        $kind:ident fn $name:ident($arg:ident: $t:ty) -> $r:ty $body:block
        $($rest:tt)*
    ) => {
        $(#[$meta])*
        #[ic_cdk::$kind(decode_with = "flotilla_glue::decode", hidden = true)]
        fn $name($arg: $t) -> $r $body
        $crate::declare!($(#[$meta])* $kind $name($t) -> $r);
        $crate::endpoints!($($rest)*);
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
