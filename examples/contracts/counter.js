// A counter: `increment` adds one (a command), `get` reads it (a query or a command).
//   umbra contract upload examples/contracts/counter.js
//   umbra contract instantiate CODE_HASH --cluster 1
//   umbra contract command ID increment
//   umbra contract query ID get --worker http://127.0.0.1:PORT
export function increment() {
  const n = (umbra.storage.getJson("n") ?? 0) + 1;
  umbra.storage.setJson("n", n);
  umbra.emit("incremented", n);
  return n;
}

export function get() {
  return umbra.storage.getJson("n") ?? 0;
}

// Adds `by` (a positive integer) and returns the new count.
export function add(args) {
  const by = args?.by;
  if (!Number.isSafeInteger(by) || by <= 0) throw new Error("add needs {\"by\": a positive integer}");
  const n = (umbra.storage.getJson("n") ?? 0) + by;
  umbra.storage.setJson("n", n);
  umbra.emit("incremented", n);
  return n;
}
