// The Model Library: each model's card (modalities, context, parameters, reasoning, pricing) and engine health.

import { ApiError, call } from "./api.js";
import { errorBox, formatNumber, h } from "./dom.js";

export function modelsPage(root, who, { signOut }) {
  const list = h("div", { className: "cards" }, h("p", { className: "muted" }, "Loading models..."));
  const refresh = h("button", { type: "button", onclick: () => load(list, signOut) }, "Refresh");
  root.append(h("section", { "aria-labelledby": "models-title" },
    h("div", { className: "row heading" }, h("h1", { id: "models-title" }, "Models"), refresh), list));
  load(list, signOut);
  return null;
}

async function load(list, signOut) {
  let models;
  let health = null;
  try {
    [models, health] = await Promise.all([call("/api/v1/models"), healthReport()]);
  } catch (exc) {
    if (exc instanceof ApiError && exc.status === 401) return signOut();
    list.replaceChildren(errorBox(`Could not load the models: ${exc.describe ? exc.describe() : exc.message}`));
    return;
  }
  const cards = models.data.map((model) => modelCard(model, health));
  list.replaceChildren(...(cards.length ? cards : [h("p", {}, "This key may use no model.")]));
}

// /health answers 503 while models load or after a failure, with the same body: both are shown
async function healthReport() {
  try {
    const response = await fetch("/health", { cache: "no-store", credentials: "omit" });
    return await response.json();
  } catch (exc) {
    return { status: "unreachable", engines: {} };
  }
}

function row(name, ...value) {
  return h("div", {}, h("dt", {}, name), h("dd", {}, ...value));
}

function chips(items) {
  return h("ul", { className: "chips" }, items.map((item) => h("li", { className: "chip" }, item)));
}

function modelCard(model, health) {
  const engine = (health.engines || {})[model.id];
  const reasoning = model.reasoning;
  const pricing = Object.entries(model.pricing || {}).map(([k, v]) => `${k} ${v}`);
  const id = `model-${model.id.replace(/[^A-Za-z0-9_-]/g, "_")}`;
  return h("article", { className: "card model", "aria-labelledby": id, dataset: { model: model.id } },
    h("h2", { id }, model.id),
    h("p", { className: "muted" }, `owned by ${model.owned_by}`),
    h("dl", { className: "facts" },
      row("engine", engine ? engineText(engine) : `not reported (health: ${health.status})`),
      row("context", `${formatNumber(model.context_length)} tokens`),
      row("input", chips(model.architecture.input_modalities)),
      row("output", chips(model.architecture.output_modalities)),
      row("reasoning", reasoning ? reasoningView(reasoning) : "none"),
      row("pricing (per token)", chips(pricing)),
      row("supported parameters", chips(model.supported_parameters))));
}

function engineText(engine) {
  const parts = [`${engine.kind}: ${engine.state}`];
  if (engine.pid) parts.push(`pid ${engine.pid}`);
  if (engine.rss_bytes) parts.push(`${formatNumber(engine.rss_bytes / 1048576)} MiB`);
  parts.push(`${engine.restarts} restarts`, `${engine.in_flight} in flight`);
  if (engine.last_error) parts.push(`last error: ${engine.last_error}`);
  return h("span", { className: `state state-${engine.state}` }, parts.join(", "));
}

function reasoningView(reasoning) {
  return h("div", {}, `style ${reasoning.style}, default effort ${reasoning.default_effort}`,
    h("ul", { className: "efforts" },
      Object.entries(reasoning.efforts).map(([effort, meaning]) => h("li", {}, h("code", {}, effort), ` ${meaning}`))));
}
