// A price oracle: fetches a price from an HTTP API, checks the answer and posts it on chain as an attested
// output, signed by the agent's contract key and its Ethereum key, so any contract or user can verify it came
// from this agent's code inside an attested worker. The API's URL (which may carry an API key) is a sealed
// secret; only its host is published as the source.
//
//   umbra agent deploy examples/agents/price-oracle.js --egress-allow api.example.com \
//     --secret PRICE_URL=https://api.example.com/price
//   umbra agent call AGENT --worker http://HOST:PORT --path '/?symbol=ETH'     # fetch, check, attest
//   umbra agent outputs AGENT                                                  # the verified outputs on chain
//
// The API answers GET PRICE_URL?symbol=ETH with {"symbol": "ETH", "price": "3120.55"}.
//
// Routes:
//   GET  /?symbol=SYM   the attested price of SYM in USD (the output lands on chain a block or two later)
//   GET  /address       the agent's Umbra account and its Ethereum address of the current key epoch
//   POST /sign          {"message": "..."}: an EIP-191 signature by the agent's Ethereum key (prove control)

const SYMBOL = /^[A-Z0-9]{2,10}$/;
const PRICE = /^[0-9]{1,15}(\.[0-9]{1,18})?$/;

function hostOf(url) {
  const m = /^[a-z]+:\/\/([^/?#]+)/i.exec(url);
  return m ? m[1].replace(/^[^@]*@/, "") : "unknown";
}

export default {
  async fetch(request, env) {
    if (request.path === "/address") {
      return Response.json({ umbra: env.wallet.address, eth: env.eth.address });
    }
    if (request.path === "/sign" && request.method === "POST") {
      let message;
      try {
        message = (await request.json()).message;
      } catch (_) {
        return Response.json({ error: "the body is not JSON" }, { status: 400 });
      }
      if (typeof message !== "string" || message.length === 0 || message.length > 1024) {
        return Response.json({ error: "message: a string of 1 to 1024 characters" }, { status: 400 });
      }
      return Response.json({ address: env.eth.address, signature: await env.eth.signMessage(message) });
    }
    if (request.path !== "/") {
      return Response.json({ error: "no route " + request.path }, { status: 404 });
    }
    if (!env.PRICE_URL) {
      return Response.json({ error: "the owner has not set PRICE_URL" }, { status: 503 });
    }
    const symbol = (request.query.symbol || "ETH").toUpperCase();
    if (!SYMBOL.test(symbol)) {
      return Response.json({ error: "symbol: 2 to 10 of A-Z and 0-9" }, { status: 400 });
    }
    const url = env.PRICE_URL + (env.PRICE_URL.includes("?") ? "&" : "?") + "symbol=" + encodeURIComponent(symbol);
    let r;
    try {
      r = umbra.fetch(url);
    } catch (e) {
      return Response.json({ error: "the price API is unreachable: " + e.message }, { status: 502 });
    }
    if (r.status !== 200) {
      return Response.json({ error: "the price API answered " + r.status }, { status: 502 });
    }
    let quote;
    try {
      quote = r.json();
    } catch (_) {
      return Response.json({ error: "the price API did not answer JSON" }, { status: 502 });
    }
    const price = quote && String(quote.price);
    if (!quote || quote.symbol !== symbol || !PRICE.test(price)) {
      return Response.json({ error: "the price API's answer is not a price for " + symbol }, { status: 502 });
    }
    const result = { pair: symbol + "/USD", price, source: hostOf(env.PRICE_URL), at: Date.now() };
    const attestation = await env.attest(result);
    return Response.json({ ...result, attestation });
  },
};
