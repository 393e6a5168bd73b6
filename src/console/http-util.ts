/**
 * Small HTTP pieces of the console: its security headers, cookies, form bodies and redirects.
 * Written here because they are a few lines each over node:http; the parts that carry a standard
 * (URL-encoded forms, cookies) use the platform's parsers (URLSearchParams).
 */
import type http from "node:http";

/**
 * The console's Content-Security-Policy: nothing inline (no inline script or style, no `eval`),
 * scripts, styles and fetches from this origin only, forms posted only here, never framed.
 */
export const CSP =
  "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'";

export const SECURITY_HEADERS: Record<string, string> = {
  "content-security-policy": CSP,
  "x-content-type-options": "nosniff",
  "x-frame-options": "DENY",
  // same-origin, not no-referrer: under no-referrer a browser sends `Origin: null` on form posts.
  "referrer-policy": "same-origin",
  "cross-origin-opener-policy": "same-origin",
  "cross-origin-resource-policy": "same-origin",
  // Pages can show a token once; nothing is kept by the browser or a proxy to show it again.
  "cache-control": "no-store",
};

export function send(res: http.ServerResponse, status: number, body: string, headers: Record<string, string | string[]> = {}): void {
  if (res.headersSent || res.destroyed) return;
  res.writeHead(status, { ...SECURITY_HEADERS, "content-type": "text/html; charset=utf-8", ...headers });
  res.end(body);
}

/** 303 See Other to a console path (always a path of this origin). */
export function redirect(res: http.ServerResponse, location: string, headers: Record<string, string | string[]> = {}): void {
  if (res.headersSent || res.destroyed) return;
  res.writeHead(303, { ...SECURITY_HEADERS, location, ...headers });
  res.end();
}

/** The request's cookies (the first of each name wins; malformed pairs are skipped). */
export function cookies(req: http.IncomingMessage): Map<string, string> {
  const out = new Map<string, string>();
  for (const part of (req.headers.cookie ?? "").split(";")) {
    const i = part.indexOf("=");
    if (i <= 0) continue;
    const name = part.slice(0, i).trim();
    if (!out.has(name)) out.set(name, part.slice(i + 1).trim());
  }
  return out;
}

export function setCookie(name: string, value: string, opts: { secure: boolean; maxAgeS: number; path?: string }): string {
  return `${name}=${value}; Path=${opts.path ?? "/"}; HttpOnly; SameSite=Strict; Max-Age=${opts.maxAgeS}${opts.secure ? "; Secure" : ""}`;
}

/**
 * A request body of one content type, read up to `limit` bytes: undefined when it is of another
 * type, larger (the rest is drained, not kept) or aborted. The one bounded reader behind the
 * console's forms and JSON and the OAuth consent form.
 */
async function readBody(req: http.IncomingMessage, type: string, limit: number): Promise<Buffer | undefined> {
  if ((req.headers["content-type"] ?? "").split(";")[0]!.trim().toLowerCase() !== type) {
    req.resume();
    return undefined;
  }
  const chunks: Buffer[] = [];
  let size = 0;
  try {
    for await (const chunk of req) {
      size += (chunk as Buffer).length;
      if (size > limit) {
        req.resume();
        return undefined;
      }
      chunks.push(chunk as Buffer);
    }
  } catch {
    return undefined;
  }
  return Buffer.concat(chunks);
}

/** A form body (application/x-www-form-urlencoded) up to `limit` bytes; undefined when too large, aborted or of another type. */
export async function readForm(req: http.IncomingMessage, limit = 256 * 1024): Promise<URLSearchParams | undefined> {
  const body = await readBody(req, "application/x-www-form-urlencoded", limit);
  return body && new URLSearchParams(body.toString("utf8"));
}

/** A JSON body up to `limit` bytes (the passkey ceremonies post JSON from the console's script). */
export async function readJson(req: http.IncomingMessage, limit = 64 * 1024): Promise<unknown> {
  const body = await readBody(req, "application/json", limit);
  if (body === undefined) return undefined;
  try {
    return JSON.parse(body.toString("utf8"));
  } catch {
    return undefined;
  }
}

/**
 * A same-origin path to return to after sign-in, or the console's home. Accepted: a path of this
 * server (`/…`), never `//host`, `/\host`, a scheme, or control characters — anything a browser
 * could read as another origin.
 */
export function safeNext(next: string | null | undefined, fallback = "/console"): string {
  if (typeof next !== "string" || next.length === 0 || next.length > 2048) return fallback;
  if (!next.startsWith("/") || next.startsWith("//") || next.startsWith("/\\")) return fallback;
  if (/[\u0000-\u001f\u007f\\]/.test(next)) return fallback;
  try {
    const base = "http://sigil.invalid";
    const u = new URL(next, base);
    if (u.origin !== base) return fallback;
    // Dot segments normalise away: `/.//evil.example` becomes `//evil.example` (another origin).
    const out = u.pathname + u.search + u.hash;
    return out.startsWith("//") || out.startsWith("/\\") ? fallback : out;
  } catch {
    return fallback;
  }
}
