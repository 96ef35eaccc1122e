// "Copy as curl" and "Copy as Python (openai client)" for a request body; the key stays a variable.

// fields the openai Python client takes as keyword arguments; the rest go in extra_body
const CLIENT_FIELDS = new Set(["model", "messages", "temperature", "max_tokens", "max_completion_tokens", "top_p",
  "reasoning_effort", "stop", "seed", "n", "logprobs", "top_logprobs", "presence_penalty", "frequency_penalty",
  "logit_bias", "response_format", "tools", "tool_choice", "parallel_tool_calls", "user", "stream",
  "stream_options"]);

function base() {
  return `${location.origin}/api/v1`;
}

export function asCurl(body) {
  const json = JSON.stringify(body, null, 2).replace(/'/g, "'\\''");
  const stream = body.stream ? "-N " : "";
  return `curl ${stream}${base()}/chat/completions \\\n`
    + `  -H "Authorization: Bearer $INFERD_KEY" -H 'Content-Type: application/json' \\\n`
    + `  -d '${json}'\n`;
}

export function py(value, indent = "") {
  if (value === null || value === undefined) return "None";
  if (value === true) return "True";
  if (value === false) return "False";
  if (typeof value === "number" || typeof value === "string") return JSON.stringify(value);
  const inner = indent + "    ";
  if (Array.isArray(value)) {
    if (!value.length) return "[]";
    return `[\n${value.map((v) => inner + py(v, inner)).join(",\n")},\n${indent}]`;
  }
  const entries = Object.entries(value);
  if (!entries.length) return "{}";
  return `{\n${entries.map(([k, v]) => `${inner}${JSON.stringify(k)}: ${py(v, inner)}`).join(",\n")},\n${indent}}`;
}

export function asPython(body) {
  const args = [];
  const extra = {};
  for (const [name, value] of Object.entries(body)) {
    if (CLIENT_FIELDS.has(name)) args.push(`    ${name}=${py(value, "    ")},`);
    else extra[name] = value;
  }
  if (Object.keys(extra).length) args.push(`    extra_body=${py(extra, "    ")},`);
  const loop = body.stream
    ? "for chunk in reply:\n    if chunk.choices:\n        delta = chunk.choices[0].delta\n"
      + "        print((delta.model_extra or {}).get(\"reasoning_content\") or delta.content or \"\", end=\"\", flush=True)\n"
      + "    if chunk.usage:\n        print(\"\\n\", chunk.usage)\n"
    : "print(reply.choices[0].message.content, reply.usage)\n";
  return "import os\n\nfrom openai import OpenAI\n\n"
    + `client = OpenAI(base_url=${JSON.stringify(base())}, api_key=os.environ["INFERD_KEY"])\n`
    + `reply = client.chat.completions.create(\n${args.join("\n")}\n)\n${loop}`;
}
