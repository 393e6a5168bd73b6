/**
 * The consent step of /authorize: a person signed in to the console (an administrator: root, or a
 * tenant's) chooses which identity of their tenant the client may act as — or creates one — seeing
 * the client's name, where its metadata comes from, and the host it will be sent back to.
 *
 * - Not signed in: the browser goes to the console's sign-in page with `next` = this /authorize
 *   request, and comes back to it.
 * - The form carries the authorization request signed (HMAC under a master-key subkey, bound to
 *   the console session and expiring in 10 minutes) plus the console's CSRF token: the POST cannot
 *   change the client, redirect URI, PKCE challenge or resource, and a cross-site page cannot post
 *   it for someone else. Identity choice and creation go through the same admin operations as the
 *   CLI and admin tools (a tenant admin's narrowed by its scope).
 * - Pages are server-rendered (hono's `html`: every value escaped), never framed, never cached.
 */
import { createHmac } from "node:crypto";
import type http from "node:http";
import { html } from "hono/html";
import { hashesEqual } from "../crypto/tokens.js";

/** The console session of the person consenting (src/console, via the server's wiring). */
export interface ConsentHuman {
  /** The admin token's keyed hash and, for a tenant admin, the tenant. */
  tokenHash: string;
  tenantId?: string;
  /** Identifies the console session (the signed request is bound to it). */
  sessionId: string;
  /** The console's CSRF token for this session's forms, and its check. */
  csrf: string;
  checkCsrf(token: string | null): boolean;
}

/** How /authorize reaches the console: who is signed in, and where to sign in. */
export interface ConsoleGate {
  human(req: http.IncomingMessage): Promise<ConsentHuman | undefined>;
  /** Whether someone is signed in to the console at all (an approver is, but cannot consent). */
  signedIn(req: http.IncomingMessage): Promise<boolean>;
  signInPath(next: string): string;
}

/** The authorization request as the consent form carries it (signed). */
export interface PendingAuthorization {
  clientId: string;
  redirectUri: string;
  challenge: string;
  state?: string;
  resource: string;
  /** The origin the request arrived at (the issuer). */
  origin: string;
  exp: number;
}

export const CONSENT_PATH = "/oauth/consent";
const PENDING_TTL_MS = 10 * 60_000;

export class ConsentSigner {
  constructor(
    private readonly key: Buffer,
    private readonly now: () => number,
  ) {}

  private mac(sessionId: string, body: string): string {
    return createHmac("sha256", this.key).update(`sigil-oauth-consent-v1\n${sessionId}\n${body}`).digest("base64url");
  }

  sign(p: Omit<PendingAuthorization, "exp">, sessionId: string): { request: string; sig: string } {
    const request = Buffer.from(JSON.stringify({ ...p, exp: this.now() + PENDING_TTL_MS })).toString("base64url");
    return { request, sig: this.mac(sessionId, request) };
  }

  /** The request if `sig` is its signature for this session and it has not expired. */
  open(request: string | null, sig: string | null, sessionId: string): PendingAuthorization | undefined {
    if (!request || !sig || request.length > 8192 || !hashesEqual(sig, this.mac(sessionId, request))) return undefined;
    try {
      const p = JSON.parse(Buffer.from(request, "base64url").toString("utf8")) as PendingAuthorization;
      return typeof p.exp === "number" && p.exp > this.now() ? p : undefined;
    } catch {
      return undefined;
    }
  }
}

/** The security headers of every consent page (the console's, restated: this page must never be framed). */
export const PAGE_HEADERS: Record<string, string> = {
  "content-type": "text/html; charset=utf-8",
  // No form-action: browsers apply it to the redirect after the POST, which goes to the client's
  // redirect URI (another port, or a private-use scheme such as cursor://).
  "content-security-policy": "default-src 'none'; style-src 'unsafe-inline'; frame-ancestors 'none'; base-uri 'none'",
  "x-frame-options": "DENY",
  "x-content-type-options": "nosniff",
  "referrer-policy": "same-origin",
  "cache-control": "no-store",
};

const STYLE = "body{font:16px/1.5 system-ui,sans-serif;max-width:40rem;margin:2rem auto;padding:0 1rem}fieldset{border:1px solid #bbb;margin:1rem 0}label{display:block}.warn{color:#8a4b00}.err{color:#a00}code{font-size:90%}";

export interface IdentityChoice {
  id: string;
  name: string;
  tenantId: string;
}

export function consentPage(o: {
  clientName: string;
  clientId: string;
  viaDocument: boolean;
  redirectHost: string;
  identities: IdentityChoice[];
  request: string;
  sig: string;
  csrf: string;
  error?: string;
}): string {
  const source = o.viaDocument
    ? html`<p>Its description was published at <code>${o.clientId}</code>.</p>`
    : html`<p class="warn">This client registered itself; its name is its own claim and was not checked.</p>`;
  const choices = o.identities.map(
    (i, n) => html`<label><input type="radio" name="identity" value="${i.id}" ${n === 0 ? "checked" : ""}> ${i.name} <code>${i.id}</code> (tenant ${i.tenantId})</label>`,
  );
  return String(html`<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>Allow ${o.clientName}? — sigil</title><style>${STYLE}</style></head>
<body><main>
<h1>Allow <q>${o.clientName}</q> to act as an agent identity?</h1>
${source}
<p>After you decide, your browser goes back to <strong>${o.redirectHost}</strong>.</p>
${o.error ? html`<p class="err" role="alert">${o.error}</p>` : ""}
<form method="post" action="${CONSENT_PATH}">
<input type="hidden" name="request" value="${o.request}">
<input type="hidden" name="sig" value="${o.sig}">
<input type="hidden" name="csrf" value="${o.csrf}">
<fieldset><legend>Act as</legend>
${choices}
<label><input type="radio" name="identity" value="new" ${o.identities.length === 0 ? "checked" : ""}> a new identity named <input name="name" aria-label="name of the new identity" maxlength="64"></label>
</fieldset>
<p>The client can use every tool this identity's channels and policy allow, as the identity, until you revoke the identity or the grant.</p>
<button type="submit" name="decision" value="approve">Allow</button>
<button type="submit" name="decision" value="deny">Deny</button>
</form>
</main></body></html>`);
}

export function messagePage(title: string, text: string): string {
  return String(html`<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>${title} — sigil</title><style>${STYLE}</style></head>
<body><main><h1>${title}</h1><p>${text}</p></main></body></html>`);
}
