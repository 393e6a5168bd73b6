/**
 * Passkeys in the console (src/approval/passkeys.ts does the WebAuthn): an approver registers
 * one while signed in, then signs in with it and approves with it — the approval's challenge is
 * the hash of its decision statement, and the assertion is recorded in the `approval_decided`
 * entry (via `passkey`). The ceremonies are JSON posts from /console/assets/passkey.js carrying
 * the CSRF token in `X-CSRF-Token`.
 */
import type http from "node:http";
import type { App } from "../../app.js";
import { passkeyChallenge } from "../../approval/approvals.js";
import type { RelyingParty } from "../../approval/passkeys.js";
import { Denied, SigilError } from "../../errors.js";
import { frag, html } from "../html.js";
import { SECURITY_HEADERS, readJson, safeNext } from "../http-util.js";
import type { ConsoleSession, ConsoleSessions } from "../session.js";
import type { Ctx, Route } from "../routes.js";
import { render, when } from "./common.js";

const CHALLENGE_TTL_MS = 5 * 60_000;

export async function passkeysOf(ctx: Ctx, approverId: string): Promise<Array<{ id: string }>> {
  return ctx.app.passkeys.list(approverId);
}

/** This server as the relying party: the origin the browser is on (its Host was checked by the HTTP server). */
export function relyingParty(app: App, req: http.IncomingMessage): RelyingParty {
  const host = String(req.headers.host ?? "");
  const pub = app.config.publicUrl ? new URL(app.config.publicUrl) : undefined;
  const origin = pub && pub.host === host ? pub.origin : `http://${host}`;
  return { id: new URL(origin).hostname, origin, name: "sigil" };
}

function json(res: http.ServerResponse, status: number, body: unknown, headers: Record<string, string | string[]> = {}): void {
  res.writeHead(status, { ...SECURITY_HEADERS, "content-type": "application/json", ...headers });
  res.end(JSON.stringify(body));
}

function failure(res: http.ServerResponse, err: unknown): void {
  if (err instanceof SigilError) return json(res, 400, { ok: false, error: `${err instanceof Denied ? "denied" : "error"}: ${err.code}: ${err.publicMessage}` });
  throw err;
}

function remember(s: ConsoleSession, purpose: string, value: string, now: number): void {
  s.challenges.set(purpose, { value, expiresAt: now + CHALLENGE_TTL_MS });
}
function take(s: ConsoleSession, purpose: string, now: number): string | undefined {
  const c = s.challenges.get(purpose);
  s.challenges.delete(purpose);
  return c && c.expiresAt > now ? c.value : undefined;
}

async function approverOf(ctx: Ctx) {
  const p = ctx.principal;
  if (p.kind !== "approver") throw new Denied("tool_not_available", "approvers only.");
  const rec = await ctx.app.approvers.stillValid(p.approverId, p.tokenHash);
  if (!rec) throw new Denied("unauthenticated", "this approver is no longer valid.");
  return rec;
}

async function passkeysPage(ctx: Ctx): Promise<void> {
  const p = ctx.principal;
  if (p.kind !== "approver") return;
  const keys = await ctx.app.passkeys.list(p.approverId);
  render(ctx, {
    title: "Passkeys",
    section: "passkeys",
    scripts: ["/console/assets/webauthn.js", "/console/assets/passkey.js"],
    body: frag(html`<h1>Passkeys</h1>
<p>Register a passkey to sign in without your token and to approve with it (policies with <code>approval.requirePasskey</code> accept only that).</p>
<table><thead><tr><th>Name</th><th>Credential</th><th>Registered</th><th>Last used</th></tr></thead><tbody>
${keys.length === 0 ? frag(html`<tr><td colspan="4" class="muted">No passkey yet.</td></tr>`) : ""}
${keys.map((k) => frag(html`<tr><td>${k.name}</td><td class="mono">${k.id.slice(0, 22)}…</td><td>${when(k.createdAt)}</td><td>${when(k.lastUsedAt)}</td></tr>`))}
</tbody></table>
<form method="post" action="/console/passkeys/register" id="passkey-register">
<input type="hidden" name="csrf" value="${ctx.csrf}">
<label for="passkey-name">Name for this passkey</label><input type="text" id="passkey-name" name="name" maxlength="64" value="my passkey">
<p><button type="submit" class="primary">Register a passkey</button></p>
<p class="field-error" id="passkey-error" role="alert" hidden></p>
</form>`),
  });
}

async function registerOptions(ctx: Ctx): Promise<void> {
  try {
    const approver = await approverOf(ctx);
    const options = await ctx.app.passkeys.registrationOptions(approver, relyingParty(ctx.app, ctx.req));
    remember(ctx.session, "register", String(options.challenge), ctx.app.now());
    json(ctx.res, 200, { ok: true, options });
  } catch (err) {
    failure(ctx.res, err);
  }
}

async function register(ctx: Ctx): Promise<void> {
  try {
    const approver = await approverOf(ctx);
    const body = (await readJson(ctx.req)) as { response?: unknown; name?: unknown } | undefined;
    const challenge = take(ctx.session, "register", ctx.app.now());
    if (!body || !challenge) throw new Denied("passkey_invalid", "no registration is in progress; start again.");
    const name = typeof body.name === "string" ? body.name.replace(/[\p{Cc}\p{Cf}]/gu, "").trim() : "passkey";
    const rec = await ctx.app.passkeys.register(approver, body.response, challenge, relyingParty(ctx.app, ctx.req), name);
    ctx.session.notice = { kind: "ok", text: `Passkey "${rec.name}" registered.` };
    json(ctx.res, 200, { ok: true, next: "/console/passkeys" });
  } catch (err) {
    failure(ctx.res, err);
  }
}

async function approveOptions(ctx: Ctx, approvalId: string): Promise<void> {
  try {
    const approver = await approverOf(ctx);
    const { statement } = await ctx.app.approvals.statementFor(approver, approvalId, "approve");
    const challenge = passkeyChallenge(statement);
    const options = await ctx.app.passkeys.authenticationOptions(relyingParty(ctx.app, ctx.req), { approverId: approver.id, challenge });
    remember(ctx.session, `approve:${approvalId}`, challenge, ctx.app.now());
    json(ctx.res, 200, { ok: true, options });
  } catch (err) {
    failure(ctx.res, err);
  }
}

async function approve(ctx: Ctx, approvalId: string): Promise<void> {
  try {
    const approver = await approverOf(ctx);
    const body = (await readJson(ctx.req)) as { response?: unknown; reason?: unknown } | undefined;
    const challenge = take(ctx.session, `approve:${approvalId}`, ctx.app.now());
    if (!body || !challenge) throw new Denied("passkey_invalid", "no passkey approval is in progress; start again.");
    const { assertion } = await ctx.app.passkeys.verify(approver.id, body.response, challenge, relyingParty(ctx.app, ctx.req));
    const reason = typeof body.reason === "string" && body.reason.trim() ? body.reason.trim() : undefined;
    const r = await ctx.app.approvals.decide(approver, approvalId, "approve", reason, assertion);
    ctx.session.notice = { kind: "ok", text: `You approved ${approvalId} with your passkey; its status is now ${r.status}.` };
    json(ctx.res, 200, { ok: true, next: `/console/approvals/${approvalId}` });
  } catch (err) {
    failure(ctx.res, err);
  }
}

/**
 * Signing in with a passkey (before there is a session; the sign-in page's pre-session CSRF token
 * in `X-CSRF-Token`): options for a discoverable credential, then the assertion — its user handle
 * names the approver, whose registered passkey must verify it.
 */
export async function passkeySignIn(app: App, sessions: ConsoleSessions, pending: Map<string, { value: string; expiresAt: number }>, req: http.IncomingMessage, res: http.ServerResponse, step: "options" | "verify"): Promise<void> {
  const pre = sessions.preValue(req);
  if (!pre || !sessions.checkPreCsrf(req, req.headers["x-csrf-token"] as string | undefined)) {
    req.resume();
    return json(res, 403, { ok: false, error: "The sign-in form's CSRF token is missing or wrong; reload the sign-in page." });
  }
  try {
    const rp = relyingParty(app, req);
    if (step === "options") {
      req.resume();
      const options = await app.passkeys.authenticationOptions(rp);
      while (pending.size >= 10_000) pending.delete(pending.keys().next().value!);
      pending.set(pre, { value: String(options.challenge), expiresAt: app.now() + CHALLENGE_TTL_MS });
      return json(res, 200, { ok: true, options });
    }
    const body = (await readJson(req)) as { response?: { response?: { userHandle?: unknown } }; next?: unknown } | undefined;
    const c = pending.get(pre);
    pending.delete(pre);
    if (!body || !c || c.expiresAt <= app.now()) throw new Denied("passkey_invalid", "no passkey sign-in is in progress; start again.");
    const handle = body.response?.response?.userHandle;
    const approverId = typeof handle === "string" ? Buffer.from(handle, "base64url").toString("utf8") : "";
    const named = /^apr_[0-9a-f]{20}$/.test(approverId) ? await app.store.getApprover(approverId) : undefined;
    // Current as its record (MAC) and its tenant's log both say (src/approval/approvers.ts).
    const approver = named ? await app.approvers.stillValid(named.id, named.tokenHash) : undefined;
    if (!approver) throw new Denied("passkey_invalid", "this passkey names no current approver.");
    await app.passkeys.verify(approver.id, body.response, c.value, rp);
    const { setCookie } = sessions.create({ kind: "approver", approverId: approver.id, tenantId: approver.tenantId, tokenHash: approver.tokenHash }, "passkey");
    return json(res, 200, { ok: true, next: safeNext(typeof body.next === "string" ? body.next : "", "/console/approvals") }, { "set-cookie": setCookie });
  } catch (err) {
    failure(res, err);
  }
}

const APV = "(apv_[0-9a-f]{20})";
const approverOnly = (p: Ctx["principal"]): boolean => p.kind === "approver";
export const passkeyRoutes: Route[] = [
  { method: "GET", path: /^\/console\/passkeys$/, who: approverOnly, run: passkeysPage },
  { method: "POST", path: /^\/console\/passkeys\/register\/options$/, who: approverOnly, run: registerOptions },
  { method: "POST", path: /^\/console\/passkeys\/register$/, who: approverOnly, run: register },
  { method: "POST", path: new RegExp(`^/console/approvals/${APV}/passkey/options$`), who: approverOnly, run: (ctx, [id]) => approveOptions(ctx, id!) },
  { method: "POST", path: new RegExp(`^/console/approvals/${APV}/passkey$`), who: approverOnly, run: (ctx, [id]) => approve(ctx, id!) },
];
