/**
 * `sigil serve --http`: Streamable HTTP at http://HOST:PORT/mcp for many agents.
 *
 * - Binds 127.0.0.1 by default; checks Host and Origin on every request (DNS rebinding).
 * - Every /mcp request authenticates with `Authorization: Bearer <token>`; no token or a wrong or
 *   revoked one: 401. A session belongs to the credential that opened it: a request for it with
 *   another credential gets the same 404 as an unknown session, and learns nothing.
 * - Bodies over the limit (1 MiB by default) get 413 (after the body has been read and discarded,
 *   so any client can read the answer); malformed JSON gets 400. Neither touches any other session.
 * - Bounded by design (README, "Limits"): a request's headers and body must arrive within
 *   SIGIL_REQUEST_TIMEOUT_MS (30 s by default; headers within 10 s) or the connection is cut. One
 *   identity holds at most SIGIL_MAX_SESSIONS_PER_IDENTITY sessions (32 by default): opening
 *   another closes that identity's least recently used idle session, and when none is idle the new
 *   one is refused with 429. Agent sessions together are capped (10,000); admin sessions are
 *   counted apart, so agents can never crowd the admin out. A session whose identity is revoked or
 *   whose token is rotated is closed: at once when this process served the admin request that did
 *   it, on that token's next request, and otherwise by a check every few seconds (the change may
 *   come from another process, e.g. the CLI).
 * - The web console (src/console/) is served at /console behind the same Host and Origin checks.
 * - OAuth (SPEC §11, src/oauth/server.ts): with `oauth`, its paths (metadata, /authorize, /token,
 *   /register, /revoke, the consent form) are served here behind the same Host/Origin checks and
 *   timeouts, and /mcp also accepts OAuth access tokens. A failed static `sigil_…` token is told
 *   `invalid_token` without `resource_metadata`; no token or a failed access token gets the OAuth
 *   challenge. A session opened under a grant is its grant's (a refreshed access token continues
 *   it) and is closed when the grant is revoked.
 */
import { randomUUID } from "node:crypto";
import http from "node:http";
import type { AddressInfo } from "node:net";
import { StreamableHTTPServerTransport } from "@modelcontextprotocol/sdk/server/streamableHttp.js";
import { isInitializeRequest } from "@modelcontextprotocol/sdk/types.js";
import { RecordTampered } from "../identity/record-mac.js";
import { SigilError, logInternal, refId } from "../errors.js";
import type { App } from "../app.js";
import { type Principal, createSessionServer } from "./factory.js";
import { drainInFlight } from "./inflight.js";
import { StoreError } from "../../store/types.js";
import { consoleFor } from "../console/index.js";
import { type OAuthServer, isStaticToken } from "../oauth/server.js";

export interface HttpOptions {
  host: string;
  port: number;
  maxBodyBytes?: number;
  /** Extra Host values (host:port) and Origins to accept, e.g. behind a reverse proxy. */
  allowedHosts?: string[];
  allowedOrigins?: string[];
  /** Sessions silent for this long are closed (default 30 minutes). */
  sessionIdleMs?: number;
  /** Sessions one identity (or the admin token) may hold (default: the configuration's, SIGIL_MAX_SESSIONS_PER_IDENTITY). */
  maxSessionsPerIdentity?: number;
  /** A request's headers and body must arrive within this (default: the configuration's, SIGIL_REQUEST_TIMEOUT_MS). */
  requestTimeoutMs?: number;
  /** How often open sessions' credentials are re-checked against the store (default 3 s). */
  credentialCheckMs?: number;
  /** Webhook routes (any method, no bearer token: they authenticate themselves), e.g. inbound SMS (src/inbound/twilio.ts). */
  webhooks?: (req: http.IncomingMessage, url: URL, res: http.ServerResponse) => Promise<boolean>;
  /** Extra GET routes (public, no token), e.g. the key directory. */
  publicRoutes?: (req: http.IncomingMessage, url: URL, res: http.ServerResponse) => Promise<boolean>;
  /** Serve the web console at /console (default true; src/console/). */
  console?: boolean;
  /** The OAuth authorization server and resource checks (src/oauth/server.ts); without it, static tokens only. */
  oauth?: Pick<OAuthServer, "handles" | "handle" | "authenticate" | "challenge"> & { live(grantId: string): Promise<boolean> };
}

interface Session {
  id: string;
  transport: StreamableHTTPServerTransport;
  principal: Principal;
  /** Which bucket the session counts against: `agent:<identity id>` or `admin:<token hash>`. */
  owner: string;
  lastSeen: number;
  /** Requests (and open streams) of this session in progress: a session with none is idle. */
  busy: number;
  close: () => Promise<void>;
}

const LOOPBACK = new Set(["127.0.0.1", "localhost", "::1", "[::1]"]);
/** Agent sessions together (admin sessions are not counted here). */
const MAX_AGENT_SESSIONS = 10_000;
const HEADERS_TIMEOUT_MS = 10_000;
/** An oversized body is read and discarded up to this much, so the client can read its 413; beyond, the connection is cut. */
const MAX_DRAIN_BYTES = 64 * 1024 * 1024;

function samePrincipal(a: Principal, b: Principal): boolean {
  if (a.kind !== b.kind || a.tokenHash !== b.tokenHash) return false;
  if (a.kind === "agent") return b.kind === "agent" && a.identityId === b.identityId && a.grantId === b.grantId;
  if (a.kind === "approver") return b.kind === "approver" && a.approverId === b.approverId;
  return true;
}

const ownerOf = (p: Principal): string => (p.kind === "agent" ? `agent:${p.identityId}` : p.kind === "approver" ? `approver:${p.approverId}` : `admin:${p.tokenHash}`);

function jsonError(res: http.ServerResponse, status: number, code: number, message: string, headers: Record<string, string> = {}): void {
  if (res.headersSent || res.destroyed) return;
  res.writeHead(status, { "content-type": "application/json", ...headers });
  res.end(JSON.stringify({ jsonrpc: "2.0", error: { code, message }, id: null }));
}

/**
 * The body, or "too_large" once it has been read (and discarded) to its end — a client that is
 * still sending when the server answers and closes gets EPIPE instead of the 413 — or "aborted"
 * when the connection ended or timed out first.
 */
async function readBody(req: http.IncomingMessage, limit: number): Promise<Buffer | "too_large" | "aborted"> {
  const declared = Number(req.headers["content-length"] ?? "0");
  if (declared > MAX_DRAIN_BYTES) {
    req.socket.destroy(); // not worth reading to the end
    return "aborted";
  }
  const chunks: Buffer[] = [];
  let size = 0;
  let tooLarge = declared > limit;
  try {
    for await (const chunk of req) {
      size += (chunk as Buffer).length;
      if (size > MAX_DRAIN_BYTES) {
        req.socket.destroy();
        return "aborted";
      }
      if (size > limit) tooLarge = true;
      if (!tooLarge) chunks.push(chunk as Buffer);
    }
  } catch {
    return "aborted";
  }
  if (!req.complete) return "aborted";
  return tooLarge ? "too_large" : Buffer.concat(chunks);
}

export async function serveHttp(app: App, opts: HttpOptions): Promise<{ server: http.Server; url: string; close: () => Promise<void> }> {
  const sessions = new Map<string, Session>();
  /** Session ids by owner, and sessions being opened (counted before they exist, so a burst cannot overshoot). */
  const byOwner = new Map<string, Set<string>>();
  const opening = new Map<string, number>();
  let agentSessions = 0;
  const maxBody = opts.maxBodyBytes ?? 1024 * 1024;
  const perIdentity = opts.maxSessionsPerIdentity ?? app.config.maxSessionsPerIdentity;
  const requestTimeout = opts.requestTimeoutMs ?? app.config.requestTimeoutMs;
  let port = opts.port;

  const hostAllowed = (host: string | undefined): boolean => {
    if (!host) return false;
    const allowed = new Set((opts.allowedHosts ?? []).map((h) => h.toLowerCase()));
    allowed.add(`${opts.host}:${port}`.toLowerCase());
    if (LOOPBACK.has(opts.host)) for (const h of ["127.0.0.1", "localhost", "[::1]"]) allowed.add(`${h}:${port}`);
    return allowed.has(host.toLowerCase());
  };
  const originAllowed = (origin: string | undefined): boolean => {
    if (origin === undefined) return true; // not a browser
    const o = origin.toLowerCase();
    if ((opts.allowedOrigins ?? []).map((x) => x.toLowerCase()).includes(o)) return true;
    try {
      const u = new URL(o);
      return (u.protocol === "http:" || u.protocol === "https:") && hostAllowed(u.host);
    } catch {
      return false;
    }
  };

  const countOf = (owner: string): number => (byOwner.get(owner)?.size ?? 0) + (opening.get(owner) ?? 0);
  const forget = (s: Session): void => {
    if (sessions.get(s.id) !== s) return;
    sessions.delete(s.id);
    const set = byOwner.get(s.owner);
    set?.delete(s.id);
    if (set?.size === 0) byOwner.delete(s.owner);
    if (s.principal.kind === "agent") agentSessions--;
  };
  const closeSession = (s: Session): void => {
    forget(s);
    void s.close().catch(() => {});
  };
  /** Closes every session opened with a credential that is no longer current. */
  const closeWhere = (pred: (s: Session) => boolean): void => {
    for (const s of [...sessions.values()]) if (pred(s)) closeSession(s);
  };

  /**
   * Re-checks the credential of every open agent session against the store: a revoked identity's
   * sessions, and sessions opened with a token since rotated, are closed. One registry read per
   * identity that has sessions (a stat on the embedded store).
   */
  let checking: Promise<void> | undefined;
  let checkAgain = false;
  const checkCredentials = async (): Promise<void> => {
    if (checking) {
      checkAgain = true; // a change may have landed after the running check read it
      return checking;
    }
    const run = async (): Promise<void> => {
      do {
        checkAgain = false;
        const ids = new Set<string>();
        for (const s of sessions.values()) if (s.principal.kind === "agent") ids.add(s.principal.identityId);
        for (const id of ids) {
          // A record that fails its MAC (RecordTampered) names no one: its sessions close too.
          const rec = await app.store.getIdentity(id).catch((err: unknown) => (err instanceof RecordTampered ? undefined : Promise.reject(err)));
          closeWhere((s) => s.principal.kind === "agent" && s.principal.identityId === id && (!rec || Boolean(rec.revokedAt) || rec.tokenHash !== s.principal.tokenHash));
        }
        // Sessions opened under an OAuth grant close when the grant is revoked.
        const grants = new Set<string>();
        for (const s of sessions.values()) if (s.principal.kind === "agent" && s.principal.grantId) grants.add(s.principal.grantId);
        for (const g of grants) {
          if (opts.oauth && !(await opts.oauth.live(g))) closeWhere((s) => s.principal.kind === "agent" && s.principal.grantId === g);
        }
      } while (checkAgain);
    };
    checking = run()
      .catch((err: unknown) => logInternal(refId(), "session credential check", err))
      .finally(() => {
        checking = undefined;
      });
    return checking;
  };

  /** Room for one more session of `owner`: evicts its least recently used idle session if it must. */
  const makeRoom = (owner: string): boolean => {
    if (countOf(owner) < perIdentity) return true;
    let lru: Session | undefined;
    for (const id of byOwner.get(owner) ?? []) {
      const s = sessions.get(id)!;
      if (s.busy === 0 && (!lru || s.lastSeen < lru.lastSeen)) lru = s;
    }
    if (!lru) return false;
    closeSession(lru);
    return countOf(owner) < perIdentity;
  };

  /** Counts a request (or stream) against its session until the response is over. */
  const hold = (s: Session, res: http.ServerResponse): void => {
    s.busy++;
    s.lastSeen = Date.now();
    res.once("close", () => {
      s.busy--;
      s.lastSeen = Date.now();
    });
  };

  /** The principal a request's bearer token names, or the challenge to answer with (see the module comment). */
  async function authenticate(req: http.IncomingMessage, token: string | undefined): Promise<Principal | { challenge: string }> {
    if (token && (isStaticToken(token) || !opts.oauth)) {
      const p = await app.auth.principal(token);
      if (p) return p;
      return { challenge: 'Bearer realm="sigil", error="invalid_token", error_description="The token is unknown or revoked."' };
    }
    if (!opts.oauth) return { challenge: 'Bearer realm="sigil"' };
    if (!token) return { challenge: opts.oauth.challenge(req) };
    const r = await opts.oauth.authenticate(req, token);
    return "kind" in r ? r : { challenge: opts.oauth.challenge(req, r.error) };
  }

  async function handleMcp(req: http.IncomingMessage, res: http.ServerResponse): Promise<void> {
    const auth = req.headers.authorization;
    const token = auth && /^Bearer\s+/i.test(auth) ? auth.replace(/^Bearer\s+/i, "").trim() : undefined;
    const authenticated = await authenticate(req, token);
    if ("challenge" in authenticated) {
      // A credential that no longer authenticates closes the sessions it opened.
      if (token && isStaticToken(token)) {
        const h = app.auth.hash(token);
        closeWhere((s) => s.principal.tokenHash === h && !(s.principal.kind === "agent" && s.principal.grantId));
      }
      req.resume();
      return jsonError(res, 401, -32001, "Unauthorized: a valid bearer token is required.", { "www-authenticate": authenticated.challenge });
    }
    const principal = authenticated;

    let body: unknown;
    if (req.method === "POST") {
      const raw = await readBody(req, maxBody);
      if (raw === "aborted") return;
      if (raw === "too_large") return jsonError(res, 413, -32600, `Request body too large (the limit is ${maxBody} bytes).`, { connection: "close" });
      try {
        body = JSON.parse(raw.toString("utf8"));
      } catch {
        return jsonError(res, 400, -32700, "Parse error: the body is not valid JSON.");
      }
    }
    const sid = req.headers["mcp-session-id"];
    if (typeof sid === "string") {
      const s = sessions.get(sid);
      if (!s || !samePrincipal(s.principal, principal)) return jsonError(res, 404, -32001, "Session not found.");
      hold(s, res);
      await s.transport.handleRequest(req, res, body);
      return;
    }
    if (req.method !== "POST" || !isInitializeRequest(body)) {
      return jsonError(res, 400, -32000, "Bad Request: no session; start one with an initialize request.");
    }
    const owner = ownerOf(principal);
    if (!makeRoom(owner)) {
      const who = principal.kind === "agent" ? "this identity" : "this admin token";
      return jsonError(
        res,
        429,
        -32000,
        `Too many sessions: ${who} already has ${perIdentity} sessions, all in use (SIGIL_MAX_SESSIONS_PER_IDENTITY). Close one (DELETE /mcp) or retry later.`,
        { "retry-after": "5" },
      );
    }
    if (principal.kind === "agent" && agentSessions + countOpening() >= MAX_AGENT_SESSIONS) {
      return jsonError(res, 503, -32000, "Too many agent sessions on this server; try again later.", { "retry-after": "5" });
    }
    opening.set(owner, (opening.get(owner) ?? 0) + 1);
    const sessionId = "s_" + randomUUID();
    let registered = false;
    try {
      const server = await createSessionServer(principal, { app, sessionId });
      const session: Session = { id: sessionId, transport: undefined as never, principal, owner, lastSeen: Date.now(), busy: 0, close: () => server.close() };
      const transport = new StreamableHTTPServerTransport({
        sessionIdGenerator: () => sessionId,
        onsessioninitialized: (id) => {
          if (id !== sessionId) return;
          opening.set(owner, (opening.get(owner) ?? 1) - 1);
          registered = true;
          sessions.set(id, session);
          let set = byOwner.get(owner);
          if (!set) byOwner.set(owner, (set = new Set()));
          set.add(id);
          if (principal.kind === "agent") agentSessions++;
        },
        onsessionclosed: () => forget(session),
      });
      session.transport = transport;
      transport.onclose = () => forget(session);
      await server.connect(transport);
      hold(session, res);
      await transport.handleRequest(req, res, body);
    } finally {
      if (!registered) opening.set(owner, (opening.get(owner) ?? 1) - 1);
      if ((opening.get(owner) ?? 0) <= 0) opening.delete(owner);
    }
  }
  const countOpening = (): number => {
    let n = 0;
    for (const [k, v] of opening) if (k.startsWith("agent:")) n += v;
    return n;
  };

  // The web console, behind the same Host and Origin checks; its changes close revoked or rotated sessions at once.
  const consoleSite = opts.console === false ? undefined : consoleFor(app, { afterChange: () => void checkCredentials() });

  const server = http.createServer(
    {
      // Slow senders are cut off: headers and body must arrive in time. A response stream (SSE)
      // is not a request still arriving, so it is not limited by this.
      requestTimeout,
      headersTimeout: Math.min(HEADERS_TIMEOUT_MS, requestTimeout),
      connectionsCheckingInterval: Math.max(50, Math.min(1000, Math.floor(requestTimeout / 10))),
      // An idle keep-alive connection is left for the client to close (clients time out after the
      // advertised value less a margin): a server that closes first races the client's next
      // request on that connection, which then fails with "other side closed".
      keepAliveTimeout: 65_000,
    },
    (req, res) => {
      void (async () => {
        try {
          if (!hostAllowed(req.headers.host)) return jsonError(res, 403, -32000, "Forbidden: Host not allowed.");
          if (!originAllowed(req.headers.origin)) return jsonError(res, 403, -32000, "Forbidden: Origin not allowed.");
          const url = new URL(req.url ?? "/", "http://localhost");
          if (url.pathname === "/mcp") {
            await handleMcp(req, res);
            return;
          }
          if (consoleSite && (url.pathname === "/console" || url.pathname.startsWith("/console/"))) {
            await consoleSite.handle(req, res, url);
            return;
          }
          if (opts.oauth?.handles(url.pathname)) {
            await opts.oauth.handle(req, res, url);
            return;
          }
          if (req.method === "GET" && url.pathname === "/healthz") {
            res.writeHead(200, { "content-type": "application/json" });
            res.end('{"ok":true}');
            return;
          }
          if (opts.webhooks && (await opts.webhooks(req, url, res))) return;
          if (req.method === "GET" && opts.publicRoutes && (await opts.publicRoutes(req, url, res))) return;
          jsonError(res, 404, -32601, "Not found.");
        } catch (err) {
          const ref = refId();
          logInternal(ref, "http request", err);
          // The store (e.g. PostgreSQL) is unreachable: say so, and that a retry later may work.
          if (err instanceof StoreError && err.code === "unavailable") {
            return jsonError(res, 503, -32603, `Service unavailable: the store cannot be reached; nothing was done, retry later (${ref}).`, { "retry-after": "2" });
          }
          jsonError(res, 500, -32603, `Internal error (${ref}).`);
        }
      })();
    },
  );
  // An admin request may have revoked an identity or rotated a token: check the sessions at once.
  server.on("request", (req: http.IncomingMessage, res: http.ServerResponse) => {
    res.once("finish", () => {
      if (sessions.size === 0) return;
      const auth = req.headers.authorization ?? "";
      if (/^Bearer\s+sigil_admin_/i.test(auth) && req.method === "POST") void checkCredentials();
      else if (req.method === "POST" && (req.url === "/revoke" || req.url === "/token" || req.url === "/oauth/consent")) void checkCredentials(); // a grant may have ended
    });
  });
  // Sessions whose client went away without DELETE are closed after a period of silence; revoked
  // or rotated credentials (possibly changed by another process) are noticed within a few seconds.
  const idleMs = opts.sessionIdleMs ?? 30 * 60_000;
  const idleSweeper = setInterval(() => {
    const cutoff = Date.now() - idleMs;
    closeWhere((s) => s.lastSeen < cutoff);
  }, Math.min(60_000, idleMs)).unref();
  const credentialSweeper = setInterval(() => {
    if (sessions.size > 0) void checkCredentials();
  }, opts.credentialCheckMs ?? 3000).unref();
  await new Promise<void>((resolve, reject) => {
    server.once("error", reject);
    server.listen(opts.port, opts.host, () => resolve());
  });
  port = (server.address() as AddressInfo).port;
  const hostForUrl = opts.host.includes(":") ? `[${opts.host}]` : opts.host;
  const close = async (): Promise<void> => {
    clearInterval(idleSweeper);
    clearInterval(credentialSweeper);
    await drainInFlight(1500);
    for (const s of [...sessions.values()]) {
      forget(s);
      await s.close().catch(() => {});
    }
    server.closeAllConnections();
    await new Promise<void>((r) => server.close(() => r()));
  };
  return { server, url: `http://${hostForUrl}:${port}/mcp`, close };
}
