;; A counter in WebAssembly text (the wasm host ABI is in crates/umbra-engine/src/lib.rs):
;; `increment` adds one and returns the count in decimal, `get` returns it. The count is stored under the
;; key "n" as a little-endian u64. `umbra contract upload counter.wat` assembles the text to a binary.
(module
  (import "env" "storage_get" (func $storage_get (param i32 i32 i32 i32) (result i32)))
  (import "env" "storage_set" (func $storage_set (param i32 i32 i32 i32)))
  (import "env" "output" (func $output (param i32 i32)))
  (import "env" "emit" (func $emit (param i32 i32 i32 i32)))
  (memory (export "memory") 1)
  ;; 0: the key "n"; 16: the event name; 64: the stored u64; 128..192: decimal digits.
  (data (i32.const 0) "n")
  (data (i32.const 16) "incremented")

  (func $load (result i64)
    (if (result i64)
      (i32.eq (call $storage_get (i32.const 0) (i32.const 1) (i32.const 64) (i32.const 8)) (i32.const 8))
      (then (i64.load (i32.const 64)))
      (else (i64.const 0))))

  ;; Writes `n` in decimal ending at 192; returns where it starts.
  (func $decimal (param $n i64) (result i32)
    (local $p i32)
    (local.set $p (i32.const 192))
    (loop $digit
      (local.set $p (i32.sub (local.get $p) (i32.const 1)))
      (i64.store8 (local.get $p) (i64.add (i64.const 48) (i64.rem_u (local.get $n) (i64.const 10))))
      (local.set $n (i64.div_u (local.get $n) (i64.const 10)))
      (br_if $digit (i64.ne (local.get $n) (i64.const 0))))
    (local.get $p))

  (func (export "increment")
    (local $p i32)
    (i64.store (i32.const 64) (i64.add (call $load) (i64.const 1)))
    (call $storage_set (i32.const 0) (i32.const 1) (i32.const 64) (i32.const 8))
    (local.set $p (call $decimal (i64.load (i32.const 64))))
    (call $emit (i32.const 16) (i32.const 11) (local.get $p) (i32.sub (i32.const 192) (local.get $p)))
    (call $output (local.get $p) (i32.sub (i32.const 192) (local.get $p))))

  (func (export "get")
    (local $p i32)
    (local.set $p (call $decimal (call $load)))
    (call $output (local.get $p) (i32.sub (i32.const 192) (local.get $p)))))
