//! The management canister: `create_canister`, `install_code`, `upload_chunk` and
//! `install_chunked_code`, as the index's partition-creation jobs and fleet upgrades call
//! them, `stop_canister` and `start_canister` (fleet upgrades), and `canister_status` and
//! `deposit_cycles` (cycles care, fleet upgrades). Attached cycles leave the index when the
//! call executes (a call rejected before costs nothing). Each canister's module hash is kept
//! and reported by `canister_status`. The partition stopped for good by a hazard does not
//! answer its controller either: calls about it are rejected until it comes back.

use super::{guard, principal_word, World, CREATION_FEE};
use crate::canister::{canister_id, Canister, Logic};
use crate::faults::Fate;
use candid::Principal;
use flotilla_index::calls::{Call, CallResult, InstallMode, Reject, Request, Response};
use flotilla_partition::Partition;
use flotilla_store::Config as StoreConfig;
use flotilla_types::partition::PartitionInit;
use serde_bytes::ByteBuf;
use sha2::{Digest, Sha256};

impl World {
    pub(super) fn exec_management(&mut self, call: &Call, fate: Fate) -> CallResult {
        let result = self.exec_management_fated(call, fate);
        if let (
            Err(_),
            Request::CanisterStatus { canister } | Request::DepositCycles { canister, .. },
        ) = (&result, &call.request)
        {
            self.note_cycles_call_failed(*canister);
        }
        result
    }

    fn exec_management_fated(&mut self, call: &Call, fate: Fate) -> CallResult {
        let reject = |certain: bool, message: String| Err(Reject { message, certain });
        self.stats.faults.record(false, fate);
        match fate {
            Fate::RejectBefore => return reject(true, "injected reject".into()),
            Fate::Trap => return reject(false, "injected trap".into()),
            Fate::Deliver | Fate::ReplyLost => {}
        }
        if self.cfg.bugs.install_first_module_only {
            let module = match &call.request {
                Request::InstallCode { wasm, .. } => Some(Sha256::digest(wasm).to_vec()),
                Request::InstallChunkedCode { wasm_sha256, .. } => Some(wasm_sha256.to_vec()),
                _ => None,
            };
            if module.is_some_and(|m| m != self.hz.first_module) {
                return reject(true, "planted bug: only the first module installs".into());
            }
        }
        let result = match &call.request {
            Request::CreateCanister { cycles } if *cycles < CREATION_FEE => reject(
                true,
                format!("{cycles} cycles attached; creating a canister costs {CREATION_FEE}"),
            ),
            Request::CreateCanister { cycles } => {
                let paid = self
                    .canisters
                    .get_mut(&self.index_id)
                    .is_some_and(|c| c.charge(*cycles));
                if paid {
                    let id = canister_id(self.next_canister);
                    self.next_canister += 1;
                    self.canisters
                        .insert(id, Canister::new(id, cycles - CREATION_FEE, self.round));
                    self.trace(&[0xc4ea, principal_word(&id)]);
                    self.say(|| format!("created canister {id}"));
                    Ok(Response::CanisterCreated(id))
                } else {
                    reject(true, "the index cannot pay for a new canister".into())
                }
            }
            Request::InstallCode { canister, .. }
            | Request::InstallChunkedCode { canister, .. }
            | Request::StopCanister { canister }
            | Request::StartCanister { canister }
                if self.dead_now(canister) =>
            {
                reject(true, format!("canister {canister} does not answer"))
            }
            Request::InstallCode {
                canister,
                mode,
                arg,
                wasm,
            } => self.install(*canister, *mode, arg, Sha256::digest(wasm).to_vec()),
            Request::StopCanister { canister } => match self.canisters.get_mut(canister) {
                Some(c) => {
                    c.stopped_until = Some(u64::MAX);
                    self.say(|| format!("the index stops {canister}"));
                    Ok(Response::Stopped)
                }
                None => reject(true, format!("no canister {canister}")),
            },
            Request::StartCanister { canister } => match self.canisters.get_mut(canister) {
                Some(c) => {
                    if !self.cfg.bugs.ignore_start_canister {
                        c.stopped_until = None;
                    }
                    self.say(|| format!("the index starts {canister}"));
                    Ok(Response::Started)
                }
                None => reject(true, format!("no canister {canister}")),
            },
            Request::UploadChunk { canister, chunk } => match self.canisters.get_mut(canister) {
                Some(c) => {
                    let hash = Sha256::digest(chunk).to_vec();
                    c.chunk_store.insert(hash.clone(), chunk.to_vec());
                    Ok(Response::ChunkUploaded {
                        hash: ByteBuf::from(hash),
                    })
                }
                None => reject(true, format!("no canister {canister}")),
            },
            Request::InstallChunkedCode {
                canister,
                mode,
                chunk_hashes,
                wasm_sha256,
                arg,
            } => {
                let assembled = match self.canisters.get(canister) {
                    None => Err(format!("no canister {canister}")),
                    Some(c) => chunk_hashes
                        .iter()
                        .map(|h| {
                            c.chunk_store
                                .get(h.as_slice())
                                .ok_or_else(|| "a chunk hash is not in the chunk store".to_string())
                        })
                        .collect::<Result<Vec<_>, _>>()
                        .map(|parts| {
                            let mut module =
                                Vec::with_capacity(parts.iter().map(|p| p.len()).sum());
                            for p in parts {
                                module.extend_from_slice(p);
                            }
                            module
                        }),
                };
                match assembled {
                    Err(e) => reject(true, e),
                    Ok(module) if Sha256::digest(&module).as_slice() != wasm_sha256.as_slice() => {
                        reject(true, "wasm_module_hash does not match the chunks".into())
                    }
                    Ok(_) => self.install(*canister, *mode, arg, wasm_sha256.to_vec()),
                }
            }
            Request::CanisterStatus { canister } => match self.canisters.get(canister) {
                Some(c) => Ok(Response::Status {
                    cycles: c.cycles,
                    module_hash: c.module.clone().map(ByteBuf::from),
                    stopped: c.stopped_until == Some(u64::MAX),
                }),
                None => reject(true, format!("no canister {canister}")),
            },
            Request::DepositCycles { canister, cycles } => {
                if !self.canisters.contains_key(canister) {
                    reject(true, format!("no canister {canister}"))
                } else if !self
                    .canisters
                    .get_mut(&self.index_id)
                    .is_some_and(|c| c.charge(*cycles))
                {
                    reject(true, "the index cannot pay the cycles attached".into())
                } else {
                    if !self.cfg.bugs.lost_deposits {
                        let c = self.canisters.get_mut(canister).expect("checked above");
                        c.cycles += cycles;
                    }
                    self.stats.top_ups += 1;
                    self.stats.topped_up += cycles;
                    Ok(Response::Deposited)
                }
            }
            other => reject(
                true,
                format!("the management canister has no method {}", other.method()),
            ),
        };
        if fate == Fate::ReplyLost {
            return reject(false, "injected lost reply".into());
        }
        result
    }

    /// `install_code` of the partition module (SHA-256 `module`): install into an empty
    /// canister, or upgrade — which, like the IC's, is all or nothing: a module that traps in
    /// `post_upgrade` (`--rolling-upgrades`) leaves the canister on its old module.
    fn install(
        &mut self,
        canister: Principal,
        mode: InstallMode,
        arg: &ByteBuf,
        module: Vec<u8>,
    ) -> CallResult {
        let reject = |message: String| {
            Err(Reject {
                message,
                certain: true,
            })
        };
        if mode == InstallMode::Upgrade {
            if self.post_upgrade_traps(canister, &module) {
                return reject(format!(
                    "canister {canister} trapped in post_upgrade: the new module cannot read its \
                     stable memory"
                ));
            }
            let Some(c) = self.canisters.get_mut(&canister) else {
                return reject(format!("no canister {canister}"));
            };
            return match c.upgrade() {
                Ok(()) => {
                    c.module = Some(module);
                    Ok(Response::Installed)
                }
                Err(e) => reject(format!("upgrade failed: {e}")),
            };
        }
        let init: PartitionInit = match candid::decode_one(arg) {
            Ok(i) => i,
            Err(e) => return reject(format!("install argument does not decode: {e}")),
        };
        let Some(c) = self.canisters.get_mut(&canister) else {
            return reject(format!("no canister {canister}"));
        };
        if mode == InstallMode::Reinstall {
            c.wipe();
        }
        match mode {
            InstallMode::Install | InstallMode::Reinstall => {
                if !c.is_empty() {
                    return reject(format!(
                        "canister {canister} is not empty; install mode needs an empty canister"
                    ));
                }
                let r = guard(|| Partition::install(c.memories(), &init, StoreConfig::default()));
                match r {
                    Err(p) => {
                        self.panicked("partition install", p);
                        reject("trapped".into())
                    }
                    Ok(Err(e)) => reject(format!("partition install trapped: {e}")),
                    Ok(Ok(p)) => {
                        c.logic = Logic::Partition(Box::new(p));
                        c.module = Some(module);
                        Ok(Response::Installed)
                    }
                }
            }
            InstallMode::Upgrade => unreachable!("upgrades return above"),
        }
    }
}
