/**
 * Offline verification of an identity's audit log: a streaming pass that checks, for every entry,
 * its place (gap-free `seq`, `prev` linking to the previous entry's hash), its content (the hash
 * recomputed over the canonical form), and its signature by the key that was active at that point
 * of the chain (the first key, then each key a signed rotation entry hands over to). It needs only
 * the public keys, so a bundle exported with `sigil audit export` verifies with no home at all.
 *
 * A long log is verified on every core: the per-entry work that needs nothing from the rest of the
 * chain (parse, hash, Ed25519 signature against the published key the entry names — nearly all of
 * the time) runs in worker threads over slices of the log, and the sequential pass below uses
 * those results in place of computing them itself. Any result a worker could not give (a key that
 * is not published, an entry it could not read) is computed inline, so the verdict, the first bad
 * seq and its message are the same with or without workers.
 */
import { existsSync } from "node:fs";
import { availableParallelism } from "node:os";
import { fileURLToPath } from "node:url";
import { Worker } from "node:worker_threads";
import { fromB64, keyThumbprint, verifySignature } from "../crypto/core.js";
import { type AuditEntry, ZERO_HASH, entryHash, signingStatement } from "./entry.js";
import type { SliceRequest, SliceResult } from "./verify-worker.js";

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
  const published = new Map(known);
  let items: AsyncIterable<string | AuditEntry> | Iterable<string | AuditEntry> = lines;
  let pre: Precomputed | undefined;
  if (workerCount() > 1) {
    const all: Array<string | AuditEntry> = [];
    for await (const raw of lines as AsyncIterable<string | AuditEntry>) all.push(raw);
    items = all;
    if (all.length >= PARALLEL_MIN_ENTRIES) pre = await precompute(all, keys).catch(() => undefined);
  }
  let index = -1;
  let expected = 1;
  let prev = ZERO_HASH;
  let active: string | undefined;
  const open = new Set<number>();
  const bad = (error: string): VerifyResult => ({ id: identityId, entries: expected - 1, ok: false, firstBadSeq: expected, error });

  for await (const raw of items as AsyncIterable<string | AuditEntry>) {
    index++;
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
    const preHash = pre?.hashes[index];
    if (typeof preHash === "string") hash = preHash;
    else {
      try {
        hash = entryHash(e as unknown as Record<string, unknown>);
      } catch {
        return bad(`entry ${expected} cannot be canonicalised`);
      }
    }
    if (hash !== e.hash) return bad(`entry ${expected} does not match its hash (its content was changed)`);
    if (expected === 1) active = e.keyId;
    if (e.keyId !== active) return bad(`entry ${expected} is signed by key ${String(e.keyId)} but key ${active} was active`);
    const pk = known.get(active!);
    if (!pk) return bad(`entry ${expected} is signed by key ${active}, which is not among the identity's published keys`);
    const statement = signingStatement(hash);
    // A worker's verdict counts only if it checked with this very key (the published one).
    const preSig = pre && pk === published.get(active!) ? pre.sig[index] : -1;
    if (typeof e.sig !== "string" || (preSig === -1 ? !verifySignature(pk, statement, fromB64(e.sig)) : preSig !== 1)) {
      return bad(`entry ${expected} has an invalid signature`);
    }
    if (typeof e.newKeyId === "string") {
      const newPk = typeof e.newPublicKey === "string" ? fromB64(e.newPublicKey) : undefined;
      if (!newPk || keyThumbprint(newPk) !== e.newKeyId) return bad(`key rotation entry ${expected} names a key that does not match its public key`);
      const listed = known.get(e.newKeyId);
      if (listed && !Buffer.from(listed).equals(newPk)) return bad(`key rotation entry ${expected} disagrees with the published key ${e.newKeyId}`);
      const preNew = pre ? pre.sigNew[index] : -1;
      if (typeof e.sigNew !== "string" || (preNew === -1 ? !verifySignature(newPk, statement, fromB64(e.sigNew)) : preNew !== 1)) {
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

// ---- the worker pool ---------------------------------------------------------------------------

/** Below this many entries a log is verified on this thread alone (starting workers costs more). */
const PARALLEL_MIN_ENTRIES = 1000;
const SLICE = 512;

interface Precomputed {
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

function workerCount(): number {
  if (poolBroken) return 0;
  const env = process.env.SIGIL_VERIFY_THREADS;
  const n = env !== undefined && /^\d+$/.test(env) ? Number(env) : availableParallelism();
  return Math.max(0, Math.min(n, 16));
}

/**
 * The process's verifier threads, started on first use. An idle thread never keeps the process
 * alive; one with a slice in flight does, until it answers.
 */
/**
 * The worker script: beside this module in the tsc output (dist/src/audit/), or at the top of
 * dist/ when this code runs from the bundled CLI's chunks (dist/chunks/).
 */
function workerUrl(): URL {
  const beside = new URL("./verify-worker.js", import.meta.url);
  return existsSync(fileURLToPath(beside)) ? beside : new URL("../verify-worker.js", import.meta.url);
}

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

async function precompute(items: Array<string | AuditEntry>, keys: PublicKeyInfo[]): Promise<Precomputed> {
  const keyMap: Record<string, string> = {};
  for (const k of keys) keyMap[k.keyId] = k.publicKey;
  const out: Precomputed = { hashes: new Array(items.length), sig: new Int8Array(items.length), sigNew: new Int8Array(items.length) };
  let next = 0;
  try {
    await Promise.all(
      workers().map(async (w) => {
        while (next < items.length) {
          const start = next;
          next = Math.min(items.length, next + SLICE);
          const res = await run(w, { id: nextSliceId++, items: items.slice(start, next), keys: keyMap });
          for (let i = 0; i < res.hashes.length; i++) out.hashes[start + i] = res.hashes[i]!;
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
