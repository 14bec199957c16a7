//! The state a canister's wasm sees through the System API: its stable memory (with the
//! undo journal that makes a trap roll it back) and the context of the running message.

use crate::limits::JOURNAL_PAGE_BYTES;
use candid::Principal;
use std::collections::HashMap;

/// What kind of message runs: it decides which System API functions are allowed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    Init,
    PreUpgrade,
    PostUpgrade,
    Update,
    Query,
    Reply,
    Reject,
    Cleanup,
    Timer,
}

impl Kind {
    pub fn has_arg(self) -> bool {
        matches!(
            self,
            Kind::Init | Kind::PostUpgrade | Kind::Update | Kind::Query | Kind::Reply
        )
    }

    pub fn can_call(self) -> bool {
        matches!(
            self,
            Kind::Update | Kind::Reply | Kind::Reject | Kind::Timer
        )
    }
}

/// Where execution enters the module.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Entry {
    /// An exported function, by name (`canister_update put`, `canister_init`, ...).
    Export(String),
    /// A function of table 0 called with one `i32` environment argument (a callback).
    Table(u32, u32),
}

/// A call the canister made (`call_new` ... `call_perform`), sent when its message commits.
#[derive(Clone, Debug)]
pub struct OutCall {
    pub callee: Principal,
    pub method: String,
    pub arg: Vec<u8>,
    pub cycles: u128,
    pub reply: Entry,
    pub reject: Entry,
    pub cleanup: Option<Entry>,
}

/// How the canister answered the message's call context.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Response {
    Reply(Vec<u8>),
    /// `msg_reject`: a CANISTER_REJECT with this message.
    Reject(String),
}

/// The context of one running message.
#[derive(Clone, Debug)]
pub struct Exec {
    pub kind: Kind,
    pub self_id: Principal,
    pub caller: Principal,
    pub method: String,
    pub arg: Vec<u8>,
    /// `(code, message)` in a reject callback.
    pub reject: Option<(u32, String)>,
    /// The call context still awaits its answer (false once answered, and for system
    /// messages that have nobody to answer).
    pub needs_reply: bool,
    pub reply_data: Vec<u8>,
    pub response: Option<Response>,
    pub pending: Option<OutCall>,
    pub calls: Vec<OutCall>,
    pub time: u64,
    pub balance: u128,
    pub cycles_available: u128,
    pub cycles_accepted: u128,
    pub cycles_refunded: u128,
    pub timer: u64,
    pub controllers: Vec<Principal>,
    pub version: u64,
    /// 1 running, 2 stopping, 3 stopped (`ic0.canister_status`).
    pub status: u32,
    /// Fuel given to this message: instructions used = `limit - fuel left`.
    pub limit: u64,
    /// Instructions earlier messages of the same call context used.
    pub context_instructions: u64,
    pub certified_data: Option<Vec<u8>>,
}

impl Exec {
    pub fn can_reply(&self) -> bool {
        self.needs_reply && self.response.is_none()
    }
}

/// What one message asked of the System API: a profile beside its instruction count.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ApiStats {
    /// System API calls made.
    pub calls: u64,
    /// Instructions charged for them (included in the message's instructions).
    pub instructions: u64,
    pub stable_reads: u64,
    pub stable_read_bytes: u64,
    pub stable_writes: u64,
    pub stable_write_bytes: u64,
}

impl ApiStats {
    pub fn add(&mut self, o: &ApiStats) {
        self.calls += o.calls;
        self.instructions += o.instructions;
        self.stable_reads += o.stable_reads;
        self.stable_read_bytes += o.stable_read_bytes;
        self.stable_writes += o.stable_writes;
        self.stable_write_bytes += o.stable_write_bytes;
    }
}

/// A deterministic function profile: at every System API call the wasm stack is captured
/// and the instructions executed since the previous call are charged to the innermost
/// function (self) and to every function on the stack (inclusive). Work done between two
/// System API calls by functions that have already returned is charged to the stack seen at
/// the next call, so figures are attributions, not exact.
#[derive(Clone, Debug, Default)]
pub struct Profile {
    /// Fuel left at the last sample.
    pub last_fuel: u64,
    /// Function name → (self, inclusive) instructions.
    pub funcs: HashMap<String, (u64, u64)>,
    /// Instructions attributed in total.
    pub total: u64,
}

impl Profile {
    pub fn charge(&mut self, stack: &[String], instructions: u64) {
        self.total += instructions;
        let mut seen = std::collections::HashSet::new();
        for (i, f) in stack.iter().enumerate() {
            let e = self.funcs.entry(f.clone()).or_default();
            if i == 0 {
                e.0 += instructions;
            }
            if seen.insert(f) {
                e.1 += instructions;
            }
        }
    }
}

/// Store data of one canister instance.
#[derive(Default)]
pub struct Host {
    pub stable: Vec<u8>,
    /// Journal pages saved before their first write in this message: page → old bytes.
    undo: HashMap<u64, Box<[u8]>>,
    /// Stable memory length at the message start, once the message grew it.
    undo_len: Option<usize>,
    pub exec: Option<Exec>,
    /// `debug_print` lines, with the printing canister; drained by the testbed.
    pub log: Vec<(Principal, String)>,
    /// The running message's System API profile.
    pub api: ApiStats,
    /// The function profile, when enabled.
    pub profile: Option<Profile>,
}

impl Host {
    pub fn with_stable(stable: Vec<u8>) -> Host {
        Host {
            stable,
            ..Host::default()
        }
    }

    pub fn exec(&self) -> &Exec {
        self.exec
            .as_ref()
            .expect("System API call outside a message")
    }

    pub fn exec_mut(&mut self) -> &mut Exec {
        self.exec
            .as_mut()
            .expect("System API call outside a message")
    }

    /// Saves the journal pages of `[off, off + size)` not yet saved in this message.
    pub fn journal(&mut self, off: u64, size: u64) {
        if size == 0 {
            return;
        }
        let first = off / JOURNAL_PAGE_BYTES;
        let last = (off + size - 1) / JOURNAL_PAGE_BYTES;
        for page in first..=last {
            let stable = &self.stable;
            self.undo.entry(page).or_insert_with(|| {
                let a = (page * JOURNAL_PAGE_BYTES) as usize;
                let b = (a + JOURNAL_PAGE_BYTES as usize).min(stable.len());
                stable[a..b].into()
            });
        }
    }

    /// Remembers the length before the first growth of this message.
    pub fn journal_len(&mut self) {
        if self.undo_len.is_none() {
            self.undo_len = Some(self.stable.len());
        }
    }

    /// Keeps this message's stable writes.
    pub fn commit_stable(&mut self) {
        self.undo.clear();
        self.undo_len = None;
    }

    /// Undoes this message's stable writes and growth.
    pub fn rollback_stable(&mut self) {
        for (page, old) in self.undo.drain() {
            let a = (page * JOURNAL_PAGE_BYTES) as usize;
            self.stable[a..a + old.len()].copy_from_slice(&old);
        }
        if let Some(len) = self.undo_len.take() {
            self.stable.truncate(len);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[derive(Clone, Debug)]
    enum Op {
        Write { off: u64, bytes: Vec<u8> },
        Grow { pages: u64 },
    }

    fn op() -> impl Strategy<Value = Op> {
        prop_oneof![
            4 => (0u64..300_000, proptest::collection::vec(any::<u8>(), 0..10_000))
                .prop_map(|(off, bytes)| Op::Write { off, bytes }),
            1 => (0u64..3).prop_map(|pages| Op::Grow { pages }),
        ]
    }

    fn apply(h: &mut Host, model: &mut Vec<u8>, op: &Op) {
        match op {
            Op::Write { off, bytes } => {
                let end = off + bytes.len() as u64;
                if end <= h.stable.len() as u64 {
                    h.journal(*off, bytes.len() as u64);
                    h.stable[*off as usize..end as usize].copy_from_slice(bytes);
                    model[*off as usize..end as usize].copy_from_slice(bytes);
                }
            }
            Op::Grow { pages } => {
                h.journal_len();
                let n = h.stable.len() + (*pages * crate::limits::WASM_PAGE_BYTES) as usize;
                h.stable.resize(n, 0);
                model.resize(n, 0);
            }
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(64))]

        /// Messages of random writes and growths, each committed or rolled back: stable
        /// memory always equals a model that keeps exactly the committed messages.
        #[test]
        fn the_journal_rolls_back_exactly_the_message(
            messages in proptest::collection::vec(
                (proptest::collection::vec(op(), 0..12), any::<bool>()), 1..8),
        ) {
            let mut h = Host::with_stable(vec![0; 2 * crate::limits::WASM_PAGE_BYTES as usize]);
            let mut committed = h.stable.clone();
            for (ops, keep) in &messages {
                let mut model = committed.clone();
                for o in ops {
                    apply(&mut h, &mut model, o);
                }
                prop_assert_eq!(&h.stable, &model);
                if *keep {
                    h.commit_stable();
                    committed = model;
                } else {
                    h.rollback_stable();
                }
                prop_assert_eq!(&h.stable, &committed);
            }
        }
    }
}
