//! Live SubDB moves, driven by the index as a persisted state machine.
//!
//! A partition whose stats show it over the move cap sheds its largest SubDB to the newest
//! partition with room (else a spare, else one created for it); an admin can also move one
//! SubDB on request (`move_subdb`). Both start the same way (`start_move`). The move:
//!
//! 1. `begin_import` on the target (idempotent by the move's op id) → an invisible SubDB;
//! 2. `begin_export` on the source: from now on it logs changes to what the copy passed;
//! 3. copy: `export_chunk` → `import_chunk`, each chunk as full as the 1.9 MiB budget allows,
//!    while the source keeps serving reads and writes;
//! 4. deltas: `export_delta` → `import_chunk` with the changes made meanwhile, acknowledged
//!    one round later, until a round brings little (or [`MAX_DELTA_ROUNDS`] went by);
//! 5. cutover: `export_delta` with `freeze` — the source freezes (writes pause, reads go on)
//!    only if every change left fits in that one chunk, else it answers an ordinary delta and
//!    the index asks again after applying it. Past `MAX_DELTA_ROUNDS` delta rounds (the deltas
//!    do not converge: writers outpace them) each export also grants the SubDB's writers a
//!    budget of [`MOVE_WRITE_BUDGET`] bytes of changes until the next one, so the backlog
//!    shrinks by at least a chunk's worth less that budget per round and the freeze comes;
//! 6. `import_chunk(finish)` makes the target live (not yet routed, so nobody writes there
//!    while the frozen source still serves reads); `release` turns the source into a
//!    `Moved { to }` tombstone and frees its data; the directory flips to the target; then
//!    `resume_writes` at the target ends the pause.
//!
//! So writes pause from the freeze to the target's resume: four calls (the frozen export,
//! finish, release, resume), whatever the SubDB's size and the write rate; a failing call
//! stretches it by at most the failure budget before the move is called off, which resumes
//! the source's writes. Reads never fail: the source serves them until it answers `Moved` to
//! a live target.
//!
//! The chunk between source and target is persisted here until the target applied it, so a
//! lost call, a trap or an upgrade re-sends the same chunk (the target ignores a chunk number
//! it already applied) and nothing is lost or applied twice.

use crate::calls::{Call, CallResult, Request, Response};
use crate::records::*;
use crate::{Env, Index};
use candid::Principal;
use flotilla_types::index::{
    CancelMoveError, MoveInfo, MoveRequest, MoveSubDbError, PartitionState,
};
use flotilla_types::limits::{
    ITEM_OVERHEAD_BYTES, MAX_KEY_BYTES, MAX_MOVE_FAILURES, MAX_SUBDB_META_BYTES, MAX_VALUE_BYTES,
    REPLY_BUDGET_BYTES,
};
use flotilla_types::partition::{
    BeginExportArgs, BeginImportArgs, ExportArgs, ExportDeltaArgs, HousekeepingError,
    ImportChunkArgs, PartitionStats, ReleaseArgs, ResumeWritesError,
};
use flotilla_types::{ImportError, InnerKey, OpId};
use ic_stable_structures::Memory;
use serde_bytes::ByteBuf;
use sha2::{Digest, Sha256};

/// SubDBs a partition's stats list, largest first (`StatsArgs::largest_first`): the
/// candidates of a move off it. The largest movable one is moved; a candidate is passed over
/// while a create, delete or earlier move of it is pending, so more than one is asked for.
pub const MOVE_CANDIDATES: u32 = 100;
const _: () = assert!(MOVE_CANDIDATES <= flotilla_types::partition::MAX_STATS_SUBDBS);

/// Byte budget of one move chunk.
pub const MOVE_CHUNK_BUDGET: u64 = REPLY_BUDGET_BYTES as u64;
/// Delta rounds after which the cutover is tried even if changes keep coming, and the source
/// throttles the SubDB's writers until it succeeds.
pub const MAX_DELTA_ROUNDS: u32 = 8;
/// Bytes of changes a throttled SubDB admits per delta round: a quarter of a chunk. A cutover
/// attempt that does not freeze ships at least `MOVE_CHUNK_BUDGET` less the header it counted
/// and one largest change (≈ 0.84 MiB) while writers may add this much (≈ 0.48 MiB), so a
/// backlog shrinks every round; once it is gone, what a round adds fits one chunk with the
/// SubDB's header (≤ 64 KiB of metadata) and the freeze succeeds.
pub const MOVE_WRITE_BUDGET: u64 = MOVE_CHUNK_BUDGET / 4;

/// The most one change adds to a chunk.
const LARGEST_CHANGE: u64 = (MAX_KEY_BYTES + MAX_VALUE_BYTES + ITEM_OVERHEAD_BYTES) as u64;
/// The most a frozen chunk's header adds to it.
const LARGEST_HEADER: u64 = (MAX_SUBDB_META_BYTES + 4 * ITEM_OVERHEAD_BYTES) as u64;
// A cutover attempt that does not freeze ships more than throttled writers may add (it stops
// short of its budget by at most the header it counted and one change), and what they add
// fits one chunk beside a header.
const _: () = assert!(MOVE_WRITE_BUDGET + LARGEST_CHANGE + LARGEST_HEADER < MOVE_CHUNK_BUDGET);
const _: () = assert!(MOVE_WRITE_BUDGET + LARGEST_HEADER <= MOVE_CHUNK_BUDGET);

pub(crate) fn reverse_key(inner: &InnerKey) -> Vec<u8> {
    let mut k = inner.partition.as_slice().to_vec();
    k.extend_from_slice(&inner.subdb.to_be_bytes());
    k
}

fn phase_name(p: MovePhase) -> &'static str {
    match p {
        MovePhase::BeginImport => "begin-import",
        MovePhase::BeginExport => "begin-export",
        MovePhase::Copy => "copy",
        MovePhase::Delta => "delta",
        MovePhase::Cutover => "cutover",
        MovePhase::Finish => "finish",
        MovePhase::Release => "release",
        MovePhase::Abort => "abort",
        MovePhase::Activate => "activate",
        MovePhase::Unwind => "unwind",
    }
}

impl<M: Memory> Index<M> {
    /// Moves in progress, for stats and dashboards: at most `MAX_STATS_MOVES`, by outer key.
    pub fn moves(&self) -> Vec<MoveInfo> {
        let tuning = self.cfg().move_tuning;
        self.moves
            .iter()
            .take(flotilla_types::limits::MAX_STATS_MOVES)
            .map(|e| {
                let (outer_key, m) = e.into_pair();
                MoveInfo {
                    throttled: Self::throttles(&tuning, &m),
                    delta_rounds: m.delta_rounds,
                    paused_at: m.paused_at,
                    outer_key,
                    source: m.source,
                    target: m.target,
                    phase: phase_name(m.phase).to_string(),
                    chunks: m.seq,
                    bytes: m.bytes,
                    started_at: m.started_at,
                    failures: m.failures.unwrap_or(0),
                }
            })
            .collect()
    }

    /// Whether the move's delta exports throttle the SubDB's writers: past
    /// `max_delta_rounds`, before the freeze.
    fn throttles(tuning: &MoveTuning, m: &MoveRecord) -> bool {
        matches!(m.phase, MovePhase::Delta | MovePhase::Cutover)
            && m.paused_at.is_none()
            && m.delta_rounds >= tuning.max_delta_rounds
    }

    /// How moves throttle writers (see [`MoveTuning`]); the defaults unless changed.
    pub fn move_tuning(&self) -> MoveTuning {
        self.cfg().move_tuning
    }

    /// Changes how moves throttle writers — for the simulator and tests, not an endpoint.
    /// Persisted; applies from the next delta export on.
    pub fn set_move_tuning(&mut self, tuning: MoveTuning) {
        self.update_cfg(|c| c.move_tuning = tuning);
    }

    /// A move's write pause ended (writes resumed at the target, or at the source of a move
    /// called off): count it toward the longest.
    fn end_pause(&mut self, env: &Env, m: &mut MoveRecord) {
        if let Some(at) = m.paused_at.take() {
            let pause = env.now.saturating_sub(at);
            if pause > self.cfg().longest_write_pause_ns {
                self.update_cfg(|c| c.longest_write_pause_ns = pause);
            }
        }
    }

    /// The longest write pause of any move so far (ns, index time).
    pub fn longest_write_pause_ns(&self) -> u64 {
        self.cfg().longest_write_pause_ns
    }

    pub(crate) fn is_moving(&self, outer_key: &str) -> bool {
        self.moves.contains_key(&outer_key.to_string())
    }

    /// After a partition reported its stats: if it is over the move cap and sheds nothing
    /// yet, start moving its largest movable SubDB (when it has more than one), chosen among
    /// the SubDBs the stats list (its `MOVE_CANDIDATES` largest, from the partition's size
    /// index; a partition built before it lists its lowest ids instead).
    pub(crate) fn maybe_start_move(
        &mut self,
        env: &Env,
        partition: Principal,
        stats: &PartitionStats,
    ) -> Vec<Call> {
        let cap = self.cfg().move_cap_bytes;
        let live = stats.bytes.saturating_sub(stats.purging_bytes);
        // A partition whose turn in a fleet upgrade has come starts no move (`upgrades.rs`).
        if live <= cap || stats.live_subdbs < 2 || self.upgrading(&partition) {
            return vec![];
        }
        if self
            .moves
            .iter()
            .any(|e| e.value().source.partition == partition)
        {
            return vec![];
        }
        let candidate = stats
            .subdbs
            .iter()
            .filter_map(|s| {
                let inner = InnerKey {
                    partition,
                    subdb: s.id,
                };
                let outer = self.reverse.get(&reverse_key(&inner))?;
                let entry = self.directory.get(&outer)?;
                let movable = entry.inner() == inner && self.may_start_move(&outer, &entry);
                movable.then_some((s.bytes, outer, inner))
            })
            .max_by_key(|(bytes, outer, _)| (*bytes, std::cmp::Reverse(outer.clone())));
        let Some((bytes, outer_key, source)) = candidate else {
            return vec![];
        };
        let Some(target) = self.newest_with_room(env, &[partition], bytes) else {
            self.ensure_partition_coming();
            return vec![];
        };
        self.start_move(env, &outer_key, source, target, bytes)
    }

    /// Moves one SubDB on an admin's request, to `req.target` or, without one, to the
    /// partition the index's own moves would choose. Returns the target and the move's first
    /// call. The index keeps no per-SubDB sizes, so the move records (and reserves on the
    /// target) 0 bytes; the target's next stats count what arrived.
    pub fn move_subdb(
        &mut self,
        env: &Env,
        req: &MoveRequest,
    ) -> Result<(Principal, Vec<Call>), MoveSubDbError> {
        use MoveSubDbError as E;
        if !self.is_admin(&env.caller) {
            return Err(E::NotAuthorized);
        }
        let Some(entry) = self.directory.get(&req.outer_key) else {
            return Err(E::UnknownOuterKey);
        };
        if self.is_moving(&req.outer_key) {
            return Err(E::AlreadyMoving);
        }
        if !self.may_start_move(&req.outer_key, &entry) {
            return Err(E::Busy);
        }
        let source = entry.inner();
        if self.upgrading(&source.partition) || req.target.is_some_and(|t| self.upgrading(&t)) {
            return Err(E::Busy);
        }
        let bytes = 0;
        let target = match req.target {
            Some(t) if t == source.partition => return Err(E::SameAsSource),
            Some(t) => {
                let rec = self.registry.get(&t).ok_or(E::UnknownPartition)?;
                match rec.state {
                    PartitionState::Full => return Err(E::TargetFull),
                    PartitionState::Spare => self.promote_spare(env, t, rec),
                    PartitionState::Active => {}
                }
                t
            }
            None => match self.newest_with_room(env, &[source.partition], bytes) {
                Some(t) => t,
                None => {
                    self.ensure_partition_coming();
                    return Err(E::NoTarget);
                }
            },
        };
        let calls = self.start_move(env, &req.outer_key, source, target, bytes);
        if req.target.is_some() {
            // The admin named the target: the move is not retargeted should it fail.
            if let Some(mut m) = self.moves.get(&req.outer_key) {
                m.pinned = Some(true);
                self.moves.insert(req.outer_key.clone(), m);
            }
        }
        Ok((target, calls))
    }

    /// Whether a move of `outer_key` (not moving now) may start: the SubDB is live, no create
    /// or delete of it is pending, and no call of an earlier move of it is in flight (moving
    /// now, or called off while a call was out): its reply would be taken for the new move's,
    /// whose target may differ.
    fn may_start_move(&self, outer_key: &str, entry: &DirEntry) -> bool {
        entry.state == DirState::Live
            && !self.pending.contains_key(&outer_key.to_string())
            && !self.move_call_in_flight(outer_key)
    }

    /// No partition has room for a move: make sure one is on its way (started by the next
    /// `tick`), so a later attempt finds it.
    fn ensure_partition_coming(&mut self) {
        if self.jobs.is_empty() && self.cfg().wasm.is_some() {
            self.new_job();
        }
    }

    /// Records a move of `outer_key` from `source` to `target`, reserves `bytes` on the
    /// target until its next stats, and returns the move's first call.
    fn start_move(
        &mut self,
        env: &Env,
        outer_key: &str,
        source: InnerKey,
        target: Principal,
        bytes: u64,
    ) -> Vec<Call> {
        let n = self.cfg().next_call_id;
        let op = Sha256::digest([outer_key.as_bytes(), &n.to_le_bytes()].concat());
        self.moves.insert(
            outer_key.to_string(),
            MoveRecord {
                source,
                target,
                target_subdb: None,
                op_id: ByteBuf::from(op[..16].to_vec()),
                phase: MovePhase::BeginImport,
                token: None,
                seq: 0,
                ack: 0,
                delta_rounds: 0,
                bytes,
                started_at: env.now,
                failures: None,
                paused_at: None,
                pinned: None,
            },
        );
        if let Some(mut rec) = self.registry.get(&target) {
            rec.bytes = rec.bytes.saturating_add(bytes);
            self.put_partition(target, rec);
        }
        self.drive_move(outer_key)
    }

    fn move_call(
        &mut self,
        outer_key: &str,
        step: MoveStep,
        to: Principal,
        req: Request,
    ) -> Option<Call> {
        let purpose = Purpose::Move {
            outer_key: outer_key.to_string(),
            step,
        };
        if self.in_flight(&purpose) {
            return None;
        }
        Some(self.next_call(to, req, purpose))
    }

    /// The calls that advance a move from where it stands (none while its calls are in
    /// flight).
    pub(crate) fn drive_move(&mut self, outer_key: &str) -> Vec<Call> {
        let key = outer_key.to_string();
        let Some(mut m) = self.moves.get(&key) else {
            return vec![];
        };
        let needs_target = !matches!(
            m.phase,
            MovePhase::BeginImport | MovePhase::Abort | MovePhase::Unwind
        );
        if needs_target && m.target_subdb.is_none() {
            // Not reachable by the protocol; should a record say so anyway, learn the target's
            // id again (`begin_import` answers the same id for the move's op id).
            m.phase = MovePhase::BeginImport;
            self.moves.insert(key.clone(), m.clone());
        }
        let target_subdb = m.target_subdb.unwrap_or_default();
        let pending = self.move_chunks.get(&key);
        let src = m.source;
        let import = |chunk, finish| {
            Request::ImportChunk(ImportChunkArgs {
                subdb: target_subdb,
                chunk,
                finish,
            })
        };
        let call = match m.phase {
            MovePhase::BeginImport => {
                let req = Request::BeginImport(BeginImportArgs {
                    op_id: OpId(m.op_id.clone()),
                });
                self.move_call(&key, MoveStep::BeginImport, m.target, req)
            }
            MovePhase::BeginExport => {
                let req = Request::BeginExport(BeginExportArgs { subdb: src.subdb });
                self.move_call(&key, MoveStep::BeginExport, src.partition, req)
            }
            MovePhase::Copy | MovePhase::Delta | MovePhase::Cutover => match pending {
                Some(p) => {
                    let req = import(p.chunk, false);
                    self.move_call(&key, MoveStep::Import, m.target, req)
                }
                None if m.phase == MovePhase::Copy => {
                    let req = Request::ExportChunk(ExportArgs {
                        subdb: src.subdb,
                        seq: m.seq,
                        token: m.token.clone(),
                        budget: MOVE_CHUNK_BUDGET,
                    });
                    self.move_call(&key, MoveStep::Export, src.partition, req)
                }
                None => {
                    let tuning = self.cfg().move_tuning;
                    let req = Request::ExportDelta(ExportDeltaArgs {
                        subdb: src.subdb,
                        seq: m.seq,
                        ack: m.ack,
                        budget: MOVE_CHUNK_BUDGET,
                        freeze: m.phase == MovePhase::Cutover,
                        write_budget: Self::throttles(&tuning, &m).then_some(tuning.write_budget),
                    });
                    self.move_call(&key, MoveStep::Export, src.partition, req)
                }
            },
            MovePhase::Finish => {
                let chunk = pending.map(|p| p.chunk).unwrap_or_default();
                let req = import(chunk, true);
                self.move_call(&key, MoveStep::Import, m.target, req)
            }
            MovePhase::Abort => match m.target_subdb {
                Some(t) => {
                    let req = Request::AbortImport(t);
                    self.move_call(&key, MoveStep::Abort, m.target, req)
                }
                None => {
                    self.forget_move(&key, &m);
                    None
                }
            },
            MovePhase::Activate => {
                let req = Request::ResumeWrites(target_subdb);
                self.move_call(&key, MoveStep::Activate, m.target, req)
            }
            MovePhase::Unwind => {
                let req = Request::ResumeWrites(src.subdb);
                self.move_call(&key, MoveStep::Unwind, src.partition, req)
            }
            MovePhase::Release => {
                let req = Request::Release(ReleaseArgs {
                    subdb: src.subdb,
                    moved_to: InnerKey {
                        partition: m.target,
                        subdb: target_subdb,
                    },
                });
                self.move_call(&key, MoveStep::Release, src.partition, req)
            }
        };
        call.into_iter().collect()
    }

    /// A reply for one of a move's calls.
    pub(crate) fn move_reply(
        &mut self,
        env: &Env,
        outer_key: &str,
        step: MoveStep,
        result: CallResult,
    ) -> Vec<Call> {
        let key = outer_key.to_string();
        let Some(mut m) = self.moves.get(&key) else {
            return vec![];
        };
        match (step, result) {
            (MoveStep::BeginImport, Ok(Response::ImportBegun(Ok(id)))) => {
                m.target_subdb = Some(id);
                if m.phase == MovePhase::BeginImport {
                    m.phase = MovePhase::BeginExport;
                }
            }
            (MoveStep::BeginExport, Ok(Response::ExportBegun(Ok(())))) => {
                m.phase = MovePhase::Copy;
            }
            (MoveStep::Export, Ok(Response::Exported(Ok(reply)))) => {
                self.move_chunks.insert(
                    key.clone(),
                    MoveChunk {
                        chunk: reply.chunk,
                        next_token: reply.next,
                        version: 0,
                        more: true,
                    },
                );
            }
            (MoveStep::Export, Ok(Response::DeltaExported(Ok(reply)))) => {
                // A partition built before the freeze waited for the rest to fit answers no
                // `frozen`: it froze whenever asked.
                let asked = m.phase == MovePhase::Cutover;
                let frozen = asked && reply.frozen.unwrap_or(true);
                if frozen && m.paused_at.is_none() {
                    m.paused_at = Some(env.now);
                }
                let last = frozen && !reply.more;
                self.move_chunks.insert(
                    key.clone(),
                    MoveChunk {
                        chunk: reply.chunk,
                        next_token: None,
                        version: reply.version,
                        more: reply.more,
                    },
                );
                if last {
                    m.phase = MovePhase::Finish;
                }
            }
            (MoveStep::Import, Ok(Response::Imported(Ok(())))) => {
                if m.phase == MovePhase::Finish {
                    self.move_chunks.remove(&key);
                    m.seq += 1;
                    m.phase = MovePhase::Release;
                } else if let Some(p) = self.move_chunks.remove(&key) {
                    m.seq += 1;
                    match m.phase {
                        MovePhase::Copy => {
                            m.token = p.next_token.clone();
                            if p.next_token.is_none() {
                                m.phase = MovePhase::Delta;
                            }
                        }
                        MovePhase::Delta => {
                            m.ack = p.version;
                            m.delta_rounds = m.delta_rounds.saturating_add(1);
                            let small = p.chunk.budget_bytes() as u64 <= MOVE_CHUNK_BUDGET / 2;
                            let max = self.cfg().move_tuning.max_delta_rounds;
                            if (!p.more && small) || m.delta_rounds >= max {
                                m.phase = MovePhase::Cutover;
                            }
                        }
                        _ => {
                            // Cutover: a chunk the source shipped without freezing (the rest
                            // did not fit) counts as one more delta round; a frozen one with
                            // more to come (a partition built before the freeze waited for
                            // the rest to fit) is followed by the next frozen export.
                            m.ack = p.version;
                            if m.paused_at.is_none() {
                                m.delta_rounds = m.delta_rounds.saturating_add(1);
                            }
                        }
                    }
                }
            }
            (MoveStep::Release, Ok(Response::Released(Ok(()))))
                if m.phase == MovePhase::Release =>
            {
                self.complete_move(&key, &m);
                m.phase = MovePhase::Activate;
            }
            (MoveStep::Activate, Ok(Response::WritesResumed(Ok(()))))
                if m.phase == MovePhase::Activate =>
            {
                self.end_pause(env, &mut m);
                self.moves.remove(&key);
                return vec![];
            }
            (
                MoveStep::Export,
                Ok(
                    Response::Exported(Err(HousekeepingError::ChangeLogFull { .. }))
                    | Response::DeltaExported(Err(HousekeepingError::ChangeLogFull { .. })),
                ),
            ) if matches!(
                m.phase,
                MovePhase::Copy | MovePhase::Delta | MovePhase::Cutover
            ) =>
            {
                // The source's change log passed its bound (writes outpace the move): call
                // the move off rather than let the log grow.
                self.move_chunks.remove(&key);
                m.phase = MovePhase::Unwind;
            }
            (
                MoveStep::Unwind,
                Ok(Response::WritesResumed(Ok(()) | Err(ResumeWritesError::UnknownSubDb))),
            ) if m.phase == MovePhase::Unwind => {
                // The source serves writes again (or the SubDB is gone from it): reclaim the
                // target's part.
                self.end_pause(env, &mut m);
                self.move_chunks.remove(&key);
                m.phase = MovePhase::Abort;
            }
            (
                MoveStep::Unwind,
                Ok(Response::WritesResumed(Err(ResumeWritesError::Moved { to }))),
            ) if m.phase == MovePhase::Unwind
                && to.partition == m.target
                && Some(to.subdb) == m.target_subdb =>
            {
                // The release had landed (its reply was lost): the move can only complete.
                self.complete_move(&key, &m);
                m.phase = MovePhase::Activate;
            }
            (
                MoveStep::BeginExport | MoveStep::Export,
                Ok(
                    Response::ExportBegun(Err(HousekeepingError::UnknownSubDb))
                    | Response::Exported(Err(HousekeepingError::UnknownSubDb))
                    | Response::DeltaExported(Err(HousekeepingError::UnknownSubDb)),
                ),
            ) if matches!(
                m.phase,
                MovePhase::BeginExport | MovePhase::Copy | MovePhase::Delta | MovePhase::Cutover
            ) =>
            {
                // The SubDB is gone from the source (deleted there before the freeze landed;
                // once frozen it refuses deletes): nothing to move. Reclaim the target's part.
                self.move_chunks.remove(&key);
                m.phase = MovePhase::Abort;
            }
            (
                MoveStep::Abort,
                Ok(Response::ImportAborted(Ok(()) | Err(ImportError::UnknownImport))),
            ) => {
                self.forget_move(&key, &m);
                return vec![];
            }
            // Anything else failed: the same step is retried by the next tick, within the
            // move's failure budget — but a move waiting at begin-import on a target now
            // found unhealthy (`health.rs`) moves on at once.
            _ => {
                let failures = m.failures.unwrap_or(0).saturating_add(1);
                m.failures = Some(failures);
                let target_unhealthy = step == MoveStep::BeginImport
                    && m.phase == MovePhase::BeginImport
                    && !self.healthy(&m.target, env.now);
                if failures >= MAX_MOVE_FAILURES || target_unhealthy {
                    m.failures = None;
                    match self.give_up(env, &key, m) {
                        Some(m) => self.moves.insert(key, m),
                        None => return vec![],
                    };
                } else {
                    self.moves.insert(key, m);
                }
                return vec![];
            }
        }
        m.failures = None;
        if m.phase == MovePhase::Abort && m.target_subdb.is_none() {
            // Called off before the target's `begin_import` answered (an admin's cancel while
            // it was out): it may have opened an import all the same; a reclaim learns its id
            // by the op id and aborts it. (`drive_move` forgets the move.)
            self.record_reclaim(env, &key, m.target, &m.op_id, None);
        }
        self.moves.insert(key.clone(), m);
        self.drive_move(&key)
    }

    /// A move's call failed `MAX_MOVE_FAILURES` times in a row (a target out of cycles or
    /// memory, trapping on import, stopped for good), or its `begin_import` failed on a target
    /// now found unhealthy: what happens next, by phase. Returns the record to keep, or `None`
    /// when the move is forgotten.
    ///
    /// - before the release (begin-export … finish, and the release itself): call it off
    ///   (`Unwind`: the source drops its change log and resumes writes; then `Abort`);
    /// - begin-import: nothing was exported; retarget the move ([`Self::retarget`]), or, when
    ///   an admin named its target or no other target has room, forget it; either way a
    ///   reclaim (`reclaims.rs`) aborts the import the target may have opened without its
    ///   answer reaching us;
    /// - unwind: the source itself keeps failing; keep trying (the source's writes are paused
    ///   only if the cutover had begun, and nothing but the source can resume them);
    /// - abort: the target keeps refusing to reclaim its partial import; forget the move and
    ///   leave the `abort_import` to a reclaim, retried until the target answers;
    /// - activate: the directory already routes to the target; keep trying (the target's
    ///   writes resume once it answers).
    fn give_up(&mut self, env: &Env, outer_key: &str, mut m: MoveRecord) -> Option<MoveRecord> {
        match m.phase {
            MovePhase::BeginImport => {
                self.record_reclaim(env, outer_key, m.target, &m.op_id, m.target_subdb);
                if m.pinned == Some(true) {
                    self.forget_move(outer_key, &m);
                    return None;
                }
                self.retarget(env, outer_key, m)
            }
            MovePhase::BeginExport
            | MovePhase::Copy
            | MovePhase::Delta
            | MovePhase::Cutover
            | MovePhase::Finish
            | MovePhase::Release => {
                self.move_chunks.remove(&outer_key.to_string());
                m.phase = MovePhase::Unwind;
                Some(m)
            }
            MovePhase::Abort => {
                self.record_reclaim(env, outer_key, m.target, &m.op_id, m.target_subdb);
                self.forget_move(outer_key, &m);
                None
            }
            MovePhase::Unwind | MovePhase::Activate => Some(m),
        }
    }

    /// A move at begin-import whose target failed: nothing was exported, so it moves on to
    /// the newest healthy partition with room other than its source and that target (else a
    /// spare), with a fresh op id, keeping its start time; the room it reserved moves with it.
    /// Without one, the move is forgotten (the source's next stats try again) and a partition
    /// is made to come. The caller left the old target's possible import to a reclaim.
    fn retarget(&mut self, env: &Env, outer_key: &str, mut m: MoveRecord) -> Option<MoveRecord> {
        let old = m.target;
        self.forget_move(outer_key, &m);
        let target = self.newest_with_room(env, &[m.source.partition, old], m.bytes);
        let Some(target) = target else {
            self.ensure_partition_coming();
            return None;
        };
        let mut n = 0;
        self.update_cfg(|c| {
            n = c.next_call_id;
            c.next_call_id += 1;
        });
        let op = Sha256::digest([outer_key.as_bytes(), &n.to_le_bytes()].concat());
        m.op_id = ByteBuf::from(op[..16].to_vec());
        m.target = target;
        m.target_subdb = None;
        m.failures = None;
        if let Some(mut rec) = self.registry.get(&target) {
            rec.bytes = rec.bytes.saturating_add(m.bytes);
            self.put_partition(target, rec);
        }
        Some(m)
    }

    /// Moves in progress, for admins and dashboards (the same list `stats` carries).
    pub fn list_moves(&self) -> Vec<MoveInfo> {
        self.moves()
    }

    /// `list_moves` as `caller` may see it: the moves of an admin; nothing for anyone else
    /// (a move names its SubDB's outer key).
    pub fn list_moves_for(&self, caller: &Principal) -> Vec<MoveInfo> {
        if self.is_admin(caller) {
            self.moves()
        } else {
            vec![]
        }
    }

    /// Calls a move off (admins): before the release, the source drops its change log and
    /// resumes writes and the target's partial import is reclaimed, as when the failure budget
    /// is spent. A move whose source was released can only complete (`TooLate`).
    pub fn cancel_move(
        &mut self,
        env: &Env,
        outer_key: &str,
    ) -> Result<Vec<Call>, CancelMoveError> {
        if !self.is_admin(&env.caller) {
            return Err(CancelMoveError::NotAuthorized);
        }
        let key = outer_key.to_string();
        let Some(mut m) = self.moves.get(&key) else {
            return Err(CancelMoveError::UnknownMove);
        };
        match m.phase {
            MovePhase::Activate => return Err(CancelMoveError::TooLate),
            MovePhase::Unwind | MovePhase::Abort => return Ok(vec![]),
            MovePhase::BeginImport => {
                // A `begin_import` may be in flight: learn its answer first, then unwind (the
                // reply handler sees the phase and reclaims the import).
                m.phase = MovePhase::Unwind;
            }
            _ => m.phase = MovePhase::Unwind,
        }
        m.failures = None;
        self.move_chunks.remove(&key);
        self.moves.insert(key.clone(), m);
        Ok(self.drive_move(&key))
    }

    /// Forgets a called-off move and the room it reserved on the target.
    fn forget_move(&mut self, outer_key: &str, m: &MoveRecord) {
        let key = outer_key.to_string();
        self.moves.remove(&key);
        self.move_chunks.remove(&key);
        if let Some(mut rec) = self.registry.get(&m.target) {
            rec.bytes = rec.bytes.saturating_sub(m.bytes);
            self.put_partition(m.target, rec);
        }
    }

    /// The source is released: point the directory at the target and settle the registry.
    /// The move stays (phase `Activate`) until the target's writes are resumed.
    fn complete_move(&mut self, outer_key: &str, m: &MoveRecord) {
        let key = outer_key.to_string();
        self.move_chunks.remove(&key);
        let Some(to) = m.target_subdb else {
            return;
        };
        if let Some(mut entry) = self.directory.get(&key) {
            self.reverse.remove(&reverse_key(&entry.inner()));
            entry.partition = m.target;
            entry.subdb = to;
            self.reverse
                .insert(reverse_key(&entry.inner()), key.clone());
            self.directory.insert(key, entry);
            self.update_cfg(|c| c.routing_version += 1);
        }
        for (p, delta) in [(m.source.partition, -1i64), (m.target, 1)] {
            if let Some(mut rec) = self.registry.get(&p) {
                rec.subdbs = rec.subdbs.saturating_add_signed(delta);
                if delta < 0 {
                    rec.bytes = rec.bytes.saturating_sub(m.bytes);
                }
                self.put_partition(p, rec);
            }
        }
    }
}
