//! The scenario's world on the simulator (`flotilla_sim::World`): the real index and partition
//! logic, compiled natively, under the simulator's message semantics and invariant checkers,
//! with every fault knob off and no simulated users.

use crate::{Reject, ScenarioConfig, World};
use candid::Principal;
use flotilla_client::core::{RejectCode, TransportError};
use flotilla_sim::{Faults, SimConfig};
use flotilla_types::dispatch::MethodKind;
use flotilla_types::index::IndexInit;
use sha2::{Digest, Sha256};

/// Rounds one call may take before the world gives up on its answer.
const MAX_CALL_ROUNDS: u32 = 1_000;

/// A simulated deployment driven by the scenario. The simulator builds its index with the
/// world (installed by its own admin with `IndexInit { admins: [admin], spare_pool_target,
/// move_cap_bytes, .. }`, a filler partition module uploaded), so [`World::install_index`]
/// checks the scenario's argument against those knobs. The cycles fields are the simulator's
/// own (`SimConfig::cycles`: its partitions burn cycles and the index tops them up), and the
/// scenario leaves them at their defaults.
pub struct SimWorld {
    pub sim: flotilla_sim::World,
    seed: u64,
    /// `sim seed=N`: every failure message of the scenario names the seed.
    name: String,
}

impl SimWorld {
    /// A world of seed `seed` (latencies, tick period) with `cfg`'s move cap, a spare-pool
    /// target of 1, no faults and no simulated users; it runs until the scenario stops
    /// stepping it.
    pub fn new(seed: u64, cfg: &ScenarioConfig) -> Self {
        let mut c = SimConfig::from_seed(seed, 0)
            .with_faults(Faults::NONE)
            .with_open_creates();
        c.clients = 0;
        c.move_cap_bytes = cfg.move_cap_bytes;
        c.spare_pool_target = 1;
        let mut sim = flotilla_sim::World::new(c);
        sim.set_open_ended(true);
        SimWorld {
            sim,
            seed,
            name: format!("sim seed={seed}"),
        }
    }

    pub fn seed(&self) -> u64 {
        self.seed
    }

    /// Steps the world until the answer to `ticket` arrives.
    fn wait(&mut self, ticket: u64, method: &str) -> Result<Vec<u8>, Reject> {
        for _ in 0..MAX_CALL_ROUNDS {
            if let Some(r) = self.sim.take_reply(ticket) {
                return r.map_err(reject);
            }
            assert!(
                !self.sim.halted(),
                "seed={}: the simulator halted: {:?}",
                self.seed,
                self.sim.violations()
            );
            self.sim.step();
        }
        panic!(
            "seed={}: {method} got no answer in {MAX_CALL_ROUNDS} rounds",
            self.seed
        );
    }
}

fn reject(e: TransportError) -> Reject {
    let code = match e.code {
        RejectCode::SysFatal => 1,
        RejectCode::SysTransient => 2,
        RejectCode::DestinationInvalid => 3,
        RejectCode::CanisterReject => 4,
        RejectCode::CanisterError => 5,
        RejectCode::SysUnknown => 6,
        RejectCode::Transport => 0,
    };
    Reject {
        code,
        message: e.message,
    }
}

impl World for SimWorld {
    fn name(&self) -> &str {
        &self.name
    }

    fn admin(&self) -> Principal {
        self.sim.admin()
    }

    fn install_index(&mut self, init: &IndexInit) -> Result<Principal, String> {
        let c = self.sim.config();
        let built = IndexInit {
            admins: vec![self.sim.admin()],
            spare_pool_target: Some(c.spare_pool_target),
            move_cap_bytes: Some(c.move_cap_bytes),
            ..IndexInit::default()
        };
        if *init != built {
            return Err(format!(
                "the simulator installed its index with {built:?}, the scenario asks for {init:?}"
            ));
        }
        Ok(self.sim.index_id())
    }

    /// Filler bytes with a wasm header: the simulated partitions run native logic.
    fn partition_module(&self) -> Vec<u8> {
        let mut m = b"\0asm\x01\0\0\0".to_vec();
        let mut x = 0x2545_f491_4f6c_dd1du64 ^ self.seed;
        while m.len() < 300_000 {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            m.push(x as u8);
        }
        m
    }

    fn update(
        &mut self,
        caller: Principal,
        canister: Principal,
        method: &str,
        arg: Vec<u8>,
    ) -> Result<Vec<u8>, Reject> {
        let t = self
            .sim
            .submit(caller, canister, method, MethodKind::Update, arg);
        self.wait(t, method)
    }

    fn query(
        &mut self,
        caller: Principal,
        canister: Principal,
        method: &str,
        arg: Vec<u8>,
    ) -> Result<Vec<u8>, Reject> {
        let t = self
            .sim
            .submit(caller, canister, method, MethodKind::Query, arg);
        self.wait(t, method)
    }

    fn tick(&mut self) {
        self.sim.step()
    }

    fn upgrade(&mut self, canister: Principal) -> Result<(), String> {
        self.sim.upgrade(canister);
        if self.sim.halted() {
            return Err(format!(
                "seed={}: the upgrade of {canister} halted the simulator: {:?}",
                self.seed,
                self.sim.violations()
            ));
        }
        Ok(())
    }

    /// The seed's filler with its last byte changed.
    fn next_partition_module(&self) -> Vec<u8> {
        let mut m = self.partition_module();
        if let Some(b) = m.last_mut() {
            *b ^= 0xff;
        }
        m
    }

    fn break_post_upgrade(&mut self, partition: Principal, module: &[u8]) -> Result<(), String> {
        self.sim
            .trap_post_upgrade(partition, Sha256::digest(module).to_vec());
        Ok(())
    }

    fn module_hash(&self, canister: Principal) -> Option<Vec<u8>> {
        self.sim.module_hash(canister)
    }
}
