//! The System API (`ic0.*` imports) over a canister's [`Host`] state.
//!
//! Pointers and sizes are 32-bit (wasm32 canisters); the `stable64_*` functions take 64-bit
//! addresses as the specification defines them. A call made where the specification forbids
//! it (say `msg_reply` in a timer, or twice) traps, as on the IC.

use crate::host::{Entry, Host, Kind, OutCall, Response};
use crate::limits::*;
use candid::Principal;
use wasmtime::{Caller, Extern, Linker, Memory};

/// Error raised by a host function: the canister traps with this message.
#[derive(Debug, Clone)]
pub struct CanisterTrap(pub String);

impl std::fmt::Display for CanisterTrap {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for CanisterTrap {}

type R<T> = wasmtime::Result<T>;

fn trap<T>(msg: impl Into<String>) -> R<T> {
    Err(wasmtime::Error::new(CanisterTrap(msg.into())))
}

fn memory(c: &mut Caller<'_, Host>) -> R<Memory> {
    match c.get_export("memory") {
        Some(Extern::Memory(m)) => Ok(m),
        _ => trap("the canister exports no memory"),
    }
}

/// Charges `n` instructions on top of the wasm's own.
fn sample(c: &mut Caller<'_, Host>) -> R<()> {
    let fuel = c.get_fuel()?;
    let Some(p) = c.data().profile.as_ref() else {
        return Ok(());
    };
    let delta = p.last_fuel.saturating_sub(fuel);
    let bt = wasmtime::WasmBacktrace::capture(&*c);
    let stack: Vec<String> = bt
        .frames()
        .iter()
        .map(|f| {
            f.func_name().map_or_else(
                || format!("func[{}]", f.func_index()),
                |n| format!("{:#}", rustc_demangle::demangle(n)),
            )
        })
        .collect();
    let p = c.data_mut().profile.as_mut().expect("checked");
    p.charge(&stack, delta);
    p.last_fuel = fuel;
    Ok(())
}

fn charge(c: &mut Caller<'_, Host>, n: u64) -> R<()> {
    if c.data().profile.is_some() {
        sample(c)?;
    }
    let api = &mut c.data_mut().api;
    api.calls += 1;
    api.instructions += n;
    let fuel = c.get_fuel()?;
    if fuel < n {
        c.set_fuel(0)?;
        return trap("instruction limit exceeded");
    }
    c.set_fuel(fuel - n)?;
    if let Some(p) = c.data_mut().profile.as_mut() {
        // The charge itself goes to the System API, not to the caller.
        p.charge(&["<System API>".to_string()], n);
        p.last_fuel = fuel - n;
    }
    Ok(())
}

fn charge_bytes(c: &mut Caller<'_, Host>, extra: u64, bytes: u64) -> R<()> {
    charge(
        c,
        SYSTEM_API_CALL_INSTRUCTIONS + extra + bytes * INSTRUCTIONS_PER_BYTE,
    )
}

fn read(c: &mut Caller<'_, Host>, src: u64, size: u64) -> R<Vec<u8>> {
    let m = memory(c)?;
    let data = m.data(&*c);
    let end = src.checked_add(size).filter(|&e| e <= data.len() as u64);
    match end {
        Some(e) => Ok(data[src as usize..e as usize].to_vec()),
        None => trap(format!(
            "heap out of bounds: read {size} bytes at {src} (heap is {} bytes)",
            data.len()
        )),
    }
}

fn write(c: &mut Caller<'_, Host>, dst: u64, bytes: &[u8]) -> R<()> {
    let m = memory(c)?;
    let data = m.data_mut(&mut *c);
    let end = dst
        .checked_add(bytes.len() as u64)
        .filter(|&e| e <= data.len() as u64);
    match end {
        Some(e) => {
            data[dst as usize..e as usize].copy_from_slice(bytes);
            Ok(())
        }
        None => trap(format!(
            "heap out of bounds: write {} bytes at {dst} (heap is {} bytes)",
            bytes.len(),
            data.len()
        )),
    }
}

/// `*_copy(dst, offset, size)` of a system-held blob.
fn copy_out(
    c: &mut Caller<'_, Host>,
    what: &str,
    blob: &[u8],
    dst: u32,
    off: u32,
    size: u32,
) -> R<()> {
    charge_bytes(c, 0, u64::from(size))?;
    let (off, size) = (off as usize, size as usize);
    match off.checked_add(size).filter(|&e| e <= blob.len()) {
        Some(e) => {
            let part = blob[off..e].to_vec();
            write(c, u64::from(dst), &part)
        }
        None => trap(format!(
            "{what}: range {off}..{} is out of bounds (length {})",
            off.saturating_add(size),
            blob.len()
        )),
    }
}

fn u128_out(c: &mut Caller<'_, Host>, dst: u32, v: u128) -> R<()> {
    charge(c, SYSTEM_API_CALL_INSTRUCTIONS)?;
    write(c, u64::from(dst), &v.to_le_bytes())
}

fn amount(high: u64, low: u64) -> u128 {
    (u128::from(high) << 64) | u128::from(low)
}

/// Adds every System API function the testbed implements to `linker`.
pub fn define(linker: &mut Linker<Host>) -> wasmtime::Result<()> {
    // ---- the message ------------------------------------------------------------------
    linker.func_wrap(
        "ic0",
        "msg_arg_data_size",
        |mut c: Caller<'_, Host>| -> R<u32> {
            charge(&mut c, SYSTEM_API_CALL_INSTRUCTIONS)?;
            let e = c.data().exec();
            if !e.kind.has_arg() {
                return trap(format!(
                    "msg_arg_data_size is not available in {:?}",
                    e.kind
                ));
            }
            Ok(e.arg.len() as u32)
        },
    )?;
    linker.func_wrap(
        "ic0",
        "msg_arg_data_copy",
        |mut c: Caller<'_, Host>, dst: u32, off: u32, size: u32| -> R<()> {
            let e = c.data().exec();
            if !e.kind.has_arg() {
                return trap(format!(
                    "msg_arg_data_copy is not available in {:?}",
                    e.kind
                ));
            }
            let arg = std::mem::take(&mut c.data_mut().exec_mut().arg);
            let r = copy_out(&mut c, "msg_arg_data_copy", &arg, dst, off, size);
            c.data_mut().exec_mut().arg = arg;
            r
        },
    )?;
    linker.func_wrap(
        "ic0",
        "msg_caller_size",
        |mut c: Caller<'_, Host>| -> R<u32> {
            charge(&mut c, SYSTEM_API_CALL_INSTRUCTIONS)?;
            Ok(c.data().exec().caller.as_slice().len() as u32)
        },
    )?;
    linker.func_wrap(
        "ic0",
        "msg_caller_copy",
        |mut c: Caller<'_, Host>, dst: u32, off: u32, size: u32| -> R<()> {
            let p = c.data().exec().caller;
            copy_out(&mut c, "msg_caller_copy", p.as_slice(), dst, off, size)
        },
    )?;
    linker.func_wrap(
        "ic0",
        "msg_reject_code",
        |mut c: Caller<'_, Host>| -> R<u32> {
            charge(&mut c, SYSTEM_API_CALL_INSTRUCTIONS)?;
            Ok(c.data().exec().reject.as_ref().map_or(0, |r| r.0))
        },
    )?;
    linker.func_wrap(
        "ic0",
        "msg_reject_msg_size",
        |mut c: Caller<'_, Host>| -> R<u32> {
            charge(&mut c, SYSTEM_API_CALL_INSTRUCTIONS)?;
            match &c.data().exec().reject {
                Some(r) => Ok(r.1.len() as u32),
                None => trap("msg_reject_msg_size is only available in a reject callback"),
            }
        },
    )?;
    linker.func_wrap(
        "ic0",
        "msg_reject_msg_copy",
        |mut c: Caller<'_, Host>, dst: u32, off: u32, size: u32| -> R<()> {
            let Some(r) = c.data().exec().reject.clone() else {
                return trap("msg_reject_msg_copy is only available in a reject callback");
            };
            copy_out(
                &mut c,
                "msg_reject_msg_copy",
                r.1.as_bytes(),
                dst,
                off,
                size,
            )
        },
    )?;
    linker.func_wrap("ic0", "msg_deadline", |mut c: Caller<'_, Host>| -> R<u64> {
        charge(&mut c, SYSTEM_API_CALL_INSTRUCTIONS)?;
        Ok(0) // every call the testbed delivers is a guaranteed-response call
    })?;
    linker.func_wrap(
        "ic0",
        "msg_method_name_size",
        |mut c: Caller<'_, Host>| -> R<u32> {
            charge(&mut c, SYSTEM_API_CALL_INSTRUCTIONS)?;
            Ok(c.data().exec().method.len() as u32)
        },
    )?;
    linker.func_wrap(
        "ic0",
        "msg_method_name_copy",
        |mut c: Caller<'_, Host>, dst: u32, off: u32, size: u32| -> R<()> {
            let m = c.data().exec().method.clone();
            copy_out(&mut c, "msg_method_name_copy", m.as_bytes(), dst, off, size)
        },
    )?;
    linker.func_wrap(
        "ic0",
        "accept_message",
        |mut c: Caller<'_, Host>| -> R<()> {
            charge(&mut c, SYSTEM_API_CALL_INSTRUCTIONS)?;
            trap("accept_message: the testbed does not run canister_inspect_message")
        },
    )?;

    // ---- replying ---------------------------------------------------------------------
    linker.func_wrap(
        "ic0",
        "msg_reply_data_append",
        |mut c: Caller<'_, Host>, src: u32, size: u32| -> R<()> {
            charge_bytes(&mut c, 0, u64::from(size))?;
            if !c.data().exec().can_reply() {
                return trap("msg_reply_data_append: this message cannot (or can no longer) reply");
            }
            let bytes = read(&mut c, u64::from(src), u64::from(size))?;
            let e = c.data_mut().exec_mut();
            if e.reply_data.len() + bytes.len() > MAX_PAYLOAD_BYTES {
                return trap(format!(
                    "msg_reply_data_append: the reply exceeds {MAX_PAYLOAD_BYTES} bytes"
                ));
            }
            e.reply_data.extend_from_slice(&bytes);
            Ok(())
        },
    )?;
    linker.func_wrap("ic0", "msg_reply", |mut c: Caller<'_, Host>| -> R<()> {
        charge(&mut c, SYSTEM_API_CALL_INSTRUCTIONS)?;
        if !c.data().exec().can_reply() {
            return trap("msg_reply: this message cannot (or can no longer) reply");
        }
        let e = c.data_mut().exec_mut();
        let data = std::mem::take(&mut e.reply_data);
        e.response = Some(Response::Reply(data));
        Ok(())
    })?;
    linker.func_wrap(
        "ic0",
        "msg_reject",
        |mut c: Caller<'_, Host>, src: u32, size: u32| -> R<()> {
            charge_bytes(&mut c, 0, u64::from(size))?;
            if !c.data().exec().can_reply() {
                return trap("msg_reject: this message cannot (or can no longer) reply");
            }
            let bytes = read(&mut c, u64::from(src), u64::from(size))?;
            c.data_mut().exec_mut().response = Some(Response::Reject(
                String::from_utf8_lossy(&bytes).into_owned(),
            ));
            Ok(())
        },
    )?;

    // ---- cycles -----------------------------------------------------------------------
    linker.func_wrap(
        "ic0",
        "msg_cycles_available128",
        |mut c: Caller<'_, Host>, dst: u32| -> R<()> {
            let e = c.data().exec();
            let v = e.cycles_available - e.cycles_accepted;
            u128_out(&mut c, dst, v)
        },
    )?;
    linker.func_wrap(
        "ic0",
        "msg_cycles_refunded128",
        |mut c: Caller<'_, Host>, dst: u32| -> R<()> {
            let v = c.data().exec().cycles_refunded;
            u128_out(&mut c, dst, v)
        },
    )?;
    linker.func_wrap(
        "ic0",
        "msg_cycles_accept128",
        |mut c: Caller<'_, Host>, high: u64, low: u64, dst: u32| -> R<()> {
            let e = c.data_mut().exec_mut();
            let take = amount(high, low).min(e.cycles_available - e.cycles_accepted);
            e.cycles_accepted += take;
            e.balance += take;
            u128_out(&mut c, dst, take)
        },
    )?;
    linker.func_wrap(
        "ic0",
        "cycles_burn128",
        |mut c: Caller<'_, Host>, high: u64, low: u64, dst: u32| -> R<()> {
            let e = c.data_mut().exec_mut();
            let burn = amount(high, low).min(e.balance);
            e.balance -= burn;
            u128_out(&mut c, dst, burn)
        },
    )?;
    linker.func_wrap(
        "ic0",
        "canister_cycle_balance128",
        |mut c: Caller<'_, Host>, dst: u32| -> R<()> {
            let v = c.data().exec().balance;
            u128_out(&mut c, dst, v)
        },
    )?;
    linker.func_wrap(
        "ic0",
        "canister_liquid_cycle_balance128",
        |mut c: Caller<'_, Host>, dst: u32| -> R<()> {
            let v = c.data().exec().balance;
            u128_out(&mut c, dst, v)
        },
    )?;

    // ---- the canister -----------------------------------------------------------------
    linker.func_wrap(
        "ic0",
        "canister_self_size",
        |mut c: Caller<'_, Host>| -> R<u32> {
            charge(&mut c, SYSTEM_API_CALL_INSTRUCTIONS)?;
            Ok(c.data().exec().self_id.as_slice().len() as u32)
        },
    )?;
    linker.func_wrap(
        "ic0",
        "canister_self_copy",
        |mut c: Caller<'_, Host>, dst: u32, off: u32, size: u32| -> R<()> {
            let p = c.data().exec().self_id;
            copy_out(&mut c, "canister_self_copy", p.as_slice(), dst, off, size)
        },
    )?;
    linker.func_wrap(
        "ic0",
        "canister_status",
        |mut c: Caller<'_, Host>| -> R<u32> {
            charge(&mut c, SYSTEM_API_CALL_INSTRUCTIONS)?;
            Ok(c.data().exec().status)
        },
    )?;
    linker.func_wrap(
        "ic0",
        "canister_version",
        |mut c: Caller<'_, Host>| -> R<u64> {
            charge(&mut c, SYSTEM_API_CALL_INSTRUCTIONS)?;
            Ok(c.data().exec().version)
        },
    )?;
    linker.func_wrap(
        "ic0",
        "is_controller",
        |mut c: Caller<'_, Host>, src: u32, size: u32| -> R<u32> {
            charge_bytes(&mut c, 0, u64::from(size))?;
            let bytes = read(&mut c, u64::from(src), u64::from(size))?;
            let Ok(p) = Principal::try_from_slice(&bytes) else {
                return trap("is_controller: not a principal");
            };
            Ok(u32::from(c.data().exec().controllers.contains(&p)))
        },
    )?;
    linker.func_wrap(
        "ic0",
        "in_replicated_execution",
        |mut c: Caller<'_, Host>| -> R<u32> {
            charge(&mut c, SYSTEM_API_CALL_INSTRUCTIONS)?;
            Ok(u32::from(c.data().exec().kind != Kind::Query))
        },
    )?;
    linker.func_wrap(
        "ic0",
        "certified_data_set",
        |mut c: Caller<'_, Host>, src: u32, size: u32| -> R<()> {
            charge_bytes(&mut c, 0, u64::from(size))?;
            if size > 32 {
                return trap("certified_data_set: more than 32 bytes");
            }
            let bytes = read(&mut c, u64::from(src), u64::from(size))?;
            c.data_mut().exec_mut().certified_data = Some(bytes);
            Ok(())
        },
    )?;
    linker.func_wrap(
        "ic0",
        "data_certificate_present",
        |mut c: Caller<'_, Host>| -> R<u32> {
            charge(&mut c, SYSTEM_API_CALL_INSTRUCTIONS)?;
            Ok(0) // the testbed certifies nothing
        },
    )?;
    linker.func_wrap("ic0", "time", |mut c: Caller<'_, Host>| -> R<u64> {
        charge(&mut c, SYSTEM_API_CALL_INSTRUCTIONS)?;
        Ok(c.data().exec().time)
    })?;
    linker.func_wrap(
        "ic0",
        "global_timer_set",
        |mut c: Caller<'_, Host>, t: u64| -> R<u64> {
            charge(&mut c, SYSTEM_API_CALL_INSTRUCTIONS)?;
            let e = c.data_mut().exec_mut();
            Ok(std::mem::replace(&mut e.timer, t))
        },
    )?;
    linker.func_wrap(
        "ic0",
        "performance_counter",
        |mut c: Caller<'_, Host>, kind: u32| -> R<u64> {
            charge(&mut c, SYSTEM_API_CALL_INSTRUCTIONS)?;
            let used = c.data().exec().limit - c.get_fuel()?;
            match kind {
                0 => Ok(used),
                1 => Ok(c.data().exec().context_instructions + used),
                k => trap(format!("performance_counter: unknown counter type {k}")),
            }
        },
    )?;
    linker.func_wrap(
        "ic0",
        "debug_print",
        |mut c: Caller<'_, Host>, src: u32, size: u32| -> R<()> {
            charge_bytes(&mut c, 100, u64::from(size))?;
            let keep = (size as usize).min(MAX_DEBUG_PRINT_BYTES) as u64;
            let bytes = read(&mut c, u64::from(src), keep)?;
            let line = String::from_utf8_lossy(&bytes).into_owned();
            let id = c.data().exec().self_id;
            c.data_mut().log.push((id, line));
            Ok(())
        },
    )?;
    linker.func_wrap(
        "ic0",
        "trap",
        |mut c: Caller<'_, Host>, src: u32, size: u32| -> R<()> {
            let keep = (size as usize).min(MAX_DEBUG_PRINT_BYTES) as u64;
            let bytes = read(&mut c, u64::from(src), keep)?;
            trap(format!(
                "canister called trap: {}",
                String::from_utf8_lossy(&bytes)
            ))
        },
    )?;

    // ---- stable memory ----------------------------------------------------------------
    linker.func_wrap(
        "ic0",
        "stable64_size",
        |mut c: Caller<'_, Host>| -> R<u64> {
            charge(&mut c, SYSTEM_API_CALL_INSTRUCTIONS)?;
            Ok(c.data().stable.len() as u64 / WASM_PAGE_BYTES)
        },
    )?;
    linker.func_wrap(
        "ic0",
        "stable64_grow",
        |mut c: Caller<'_, Host>, pages: u64| -> R<u64> {
            charge(
                &mut c,
                SYSTEM_API_CALL_INSTRUCTIONS + STABLE_GROW_INSTRUCTIONS,
            )?;
            let h = c.data_mut();
            let old = h.stable.len() as u64;
            let new = pages
                .checked_mul(WASM_PAGE_BYTES)
                .and_then(|b| b.checked_add(old));
            match new {
                Some(n) if n <= MAX_STABLE_BYTES => {
                    h.journal_len();
                    h.stable.resize(n as usize, 0);
                    Ok(old / WASM_PAGE_BYTES)
                }
                _ => Ok(u64::MAX),
            }
        },
    )?;
    linker.func_wrap(
        "ic0",
        "stable64_write",
        |mut c: Caller<'_, Host>, off: u64, src: u64, size: u64| -> R<()> {
            charge_bytes(&mut c, 0, size)?;
            let len = c.data().stable.len() as u64;
            if off.checked_add(size).is_none_or(|e| e > len) {
                return trap(format!(
                    "stable64_write: {size} bytes at {off} is out of bounds (stable memory is {len} bytes)"
                ));
            }
            let bytes = read(&mut c, src, size)?;
            let h = c.data_mut();
            h.api.stable_writes += 1;
            h.api.stable_write_bytes += size;
            h.journal(off, size);
            h.stable[off as usize..(off + size) as usize].copy_from_slice(&bytes);
            Ok(())
        },
    )?;
    linker.func_wrap(
        "ic0",
        "stable64_read",
        |mut c: Caller<'_, Host>, dst: u64, off: u64, size: u64| -> R<()> {
            charge_bytes(&mut c, 0, size)?;
            let len = c.data().stable.len() as u64;
            if off.checked_add(size).is_none_or(|e| e > len) {
                return trap(format!(
                    "stable64_read: {size} bytes at {off} is out of bounds (stable memory is {len} bytes)"
                ));
            }
            let api = &mut c.data_mut().api;
            api.stable_reads += 1;
            api.stable_read_bytes += size;
            let m = memory(&mut c)?;
            let (data, host) = m.data_and_store_mut(&mut c);
            match dst.checked_add(size).filter(|&e| e <= data.len() as u64) {
                Some(e) => {
                    data[dst as usize..e as usize]
                        .copy_from_slice(&host.stable[off as usize..(off + size) as usize]);
                    Ok(())
                }
                None => trap(format!(
                    "stable64_read: heap out of bounds ({size} bytes at {dst})"
                )),
            }
        },
    )?;

    // ---- calls ------------------------------------------------------------------------
    linker.func_wrap(
        "ic0",
        "call_new",
        |mut c: Caller<'_, Host>,
         callee_src: u32,
         callee_size: u32,
         name_src: u32,
         name_size: u32,
         reply_fun: u32,
         reply_env: u32,
         reject_fun: u32,
         reject_env: u32|
         -> R<()> {
            charge_bytes(&mut c, 0, u64::from(callee_size + name_size))?;
            if !c.data().exec().kind.can_call() {
                return trap(format!(
                    "call_new is not available in {:?}",
                    c.data().exec().kind
                ));
            }
            let callee = read(&mut c, u64::from(callee_src), u64::from(callee_size))?;
            let Ok(callee) = Principal::try_from_slice(&callee) else {
                return trap("call_new: the callee is not a principal");
            };
            let name = read(&mut c, u64::from(name_src), u64::from(name_size))?;
            let Ok(method) = String::from_utf8(name) else {
                return trap("call_new: the method name is not UTF-8");
            };
            c.data_mut().exec_mut().pending = Some(OutCall {
                callee,
                method,
                arg: Vec::new(),
                cycles: 0,
                reply: Entry::Table(reply_fun, reply_env),
                reject: Entry::Table(reject_fun, reject_env),
                cleanup: None,
            });
            Ok(())
        },
    )?;
    linker.func_wrap(
        "ic0",
        "call_data_append",
        |mut c: Caller<'_, Host>, src: u32, size: u32| -> R<()> {
            charge_bytes(&mut c, 0, u64::from(size))?;
            let bytes = read(&mut c, u64::from(src), u64::from(size))?;
            match c.data_mut().exec_mut().pending.as_mut() {
                Some(p) => {
                    p.arg.extend_from_slice(&bytes);
                    Ok(())
                }
                None => trap("call_data_append without call_new"),
            }
        },
    )?;
    linker.func_wrap(
        "ic0",
        "call_cycles_add128",
        |mut c: Caller<'_, Host>, high: u64, low: u64| -> R<()> {
            charge(&mut c, SYSTEM_API_CALL_INSTRUCTIONS)?;
            let e = c.data_mut().exec_mut();
            let add = amount(high, low);
            if e.pending.is_none() {
                return trap("call_cycles_add128 without call_new");
            }
            if add > e.balance {
                return trap(format!(
                    "call_cycles_add128: {add} cycles asked, the balance is {}",
                    e.balance
                ));
            }
            e.balance -= add;
            e.pending.as_mut().expect("checked").cycles += add;
            Ok(())
        },
    )?;
    linker.func_wrap(
        "ic0",
        "call_on_cleanup",
        |mut c: Caller<'_, Host>, fun: u32, env: u32| -> R<()> {
            charge(&mut c, SYSTEM_API_CALL_INSTRUCTIONS)?;
            match c.data_mut().exec_mut().pending.as_mut() {
                Some(p) if p.cleanup.is_none() => {
                    p.cleanup = Some(Entry::Table(fun, env));
                    Ok(())
                }
                Some(_) => trap("call_on_cleanup called twice for one call"),
                None => trap("call_on_cleanup without call_new"),
            }
        },
    )?;
    linker.func_wrap(
        "ic0",
        "call_with_best_effort_response",
        |mut c: Caller<'_, Host>, _timeout: u32| -> R<()> {
            charge(&mut c, SYSTEM_API_CALL_INSTRUCTIONS)?;
            // Delivered like a guaranteed-response call: the testbed has no deadlines.
            if c.data().exec().pending.is_none() {
                return trap("call_with_best_effort_response without call_new");
            }
            Ok(())
        },
    )?;
    linker.func_wrap(
        "ic0",
        "cost_call",
        |mut c: Caller<'_, Host>, name_size: u64, payload_size: u64, dst: u32| -> R<()> {
            let fee = CALL_FEE_CYCLES
                + CALL_BYTE_FEE_CYCLES * u128::from(name_size.saturating_add(payload_size));
            u128_out(&mut c, dst, fee)
        },
    )?;
    linker.func_wrap("ic0", "call_perform", |mut c: Caller<'_, Host>| -> R<u32> {
        charge(
            &mut c,
            SYSTEM_API_CALL_INSTRUCTIONS + CALL_PERFORM_INSTRUCTIONS,
        )?;
        let e = c.data_mut().exec_mut();
        let Some(call) = e.pending.take() else {
            return trap("call_perform without call_new");
        };
        if call.arg.len() > MAX_PAYLOAD_BYTES {
            // Refused synchronously, as the IC does; the cycles return to the balance.
            e.balance += call.cycles;
            return Ok(2);
        }
        e.calls.push(call);
        Ok(0)
    })?;
    Ok(())
}
