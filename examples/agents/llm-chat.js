// An LLM chat agent with a secret system prompt: the prompt, the API key and the provider's URL are sealed
// secrets (only the agent's enclaves open them); the agent calls any OpenAI-compatible chat-completions API
// through the built-in `llm.chat` helper on top of `fetch` (under the owner's egress allow-list), and
// answers with the model's reply only. The prompt never leaves the enclave.
//
//   umbra agent deploy examples/agents/llm-chat.js --egress-allow api.openai.com \
//     --secret LLM_BASE_URL=https://api.openai.com/v1 --secret LLM_API_KEY=sk-... \
//     --secret SYSTEM_PROMPT='You are ...' [--secret LLM_MODEL=gpt-4o-mini]
//   umbra agent call AGENT --worker http://HOST:PORT --data '{"message": "hello"}'     (sealed)

export default {
  async fetch(request, env) {
    if (request.method !== "POST") {
      return Response.json({ error: 'POST {"message": "..."}' }, { status: 405 });
    }
    let message;
    try {
      message = (await request.json()).message;
    } catch (_) {
      return Response.json({ error: "the body is not JSON" }, { status: 400 });
    }
    if (typeof message !== "string" || message.length === 0 || message.length > 4000) {
      return Response.json({ error: "message: a string of 1 to 4000 characters" }, { status: 400 });
    }
    if (!env.LLM_BASE_URL || !env.SYSTEM_PROMPT) {
      return Response.json({ error: "the owner has not set LLM_BASE_URL and SYSTEM_PROMPT" }, { status: 503 });
    }
    try {
      const r = await llm.chat({
        baseUrl: env.LLM_BASE_URL,
        apiKey: env.LLM_API_KEY,
        model: env.LLM_MODEL ?? "gpt-4o-mini",
        messages: [
          { role: "system", content: env.SYSTEM_PROMPT },
          { role: "user", content: message },
        ],
        temperature: 0,
      });
      return Response.json({ answer: r.content, usage: r.usage });
    } catch (e) {
      // The provider's status only: its error body could quote the request.
      return Response.json({ error: "the model provider refused: " + (e.status ?? "no answer") }, { status: 502 });
    }
  },
};
