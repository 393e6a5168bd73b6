/**
 * Offline verification of an identity's audit log: a streaming pass that checks, for every entry,
 * its place (gap-free `seq`, `prev` linking to the previous entry's hash), its content (the hash
 * recomputed over the canonical form), and its signature by the key that was active at that point
 * of the chain (the first key, then each key a signed rotation entry hands over to). It needs only
 * the public keys, so a bundle exported with `sigil audit export` verifies with no home at all.
 */
import { fromB64, keyThumbprint, verifySignature } from "../crypto.js";
import { type AuditEntry, ZERO_HASH, entryHash, signingStatement } from "./entry.js";

export interface PublicKeyInfo {
  keyId: string;
  publicKey: string; // base64
  notBefore?: string;
  notAfter?: string;
  status?: string;
}

export interface VerifyResult {
  id: string;
  entries: number;
  ok: boolean;
  firstBadSeq?: number;
  error?: string;
  head?: string;
  /** Intents with no recorded result: actions whose outcome is unknown. */
  unresolvedIntents?: number[];
}

export async function verifyChain(
  identityId: string,
  lines: AsyncIterable<string> | Iterable<string | AuditEntry>,
  keys: PublicKeyInfo[],
): Promise<VerifyResult> {
  const known = new Map<string, Uint8Array>();
  for (const k of keys) {
    const pk = fromB64(k.publicKey);
    if (keyThumbprint(pk) !== k.keyId) {
      return { id: identityId, entries: 0, ok: false, firstBadSeq: 1, error: `key ${k.keyId} does not match its public key` };
    }
    known.set(k.keyId, pk);
  }
  let expected = 1;
  let prev = ZERO_HASH;
  let active: string | undefined;
  const open = new Set<number>();
  const bad = (error: string): VerifyResult => ({ id: identityId, entries: expected - 1, ok: false, firstBadSeq: expected, error });

  for await (const raw of lines as AsyncIterable<string | AuditEntry>) {
    let e: AuditEntry;
    if (typeof raw === "string") {
      try {
        e = JSON.parse(raw) as AuditEntry;
      } catch {
        return bad(`entry ${expected} is not valid JSON (a torn or edited line)`);
      }
    } else e = raw;
    if (typeof e !== "object" || e === null || Array.isArray(e)) return bad(`entry ${expected} is not a JSON object`);
    if (e.seq !== expected) {
      if (typeof e.seq === "number" && e.seq < expected) return bad(`found seq ${e.seq} where ${expected} was expected (a duplicated or reordered entry)`);
      return bad(`found seq ${String(e.seq)} where ${expected} was expected (entries missing, inserted or reordered)`);
    }
    if (e.identity !== identityId) return bad(`entry ${expected} belongs to another identity`);
    if (e.prev !== prev) return bad(`entry ${expected} does not link to the previous entry (inserted, deleted or reordered)`);
    let hash: string;
    try {
      hash = entryHash(e as unknown as Record<string, unknown>);
    } catch {
      return bad(`entry ${expected} cannot be canonicalised`);
    }
    if (hash !== e.hash) return bad(`entry ${expected} does not match its hash (its content was changed)`);
    if (expected === 1) active = e.keyId;
    if (e.keyId !== active) return bad(`entry ${expected} is signed by key ${String(e.keyId)} but key ${active} was active`);
    const pk = known.get(active!);
    if (!pk) return bad(`entry ${expected} is signed by key ${active}, which is not among the identity's published keys`);
    const statement = signingStatement(hash);
    if (typeof e.sig !== "string" || !verifySignature(pk, statement, fromB64(e.sig))) {
      return bad(`entry ${expected} has an invalid signature`);
    }
    if (typeof e.newKeyId === "string") {
      const newPk = typeof e.newPublicKey === "string" ? fromB64(e.newPublicKey) : undefined;
      if (!newPk || keyThumbprint(newPk) !== e.newKeyId) return bad(`key rotation entry ${expected} names a key that does not match its public key`);
      const listed = known.get(e.newKeyId);
      if (listed && !Buffer.from(listed).equals(newPk)) return bad(`key rotation entry ${expected} disagrees with the published key ${e.newKeyId}`);
      if (typeof e.sigNew !== "string" || !verifySignature(newPk, statement, fromB64(e.sigNew))) {
        return bad(`key rotation entry ${expected} is not signed by the new key`);
      }
      known.set(e.newKeyId, newPk);
      active = e.newKeyId;
    }
    if (e.phase === "intent" && e.decision === "allow") open.add(e.seq);
    if (e.phase === "result" && typeof e.intent === "number") open.delete(e.intent);
    prev = hash;
    expected++;
  }
  const result: VerifyResult = { id: identityId, entries: expected - 1, ok: true, head: prev };
  if (open.size) result.unresolvedIntents = [...open];
  return result;
}
