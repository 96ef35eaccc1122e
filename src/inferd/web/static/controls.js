// The seed's generation controls, each shown only when the model's card lists it in supported_parameters.
// An empty control is not sent (the model's defaults apply); ranges and defaults are the seed contract's.

import { field, h } from "./dom.js";

const EFFORTS = ["none", "minimal", "low", "medium", "high", "xhigh"];

// param: the card's supported_parameters name; name: the request field (or chat_template_kwargs key)
const NUMBERS = [
  { name: "temperature", min: 0, max: 2, step: 0.05, hint: "0 to 2, default 1 (0 is greedy)" },
  { name: "max_tokens", min: 1, step: 1, integer: true, hint: "integer >= 1, default: up to the context" },
  { name: "top_p", min: 0, max: 1, step: 0.01, hint: "0 to 1, default 1" },
  { name: "top_k", min: 0, max: 100, step: 1, integer: true, hint: "0 to 100, default 0 (off)" },
  { name: "min_p", min: 0, max: 1, step: 0.01, hint: "0 to 1, default 0" },
  { name: "repetition_penalty", min: 0, max: 100, step: 0.05, above: true, hint: "above 0, up to 100; default 1 (none)" },
];

function numberControl(spec) {
  const input = h("input", { type: "number", name: spec.name, min: spec.min, max: spec.max, step: spec.step,
                             inputMode: spec.integer ? "numeric" : "decimal", placeholder: "default" });
  const read = () => {
    if (input.value.trim() === "") return undefined;
    const value = Number(input.value);
    const bad = !Number.isFinite(value) || (spec.integer && !Number.isInteger(value))
      || (spec.above ? value <= spec.min : value < spec.min) || (spec.max !== undefined && value > spec.max);
    if (bad || input.validity.badInput) throw new RangeError(`${spec.name}: ${spec.hint.split(",")[0]}.`);
    return value;
  };
  return { element: field(spec.name, input, spec.hint), read, input };
}

function choiceControl(name, options, hint) {
  const select = h("select", { name }, h("option", { value: "" }, "default"),
    options.map(([value, label]) => h("option", { value }, label)));
  const read = () => (select.value === "" ? undefined : select.value);
  return { element: field(name, select, hint), read, input: select };
}

function booleanControl(name, hint) {
  const control = choiceControl(name, [["true", "true"], ["false", "false"]], hint);
  const read = () => { const v = control.read(); return v === undefined ? undefined : v === "true"; };
  return { ...control, read };
}

function effortControl(card) {
  const described = (card.reasoning && card.reasoning.efforts) || {};
  const options = EFFORTS.map((e) => [e, described[e] ? `${e} (${described[e]})` : e]);
  const fallback = card.reasoning ? card.reasoning.default_effort : "medium";
  return choiceControl("reasoning_effort", options, `default ${fallback}`);
}

// The controls for one model card: {element, values()} where values() gives the request's fields
export function controlsFor(card) {
  const supported = new Set(card.supported_parameters || []);
  const shown = [];
  for (const spec of NUMBERS) if (supported.has(spec.name)) shown.push(["", numberControl(spec)]);
  if (supported.has("reasoning_effort")) shown.push(["", effortControl(card)]);
  if (supported.has("separate_reasoning")) {
    shown.push(["", booleanControl("separate_reasoning", "default true: reasoning in its own field")]);
  }
  if (supported.has("chat_template_kwargs")) {
    shown.push(["chat_template_kwargs", booleanControl("thinking", "chat_template_kwargs.thinking; default: the model's")]);
  }
  const element = h("div", { className: "controls" }, shown.map(([, c]) => c.element));
  if (!shown.length) element.append(h("p", { className: "muted" }, "This model lists no seed generation controls."));
  const values = () => {
    const out = {};
    for (const [parent, control] of shown) {
      const value = control.read();
      if (value === undefined) continue;
      const name = control.input.name;
      if (parent) out[parent] = { ...(out[parent] || {}), [name]: value };
      else out[name] = value;
    }
    return out;
  };
  const reset = () => { for (const [, c] of shown) c.input.value = ""; };
  return { element, values, reset };
}
