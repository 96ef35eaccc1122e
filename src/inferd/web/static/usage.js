// Usage: charts by day, model and key (tokens, requests or cost) and a table with CSV export.

import { ApiError, call } from "./api.js";
import { errorBox, field, formatCost, formatNumber, h } from "./dom.js";
import { barChart, columnChart } from "./charts.js";

const METRICS = { total_tokens: ["tokens", formatNumber], requests: ["requests", formatNumber], cost: ["cost", formatCost] };
const COLUMNS = [["requests", formatNumber], ["prompt_tokens", formatNumber], ["completion_tokens", formatNumber],
  ["reasoning_tokens", formatNumber], ["total_tokens", formatNumber], ["cost", formatCost],
  ["avg_ttft_ms", formatNumber], ["avg_duration_ms", formatNumber]];
const DAY_MS = 86400000;

function isoDay(ms) {
  return new Date(ms).toISOString().slice(0, 10);
}

export function usagePage(root, who, { signOut }) {
  const today = Date.now();
  const ui = {
    from: h("input", { type: "date", name: "from", value: isoDay(today - 29 * DAY_MS) }),
    to: h("input", { type: "date", name: "to", value: isoDay(today) }),
    metric: h("select", { name: "metric" }, Object.entries(METRICS).map(([v, [t]]) => h("option", { value: v }, t))),
    charts: h("div", { className: "charts" }), table: h("div", { className: "table-wrap" }), status: h("div"),
    who, signOut,
  };
  const refresh = () => load(ui);
  ui.metric.addEventListener("change", () => draw(ui));
  const form = h("form", { className: "filters", onsubmit: (e) => { e.preventDefault(); refresh(); } },
    field("From (UTC day)", ui.from), field("To (UTC day, included)", ui.to), field("Show", ui.metric),
    h("div", { className: "row" }, h("button", { type: "submit" }, "Refresh"),
      h("button", { type: "button", onclick: () => exportCsv(ui) }, "Export CSV")));
  root.append(h("section", { "aria-labelledby": "usage-title" }, h("h1", { id: "usage-title" }, "Usage"),
    h("p", { className: "muted" }, who.management ? "Every key's usage." : "This key's usage."),
    form, ui.status, ui.charts, h("h2", {}, "By day, model and key"), ui.table));
  refresh();
  return null;
}

function query(ui, groupBy, format) {
  const params = new URLSearchParams({ group_by: groupBy });
  if (ui.from.value) params.set("from", ui.from.value);
  if (ui.to.value) params.set("to", isoDay(Date.parse(ui.to.value) + DAY_MS)); // the API's `to` is exclusive
  if (format) params.set("format", format);
  return `/api/v1/usage?${params}`;
}

async function load(ui) {
  ui.status.replaceChildren(h("p", { className: "muted", role: "status" }, "Loading..."));
  try {
    const [day, model, key, all] = await Promise.all(["day", "model", "key", "day,model,key"].map(
      (g) => call(query(ui, g))));
    ui.data = { day: day.data, model: model.data, key: key.data, all: all.data };
    ui.status.replaceChildren();
    draw(ui);
  } catch (exc) {
    if (exc instanceof ApiError && exc.status === 401) return ui.signOut();
    ui.status.replaceChildren(errorBox(`Could not load usage: ${exc.describe ? exc.describe() : exc.message}`));
  }
}

function days(ui, rows, metric) {
  const byDay = new Map(rows.map((r) => [r.day, r[metric]]));
  const start = Date.parse(ui.from.value);
  const end = Date.parse(ui.to.value);
  if (!(end >= start) || (end - start) / DAY_MS > 92) return rows.map((r) => ({ label: r.day, value: r[metric] }));
  const points = [];
  for (let t = start; t <= end; t += DAY_MS) points.push({ label: isoDay(t), value: byDay.get(isoDay(t)) || 0 });
  return points;
}

function draw(ui) {
  if (!ui.data) return;
  const metric = ui.metric.value;
  const [name, format] = METRICS[metric];
  const figure = (title, chart, id) => h("figure", { className: "card", dataset: { chart: id } },
    h("figcaption", {}, title), chart);
  ui.charts.replaceChildren(
    figure(`${name} by day`, columnChart(`${name} by day`, days(ui, ui.data.day, metric), format), "day"),
    figure(`${name} by model`, barChart(`${name} by model`,
      ui.data.model.map((r) => ({ label: r.model, value: r[metric] })), format), "model"),
    figure(`${name} by key`, barChart(`${name} by key`,
      ui.data.key.map((r) => ({ label: r.key_name || r.key_hash.slice(0, 12), value: r[metric] })), format), "key"));
  drawTable(ui);
}

function drawTable(ui) {
  const rows = ui.data.all;
  if (!rows.length) {
    ui.table.replaceChildren(h("p", { className: "muted" }, "No requests in this period."));
    return;
  }
  const head = ["day", "model", "key", ...COLUMNS.map(([c]) => c.replace(/_/g, " "))];
  ui.table.replaceChildren(h("table", {},
    h("thead", {}, h("tr", {}, head.map((c) => h("th", { scope: "col" }, c)))),
    h("tbody", {}, rows.map((r) => h("tr", {}, h("td", {}, r.day), h("td", {}, r.model), h("td", {}, r.key_name),
      COLUMNS.map(([c, format]) => h("td", { className: "num" }, format(r[c]))))))));
}

async function exportCsv(ui) {
  try {
    const response = await call(query(ui, "day,model,key", "csv"), { raw: true });
    const blob = await response.blob();
    const link = h("a", { href: URL.createObjectURL(blob), download: `inferd-usage-${ui.from.value}-${ui.to.value}.csv` });
    document.body.append(link);
    link.click();
    link.remove();
    setTimeout(() => URL.revokeObjectURL(link.href), 10000);
  } catch (exc) {
    if (exc instanceof ApiError && exc.status === 401) return ui.signOut();
    ui.status.replaceChildren(errorBox(`Could not export: ${exc.describe ? exc.describe() : exc.message}`));
  }
}
