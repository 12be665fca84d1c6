// mof chat: a page served by mof-serve at /. It keeps the conversation in memory, sends the whole
// history to /v1/chat/completions with stream: true (the server's state cache makes each turn read
// only its new message) and shows the reply as its SSE chunks arrive. Plain browser JavaScript:
// no build step, nothing loaded from anywhere but this server.
"use strict";

const $ = (id) => document.getElementById(id);
const KEY_STORE = "mof-api-key";
const state = { model: null, history: [], controller: null };

function headers() {
  const h = { "Content-Type": "application/json" };
  const key = localStorage.getItem(KEY_STORE);
  if (key) h["Authorization"] = "Bearer " + key;
  return h;
}

function setStatus(text, kind) {
  const s = $("status");
  s.textContent = text;
  s.dataset.state = kind;
}

function addMessage(role, text) {
  const div = document.createElement("div");
  div.className = "message " + role;
  const body = document.createElement("span");
  body.className = "text";
  body.textContent = text;
  div.appendChild(body);
  $("messages").appendChild(div);
  div.scrollIntoView({ block: "end" });
  return div;
}

function setMeta(div, text) {
  let meta = div.querySelector(".meta");
  if (!meta) {
    meta = document.createElement("span");
    meta.className = "meta";
    div.appendChild(meta);
  }
  meta.textContent = text;
}

async function loadInfo() {
  try {
    const health = await (await fetch("/health")).json();
    if (health.status !== "ok") {
      setStatus("the model is " + health.status + (health.detail ? ": " + health.detail : ""), "loading");
      setTimeout(loadInfo, 1000);
      return;
    }
    state.model = health.model;
    $("info-model").textContent = health.model;
    $("info-mode").textContent = health.mode + (health.refill_every ? " (R = " + health.refill_every + ")" : "");
    $("info-precision").textContent = health.precision;
    const models = await fetch("/v1/models", { headers: headers() });
    $("key-panel").hidden = models.status !== 401;
    setStatus(models.status === 401 ? "an API key is needed" : "ready", models.status === 401 ? "key" : "idle");
  } catch (e) {
    setStatus("cannot reach the server: " + e, "error");
    setTimeout(loadInfo, 2000);
  }
}

function requestBody() {
  const body = { model: state.model, messages: state.history, stream: true,
                 stream_options: { include_usage: true } };
  const maxTokens = parseInt($("max-tokens").value, 10);
  if (maxTokens > 0) body.max_tokens = maxTokens;
  const temperature = parseFloat($("temperature").value);
  if (!Number.isNaN(temperature)) body.temperature = temperature;
  const seed = parseInt($("seed").value, 10);
  if (!Number.isNaN(seed)) body.seed = seed;
  return body;
}

function showTimings(t) {
  if (!t) return;
  if (t.decode_tokens_per_second) $("info-speed").textContent = t.decode_tokens_per_second.toFixed(1);
  $("timings").textContent = "prompt " + t.prompt_tokens + " tokens (" + t.cached_tokens + " cached), "
    + Math.round(t.prompt_ms) + " ms; " + t.completion_tokens + " tokens in " + Math.round(t.decode_ms) + " ms"
    + (t.queue_ms > 1 ? "; queued " + Math.round(t.queue_ms) + " ms" : "");
}

async function send(text) {
  state.history.push({ role: "user", content: text });
  addMessage("user", text);
  const bubble = addMessage("assistant", "");
  const out = bubble.querySelector(".text");
  bubble.dataset.chunks = "0";
  state.controller = new AbortController();
  $("send").disabled = true;
  $("stop").disabled = false;
  setStatus("streaming…", "streaming");
  let reply = "", finish = null, failed = null;
  try {
    const r = await fetch("/v1/chat/completions", { method: "POST", headers: headers(),
                                                   body: JSON.stringify(requestBody()), signal: state.controller.signal });
    if (!r.ok) {
      const err = await r.json().catch(() => ({ error: { message: r.statusText } }));
      if (r.status === 401) $("key-panel").hidden = false;
      throw new Error(err.error ? err.error.message : "HTTP " + r.status);
    }
    const reader = r.body.getReader();
    const decoder = new TextDecoder();
    let buffer = "";
    for (;;) {
      const { value, done } = await reader.read();
      if (done) break;
      buffer += decoder.decode(value, { stream: true });
      let end;
      while ((end = buffer.indexOf("\n\n")) >= 0) {
        const event = buffer.slice(0, end);
        buffer = buffer.slice(end + 2);
        if (!event.startsWith("data: ")) continue;
        const data = event.slice(6);
        if (data === "[DONE]") continue;
        const chunk = JSON.parse(data);
        if (chunk.error) { failed = chunk.error.message; continue; }
        if (chunk.timings && !chunk.choices.length) showTimings(chunk.timings);
        for (const choice of chunk.choices || []) {
          if (choice.delta && choice.delta.content) {
            reply += choice.delta.content;
            out.textContent = reply;
            bubble.dataset.chunks = String(Number(bubble.dataset.chunks) + 1);
            bubble.scrollIntoView({ block: "end" });
          }
          if (choice.finish_reason) finish = choice.finish_reason;
        }
      }
    }
  } catch (e) {
    if (e.name === "AbortError") finish = "stopped";
    else failed = String(e.message || e);
  } finally {
    state.controller = null;
    $("send").disabled = false;
    $("stop").disabled = true;
  }
  if (reply) state.history.push({ role: "assistant", content: reply });
  else state.history.pop();                 // nothing came back: the turn is not part of the history
  if (failed) {
    bubble.classList.add("error");
    setMeta(bubble, failed);
    setStatus("error: " + failed, "error");
  } else {
    setMeta(bubble, finish === "length" ? "(max tokens reached)" : finish === "stopped" ? "(stopped)" : "");
    setStatus("ready", "idle");
  }
  bubble.dataset.finish = failed ? "error" : finish || "";
}

$("composer").addEventListener("submit", (e) => {
  e.preventDefault();
  const text = $("prompt").value.trim();
  if (!text || state.controller || !state.model) return;
  $("prompt").value = "";
  send(text);
});
$("prompt").addEventListener("keydown", (e) => {
  if (e.key === "Enter" && !e.shiftKey && !e.isComposing) {
    e.preventDefault();
    $("composer").requestSubmit();
  }
});
$("stop").addEventListener("click", () => state.controller && state.controller.abort());
$("clear").addEventListener("click", () => {
  if (state.controller) state.controller.abort();
  state.history = [];
  $("messages").replaceChildren();
  $("timings").textContent = "";
});
$("key-save").addEventListener("click", () => {
  localStorage.setItem(KEY_STORE, $("api-key").value.trim());
  $("api-key").value = "";
  loadInfo();
});
loadInfo();
