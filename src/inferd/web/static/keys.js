// Keys (management keys only): create (the secret shown once), limits, disable/enable, delete.

import { ApiError, call } from "./api.js";
import { clear, errorBox, field, formatCost, formatNumber, h } from "./dom.js";

const RESETS = [["", "never"], ["daily", "daily"], ["weekly", "weekly"], ["monthly", "monthly"]];
const RATES = [["requests_per_minute", "Requests per minute"], ["tokens_per_minute", "Tokens per minute"],
  ["concurrent_requests", "Concurrent requests"]];

export function keysPage(root, who, { signOut }) {
  const ctx = { list: h("div", { className: "cards" }), status: h("div", { role: "status" }), models: [], signOut };
  const created = h("div");
  const formBox = h("div");
  let form = null;
  const save = async (body) => {
    const answer = await call("/api/v1/keys", { method: "POST", body });
    showSecret(created, answer);
    form.reset();
    await load(ctx);
  };
  const render = () => { form = limitsForm(null, ctx, "Create key", save); formBox.replaceChildren(form); };
  render();
  root.append(h("section", { "aria-labelledby": "keys-title" }, h("h1", { id: "keys-title" }, "Keys"),
    h("details", { className: "card", open: true }, h("summary", {}, "New key"), formBox), created, ctx.status, ctx.list));
  call("/api/v1/models").then((models) => {
    ctx.models = models.data.map((m) => m.id);
    render();
  }).catch(() => {});
  load(ctx);
  return null;
}

function report(ctx, exc) {
  if (exc instanceof ApiError && exc.status === 401) return ctx.signOut();
  ctx.status.replaceChildren(errorBox(exc.describe ? exc.describe() : exc.message));
}

async function load(ctx) {
  try {
    const page = await call("/api/v1/keys?limit=100");
    ctx.list.replaceChildren(...page.data.map((key) => keyCard(key, ctx)));
  } catch (exc) {
    report(ctx, exc);
  }
}

function showSecret(box, answer) {
  const secret = h("input", { type: "text", readOnly: true, value: answer.key, className: "secret",
                               "aria-label": `The new key ${answer.data.name}` });
  const copied = h("span", { role: "status" });
  clear(box).append(h("div", { className: "card once", role: "alert" },
    h("h2", {}, `Key '${answer.data.name}' created`),
    h("p", {}, "Copy it now: this is the only time it is shown. inferd keeps only its hash."),
    secret,
    h("div", { className: "row" },
      h("button", { type: "button", onclick: () => { secret.select(); copyText(answer.key, copied); } }, "Copy"),
      h("button", { type: "button", onclick: () => clear(box) }, "Done, hide it"), copied)));
  secret.focus();
  secret.select();
}

function copyText(text, status) {
  if (!navigator.clipboard) return;
  navigator.clipboard.writeText(text).then(() => { status.textContent = "Copied."; }, () => {});
}

function numberInput(name, value, integer) {
  return h("input", { type: "number", name, min: integer && name !== "token_limit" ? 1 : 0, step: integer ? 1 : "any",
                      value: value ?? "", placeholder: "none" });
}

// One form for both creating (key null) and editing a key's limits; onsave gets the request body
function limitsForm(key, ctx, label, onsave) {
  const rate = (key && key.rate_limit) || {};
  const inputs = {
    name: h("input", { type: "text", name: "name", required: true, maxLength: 100, value: key ? key.name : "" }),
    limit: numberInput("limit", key && key.limit, false),
    limit_reset: h("select", { name: "limit_reset" }, RESETS.map(([v, t]) =>
      h("option", { value: v, selected: ((key && key.limit_reset) || "") === v }, t))),
    token_limit: numberInput("token_limit", key && key.token_limit, true),
    expires_at: h("input", { type: "text", name: "expires_at", value: (key && key.expires_at) || "",
                             placeholder: "2030-01-01T00:00:00Z" }),
  };
  for (const [name] of RATES) inputs[name] = numberInput(name, rate[name], true);
  const chosen = new Set((key && key.models) || []);
  const models = ctx.models.map((id) => h("label", { className: "check" },
    h("input", { type: "checkbox", name: "models", value: id, checked: chosen.has(id) }), id));
  const management = key ? null : h("input", { type: "checkbox", name: "management" });
  const error = h("div");
  const form = h("form", { className: "key-form" },
    field("Name", inputs.name), field("Spend limit", inputs.limit, "price units per period; empty: none"),
    field("Limit reset", inputs.limit_reset), field("Token limit", inputs.token_limit, "tokens per period"),
    RATES.map(([name, text]) => field(text, inputs[name])),
    field("Expires at (UTC)", inputs.expires_at, "ISO 8601 ending in Z; empty: never"),
    models.length ? h("fieldset", {}, h("legend", {}, "Models (none ticked: every model)"), models) : null,
    management ? h("label", { className: "check" }, management, "Management key (manages keys; cannot chat)") : null,
    h("div", { className: "row" }, h("button", { type: "submit" }, label)), error);
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    const body = formBody(inputs, form, management, !key);
    error.replaceChildren();
    try {
      await onsave(body);
    } catch (exc) {
      if (exc instanceof ApiError && exc.status === 401) return ctx.signOut();
      error.replaceChildren(errorBox(exc.describe ? exc.describe() : exc.message));
    }
  });
  return form;
}

function formBody(inputs, form, management, creating) {
  const num = (input) => (input.value.trim() === "" ? null : Number(input.value));
  const ticked = [...form.querySelectorAll('input[name="models"]:checked')].map((i) => i.value);
  const body = {
    name: inputs.name.value, limit: num(inputs.limit), limit_reset: inputs.limit_reset.value || null,
    token_limit: num(inputs.token_limit), expires_at: inputs.expires_at.value.trim() || null,
    rate_limit: Object.fromEntries(RATES.map(([name]) => [name, num(inputs[name])])),
    models: ticked.length ? ticked : null,
  };
  if (!creating) return body;
  for (const [name, value] of Object.entries(body)) if (value === null) delete body[name];
  if (Object.values(body.rate_limit).every((v) => v === null)) delete body.rate_limit;
  if (management && management.checked) body.management = true;
  return body;
}

function limitsText(key) {
  const parts = [];
  const period = key.limit_reset || "total";
  if (key.limit !== null) parts.push(`spend ${key.limit} ${period} (${formatCost(key.limit_remaining)} left)`);
  if (key.token_limit !== null) parts.push(`${formatNumber(key.token_limit)} tokens ${period}`);
  const rate = key.rate_limit || {};
  if (rate.requests_per_minute) parts.push(`${rate.requests_per_minute} req/min`);
  if (rate.tokens_per_minute) parts.push(`${rate.tokens_per_minute} tok/min`);
  if (rate.concurrent_requests) parts.push(`${rate.concurrent_requests} at once`);
  if (key.models) parts.push(`models: ${key.models.join(", ")}`);
  if (key.expires_at) parts.push(`expires ${key.expires_at}`);
  return parts.length ? parts.join("; ") : "none";
}

function keyCard(key, ctx) {
  const patch = async (body) => {
    await call(`/api/v1/keys/${key.hash}`, { method: "PATCH", body });
    await load(ctx);
  };
  const run = (action) => action().catch((exc) => report(ctx, exc));
  const editor = h("details", {}, h("summary", {}, "Edit limits"), limitsForm(key, ctx, "Save limits", patch));
  const actions = h("div", { className: "row" });
  const remove = h("button", { type: "button", className: "danger", onclick: () => {
    actions.replaceChildren(h("span", {}, `Delete '${key.name}' for good?`),
      h("button", { type: "button", className: "danger",
                    onclick: () => run(async () => {
                      await call(`/api/v1/keys/${key.hash}`, { method: "DELETE" });
                      await load(ctx);
                    }) },
        "Confirm delete"),
      h("button", { type: "button", onclick: () => load(ctx) }, "Cancel"));
    actions.querySelector("button").focus();
  } }, "Delete");
  actions.append(h("button", { type: "button", onclick: () => run(() => patch({ disabled: !key.disabled })) },
    key.disabled ? "Enable" : "Disable"), remove);
  return h("article", { className: "card key", dataset: { key: key.name } },
    h("h2", {}, key.name, " ", h("span", { className: `badge ${key.disabled ? "off" : "on"}` },
      key.disabled ? "disabled" : "active"), key.management ? h("span", { className: "badge" }, "management") : null),
    h("dl", { className: "facts" },
      h("div", {}, h("dt", {}, "label"), h("dd", {}, h("code", {}, key.label))),
      h("div", {}, h("dt", {}, "limits"), h("dd", {}, limitsText(key))),
      h("div", {}, h("dt", {}, "use"), h("dd", {}, `${formatNumber(key.requests.total)} requests, `
        + `${formatNumber(key.tokens.total)} tokens, cost ${formatCost(key.usage)}`)),
      h("div", {}, h("dt", {}, "last used"), h("dd", {}, key.last_used_at || "never")),
      h("div", {}, h("dt", {}, "created"), h("dd", {}, key.created_at))),
    actions, editor);
}
