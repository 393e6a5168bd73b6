/**
 * The console's static files, served from this origin (the Content-Security-Policy allows scripts
 * and styles from 'self' only, nothing inline): one stylesheet, one small script of progressive
 * enhancement (every page works without it), and — for passkeys — the @simplewebauthn/browser
 * bundle as its package ships it.
 */
import { readFileSync } from "node:fs";
import { createRequire } from "node:module";
import path from "node:path";

export const CONSOLE_CSS = `
:root { color-scheme: light dark; --fg: #1d1f23; --muted: #5c6370; --bg: #fff; --line: #d8dbe0; --accent: #2d5bd7; --bad: #b3261e; --ok: #1e7d32; --chip: #eef1f6; }
@media (prefers-color-scheme: dark) { :root { --fg: #e6e6e6; --muted: #a0a6b0; --bg: #15171a; --line: #30343a; --accent: #7aa2ff; --bad: #ff8a80; --ok: #7bd88f; --chip: #23272d; } }
* { box-sizing: border-box; }
body { margin: 0; font: 15px/1.45 system-ui, sans-serif; color: var(--fg); background: var(--bg); }
header { display: flex; gap: 1.5rem; align-items: center; padding: .6rem 1.2rem; border-bottom: 1px solid var(--line); flex-wrap: wrap; }
header .brand { font-weight: 700; letter-spacing: .02em; }
header nav a { margin-right: 1rem; color: var(--fg); text-decoration: none; }
header nav a[aria-current=page] { color: var(--accent); font-weight: 600; }
header .who { margin-left: auto; color: var(--muted); font-size: .9em; display: flex; gap: .6rem; align-items: center; }
main { max-width: 72rem; margin: 0 auto; padding: 1.2rem; }
h1 { font-size: 1.4rem; margin: .2rem 0 1rem; }
h2 { font-size: 1.1rem; margin: 1.6rem 0 .6rem; }
table { border-collapse: collapse; width: 100%; }
th, td { text-align: left; padding: .35rem .5rem; border-bottom: 1px solid var(--line); vertical-align: top; }
th { font-weight: 600; color: var(--muted); font-size: .9em; }
code, pre, .mono { font-family: ui-monospace, monospace; font-size: .9em; }
pre { background: var(--chip); padding: .6rem; overflow: auto; max-height: 28rem; }
a { color: var(--accent); }
form.inline { display: inline; }
label { display: block; font-weight: 600; margin: .6rem 0 .2rem; }
input[type=text], input[type=password], input[type=search], select, textarea { font: inherit; padding: .35rem .5rem; border: 1px solid var(--line); border-radius: 4px; background: var(--bg); color: var(--fg); }
textarea { width: 100%; min-height: 16rem; font-family: ui-monospace, monospace; font-size: .9em; }
input[type=text], input[type=password] { width: min(100%, 36rem); }
button { font: inherit; padding: .35rem .8rem; border: 1px solid var(--line); border-radius: 4px; background: var(--chip); color: var(--fg); cursor: pointer; }
button.primary { background: var(--accent); color: #fff; border-color: var(--accent); }
button.danger { color: var(--bad); }
.notice { padding: .6rem .8rem; border-radius: 4px; margin-bottom: 1rem; border: 1px solid var(--line); }
.notice.ok { border-color: var(--ok); }
.notice.error, .field-error { color: var(--bad); }
.field-error { font-size: .9em; margin: .2rem 0; }
.secret { font-family: ui-monospace, monospace; padding: .5rem; border: 2px dashed var(--accent); word-break: break-all; }
.chip { display: inline-block; padding: 0 .4rem; border-radius: 3px; background: var(--chip); font-size: .85em; }
.chip.ok { color: var(--ok); } .chip.bad { color: var(--bad); }
.muted { color: var(--muted); }
.row { display: flex; gap: .6rem; align-items: end; flex-wrap: wrap; }
.pager { margin: .8rem 0; display: flex; gap: 1rem; }
.diff del { background: rgba(255, 80, 80, .18); text-decoration: none; display: block; }
.diff ins { background: rgba(80, 200, 120, .18); text-decoration: none; display: block; }
.diff span { display: block; }
`;

/**
 * Progressive enhancement only: a confirmation before destructive posts (`data-confirm`), a copy
 * button beside a token shown once, and the filter form of lists submitted on change.
 */
export const CONSOLE_JS = `
"use strict";
document.addEventListener("submit", (e) => {
  const f = e.target;
  const msg = f && f.getAttribute && f.getAttribute("data-confirm");
  if (msg && !window.confirm(msg)) e.preventDefault();
});
for (const el of document.querySelectorAll("[data-copy]")) {
  const b = document.createElement("button");
  b.type = "button";
  b.textContent = "Copy";
  b.addEventListener("click", () => {
    navigator.clipboard.writeText(el.textContent.trim()).then(() => { b.textContent = "Copied"; }, () => { b.textContent = "Select and copy"; });
  });
  el.after(b);
}
for (const sel of document.querySelectorAll("select[data-autosubmit]")) sel.addEventListener("change", () => sel.form.submit());
// Chain verification statuses not settled (verifying, pending) are asked for again every two seconds.
function refreshStatuses() {
  const pending = [...document.querySelectorAll("[data-chain-status][data-state=verifying], [data-chain-status][data-state=pending]")];
  if (pending.length === 0) return;
  const ids = pending.map((el) => el.getAttribute("data-chain-status")).join(",");
  fetch("/console/audit/status?ids=" + encodeURIComponent(ids), { credentials: "same-origin" })
    .then((r) => (r.ok ? r.json() : {}))
    .then((all) => {
      for (const el of pending) {
        const s = all[el.getAttribute("data-chain-status")];
        if (!s) continue;
        const tpl = document.createElement("template");
        tpl.innerHTML = s.html; // rendered (and escaped) by the server
        if (tpl.content.firstElementChild) el.replaceWith(tpl.content.firstElementChild);
      }
    })
    .catch(() => {})
    .finally(() => setTimeout(refreshStatuses, 2000));
}
setTimeout(refreshStatuses, 1000);
`;

let webauthnBundle: string | undefined;

/** @simplewebauthn/browser's browser bundle (a UMD script defining `SimpleWebAuthnBrowser`), read once. */
export function webauthnBrowserBundle(): string {
  if (webauthnBundle === undefined) {
    const require = createRequire(import.meta.url);
    const main = require.resolve("@simplewebauthn/browser"); // …/script/index.js
    webauthnBundle = readFileSync(path.join(path.dirname(main), "..", "dist", "bundle", "index.umd.min.js"), "utf8");
  }
  return webauthnBundle;
}
