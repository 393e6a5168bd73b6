/**
 * Test helpers shared by every suite: throwaway homes, the built CLI, and real MCP clients over
 * stdio and Streamable HTTP. Nothing here fakes sigil: tests drive the built `dist/cli.js`.
 */
import { spawn, spawnSync, type ChildProcess } from "node:child_process";
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import os from "node:os";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { Client } from "@modelcontextprotocol/sdk/client/index.js";
import { StdioClientTransport, getDefaultEnvironment } from "@modelcontextprotocol/sdk/client/stdio.js";
import { StreamableHTTPClientTransport } from "@modelcontextprotocol/sdk/client/streamableHttp.js";
import { type Backend, freshDatabaseUrlSync } from "./backends.js";
import type { App } from "../../src/app.js";

export const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "../..");
export const CLI = path.join(ROOT, "dist/cli.js");

export interface Home {
  dir: string;
  env: NodeJS.ProcessEnv;
  adminToken: string;
  /** Runs the built CLI synchronously with this home. */
  cli(args: string[], opts?: { input?: string; env?: NodeJS.ProcessEnv }): { code: number; stdout: string; stderr: string };
  /** Runs the CLI with --json and parses stdout; throws with stderr on a non-zero exit. */
  json<T = any>(args: string[], opts?: { input?: string; env?: NodeJS.ProcessEnv }): T;
  createIdentity(opts: { name?: string; channels: string; policy?: unknown; email?: string; phone?: string; tenant?: string }): Identity;
  /** `sigil tenant create --name N --json`. */
  createTenant(name?: string): Tenant;
  /** `sigil approver add` (tenant `default` unless given): the approver's id and token. */
  addApprover(opts?: { name?: string; tenant?: string; email?: string }): Approver;
  /** Which store backend holds this home's data ("postgres": a fresh database of its own). */
  store: Backend;
  /** The identity's audit entries, parsed, whatever the backend (via `sigil audit export`). */
  auditLog(id: string): any[];
  /** Writes the embedded card processor's merchants.json (what `sigil card merchant add` keeps), without a CLI run. */
  merchants(categories: Record<string, string>): void;
  cleanup(): void;
}

export interface Approver {
  id: string;
  name: string;
  tenantId: string;
  token: string;
  keyId: string;
  publicKey: string;
}

export interface Identity {
  id: string;
  name: string;
  token: string;
  keyId: string;
  publicKey: string;
}

export interface Tenant {
  id: string;
  name: string;
  adminToken: string;
  keyId: string;
  publicKey: string;
}

const homes: Home[] = [];

export function makeHome(extraEnv: NodeJS.ProcessEnv = {}, opts: { store?: Backend } = {}): Home {
  const dir = mkdtempSync(path.join(os.tmpdir(), "sigil-test-"));
  const store: Backend = opts.store ?? (extraEnv.SIGIL_STORE_URL ? "postgres" : "file");
  // Refusal throttling (60 a minute by default) is off for tests that hammer one identity with
  // hostile input to check something else; test/throttle.test.ts runs with the default.
  const env: NodeJS.ProcessEnv = { ...process.env, SIGIL_HOME: path.join(dir, "home"), SIGIL_REFUSALS_PER_MINUTE: "1000000", ...extraEnv };
  if (store === "file") delete env.SIGIL_STORE_URL; // never a stray URL from the caller's shell
  else if (!extraEnv.SIGIL_STORE_URL) env.SIGIL_STORE_URL = freshDatabaseUrlSync();
  delete env.SIGIL_TOKEN;
  delete env.SIGIL_TOKEN_FILE;
  const cli: Home["cli"] = (args, opts = {}) => {
    const r = spawnSync(process.execPath, [CLI, ...args], { env: { ...env, ...opts.env }, input: opts.input ?? "", encoding: "utf8" });
    return { code: r.status ?? -1, stdout: r.stdout, stderr: r.stderr };
  };
  const json: Home["json"] = (args, opts) => {
    const r = cli([...args, "--json"], opts);
    if (r.code !== 0) throw new Error(`sigil ${args.join(" ")} exited ${r.code}: ${r.stderr}`);
    return JSON.parse(r.stdout);
  };
  const init = json<{ adminToken: string }>(["init"]);
  const home: Home = {
    dir,
    env,
    adminToken: init.adminToken,
    cli,
    json,
    store,
    auditLog: (id) =>
      store === "file" // the file the spec names, read directly
        ? readFileSync(path.join(env.SIGIL_HOME!, "audit", `${id}.jsonl`), "utf8").trim().split("\n").map((l) => JSON.parse(l))
        : json<{ entries: any[] }>(["audit", "export", id]).entries,
    createIdentity(o) {
      const args = ["identity", "create", "--name", o.name ?? "agent", "--channels", o.channels];
      if (o.policy !== undefined) args.push("--policy", JSON.stringify(o.policy));
      if (o.email) args.push("--email", o.email);
      // SMS and calls need the identity's own number (creation refuses them without one).
      const phone = o.phone ?? (/\b(sms|voice)\b/.test(o.channels) ? "+14155550100" : undefined);
      if (phone) args.push("--phone", phone);
      if (o.tenant) args.push("--tenant", o.tenant);
      return json<Identity>(args);
    },
    createTenant: (name = "tenant") => json<Tenant>(["tenant", "create", "--name", name]),
    addApprover(o = {}) {
      const args = ["approver", "add", "--name", o.name ?? "Approver", "--tenant", o.tenant ?? "default"];
      if (o.email) args.push("--email", o.email);
      return json<Approver>(args);
    },
    merchants(categories) {
      mkdirSync(path.join(env.SIGIL_HOME!, "card"), { recursive: true, mode: 0o700 });
      writeFileSync(path.join(env.SIGIL_HOME!, "card", "merchants.json"), JSON.stringify(categories), { mode: 0o600 });
    },
    cleanup() {
      rmSync(dir, { recursive: true, force: true });
    },
  };
  homes.push(home);
  return home;
}

/** Opens the home in this process (a new instance, as a next `sigil` process would be), runs `fn`, closes. */
export async function withApp<T>(home: Home, fn: (app: App) => Promise<T>): Promise<T> {
  const { openApp } = await import("../../src/app.js");
  const app = await openApp({ home: home.env.SIGIL_HOME!, env: home.env });
  try {
    return await fn(app);
  } finally {
    await app.close();
  }
}

export function cleanupHomes(): void {
  for (const h of homes.splice(0)) h.cleanup();
}

/** An SDK Client over stdio against `sigil serve` with the given token. */
export async function stdioClient(home: Home, token: string, opts: { env?: NodeJS.ProcessEnv; capabilities?: Record<string, unknown> } = {}): Promise<{ client: Client; transport: StdioClientTransport; stderr: () => string }> {
  const transport = new StdioClientTransport({
    command: process.execPath,
    args: [CLI, "serve"],
    env: { ...getDefaultEnvironment(), ...pick(home.env), SIGIL_TOKEN: token, ...opts.env } as Record<string, string>,
    stderr: "pipe",
  });
  let err = "";
  transport.stderr?.on("data", (d: Buffer) => (err += d.toString()));
  const client = new Client({ name: "sigil-test", version: "1.0.0" }, { capabilities: opts.capabilities ?? {} });
  await client.connect(transport);
  return { client, transport, stderr: () => err };
}

function pick(env: NodeJS.ProcessEnv): Record<string, string> {
  const out: Record<string, string> = {};
  for (const [k, v] of Object.entries(env)) if (v !== undefined && (k.startsWith("SIGIL_") || k.startsWith("TWILIO_"))) out[k] = v;
  return out;
}

export interface HttpServer {
  url: string;
  port: number;
  proc: ChildProcess;
  /** Everything the server wrote on stderr so far. */
  output(): string;
  stop(): Promise<void>;
}

/** Starts `sigil serve --http` on a free loopback port and waits until it listens. */
export async function startHttpServer(home: Home, env: NodeJS.ProcessEnv = {}, port = 0): Promise<HttpServer> {
  const proc = spawn(process.execPath, [CLI, "serve", "--http", "--port", String(port)], { env: { ...home.env, ...env }, stdio: ["ignore", "pipe", "pipe"] });
  let buf = "";
  const url = await new Promise<string>((resolve, reject) => {
    const t = setTimeout(() => reject(new Error(`server did not start: ${buf}`)), 60_000);
    proc.stderr!.on("data", (d: Buffer) => {
      buf += d.toString();
      const m = /serving Streamable HTTP at (\S+)/.exec(buf);
      if (m) {
        clearTimeout(t);
        resolve(m[1]!);
      }
    });
    proc.on("exit", (code) => reject(new Error(`server exited ${code}: ${buf}`)));
  });
  return {
    url,
    port: Number(new URL(url).port),
    proc,
    output: () => buf,
    stop: () =>
      new Promise<void>((resolve) => {
        if (proc.exitCode !== null || proc.signalCode !== null) return resolve(); // exited, or killed by a signal
        const force = setTimeout(() => proc.kill("SIGKILL"), 10_000);
        proc.once("exit", () => {
          clearTimeout(force);
          resolve();
        });
        proc.kill("SIGTERM");
      }),
  };
}

export async function httpClient(url: string, token: string, capabilities: Record<string, unknown> = {}): Promise<{ client: Client; transport: StreamableHTTPClientTransport }> {
  const transport = new StreamableHTTPClientTransport(new URL(url), { requestInit: { headers: { Authorization: `Bearer ${token}` } } });
  const client = new Client({ name: "sigil-test", version: "1.0.0" }, { capabilities });
  await client.connect(transport);
  return { client, transport };
}

/** A listed tool's annotations as a client reads them: MCP's defaults for the hints, then what is listed. */
export function hints(annotations: Record<string, unknown> | undefined): Record<string, unknown> {
  return { readOnlyHint: false, destructiveHint: true, idempotentHint: false, openWorldHint: true, ...annotations };
}

/** The text of a tool result's first content item. */
export function text(result: any): string {
  return result?.content?.[0]?.text ?? "";
}

export { Client, spawnSync };

/** An MCP `initialize` request body. */
export const INITIALIZE = {
  jsonrpc: "2.0",
  id: 1,
  method: "initialize",
  params: { protocolVersion: "2025-06-18", capabilities: {}, clientInfo: { name: "raw", version: "1" } },
};

/** One raw JSON-RPC POST to a Streamable HTTP endpoint (the response read to its end). */
export async function rawPost(url: string, token: string, body: unknown, sessionId?: string): Promise<{ status: number; sessionId?: string; text: string }> {
  const r = await fetch(url, {
    method: "POST",
    headers: {
      "content-type": "application/json",
      accept: "application/json, text/event-stream",
      authorization: `Bearer ${token}`,
      ...(sessionId ? { "mcp-session-id": sessionId, "mcp-protocol-version": "2025-06-18" } : {}),
    },
    body: JSON.stringify(body),
  });
  return { status: r.status, sessionId: r.headers.get("mcp-session-id") ?? undefined, text: await r.text() };
}

/**
 * Opens a session the raw way and holds its standalone SSE stream (GET) open. `ended` resolves when
 * the server closes the stream (the session was closed).
 */
export async function openHeldSession(url: string, token: string): Promise<{ sessionId: string; ended: Promise<void>; abort: () => void }> {
  const init = await rawPost(url, token, INITIALIZE);
  if (init.status !== 200 || !init.sessionId) throw new Error(`initialize: ${init.status} ${init.text}`);
  const headers = { authorization: `Bearer ${token}`, "mcp-session-id": init.sessionId, "mcp-protocol-version": "2025-06-18" };
  await fetch(url, { method: "POST", headers: { ...headers, "content-type": "application/json", accept: "application/json, text/event-stream" }, body: JSON.stringify({ jsonrpc: "2.0", method: "notifications/initialized" }) }).then((r) => r.text());
  const ac = new AbortController();
  const res = await fetch(url, { method: "GET", headers: { ...headers, accept: "text/event-stream" }, signal: ac.signal });
  if (res.status !== 200 || !res.body) throw new Error(`GET stream: ${res.status}`);
  const reader = res.body.getReader();
  const ended = (async () => {
    try {
      for (;;) if ((await reader.read()).done) return;
    } catch {
      /* aborted or reset: the stream is over either way */
    }
  })();
  return { sessionId: init.sessionId, ended, abort: () => ac.abort() };
}

/** Resolves true when `p` settles within `ms`, false otherwise. */
export function settlesWithin(p: Promise<unknown>, ms: number): Promise<boolean> {
  return Promise.race([p.then(() => true, () => true), new Promise<boolean>((r) => setTimeout(() => r(false), ms).unref())]);
}

/**
 * CPU time (user + system, ms) a process's main thread — the event loop, where JavaScript runs —
 * has used so far, from /proc; undefined where there is no /proc. Bounds on "no pathological
 * slowness" use it instead of wall time, which a loaded machine (other processes, slow fsyncs)
 * stretches without the process doing any more work. GC helpers and the I/O thread pool are not
 * counted.
 */
export function cpuMs(pid: number | undefined | null): number | undefined {
  if (!pid) return undefined;
  try {
    const stat = readFileSync(`/proc/${pid}/task/${pid}/stat`, "utf8");
    const fields = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
    return ((Number(fields[11]) + Number(fields[12])) * 1000) / 100; // utime, stime in clock ticks (USER_HZ = 100)
  } catch {
    return undefined;
  }
}

/** Runs the built CLI as a child process without blocking the test's event loop (for races and waits). */
export function cliAsync(home: Home, args: string[], env: NodeJS.ProcessEnv = {}): Promise<{ code: number; stdout: string; stderr: string }> {
  return new Promise((resolve, reject) => {
    const p = spawn(process.execPath, [CLI, ...args], { env: { ...home.env, ...env }, stdio: ["ignore", "pipe", "pipe"] });
    let stdout = "";
    let stderr = "";
    p.stdout!.on("data", (d: Buffer) => (stdout += d.toString()));
    p.stderr!.on("data", (d: Buffer) => (stderr += d.toString()));
    p.on("error", reject);
    p.on("close", (code) => resolve({ code: code ?? -1, stdout, stderr }));
  });
}

/** Polls `probe` until it returns a value other than undefined, or fails after `ms`. */
export async function until<T>(probe: () => Promise<T | undefined> | T | undefined, ms = 30_000, what = "the condition"): Promise<T> {
  const deadline = Date.now() + ms;
  for (;;) {
    const v = await probe();
    if (v !== undefined) return v;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 100));
  }
}
