// A private analytics agent: users submit a number about themselves (sealed commands, so only the cluster's
// enclaves ever see it), may revoke it at any time, and the agent releases only aggregates over at least K
// users. Nothing individual ever leaves the enclave.
//
//   umbra contract call AGENT submit --args '{"value": 42, "consent": true}' --wait   (as each user)
//   umbra contract call AGENT revoke --wait                                          (withdraw consent)
//   umbra agent call AGENT --path /stats                                             (aggregates, sealed)

const K = 3;

function users() {
  return umbra.storage.getJson("users") ?? [];
}

// Command: store the caller's value, only with explicit consent.
export function submit(args) {
  if (!args || args.consent !== true) throw new Error("submit needs {\"consent\": true}");
  const value = Number(args.value);
  if (!Number.isFinite(value)) throw new Error("value must be a number");
  const me = umbra.caller;
  const list = users();
  if (!list.includes(me)) list.push(me);
  umbra.storage.setJson("users", list);
  umbra.storage.setJson("v:" + me, value);
  return list.length;
}

// Command: forget the caller's data entirely.
export function revoke() {
  const me = umbra.caller;
  umbra.storage.setJson("users", users().filter((u) => u !== me));
  umbra.storage.remove("v:" + me);
  return "revoked";
}

export default {
  async fetch(request) {
    if (request.path !== "/stats") {
      return Response.json({ error: "try GET /stats" }, { status: 404 });
    }
    const list = users();
    if (list.length < K) {
      return Response.json(
        { error: `aggregates need at least ${K} consenting users`, users: list.length },
        { status: 403 },
      );
    }
    const values = list.map((u) => umbra.storage.getJson("v:" + u));
    const sum = values.reduce((a, b) => a + b, 0);
    return Response.json({ users: list.length, sum, mean: sum / list.length, k: K });
  },
};
