// Calls to inferd's own API with the signed-in key. The key lives in sessionStorage only.

const KEY = "inferd.key";
const WHO = "inferd.who";

export function currentKey() {
  return sessionStorage.getItem(KEY);
}

export function currentWho() {
  const raw = sessionStorage.getItem(WHO);
  return raw ? JSON.parse(raw) : null;
}

export function remember(key, who) {
  sessionStorage.setItem(KEY, key);
  sessionStorage.setItem(WHO, JSON.stringify(who));
}

export function forget() {
  sessionStorage.removeItem(KEY);
  sessionStorage.removeItem(WHO);
}

export class ApiError extends Error {
  constructor(status, body, fallback) {
    const error = body && body.error ? body.error : null;
    super(error && error.message ? error.message : fallback);
    this.status = status;
    this.code = error ? error.code : null;
    this.param = error ? error.param : null;
  }

  describe() {
    const code = this.code ? ` ${this.code}` : "";
    return this.status ? `${this.status}${code}: ${this.message}` : this.message;
  }
}

export function headers(key = currentKey(), extra = {}) {
  return { Authorization: `Bearer ${key}`, ...extra };
}

// fetch that turns network failures and non-2xx answers into ApiError (with the OpenAI error's message)
export async function call(path, { method = "GET", body, key, signal, raw = false } = {}) {
  const init = { method, headers: headers(key), signal, cache: "no-store", credentials: "omit" };
  if (body !== undefined) {
    init.body = JSON.stringify(body);
    init.headers["Content-Type"] = "application/json";
  }
  let response;
  try {
    response = await fetch(path, init);
  } catch (exc) {
    if (exc.name === "AbortError") throw exc;
    throw new ApiError(0, null, `The server could not be reached (${exc.message}).`);
  }
  if (!response.ok) throw await failure(response);
  if (raw) return response;
  return response.json();
}

export async function failure(response) {
  let body = null;
  try {
    body = await response.json();
  } catch (exc) {
    body = null;
  }
  return new ApiError(response.status, body, `${response.status} ${response.statusText || "error"}`);
}
