/**
 * A worker thread of the parallel audit verifier (see verify.ts): for a slice of a log it does the
 * per-entry work that does not depend on the rest of the chain — parse, recompute the hash over the
 * canonical form, check the Ed25519 signature(s) against the published key the entry names — and
 * sends the results back. Whether each entry is in its place, and whether the key it names was the
 * active one at that point, is decided by the sequential pass in verify.ts, which treats these
 * results exactly as if it had computed them itself.
 */
import { parentPort } from "node:worker_threads";
import { fromB64, verifySignature } from "../crypto/core.js";
import { type AuditEntry, entryHash, signingStatement } from "./entry.js";

export interface SliceRequest {
  id: number;
  /** The slice's entries: log lines, or entries already parsed (a bundle). */
  items: Array<string | AuditEntry>;
  /** keyId → base64 public key: the identity's published keys. */
  keys: Record<string, string>;
}

/** Per entry: 1 valid, 0 invalid, -1 not checked here (no published key, no signature, no hash). */
export interface SliceResult {
  id: number;
  hashes: Array<string | null>;
  sig: Int8Array;
  sigNew: Int8Array;
}

export function checkSlice(req: SliceRequest): SliceResult {
  const keys = new Map<string, Uint8Array>();
  for (const [k, v] of Object.entries(req.keys)) keys.set(k, fromB64(v));
  const n = req.items.length;
  const out: SliceResult = { id: req.id, hashes: new Array(n).fill(null), sig: new Int8Array(n).fill(-1), sigNew: new Int8Array(n).fill(-1) };
  for (let i = 0; i < n; i++) {
    const raw = req.items[i];
    let e: AuditEntry;
    try {
      e = typeof raw === "string" ? (JSON.parse(raw) as AuditEntry) : (raw as AuditEntry);
    } catch {
      continue;
    }
    if (typeof e !== "object" || e === null || Array.isArray(e)) continue;
    let hash: string;
    try {
      hash = entryHash(e as unknown as Record<string, unknown>);
    } catch {
      continue;
    }
    out.hashes[i] = hash;
    const statement = signingStatement(hash);
    const pk = typeof e.keyId === "string" ? keys.get(e.keyId) : undefined;
    if (pk && typeof e.sig === "string") out.sig[i] = verifySignature(pk, statement, fromB64(e.sig)) ? 1 : 0;
    if (typeof e.newPublicKey === "string" && typeof e.sigNew === "string") {
      out.sigNew[i] = verifySignature(fromB64(e.newPublicKey), statement, fromB64(e.sigNew)) ? 1 : 0;
    }
  }
  return out;
}

parentPort?.on("message", (req: SliceRequest) => {
  const res = checkSlice(req);
  parentPort!.postMessage(res, [res.sig.buffer as ArrayBuffer, res.sigNew.buffer as ArrayBuffer]);
});
