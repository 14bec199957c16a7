//! The testbed's semantics on a tiny WAT canister (`tests/canisters/probe.wat`): rollback on
//! trap, instruction limits, queries that never commit, inter-canister calls through the
//! function table, timers, stop/start, install modes.

use candid::Principal;
use flotilla_testbed::{Config, InstallMode, InstructionLimits, RejectCode, Status, Testbed};

const PROBE: &str = include_str!("canisters/probe.wat");

fn user() -> Principal {
    Principal::from_slice(&[7; 29])
}

fn setup(config: Config) -> (Testbed, Principal) {
    let mut tb = Testbed::new(config);
    let id = tb.create_canister(vec![user()], 1_000_000_000_000);
    tb.install(
        user(),
        id,
        InstallMode::Install,
        false,
        PROBE.as_bytes(),
        vec![],
    )
    .unwrap();
    (tb, id)
}

/// (heap[100], stable[70000], global $g)
fn read(tb: &mut Testbed, id: Principal) -> (u8, u8, u64) {
    let r = tb.query(user(), id, "read", vec![]).unwrap();
    (r[0], r[1], u64::from_le_bytes(r[2..10].try_into().unwrap()))
}

#[test]
fn a_trap_rolls_back_heap_globals_and_stable_memory() {
    let (mut tb, id) = setup(Config::default());
    assert_eq!(tb.update(user(), id, "write", vec![5]).unwrap(), b"ok");
    assert_eq!(read(&mut tb, id), (5, 5, 1));
    let heap = tb.heap_size(id).unwrap();
    let stable = tb.stable_size(id).unwrap();

    let err = tb
        .update(user(), id, "write_then_trap", vec![9])
        .unwrap_err();
    assert_eq!(err.code, RejectCode::CanisterError);
    assert!(err.message.contains("boom"), "{err}");
    // Heap byte, stable byte, global, heap size and stable size are as before the message.
    assert_eq!(read(&mut tb, id), (5, 5, 1));
    assert_eq!(tb.heap_size(id).unwrap(), heap);
    assert_eq!(tb.stable_size(id).unwrap(), stable);
    assert_eq!(tb.read_heap(id, 100, 1).unwrap(), vec![5]);
    assert_eq!(tb.read_stable(id, 70000, 1).unwrap(), vec![5]);

    // The canister still works after the rollback, with the rolled-back state.
    assert_eq!(tb.update(user(), id, "write", vec![6]).unwrap(), b"ok");
    assert_eq!(read(&mut tb, id), (6, 6, 2));
}

#[test]
fn a_message_over_the_instruction_limit_traps_and_changes_nothing() {
    let limits = InstructionLimits {
        update: 20_000_000,
        ..InstructionLimits::default()
    };
    let (mut tb, id) = setup(Config {
        limits,
        ..Config::default()
    });
    tb.update(user(), id, "write", vec![3]).unwrap();
    // 1 M iterations fit in 20 M instructions; the counter reports what was used.
    let r = tb.update(user(), id, "spin", vec![1]).unwrap();
    let used = u64::from_le_bytes(r[..8].try_into().unwrap());
    assert!((1_000_000..20_000_000).contains(&used), "used {used}");
    assert!(tb.last_instructions(id) >= used);
    // 50 M iterations do not.
    let err = tb.update(user(), id, "spin", vec![50]).unwrap_err();
    assert_eq!(err.code, RejectCode::CanisterError);
    assert!(err.message.contains("instruction limit"), "{err}");
    assert_eq!(tb.last_instructions(id), 20_000_000);
    assert_eq!(read(&mut tb, id), (3, 3, 1));
}

#[test]
fn the_default_limits_are_the_ics() {
    let l = InstructionLimits::default();
    assert_eq!(
        (l.update, l.query, l.install),
        (40_000_000_000, 5_000_000_000, 300_000_000_000)
    );
}

/// The real 40 B limit stops an endless loop (and rolls it back). Takes about a minute.
#[test]
#[ignore]
fn the_real_update_limit_stops_an_endless_loop() {
    let (mut tb, id) = setup(Config::default());
    tb.update(user(), id, "write", vec![4]).unwrap();
    let err = tb.update(user(), id, "spin_forever", vec![]).unwrap_err();
    assert!(err.message.contains("instruction limit"), "{err}");
    assert_eq!(tb.last_instructions(id), 40_000_000_000);
    assert_eq!(read(&mut tb, id), (4, 4, 1));
}

#[test]
fn a_query_never_commits() {
    let (mut tb, id) = setup(Config::default());
    tb.update(user(), id, "write", vec![4]).unwrap();
    // `read` grows stable memory only when empty; here it is not. Calling a query method
    // through an update changes nothing either.
    let before = read(&mut tb, id);
    tb.update(user(), id, "read", vec![]).unwrap();
    assert_eq!(read(&mut tb, id), before);
}

#[test]
fn an_inter_canister_call_runs_the_reply_callback_from_the_table() {
    let (mut tb, id) = setup(Config::default());
    let r = tb.update(user(), id, "call_self", vec![8]).unwrap();
    assert_eq!(r, b"ok");
    assert_eq!(read(&mut tb, id), (8, 8, 1));
}

#[test]
fn a_rejected_call_runs_the_reject_callback() {
    let (mut tb, id) = setup(Config {
        reject_calls_permille: 1000,
        ..Config::default()
    });
    // The reject callback traps; the caller sees that trap as the answer.
    let err = tb.update(user(), id, "call_self", vec![8]).unwrap_err();
    assert!(err.message.contains("boom"), "{err}");
    assert_eq!(read(&mut tb, id), (0, 0, 0));
}

#[test]
fn a_lost_reply_reaches_the_caller_as_a_reject_after_the_callee_ran() {
    let (mut tb, id) = setup(Config {
        lose_replies_permille: 1000,
        ..Config::default()
    });
    let err = tb.update(user(), id, "call_self", vec![8]).unwrap_err();
    assert!(err.message.contains("boom"), "{err}");
    // The callee's write happened.
    assert_eq!(read(&mut tb, id), (8, 8, 1));
}

#[test]
fn the_global_timer_fires_when_due() {
    let (mut tb, id) = setup(Config::default());
    assert_eq!(
        tb.query(user(), id, "timer_fired", vec![]).unwrap(),
        vec![0]
    );
    tb.update(user(), id, "set_timer", vec![]).unwrap();
    tb.tick();
    tb.tick();
    assert_eq!(
        tb.query(user(), id, "timer_fired", vec![]).unwrap(),
        vec![1]
    );
    // It fires once: global_timer_set is one-shot.
    tb.ticks(3);
    assert_eq!(
        tb.query(user(), id, "timer_fired", vec![]).unwrap(),
        vec![1]
    );
}

#[test]
fn a_stopped_canister_rejects_and_a_started_one_runs() {
    let (mut tb, id) = setup(Config::default());
    let mgmt = Principal::management_canister();
    let arg = candid::encode_one(ic_arg(id)).unwrap();
    tb.update(user(), mgmt, "stop_canister", arg.clone())
        .unwrap();
    assert_eq!(tb.status(id), Some(Status::Stopped));
    let err = tb.update(user(), id, "write", vec![1]).unwrap_err();
    assert_eq!(err.code, RejectCode::CanisterError);
    assert!(tb.query(user(), id, "read", vec![]).is_err());
    tb.update(user(), mgmt, "start_canister", arg).unwrap();
    assert_eq!(tb.update(user(), id, "write", vec![1]).unwrap(), b"ok");
}

#[derive(candid::CandidType)]
struct CanisterIdRecord {
    canister_id: Principal,
}

fn ic_arg(id: Principal) -> CanisterIdRecord {
    CanisterIdRecord { canister_id: id }
}

#[test]
fn only_controllers_install_and_install_modes_behave() {
    let (mut tb, id) = setup(Config::default());
    let stranger = Principal::from_slice(&[9; 29]);
    let err = tb
        .install(
            stranger,
            id,
            InstallMode::Upgrade,
            false,
            PROBE.as_bytes(),
            vec![],
        )
        .unwrap_err();
    assert!(err.message.contains("controllers"), "{err}");
    tb.update(user(), id, "write", vec![2]).unwrap();
    // Install on a canister with code is refused.
    assert!(tb
        .install(
            user(),
            id,
            InstallMode::Install,
            false,
            PROBE.as_bytes(),
            vec![]
        )
        .is_err());
    // Upgrade keeps stable memory and resets the heap.
    tb.install(
        user(),
        id,
        InstallMode::Upgrade,
        false,
        PROBE.as_bytes(),
        vec![],
    )
    .unwrap();
    assert_eq!(read(&mut tb, id), (0, 2, 0));
    // Reinstall clears stable memory too.
    tb.install(
        user(),
        id,
        InstallMode::Reinstall,
        false,
        PROBE.as_bytes(),
        vec![],
    )
    .unwrap();
    assert_eq!(read(&mut tb, id), (0, 0, 0));
}

#[test]
fn canister_status_and_deposit_cycles_through_the_management_canister() {
    use ic_management_canister_types::{CanisterStatusResult, CanisterStatusType};
    let (mut tb, id) = setup(Config::default());
    let mgmt = Principal::management_canister();
    let r = tb
        .update(
            user(),
            mgmt,
            "canister_status",
            candid::encode_one(ic_arg(id)).unwrap(),
        )
        .unwrap();
    let s: CanisterStatusResult = candid::decode_one(&r).unwrap();
    assert_eq!(s.status, CanisterStatusType::Running);
    assert_eq!(s.settings.controllers, vec![user()]);
    assert_eq!(s.module_hash.unwrap(), tb.module_hash(id).unwrap().to_vec());
    assert_eq!(s.cycles, candid::Nat::from(1_000_000_000_000u64));
    let stranger = Principal::from_slice(&[9; 29]);
    assert!(tb
        .update(
            stranger,
            mgmt,
            "canister_status",
            candid::encode_one(ic_arg(id)).unwrap()
        )
        .is_err());
}

/// The module hash `canister_status` reports is that of the module as installed: for a
/// gzipped module, of the compressed bytes (as the IC's interface specification says), so an
/// uncompressed copy of the same code is another module.
#[test]
fn the_module_hash_of_a_gzipped_module_is_that_of_its_compressed_bytes() {
    use flate2::write::GzEncoder;
    use sha2::{Digest, Sha256};
    use std::io::Write;
    let raw = wat::parse_str(PROBE).unwrap();
    let mut gz = GzEncoder::new(vec![], flate2::Compression::default());
    gz.write_all(&raw).unwrap();
    let gz = gz.finish().unwrap();
    let mut tb = Testbed::new(Config::default());
    let a = tb.create_canister(vec![user()], 1_000_000_000_000);
    let b = tb.create_canister(vec![user()], 1_000_000_000_000);
    tb.install(user(), a, InstallMode::Install, false, &gz, vec![])
        .unwrap();
    tb.install(user(), b, InstallMode::Install, false, &raw, vec![])
        .unwrap();
    let ha: [u8; 32] = Sha256::digest(&gz).into();
    let hb: [u8; 32] = Sha256::digest(&raw).into();
    assert_eq!(tb.module_hash(a), Some(ha));
    assert_eq!(tb.module_hash(b), Some(hb));
    assert_ne!(ha, hb);
}
