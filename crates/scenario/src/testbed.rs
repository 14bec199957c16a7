//! The scenario's world on the testbed: the real canister wasm in wasmtime behind the IC
//! System API (`flotilla_testbed`).

use crate::{enc, scenario_admin, Reject, World};
use candid::Principal;
use flotilla_testbed::{InstallMode, Testbed};
use flotilla_types::index::IndexInit;
use std::path::PathBuf;

/// Cycles the index starts with (it pays for the partitions it creates).
pub const INDEX_CYCLES: u128 = 1_000_000_000_000_000;

/// A testbed running `index.wasm.gz`, with `partition.wasm.gz` for the index to upload.
pub struct TestbedWorld {
    pub tb: Testbed,
    index_wasm: Vec<u8>,
    partition_wasm: Vec<u8>,
    index: Option<Principal>,
}

/// `target/wasm/<name>.wasm.gz` as `scripts/build-wasm.sh` leaves it; the error names the
/// script when it is missing.
pub fn built_wasm(name: &str) -> Result<Vec<u8>, String> {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../../target/wasm")
        .join(format!("{name}.wasm.gz"));
    std::fs::read(&path).map_err(|e| {
        format!(
            "{}: {e}. Build the canister wasm first: scripts/build-wasm.sh",
            path.display()
        )
    })
}

impl TestbedWorld {
    /// A world over `tb` with these modules (raw or gzipped).
    pub fn new(tb: Testbed, index_wasm: Vec<u8>, partition_wasm: Vec<u8>) -> Self {
        TestbedWorld {
            tb,
            index_wasm,
            partition_wasm,
            index: None,
        }
    }

    /// A world with the modules of `scripts/build-wasm.sh`.
    pub fn with_built_wasm(tb: Testbed) -> Result<Self, String> {
        Ok(Self::new(
            tb,
            built_wasm("index")?,
            built_wasm("partition")?,
        ))
    }
}

fn reject(r: flotilla_testbed::Reject) -> Reject {
    Reject {
        code: r.code as u32,
        message: r.message,
    }
}

impl World for TestbedWorld {
    fn name(&self) -> &str {
        "testbed"
    }

    fn admin(&self) -> Principal {
        scenario_admin()
    }

    fn install_index(&mut self, init: &IndexInit) -> Result<Principal, String> {
        let admin = self.admin();
        let id = self.tb.create_canister(vec![admin], INDEX_CYCLES);
        self.tb
            .install(
                admin,
                id,
                InstallMode::Install,
                false,
                &self.index_wasm,
                enc(init.clone()),
            )
            .map_err(|e| e.to_string())?;
        self.index = Some(id);
        Ok(id)
    }

    fn partition_module(&self) -> Vec<u8> {
        self.partition_wasm.clone()
    }

    fn update(
        &mut self,
        caller: Principal,
        canister: Principal,
        method: &str,
        arg: Vec<u8>,
    ) -> Result<Vec<u8>, Reject> {
        self.tb
            .update(caller, canister, method, arg)
            .map_err(reject)
    }

    fn query(
        &mut self,
        caller: Principal,
        canister: Principal,
        method: &str,
        arg: Vec<u8>,
    ) -> Result<Vec<u8>, Reject> {
        self.tb.query(caller, canister, method, arg).map_err(reject)
    }

    fn tick(&mut self) {
        self.tb.tick()
    }

    /// As the canister's first controller: the admin for the index, the index for the
    /// partitions it created.
    fn upgrade(&mut self, canister: Principal) -> Result<(), String> {
        let controller = self
            .tb
            .controllers(canister)
            .and_then(|c| c.first().copied())
            .ok_or_else(|| format!("canister {canister} has no controller"))?;
        let wasm = if Some(canister) == self.index {
            &self.index_wasm
        } else {
            &self.partition_wasm
        };
        self.tb
            .install(
                controller,
                canister,
                InstallMode::Upgrade,
                false,
                wasm,
                enc(()),
            )
            .map_err(|e| e.to_string())
    }

    /// The partition module uncompressed: the same code, another SHA-256 (the IC and the
    /// testbed take raw and gzipped modules alike).
    fn next_partition_module(&self) -> Vec<u8> {
        flotilla_testbed::decompress(&self.partition_wasm).expect("the built partition module")
    }

    /// Marks `partition`'s stable layout as version 2 (the `FLPT` state cell, `layout.rs`), as
    /// a newer build would have written it: this build's `post_upgrade` refuses it and traps,
    /// whatever module it comes in. The running module keeps its state in memory and is not
    /// affected. (`module` is the one about to be installed; any module of this build traps.)
    fn break_post_upgrade(&mut self, partition: Principal, _module: &[u8]) -> Result<(), String> {
        let size = self
            .tb
            .stable_size(partition)
            .ok_or_else(|| format!("no canister {partition}"))?;
        let mut stable = self
            .tb
            .read_stable(partition, 0, size as usize)
            .ok_or_else(|| format!("cannot read the stable memory of {partition}"))?;
        let mut version_1 = b"FLPT".to_vec();
        version_1.extend_from_slice(&1u16.to_le_bytes());
        let at: Vec<usize> = stable
            .windows(version_1.len())
            .enumerate()
            .filter(|(_, w)| *w == version_1.as_slice())
            .map(|(i, _)| i)
            .collect();
        let [at] = at[..] else {
            return Err(format!(
                "{} copies of the partition state header in {partition}'s stable memory",
                at.len()
            ));
        };
        stable[at + 4..at + 6].copy_from_slice(&2u16.to_le_bytes());
        self.tb.set_stable_memory(partition, stable)
    }

    fn module_hash(&self, canister: Principal) -> Option<Vec<u8>> {
        self.tb.module_hash(canister).map(|h| h.to_vec())
    }
}
