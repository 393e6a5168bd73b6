/**
 * `sigil serve --http`: Streamable HTTP at http://HOST:PORT/mcp for many agents.
 *
 * - Binds 127.0.0.1 by default; checks Host and Origin on every request (DNS rebinding).
 * - Every /mcp request authenticates with `Authorization: Bearer <token>`; no token or a wrong or
 *   revoked one: 401. A session belongs to the credential that opened it: a request for it with
 *   another credential gets the same 404 as an unknown session, and learns nothing.
 * - Bodies over the limit (1 MiB by default) get 413; malformed JSON gets 400. Neither touches any
 *   other session.
 */
import { randomUUID } from "node:crypto";
import http from "node:http";
import type { AddressInfo } from "node:net";
import { StreamableHTTPServerTransport } from "@modelcontextprotocol/sdk/server/streamableHttp.js";
import { isInitializeRequest } from "@modelcontextprotocol/sdk/types.js";
import { logInternal, refId } from "../errors.js";
import { providersFromEnv } from "../providers/index.js";
import type { Sigil } from "../sigil.js";
import { type Principal, authenticate, createSessionServer } from "./factory.js";
import { drainInFlight } from "./inflight.js";
import { StoreError } from "../../store/types.js";

export interface HttpOptions {
  host: string;
  port: number;
  maxBodyBytes?: number;
  /** Extra Host values (host:port) and Origins to accept, e.g. behind a reverse proxy. */
  allowedHosts?: string[];
  allowedOrigins?: string[];
  /** Sessions silent for this long are closed (default 30 minutes). */
  sessionIdleMs?: number;
  /** Extra GET routes (public, no token), e.g. the key directory. */
  publicRoutes?: (req: http.IncomingMessage, url: URL, res: http.ServerResponse) => Promise<boolean>;
}

interface Session {
  transport: StreamableHTTPServerTransport;
  principal: Principal;
  lastSeen: number;
  close: () => Promise<void>;
}

const LOOPBACK = new Set(["127.0.0.1", "localhost", "::1", "[::1]"]);
const MAX_SESSIONS = 10_000;

function samePrincipal(a: Principal, b: Principal): boolean {
  if (a.kind !== b.kind || a.tokenHash !== b.tokenHash) return false;
  return a.kind === "admin" || (b.kind === "agent" && a.identityId === b.identityId);
}

function jsonError(res: http.ServerResponse, status: number, code: number, message: string, headers: Record<string, string> = {}): void {
  if (res.headersSent) return;
  res.writeHead(status, { "content-type": "application/json", ...headers });
  res.end(JSON.stringify({ jsonrpc: "2.0", error: { code, message }, id: null }));
}

async function readBody(req: http.IncomingMessage, limit: number): Promise<Buffer | "too_large"> {
  const declared = Number(req.headers["content-length"] ?? "0");
  if (declared > limit) return "too_large";
  const chunks: Buffer[] = [];
  let size = 0;
  for await (const chunk of req) {
    size += (chunk as Buffer).length;
    if (size > limit) return "too_large";
    chunks.push(chunk as Buffer);
  }
  return Buffer.concat(chunks);
}

export async function serveHttp(sigil: Sigil, opts: HttpOptions): Promise<{ server: http.Server; url: string; close: () => Promise<void> }> {
  const sessions = new Map<string, Session>();
  const providers = providersFromEnv(sigil.env, sigil.outboxDir);
  const maxBody = opts.maxBodyBytes ?? 1024 * 1024;
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

  async function handleMcp(req: http.IncomingMessage, res: http.ServerResponse): Promise<void> {
    const auth = req.headers.authorization;
    const token = auth && /^Bearer\s+/i.test(auth) ? auth.replace(/^Bearer\s+/i, "").trim() : undefined;
    const principal = await authenticate(sigil, token);
    if (!principal) return jsonError(res, 401, -32001, "Unauthorized: a valid bearer token is required.", { "www-authenticate": 'Bearer realm="sigil"' });

    let body: unknown;
    if (req.method === "POST") {
      const raw = await readBody(req, maxBody);
      if (raw === "too_large") return jsonError(res, 413, -32600, "Request body too large.", { connection: "close" });
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
      s.lastSeen = Date.now();
      await s.transport.handleRequest(req, res, body);
      return;
    }
    if (req.method !== "POST" || !isInitializeRequest(body)) {
      return jsonError(res, 400, -32000, "Bad Request: no session; start one with an initialize request.");
    }
    if (sessions.size >= MAX_SESSIONS) return jsonError(res, 503, -32000, "Too many sessions; try again later.");
    const sessionId = "s_" + randomUUID();
    const server = await createSessionServer(principal, { sigil, providers, sessionId });
    const transport = new StreamableHTTPServerTransport({
      sessionIdGenerator: () => sessionId,
      onsessioninitialized: (id) => {
        sessions.set(id, { transport, principal, lastSeen: Date.now(), close: () => server.close() });
      },
      onsessionclosed: (id) => {
        sessions.delete(id);
      },
    });
    transport.onclose = () => {
      sessions.delete(sessionId);
    };
    await server.connect(transport);
    await transport.handleRequest(req, res, body);
  }

  const server = http.createServer((req, res) => {
    void (async () => {
      try {
        if (!hostAllowed(req.headers.host)) return jsonError(res, 403, -32000, "Forbidden: Host not allowed.");
        if (!originAllowed(req.headers.origin)) return jsonError(res, 403, -32000, "Forbidden: Origin not allowed.");
        const url = new URL(req.url ?? "/", "http://localhost");
        if (url.pathname === "/mcp") return await handleMcp(req, res);
        if (req.method === "GET" && url.pathname === "/healthz") {
          res.writeHead(200, { "content-type": "application/json" });
          res.end('{"ok":true}');
          return;
        }
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
  });
  server.requestTimeout = 0; // SSE streams stay open; sessions are bounded instead.
  // Sessions whose client went away without DELETE are closed after a period of silence.
  const idleMs = opts.sessionIdleMs ?? 30 * 60_000;
  const sweeper = setInterval(() => {
    const cutoff = Date.now() - idleMs;
    for (const [id, s] of sessions) {
      if (s.lastSeen < cutoff) {
        sessions.delete(id);
        void s.close().catch(() => {});
      }
    }
  }, Math.min(60_000, idleMs)).unref();
  await new Promise<void>((resolve, reject) => {
    server.once("error", reject);
    server.listen(opts.port, opts.host, () => resolve());
  });
  port = (server.address() as AddressInfo).port;
  const hostForUrl = opts.host.includes(":") ? `[${opts.host}]` : opts.host;
  const close = async (): Promise<void> => {
    clearInterval(sweeper);
    await drainInFlight(1500);
    for (const s of sessions.values()) await s.close().catch(() => {});
    sessions.clear();
    server.closeAllConnections();
    await new Promise<void>((r) => server.close(() => r()));
  };
  return { server, url: `http://${hostForUrl}:${port}/mcp`, close };
}
