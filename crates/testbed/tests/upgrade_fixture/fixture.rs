//! The fixture file: its format, how stable memory is stored in it, where it lives.

use candid::{CandidType, Deserialize, Principal};
use flotilla_types::index::CreateRequest;
use flotilla_types::partition::{BatchArgs, DeleteArgs, PutArgs};
use flotilla_types::{BatchOutcome, InnerKey, PutOutcome};
use serde_bytes::ByteBuf;
use std::io::{Read, Write as _};
use std::path::{Path, PathBuf};

/// Bumped when the fixture file's own format changes (not the canisters' layouts).
pub(crate) const FIXTURE_FORMAT: u32 = 1;
/// Stable memory is stored as runs of non-zero pages of this many bytes.
pub(crate) const PAGE: usize = 4096;

#[derive(CandidType, Deserialize, Clone, Debug, PartialEq, Eq)]
pub(crate) struct Layouts {
    pub index: u16,
    pub store: u16,
    pub partition: u16,
}

#[derive(CandidType, Deserialize, Clone, Debug)]
pub(crate) struct Fixture {
    pub format: u32,
    pub layouts: Layouts,
    /// SHA-256 (hex) of the index and partition `.wasm.gz` that wrote it.
    pub index_wasm_sha256: String,
    pub partition_wasm_sha256: String,
    pub admin: Principal,
    pub index: Principal,
    /// The module the index holds as its partition wasm (the testbed installed the real
    /// partition wasm in its place, so the index's memory stays small).
    pub stand_in_module: ByteBuf,
    pub canisters: Vec<Image>,
    pub routing_version: u64,
    pub subdbs: Vec<SubDbRecord>,
    /// Outer keys deleted through the index.
    pub deleted: Vec<String>,
    pub creates: Vec<CreateRecord>,
    pub writes: Vec<WriteRecord>,
}

/// One canister's stable memory: its size and the runs of pages that are not all zeros.
#[derive(CandidType, Deserialize, Clone, Debug)]
pub(crate) struct Image {
    pub id: Principal,
    pub controllers: Vec<Principal>,
    /// `index` or `partition`.
    pub kind: String,
    pub stable_bytes: u64,
    pub runs: Vec<MemRun>,
}

#[derive(CandidType, Deserialize, Clone, Debug)]
pub(crate) struct MemRun {
    pub offset: u64,
    pub bytes: ByteBuf,
}

#[derive(CandidType, Deserialize, Clone, Debug)]
pub(crate) struct SubDbRecord {
    pub outer_key: String,
    pub owner: Principal,
    pub readers: Vec<Principal>,
    pub writers: Vec<Principal>,
    pub hard_cap: Option<u64>,
    pub at: InnerKey,
    /// Where it lived before it moved (that partition keeps a tombstone).
    pub moved_from: Option<InnerKey>,
    pub items: Vec<(ByteBuf, ByteBuf)>,
}

#[derive(CandidType, Deserialize, Clone, Debug)]
pub(crate) struct CreateRecord {
    pub caller: Principal,
    pub request: CreateRequest,
    pub answer: InnerKey,
}

#[derive(CandidType, Deserialize, Clone, Debug)]
pub(crate) enum Write {
    Put(PutArgs, PutOutcome),
    Delete(DeleteArgs, bool),
    Batch(BatchArgs, BatchOutcome),
}

/// A write as sent (to the SubDB's home then) and its first answer.
#[derive(CandidType, Deserialize, Clone, Debug)]
pub(crate) struct WriteRecord {
    pub caller: Principal,
    pub outer_key: String,
    pub write: Write,
}

pub(crate) fn layouts() -> Layouts {
    Layouts {
        index: flotilla_index::records::LAYOUT_VERSION,
        store: flotilla_store::layout::LAYOUT_VERSION,
        partition: flotilla_partition::layout::LAYOUT_VERSION,
    }
}

pub(crate) fn fixtures_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("fixtures")
}

pub(crate) fn fixture_path(l: &Layouts) -> PathBuf {
    fixtures_dir().join(format!(
        "deployment-index{}-store{}-partition{}.bin.gz",
        l.index, l.store, l.partition
    ))
}

pub(crate) fn write_fixture(path: &Path, f: &Fixture) -> usize {
    let bytes = candid::encode_one(f).expect("encode the fixture");
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
    gz.write_all(&bytes).expect("gzip");
    let gz = gz.finish().expect("gzip");
    std::fs::create_dir_all(path.parent().expect("a directory")).expect("fixtures directory");
    std::fs::write(path, &gz).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    gz.len()
}

pub(crate) fn read_fixture(path: &Path) -> Fixture {
    let gz = std::fs::read(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let mut bytes = Vec::new();
    flate2::read::GzDecoder::new(&gz[..])
        .read_to_end(&mut bytes)
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let f: Fixture = candid::decode_one(&bytes)
        .unwrap_or_else(|e| panic!("{}: not a fixture: {e}", path.display()));
    assert_eq!(f.format, FIXTURE_FORMAT, "{}", path.display());
    f
}

/// The non-zero pages of `stable`, as runs.
pub(crate) fn compact(stable: &[u8]) -> Vec<MemRun> {
    let mut runs: Vec<MemRun> = Vec::new();
    for (i, page) in stable.chunks(PAGE).enumerate() {
        if page.iter().all(|b| *b == 0) {
            continue;
        }
        let offset = (i * PAGE) as u64;
        match runs.last_mut() {
            Some(r) if r.offset + r.bytes.len() as u64 == offset => r.bytes.extend_from_slice(page),
            _ => runs.push(MemRun {
                offset,
                bytes: ByteBuf::from(page.to_vec()),
            }),
        }
    }
    runs
}

pub(crate) fn expand(image: &Image) -> Vec<u8> {
    let mut stable = vec![0u8; image.stable_bytes as usize];
    for r in &image.runs {
        let at = r.offset as usize;
        stable[at..at + r.bytes.len()].copy_from_slice(&r.bytes);
    }
    stable
}
