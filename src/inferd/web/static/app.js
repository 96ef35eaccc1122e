// The console's shell: sign-in, navigation between pages (#/page), sign-out.

import { ApiError, call, currentKey, currentWho, forget, remember } from "./api.js";
import { clear, errorBox, h } from "./dom.js";
import { modelsPage } from "./models.js";
import { keysPage } from "./keys.js";
import { playgroundPage } from "./playground.js";
import { usagePage } from "./usage.js";

const PAGES = { playground: playgroundPage, models: modelsPage, keys: keysPage, usage: usagePage };
const $ = (id) => document.getElementById(id);
let leaving = null; // the shown page's clean-up (e.g. abort a stream)

async function signIn(event) {
  event.preventDefault();
  const input = $("key-input");
  const error = $("sign-in-error");
  const key = input.value.trim();
  error.hidden = true;
  if (!key) return showSignInError("Enter an API key.");
  const button = event.target.querySelector("button");
  button.disabled = true;
  try {
    const who = await call("/api/v1/key", { key });
    remember(key, { name: who.data.name, label: who.data.label, management: !!who.data.management });
    input.value = "";
    if (!location.hash || location.hash === "#/") location.hash = "#/playground";
    show();
  } catch (exc) {
    const reason = exc instanceof ApiError && exc.status === 401
      ? "That key was refused: it is unknown, revoked, disabled or expired (401 invalid_api_key)."
      : `Sign-in failed: ${exc instanceof ApiError ? exc.describe() : exc.message}`;
    showSignInError(reason);
  } finally {
    button.disabled = false;
  }
}

function showSignInError(message) {
  const error = $("sign-in-error");
  error.textContent = message;
  error.hidden = false;
  $("key-input").focus();
}

function signOut() {
  forget();
  location.hash = "";
  show();
}

function currentPage(who) {
  const name = location.hash.replace(/^#\/?/, "") || "playground";
  if (name === "keys" && !who.management) return "playground";
  return name in PAGES ? name : "playground";
}

function show() {
  if (leaving) leaving();
  leaving = null;
  const who = currentKey() ? currentWho() : null;
  const page = clear($("page"));
  $("sign-in").hidden = !!who;
  $("nav").hidden = $("sign-out").hidden = $("who").hidden = !who;
  if (!who) {
    $("key-input").focus();
    return;
  }
  $("who").textContent = `${who.name} (${who.label}${who.management ? ", management key" : ""})`;
  document.querySelector('#nav [data-page="keys"]').hidden = !who.management;
  const name = currentPage(who);
  for (const link of document.querySelectorAll("#nav a")) {
    if (link.dataset.page === name) link.setAttribute("aria-current", "page");
    else link.removeAttribute("aria-current");
  }
  document.title = `${name[0].toUpperCase()}${name.slice(1)} - inferd console`;
  try {
    leaving = PAGES[name](page, who, { signOut: expired });
    const heading = page.querySelector("h1");
    if (heading) { // after a page change, keyboard and screen-reader users start at its heading
      heading.tabIndex = -1;
      heading.focus();
    }
  } catch (exc) {
    page.append(errorBox(`This page failed to render: ${exc.message}`));
  }
}

// A key revoked while signed in: back to the sign-in form with a reason
function expired(message) {
  forget();
  show();
  showSignInError(message || "Your key is no longer accepted (401); sign in again.");
}

document.addEventListener("DOMContentLoaded", () => {
  $("sign-in-form").addEventListener("submit", signIn);
  $("sign-out").addEventListener("click", signOut);
  window.addEventListener("hashchange", show);
  show();
});

// The last line of defence against a blank page: any error nobody caught is shown
window.addEventListener("unhandledrejection", (event) => {
  const reason = event.reason && event.reason.message ? event.reason.message : event.reason;
  $("page").prepend(errorBox(`Unexpected error: ${reason}`));
});
