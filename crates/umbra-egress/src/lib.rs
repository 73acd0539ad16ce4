//! Let agents reach the outside world under their owner's policy, and keep auditable receipts of every call.
//!
//! # Why it is shaped this way
//!
//! - **Blocking API.** Agents run on dedicated synchronous engine threads, so `Client::fetch` blocks; it wraps
//!   reqwest's blocking client (rustls with the ring provider and bundled web roots; no aws-lc build).
//! - **Policy as data.** [`Policy`] (allow-list with `*.domain` wildcards, schemes, private-address access,
//!   size limits, timeout, redirects, rate and spend caps) is serde + borsh so the owner can set it on chain;
//!   the client enforces it: redirects are followed by hand so every hop is re-checked, response bodies are read
//!   under the limit (a huge body is cut off, never buffered whole), and private addresses are refused in the
//!   resolver itself (no DNS rebinding around the check).
//! - **Receipts, not logs.** Every exchange (redirect hops and failed calls included) yields a [`Receipt`]
//!   (target, request and response hashes, time, TLS leaf-certificate fingerprint); a [`ReceiptLog`] batches
//!   them per agent under a Merkle root the worker commits on chain, and [`verify_receipt`] checks one receipt
//!   against a committed root.
//! - **LLM helper in JavaScript.** [`LLM_JS`] is the source of the `llm.chat(...)` global for agents: an
//!   OpenAI-compatible chat-completions client on top of `fetch`.
//!
//! Feature `client` (default) is the HTTP client; without it the crate is just the policy and receipt types and
//! their verification, with no HTTP or TLS dependencies, for the chain. Feature `test-server` adds the `testing` module: real local HTTP/HTTPS servers (programmable, OpenAI-compatible,
//! price API) for this crate's tests and for end-to-end tests elsewhere.

//! # Plugging it in (worker side)
//!
//! One `Client` per worker. The engine's `Host::fetch(&FetchRequest)` of an agent maps to
//! `client.fetch(agent_id, &policy_from_chain, Request { method, url, headers, body })` and turns the
//! `EgressError` into the host error text (it names what was refused and why); the `Response` carries status,
//! headers and body. Periodically, `client.batch(&agent)` (or `client.receipts()` for every agent with pending
//! receipts) gives a [`ReceiptBatch`] whose `(agent, seq, root)` the worker commits on chain; it keeps or hands the
//! owner the receipts, each checkable with `batch.proof(i)` and [`verify_receipt`].

#[cfg(feature = "client")]
mod client;
mod policy;
mod receipt;
#[cfg(feature = "test-server")]
pub mod testing;

#[cfg(feature = "client")]
pub use client::{Client, EgressError, Request, Response};
pub use policy::{Policy, RateCap, SpendCap, is_public_ip};
pub use receipt::{Receipt, ReceiptBatch, ReceiptLog, request_hash, response_hash, verify_receipt};
pub use umbra_crypto::MerkleProof;

/// The JavaScript source of the LLM helper: evaluated as a script (or prepended to a module), it defines the
/// global `llm` with `llm.chat({ baseUrl, apiKey, model, messages, temperature?, maxTokens?, stream?, fetch? })`,
/// which resolves to `{ content, usage, raw }` and throws an `llm.LlmError` (with `status` and `body`) for non-200
/// answers and malformed replies. It uses `opts.fetch`, else `umbra.fetch`, else the global `fetch`. With
/// `stream: true` it asks for server-sent events and joins the deltas once the whole body has arrived (`fetch`
/// is not incremental); `raw` is then the list of chunks.
pub const LLM_JS: &str = include_str!("../js/llm.js");
