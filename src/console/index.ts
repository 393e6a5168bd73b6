/**
 * The web console (README "Console", SPEC §10): server-rendered pages at /console on the
 * `sigil serve --http` origin, for the humans — root and tenant admins, approvers.
 *
 * Every request passes one gate, in this order: the HTTP server's Host and Origin checks (as for
 * /mcp, src/server/http.ts) → the session cookie → the session's credential still current (the
 * admin token still the home's or its tenant's, the approver not removed; checked on every request,
 * so a rotated or removed credential ends its sessions) → for a POST, `Sec-Fetch-Site` not
 * cross-site and the form's CSRF token → the page. Pages change nothing themselves: they call the
 * admin and approver tools through the same calls MCP uses (src/console/ops.ts), so every change is
 * validated, scoped to a tenant admin's tenant, and audited exactly like its CLI / MCP twin.
 *
 * For other parts of the server (the OAuth consent page): `readConsoleSession(app, req)` says who
 * is signed in, and `signInPath(next)` is where to send a human who is not (after signing in the
 * console returns to `next`, a path of this origin; anything else is ignored).
 */
import type http from "node:http";
import type { App } from "../app.js";
import { logInternal, refId } from "../errors.js";
import { CONSOLE_CSS, CONSOLE_JS, webauthnBrowserBundle } from "./assets.js";
import { frag, html } from "./html.js";
import { SECURITY_HEADERS, readForm, redirect, safeNext, send } from "./http-util.js";
import { page } from "./layout.js";
import { PASSKEY_JS } from "./passkey-script.js";
import { type ConsolePrincipal, type ConsoleSession, ConsoleSessions } from "./session.js";
import type { Ctx, Route } from "./routes.js";
import { identityRoutes } from "./pages/identities.js";
import { approvalRoutes } from "./pages/approvals.js";
import { auditRoutes } from "./pages/audit.js";
import { tenantRoutes } from "./pages/tenants.js";
import { passkeyRoutes, passkeySignIn } from "./pages/passkeys.js";

const ROUTES: Route[] = [...identityRoutes, ...auditRoutes, ...approvalRoutes, ...tenantRoutes, ...passkeyRoutes];

export type { ConsolePrincipal } from "./session.js";

export interface ConsoleOptions {
  /** Called after a console action that may have revoked an identity or rotated a token (the HTTP server closes such sessions at once). */
  afterChange?: () => void;
}

export interface ConsoleSite {
  readonly sessions: ConsoleSessions;
  /** Serves a request under /console. */
  handle(req: http.IncomingMessage, res: http.ServerResponse, url: URL): Promise<void>;
  /** The principal of the request's console session, if it has one whose credential still holds. */
  readSession(req: http.IncomingMessage): Promise<ConsolePrincipal | undefined>;
}

const sites = new WeakMap<App, ConsoleSite>();

/** The console of an App (one per App: its sessions are shared by everything that asks). */
export function consoleFor(app: App, opts: ConsoleOptions = {}): ConsoleSite {
  let site = sites.get(app);
  if (!site) sites.set(app, (site = makeConsole(app, opts)));
  return site;
}

/**
 * Who is signed in to the console on this request: an admin (root: no `tenantId`; a tenant's) or an
 * approver — or undefined (no session, expired, signed out, or its credential no longer holds).
 */
export function readConsoleSession(app: App, req: http.IncomingMessage): Promise<ConsolePrincipal | undefined> {
  return consoleFor(app).readSession(req);
}

/** The sign-in page, returning to `next` (a path of this origin) once signed in. */
export function signInPath(next?: string): string {
  return next ? `/console/sign-in?next=${encodeURIComponent(safeNext(next))}` : "/console/sign-in";
}

const homeOf = (p: ConsolePrincipal): string => (p.kind === "approver" ? "/console/approvals" : "/console/identities");

function makeConsole(app: App, opts: ConsoleOptions): ConsoleSite {
  const sessions = new ConsoleSessions(app.config.publicUrl?.startsWith("https://") === true, app.now);
  /** Passkey sign-in challenges, by pre-session cookie. */
  const signInChallenges = new Map<string, { value: string; expiresAt: number }>();

  /** Whether the session's credential still holds; a session whose credential is gone is ended. */
  const current = async (s: ConsoleSession): Promise<boolean> => {
    const p = s.principal;
    const ok = p.kind === "admin" ? await app.auth.adminStillValid(p.tokenHash, p.tenantId) : (await app.approvers.stillValid(p.approverId, p.tokenHash)) !== undefined;
    if (!ok) sessions.endWhere((q) => q.tokenHash === p.tokenHash);
    return ok;
  };

  const readSession = async (req: http.IncomingMessage): Promise<ConsolePrincipal | undefined> => {
    const s = sessions.get(req);
    return s && (await current(s)) ? s.principal : undefined;
  };

  const signInPage = (req: http.IncomingMessage, res: http.ServerResponse, next: string, error?: string, status = 200): void => {
    const pre = sessions.preCsrf(req);
    const body = frag(html`<h1>Sign in</h1>
<form method="post" action="/console/sign-in" class="signin">
<input type="hidden" name="csrf" value="${pre.token}">
<input type="hidden" name="next" value="${next}">
<label for="token">Admin or approver token</label>
<input type="password" id="token" name="token" autocomplete="off" spellcheck="false" required aria-describedby="token-help${error ? " token-error" : ""}" placeholder="sigil_admin_… or sigil_approver_…">
${error ? frag(html`<p class="field-error" id="token-error" role="alert">${error}</p>`) : ""}
<p class="muted" id="token-help">Paste the token; it is exchanged for a session cookie (12 hours) and never shown again.</p>
<button type="submit" class="primary">Sign in</button>
</form>
<h2>Approvers: sign in with a passkey</h2>
<p class="muted">If you registered a passkey in the console, use it instead of a token.</p>
<form method="post" action="/console/passkeys/sign-in" id="passkey-signin" data-next="${next}">
<input type="hidden" name="csrf" value="${pre.token}">
<button type="submit">Sign in with a passkey</button>
<p class="field-error" id="passkey-error" role="alert" hidden></p>
</form>`);
    send(res, status, page({ title: "Sign in", body, scripts: ["/console/assets/webauthn.js", "/console/assets/passkey.js"] }), pre.setCookie ? { "set-cookie": pre.setCookie } : {});
  };

  const refuse = (res: http.ServerResponse, status: number, text: string): void => {
    send(res, status, page({ title: "Refused", body: frag(html`<h1>Refused</h1><p class="notice error" role="alert">${text}</p><p><a href="/console">Back to the console</a></p>`) }));
  };

  async function handle(req: http.IncomingMessage, res: http.ServerResponse, url: URL): Promise<void> {
    const path = url.pathname.replace(/\/+$/, "") || "/";
    const method = req.method ?? "GET";
    try {
      // Static assets (no session needed: nothing secret in them).
      if (method === "GET" && path.startsWith("/console/assets/")) return asset(res, path.slice("/console/assets/".length));
      // A cross-site POST is refused before anything else (a browser says so in Sec-Fetch-Site).
      const site = req.headers["sec-fetch-site"];
      if (method === "POST" && site !== undefined && site !== "same-origin" && site !== "none") {
        req.resume();
        return refuse(res, 403, "This form was posted from another site; nothing was changed.");
      }
      if (path === "/console/sign-in") {
        if (method === "GET") {
          const s = sessions.get(req);
          if (s && (await current(s))) return redirect(res, safeNext(url.searchParams.get("next"), homeOf(s.principal)));
          return signInPage(req, res, safeNext(url.searchParams.get("next"), ""));
        }
        if (method === "POST") return signIn(req, res);
      }
      if (method === "POST" && (path === "/console/passkeys/sign-in/options" || path === "/console/passkeys/sign-in")) {
        return passkeySignIn(app, sessions, signInChallenges, req, res, path.endsWith("/options") ? "options" : "verify");
      }
      const session = sessions.get(req);
      if (!session || !(await current(session))) {
        if (method === "GET") return redirect(res, signInPath(url.pathname + url.search));
        req.resume();
        return refuse(res, 403, "You are not signed in (or your session ended); nothing was changed. Sign in and try again.");
      }
      const csrf = sessions.csrf(session);
      let form: URLSearchParams | undefined;
      if (method === "POST") {
        // Passkey ceremonies post JSON from the console's script with the token in a header.
        const json = (req.headers["content-type"] ?? "").startsWith("application/json");
        if (json ? !sessions.checkCsrf(session, req.headers["x-csrf-token"] as string | undefined) : !sessions.checkCsrf(session, (form = await readForm(req))?.get("csrf"))) {
          if (json) req.resume();
          return refuse(res, 403, "The form's CSRF token is missing or wrong; nothing was changed. Reload the page and try again.");
        }
      }
      if (path === "/console" && method === "GET") return redirect(res, homeOf(session.principal));
      if (path === "/console/sign-out" && method === "POST") {
        sessions.end(session);
        return redirect(res, "/console/sign-in", { "set-cookie": sessions.clearCookie });
      }
      const ctx: Ctx = { app, req, res, url, path, session, principal: session.principal, csrf, sessions, ...(form ? { form } : {}), afterChange: opts.afterChange ?? (() => {}) };
      for (const r of ROUTES) {
        if (r.method !== method) continue;
        const m = r.path.exec(path);
        if (!m) continue;
        if (r.who && !r.who(session.principal)) break;
        return await r.run(ctx, m.slice(1));
      }
      send(res, 404, page({ title: "Not found", session, csrf, body: frag(html`<h1>Not found</h1><p>There is no such page here.</p>`) }));
    } catch (err) {
      const ref = refId();
      logInternal(ref, "console request", err);
      send(res, 500, page({ title: "Error", body: frag(html`<h1>Something went wrong</h1><p class="notice error" role="alert">The request failed; nothing more is known here (${ref}). The operator's log has the detail.</p>`) }));
    }
  }

  async function signIn(req: http.IncomingMessage, res: http.ServerResponse): Promise<void> {
    const form = await readForm(req, 16 * 1024);
    const next = safeNext(form?.get("next"), "");
    if (!form || !sessions.checkPreCsrf(req, form.get("csrf"))) return refuse(res, 403, "The sign-in form's CSRF token is missing or wrong; reload the sign-in page and try again.");
    const token = (form.get("token") ?? "").trim();
    let principal: ConsolePrincipal | undefined;
    if (token.startsWith("sigil_admin_") || token.startsWith("sigil_approver_")) {
      const p = await app.auth.principal(token);
      if (p && p.kind !== "agent") principal = p;
    }
    if (!principal) {
      const why = token.startsWith("sigil_agent_")
        ? "Agent tokens do not sign in to the console; use an admin (sigil_admin_…) or approver (sigil_approver_…) token."
        : "That token is not a current admin or approver token of this server.";
      return signInPage(req, res, next, why, 401);
    }
    const { setCookie } = sessions.create(principal, "token");
    redirect(res, next || homeOf(principal), { "set-cookie": setCookie });
  }

  return { sessions, handle, readSession };
}

function asset(res: http.ServerResponse, name: string): void {
  const files: Record<string, [string, () => string]> = {
    "console.css": ["text/css; charset=utf-8", () => CONSOLE_CSS],
    "console.js": ["text/javascript; charset=utf-8", () => CONSOLE_JS],
    "webauthn.js": ["text/javascript; charset=utf-8", webauthnBrowserBundle],
    "passkey.js": ["text/javascript; charset=utf-8", () => PASSKEY_JS],
  };
  const f = files[name];
  if (!f) return send(res, 404, "Not found.", { "content-type": "text/plain; charset=utf-8" });
  res.writeHead(200, { ...SECURITY_HEADERS, "content-type": f[0], "cache-control": "no-cache" });
  res.end(f[1]());
}

