/**
 * A worker thread of the parallel audit verifier (see verify.ts): for a slice of a log it does the
 * per-entry work that does not depend on the rest of the chain (verify-entry.ts: parse, canonical
 * form, hash, the Ed25519 signature(s) under the trusted key the entry names) and sends the results
 * back. Whether each entry is in its place, and whether the key it names was the
 * active one at that point, is decided by the sequential pass in verify.ts, which treats these
 * results exactly as if it had computed them itself.
 */
import { parentPort } from "node:worker_threads";
import { fromB64 } from "../crypto/encoding.js";
import type { AuditEntry } from "./entry.js";
import { examineEntry } from "./verify-entry.js";

export interface SliceRequest {
  id: number;
  /** The slice's entries: log lines, or entries already parsed (a bundle). */
  items: Array<string | AuditEntry>;
  /** keyId → base64 public key: the keys the verifier trusts. */
  keys: Record<string, string>;
}

/** Per entry, what examineEntry found: its defect or hash, and 1 / 0 / -1 for each signature. */
export interface SliceResult {
  id: number;
  defects: Array<string | null>;
  hashes: Array<string | null>;
  sig: Int8Array;
  sigNew: Int8Array;
}

export function checkSlice(req: SliceRequest): SliceResult {
  const keys = new Map<string, Uint8Array>();
  for (const [k, v] of Object.entries(req.keys)) keys.set(k, fromB64(v));
  const keyFor = (keyId: string): Uint8Array | undefined => keys.get(keyId);
  const n = req.items.length;
  const out: SliceResult = { id: req.id, defects: new Array(n).fill(null), hashes: new Array(n).fill(null), sig: new Int8Array(n), sigNew: new Int8Array(n) };
  for (let i = 0; i < n; i++) {
    const x = examineEntry(req.items[i], keyFor);
    out.defects[i] = x.defect ?? null;
    out.hashes[i] = x.hash ?? null;
    out.sig[i] = x.sig;
    out.sigNew[i] = x.sigNew;
  }
  return out;
}

parentPort?.on("message", (req: SliceRequest) => {
  const res = checkSlice(req);
  parentPort!.postMessage(res, [res.sig.buffer as ArrayBuffer, res.sigNew.buffer as ArrayBuffer]);
});
