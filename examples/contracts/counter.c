/* A counter in freestanding C, compiled to wasm by clang (scripts/build-examples.sh):
 *   clang --target=wasm32 -O2 -nostdlib -Wl,--no-entry -Wl,--allow-undefined -o counter.wasm counter.c
 * `increment` adds one and returns the count in decimal, `get` returns it; the count is stored under "n"
 * as a little-endian u64, like the WAT counter. The host ABI is in crates/umbra-engine/src/lib.rs. */

typedef unsigned long long u64;

#define IMPORT(name) __attribute__((import_module("env"), import_name(name)))
#define EXPORT(name) __attribute__((export_name(name)))

IMPORT("storage_get") int storage_get(const void *key, int key_len, void *out, int cap);
IMPORT("storage_set") void storage_set(const void *key, int key_len, const void *value, int value_len);
IMPORT("output") void output(const void *data, int len);
IMPORT("emit") void emit(const void *name, int name_len, const void *data, int data_len);

static u64 load(void) {
  u64 n = 0;
  if (storage_get("n", 1, &n, sizeof n) != (int)sizeof n) return 0;
  return n;
}

/* Writes `n` in decimal ending at `end`; returns where it starts. */
static char *decimal(u64 n, char *end) {
  char *p = end;
  do {
    *--p = (char)('0' + n % 10);
    n /= 10;
  } while (n != 0);
  return p;
}

EXPORT("increment") void increment(void) {
  u64 n = load() + 1;
  storage_set("n", 1, &n, sizeof n);
  char buf[24];
  char *p = decimal(n, buf + sizeof buf);
  int len = (int)(buf + sizeof buf - p);
  emit("incremented", 11, p, len);
  output(p, len);
}

EXPORT("get") void get(void) {
  char buf[24];
  char *p = decimal(load(), buf + sizeof buf);
  output(p, (int)(buf + sizeof buf - p));
}
