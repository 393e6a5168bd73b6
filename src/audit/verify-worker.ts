/**
 * A worker thread of the audit verifier (see verify.ts). Two kinds of work:
 *
 * - a slice of a log (`SliceRequest`): the per-entry work that does not depend on the rest of the
 *   chain (verify-entry.ts: parse, canonical form, hash, the Ed25519 signature(s) under the trusted
 *   key the entry names), sent back for the sequential pass in verify.ts, which treats these
 *   results exactly as if it had computed them itself (`sigil audit verify`, many threads at once);
 * - a whole verification (`JobRequest`: open, batches of lines, end): the per-entry work AND the
 *   sequential pass (verify.ts `ChainChecker`), here, so that a server verifies a log without its
 *   event loop doing any of it (the chains' verification status, src/audit/verification.ts).
 *   Several jobs may be open at once; their batches interleave.
 */
import { setPriority } from "node:os";
import { parentPort, workerData } from "node:worker_threads";
import { fromB64 } from "../crypto/encoding.js";
import type { AuditEntry } from "./entry.js";
import { examineEntry } from "./verify-entry.js";
import { type CheckpointState, ChainChecker, type PublicKeyInfo, type VerifyResult } from "./verify.js";

export interface SliceRequest {
  kind?: "slice";
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

/** A verification run here: opened with the trusted keys (and where to resume), fed batches of lines in order, ended. */
export type JobRequest =
  | { kind: "open"; id: number; msg: number; identityId: string; keys: PublicKeyInfo[]; resume?: CheckpointState }
  | { kind: "lines"; id: number; msg: number; lines: string[] }
  | { kind: "end"; id: number; msg: number };

/**
 * For `lines`: how many entries have passed so far, or the failure (the job is then closed and
 * later batches are ignored). For `end`: the verdict and where a later verification may resume.
 */
export interface JobReply {
  kind: "job";
  id: number;
  /** The request's `msg`. */
  msg: number;
  entries: number;
  failed?: VerifyResult;
  result?: VerifyResult;
  checkpoint?: CheckpointState;
}

const jobs = new Map<number, ChainChecker | VerifyResult>();

export function runJob(req: JobRequest): JobReply {
  return { ...jobStep(req), msg: req.msg };
}

function jobStep(req: JobRequest): Omit<JobReply, "msg"> {
  if (req.kind === "open") {
    const c = ChainChecker.open(req.identityId, req.keys, req.resume);
    jobs.set(req.id, c);
    return c instanceof ChainChecker ? { kind: "job", id: req.id, entries: c.entries } : { kind: "job", id: req.id, entries: c.entries, failed: c };
  }
  const c = jobs.get(req.id);
  if (c === undefined) return { kind: "job", id: req.id, entries: 0, failed: { id: "", entries: 0, ok: false, error: "the verification was not opened" } };
  if (!(c instanceof ChainChecker)) {
    if (req.kind === "end") jobs.delete(req.id);
    return { kind: "job", id: req.id, entries: c.entries, failed: c, ...(req.kind === "end" ? { result: c } : {}) };
  }
  if (req.kind === "end") {
    jobs.delete(req.id);
    return { kind: "job", id: req.id, entries: c.entries, result: c.result(), checkpoint: c.checkpoint() };
  }
  for (const line of req.lines) {
    const failed = c.check(c.examine(line));
    if (failed) {
      jobs.set(req.id, failed);
      return { kind: "job", id: req.id, entries: failed.entries, failed };
    }
  }
  return { kind: "job", id: req.id, entries: c.entries };
}

// The background thread (verify-pool.ts) gives way to the server's event loop: on Linux a thread's
// nice value is its own. Where that is not allowed, it runs at normal priority.
if ((workerData as { lowPriority?: boolean } | undefined)?.lowPriority === true) {
  try {
    setPriority(10);
  } catch {
    /* not permitted here */
  }
}

parentPort?.on("message", (req: SliceRequest | JobRequest) => {
  if (req.kind === undefined || req.kind === "slice") {
    const res = checkSlice(req);
    parentPort!.postMessage(res, [res.sig.buffer as ArrayBuffer, res.sigNew.buffer as ArrayBuffer]);
  } else {
    parentPort!.postMessage(runJob(req as JobRequest));
  }
});
