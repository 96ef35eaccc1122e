// Building the page without HTML strings: elements from tag, properties/attributes and children.
// (The CSP forbids inline code and Trusted Types forbid innerHTML; text always goes in as text.)

const SVG_NS = "http://www.w3.org/2000/svg";

function fill(el, attrs, children) {
  for (const [name, value] of Object.entries(attrs || {})) {
    if (value === undefined || value === null || value === false) continue;
    if (name.startsWith("on") && typeof value === "function") el.addEventListener(name.slice(2), value);
    else if (name === "dataset") Object.assign(el.dataset, value);
    else if (name in el && !(el instanceof SVGElement) && name !== "list" && name !== "form") el[name] = value;
    else el.setAttribute(name, value === true ? "" : String(value));
  }
  for (const child of children.flat(Infinity)) {
    if (child === undefined || child === null || child === false) continue;
    el.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return el;
}

export function h(tag, attrs, ...children) {
  return fill(document.createElement(tag), attrs, children);
}

export function svg(tag, attrs, ...children) {
  return fill(document.createElementNS(SVG_NS, tag), attrs, children);
}

export function clear(el) {
  while (el.firstChild) el.firstChild.remove();
  return el;
}

export function errorBox(message) {
  return h("p", { className: "error", role: "alert" }, message);
}

let ids = 0;
export function uid(prefix) {
  ids += 1;
  return `${prefix}-${ids}`;
}

// A labelled form field: <div class="field"><label for=id>text</label>control hint</div>
export function field(text, control, hint) {
  if (!control.id) control.id = uid("f");
  const hintEl = hint ? h("small", { className: "hint", id: control.id + "-hint" }, hint) : null;
  if (hintEl) control.setAttribute("aria-describedby", hintEl.id);
  return h("div", { className: "field" }, h("label", { htmlFor: control.id }, text), control, hintEl);
}

export function formatNumber(value, digits = 0) {
  if (value === null || value === undefined || Number.isNaN(value)) return "-";
  return Number(value).toLocaleString("en-US", { maximumFractionDigits: digits });
}

export function formatCost(value) {
  if (!value) return "0";
  return Number(value).toPrecision(3).replace(/\.?0+(e|$)/, "$1");
}
