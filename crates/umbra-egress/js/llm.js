// Umbra agent LLM helper: OpenAI-compatible chat completions on top of fetch.
// Defines the global `llm`; see `umbra_egress::LLM_JS` for the contract.
(function (g) {
  "use strict";

  class LlmError extends Error {
    constructor(message, status, body) {
      super(message);
      this.name = "LlmError";
      this.status = status;
      this.body = body;
    }
  }

  const pickFetch = (opts) => {
    if (typeof opts.fetch === "function") return opts.fetch;
    if (g.umbra && typeof g.umbra.fetch === "function") return g.umbra.fetch;
    if (typeof g.fetch === "function") return g.fetch;
    throw new LlmError("llm.chat: no fetch available", 0, "");
  };

  const bodyText = async (r) => {
    if (typeof r.text === "function") return await r.text();
    if (typeof r.body === "string") return r.body;
    return "";
  };

  // A streamed answer (server-sent events), read whole: the deltas joined, usage from the last chunk that has
  // it, `raw` the list of chunks.
  const fromEvents = (text, url, status) => {
    const chunks = [];
    for (const line of text.split("\n")) {
      const l = line.trim();
      if (!l.startsWith("data:")) continue;
      const data = l.slice(5).trim();
      if (data === "[DONE]") break;
      try {
        chunks.push(JSON.parse(data));
      } catch (_) {
        throw new LlmError("llm.chat: a streamed event from " + url + " is not JSON", status, text);
      }
    }
    if (chunks.length === 0) throw new LlmError("llm.chat: the stream from " + url + " has no events", status, text);
    let content = "";
    let usage = null;
    for (const c of chunks) {
      const d = c && Array.isArray(c.choices) && c.choices[0] ? c.choices[0].delta : undefined;
      if (d && typeof d.content === "string") content += d.content;
      if (c && c.usage) usage = c.usage;
    }
    return { content, usage, raw: chunks };
  };

  async function chat(opts) {
    opts = opts || {};
    const { baseUrl, apiKey, model, messages, temperature, maxTokens } = opts;
    if (typeof baseUrl !== "string" || baseUrl === "") throw new LlmError("llm.chat: baseUrl (string) is required", 0, "");
    if (typeof model !== "string" || model === "") throw new LlmError("llm.chat: model (string) is required", 0, "");
    if (!Array.isArray(messages) || messages.length === 0) {
      throw new LlmError("llm.chat: messages must be a non-empty array of { role, content }", 0, "");
    }
    for (const m of messages) {
      if (!m || typeof m.role !== "string" || typeof m.content !== "string") {
        throw new LlmError("llm.chat: every message needs a string role and content", 0, "");
      }
    }
    const request = { model, messages: messages.map((m) => ({ role: m.role, content: m.content })) };
    if (opts.stream) request.stream = true;
    if (temperature !== undefined) request.temperature = temperature;
    if (maxTokens !== undefined) request.max_tokens = maxTokens;
    const headers = { "content-type": "application/json", accept: "application/json" };
    if (apiKey) headers.authorization = "Bearer " + apiKey;
    const url = baseUrl.replace(/\/+$/, "") + "/chat/completions";

    const r = await pickFetch(opts)(url, { method: "POST", headers, body: JSON.stringify(request) });
    const text = await bodyText(r);
    if (r.status !== 200) {
      let detail = text.length > 500 ? text.slice(0, 500) + "..." : text;
      try {
        const j = JSON.parse(text);
        if (j && j.error && typeof j.error.message === "string") detail = j.error.message;
      } catch (_) {
        // Not JSON: keep the raw text.
      }
      throw new LlmError("llm.chat: HTTP " + r.status + " from " + url + ": " + detail, r.status, text);
    }
    if (opts.stream) return fromEvents(text, url, r.status);
    let raw;
    try {
      raw = JSON.parse(text);
    } catch (_) {
      throw new LlmError("llm.chat: the answer from " + url + " is not JSON", r.status, text);
    }
    const choice = raw && Array.isArray(raw.choices) ? raw.choices[0] : undefined;
    if (!choice || !choice.message || typeof choice.message.content !== "string") {
      throw new LlmError("llm.chat: the answer has no choices[0].message.content", r.status, text);
    }
    return { content: choice.message.content, usage: raw.usage || null, raw };
  }

  g.llm = Object.freeze({ chat, LlmError });
})(globalThis);
