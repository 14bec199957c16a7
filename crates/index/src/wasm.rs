//! The partition wasm: an admin uploads it in pieces into the inactive of two slots; it
//! becomes active once complete and its SHA-256 matches. Partition-creation jobs
//! (`jobs.rs`) and fleet upgrades (`upgrades.rs`) install it through [`Index::install_step`]:
//! whole (inline install) or chunk by chunk (chunked install).

use crate::calls::{InstallMode, Request};
use crate::records::*;
use crate::{Env, Index};
use candid::Principal;
use flotilla_types::index::{UploadProgress, UploadWasmError, WasmChunk};
use flotilla_types::limits::{MAX_PARTITION_WASM_BYTES, MAX_WASM_UPLOAD_CHUNK_BYTES};
use ic_stable_structures::Memory;
use serde_bytes::ByteBuf;
use sha2::{Digest, Sha256};

/// The IC's chunk-store chunk size.
pub const WASM_CHUNK_BYTES: usize = 1024 * 1024;
/// Storage piece of the wasm slots.
const WASM_STORE_PIECE: usize = 1024 * 1024;

impl<M: Memory> Index<M> {
    /// Receives the partition wasm in pieces, in order. Offset 0 starts a new upload into the
    /// inactive slot; the module becomes active once every byte arrived and its SHA-256
    /// matches. The active module stays in use until then.
    pub fn upload_partition_wasm(
        &mut self,
        env: &Env,
        chunk: WasmChunk,
    ) -> Result<UploadProgress, UploadWasmError> {
        if !self.is_admin(&env.caller) {
            return Err(UploadWasmError::NotAuthorized);
        }
        if chunk.total_len > MAX_PARTITION_WASM_BYTES as u64 {
            return Err(UploadWasmError::TooLarge {
                len: chunk.total_len,
                max: MAX_PARTITION_WASM_BYTES as u64,
            });
        }
        if chunk.bytes.len() > MAX_WASM_UPLOAD_CHUNK_BYTES {
            return Err(UploadWasmError::ChunkTooLarge {
                len: chunk.bytes.len() as u64,
                max: MAX_WASM_UPLOAD_CHUNK_BYTES as u64,
            });
        }
        let mut upload = match (&self.cfg().upload, chunk.offset) {
            (_, 0) => {
                // The inactive slot is emptied below, once the piece passed every check: a
                // refused piece leaves an upload in progress as it was.
                let slot = self.cfg().wasm.as_ref().map_or(0, |w| w.slot ^ 1);
                Upload {
                    slot,
                    total_len: chunk.total_len,
                    sha256: chunk.sha256.clone(),
                    received: 0,
                }
            }
            (Some(u), off) if off == u.received => u.clone(),
            (u, off) => {
                return Err(UploadWasmError::OutOfOrder {
                    expected: u.as_ref().map_or(0, |u| u.received),
                    got: off,
                })
            }
        };
        if upload.total_len != chunk.total_len || upload.sha256 != chunk.sha256 {
            return Err(UploadWasmError::Mismatch);
        }
        if upload.received + chunk.bytes.len() as u64 > upload.total_len {
            return Err(UploadWasmError::TooLarge {
                len: upload.received + chunk.bytes.len() as u64,
                max: upload.total_len,
            });
        }
        if chunk.offset == 0 {
            self.wasm[upload.slot as usize].clear_new();
        }
        // Store in fixed pieces so the module is read back in order.
        let slot = &mut self.wasm[upload.slot as usize];
        let mut pos = upload.received as usize;
        for b in chunk.bytes.chunks(WASM_STORE_PIECE) {
            let mut rest = b;
            while !rest.is_empty() {
                let piece = (pos / WASM_STORE_PIECE) as u32;
                let mut cur = slot.get(&piece).unwrap_or_default();
                let room = WASM_STORE_PIECE - cur.len();
                let take = room.min(rest.len());
                cur.extend_from_slice(&rest[..take]);
                slot.insert(piece, cur);
                pos += take;
                rest = &rest[take..];
            }
        }
        upload.received = pos as u64;
        let complete = upload.received == upload.total_len;
        if complete {
            let wasm = self.read_wasm(upload.slot);
            let sha = Sha256::digest(&wasm).to_vec();
            if sha != upload.sha256.as_slice() {
                self.update_cfg(|c| c.upload = None);
                return Err(UploadWasmError::HashMismatch);
            }
            let meta = WasmMeta {
                slot: upload.slot,
                len: upload.total_len,
                sha256: upload.sha256.clone(),
            };
            self.update_cfg(|c| {
                c.wasm = Some(meta);
                c.upload = None;
            });
        } else {
            self.update_cfg(|c| c.upload = Some(upload.clone()));
        }
        Ok(UploadProgress {
            received: upload.received,
            complete,
        })
    }

    pub(crate) fn read_wasm(&self, slot: u8) -> Vec<u8> {
        let mut out = vec![];
        for e in self.wasm[slot as usize].iter() {
            out.extend_from_slice(&e.value());
        }
        out
    }

    #[cfg(test)]
    pub(crate) fn active_wasm(&self) -> Option<Vec<u8>> {
        self.cfg().wasm.as_ref().map(|w| self.read_wasm(w.slot))
    }

    /// Chunk `n` (of `WASM_CHUNK_BYTES`) of the module in `slot`, if it has one.
    pub(crate) fn wasm_piece(&self, slot: u8, n: usize) -> Option<Vec<u8>> {
        // Storage pieces and chunk-store chunks have the same size.
        const _: () = assert!(WASM_STORE_PIECE == WASM_CHUNK_BYTES);
        self.wasm[slot as usize]
            .get(&u32::try_from(n).ok()?)
            .filter(|p| !p.is_empty())
    }

    /// The next call installing the active module into `canister` with `mode`: inline when it
    /// is small enough, else its chunks uploaded into the canister's chunk store one call at a
    /// time (`hashes`: those uploaded so far) and then installed from there. `pinned` is the
    /// module the install started with: should an admin have activated another since, the
    /// upload starts over with it, so no step indexes another module's chunk list. Shared by
    /// partition-creation jobs (`jobs.rs`) and fleet upgrades (`upgrades.rs`). None without an
    /// active module.
    pub(crate) fn install_step(
        &self,
        canister: Principal,
        mode: InstallMode,
        pinned: &mut Option<ByteBuf>,
        hashes: &mut Vec<ByteBuf>,
        arg: ByteBuf,
    ) -> Option<(Request, InstallStage)> {
        let meta = self.cfg().wasm.clone()?;
        if pinned.as_ref() != Some(&meta.sha256) {
            *pinned = Some(meta.sha256.clone());
            hashes.clear();
        }
        if meta.len <= self.cfg().inline_install_limit {
            let wasm = ByteBuf::from(self.read_wasm(meta.slot));
            let req = Request::InstallCode {
                canister,
                mode,
                wasm,
                arg,
            };
            return Some((req, InstallStage::Inline));
        }
        let pieces = meta.len.div_ceil(WASM_CHUNK_BYTES as u64) as usize;
        if hashes.len() >= pieces {
            hashes.truncate(pieces);
            let req = Request::InstallChunkedCode {
                canister,
                mode,
                chunk_hashes: hashes.clone(),
                wasm_sha256: meta.sha256,
                arg,
            };
            Some((req, InstallStage::Chunked))
        } else {
            let chunk = self.wasm_piece(meta.slot, hashes.len())?;
            let req = Request::UploadChunk {
                canister,
                chunk: ByteBuf::from(chunk),
            };
            Some((req, InstallStage::Upload))
        }
    }
}

/// Which call [`Index::install_step`] returned.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum InstallStage {
    Inline,
    Upload,
    Chunked,
}
