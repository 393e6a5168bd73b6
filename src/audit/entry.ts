/**
 * The audit entry format, shared by the writer and every verifier.
 *
 * An entry is a JSON object. Its hash is RFC 6962 leaf hashing over the RFC 8785 (JCS) canonical
 * form of the entry without `hash`, `sig` and `sigNew`: SHA-256(0x00 || JCS(body)), hex. The
 * signature is Ed25519 over a domain-separated statement of that hash, so it can never be replayed
 * as a signature over anything else the same key signs (HTTP requests, checkpoints, emails).
 * A key rotation entry is signed by the old key (`sig`) and the new key (`sigNew`).
 *
 * A log line is exactly the RFC 8785 canonical form of the whole entry (signatures included), so
 * every byte of a line is either covered by the hash or is a signature whose encoding is strict
 * (canonical base64 of 64 bytes): a line reformatted, re-ordered or carrying a repeated key is
 * not an entry.
 */
import { sha256hex } from "../crypto/encoding.js";
import { jcs } from "../util/jcs.js";
import { TENANT_ID_RE } from "../../store/types.js";

export const ENTRY_VERSION = 1;
export const ZERO_HASH = "0".repeat(64);
export const AUDIT_SIGNING_PREFIX = "sigil-audit-entry-v1\n";

/**
 * The entry that must open a chain and carry its first key: an identity's log starts with
 * `identity_created`; a tenant's log (its approvers and their passkeys, src/tenant/log.ts; its id
 * is the tenant id, which no identity id can be) with `tenant_created`, signed by the tenant key.
 */
export function creationTool(chainId: string): "identity_created" | "tenant_created" {
  return TENANT_ID_RE.test(chainId) ? "tenant_created" : "identity_created";
}

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

/**
 * The two canonical forms of an entry, built in one pass over its members: `body` (everything but
 * the hash and the signatures: what the hash covers) and `line` (the whole entry: what a log line
 * must be, byte for byte). JCS orders members by their names' UTF-16 code units, which is what
 * the default string sort does.
 */
export function canonicalForms(entry: Record<string, unknown>): { body: string; line: string } {
  const body: string[] = [];
  const line: string[] = [];
  for (const k of Object.keys(entry).sort()) {
    const v = entry[k];
    if (v === undefined) continue;
    const member = `${JSON.stringify(k)}:${jcs(v)}`;
    line.push(member);
    if (!SIG_FIELDS.has(k)) body.push(member);
  }
  return { body: `{${body.join(",")}}`, line: `{${line.join(",")}}` };
}

/**
 * For the writer: the canonical body of an entry about to be sealed, and `line(entry)`, the
 * canonical line of the sealed entry (the same object plus its hash and signatures), reusing the
 * body's members instead of canonicalising every value a second time. Byte for byte what
 * `canonicalForms` gives for both.
 */
export function sealingForms(body: Record<string, unknown>): { body: string; line(entry: Record<string, unknown>): string } {
  const members = new Map<string, string>();
  const parts: string[] = [];
  for (const k of Object.keys(body).sort()) {
    const v = body[k];
    if (v === undefined || SIG_FIELDS.has(k)) continue;
    const member = `${JSON.stringify(k)}:${jcs(v)}`;
    members.set(k, member);
    parts.push(member);
  }
  return {
    body: `{${parts.join(",")}}`,
    line(entry) {
      const line: string[] = [];
      for (const k of Object.keys(entry).sort()) {
        const v = entry[k];
        if (v === undefined) continue;
        const known = members.get(k);
        line.push(known !== undefined && v === body[k] ? known : `${JSON.stringify(k)}:${jcs(v)}`);
      }
      return `{${line.join(",")}}`;
    },
  };
}

export function canonicalBody(entry: Record<string, unknown>): string {
  return canonicalForms(entry).body;
}

/** The line to write for an entry: its RFC 8785 canonical form. */
export function canonicalLine(entry: AuditEntry | Record<string, unknown>): string {
  return canonicalForms(entry as Record<string, unknown>).line;
}

/** The entry hash of a canonical body (RFC 6962 leaf hash, hex). */
export function bodyHash(body: string): string {
  return sha256hex(Buffer.concat([Buffer.from([0]), Buffer.from(body, "utf8")]));
}

export function entryHash(entry: Record<string, unknown>): string {
  return bodyHash(canonicalBody(entry));
}

export function signingStatement(hash: string): string {
  return AUDIT_SIGNING_PREFIX + hash;
}
