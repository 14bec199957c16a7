//! Instructions per operation on real wasm: the partition canister beside the bare-map
//! baseline (`canisters/bench-map`), measured in one testbed run. The figure of an operation
//! is everything its message executes — Candid decoding and encoding, ic-cdk, the logic,
//! stable memory — as the IC would count it against the instruction limit (see
//! `docs/testbed.md` for how the testbed counts).

use crate::{ApiStats, Config, InstallMode, Testbed};
use candid::{CandidType, Principal};
use flotilla_types::limits::REPLY_BUDGET_BYTES;
use flotilla_types::partition::{
    Access, BeginExportArgs, BeginImportArgs, CreateLocalArgs, DeleteArgs, ExportArgs, ExportReply,
    GetArgs, ImportChunkArgs, PartitionInit, PutArgs, ScanRequest,
};
use flotilla_types::{OpId, ScanArgs};
use serde_bytes::ByteBuf;

/// Knobs of a run.
#[derive(Clone, Debug)]
pub struct BenchConfig {
    pub items: usize,
    pub key_bytes: usize,
    pub value_bytes: usize,
    /// Messages measured per operation (the figure is their mean).
    pub samples: usize,
    /// Export chunks measured (each followed by its import).
    pub chunks: usize,
}

impl Default for BenchConfig {
    fn default() -> Self {
        BenchConfig {
            items: 100_000,
            key_bytes: 24,
            value_bytes: 100,
            samples: 200,
            chunks: 3,
        }
    }
}

/// One line of the table: mean instructions per message, partition and bare map.
#[derive(Clone, Debug)]
pub struct Row {
    pub op: &'static str,
    pub partition: Option<Figure>,
    pub bare: Option<Figure>,
    /// The target ratio partition / bare, where one is set.
    pub target: Option<f64>,
    pub note: &'static str,
}

impl Row {
    pub fn ratio(&self) -> Option<f64> {
        Some(self.partition?.instructions / self.bare?.instructions)
    }

    pub fn met(&self) -> Option<bool> {
        Some(self.ratio()? <= self.target?)
    }
}

/// The figures of a run.
#[derive(Clone, Debug)]
pub struct Table {
    pub config: BenchConfig,
    pub rows: Vec<Row>,
    /// Items in one full export chunk.
    pub chunk_items: f64,
    pub chunk_bytes: f64,
    pub partition_stable_bytes: u64,
    pub bare_stable_bytes: u64,
}

impl Table {
    /// The table as Markdown.
    pub fn markdown(&self) -> String {
        let mut s = String::from(
            "| Operation | partition | bare map | ratio | target | met |\n|---|---:|---:|---:|---:|---|\n",
        );
        let f =
            |v: Option<Figure>| v.map_or("—".to_string(), |v| format!("{:.0}", v.instructions));
        for r in &self.rows {
            s.push_str(&format!(
                "| {} | {} | {} | {} | {} | {} |\n",
                r.op,
                f(r.partition),
                f(r.bare),
                r.ratio().map_or("—".into(), |x| format!("{x:.2}")),
                r.target.map_or("—".into(), |x| format!("≤ {x:.1}")),
                match r.met() {
                    Some(true) => "yes".to_string(),
                    Some(false) => "**no**".to_string(),
                    None => r.note.to_string(),
                }
            ));
        }
        s
    }

    /// The System API profile per operation, as Markdown.
    pub fn profile_markdown(&self) -> String {
        let mut s = String::from(
            "| Operation | side | System API calls | their instructions | stable reads (bytes) | stable writes (bytes) |\n|---|---|---:|---:|---:|---:|\n",
        );
        for r in &self.rows {
            for (side, fig) in [("partition", r.partition), ("bare map", r.bare)] {
                if let Some(x) = fig {
                    s.push_str(&format!(
                        "| {} | {} | {:.0} | {:.0} | {:.0} ({:.0}) | {:.0} ({:.0}) |\n",
                        r.op,
                        side,
                        x.api_calls,
                        x.api_instructions,
                        x.stable_reads,
                        x.stable_read_bytes,
                        x.stable_writes,
                        x.stable_write_bytes
                    ));
                }
            }
        }
        s
    }
}

fn enc<A: CandidType>(a: A) -> Vec<u8> {
    candid::encode_one(a).expect("encode")
}

/// splitmix64
fn mix(mut z: u64) -> u64 {
    z = z.wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

fn bytes(seed: u64, len: usize) -> Vec<u8> {
    let mut out = Vec::with_capacity(len + 8);
    let mut i = 0;
    while out.len() < len {
        out.extend_from_slice(&mix(seed.wrapping_mul(31).wrapping_add(i)).to_be_bytes());
        i += 1;
    }
    out.truncate(len);
    out
}

fn op_id(n: u64) -> OpId {
    let mut b = n.to_be_bytes().to_vec();
    b.extend_from_slice(&mix(n).to_be_bytes());
    OpId(ByteBuf::from(b))
}

struct Bed {
    tb: Testbed,
    subdb: u32,
    ops: u64,
}

impl Bed {
    fn update(&mut self, who: Principal, c: Principal, m: &str, arg: Vec<u8>) -> (Vec<u8>, Sample) {
        let r = self
            .tb
            .update(who, c, m, arg)
            .unwrap_or_else(|e| panic!("{m}: {e}"));
        (r, self.tb.last_update_cost())
    }

    fn query(&mut self, who: Principal, c: Principal, m: &str, arg: Vec<u8>) -> (Vec<u8>, Sample) {
        let r = self
            .tb
            .query(who, c, m, arg)
            .unwrap_or_else(|e| panic!("{m}: {e}"));
        (r, (self.tb.last_instructions(c), self.tb.last_api_stats(c)))
    }

    fn next_op(&mut self) -> OpId {
        self.ops += 1;
        op_id(self.ops)
    }

    fn part_put(&mut self, k: Vec<u8>, v: Vec<u8>) -> Vec<u8> {
        let args = PutArgs {
            subdb: self.subdb,
            key: ByteBuf::from(k),
            value: ByteBuf::from(v),
            op_id: self.next_op(),
        };
        enc(args)
    }
}

/// Instructions of one message and its System API profile.
type Sample = (u64, ApiStats);

/// Mean figures over samples.
#[derive(Clone, Copy, Debug, Default)]
pub struct Figure {
    pub instructions: f64,
    pub api_calls: f64,
    pub api_instructions: f64,
    pub stable_reads: f64,
    pub stable_read_bytes: f64,
    pub stable_writes: f64,
    pub stable_write_bytes: f64,
}

fn mean(v: &[Sample]) -> Figure {
    let n = v.len() as f64;
    let f = |g: &dyn Fn(&Sample) -> u64| v.iter().map(g).sum::<u64>() as f64 / n;
    Figure {
        instructions: f(&|s| s.0),
        api_calls: f(&|s| s.1.calls),
        api_instructions: f(&|s| s.1.instructions),
        stable_reads: f(&|s| s.1.stable_reads),
        stable_read_bytes: f(&|s| s.1.stable_read_bytes),
        stable_writes: f(&|s| s.1.stable_writes),
        stable_write_bytes: f(&|s| s.1.stable_write_bytes),
    }
}

/// Installs both canisters and preloads `cfg.items` items into each.
fn setup(
    partition_wasm: &[u8],
    bare_wasm: &[u8],
    cfg: &BenchConfig,
    progress: bool,
) -> (Bed, Principal, Principal, Principal, Principal) {
    let index = Principal::from_slice(&[0x1d; 29]);
    let user = Principal::from_slice(&[0x0e; 29]);
    let mut tb = Testbed::new(Config::default());
    let part = tb.create_canister(vec![index], 1 << 60);
    tb.install(
        index,
        part,
        InstallMode::Install,
        false,
        partition_wasm,
        enc(PartitionInit { index }),
    )
    .unwrap_or_else(|e| panic!("partition install: {e}"));
    let bare = tb.create_canister(vec![index], 1 << 60);
    tb.install(
        index,
        bare,
        InstallMode::Install,
        false,
        bare_wasm,
        candid::encode_args(()).expect("()"),
    )
    .unwrap_or_else(|e| panic!("bare-map install: {e}"));
    let mut b = Bed {
        tb,
        subdb: 0,
        ops: 0,
    };
    let create = CreateLocalArgs {
        access: Access {
            owner: user,
            readers: vec![],
            writers: vec![],
        },
        op_id: op_id(u64::MAX),
        hard_cap: None,
        max_bytes: None,
    };
    let (r, _) = b.update(index, part, "create_subdb_local", enc(create));
    let r: Result<u32, flotilla_types::CreateSubDbError> = candid::decode_one(&r).expect("decode");
    b.subdb = r.expect("create_subdb_local");

    // ---- preload, in rounds of many messages ------------------------------------------
    let key = |i: usize| bytes(i as u64, cfg.key_bytes);
    let val = |i: usize| bytes(1_000_000_000 + i as u64, cfg.value_bytes);
    const BATCH: usize = 1000;
    let mut i = 0;
    while i < cfg.items {
        let end = (i + BATCH).min(cfg.items);
        let mut ids = Vec::new();
        for j in i..end {
            let pa = b.part_put(key(j), val(j));
            ids.push(b.tb.submit(user, part, "put", pa).expect("submit"));
            let ba =
                candid::encode_args((ByteBuf::from(key(j)), ByteBuf::from(val(j)))).expect("enc");
            ids.push(b.tb.submit(user, bare, "put", ba).expect("submit"));
        }
        b.tb.tick();
        for id in ids {
            b.tb.await_ingress(id)
                .unwrap_or_else(|e| panic!("preload put: {e}"));
        }
        i = end;
        if progress && i % 10_000 == 0 {
            eprintln!("preloaded {i} items");
        }
    }

    (b, index, user, part, bare)
}

/// Runs the benchmark. `partition_wasm` and `bare_wasm` may be gzipped.
pub fn run(partition_wasm: &[u8], bare_wasm: &[u8], cfg: BenchConfig, progress: bool) -> Table {
    let (mut b, index, user, part, bare) = setup(partition_wasm, bare_wasm, &cfg, progress);
    let key = |i: usize| bytes(i as u64, cfg.key_bytes);
    let val = |i: usize| bytes(1_000_000_000 + i as u64, cfg.value_bytes);
    let n = cfg.samples;
    let mut rows = Vec::new();
    // The cost of any message: a query that does nothing but answer.
    let mut empty = Vec::new();
    for _ in 0..n {
        empty.push(
            b.query(user, bare, "len", candid::encode_args(()).expect("()"))
                .1,
        );
    }
    // get
    let (mut pg, mut bg) = (Vec::new(), Vec::new());
    for s in 0..n {
        let k = key(mix(s as u64) as usize % cfg.items);
        let g = GetArgs {
            subdb: b.subdb,
            key: ByteBuf::from(k.clone()),
        };
        let (r, ins) = b.query(user, part, "get", enc(g));
        let r: Result<Option<ByteBuf>, flotilla_types::GetError> =
            candid::decode_one(&r).expect("dec");
        assert!(matches!(r, Ok(Some(_))), "partition get");
        pg.push(ins);
        let (r, ins) = b.query(user, bare, "get", enc(ByteBuf::from(k)));
        let r: Option<ByteBuf> = candid::decode_one(&r).expect("dec");
        assert!(r.is_some(), "bare get");
        bg.push(ins);
    }
    // put (fresh keys)
    let (mut pp, mut bp) = (Vec::new(), Vec::new());
    for s in 0..n {
        let k = bytes(5_000_000_000 + s as u64, cfg.key_bytes);
        let v = val(s);
        let pa = b.part_put(k.clone(), v.clone());
        pp.push(b.update(user, part, "put", pa).1);
        let ba = candid::encode_args((ByteBuf::from(k), ByteBuf::from(v))).expect("enc");
        bp.push(b.update(user, bare, "put", ba).1);
    }
    // put replacing an existing value
    let (mut pr, mut br) = (Vec::new(), Vec::new());
    for s in 0..n {
        let k = key(mix(7_000 + s as u64) as usize % cfg.items);
        let v = val(s + 17);
        let pa = b.part_put(k.clone(), v.clone());
        pr.push(b.update(user, part, "put", pa).1);
        let ba = candid::encode_args((ByteBuf::from(k), ByteBuf::from(v))).expect("enc");
        br.push(b.update(user, bare, "put", ba).1);
    }
    // delete (of the fresh keys)
    let (mut pd, mut bd) = (Vec::new(), Vec::new());
    for s in 0..n {
        let k = bytes(5_000_000_000 + s as u64, cfg.key_bytes);
        let da = DeleteArgs {
            subdb: b.subdb,
            key: ByteBuf::from(k.clone()),
            op_id: b.next_op(),
        };
        pd.push(b.update(user, part, "delete", enc(da)).1);
        bd.push(b.update(user, bare, "delete", enc(ByteBuf::from(k))).1);
    }
    // scan of 100 from a random existing key
    let (mut ps, mut bs) = (Vec::new(), Vec::new());
    for s in 0..n {
        let k = key(mix(9_000 + s as u64) as usize % cfg.items);
        let req = ScanRequest {
            subdb: b.subdb,
            args: ScanArgs {
                start: Some(ByteBuf::from(k.clone())),
                end: None,
                reverse: false,
                limit: Some(100),
                max_bytes: None,
                cursor: None,
            },
        };
        let (r, ins) = b.query(user, part, "scan", enc(req));
        let r: Result<flotilla_types::ScanPage, flotilla_types::ScanError> =
            candid::decode_one(&r).expect("dec");
        let page = r.expect("scan");
        ps.push(ins);
        let (r, ins) = b.query(
            user,
            bare,
            "scan",
            candid::encode_args((ByteBuf::from(k), 100u32)).expect("enc"),
        );
        let got: Vec<(ByteBuf, ByteBuf)> = candid::decode_one(&r).expect("dec");
        // Both walk the same keys (the partition stops early only at the SubDB's end).
        assert_eq!(got.len(), page.entries.len(), "scan lengths");
        bs.push(ins);
    }
    // export chunks of the whole budget, and their import into a fresh SubDB
    let (r, _) = b.update(
        index,
        part,
        "begin_export",
        enc(BeginExportArgs { subdb: b.subdb }),
    );
    let r: Result<(), flotilla_types::partition::HousekeepingError> =
        candid::decode_one(&r).expect("dec");
    r.expect("begin_export");
    let (r, _) = b.update(
        index,
        part,
        "begin_import",
        enc(BeginImportArgs {
            op_id: op_id(u64::MAX - 1),
        }),
    );
    let r: Result<u32, flotilla_types::partition::BeginImportError> =
        candid::decode_one(&r).expect("dec");
    let target = r.expect("begin_import");
    let (mut pe, mut pi) = (Vec::new(), Vec::new());
    let (mut items, mut chunk_bytes) = (0usize, 0usize);
    let mut token = None;
    for seq in 0..cfg.chunks as u64 {
        let ea = ExportArgs {
            subdb: b.subdb,
            seq,
            token: token.take(),
            budget: REPLY_BUDGET_BYTES as u64,
        };
        let (r, ins) = b.update(index, part, "export_chunk", enc(ea));
        pe.push(ins);
        chunk_bytes += r.len();
        let r: Result<ExportReply, flotilla_types::partition::HousekeepingError> =
            candid::decode_one(&r).expect("dec");
        let reply = r.expect("export_chunk");
        items += reply.chunk.puts.len();
        token = reply.next;
        let ia = ImportChunkArgs {
            subdb: target,
            chunk: reply.chunk,
            finish: false,
        };
        let (r, ins) = b.update(index, part, "import_chunk", enc(ia));
        let r: Result<(), flotilla_types::ImportError> = candid::decode_one(&r).expect("dec");
        r.expect("import_chunk");
        pi.push(ins);
        if token.is_none() {
            break;
        }
    }
    let nchunks = pe.len() as f64;
    rows.push(Row {
        op: "empty query (ic-cdk + Candid floor)",
        partition: None,
        bare: Some(mean(&empty)),
        target: None,
        note: "baseline",
    });
    rows.push(Row {
        op: "get",
        partition: Some(mean(&pg)),
        bare: Some(mean(&bg)),
        target: Some(1.2),
        note: "",
    });
    rows.push(Row {
        op: "put without op id",
        partition: None,
        bare: Some(mean(&bp)),
        target: Some(1.2),
        note: "not measurable: every partition put carries an op id",
    });
    rows.push(Row {
        op: "put with op id (fresh key) vs bare insert",
        partition: Some(mean(&pp)),
        bare: Some(mean(&bp)),
        target: Some(1.3),
        note: "",
    });
    rows.push(Row {
        op: "put with op id (replace) vs bare replace",
        partition: Some(mean(&pr)),
        bare: Some(mean(&br)),
        target: Some(1.3),
        note: "",
    });
    rows.push(Row {
        op: "delete (partition with op id)",
        partition: Some(mean(&pd)),
        bare: Some(mean(&bd)),
        target: None,
        note: "no target",
    });
    rows.push(Row {
        op: "scan of 100",
        partition: Some(mean(&ps)),
        bare: Some(mean(&bs)),
        target: Some(1.2),
        note: "",
    });
    rows.push(Row {
        op: "export chunk (1.9 MiB budget)",
        partition: Some(mean(&pe)),
        bare: None,
        target: None,
        note: "partition only",
    });
    rows.push(Row {
        op: "import of that chunk",
        partition: Some(mean(&pi)),
        bare: None,
        target: None,
        note: "partition only",
    });
    Table {
        config: cfg,
        rows,
        chunk_items: items as f64 / nchunks,
        chunk_bytes: chunk_bytes as f64 / nchunks,
        partition_stable_bytes: b.tb.stable_size(part).unwrap_or(0),
        bare_stable_bytes: b.tb.stable_size(bare).unwrap_or(0),
    }
}

/// Function profiles (see [`crate::host::Profile`]) of get, put and a 100-item scan on both
/// canisters, after preloading `cfg.items` items. Give the modules with their name section
/// (the raw `target/wasm32-unknown-unknown/canister/*.wasm`) to see function names.
pub fn profile(partition_wasm: &[u8], bare_wasm: &[u8], cfg: BenchConfig) -> Vec<OpProfile> {
    let (mut b, _index, user, part, bare) = setup(partition_wasm, bare_wasm, &cfg, false);
    let key = |i: usize| bytes(i as u64, cfg.key_bytes);
    let mut out = Vec::new();
    let n = cfg.samples;
    let subdb = b.subdb;
    // get
    for (side, c) in [("partition", part), ("bare map", bare)] {
        b.tb.start_profile(c);
        for s in 0..n {
            let k = key(mix(s as u64) as usize % cfg.items);
            let arg = if c == part {
                enc(GetArgs {
                    subdb,
                    key: ByteBuf::from(k),
                })
            } else {
                enc(ByteBuf::from(k))
            };
            b.query(user, c, "get", arg);
        }
        let (total, funcs) = b.tb.take_profile(c);
        out.push(OpProfile {
            op: "get",
            side,
            messages: n,
            total,
            funcs,
        });
    }
    // put (fresh keys)
    for (side, c) in [("partition", part), ("bare map", bare)] {
        b.tb.start_profile(c);
        for s in 0..n {
            let k = bytes(8_000_000_000 + s as u64, cfg.key_bytes);
            let v = bytes(s as u64, cfg.value_bytes);
            let arg = if c == part {
                b.part_put(k, v)
            } else {
                candid::encode_args((ByteBuf::from(k), ByteBuf::from(v))).expect("enc")
            };
            b.update(user, c, "put", arg);
        }
        let (total, funcs) = b.tb.take_profile(c);
        out.push(OpProfile {
            op: "put",
            side,
            messages: n,
            total,
            funcs,
        });
    }
    // scan of 100
    for (side, c) in [("partition", part), ("bare map", bare)] {
        b.tb.start_profile(c);
        for s in 0..n {
            let k = key(mix(9_000 + s as u64) as usize % cfg.items);
            let arg = if c == part {
                enc(ScanRequest {
                    subdb,
                    args: ScanArgs {
                        start: Some(ByteBuf::from(k)),
                        end: None,
                        reverse: false,
                        limit: Some(100),
                        max_bytes: None,
                        cursor: None,
                    },
                })
            } else {
                candid::encode_args((ByteBuf::from(k), 100u32)).expect("enc")
            };
            b.query(user, c, "scan", arg);
        }
        let (total, funcs) = b.tb.take_profile(c);
        out.push(OpProfile {
            op: "scan of 100",
            side,
            messages: n,
            total,
            funcs,
        });
    }
    out
}

/// The function profile of one operation on one canister, over `messages` messages.
#[derive(Clone, Debug)]
pub struct OpProfile {
    pub op: &'static str,
    pub side: &'static str,
    pub messages: usize,
    pub total: u64,
    /// `(function, self, inclusive)`, by inclusive instructions, largest first.
    pub funcs: Vec<(String, u64, u64)>,
}

impl OpProfile {
    /// The `top` functions by self instructions, per message, as Markdown.
    pub fn markdown(&self, top: usize) -> String {
        let per = |x: u64| x as f64 / self.messages as f64;
        let mut by_self = self.funcs.clone();
        by_self.sort_by_key(|b| std::cmp::Reverse(b.1));
        let mut s = format!(
            "{} on the {}: {:.0} instructions per message\n\n| function | self | inclusive |\n|---|---:|---:|\n",
            self.op,
            self.side,
            per(self.total)
        );
        for (f, sf, inc) in by_self.iter().take(top) {
            let mut name = f.clone();
            if name.len() > 110 {
                name.truncate(110);
                name.push('…');
            }
            s.push_str(&format!(
                "| `{}` | {:.0} | {:.0} |\n",
                name.replace('|', "\\|"),
                per(*sf),
                per(*inc)
            ));
        }
        s
    }
}

/// What upgrading a partition holding `items` items, each put with its own op id, costs.
#[derive(Clone, Debug)]
pub struct UpgradeCost {
    pub items: usize,
    /// `pre_upgrade` + `post_upgrade` of `from` → `to` (where `to` migrates `from`'s layout).
    pub from_to: u64,
    /// `to` → `to` (opening the current layout).
    pub to_to: u64,
}

/// Installs `from` (beside the bare map, preloaded as by [`run`]), puts `items` items with an
/// op id each, upgrades to `to` and then to `to` again, measuring each upgrade's
/// instructions; retries of a sample of the op ids must then answer their first outcome, and
/// the same op ids with other arguments be refused.
pub fn upgrade_cost(
    from: &[u8],
    to: &[u8],
    bare_wasm: &[u8],
    items: usize,
    progress: bool,
) -> UpgradeCost {
    let cfg = BenchConfig {
        items,
        ..BenchConfig::default()
    };
    let (mut b, index, user, part, _) = setup(from, bare_wasm, &cfg, progress);
    let upgrade = |b: &mut Bed, wasm: &[u8]| {
        b.tb.install(
            index,
            part,
            InstallMode::Upgrade,
            false,
            wasm,
            enc(PartitionInit { index }),
        )
        .unwrap_or_else(|e| panic!("partition upgrade: {e}"));
        b.tb.last_instructions(part)
    };
    let from_to = upgrade(&mut b, to);
    let to_to = upgrade(&mut b, to);
    let key = |i: usize| bytes(i as u64, cfg.key_bytes);
    let val = |i: usize| bytes(1_000_000_000 + i as u64, cfg.value_bytes);
    let subdb = b.subdb;
    for s in 0..50u64 {
        let i = (mix(s) as usize) % items;
        let args = |v: Vec<u8>| PutArgs {
            subdb,
            key: ByteBuf::from(key(i)),
            value: ByteBuf::from(v),
            // The preload's op ids are 1..=items, in order.
            op_id: op_id(i as u64 + 1),
        };
        let (r, _) = b.update(user, part, "put", enc(args(val(i))));
        let r: Result<flotilla_types::PutOutcome, flotilla_types::PutError> =
            candid::decode_one(&r).expect("dec");
        assert_eq!(
            r,
            Ok(flotilla_types::PutOutcome {
                replaced: false,
                evicted: 0
            }),
            "retry of op {} after the upgrades",
            i + 1
        );
        let (r, _) = b.update(user, part, "put", enc(args(b"other".to_vec())));
        let r: Result<flotilla_types::PutOutcome, flotilla_types::PutError> =
            candid::decode_one(&r).expect("dec");
        assert_eq!(r, Err(flotilla_types::PutError::OpIdConflict));
    }
    UpgradeCost {
        items,
        from_to,
        to_to,
    }
}
