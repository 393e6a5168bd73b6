/**
 * The parallel audit verifier's worker pool (see verify.ts): a process-wide set of threads
 * (verify-worker.ts) that examine slices of a long log — parse, canonical form, hash, signatures
 * under the trusted keys — so that the sequential pass in verify.ts only has to check places and
 * key succession. Any failure to start or run threads turns the pool off for the process, and
 * verification continues on the calling thread with the same verdict.
 */
import { existsSync } from "node:fs";
import { availableParallelism } from "node:os";
import { fileURLToPath } from "node:url";
import { Worker } from "node:worker_threads";
import type { AuditEntry } from "./entry.js";
import type { PublicKeyInfo } from "./verify.js";
import type { SliceRequest, SliceResult } from "./verify-worker.js";


/** Below this many entries a log is verified on this thread alone (starting workers costs more). */
export const PARALLEL_MIN_ENTRIES = 1000;
const SLICE = 512;

export interface Precomputed {
  /** 1 where a worker examined the entry. */
  done: Int8Array;
  defects: Array<string | null>;
  hashes: Array<string | null>;
  sig: Int8Array;
  sigNew: Int8Array;
}

interface PoolWorker {
  worker: Worker;
  dead: boolean;
  pending: Map<number, { resolve: (r: SliceResult) => void; reject: (err: unknown) => void }>;
}

let pool: PoolWorker[] | undefined;
let poolBroken = false;
let nextSliceId = 0;

let configuredThreads: number | undefined;

/** SIGIL_VERIFY_THREADS (`Config.verifyThreads`), set by the composition root; undefined: one per core. */
export function setVerifyThreads(n: number | undefined): void {
  configuredThreads = n;
}

export function workerCount(): number {
  if (poolBroken) return 0;
  const n = configuredThreads ?? availableParallelism();
  return Math.max(0, Math.min(n, 16));
}

/**
 * The worker script: beside this module in the tsc output (dist/src/audit/), or at the top of
 * dist/ when this code runs from the bundled CLI's chunks (dist/chunks/).
 */
function workerUrl(): URL {
  const beside = new URL("./verify-worker.js", import.meta.url);
  return existsSync(fileURLToPath(beside)) ? beside : new URL("../verify-worker.js", import.meta.url);
}

/**
 * The process's verifier threads, started on first use. An idle thread never keeps the process
 * alive; one with a slice in flight does, until it answers.
 */
function workers(): PoolWorker[] {
  if (!pool) {
    const script = workerUrl();
    pool = Array.from({ length: workerCount() }, () => {
      const w: PoolWorker = { worker: new Worker(script), dead: false, pending: new Map() };
      const failAll = (err: unknown): void => {
        w.dead = true;
        const waiting = [...w.pending.values()];
        w.pending.clear();
        w.worker.unref();
        for (const p of waiting) p.reject(err);
      };
      w.worker.on("message", (res: SliceResult) => {
        const p = w.pending.get(res.id);
        w.pending.delete(res.id);
        if (w.pending.size === 0) w.worker.unref();
        p?.resolve(res);
      });
      w.worker.on("error", failAll);
      w.worker.on("exit", () => failAll(new Error("a verifier thread exited")));
      w.worker.unref();
      return w;
    });
  }
  return pool;
}

/** How many verifier threads this process has running (0 before the first long log). */
export function verifierThreads(): number {
  return (pool ?? []).filter((w) => !w.dead).length;
}

function run(w: PoolWorker, req: SliceRequest): Promise<SliceResult> {
  return new Promise((resolve, reject) => {
    if (w.dead) return reject(new Error("a verifier thread is not running"));
    if (w.pending.size === 0) w.worker.ref();
    w.pending.set(req.id, { resolve, reject });
    w.worker.postMessage(req);
  });
}

export async function precompute(items: Array<string | AuditEntry>, keys: PublicKeyInfo[]): Promise<Precomputed> {
  const keyMap: Record<string, string> = {};
  for (const k of keys) if (k.status !== "pending") keyMap[k.keyId] = k.publicKey;
  const n = items.length;
  const out: Precomputed = { done: new Int8Array(n), defects: new Array(n), hashes: new Array(n), sig: new Int8Array(n), sigNew: new Int8Array(n) };
  let next = 0;
  try {
    await Promise.all(
      workers().map(async (w) => {
        while (next < items.length) {
          const start = next;
          next = Math.min(items.length, next + SLICE);
          const res = await run(w, { id: nextSliceId++, items: items.slice(start, next), keys: keyMap });
          for (let i = 0; i < res.hashes.length; i++) {
            out.hashes[start + i] = res.hashes[i]!;
            out.defects[start + i] = res.defects[i]!;
          }
          out.done.fill(1, start, start + res.hashes.length);
          out.sig.set(res.sig, start);
          out.sigNew.set(res.sigNew, start);
        }
      }),
    );
  } catch (err) {
    // No threads here (or they failed to start): verify on this thread from now on.
    poolBroken = true;
    const old = pool ?? [];
    pool = undefined;
    for (const w of old) void w.worker.terminate();
    throw err;
  }
  return out;
}
