/**
 * The audit entry format, shared by the writer and every verifier.
 *
 * An entry is a JSON object. Its hash is RFC 6962 leaf hashing over the RFC 8785 (JCS) canonical
 * form of the entry without `hash`, `sig` and `sigNew`: SHA-256(0x00 || JCS(body)), hex. The
 * signature is Ed25519 over a domain-separated statement of that hash, so it can never be replayed
 * as a signature over anything else the same key signs (HTTP requests, checkpoints, emails).
 * A key rotation entry is signed by the old key (`sig`) and the new key (`sigNew`).
 */
import { sha256hex } from "../crypto/core.js";
import { jcs } from "../util/jcs.js";

export const ENTRY_VERSION = 1;
export const ZERO_HASH = "0".repeat(64);
export const AUDIT_SIGNING_PREFIX = "sigil-audit-entry-v1\n";

export type Phase = "intent" | "result" | "call" | "event";

/** What a writer decides about an entry; the chain adds its place, time and signature. */
export interface EntryFields {
  tool: string;
  phase: Phase;
  decision: string;
  reason?: string;
  session?: string;
  args?: Record<string, unknown>;
  result?: Record<string, unknown>;
  providerId?: string;
  intent?: number;
  idem?: { key: string; argsHash: string };
  amountCents?: number;
  policyVersion?: number;
  [extra: string]: unknown;
}

export interface AuditEntry extends EntryFields {
  v: number;
  seq: number;
  ts: string;
  identity: string;
  keyId: string;
  prev: string;
  hash: string;
  sig: string;
}

export type EntryBody = Omit<AuditEntry, "hash" | "sig">;

const SIG_FIELDS = new Set(["hash", "sig", "sigNew"]);

export function canonicalBody(entry: Record<string, unknown>): string {
  const body: Record<string, unknown> = {};
  for (const [k, v] of Object.entries(entry)) if (!SIG_FIELDS.has(k) && v !== undefined) body[k] = v;
  return jcs(body);
}

export function entryHash(entry: Record<string, unknown>): string {
  return sha256hex(Buffer.concat([Buffer.from([0]), Buffer.from(canonicalBody(entry), "utf8")]));
}

export function signingStatement(hash: string): string {
  return AUDIT_SIGNING_PREFIX + hash;
}
