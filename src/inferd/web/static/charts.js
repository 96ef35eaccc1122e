// Bar charts drawn as SVG with DOM calls: no library, no inline style, readable when scaled to a phone.
// Each bar carries its value in data-value and a <title> (the tooltip); the chart's aria-label sums it up.

import { formatNumber, svg } from "./dom.js";

const WIDTH = 480;

function frame(height, label) {
  return svg("svg", { viewBox: `0 0 ${WIDTH} ${height}`, class: "chart", role: "img", "aria-label": label,
                      preserveAspectRatio: "xMinYMin meet" }, svg("title", {}, label));
}

function shortLabel(text, max) {
  return text.length > max ? `${text.slice(0, max - 1)}…` : text;
}

function describe(title, points, format) {
  if (!points.length) return `${title}: no data`;
  return `${title}: ${points.map((p) => `${p.label} ${format(p.value)}`).join(", ")}`;
}

// points: [{label, value}] in order (days); vertical bars with a baseline and the largest value marked
export function columnChart(title, points, format = formatNumber) {
  const height = 200;
  const top = 20;
  const bottom = 170;
  const chart = frame(height, describe(title, points, format));
  const max = Math.max(0, ...points.map((p) => p.value));
  chart.append(svg("line", { x1: 0, x2: WIDTH, y1: bottom, y2: bottom, class: "axis" }),
    svg("line", { x1: 0, x2: WIDTH, y1: top, y2: top, class: "grid" }),
    svg("text", { x: 2, y: top - 6, class: "tick" }, `max ${format(max)}`));
  if (!points.length) {
    chart.append(svg("text", { x: WIDTH / 2, y: 100, class: "empty", "text-anchor": "middle" }, "no data"));
    return chart;
  }
  const slot = WIDTH / points.length;
  const every = Math.ceil(points.length / 8);
  points.forEach((p, i) => {
    const h = max > 0 ? ((bottom - top) * p.value) / max : 0;
    const x = i * slot + slot * 0.15;
    chart.append(svg("rect", { x, y: bottom - h, width: Math.max(1, slot * 0.7), height: h, class: "bar",
                               "data-label": p.label, "data-value": p.value },
      svg("title", {}, `${p.label}: ${format(p.value)}`)));
    if ((points.length - 1 - i) % every === 0) { // regular ticks that always include the last day
      const centre = i * slot + slot / 2;
      const anchor = centre < 24 ? "start" : centre > WIDTH - 24 ? "end" : "middle";
      const tx = anchor === "start" ? 0 : anchor === "end" ? WIDTH : centre;
      chart.append(svg("text", { x: tx, y: bottom + 18, class: "tick", "text-anchor": anchor }, p.label.slice(5)));
    }
  });
  return chart;
}

// points: [{label, value}]; one horizontal bar per row, largest first
export function barChart(title, points, format = formatNumber) {
  const rowHeight = 30;
  const sorted = [...points].sort((a, b) => b.value - a.value);
  const height = Math.max(1, sorted.length) * rowHeight + 10;
  const chart = frame(height, describe(title, sorted, format));
  if (!sorted.length) {
    chart.append(svg("text", { x: WIDTH / 2, y: 24, class: "empty", "text-anchor": "middle" }, "no data"));
    return chart;
  }
  const labelWidth = 190;
  const room = WIDTH - labelWidth - 80;
  const max = Math.max(0, ...sorted.map((p) => p.value));
  sorted.forEach((p, i) => {
    const y = i * rowHeight + 8;
    const w = max > 0 ? (room * p.value) / max : 0;
    chart.append(svg("text", { x: 0, y: y + 16, class: "label" }, svg("title", {}, p.label), shortLabel(p.label, 20)),
      svg("rect", { x: labelWidth, y, width: Math.max(1, w), height: rowHeight - 10, class: "bar",
                    "data-label": p.label, "data-value": p.value },
        svg("title", {}, `${p.label}: ${format(p.value)}`)),
      svg("text", { x: labelWidth + w + 6, y: y + 16, class: "value" }, format(p.value)));
  });
  return chart;
}
