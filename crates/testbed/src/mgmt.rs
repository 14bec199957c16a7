//! The management canister (`aaaaa-aa`): canister creation, code installation (also chunked),
//! status, cycles, stop and start. Each method runs whole within one round.

use crate::host::{Entry, Kind};
use crate::limits::*;
use crate::{
    compile, exec_for, instantiate, reject, CallResult, Canister, Origin, Reject, RejectCode,
    Snapshot, Status, Testbed,
};
use candid::utils::ArgumentEncoder;
use candid::{CandidType, Nat, Principal};
use ic_management_canister_types::{
    CanisterIdRecord, CanisterInstallMode, CanisterSettings, CanisterStatusResult,
    CanisterStatusType, ChunkHash, CreateCanisterArgs, DefiniteCanisterSettings,
    InstallChunkedCodeArgs, InstallCodeArgs, MemoryMetrics,
    ProvisionalCreateCanisterWithCyclesArgs, QueryStats, UpdateSettingsArgs, UploadChunkArgs,
};
use serde::de::DeserializeOwned;
use sha2::{Digest, Sha256};

/// How code gets installed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum InstallMode {
    Install,
    Reinstall,
    Upgrade,
}

fn decode<T: DeserializeOwned + CandidType>(method: &str, arg: &[u8]) -> Result<T, Reject> {
    candid::decode_one(arg).map_err(|e| {
        reject(
            RejectCode::CanisterReject,
            format!("management canister: bad argument to {method}: {e}"),
        )
    })
}

fn ok<T: ArgumentEncoder>(v: T) -> CallResult {
    Ok(candid::encode_args(v).expect("candid encoding of a management reply"))
}

fn canister_error(m: impl Into<String>) -> Reject {
    reject(RejectCode::CanisterError, m)
}

impl Testbed {
    /// A call to the management canister, answered now (or, for `stop_canister`, once the
    /// canister has stopped).
    pub(crate) fn management(
        &mut self,
        origin: Origin,
        caller: Principal,
        method: &str,
        arg: &[u8],
        cycles: u128,
    ) {
        let r = match method {
            "stop_canister" => match decode::<CanisterIdRecord>(method, arg) {
                Ok(a) => match self.stop(caller, a.canister_id) {
                    Ok(true) => ok(()),
                    Ok(false) => {
                        let c = self.canisters.get_mut(&a.canister_id).expect("checked");
                        c.stop_waiters.push(origin);
                        return;
                    }
                    Err(e) => Err(e),
                },
                Err(e) => Err(e),
            },
            _ => self.management_now(caller, method, arg, cycles),
        };
        let refund = if r.is_err() { cycles } else { 0 };
        self.answer(origin, r, refund);
    }

    fn management_now(
        &mut self,
        caller: Principal,
        method: &str,
        arg: &[u8],
        cycles: u128,
    ) -> CallResult {
        match method {
            "create_canister" => {
                let a: CreateCanisterArgs = decode(method, arg)?;
                let id = self.create_with(caller, a.settings, cycles);
                ok((CanisterIdRecord { canister_id: id },))
            }
            "provisional_create_canister_with_cycles" => {
                let a: ProvisionalCreateCanisterWithCyclesArgs = decode(method, arg)?;
                let amount = a
                    .amount
                    .map_or(0u128, |n| u128::try_from(n.0).unwrap_or(u128::MAX));
                let id = self.create_with(caller, a.settings, amount + cycles);
                ok((CanisterIdRecord { canister_id: id },))
            }
            "install_code" => {
                let a: InstallCodeArgs = decode(method, arg)?;
                let (mode, skip_pre) = mode(&a.mode);
                self.install(caller, a.canister_id, mode, skip_pre, &a.wasm_module, a.arg)?;
                ok(())
            }
            "upload_chunk" => {
                let a: UploadChunkArgs = decode(method, arg)?;
                let hash = self.upload_chunk(caller, a.canister_id, a.chunk)?;
                ok((ChunkHash {
                    hash: hash.to_vec(),
                },))
            }
            "install_chunked_code" => {
                let a: InstallChunkedCodeArgs = decode(method, arg)?;
                let store = a.store_canister.unwrap_or(a.target_canister);
                self.check_controller(caller, store)?;
                let chunks = &self.canisters[&store].chunks;
                let mut wasm = Vec::new();
                for h in &a.chunk_hashes_list {
                    let key: [u8; 32] = h.hash.as_slice().try_into().map_err(|_| {
                        reject(RejectCode::CanisterReject, "a chunk hash is not 32 bytes")
                    })?;
                    let chunk = chunks.get(&key).ok_or_else(|| {
                        canister_error(format!("chunk {} is not in the chunk store", hex(&key)))
                    })?;
                    wasm.extend_from_slice(chunk);
                }
                let got: [u8; 32] = Sha256::digest(&wasm).into();
                if got.as_slice() != a.wasm_module_hash.as_slice() {
                    return Err(canister_error(format!(
                        "the chunks hash to {}, not to the wasm_module_hash given",
                        hex(&got)
                    )));
                }
                let (mode, skip_pre) = mode(&a.mode);
                self.install(caller, a.target_canister, mode, skip_pre, &wasm, a.arg)?;
                ok(())
            }
            "clear_chunk_store" => {
                let a: CanisterIdRecord = decode(method, arg)?;
                self.check_controller(caller, a.canister_id)?;
                self.canisters
                    .get_mut(&a.canister_id)
                    .expect("checked")
                    .chunks
                    .clear();
                ok(())
            }
            "stored_chunks" => {
                let a: CanisterIdRecord = decode(method, arg)?;
                self.check_controller(caller, a.canister_id)?;
                let hashes: Vec<ChunkHash> = self.canisters[&a.canister_id]
                    .chunks
                    .keys()
                    .map(|h| ChunkHash { hash: h.to_vec() })
                    .collect();
                ok((hashes,))
            }
            "canister_status" => {
                let a: CanisterIdRecord = decode(method, arg)?;
                let s = self.canister_status(caller, a.canister_id)?;
                ok((s,))
            }
            "deposit_cycles" => {
                let a: CanisterIdRecord = decode(method, arg)?;
                let c = self.canisters.get_mut(&a.canister_id).ok_or_else(|| {
                    canister_error(format!("canister {} not found", a.canister_id))
                })?;
                c.cycles += cycles;
                ok(())
            }
            "start_canister" => {
                let a: CanisterIdRecord = decode(method, arg)?;
                self.check_controller(caller, a.canister_id)?;
                let c = self.canisters.get_mut(&a.canister_id).expect("checked");
                c.status = Status::Running;
                let waiters = std::mem::take(&mut c.stop_waiters);
                for w in waiters {
                    self.answer(
                        w,
                        Err(canister_error("start_canister was called while stopping")),
                        0,
                    );
                }
                ok(())
            }
            "delete_canister" => {
                let a: CanisterIdRecord = decode(method, arg)?;
                self.check_controller(caller, a.canister_id)?;
                if self.canisters[&a.canister_id].status != Status::Stopped {
                    return Err(canister_error("only a stopped canister can be deleted"));
                }
                self.canisters.remove(&a.canister_id);
                ok(())
            }
            "update_settings" => {
                let a: UpdateSettingsArgs = decode(method, arg)?;
                self.check_controller(caller, a.canister_id)?;
                if let Some(cs) = a.settings.controllers {
                    self.canisters
                        .get_mut(&a.canister_id)
                        .expect("checked")
                        .controllers = cs;
                }
                ok(())
            }
            "raw_rand" => {
                let mut b = [0u8; 32];
                for chunk in b.chunks_mut(8) {
                    chunk.copy_from_slice(&self.rng.next().to_le_bytes());
                }
                ok((serde_bytes::ByteBuf::from(b.to_vec()),))
            }
            m => Err(reject(
                RejectCode::DestinationInvalid,
                format!("the testbed's management canister has no method '{m}'"),
            )),
        }
    }

    fn create_with(
        &mut self,
        caller: Principal,
        settings: Option<CanisterSettings>,
        cycles: u128,
    ) -> Principal {
        let controllers = settings
            .and_then(|s| s.controllers)
            .unwrap_or_else(|| vec![caller]);
        self.create_canister(controllers, cycles)
    }

    fn check_controller(&self, caller: Principal, canister: Principal) -> Result<(), Reject> {
        let c = self
            .canisters
            .get(&canister)
            .ok_or_else(|| canister_error(format!("canister {canister} not found")))?;
        if c.controllers.contains(&caller) {
            Ok(())
        } else {
            Err(canister_error(format!(
                "only the controllers of canister {canister} may call this; {caller} is not one"
            )))
        }
    }

    /// `upload_chunk`: stores a chunk in `canister`'s chunk store; answers its SHA-256.
    pub fn upload_chunk(
        &mut self,
        caller: Principal,
        canister: Principal,
        chunk: Vec<u8>,
    ) -> Result<[u8; 32], Reject> {
        self.check_controller(caller, canister)?;
        if chunk.len() > MAX_CHUNK_BYTES {
            return Err(canister_error(format!(
                "a chunk is {} bytes; the limit is {MAX_CHUNK_BYTES}",
                chunk.len()
            )));
        }
        let hash: [u8; 32] = Sha256::digest(&chunk).into();
        let c = self.canisters.get_mut(&canister).expect("checked");
        if !c.chunks.contains_key(&hash) && c.chunks.len() >= MAX_CHUNKS {
            return Err(canister_error(format!(
                "the chunk store is full ({MAX_CHUNKS} chunks)"
            )));
        }
        c.chunks.insert(hash, chunk);
        Ok(hash)
    }

    /// `canister_status`, for a controller or the canister itself.
    pub fn canister_status(
        &self,
        caller: Principal,
        canister: Principal,
    ) -> Result<CanisterStatusResult, Reject> {
        if caller != canister {
            self.check_controller(caller, canister)?;
        }
        let c = &self.canisters[&canister];
        let heap = self.heap_size(canister).unwrap_or(0);
        let stable = self.stable_size(canister).unwrap_or(0);
        let wasm = c.live.as_ref().map_or(0, |l| l.code.wasm_len) as u64;
        let chunks: u64 = c.chunks.values().map(|v| v.len() as u64).sum();
        Ok(CanisterStatusResult {
            status: match c.status {
                Status::Running => CanisterStatusType::Running,
                Status::Stopping => CanisterStatusType::Stopping,
                Status::Stopped => CanisterStatusType::Stopped,
            },
            ready_for_migration: false,
            version: c.version,
            settings: DefiniteCanisterSettings {
                controllers: c.controllers.clone(),
                ..Default::default()
            },
            module_hash: c.live.as_ref().map(|l| l.code.hash.to_vec()),
            memory_size: Nat::from(heap + stable + wasm + chunks),
            memory_metrics: MemoryMetrics {
                wasm_memory_size: Nat::from(heap),
                stable_memory_size: Nat::from(stable),
                global_memory_size: Nat::from(0u32),
                wasm_binary_size: Nat::from(wasm),
                custom_sections_size: Nat::from(0u32),
                canister_history_size: Nat::from(0u32),
                wasm_chunk_store_size: Nat::from(chunks),
                snapshots_size: Nat::from(0u32),
                log_memory_store_size: Nat::from(0u32),
            },
            cycles: Nat::from(c.cycles),
            reserved_cycles: Nat::from(0u32),
            idle_cycles_burned_per_day: Nat::from(0u32),
            query_stats: QueryStats {
                num_calls_total: Nat::from(0u32),
                num_instructions_total: Nat::from(0u32),
                request_payload_bytes_total: Nat::from(0u32),
                response_payload_bytes_total: Nat::from(0u32),
            },
        })
    }

    /// `stop_canister`: `Ok(true)` when stopped now, `Ok(false)` when it is stopping (no new
    /// calls; it stops once its open call contexts close).
    fn stop(&mut self, caller: Principal, canister: Principal) -> Result<bool, Reject> {
        self.check_controller(caller, canister)?;
        let open = self.open_contexts(canister);
        let c = self.canisters.get_mut(&canister).expect("checked");
        match c.status {
            Status::Stopped => Ok(true),
            _ if open == 0 => {
                c.status = Status::Stopped;
                Ok(true)
            }
            _ => {
                c.status = Status::Stopping;
                Ok(false)
            }
        }
    }

    /// `install_code` as `caller` (a controller): installs, reinstalls or upgrades. Atomic:
    /// if anything traps the canister is left exactly as it was. The module may be gzipped.
    pub fn install(
        &mut self,
        caller: Principal,
        canister: Principal,
        mode: InstallMode,
        skip_pre_upgrade: bool,
        wasm: &[u8],
        arg: Vec<u8>,
    ) -> Result<(), Reject> {
        self.check_controller(caller, canister)?;
        let substitute = self.substitute(wasm);
        let wasm = substitute.as_deref().map_or(wasm, Vec::as_slice);
        let code = compile(wasm).map_err(|e| canister_error(format!("install_code: {e}")))?;
        let time = self.time;
        let install_limit = self.config.limits.install;
        let c: &mut Canister = self.canisters.get_mut(&canister).expect("checked");
        let mut used = 0;
        let mut old_state = None;
        let stable = match (mode, c.live.as_mut()) {
            (InstallMode::Install, Some(_)) => {
                return Err(canister_error(format!(
                    "canister {canister} already has code: use reinstall or upgrade"
                )))
            }
            (InstallMode::Upgrade, None) => {
                return Err(canister_error(format!(
                    "canister {canister} is empty: nothing to upgrade"
                )))
            }
            (InstallMode::Upgrade, Some(old)) => {
                let mut before = Snapshot::default();
                old.snapshot(&mut before);
                let saved_stable = old.store.data().stable.clone();
                if !skip_pre_upgrade && old.has_export("canister_pre_upgrade") {
                    let exec = exec_for(
                        Kind::PreUpgrade,
                        canister,
                        c.controllers.clone(),
                        c.cycles,
                        c.timer,
                        c.version,
                        c.status,
                        time,
                        caller,
                        "",
                        Vec::new(),
                    );
                    let mut snap = Snapshot::default();
                    let run = old.run(
                        &Entry::Export("canister_pre_upgrade".into()),
                        exec,
                        install_limit,
                        &mut snap,
                    );
                    used = run.instructions;
                    if let Some(t) = run.trap {
                        self.last_instructions.insert(canister, used);
                        return Err(canister_error(format!("pre_upgrade trapped: {t}")));
                    }
                }
                let stable = old.store.data().stable.clone();
                old_state = Some((before, saved_stable));
                stable
            }
            _ => Vec::new(),
        };
        let mut live = match instantiate(&code, stable) {
            Ok(l) => l,
            Err(e) => {
                let c = self.canisters.get_mut(&canister).expect("checked");
                restore_old(c, old_state);
                return Err(canister_error(format!("install_code: {e}")));
            }
        };
        let c = self.canisters.get_mut(&canister).expect("checked");
        let (kind, entry) = if mode == InstallMode::Upgrade {
            (Kind::PostUpgrade, "canister_post_upgrade")
        } else {
            (Kind::Init, "canister_init")
        };
        let mut balance = c.cycles;
        let mut timer = 0;
        if live.has_export(entry) {
            let exec = exec_for(
                kind,
                canister,
                c.controllers.clone(),
                c.cycles,
                0,
                c.version + 1,
                c.status,
                time,
                caller,
                "",
                arg,
            );
            let mut snap = Snapshot::default();
            let run = live.run(
                &Entry::Export(entry.into()),
                exec,
                install_limit - used,
                &mut snap,
            );
            used += run.instructions;
            self.last_instructions.insert(canister, used);
            if let Some(t) = run.trap {
                let c = self.canisters.get_mut(&canister).expect("checked");
                restore_old(c, old_state);
                let what = if mode == InstallMode::Upgrade {
                    "post_upgrade"
                } else {
                    "init"
                };
                return Err(canister_error(format!("{what} trapped: {t}")));
            }
            balance = run.exec.balance;
            timer = run.exec.timer;
        }
        let log = std::mem::take(&mut live.store.data_mut().log);
        let c = self.canisters.get_mut(&canister).expect("checked");
        c.live = Some(live);
        c.cycles = balance;
        c.timer = timer;
        c.version += 1;
        c.certified_data.clear();
        self.log.extend(log);
        self.delete_contexts(canister);
        Ok(())
    }
}

fn restore_old(c: &mut Canister, old: Option<(Snapshot, Vec<u8>)>) {
    if let (Some((snap, stable)), Some(live)) = (old, c.live.as_mut()) {
        live.store.data_mut().stable = stable;
        live.restore(&snap);
    }
}

fn mode(m: &CanisterInstallMode) -> (InstallMode, bool) {
    match m {
        CanisterInstallMode::Install => (InstallMode::Install, false),
        CanisterInstallMode::Reinstall => (InstallMode::Reinstall, false),
        CanisterInstallMode::Upgrade(flags) => (
            InstallMode::Upgrade,
            flags
                .as_ref()
                .and_then(|f| f.skip_pre_upgrade)
                .unwrap_or(false),
        ),
    }
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}
