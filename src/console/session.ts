/**
 * Console sessions: a signed-in human's principal behind an opaque cookie.
 *
 * - The cookie carries 256 random bits; the server keeps only their SHA-256, with the principal
 *   (the admin or approver token's keyed hash, never the token), how it signed in, and a 12-hour
 *   absolute expiry. `HttpOnly; SameSite=Strict`, `Secure` (and the `__Host-` name) when the
 *   server's public URL is https. Over plain http (a loopback address) it is set only for the
 *   paths that read it (SESSION_COOKIE_PATHS): browsers do not isolate cookies by port, and
 *   127.0.0.1 on another port is the same site, so with `Path=/` the browser would hand it to any
 *   listener there — an OAuth client's loopback redirect URI among them (src/oauth/clients.ts
 *   refuses loopback redirect URIs under these paths).
 * - Sessions live in this process's memory: a restart signs everyone out (nothing to steal from
 *   the home, nothing to expire there). At most MAX_SESSIONS are kept (the oldest go first).
 * - CSRF: every form carries a token that is an HMAC (under a per-process key) of the session id —
 *   or, on the sign-in form before there is a session, of a random pre-session cookie — compared in
 *   constant time. A cross-site page cannot read either (HttpOnly cookie, same-origin page).
 * - One-time values (a token just issued) are kept in the session under a random id until the page
 *   that shows them is rendered once, then deleted: a reload finds nothing to show.
 */
import { createHash, createHmac, randomBytes, timingSafeEqual } from "node:crypto";
import type http from "node:http";
import { cookies, setCookie } from "./http-util.js";

export const SESSION_TTL_MS = 12 * 60 * 60_000;
const MAX_SESSIONS = 10_000;
const MAX_ONCE_PER_SESSION = 16;
/** The paths a session cookie is sent to over plain http (the console and the OAuth consent steps). */
export const SESSION_COOKIE_PATHS = ["/console", "/authorize", "/oauth/consent"] as const;

/** Who a console session belongs to: an admin (root, or a tenant's) or an approver. */
export type ConsolePrincipal =
  | { kind: "admin"; tokenHash: string; tenantId?: string }
  | { kind: "approver"; approverId: string; tenantId: string; tokenHash: string };

export interface ConsoleSession {
  /** SHA-256 of the cookie value (hex): the session's id on the server. */
  id: string;
  principal: ConsolePrincipal;
  /** How the human signed in. */
  via: "token" | "passkey";
  createdAt: number;
  expiresAt: number;
  /** Values to be shown once (a token just issued), by a random id. */
  once: Map<string, Record<string, string>>;
  /** WebAuthn challenges this session asked for, by purpose (one each; used once). */
  challenges: Map<string, { value: string; expiresAt: number }>;
  /** A message for the next page (after a redirect). */
  notice?: { kind: "ok" | "error"; text: string };
}

const hashOf = (v: string): string => createHash("sha256").update(v).digest("hex");

export class ConsoleSessions {
  private readonly key = randomBytes(32);
  private readonly sessions = new Map<string, ConsoleSession>();

  constructor(
    private readonly secure: boolean,
    private readonly now: () => number = Date.now,
  ) {}

  /** The session cookie's name: `__Host-` bound to this origin when served over https. */
  get cookieName(): string {
    return this.secure ? "__Host-sigil_console" : "sigil_console";
  }

  private get preName(): string {
    return this.secure ? "__Host-sigil_console_pre" : "sigil_console_pre";
  }

  /** Starts a session; returns it and the Set-Cookie header that hands it to the browser. */
  create(principal: ConsolePrincipal, via: ConsoleSession["via"]): { session: ConsoleSession; setCookie: string[] } {
    while (this.sessions.size >= MAX_SESSIONS) this.sessions.delete(this.sessions.keys().next().value!);
    const value = randomBytes(32).toString("base64url");
    const now = this.now();
    const session: ConsoleSession = { id: hashOf(value), principal, via, createdAt: now, expiresAt: now + SESSION_TTL_MS, once: new Map(), challenges: new Map() };
    this.sessions.set(session.id, session);
    return { session, setCookie: this.cookieHeaders(this.cookieName, value, SESSION_TTL_MS / 1000) };
  }

  /** Set-Cookie headers: `__Host-` (Path=/) over https; one per SESSION_COOKIE_PATHS path over plain http. */
  private cookieHeaders(name: string, value: string, maxAgeS: number, paths: readonly string[] = SESSION_COOKIE_PATHS): string[] {
    if (this.secure) return [setCookie(name, value, { secure: true, maxAgeS })];
    return paths.map((path) => setCookie(name, value, { secure: false, maxAgeS, path }));
  }

  /** The request's session, if its cookie names a live one. */
  get(req: http.IncomingMessage): ConsoleSession | undefined {
    const value = cookies(req).get(this.cookieName);
    if (!value || !/^[A-Za-z0-9_-]{43}$/.test(value)) return undefined;
    const s = this.sessions.get(hashOf(value));
    if (!s) return undefined;
    if (s.expiresAt <= this.now()) {
      this.sessions.delete(s.id);
      return undefined;
    }
    return s;
  }

  end(session: ConsoleSession): void {
    this.sessions.delete(session.id);
  }

  /** Ends every session of a principal whose credential no longer holds (by its token hash). */
  endWhere(pred: (p: ConsolePrincipal) => boolean): void {
    for (const s of [...this.sessions.values()]) if (pred(s.principal)) this.sessions.delete(s.id);
  }

  /** The Set-Cookie header that clears the session cookie. */
  get clearCookie(): string[] {
    return this.cookieHeaders(this.cookieName, "", 0);
  }

  private mac(purpose: string, value: string): string {
    return createHmac("sha256", this.key).update(`sigil-console-csrf-v1\n${purpose}\n${value}`).digest("base64url");
  }

  /** The CSRF token of a session's forms. */
  csrf(session: ConsoleSession): string {
    return this.mac("session", session.id);
  }

  checkCsrf(session: ConsoleSession, token: string | null | undefined): boolean {
    return equal(token, this.csrf(session));
  }

  /**
   * The sign-in form's CSRF token, bound to a pre-session cookie (set here when the browser has
   * none): a cross-site form cannot sign a victim in with the attacker's token.
   */
  preCsrf(req: http.IncomingMessage): { token: string; setCookie?: string } {
    let value = cookies(req).get(this.preName);
    let header: string | undefined;
    if (!value || !/^[A-Za-z0-9_-]{22,64}$/.test(value)) {
      value = randomBytes(16).toString("base64url");
      header = this.cookieHeaders(this.preName, value, 3600, ["/console"])[0];
    }
    return { token: this.mac("pre", value), ...(header ? { setCookie: header } : {}) };
  }

  checkPreCsrf(req: http.IncomingMessage, token: string | null | undefined): boolean {
    const value = cookies(req).get(this.preName);
    return value !== undefined && equal(token, this.mac("pre", value));
  }

  /** The pre-session cookie's value (the sign-in page set it), if the request has one. */
  preValue(req: http.IncomingMessage): string | undefined {
    return cookies(req).get(this.preName);
  }

  /** Keeps `value` to be shown once; returns the id the showing page asks for. */
  keepOnce(session: ConsoleSession, value: Record<string, string>): string {
    while (session.once.size >= MAX_ONCE_PER_SESSION) session.once.delete(session.once.keys().next().value!);
    const id = randomBytes(12).toString("base64url");
    session.once.set(id, value);
    return id;
  }

  /** The value kept under `id`, removed as it is read. */
  takeOnce(session: ConsoleSession, id: string | null): Record<string, string> | undefined {
    if (!id) return undefined;
    const v = session.once.get(id);
    session.once.delete(id);
    return v;
  }
}

function equal(a: string | null | undefined, b: string): boolean {
  if (typeof a !== "string") return false;
  const x = Buffer.from(a);
  const y = Buffer.from(b);
  return x.length === y.length && timingSafeEqual(x, y);
}
