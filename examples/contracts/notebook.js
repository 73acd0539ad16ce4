// A private key-value notebook: every account has its own notes. Commands write them (the command's sender
// owns what it writes; the chain only ever sees the sealed envelope), and only the owner reads them back,
// through a query it signs. Nobody else, not even the deployer, can read another account's notes.
//   umbra contract command ID write --args '{"title":"todo","text":"buy milk"}'
//   umbra contract query ID read --args '{"title":"todo"}' --worker URL --signed
function owner() {
  if (!umbra.caller) throw new Error("notes belong to an account: sign the query (--signed)");
  return umbra.caller;
}

function load(who) {
  return umbra.storage.getJson("notes/" + who) ?? {};
}

// Writes (or replaces) a note; returns how many notes the sender has.
export function write(args) {
  const who = owner();
  if (typeof args?.title !== "string" || typeof args?.text !== "string") {
    throw new Error("write needs {\"title\": string, \"text\": string}");
  }
  const notes = load(who);
  notes[args.title] = args.text;
  umbra.storage.setJson("notes/" + who, notes);
  umbra.emit("written", args.title);
  return Object.keys(notes).length;
}

// Removes a note; returns whether it existed.
export function remove(args) {
  const who = owner();
  const notes = load(who);
  const existed = Object.hasOwn(notes, args?.title ?? "");
  delete notes[args?.title];
  umbra.storage.setJson("notes/" + who, notes);
  return existed;
}

// The caller's note `title`, or all of the caller's notes without a title.
export function read(args) {
  const notes = load(owner());
  if (typeof args?.title === "string") return notes[args.title] ?? null;
  return notes;
}

// How many notes the caller has.
export function count() {
  return Object.keys(load(owner())).length;
}
