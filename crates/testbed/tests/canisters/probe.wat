;; A tiny canister for the testbed's own tests. No Candid: replies are raw bytes.
;;   write          heap[100] := arg[0], stable[70000] := arg[0], $g += 1; replies "ok"
;;   write_then_trap   the same writes (and grows stable and heap), then traps
;;   read (query)   replies heap[100], stable[70000], $g (8 bytes, little endian)
;;   spin           loops arg[0] * 1,000,000 times; replies "done"
;;   spin_forever   never returns (until the instruction limit stops it)
;;   call_self      calls its own `write` with its argument; replies with the callee's reply
;;   set_timer      sets the global timer to time() + 1; replies "ok"
;;   timer_fired (query) replies the count of timer runs (1 byte)
(module
  (import "ic0" "msg_arg_data_size" (func $arg_size (result i32)))
  (import "ic0" "msg_arg_data_copy" (func $arg_copy (param i32 i32 i32)))
  (import "ic0" "msg_reply_data_append" (func $append (param i32 i32)))
  (import "ic0" "msg_reply" (func $reply))
  (import "ic0" "trap" (func $trap (param i32 i32)))
  (import "ic0" "stable64_size" (func $stable_size (result i64)))
  (import "ic0" "stable64_grow" (func $stable_grow (param i64) (result i64)))
  (import "ic0" "stable64_write" (func $stable_write (param i64 i64 i64)))
  (import "ic0" "stable64_read" (func $stable_read (param i64 i64 i64)))
  (import "ic0" "canister_self_size" (func $self_size (result i32)))
  (import "ic0" "canister_self_copy" (func $self_copy (param i32 i32 i32)))
  (import "ic0" "call_new" (func $call_new (param i32 i32 i32 i32 i32 i32 i32 i32)))
  (import "ic0" "call_data_append" (func $call_data (param i32 i32)))
  (import "ic0" "call_perform" (func $call_perform (result i32)))
  (import "ic0" "time" (func $time (result i64)))
  (import "ic0" "global_timer_set" (func $timer_set (param i64) (result i64)))
  (import "ic0" "performance_counter" (func $perf (param i32) (result i64)))
  (memory (export "memory") 1)
  (global $g (mut i64) (i64.const 0))
  (global $timer_runs (mut i32) (i32.const 0))
  (table 2 funcref)
  (elem (i32.const 0) $on_reply $on_reject)
  (data (i32.const 0) "ok")
  (data (i32.const 8) "done")
  (data (i32.const 16) "write")
  (data (i32.const 32) "boom")

  (func $ensure_stable
    (if (i64.eqz (call $stable_size))
      (then (drop (call $stable_grow (i64.const 2))))))

  (func $writes
    ;; arg[0] -> heap[200] -> heap[100] and stable[70000]
    (call $arg_copy (i32.const 200) (i32.const 0) (i32.const 1))
    (i32.store8 (i32.const 100) (i32.load8_u (i32.const 200)))
    (call $ensure_stable)
    (call $stable_write (i64.const 70000) (i64.const 200) (i64.const 1))
    (global.set $g (i64.add (global.get $g) (i64.const 1))))

  (func (export "canister_update write")
    (call $writes)
    (call $append (i32.const 0) (i32.const 2))
    (call $reply))

  (func (export "canister_update write_then_trap")
    (call $writes)
    (drop (call $stable_grow (i64.const 3)))
    (drop (memory.grow (i32.const 2)))
    (i32.store8 (i32.const 70000) (i32.const 9))
    (call $trap (i32.const 32) (i32.const 4)))

  (func (export "canister_query read")
    (i32.store8 (i32.const 300) (i32.load8_u (i32.const 100)))
    (call $ensure_stable)
    (call $stable_read (i64.const 301) (i64.const 70000) (i64.const 1))
    (i64.store (i32.const 302) (global.get $g))
    (call $append (i32.const 300) (i32.const 10))
    (call $reply))

  (func (export "canister_update spin")
    (local $n i64)
    (call $arg_copy (i32.const 200) (i32.const 0) (i32.const 1))
    (local.set $n (i64.mul (i64.load8_u (i32.const 200)) (i64.const 1000000)))
    (block $out
      (loop $l
        (br_if $out (i64.eqz (local.get $n)))
        (local.set $n (i64.sub (local.get $n) (i64.const 1)))
        (br $l)))
    ;; heap[400..408] := instructions used so far
    (i64.store (i32.const 400) (call $perf (i32.const 0)))
    (call $append (i32.const 400) (i32.const 8))
    (call $reply))

  (func (export "canister_update spin_forever")
    (loop $l (br $l)))

  (func (export "canister_update call_self")
    (local $len i32)
    (call $self_copy (i32.const 500) (i32.const 0) (call $self_size))
    (call $call_new (i32.const 500) (call $self_size) (i32.const 16) (i32.const 5)
                    (i32.const 0) (i32.const 7) (i32.const 1) (i32.const 8))
    (local.set $len (call $arg_size))
    (call $arg_copy (i32.const 600) (i32.const 0) (local.get $len))
    (call $call_data (i32.const 600) (local.get $len))
    (drop (call $call_perform)))

  ;; Reply callback: forwards the callee's reply; env must be 7.
  (func $on_reply (param $env i32)
    (local $len i32)
    (if (i32.ne (local.get $env) (i32.const 7))
      (then (call $trap (i32.const 32) (i32.const 4))))
    (local.set $len (call $arg_size))
    (call $arg_copy (i32.const 700) (i32.const 0) (local.get $len))
    (call $append (i32.const 700) (local.get $len))
    (call $reply))

  (func $on_reject (param $env i32)
    (call $trap (i32.const 32) (i32.const 4)))

  (func (export "canister_update set_timer")
    (drop (call $timer_set (i64.add (call $time) (i64.const 1))))
    (call $append (i32.const 0) (i32.const 2))
    (call $reply))

  (func (export "canister_global_timer")
    (global.set $timer_runs (i32.add (global.get $timer_runs) (i32.const 1))))

  (func (export "canister_query timer_fired")
    (i32.store8 (i32.const 800) (global.get $timer_runs))
    (call $append (i32.const 800) (i32.const 1))
    (call $reply))
)
