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
import type { CheckpointState, PublicKeyInfo, VerifyResult } from "./verify.js";
import type { JobReply, JobRequest, SliceRequest, SliceResult } from "./verify-worker.js";


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
  pending: Map<number, { resolve: (r: any) => void; reject: (err: unknown) => void }>;
  /** Whole verifications open on this thread. */
  jobs: number;
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
    pool = Array.from({ length: workerCount() }, () => startWorker(script, false));
  }
  return pool;
}

/**
 * The thread whole verifications run on (`verifyOnThread`): one more thread of the same script,
 * started on first use, that lowers its own scheduling priority (nice 10; on Linux a thread's
 * own) — a server's background verification gives way to its event loop and to other work,
 * while `sigil audit verify`'s slices keep the pool's normal-priority threads.
 */
let background: PoolWorker | undefined;
function backgroundWorker(): PoolWorker {
  if (!background || background.dead) background = startWorker(workerUrl(), true);
  return background;
}

function startWorker(script: URL, lowPriority: boolean): PoolWorker {
  const w: PoolWorker = { worker: new Worker(script, { workerData: { lowPriority } }), dead: false, pending: new Map(), jobs: 0 };
  const failAll = (err: unknown): void => {
    w.dead = true;
    const waiting = [...w.pending.values()];
    w.pending.clear();
    w.worker.unref();
    for (const p of waiting) p.reject(err);
  };
  w.worker.on("message", (res: SliceResult | JobReply) => {
    const key = "msg" in res ? res.msg : res.id;
    const p = w.pending.get(key);
    w.pending.delete(key);
    if (w.pending.size === 0) w.worker.unref();
    p?.resolve(res);
  });
  w.worker.on("error", failAll);
  w.worker.on("exit", () => failAll(new Error("a verifier thread exited")));
  w.worker.unref();
  return w;
}

/** How many verifier threads this process has running (0 before the first long log or verification status). */
export function verifierThreads(): number {
  return [...(pool ?? []), ...(background ? [background] : [])].filter((w) => !w.dead).length;
}

function run(w: PoolWorker, req: SliceRequest): Promise<SliceResult>;
function run(w: PoolWorker, req: JobRequest): Promise<JobReply>;
function run(w: PoolWorker, req: SliceRequest | JobRequest): Promise<SliceResult | JobReply> {
  return new Promise((resolve, reject) => {
    if (w.dead) return reject(new Error("a verifier thread is not running"));
    if (w.pending.size === 0) w.worker.ref();
    w.pending.set("msg" in req ? req.msg : req.id, { resolve, reject });
    w.worker.postMessage(req);
  });
}

/** A log's lines go to the thread in batches of about this many bytes (short slices of this thread's time); at most two batches are in flight. */
const JOB_BATCH_BYTES = 64 * 1024;

/**
 * Verifies a whole log on one verifier thread — the per-entry work and the sequential pass
 * (verify-worker.ts, `JobRequest`) — so that the calling thread only reads lines and passes them
 * on: a server's event loop does none of the verification. `resume` continues a verification that
 * stopped at that point (the lines are then the ones after it). Undefined when this process has no
 * verifier threads (SIGIL_VERIFY_THREADS=0, or they could not start): the caller verifies itself.
 * Jobs run on the low-priority background thread; several interleave there by batch.
 */
export async function verifyOnThread(
  identityId: string,
  lines: AsyncIterable<string> | Iterable<string>,
  keys: PublicKeyInfo[],
  resume?: CheckpointState,
): Promise<{ result: VerifyResult; checkpoint?: CheckpointState } | undefined> {
  if (workerCount() === 0) return undefined;
  let w: PoolWorker;
  try {
    w = backgroundWorker();
  } catch {
    return undefined;
  }
  const id = nextSliceId++;
  const msg = (): number => nextSliceId++;
  w.jobs++;
  try {
    const opened = await run(w, { kind: "open", id, msg: msg(), identityId, keys, ...(resume ? { resume } : {}) });
    let failed: VerifyResult | undefined = opened.failed;
    const inFlight: Array<Promise<JobReply>> = [];
    const settle = async (): Promise<void> => {
      const r = await inFlight.shift()!;
      failed ??= r.failed;
    };
    let batch: string[] = [];
    let bytes = 0;
    for await (const line of lines as AsyncIterable<string>) {
      if (failed) break;
      batch.push(line);
      bytes += line.length;
      if (bytes >= JOB_BATCH_BYTES) {
        inFlight.push(run(w, { kind: "lines", id, msg: msg(), lines: batch }));
        batch = [];
        bytes = 0;
        if (inFlight.length >= 2) await settle();
      }
    }
    if (!failed && batch.length > 0) inFlight.push(run(w, { kind: "lines", id, msg: msg(), lines: batch }));
    while (inFlight.length > 0) await settle();
    const end = await run(w, { kind: "end", id, msg: msg() });
    return { result: end.result ?? failed ?? end.failed!, ...(end.checkpoint && !failed ? { checkpoint: end.checkpoint } : {}) };
  } catch (err) {
    if (w.dead) breakPool(); // the thread is gone: verify on the calling thread from now on
    throw err;
  } finally {
    w.jobs--;
  }
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
    breakPool();
    throw err;
  }
  return out;
}

function breakPool(): void {
  poolBroken = true;
  const old = [...(pool ?? []), ...(background ? [background] : [])];
  pool = undefined;
  background = undefined;
  for (const w of old) void w.worker.terminate();
}
