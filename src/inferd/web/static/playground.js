// The playground: pick a model, set its controls, stream a reply (reasoning in its own panel), see its numbers.

import { ApiError, call, failure, headers } from "./api.js";
import { clear, errorBox, field, formatNumber, h } from "./dom.js";
import { controlsFor } from "./controls.js";
import { asCurl, asPython } from "./snippets.js";
import { sseEvents } from "./sse.js";

const MAX_ATTACHMENT_BYTES = 15 * 1024 * 1024; // the server takes bodies up to 20 MiB; base64 adds a third

export function playgroundPage(root, who, { signOut }) {
  const state = { cards: [], controls: null, history: [], attachments: [], abort: null, lastBody: null };
  const ui = build(state);
  root.append(ui.section);
  if (who.management) {
    ui.notice.append(errorBox("This is a management key: it manages keys and sees all usage, but cannot call "
      + "completions (403). Sign in with an ordinary key to chat."));
  }
  call("/api/v1/models").then((list) => {
    state.cards = list.data;
    for (const card of list.data) ui.model.append(h("option", { value: card.id }, card.id));
    ui.model.disabled = false;
    chooseModel(state, ui);
  }).catch((exc) => {
    if (exc instanceof ApiError && exc.status === 401) return signOut();
    ui.notice.append(errorBox(`Could not list models: ${exc.describe ? exc.describe() : exc.message}`));
  });
  return () => state.abort && state.abort.abort();
}

function build(state) {
  const ui = {};
  ui.model = h("select", { name: "model", disabled: true, onchange: () => chooseModel(state, ui) });
  ui.controlsBox = h("div");
  ui.system = h("textarea", { name: "system", rows: 2, placeholder: "optional" });
  ui.extra = h("textarea", { name: "extra", rows: 2, spellcheck: false, placeholder: '{"seed": 7, "stop": ["\\n\\n"]}' });
  ui.prompt = h("textarea", { name: "prompt", rows: 3, required: true, placeholder: "Ask something" });
  ui.files = h("input", { type: "file", name: "attachments", multiple: true,
                          onchange: () => attach(state, ui, ui.files.files) });
  ui.attachBox = h("div", { className: "attach", hidden: true }, field("Attach images or video", ui.files,
    "sent as data: URLs"), ui.previews = h("ul", { className: "previews", "aria-label": "Attachments" }));
  ui.send = h("button", { type: "submit" }, "Send");
  ui.stop = h("button", { type: "button", disabled: true, onclick: () => state.abort && state.abort.abort() }, "Stop");
  ui.log = h("ol", { className: "log", "aria-live": "polite", "aria-label": "Conversation" });
  ui.notice = h("div");
  ui.snippet = h("pre", { className: "snippet", hidden: true, tabIndex: 0, "aria-label": "Request as code" });
  ui.copied = h("p", { className: "muted", role: "status" });
  const form = h("form", { className: "composer", onsubmit: (e) => { e.preventDefault(); send(state, ui); } },
    field("Message", ui.prompt), ui.attachBox,
    h("div", { className: "row" }, ui.send, ui.stop,
      h("button", { type: "button", onclick: () => newChat(state, ui) }, "New chat"),
      h("button", { type: "button", onclick: () => copy(state, ui, asCurl) }, "Copy as curl"),
      h("button", { type: "button", onclick: () => copy(state, ui, asPython) }, "Copy as Python")));
  const settings = h("aside", { className: "settings card", "aria-label": "Request settings" },
    field("Model", ui.model),
    // folded on a phone, so that the conversation is not below a screenful of controls
    h("details", { className: "params", open: !window.matchMedia("(max-width: 720px)").matches },
      h("summary", {}, "Parameters"), ui.controlsBox),
    h("details", {}, h("summary", {}, "System prompt"), field("System message", ui.system)),
    h("details", {}, h("summary", {}, "More request fields (JSON)"),
      field("Extra fields", ui.extra,
        "merged into the request body, e.g. seed, stop; unsupported ones come back in the ignored-params header")));
  ui.section = h("section", { className: "playground", "aria-labelledby": "pg-title" },
    h("h1", { id: "pg-title" }, "Playground"), ui.notice,
    h("div", { className: "split" }, settings,
      h("div", { className: "chat" }, ui.log, form, ui.copied, ui.snippet)));
  return ui;
}

function card(state, ui) {
  return state.cards.find((c) => c.id === ui.model.value);
}

function chooseModel(state, ui) {
  const current = card(state, ui);
  if (!current) return;
  state.controls = controlsFor(current);
  clear(ui.controlsBox).append(state.controls.element);
  const media = (current.architecture.input_modalities || []).filter((m) => m === "image" || m === "video");
  ui.attachBox.hidden = !media.length;
  ui.files.accept = media.map((m) => `${m}/*`).join(",");
  if (!media.length) setAttachments(state, ui, []);
}

async function attach(state, ui, files) {
  const read = (file) => new Promise((resolve, reject) => {
    const reader = new FileReader();
    reader.onload = () => resolve({ name: file.name, type: file.type, url: reader.result, size: file.size });
    reader.onerror = () => reject(reader.error);
    reader.readAsDataURL(file);
  });
  const added = await Promise.all([...files].map(read));
  ui.files.value = "";
  setAttachments(state, ui, [...state.attachments, ...added]);
}

function setAttachments(state, ui, list) {
  state.attachments = list;
  clear(ui.previews);
  list.forEach((item, index) => {
    const preview = item.type.startsWith("video/")
      ? h("video", { src: item.url, muted: true, className: "thumb" })
      : h("img", { src: item.url, alt: item.name, className: "thumb" });
    ui.previews.append(h("li", {}, preview, h("span", {}, item.name),
      h("button", { type: "button", "aria-label": `Remove ${item.name}`,
                    onclick: () => setAttachments(state, ui, list.filter((_, i) => i !== index)) }, "Remove")));
  });
}

function userMessage(text, attachments) {
  if (!attachments.length) return { role: "user", content: text };
  const parts = text ? [{ type: "text", text }] : [];
  for (const a of attachments) {
    parts.push(a.type.startsWith("video/")
      ? { type: "video_url", video_url: { url: a.url } }
      : { type: "image_url", image_url: { url: a.url } });
  }
  return { role: "user", content: parts };
}

// The request body for the conversation so far plus what is in the composer (throws RangeError on bad input)
function requestBody(state, ui) {
  let extra = {};
  if (ui.extra.value.trim()) {
    try {
      extra = JSON.parse(ui.extra.value);
    } catch (exc) {
      throw new RangeError(`More request fields: not JSON (${exc.message}).`);
    }
    if (typeof extra !== "object" || Array.isArray(extra) || extra === null) {
      throw new RangeError("More request fields: must be a JSON object.");
    }
  }
  const messages = [];
  if (ui.system.value.trim()) messages.push({ role: "system", content: ui.system.value });
  messages.push(...state.history);
  const text = ui.prompt.value;
  if (text.trim() || state.attachments.length) messages.push(userMessage(text, state.attachments));
  return { model: ui.model.value, messages, ...state.controls.values(), ...extra,
           stream: true, stream_options: { include_usage: true } };
}

// The request the composer would send; with an empty composer, the last one sent
function snippetBody(state, ui) {
  const body = requestBody(state, ui);
  const last = body.messages[body.messages.length - 1];
  return (!last || last.role !== "user") && state.lastBody ? state.lastBody : body;
}

function copy(state, ui, render) {
  let text;
  try {
    text = render(snippetBody(state, ui));
  } catch (exc) {
    ui.copied.textContent = exc.message;
    return;
  }
  ui.snippet.textContent = text;
  ui.snippet.hidden = false;
  const done = (how) => { ui.copied.textContent = how; };
  if (navigator.clipboard) {
    navigator.clipboard.writeText(text).then(() => done("Copied to the clipboard (set INFERD_KEY first)."),
      () => done("Shown below: select it and copy (the clipboard is not available here)."));
  } else {
    done("Shown below: select it and copy.");
  }
}

function newChat(state, ui) {
  if (state.abort) state.abort.abort();
  state.history = [];
  state.lastBody = null;
  clear(ui.log);
  ui.snippet.hidden = true;
}

function replyView() {
  const view = {};
  view.reasoningText = h("pre", { className: "reasoning-text" });
  view.reasoning = h("details", { className: "reasoning", hidden: true, open: true },
    h("summary", {}, "Reasoning"), view.reasoningText);
  view.content = h("div", { className: "content" });
  view.stats = h("dl", { className: "stats" });
  view.element = h("li", { className: "msg assistant" }, h("span", { className: "role" }, "assistant"),
    view.reasoning, view.content, view.stats);
  return view;
}

async function send(state, ui) {
  if (state.abort) return;
  let body;
  try {
    body = requestBody(state, ui);
  } catch (exc) {
    ui.log.append(h("li", { className: "msg" }, errorBox(exc.message)));
    return;
  }
  const last = body.messages[body.messages.length - 1];
  if (!last || last.role !== "user") return ui.prompt.focus();
  ui.log.append(h("li", { className: "msg user" }, h("span", { className: "role" }, "user"),
    h("div", { className: "content" }, ui.prompt.value),
    state.attachments.map((a) => h("span", { className: "chip" }, a.name))));
  ui.prompt.value = "";
  setAttachments(state, ui, []);
  const view = replyView();
  ui.log.append(view.element);
  state.lastBody = body;
  state.abort = new AbortController();
  ui.send.disabled = true;
  ui.stop.disabled = false;
  try {
    const reply = await stream(body, view, state.abort.signal);
    state.history.push(last, { role: "assistant", content: reply });
  } catch (exc) {
    const message = exc.name === "AbortError" ? "Stopped." : exc.describe ? exc.describe() : exc.message;
    view.element.append(errorBox(message));
  } finally {
    state.abort = null;
    ui.send.disabled = false;
    ui.stop.disabled = true;
  }
}

async function stream(body, view, signal) {
  const started = performance.now();
  let response;
  try {
    response = await fetch("/api/v1/chat/completions", { method: "POST", signal, cache: "no-store",
      credentials: "omit", headers: headers(undefined, { "Content-Type": "application/json" }),
      body: JSON.stringify(body) });
  } catch (exc) {
    if (exc.name === "AbortError") throw exc;
    throw new ApiError(0, null, `The server could not be reached (${exc.message}).`);
  }
  if (!response.ok) throw await failure(response);
  const timing = { started, first: null, end: null };
  let content = "";
  let usage = null;
  let finish = null;
  for await (const event of sseEvents(response)) {
    if (event.error) throw new ApiError(0, event, "The stream ended with an error.");
    if (event.usage) usage = event.usage;
    for (const choice of event.choices || []) {
      const delta = choice.delta || {};
      const thought = delta.reasoning_content ?? delta.reasoning;
      if (thought) {
        view.reasoning.hidden = false;
        view.reasoningText.append(thought);
      }
      if (delta.content) {
        content += delta.content;
        view.content.append(delta.content);
      }
      if ((thought || delta.content) && timing.first === null) timing.first = performance.now();
      if (choice.finish_reason) finish = choice.finish_reason;
    }
  }
  timing.end = performance.now();
  showStats(view.stats, response.headers, usage, timing, finish);
  return content;
}

function showStats(list, responseHeaders, usage, timing, finish) {
  const add = (name, value) => list.append(h("div", {}, h("dt", {}, name), h("dd", { dataset: { stat: name } }, value)));
  const completion = usage ? usage.completion_tokens : null;
  const details = usage && usage.completion_tokens_details;
  const reasoning = details ? details.reasoning_tokens : 0;
  add("tokens", usage ? `${usage.prompt_tokens} in, ${completion} out${reasoning ? ` (${reasoning} reasoning)` : ""}` : "-");
  add("TTFT", timing.first === null ? "-" : `${formatNumber(timing.first - timing.started)} ms`);
  const decoding = timing.first === null ? 0 : (timing.end - timing.first) / 1000;
  const rate = completion > 1 && decoding > 0 ? (completion - 1) / decoding : null;
  add("tokens/s", rate === null ? "-" : formatNumber(rate, 1));
  add("finish", finish || "-");
  add("ignored params", responseHeaders.get("X-Inferd-Ignored-Params") || "none");
  const reasoningHeader = responseHeaders.get("X-Inferd-Reasoning");
  if (reasoningHeader) add("reasoning", reasoningHeader);
  const frames = responseHeaders.get("X-Inferd-Video-Frames");
  if (frames) add("video frames", frames);
}
