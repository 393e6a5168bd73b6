/**
 * Helpers for the outbound-channel suites: reading an identity's audit log and the outbox as
 * they are on disk, and the home's keyed audit hash (computed by opening the home in-process,
 * exactly as the server does).
 */
import { existsSync, readFileSync, readdirSync } from "node:fs";
import path from "node:path";
import type { Home } from "./home.js";

export interface Entry {
  seq: number;
  ts: string;
  tool: string;
  phase: string;
  decision: string;
  reason?: string;
  args?: Record<string, any>;
  result?: Record<string, any>;
  providerId?: string;
  intent?: number;
  policyVersion?: number;
  idem?: { key: string; argsHash: string };
  [k: string]: unknown;
}

export function auditText(home: Home, identityId: string): string {
  return readFileSync(path.join(home.env.SIGIL_HOME!, "audit", `${identityId}.jsonl`), "utf8");
}

export function auditEntries(home: Home, identityId: string): Entry[] {
  return auditText(home, identityId)
    .trim()
    .split("\n")
    .map((l) => JSON.parse(l) as Entry);
}

/** Entries of one tool, in order. */
export function toolEntries(home: Home, identityId: string, tool: string): Entry[] {
  return auditEntries(home, identityId).filter((e) => e.tool === tool);
}

/** Files in $SIGIL_HOME/outbox with the given extension (sorted by name, i.e. by time). */
export function outboxFiles(home: Home, ext: "eml" | "json"): string[] {
  const dir = path.join(home.env.SIGIL_HOME!, "outbox");
  if (!existsSync(dir)) return [];
  return readdirSync(dir)
    .filter((f) => f.endsWith(`.${ext}`))
    .sort()
    .map((f) => path.join(dir, f));
}

/** The home's keyed audit hash function (HMAC with the audit subkey of its master key). */
export async function auditHasher(home: Home): Promise<(v: string) => string> {
  const { openApp } = await import("../../src/app.js");
  const app = await openApp({ home: home.env.SIGIL_HOME!, env: home.env });
  const hash = (v: string) => app.auditHash(v);
  await app.close();
  return hash;
}

/** Polls `cond` every 20 ms for at most `ms`. */
export async function eventually(cond: () => boolean, ms = 5000): Promise<void> {
  const until = Date.now() + ms;
  while (!cond()) {
    if (Date.now() > until) throw new Error("condition not met in time");
    await new Promise((r) => setTimeout(r, 20));
  }
}
