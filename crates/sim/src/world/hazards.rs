//! The hazards of a run (`crate::hazards`) acting on the world: a partition stopped for good,
//! a partition trapping on every import, owners' direct deletes at partitions (and their
//! answers checked), an admin re-uploading the partition wasm while creation jobs run, and
//! every move followed from start to end (how it ended, and that it ends once its target
//! broke: checker 8).

use super::{Origin, World, ROUND_NS};
use crate::hazards::{
    HazardCounts, Hazards, MAX_REUPLOADS, REUPLOAD_CHUNKED_BYTES, REUPLOAD_INLINE_BYTES,
};
use crate::report::{ik, ViolationKind};
use candid::Principal;
use flotilla_index::calls::{Call, Request};
use flotilla_types::dispatch::{decode_args, encode_args};
use flotilla_types::index::{UploadProgress, UploadWasmError, WasmChunk};
use flotilla_types::limits::{MAX_MOVE_FAILURES, MAX_WASM_UPLOAD_CHUNK_BYTES};
use flotilla_types::partition::DeleteSubDbArgs;
use flotilla_types::{DeleteSubDbError, InnerKey, OpId};
use serde_bytes::ByteBuf;
use sha2::{Digest, Sha256};
use std::collections::BTreeMap;

/// An owner's direct `delete_subdb` at a partition, awaiting its answer.
pub(crate) struct Probe {
    pub outer: String,
    pub at: InnerKey,
}

/// The admin's re-upload of a partition wasm in progress.
pub(crate) struct Reupload {
    pub wasm: Vec<u8>,
    pub sha: Vec<u8>,
    /// The next piece starts here.
    pub offset: u64,
    /// The piece on its way.
    pub ticket: Option<u64>,
}

/// A move in progress as last seen.
pub(crate) struct Tracked {
    /// Index time the move began: a move given up and started again between two rounds,
    /// with the same source and target, is another move.
    pub started_at: u64,
    pub source: InnerKey,
    pub target: Principal,
    pub phase: String,
    pub failures: u32,
    pub since: u64,
    /// First round its target was seen broken.
    pub broken_since: Option<u64>,
    /// Its source or target was broken by a hazard at some point.
    pub touched_broken: bool,
    /// The longest its writes were seen paused (rounds since the index confirmed the freeze).
    pub paused_rounds: u64,
}

#[derive(Default)]
pub(crate) struct HazardState {
    /// The partition stopped for good, and the round it starts again.
    pub dead: Option<(Principal, u64)>,
    pub dead_used: bool,
    /// The partition that traps on every import (until the end phase).
    pub import_trap: Option<Principal>,
    pub trap_used: bool,
    pub probes: BTreeMap<u64, Probe>,
    pub reupload: Option<Reupload>,
    pub reuploads_started: u32,
    /// SHA-256 of the module the admin uploaded first (the planted
    /// `install_first_module_only` installs no other).
    pub first_module: Vec<u8>,
    /// The access lists (metadata) each export carried in its first chunk, by source (for the
    /// planted `stale_access_on_cutover`).
    pub first_meta: BTreeMap<InnerKey, ByteBuf>,
    pub moves: BTreeMap<String, Tracked>,
    /// Op ids of the reclaims the index has held (`flotilla_index::reclaims`).
    pub reclaims_seen: std::collections::BTreeSet<Vec<u8>>,
    pub counts: HazardCounts,
}

impl World {
    /// Rounds a move may go on once its target broke: its failure budget twice over (the
    /// give-up, then the abort at the target), each failed call taking at most a tick and a
    /// round trip, plus the longest ordinary stop of the source or the index, twice, and a
    /// margin for the index's upgrades (calls forgotten, re-sent at the next tick).
    pub(crate) fn move_end_bound(&self) -> u64 {
        let per_call = self.cfg.tick_every + 2 * self.cfg.latency_max + 2;
        3 * MAX_MOVE_FAILURES as u64 * per_call + 4 * self.cfg.faults.stop_rounds_max + 100
    }

    /// Whether `p` is broken by a hazard now: stopped for good, or trapping on imports.
    pub(crate) fn broken(&self, p: &Principal) -> bool {
        self.hz
            .dead
            .is_some_and(|(d, until)| d == *p && self.round < until)
            || self.hz.import_trap == Some(*p)
    }

    /// Whether `op`'s SubDB lives on the partition stopped for good and the op began before
    /// that partition started again.
    pub(crate) fn on_dead_partition(&self, op: &crate::client::Op) -> bool {
        let Some((dead, until)) = self.hz.dead else {
            return false;
        };
        op.started < until
            && self
                .live_home(op.kind.outer())
                .is_some_and(|h| h.partition == dead)
    }

    pub(crate) fn dead_now(&self, p: &Principal) -> bool {
        self.hz
            .dead
            .is_some_and(|(d, until)| d == *p && self.round < until)
    }

    /// Whether the import-trapping partition traps this call (counted).
    pub(crate) fn traps_import(&mut self, call: &Call) -> bool {
        let import = matches!(
            call.request,
            Request::BeginImport(_) | Request::ImportChunk(_)
        );
        if import && self.hz.import_trap == Some(call.target) {
            self.hz.counts.import_traps += 1;
            return true;
        }
        false
    }

    /// The planted `swallow_broken_calls`: a call to a broken partition is never answered.
    pub(crate) fn swallows(&self, call: &Call) -> bool {
        self.cfg.bugs.swallow_broken_calls && self.broken(&call.target)
    }

    /// Stops the hazards for the end phase: the import traps end (the dead partition is
    /// started with every stopped canister), no new re-upload or direct delete.
    pub(crate) fn end_hazards(&mut self) {
        self.hazards = Hazards::NONE;
        self.hz.import_trap = None;
        self.hz.reupload = None;
    }

    /// This round's hazard decisions (each draws the same values whatever the knobs), then
    /// the answers to direct deletes and the re-upload in progress.
    pub(crate) fn hazards_round(&mut self) {
        let h = self.hazards;
        let dead = self.rng.chance(h.dead_partition);
        let dead_pick = self.rng.u64();
        let trap = self.rng.chance(h.import_trap);
        let trap_pick = self.rng.u64();
        let probe = self.rng.chance(h.direct_delete);
        let probe_client = self.rng.u64();
        let probe_pick = self.rng.u64();
        let probe_op = self.rng.bytes(16);
        let reupload = self.rng.chance(h.reupload);
        let reupload_chunked = self.rng.chance(0.5);
        let reupload_len = self.rng.unit();
        let partitions: Vec<Principal> = self.partitions().map(|(id, _)| *id).collect();
        if dead && !self.hz.dead_used && !partitions.is_empty() {
            let id = partitions[(dead_pick % partitions.len() as u64) as usize];
            let until = self.round + h.dead_rounds;
            if let Some(c) = self.canisters.get_mut(&id) {
                c.stopped_until = Some(until.max(c.stopped_until.unwrap_or(0)));
            }
            self.hz.dead = Some((id, until));
            self.hz.dead_used = true;
            self.hz.counts.dead_partitions += 1;
            self.say(|| format!("partition {id} stops for good ({} rounds)", h.dead_rounds));
            self.trace(&[0xdead, super::principal_word(&id)]);
        }
        if trap && !self.hz.trap_used && !partitions.is_empty() {
            let id = partitions[(trap_pick % partitions.len() as u64) as usize];
            self.hz.import_trap = Some(id);
            self.hz.trap_used = true;
            self.hz.counts.import_trap_partitions += 1;
            self.say(|| format!("partition {id} traps on every import from now on"));
            self.trace(&[0x7a9, super::principal_word(&id)]);
        }
        if probe {
            self.direct_delete(probe_client, probe_pick, probe_op);
        }
        self.poll_probes();
        if reupload && self.hz.reupload.is_none() && self.hz.reuploads_started < MAX_REUPLOADS {
            let jobs = self.index().stats().partitions_being_created;
            if jobs > 0 {
                let (lo, hi) = if reupload_chunked {
                    REUPLOAD_CHUNKED_BYTES
                } else {
                    REUPLOAD_INLINE_BYTES
                };
                let len = lo + ((hi - lo) as f64 * reupload_len) as u64;
                let mut wasm = b"\0asm\x01\0\0\0".to_vec();
                wasm.extend(self.rng.bytes(len as usize - wasm.len()));
                let sha = Sha256::digest(&wasm).to_vec();
                self.hz.reuploads_started += 1;
                self.say(|| {
                    format!("admin re-uploads a {len}-byte partition wasm ({jobs} job(s) running)")
                });
                self.hz.reupload = Some(Reupload {
                    wasm,
                    sha,
                    offset: 0,
                    ticket: None,
                });
            }
        }
        self.drive_reupload();
    }

    /// An owner asks the partition its route names to delete one of its SubDBs directly.
    fn direct_delete(&mut self, client_pick: u64, subdb_pick: u64, op: Vec<u8>) {
        let i = (client_pick % self.clients.len().max(1) as u64) as usize;
        let Some(c) = self.clients.get(i) else { return };
        if c.owned.is_empty() {
            return;
        }
        let outer = c.owned[(subdb_pick % c.owned.len() as u64) as usize].clone();
        let Some(at) = c.routes.get(&outer) else {
            return;
        };
        let caller = c.principal;
        let arg = encode_args((DeleteSubDbArgs {
            subdb: at.subdb,
            op_id: OpId::from(op),
        },));
        let t = self.next_ticket;
        self.next_ticket += 1;
        self.hz.counts.direct_deletes += 1;
        self.hz.probes.insert(t, Probe { outer, at });
        self.send_ingress(
            Origin::External(t),
            caller,
            at.partition,
            "delete_subdb",
            arg,
        );
    }

    /// Checker 7: every answer to a direct delete is `NotAuthorized` (a transport reject —
    /// an injected fault, a stopped partition — says nothing).
    fn poll_probes(&mut self) {
        let arrived: Vec<u64> = self
            .hz
            .probes
            .keys()
            .copied()
            .filter(|t| self.external.contains_key(t))
            .collect();
        for t in arrived {
            let probe = self.hz.probes.remove(&t).expect("listed");
            let Some(Ok(bytes)) = self.external.remove(&t) else {
                continue;
            };
            let r = decode_args::<(Result<(), DeleteSubDbError>,)>("delete_subdb", &bytes);
            match r {
                Ok((Err(DeleteSubDbError::NotAuthorized),)) => {
                    self.hz.counts.direct_deletes_refused += 1;
                }
                other => self.violation(
                    ViolationKind::DirectDelete,
                    format!(
                        "the owner of {:?} asked {} directly to delete it and got {other:?}, \
                         not NotAuthorized",
                        probe.outer,
                        ik(&probe.at)
                    ),
                ),
            }
        }
    }

    /// Sends the re-upload's next piece, or takes the answer to the last one.
    fn drive_reupload(&mut self) {
        let Some(mut up) = self.hz.reupload.take() else {
            return;
        };
        if let Some(t) = up.ticket {
            let Some(reply) = self.external.remove(&t) else {
                self.hz.reupload = Some(up);
                return;
            };
            up.ticket = None;
            if let Ok(bytes) = reply {
                type R = Result<UploadProgress, UploadWasmError>;
                match decode_args::<(R,)>("upload_partition_wasm_chunk", &bytes) {
                    Ok((Ok(p),)) if p.complete => {
                        self.hz.counts.reuploads += 1;
                        self.say(|| "admin's re-upload complete".into());
                        return;
                    }
                    Ok((Ok(p),)) => up.offset = p.received,
                    // A piece applied whose answer was lost: go on from where the index is.
                    Ok((Err(UploadWasmError::OutOfOrder { expected, .. }),)) => {
                        up.offset = expected
                    }
                    other => {
                        self.violation(
                            ViolationKind::UnexpectedReply,
                            format!("the admin's wasm re-upload was refused: {other:?}"),
                        );
                        return;
                    }
                }
            }
        }
        let start = up.offset as usize;
        let end = (start + MAX_WASM_UPLOAD_CHUNK_BYTES).min(up.wasm.len());
        let chunk = WasmChunk {
            offset: up.offset,
            bytes: ByteBuf::from(up.wasm[start..end].to_vec()),
            total_len: up.wasm.len() as u64,
            sha256: ByteBuf::from(up.sha.clone()),
        };
        let t = self.next_ticket;
        self.next_ticket += 1;
        let (admin, index) = (self.admin, self.index_id);
        let arg = encode_args((chunk,));
        self.send_ingress(
            Origin::External(t),
            admin,
            index,
            "upload_partition_wasm_chunk",
            arg,
        );
        up.ticket = Some(t);
        self.hz.reupload = Some(up);
    }

    /// Follows every move from start to end: how it ended (completed: its source released;
    /// given up at begin-import; otherwise called off), the longest, and checker 8: a move
    /// whose target broke ends within [`World::move_end_bound`] rounds (not counting rounds
    /// in which its source is the dead partition — calling a move off needs the source — nor
    /// those of an activation whose target is: it needs the target).
    pub(crate) fn track_moves(&mut self) {
        let now = self.index().moves();
        let current: BTreeMap<&str, _> = now.iter().map(|m| (m.outer_key.as_str(), m)).collect();
        let ended: Vec<String> = self
            .hz
            .moves
            .iter()
            .filter(|(outer, t)| {
                current.get(outer.as_str()).is_none_or(|m| {
                    m.source != t.source || m.target != t.target || m.started_at != t.started_at
                })
            })
            .map(|(o, _)| o.clone())
            .collect();
        for outer in ended {
            let t = self.hz.moves.remove(&outer).expect("listed");
            // The same move (source, start) on to another target: retargeted at begin-import.
            let retargeted = current.get(outer.as_str()).is_some_and(|m| {
                m.source == t.source && m.started_at == t.started_at && m.target != t.target
            });
            let c = &mut self.hz.counts;
            c.longest_move_rounds = c.longest_move_rounds.max(self.round - t.since);
            if !t.touched_broken {
                c.longest_unbroken_move_pause = c.longest_unbroken_move_pause.max(t.paused_rounds);
            }
            if self.observed.released.contains(&t.source) {
                c.moves_completed += 1;
            } else if retargeted {
                c.moves_retargeted += 1;
            } else if t.phase == "begin-import" {
                c.moves_given_up_at_begin += 1;
            } else {
                c.moves_called_off += 1;
            }
        }
        let bound = self.move_end_bound();
        let mut late = vec![];
        for m in &now {
            let broken = self.broken(&m.target);
            let source_dead = self.dead_now(&m.source.partition);
            let target_dead = self.dead_now(&m.target);
            let touched = broken || self.broken(&m.source.partition);
            let round = self.round;
            let t = self
                .hz
                .moves
                .entry(m.outer_key.clone())
                .or_insert_with(|| Tracked {
                    started_at: m.started_at,
                    source: m.source,
                    target: m.target,
                    phase: m.phase.clone(),
                    failures: m.failures,
                    since: round,
                    broken_since: None,
                    touched_broken: false,
                    paused_rounds: 0,
                });
            t.phase.clone_from(&m.phase);
            t.touched_broken |= touched;
            if let Some(at) = m.paused_at {
                t.paused_rounds = t.paused_rounds.max(round.saturating_sub(at / ROUND_NS));
            }
            t.failures = m.failures;
            if broken && t.broken_since.is_none() {
                t.broken_since = Some(round);
            }
            // A phase that needs one partition waits for it, by design (`docs/moves.md`:
            // unwind and activate are retried without limit): nothing can call a move off
            // while its source is down, nor finish its activation while its target is. The
            // count starts over while that partition is the dead one.
            if source_dead || (m.phase == "activate" && target_dead) {
                t.broken_since = broken.then_some(round);
            }
            if let Some(b) = t.broken_since {
                if round - b > bound {
                    late.push(format!(
                        "the move of {:?} from {} to broken partition {} has not ended \
                         {bound} rounds after its target broke (round {b}); phase {}",
                        m.outer_key,
                        ik(&m.source),
                        m.target,
                        m.phase
                    ));
                }
            }
        }
        for msg in late {
            self.violation(ViolationKind::MoveNeverEnds, msg);
        }
        // Reclaims of called-off moves' partial imports, each counted once.
        for r in self.index().reclaims() {
            self.hz.reclaims_seen.insert(r.op_id.to_vec());
        }
        self.hz.counts.reclaims = self.hz.reclaims_seen.len() as u64;
    }
}
