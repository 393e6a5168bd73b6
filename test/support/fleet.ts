/**
 * Several `sigil serve` processes on one home, for the crash, scale and leak suites: each is a real
 * SDK client over stdio whose server process can be killed with SIGKILL at any moment, and a seeded
 * random source so a failing run can be repeated exactly.
 */
import { readFileSync, readdirSync, existsSync } from "node:fs";
import path from "node:path";
import type { Client } from "@modelcontextprotocol/sdk/client/index.js";
import type { StdioClientTransport } from "@modelcontextprotocol/sdk/client/stdio.js";
import { type Home, stdioClient } from "./home.js";

/** mulberry32: small, fast, and the same sequence for the same seed everywhere. */
export function seeded(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/** The seed from `name` in the environment, else a fresh one; printed so a failure can be replayed. */
export function seedFrom(name: string, label: string): number {
  const fromEnv = process.env[name];
  const seed = fromEnv && /^\d+$/.test(fromEnv) ? Number(fromEnv) : Math.floor(Math.random() * 2 ** 31);
  process.stderr.write(`[${label}] seed ${seed} (replay with ${name}=${seed})\n`);
  return seed;
}

export interface Server {
  client: Client;
  transport: StdioClientTransport;
  pid: number;
  alive: boolean;
  exited: Promise<void>;
  stderr(): string;
  /** SIGKILL, then wait for the process to be gone (its locks are released by the kernel then). */
  kill(): Promise<void>;
  /** A graceful end: stdin closed, in-flight calls recorded, exit. */
  close(): Promise<void>;
}

export async function startServer(home: Home, token: string, env: NodeJS.ProcessEnv = {}): Promise<Server> {
  const { client, transport, stderr } = await stdioClient(home, token, { env });
  const pid = transport.pid!;
  let markExited!: () => void;
  const exited = new Promise<void>((r) => (markExited = r));
  const server: Server = {
    client,
    transport,
    pid,
    alive: true,
    exited,
    stderr,
    async kill() {
      server.alive = false;
      try {
        process.kill(pid, "SIGKILL");
      } catch {
        /* already gone */
      }
      await exited;
    },
    async close() {
      server.alive = false;
      await client.close().catch(() => undefined);
      await exited;
    },
  };
  client.onclose = () => {
    server.alive = false;
    markExited();
  };
  return server;
}

/** Lines of a JSONL file as objects (a missing file is empty). */
export function jsonl(file: string): any[] {
  if (!existsSync(file)) return [];
  return readFileSync(file, "utf8")
    .split("\n")
    .filter((l) => l.trim() !== "")
    .map((l) => JSON.parse(l));
}

export function auditOf(home: Home, identityId: string): any[] {
  return jsonl(path.join(home.env.SIGIL_HOME!, "audit", `${identityId}.jsonl`));
}

export function ledgerOf(home: Home, identityId: string): any[] {
  return jsonl(path.join(home.env.SIGIL_HOME!, "card", `${identityId}.jsonl`));
}

/** The outbox's SMS/call records (`.json` files), parsed. */
export function outboxRecords(home: Home): any[] {
  const dir = path.join(home.env.SIGIL_HOME!, "outbox");
  if (!existsSync(dir)) return [];
  return readdirSync(dir)
    .filter((f) => f.endsWith(".json"))
    .map((f) => JSON.parse(readFileSync(path.join(dir, f), "utf8")));
}

/** Every intent has exactly one result; returns intent seq → its result entry. */
export function resultsByIntent(log: any[]): Map<number, any> {
  const out = new Map<number, any>();
  for (const e of log) {
    if (e.phase !== "result") continue;
    if (out.has(e.intent)) throw new Error(`intent ${e.intent} has two results (${out.get(e.intent).seq} and ${e.seq})`);
    out.set(e.intent, e);
  }
  return out;
}
