/**
 * Identities: the list (search, pages of 50), creation (the agent token shown once), and one
 * identity (channels, policy editor with inline errors and a diff against the version in force,
 * keys with their validity windows, the tenant's delegation statements, rotate key / token,
 * revoke). Every change is the admin tool of the same name (ops.ts).
 */
import { CHANNELS } from "../../../store/types.js";
import { parsePolicyJson } from "../../policy/schema.js";
import type { IdentityView } from "../../identity/records.js";
import { frag, html } from "../html.js";
import { redirect } from "../http-util.js";
import { type Ctx, type Route, isAdmin, isRoot } from "../routes.js";
import { adminCall, adminOps, identityPage as pageOfIdentities, sentence } from "../ops.js";
import { PAGE_SIZE, csrfField, diffView, fieldError, lineDiff, pageNumber, pager, postButton, pretty, render, sortedJson, when } from "./common.js";

const ID = "(id_[0-9a-f]{20})";

/** Which form field a refusal of create_identity is about (its sentence names it). */
function fieldOf(code: string, text: string): string {
  const s = text.toLowerCase();
  if (code === "invalid_policy" || s.startsWith("policy")) return "policy";
  if (s.startsWith("name")) return "name";
  if (s.startsWith("email")) return "email";
  if (s.startsWith("phone") || s.includes("own number")) return "phone";
  if (s.startsWith("channels") || s.includes("channel")) return "channels";
  if (s.includes("tenant")) return "tenant";
  return "form";
}

interface CreateDraft {
  name: string;
  channels: string[];
  email: string;
  phone: string;
  policy: string;
  tenant: string;
}

async function listPage(ctx: Ctx, draft?: CreateDraft, errors: Record<string, string> = {}, status = 200): Promise<void> {
  const q = (ctx.url.searchParams.get("q") ?? "").trim().slice(0, 100);
  const pageNo = pageNumber(ctx.url);
  const t0 = performance.now();
  const needle = q.toLowerCase();
  const { rows, total, hasNext, readAt } = await pageOfIdentities(ctx, pageNo, PAGE_SIZE, needle ? (v) => v.id.includes(needle) || v.name.toLowerCase().includes(needle) || v.email.toLowerCase().includes(needle) : undefined);
  const tenants = isRoot(ctx.principal) ? ((await adminOps(ctx).tenants.list()) as Array<{ id: string; name: string }>) : [];
  const age = Math.round((Date.now() - readAt) / 1000);
  const d = draft ?? { name: "", channels: [], email: "", phone: "", policy: "{}", tenant: "default" };
  ctx.res.setHeader("server-timing", `list;dur=${(performance.now() - t0).toFixed(1)}`);
  render(
    ctx,
    {
      title: "Identities",
      section: "identities",
      body: frag(html`<h1>Identities</h1>
<form method="get" action="/console/identities" class="row" role="search">
<div><label for="q">Search by name, id or address</label><input type="search" id="q" name="q" value="${q}"></div>
<button type="submit">Search</button>
</form>
${age >= 10 ? frag(html`<p class="muted">This list was read ${age} s ago; a newer read has started (reload to see it).</p>`) : ""}
${pager(ctx.url, pageNo, hasNext, total)}
<table>
<thead><tr><th>Name</th><th>Id</th><th>Tenant</th><th>Channels</th><th>Status</th><th>Created</th></tr></thead>
<tbody>
${rows.length === 0 ? frag(html`<tr><td colspan="6" class="muted">No identities${q ? " match" : ""}.</td></tr>`) : ""}
${rows.map(
  (v) => frag(html`<tr><td><a href="/console/identities/${v.id}">${v.name}</a></td><td class="mono">${v.id}</td><td>${v.tenantId}</td><td>${v.channels.join(", ")}</td><td>${v.revokedAt ? frag(html`<span class="chip bad">revoked</span>`) : frag(html`<span class="chip ok">active</span>`)}</td><td>${when(v.createdAt)}</td></tr>`),
)}
</tbody>
</table>
${pager(ctx.url, pageNo, hasNext, total)}
<h2 id="create">Create an identity</h2>
${fieldError(errors, "form")}
<form method="post" action="/console/identities" novalidate>
${csrfField(ctx)}
<label for="name">Name</label><input type="text" id="name" name="name" value="${d.name}" required maxlength="64">${fieldError(errors, "name")}
<fieldset><legend>Channels</legend>${CHANNELS.map((c) => frag(html`<label class="inline-check"><input type="checkbox" name="channels" value="${c}"${d.channels.includes(c) ? frag(html` checked`) : ""}> ${c}</label>`))}</fieldset>${fieldError(errors, "channels")}
<label for="email">Its own email address (optional)</label><input type="text" id="email" name="email" value="${d.email}">${fieldError(errors, "email")}
<label for="phone">Its own phone number, E.164 (needed for sms and voice)</label><input type="text" id="phone" name="phone" value="${d.phone}">${fieldError(errors, "phone")}
${tenants.length > 0 ? frag(html`<label for="tenant">Tenant</label><select id="tenant" name="tenant">${tenants.map((t) => frag(html`<option value="${t.id}"${t.id === d.tenant ? frag(html` selected`) : ""}>${t.name} (${t.id})</option>`))}</select>${fieldError(errors, "tenant")}`) : ""}
<label for="policy">Policy (JSON; default deny)</label><textarea id="policy" name="policy" spellcheck="false">${d.policy}</textarea>${fieldError(errors, "policy")}
<p><button type="submit" class="primary">Create identity</button></p>
</form>`),
    },
    status,
  );
}

async function create(ctx: Ctx): Promise<void> {
  const f = ctx.form!;
  const draft: CreateDraft = {
    name: (f.get("name") ?? "").trim(),
    channels: f.getAll("channels"),
    email: (f.get("email") ?? "").trim(),
    phone: (f.get("phone") ?? "").trim(),
    policy: f.get("policy") ?? "{}",
    tenant: f.get("tenant") ?? "default",
  };
  const errors: Record<string, string> = {};
  let policy: unknown = {};
  if (draft.policy.trim() !== "") {
    const p = parsePolicyJson(draft.policy);
    if (!p.ok) errors.policy = p.error;
    else policy = JSON.parse(draft.policy);
  }
  if (Object.keys(errors).length > 0) return listPage(ctx, draft, errors, 400);
  const r = await adminCall(ctx, "create_identity", {
    name: draft.name,
    channels: draft.channels,
    policy,
    ...(draft.email ? { email: draft.email } : {}),
    ...(draft.phone ? { phone: draft.phone } : {}),
    ...(isRoot(ctx.principal) && f.has("tenant") ? { tenantId: draft.tenant } : {}),
  });
  if (!r.ok) return listPage(ctx, draft, { [fieldOf(r.code, sentence(r))]: sentence(r) }, 400);
  const once = ctx.sessions.keepOnce(ctx.session, { label: "Agent token", token: r.value.token });
  ctx.session.notice = { kind: "ok", text: `Created identity ${r.value.name} (${r.value.id}).` };
  redirect(ctx.res, `/console/identities/${r.value.id}?shown=${once}`);
}

interface PolicyEdit {
  text: string;
  error?: string;
  diff?: Array<{ op: " " | "-" | "+"; line: string }>;
  diffTitle?: string;
}

async function identityPage(ctx: Ctx, id: string, edit?: PolicyEdit, status = 200): Promise<void> {
  const shown = ctx.sessions.takeOnce(ctx.session, ctx.url.searchParams.get("shown"));
  const r = await adminCall(ctx, "get_identity", { identityId: id });
  if (!r.ok) {
    return render(ctx, { title: "Not found", section: "identities", body: frag(html`<h1>Not found</h1><p class="notice error">${sentence(r)}</p><p><a href="/console/identities">All identities</a></p>`) }, 404);
  }
  const v = r.value as IdentityView;
  const delegation = await ctx.app.delegations.document(id).catch(() => undefined);
  const policyText = edit?.text ?? pretty(v.policy);
  render(
    ctx,
    {
      title: v.name,
      section: "identities",
      body: frag(html`<p><a href="/console/identities">← Identities</a></p>
<h1>${v.name} <span class="mono muted">${v.id}</span></h1>
${shown ? frag(html`<div class="notice ok" role="status"><p><strong>${shown.label} (shown once; it is not stored and will not be shown again):</strong></p><p class="secret" id="shown-token" data-copy>${shown.token}</p></div>`) : ""}
<table>
<tr><th>Tenant</th><td>${v.tenantId}</td></tr>
<tr><th>Status</th><td>${v.revokedAt ? frag(html`<span class="chip bad">revoked ${when(v.revokedAt)}</span>`) : frag(html`<span class="chip ok">active</span>`)}</td></tr>
<tr><th>Channels</th><td>${v.channels.length ? v.channels.join(", ") : "none"}</td></tr>
<tr><th>Email</th><td>${v.email}</td></tr>
<tr><th>Phone</th><td>${v.phone ?? "—"}</td></tr>
<tr><th>Created</th><td>${when(v.createdAt)}</td></tr>
<tr><th>Audit log</th><td><a href="/console/audit/${v.id}">timeline</a></td></tr>
</table>
${v.revokedAt
  ? ""
  : frag(html`<p class="row">
${postButton(ctx, `/console/identities/${v.id}/rotate-key`, "Rotate signing key", { confirm: "Rotate this identity's signing key? The old key stays verifiable." })}
${postButton(ctx, `/console/identities/${v.id}/rotate-token`, "Rotate agent token", { confirm: "Rotate the agent token? The old token stops working at once." })}
${postButton(ctx, `/console/identities/${v.id}/revoke`, "Revoke", { confirm: "Revoke this identity? Its token stops working at once; this cannot be undone.", cls: "danger" })}
</p>`)}
<h2 id="policy">Policy <span class="muted">version ${v.policyVersion}</span></h2>
${edit?.diff ? frag(html`<h3>${edit.diffTitle ?? "Changes"}</h3>${diffView(edit.diff)}`) : ""}
<form method="post" action="/console/identities/${v.id}/policy" novalidate>
${csrfField(ctx)}
<label for="policy-text">Policy document (JSON)</label>
<textarea id="policy-text" name="policy" spellcheck="false" aria-describedby="${edit?.error ? "policy-error" : ""}">${policyText}</textarea>
${edit?.error ? frag(html`<p class="field-error" id="policy-error" role="alert">${edit.error}</p>`) : ""}
<p class="row"><button type="submit" name="action" value="preview">Show changes</button><button type="submit" name="action" value="save" class="primary">Save policy</button></p>
</form>
<h2>Keys</h2>
<table><thead><tr><th>Key id</th><th>Status</th><th>Valid from</th><th>Valid until</th></tr></thead><tbody>
${v.keys.map((k) => frag(html`<tr><td class="mono">${k.keyId}</td><td>${k.status}</td><td>${when(k.notBefore)}</td><td>${when(k.notAfter)}</td></tr>`))}
</tbody></table>
<p class="muted">Published at <a href="/identities/${v.id}/keys">/identities/${v.id}/keys</a>.</p>
<h2>Delegation</h2>
${delegation && delegation.delegations.length > 0
  ? frag(html`<p>Tenant <strong>${delegation.tenant.id}</strong> vouches for these keys (statements signed by its key; served at <a href="/identities/${v.id}/delegation">/identities/${v.id}/delegation</a>):</p>
<table><thead><tr><th>Key id</th><th>Tenant key</th><th>Channels</th><th>Policy hash</th><th>From</th><th>Until</th></tr></thead><tbody>
${delegation.delegations.map((d) => frag(html`<tr><td class="mono">${d.keyId}</td><td class="mono">${d.tenantKeyId}</td><td>${d.channels.join(", ")}</td><td class="mono">${d.policyHash.slice(0, 16)}…</td><td>${when(d.notBefore)}</td><td>${when(d.notAfter)}</td></tr>`))}
</tbody></table>`)
  : frag(html`<p class="muted">No delegation statement.</p>`)}`),
    },
    status,
  );
}

async function policyPost(ctx: Ctx, id: string): Promise<void> {
  const text = ctx.form!.get("policy") ?? "";
  const action = ctx.form!.get("action") === "preview" ? "preview" : "save";
  const before = await adminCall(ctx, "get_identity", { identityId: id });
  if (!before.ok) return identityPage(ctx, id);
  const p = parsePolicyJson(text);
  if (!p.ok) return identityPage(ctx, id, { text, error: p.error }, 400);
  const previous = sortedJson(before.value.policy);
  const next = sortedJson(JSON.parse(text));
  if (action === "preview") return identityPage(ctx, id, { text, diff: lineDiff(previous, next), diffTitle: `Changes against version ${before.value.policyVersion} (not saved yet)` });
  const r = await adminCall(ctx, "update_policy", { identityId: id, policy: JSON.parse(text) });
  if (!r.ok) return identityPage(ctx, id, { text, error: sentence(r) }, 400);
  ctx.session.notice = { kind: "ok", text: `Policy saved as version ${r.value.policyVersion}.` };
  return identityPage(ctx, id, { text: pretty(r.value.policy), diff: lineDiff(previous, sortedJson(r.value.policy)), diffTitle: `Version ${r.value.policyVersion} against version ${before.value.policyVersion}` });
}

function change(tool: "rotate_key" | "rotate_token" | "revoke_identity", done: (v: Record<string, any>) => string): (ctx: Ctx, p: string[]) => Promise<void> {
  return async (ctx, [id]) => {
    const r = await adminCall(ctx, tool, { identityId: id });
    if (!r.ok) {
      ctx.session.notice = { kind: "error", text: sentence(r) };
      return redirect(ctx.res, `/console/identities/${id}`);
    }
    ctx.session.notice = { kind: "ok", text: done(r.value) };
    const once = tool === "rotate_token" ? ctx.sessions.keepOnce(ctx.session, { label: "New agent token", token: r.value.token }) : undefined;
    redirect(ctx.res, `/console/identities/${id}${once ? `?shown=${once}` : ""}`);
  };
}

export const identityRoutes: Route[] = [
  { method: "GET", path: /^\/console\/identities$/, who: isAdmin, run: (ctx) => listPage(ctx) },
  { method: "POST", path: /^\/console\/identities$/, who: isAdmin, run: create },
  { method: "GET", path: new RegExp(`^/console/identities/${ID}$`), who: isAdmin, run: (ctx, [id]) => identityPage(ctx, id!) },
  { method: "POST", path: new RegExp(`^/console/identities/${ID}/policy$`), who: isAdmin, run: (ctx, [id]) => policyPost(ctx, id!) },
  { method: "POST", path: new RegExp(`^/console/identities/${ID}/rotate-key$`), who: isAdmin, run: change("rotate_key", (v) => `New signing key ${v.keyId} (the previous key ${v.previousKeyId} stays verifiable).`) },
  { method: "POST", path: new RegExp(`^/console/identities/${ID}/rotate-token$`), who: isAdmin, run: change("rotate_token", () => "The agent token was rotated; the old one no longer works.") },
  { method: "POST", path: new RegExp(`^/console/identities/${ID}/revoke$`), who: isAdmin, run: change("revoke_identity", (v) => `Revoked at ${when(v.revokedAt)}.`) },
];
