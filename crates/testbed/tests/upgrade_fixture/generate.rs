//! Writing a fixture: a small deployment of known data built with the current wasm.

use crate::fixture::{
    compact, layouts, CreateRecord, Fixture, Image, SubDbRecord, Write, WriteRecord, FIXTURE_FORMAT,
};
use crate::{
    admin, alice, bob, carol, enc, hex, housekeeping, route, scan_all, stand_in_module, stats,
    update, INDEX_CYCLES,
};
use candid::Principal;
use flotilla_testbed::{Config, InstallMode, Testbed};
use flotilla_types::index::{
    CreateError, CreateRequest, DeleteRequest, DeleteSubDbRequestError, IndexInit, MoveRequest,
    MoveSubDbError, UploadProgress, UploadWasmError, WasmChunk,
};
use flotilla_types::partition::{BatchArgs, DeleteArgs, PutArgs, SetAccessArgs, SetAccessError};
use flotilla_types::{
    BatchError, BatchOp, BatchOutcome, DeleteError, InnerKey, OpId, PutError, PutOutcome,
};
use serde_bytes::ByteBuf;
use sha2::{Digest, Sha256};
use std::collections::BTreeMap;

/// Builds the deployment of known data on a testbed with the current wasm, and answers the
/// fixture of its stable memories.
pub(crate) fn generate(index_wasm: &[u8], partition_wasm: &[u8]) -> Fixture {
    let mut tb = Testbed::new(Config::default());
    let stand_in = stand_in_module();
    tb.substitute_module(&stand_in, partition_wasm);
    let index = tb.create_canister(vec![admin()], INDEX_CYCLES);
    let init = IndexInit {
        admins: vec![admin()],
        spare_pool_target: Some(1),
        move_cap_bytes: None,
        ..IndexInit::default()
    };
    tb.install(
        admin(),
        index,
        InstallMode::Install,
        false,
        index_wasm,
        enc(init),
    )
    .expect("install the index");
    let chunk = WasmChunk {
        sha256: ByteBuf::from(Sha256::digest(&stand_in).to_vec()),
        offset: 0,
        total_len: stand_in.len() as u64,
        bytes: ByteBuf::from(stand_in.clone()),
    };
    let r: Result<UploadProgress, UploadWasmError> = update(
        &mut tb,
        admin(),
        index,
        "upload_partition_wasm_chunk",
        enc(chunk),
    );
    assert!(r.expect("upload").complete);

    let mut g = Gen {
        tb,
        index,
        op: 0,
        subdbs: BTreeMap::new(),
        creates: vec![],
        writes: vec![],
    };
    g.wait("a first partition", |g| {
        !stats(&mut g.tb, g.index).partitions.is_empty()
    });

    g.create(alice(), "alice/notes", vec![bob()], vec![carol()], None);
    g.create(bob(), "bob/photos", vec![], vec![], None);
    g.create(carol(), "carol/capped", vec![alice()], vec![], Some(4));
    g.create(carol(), "carol/tmp", vec![], vec![], None);

    for i in 0..24u32 {
        let k = format!("note/{i:03}").into_bytes();
        let v = format!("note {i} ").repeat(1 + i as usize % 7).into_bytes();
        g.put(alice(), "alice/notes", k, v);
    }
    // Binary keys and values, an empty value, a long key.
    g.put(alice(), "alice/notes", vec![0, 1, 2, 255], vec![0; 40]);
    g.put(alice(), "alice/notes", vec![0xff; 3], vec![]);
    g.put(
        alice(),
        "alice/notes",
        vec![b'k'; 300],
        b"long key".to_vec(),
    );
    g.put(
        alice(),
        "alice/notes",
        b"note/003".to_vec(),
        b"overwritten".to_vec(),
    );
    g.delete(alice(), "alice/notes", b"note/004".to_vec());
    g.delete(alice(), "alice/notes", b"never-there".to_vec());
    g.put(
        carol(),
        "alice/notes",
        b"by-the-writer".to_vec(),
        b"carol".to_vec(),
    );
    g.batch(
        alice(),
        "alice/notes",
        vec![
            BatchOp::Put {
                key: ByteBuf::from(b"note/005".to_vec()),
                value: ByteBuf::from(b"batched over".to_vec()),
            },
            BatchOp::Delete {
                key: ByteBuf::from(b"note/006".to_vec()),
            },
            BatchOp::Put {
                key: ByteBuf::from(b"batch/new".to_vec()),
                value: ByteBuf::from(b"new".to_vec()),
            },
        ],
    );
    for i in 0..12u32 {
        let k = format!("photo-{i:02}.jpg").into_bytes();
        let v: Vec<u8> = (0..1000u32).map(|j| (i * 31 + j * 7) as u8).collect();
        g.put(bob(), "bob/photos", k, v);
    }
    for i in 0..7u32 {
        // A hard cap of 4: the smallest keys are evicted.
        g.put(
            carol(),
            "carol/capped",
            format!("c{i}").into_bytes(),
            vec![i as u8; 10],
        );
    }
    g.put(carol(), "carol/tmp", b"gone".to_vec(), b"soon".to_vec());
    let del = DeleteRequest {
        outer_key: "carol/tmp".into(),
        op_id: g.op_id(),
    };
    let r: Result<(), DeleteSubDbRequestError> =
        update(&mut g.tb, carol(), index, "delete_subdb", enc(del));
    r.expect("delete carol/tmp");
    g.subdbs.remove("carol/tmp");
    g.writes.retain(|w| w.outer_key != "carol/tmp");
    g.creates.retain(|c| c.request.outer_key != "carol/tmp");

    // Move bob/photos to another partition (its op records go with it), then write there and
    // change its access lists.
    g.move_subdb("bob/photos");
    g.put(
        bob(),
        "bob/photos",
        b"photo-99.jpg".to_vec(),
        b"after the move".to_vec(),
    );
    g.put(
        bob(),
        "bob/photos",
        b"photo-00.jpg".to_vec(),
        b"replaced after the move".to_vec(),
    );
    let at = g.subdbs["bob/photos"].at;
    let set = SetAccessArgs {
        subdb: at.subdb,
        readers: vec![alice()],
        writers: vec![carol()],
    };
    let r: Result<(), SetAccessError> =
        update(&mut g.tb, bob(), at.partition, "set_access", enc(set));
    r.expect("set_access");
    let s = g.subdbs.get_mut("bob/photos").expect("known");
    s.readers = vec![alice()];
    s.writers = vec![carol()];

    // Quiet: released data purged, stats refreshed, no call in flight.
    for _ in 0..30 {
        g.tb.tick();
    }
    assert!(g.tb.run_until_idle(20), "the deployment does not go idle");
    let st = stats(&mut g.tb, index);
    assert!(
        st.moves.is_empty() && st.partitions_being_created == 0,
        "{st:?}"
    );
    for s in g.subdbs.values() {
        let got = scan_all(&mut g.tb, s.owner, s.at, false, 100);
        assert_eq!(got, s.items_vec(), "{} before the snapshot", s.outer_key);
    }

    let mut canisters = Vec::new();
    for id in g.tb.canister_ids() {
        let size = g.tb.stable_size(id).expect("exists") as usize;
        let stable = g.tb.read_stable(id, 0, size).expect("readable");
        canisters.push(Image {
            id,
            controllers: g.tb.controllers(id).expect("exists"),
            kind: if id == index { "index" } else { "partition" }.into(),
            stable_bytes: size as u64,
            runs: compact(&stable),
        });
    }
    Fixture {
        format: FIXTURE_FORMAT,
        layouts: layouts(),
        index_wasm_sha256: hex(&Sha256::digest(index_wasm)),
        partition_wasm_sha256: hex(&Sha256::digest(partition_wasm)),
        admin: admin(),
        index,
        stand_in_module: ByteBuf::from(stand_in),
        canisters,
        routing_version: st.routing_version,
        subdbs: g.subdbs.values().map(Sub::record).collect(),
        deleted: vec!["carol/tmp".into()],
        creates: g.creates,
        writes: g.writes,
    }
}

/// A SubDB while the fixture is being written.
struct Sub {
    outer_key: String,
    owner: Principal,
    readers: Vec<Principal>,
    writers: Vec<Principal>,
    hard_cap: Option<u64>,
    at: InnerKey,
    moved_from: Option<InnerKey>,
    items: BTreeMap<Vec<u8>, Vec<u8>>,
}

impl Sub {
    fn items_vec(&self) -> Vec<(ByteBuf, ByteBuf)> {
        self.items
            .iter()
            .map(|(k, v)| (ByteBuf::from(k.clone()), ByteBuf::from(v.clone())))
            .collect()
    }

    fn record(&self) -> SubDbRecord {
        SubDbRecord {
            outer_key: self.outer_key.clone(),
            owner: self.owner,
            readers: self.readers.clone(),
            writers: self.writers.clone(),
            hard_cap: self.hard_cap,
            at: self.at,
            moved_from: self.moved_from,
            items: self.items_vec(),
        }
    }

    /// Applies a put to the model, evicting the smallest keys past the hard cap.
    fn apply_put(&mut self, k: Vec<u8>, v: Vec<u8>) -> (bool, u32) {
        let replaced = self.items.insert(k, v).is_some();
        let mut evicted = 0;
        while self.hard_cap.is_some_and(|c| self.items.len() as u64 > c) {
            self.items.pop_first();
            evicted += 1;
        }
        (replaced, evicted)
    }
}

struct Gen {
    tb: Testbed,
    index: Principal,
    op: u64,
    subdbs: BTreeMap<String, Sub>,
    creates: Vec<CreateRecord>,
    writes: Vec<WriteRecord>,
}

impl Gen {
    fn op_id(&mut self) -> OpId {
        self.op += 1;
        OpId(ByteBuf::from(
            format!("fixture-op-{:08}", self.op).into_bytes(),
        ))
    }

    fn wait(&mut self, what: &str, mut done: impl FnMut(&mut Gen) -> bool) {
        for round in 0..500 {
            if done(self) {
                return;
            }
            if round % 5 == 0 {
                housekeeping(&mut self.tb, self.index);
            }
            self.tb.tick();
        }
        panic!("{what}: not reached in 500 rounds");
    }

    fn create(
        &mut self,
        owner: Principal,
        outer: &str,
        readers: Vec<Principal>,
        writers: Vec<Principal>,
        hard_cap: Option<u64>,
    ) {
        let request = CreateRequest {
            outer_key: outer.into(),
            op_id: self.op_id(),
            hard_cap,
            owner: None,
            readers: readers.clone(),
            writers: writers.clone(),
        };
        for _ in 0..500 {
            let r: Result<InnerKey, CreateError> = update(
                &mut self.tb,
                owner,
                self.index,
                "create_subdb",
                enc(request.clone()),
            );
            match r {
                Ok(at) => {
                    self.creates.push(CreateRecord {
                        caller: owner,
                        request,
                        answer: at,
                    });
                    let sub = Sub {
                        outer_key: outer.into(),
                        owner,
                        readers,
                        writers,
                        hard_cap,
                        at,
                        moved_from: None,
                        items: BTreeMap::new(),
                    };
                    self.subdbs.insert(outer.into(), sub);
                    return;
                }
                Err(CreateError::NoCapacity | CreateError::InProgress) => {
                    housekeeping(&mut self.tb, self.index);
                    self.tb.tick();
                }
                Err(e) => panic!("create {outer}: {e:?}"),
            }
        }
        panic!("create {outer}: never succeeded");
    }

    fn put(&mut self, caller: Principal, outer: &str, k: Vec<u8>, v: Vec<u8>) {
        let at = self.subdbs[outer].at;
        let args = PutArgs {
            subdb: at.subdb,
            key: ByteBuf::from(k.clone()),
            value: ByteBuf::from(v.clone()),
            op_id: self.op_id(),
        };
        let r: Result<PutOutcome, PutError> =
            update(&mut self.tb, caller, at.partition, "put", enc(args.clone()));
        let o = r.unwrap_or_else(|e| panic!("put to {outer}: {e:?}"));
        let (replaced, evicted) = self.subdbs.get_mut(outer).expect("known").apply_put(k, v);
        assert_eq!(
            (o.replaced, o.evicted),
            (replaced, evicted),
            "put to {outer}"
        );
        self.writes.push(WriteRecord {
            caller,
            outer_key: outer.into(),
            write: Write::Put(args, o),
        });
    }

    fn delete(&mut self, caller: Principal, outer: &str, k: Vec<u8>) {
        let at = self.subdbs[outer].at;
        let args = DeleteArgs {
            subdb: at.subdb,
            key: ByteBuf::from(k.clone()),
            op_id: self.op_id(),
        };
        let r: Result<bool, DeleteError> = update(
            &mut self.tb,
            caller,
            at.partition,
            "delete",
            enc(args.clone()),
        );
        let existed = r.unwrap_or_else(|e| panic!("delete in {outer}: {e:?}"));
        let had = self
            .subdbs
            .get_mut(outer)
            .expect("known")
            .items
            .remove(&k)
            .is_some();
        assert_eq!(existed, had, "delete in {outer}");
        self.writes.push(WriteRecord {
            caller,
            outer_key: outer.into(),
            write: Write::Delete(args, existed),
        });
    }

    fn batch(&mut self, caller: Principal, outer: &str, ops: Vec<BatchOp>) {
        let at = self.subdbs[outer].at;
        let args = BatchArgs {
            subdb: at.subdb,
            ops: ops.clone(),
            op_id: self.op_id(),
        };
        let r: Result<BatchOutcome, BatchError> = update(
            &mut self.tb,
            caller,
            at.partition,
            "batch",
            enc(args.clone()),
        );
        let o = r.unwrap_or_else(|e| panic!("batch on {outer}: {e:?}"));
        let sub = self.subdbs.get_mut(outer).expect("known");
        for op in ops {
            match op {
                BatchOp::Put { key, value } => {
                    sub.apply_put(key.into_vec(), value.into_vec());
                }
                BatchOp::Delete { key } => {
                    sub.items.remove(key.as_slice());
                }
            }
        }
        self.writes.push(WriteRecord {
            caller,
            outer_key: outer.into(),
            write: Write::Batch(args, o),
        });
    }

    /// `move_subdb` to where the index chooses, run to its end.
    fn move_subdb(&mut self, outer: &str) {
        let index = self.index;
        self.wait("move_subdb accepted", |g| {
            let req = MoveRequest {
                outer_key: outer.into(),
                target: None,
            };
            let r: Result<Principal, MoveSubDbError> =
                update(&mut g.tb, admin(), index, "move_subdb", enc(req));
            match r {
                Ok(_) => true,
                Err(MoveSubDbError::NoTarget) => false,
                Err(e) => panic!("move_subdb({outer}): {e:?}"),
            }
        });
        self.wait("the move's end", |g| {
            stats(&mut g.tb, index).moves.is_empty()
        });
        let now = route(&mut self.tb, index, outer).expect("routed");
        let sub = self.subdbs.get_mut(outer).expect("known");
        assert_ne!(now, sub.at, "{outer} moved");
        sub.moved_from = Some(sub.at);
        sub.at = now;
    }
}
