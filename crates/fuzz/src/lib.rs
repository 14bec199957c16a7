//! Fuzzing a canister's decode-and-dispatch, shared by the index's and the partition's tests
//! (`tests_fuzz.rs` in each): the inputs (arbitrary bytes, valid arguments mutated byte-wise,
//! valid arguments with values tweaked to boundary and arbitrary ones), the cases and their
//! strategies, reading a reply against the method's declared type, and the runner with its
//! seed and case count from `FLOTILLA_FUZZ_SEED` and `FLOTILLA_FUZZ_CASES`.

use candid::types::internal::TypeContainer;
use candid::types::value::{IDLValue, VariantValue};
use candid::types::Type;
use candid::{IDLArgs, Principal, TypeEnv};
use flotilla_types::dispatch::{MethodKind, MethodSig};
use proptest::prelude::*;
use proptest::sample::Index as Pick;
use proptest::test_runner::{Config as PtConfig, RngSeed, TestCaseError, TestRunner};
use std::cell::RefCell;

/// The principals a tweaked principal may become (besides arbitrary ones): the fuzzed
/// canister's callers, and one it treats specially (a partition's index, an index's partition).
pub struct Known<'a> {
    pub callers: &'a [Principal],
    pub target: Principal,
}

/// Cases per test when `FLOTILLA_FUZZ_CASES` is not set: each test stays well under 20 s in
/// the dev profile.
pub const DEFAULT_CASES: u32 = 20_000;

/// One change to a valid argument. Positions pick within the current length.
#[derive(Clone, Debug)]
pub enum Mutation {
    FlipBit(Pick, u8),
    SetByte(Pick, u8),
    Truncate(Pick),
    Insert(Pick, Vec<u8>),
    Remove(Pick, u8),
    /// A LEB128 number written over the bytes at a position (or inserted there): a length
    /// prefix, a vector count or a type index gone huge.
    Leb(Pick, u64, bool),
}

pub fn leb128(mut n: u64) -> Vec<u8> {
    let mut out = vec![];
    loop {
        let byte = (n & 0x7f) as u8;
        n >>= 7;
        if n == 0 {
            out.push(byte);
            return out;
        }
        out.push(byte | 0x80);
    }
}

pub fn apply(bytes: &mut Vec<u8>, m: &Mutation) {
    let at = |p: &Pick, len: usize| if len == 0 { 0 } else { p.index(len) };
    match m {
        Mutation::FlipBit(p, bit) if !bytes.is_empty() => {
            let i = at(p, bytes.len());
            bytes[i] ^= 1 << (bit % 8);
        }
        Mutation::SetByte(p, v) if !bytes.is_empty() => {
            let i = at(p, bytes.len());
            bytes[i] = *v;
        }
        Mutation::Truncate(p) => {
            let i = at(p, bytes.len());
            bytes.truncate(i);
        }
        Mutation::Insert(p, ins) => {
            let i = at(p, bytes.len() + 1);
            bytes.splice(i..i, ins.iter().copied());
        }
        Mutation::Remove(p, n) if !bytes.is_empty() => {
            let i = at(p, bytes.len());
            let end = (i + *n as usize).min(bytes.len());
            bytes.drain(i..end);
        }
        Mutation::Leb(p, n, overwrite) => {
            let enc = leb128(*n);
            let i = at(p, bytes.len() + 1);
            if *overwrite {
                let end = (i + enc.len()).min(bytes.len());
                bytes.splice(i..end, enc);
            } else {
                bytes.splice(i..i, enc);
            }
        }
        _ => {}
    }
}

pub fn mutation() -> impl Strategy<Value = Mutation> {
    let huge = prop_oneof![
        Just(u64::MAX),
        Just(u32::MAX as u64),
        Just(1u64 << 31),
        Just(1u64 << 40),
        Just(10_000_000),
        Just(2 * 1024 * 1024),
        0u64..300,
        any::<u64>(),
    ];
    prop_oneof![
        3 => (any::<Pick>(), any::<u8>()).prop_map(|(p, b)| Mutation::FlipBit(p, b)),
        2 => (any::<Pick>(), prop_oneof![Just(0u8), Just(0x7f), Just(0x80), Just(0xff), any::<u8>()])
            .prop_map(|(p, v)| Mutation::SetByte(p, v)),
        1 => any::<Pick>().prop_map(Mutation::Truncate),
        2 => (any::<Pick>(), prop::collection::vec(any::<u8>(), 1..12))
            .prop_map(|(p, v)| Mutation::Insert(p, v)),
        1 => (any::<Pick>(), 1u8..16).prop_map(|(p, n)| Mutation::Remove(p, n)),
        2 => (any::<Pick>(), huge, any::<bool>()).prop_map(|(p, n, o)| Mutation::Leb(p, n, o)),
    ]
}

/// What one fuzz case sends.
#[derive(Clone, Debug)]
pub enum Input {
    /// Any bytes at all.
    Bytes(Vec<u8>),
    /// The Candid magic, then any bytes (past the first check of the decoder).
    Didl(Vec<u8>),
    /// A valid argument (sample `.0` of the method), then mutations of its bytes.
    Mutated(Pick, Vec<Mutation>),
    /// A valid argument (sample `.0` of the method) with some of its values changed, encoded
    /// again with the method's types: it decodes, and reaches the logic with odd values.
    Typed(Pick, Vec<Tweak>),
}

/// A change to one value of a decoded argument: the `.0`-th changeable value (in pre-order)
/// becomes a boundary or arbitrary value of its type, chosen by `.1` (and `.2` for bytes).
#[derive(Clone, Debug)]
pub struct Tweak(pub Pick, pub u64, pub Vec<u8>);

/// Lengths that sit on a limit: op ids (16..=32), keys (1 KiB), outer keys (256), values
/// (1 MiB), principals (29).
pub const EDGE_LENGTHS: [usize; 12] = [0, 1, 15, 16, 29, 30, 32, 33, 256, 257, 1024, 1025];

pub fn changeable(v: &IDLValue) -> bool {
    !matches!(
        v,
        IDLValue::Record(_) | IDLValue::Variant(_) | IDLValue::Null | IDLValue::Reserved
    )
}

/// Visits the values of `v` in pre-order; applies `t` to the `n`-th changeable one.
pub fn tweak_nth(v: &mut IDLValue, n: &mut usize, t: &Tweak, known: &Known) -> bool {
    if changeable(v) {
        if *n == 0 {
            tweak(v, t, known);
            return true;
        }
        *n -= 1;
    }
    match v {
        IDLValue::Opt(inner) => tweak_nth(inner, n, t, known),
        IDLValue::Vec(items) => items.iter_mut().any(|i| tweak_nth(i, n, t, known)),
        IDLValue::Record(fields) => fields
            .iter_mut()
            .any(|f| tweak_nth(&mut f.val, n, t, known)),
        IDLValue::Variant(VariantValue(f, _)) => tweak_nth(&mut f.val, n, t, known),
        _ => false,
    }
}

pub fn count_changeable(v: &IDLValue) -> usize {
    let own = changeable(v) as usize;
    own + match v {
        IDLValue::Opt(inner) => count_changeable(inner),
        IDLValue::Vec(items) => items.iter().map(count_changeable).sum(),
        IDLValue::Record(fields) => fields.iter().map(|f| count_changeable(&f.val)).sum(),
        IDLValue::Variant(VariantValue(f, _)) => count_changeable(&f.val),
        _ => 0,
    }
}

/// Roughly the encoded size of a value: its bytes, text and principals, and 8 per other value.
pub fn approx_bytes(v: &IDLValue) -> usize {
    match v {
        IDLValue::Blob(b) => b.len(),
        IDLValue::Text(t) => t.len(),
        IDLValue::Opt(inner) => 1 + approx_bytes(inner),
        IDLValue::Vec(items) => items.iter().map(approx_bytes).sum(),
        IDLValue::Record(fields) => fields.iter().map(|f| approx_bytes(&f.val)).sum(),
        IDLValue::Variant(VariantValue(f, _)) => 1 + approx_bytes(&f.val),
        IDLValue::Principal(p) => p.as_slice().len(),
        _ => 8,
    }
}

pub fn tweak(v: &mut IDLValue, Tweak(_, r, bytes): &Tweak, known: &Known) {
    let r = *r;
    let pick = |n: u64| (r % n) as usize;
    let sized = |len: usize| bytes.iter().copied().cycle().take(len).collect::<Vec<u8>>();
    let some_bytes = || match pick(4) {
        0 => bytes.clone(),
        1 if r % 64 == 1 => vec![0xEE; flotilla_types::limits::MAX_VALUE_BYTES + 1],
        _ => {
            let len = EDGE_LENGTHS[(r >> 8) as usize % EDGE_LENGTHS.len()];
            if bytes.is_empty() {
                vec![0; len]
            } else {
                sized(len)
            }
        }
    };
    let num = |max: u64| match pick(6) {
        0 => 0,
        1 => 1,
        2 => max,
        3 => max - 1,
        4 => r % 1000,
        _ => (r >> 3) & max,
    };
    match v {
        IDLValue::Bool(b) => *b = !*b,
        IDLValue::Nat8(x) => *x = num(u8::MAX as u64) as u8,
        IDLValue::Nat16(x) => *x = num(u16::MAX as u64) as u16,
        IDLValue::Nat32(x) => *x = num(u32::MAX as u64) as u32,
        IDLValue::Nat64(x) => *x = num(u64::MAX),
        IDLValue::Nat(x) => *x = candid::Nat::from(num(u64::MAX)),
        IDLValue::Int32(x) => *x = num(u32::MAX as u64) as i32,
        IDLValue::Int64(x) => *x = num(u64::MAX) as i64,
        IDLValue::Blob(b) => *b = some_bytes(),
        IDLValue::Text(t) => *t = String::from_utf8_lossy(&some_bytes()).into_owned(),
        IDLValue::Principal(p) => {
            *p = match pick(3) {
                0 => known.callers[(r >> 2) as usize % known.callers.len()],
                1 => known.target,
                _ => Principal::from_slice(&bytes[..bytes.len().min(29)]),
            }
        }
        IDLValue::Opt(_) => *v = IDLValue::None,
        IDLValue::Vec(items)
            if !items.is_empty() && items.iter().all(|i| matches!(i, IDLValue::Nat8(_))) =>
        {
            *items = some_bytes().into_iter().map(IDLValue::Nat8).collect()
        }
        IDLValue::Vec(items) => match pick(3) {
            0 => items.truncate((r >> 2) as usize % (items.len() + 1)),
            1 => items.reverse(),
            _ if !items.is_empty() => {
                // Up to past the largest counts (10,000 batch ops, 1,000 get_many keys).
                // The argument stays under 4 MiB (twice the IC's message limit).
                let n = [2, 101, 1_001, 10_001][(r >> 2) as usize % 4];
                let first = items[0].clone();
                let n = n
                    .min((4 << 20) / (approx_bytes(&first) + 1))
                    .max(items.len());
                items.resize(n, first);
            }
            _ => {}
        },
        _ => {}
    }
}

#[derive(Clone, Debug)]
pub struct Case {
    /// A method of the dispatcher, or past its end, an unknown name.
    pub method: Pick,
    pub caller: Pick,
    pub input: Input,
}

pub fn arbitrary_case() -> impl Strategy<Value = Case> {
    let input = prop_oneof![
        prop::collection::vec(any::<u8>(), 0..64).prop_map(Input::Bytes),
        prop::collection::vec(any::<u8>(), 0..2048).prop_map(Input::Bytes),
        prop::collection::vec(any::<u8>(), 0..256).prop_map(Input::Didl),
    ];
    (any::<Pick>(), any::<Pick>(), input).prop_map(|(method, caller, input)| Case {
        method,
        caller,
        input,
    })
}

pub fn typed_case() -> impl Strategy<Value = Case> {
    let tweak = (
        any::<Pick>(),
        any::<u64>(),
        prop::collection::vec(any::<u8>(), 0..40),
    )
        .prop_map(|(p, r, b)| Tweak(p, r, b));
    let input =
        (any::<Pick>(), prop::collection::vec(tweak, 0..4)).prop_map(|(s, t)| Input::Typed(s, t));
    (any::<Pick>(), any::<Pick>(), input).prop_map(|(method, caller, input)| Case {
        method,
        caller,
        input,
    })
}

pub fn mutated_case() -> impl Strategy<Value = Case> {
    // Few mutations keep most arguments decodable, reaching the logic with odd values; many
    // reach the decoder's corners.
    let mutations = prop_oneof![
        1 => Just(vec![]),
        4 => prop::collection::vec(mutation(), 1..3),
        2 => prop::collection::vec(mutation(), 3..10),
    ];
    let input = (any::<Pick>(), mutations).prop_map(|(s, m)| Input::Mutated(s, m));
    (any::<Pick>(), any::<Pick>(), input).prop_map(|(method, caller, input)| Case {
        method,
        caller,
        input,
    })
}

/// The method's declared types, to decode samples and check every reply against.
pub struct Sig {
    pub sig: MethodSig,
    pub env: TypeEnv,
    pub args: Vec<Type>,
    pub rets: Vec<Type>,
    pub samples: Vec<Vec<u8>>,
}

impl Sig {
    /// The declared types of `sig`, with valid arguments to mutate and tweak.
    pub fn new(sig: MethodSig, samples: Vec<Vec<u8>>) -> Sig {
        let mut c = TypeContainer::new();
        let args = sig.args.iter().map(|t| t(&mut c)).collect();
        let rets = sig.rets.iter().map(|t| t(&mut c)).collect();
        Sig {
            env: c.env,
            args,
            rets,
            samples,
            sig,
        }
    }
}

/// The argument bytes a case sends to method `method` of `sigs` (`None`: an unknown name,
/// whose mutated or tweaked input starts from the first method's samples).
pub fn bytes_of(sigs: &[Sig], method: Option<usize>, input: &Input, known: &Known) -> Vec<u8> {
    match input {
        Input::Bytes(v) => v.clone(),
        Input::Didl(v) => [b"DIDL".as_slice(), v].concat(),
        Input::Mutated(s, muts) => {
            let samples = &sigs[method.unwrap_or(0)].samples;
            let mut bytes = samples[s.index(samples.len())].clone();
            for m in muts {
                apply(&mut bytes, m);
            }
            bytes
        }
        Input::Typed(s, tweaks) => {
            let sig = &sigs[method.unwrap_or(0)];
            let bytes = &sig.samples[s.index(sig.samples.len())];
            let mut args = IDLArgs::from_bytes_with_types(bytes, &sig.env, &sig.args)
                .expect("samples decode")
                .args;
            for t in tweaks {
                let total: usize = args.iter().map(count_changeable).sum();
                if total == 0 {
                    break;
                }
                let mut n = t.0.index(total);
                args.iter_mut().any(|a| tweak_nth(a, &mut n, t, known));
            }
            IDLArgs::new(&args)
                .to_bytes_with_types(&sig.env, &sig.args)
                .expect("a tweaked argument keeps its types")
        }
    }
}

/// Whether `reply` is an `Ok` (else an `Err`) of the method's declared reply type, or a plain
/// value of it (the queries `routes`, `stats`, `list_moves`); an error if it is not of that
/// type at all.
pub fn reply_is_ok(sig: &Sig, reply: &[u8]) -> Result<bool, String> {
    let v =
        IDLArgs::from_bytes_with_types(reply, &sig.env, &sig.rets).map_err(|e| e.to_string())?;
    match &v.args[..] {
        [IDLValue::Variant(VariantValue(f, _))] if f.id.get_id() == candid::idl_hash("Ok") => {
            Ok(true)
        }
        [IDLValue::Variant(VariantValue(f, _))] if f.id.get_id() == candid::idl_hash("Err") => {
            Ok(false)
        }
        [_] if sig.sig.kind == MethodKind::Query => Ok(true),
        other => Err(format!("not a result: {other:?}")),
    }
}

/// The label id of an `Err` reply's error variant.
pub fn err_variant(sig: &Sig, reply: &[u8]) -> Option<u32> {
    let v = IDLArgs::from_bytes_with_types(reply, &sig.env, &sig.rets).ok()?;
    match &v.args[..] {
        [IDLValue::Variant(VariantValue(f, _))] if f.id.get_id() == candid::idl_hash("Err") => {
            match &f.val {
                IDLValue::Variant(VariantValue(e, _)) => Some(e.id.get_id()),
                _ => None,
            }
        }
        _ => None,
    }
}

pub fn hex(b: &[u8]) -> String {
    const SHOWN: usize = 256;
    let mut s: String = b.iter().take(SHOWN).map(|x| format!("{x:02x}")).collect();
    if b.len() > SHOWN {
        s.push_str("..");
    }
    s
}

/// The case count and seed of a fuzz test, from `FLOTILLA_FUZZ_CASES` and `FLOTILLA_FUZZ_SEED`.
pub fn config() -> (u32, u64) {
    let var = |name| std::env::var(name).ok().and_then(|v| v.parse().ok());
    let cases = var("FLOTILLA_FUZZ_CASES").map_or(DEFAULT_CASES, |c: u64| c as u32);
    let seed = var("FLOTILLA_FUZZ_SEED").unwrap_or_else(|| {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_nanos() as u64
    });
    (cases, seed)
}

/// A fuzzed canister: runs one case, and counts what the cases got.
pub trait Fuzzed {
    fn run(&mut self, case: &Case) -> Result<(), TestCaseError>;
    /// Cases that got a typed `Ok`, an `Err` reply, a `DispatchError`, an inspection refusal.
    fn tally(&self) -> [u64; 4];
}

/// Runs `strategy`'s cases against `world`; a failure names the seed and how to rerun test
/// `test` of package `package`.
pub fn fuzz<W: Fuzzed>(test: &str, package: &str, world: W, strategy: impl Strategy<Value = Case>) {
    let (cases, seed) = config();
    let mut runner = TestRunner::new(PtConfig {
        cases,
        rng_seed: RngSeed::Fixed(seed),
        failure_persistence: None,
        ..PtConfig::default()
    });
    let world = RefCell::new(world);
    let start = std::time::Instant::now();
    let result = runner.run(&strategy, |case| world.borrow_mut().run(&case));
    if let Err(e) = result {
        panic!(
            "{test}: seed={seed} (rerun with FLOTILLA_FUZZ_SEED={seed} and \
             FLOTILLA_FUZZ_CASES={cases}: cargo test -p {package} --lib {test}): {e}"
        );
    }
    let secs = start.elapsed().as_secs_f64();
    let [ok, err, bad, refused] = world.borrow().tally();
    println!(
        "{test}: {cases} cases in {secs:.1} s ({:.0}/s), seed={seed}: {ok} Ok, {err} Err, \
         {bad} DispatchError; {refused} refused at inspection",
        cases as f64 / secs
    );
}
