/**
 * Signed checkpoints of an identity's audit log, so that a party who keeps one can later detect
 * truncation or rollback (which no one without a signed statement of the log's size can).
 *
 * Format: a C2SP signed note (note.ts) whose text is a C2SP tlog-checkpoint body
 *   sigil/<identityId>\n<size>\n<base64 root hash>\n
 * signed by the identity's active key under the key name `sigil/<identityId>` (the origin).
 *
 * The root hash is the RFC 6962 / RFC 9162 Merkle Tree Hash over the log's entries, whose `hash`
 * fields already are RFC 6962 leaf hashes (SHA-256(0x00 || JCS(entry body)), entry.ts). So the same
 * checkpoint serves a Merkle inclusion proof for a single entry (receipts, receipt.ts) without
 * disclosing any other entry, and any tlog tool can check it.
 *
 * "Periodic": checkpoints are computed on demand — whenever the HTTP server is asked
 * (`GET /identities/<id>/checkpoint`, which reuses one for up to a second) or the CLI (`sigil audit
 * checkpoint ID`) — over the log as it stands, under the identity's chain lock (a consistent size
 * and head). The tree is kept incrementally (MerkleFrontier): a process reads each entry once, and
 * a later checkpoint costs the entries appended since the last one plus O(log n) hashes — never a
 * re-read of the log. Nothing is written to the log. Ed25519 is deterministic, so two checkpoints of the same size by the same key are
 * byte-identical; and since the log is append-only, sigil never signs two checkpoints that disagree
 * unless its log was rewritten — which is what holders of checkpoints then detect.
 */
import { createHash } from "node:crypto";
import { readFileSync } from "node:fs";
import type { App } from "../app.js";
import type { PublicKeyInfo, VerifyResult } from "../audit/verify.js";
import { type AuditBundle, type KeySource, keysFor, verifyBundle } from "../audit/anchor.js";
import type { IdentityRecord } from "../../store/types.js";
import { SigilError } from "../errors.js";
import type { AuditEntry } from "../audit/entry.js";
import { fromB64 } from "../crypto/encoding.js";
import { keyThumbprint, sign as edSign } from "../crypto/ed25519.js";
import { ZERO_HASH } from "../audit/entry.js";
import type { ChainCursor } from "../../store/types.js";
import { checkpointBody, openNote, parseCheckpoint, signNote } from "./note.js";
import { base64 } from "../crypto/jwk.js";

export const CHECKPOINT_FORMAT = "sigil-checkpoint/v1";

export function checkpointOrigin(identityId: string): string {
  return `sigil/${identityId}`;
}

// ---- RFC 9162 §2.1 Merkle trees over leaf hashes ---------------------------------------------

function node(left: Buffer, right: Buffer): Buffer {
  return createHash("sha256").update(Uint8Array.of(0x01)).update(left).update(right).digest();
}

/** Largest power of two strictly smaller than n (n ≥ 2). */
function split(n: number): number {
  let k = 1;
  while (k * 2 < n) k *= 2;
  return k;
}

/** MTH(D[n]) over leaf hashes (already SHA-256(0x00 || leaf)). */
export function merkleRoot(leaves: Buffer[]): Buffer {
  if (leaves.length === 0) return createHash("sha256").digest();
  const level = (lo: number, hi: number): Buffer => {
    if (hi - lo === 1) return leaves[lo]!;
    const k = split(hi - lo);
    return node(level(lo, lo + k), level(lo + k, hi));
  };
  return level(0, leaves.length);
}

/** The audit path (RFC 9162 §2.1.3.1) for leaf index m in the tree over `leaves`. */
export function inclusionProof(leaves: Buffer[], m: number): Buffer[] {
  if (!Number.isInteger(m) || m < 0 || m >= leaves.length) throw new Error("leaf index out of range");
  const path = (index: number, lo: number, hi: number): Buffer[] => {
    if (hi - lo === 1) return [];
    const k = split(hi - lo);
    if (index < k) return [...path(index, lo, lo + k), merkleRoot(leaves.slice(lo + k, hi))];
    return [...path(index - k, lo + k, hi), merkleRoot(leaves.slice(lo, lo + k))];
  };
  return path(m, 0, leaves.length);
}

/** Verifies an inclusion proof (RFC 9162 §2.1.3.2). */
export function verifyInclusion(leaf: Buffer, index: number, size: number, proof: Buffer[], root: Buffer): boolean {
  if (!Number.isSafeInteger(index) || !Number.isSafeInteger(size) || index < 0 || index >= size) return false;
  let fn = index;
  let sn = size - 1;
  let r = leaf;
  for (const p of proof) {
    if (p.length !== 32 || sn === 0) return false;
    if (fn % 2 === 1 || fn === sn) {
      r = node(p, r);
      if (fn % 2 === 0) {
        while (fn % 2 === 0 && fn !== 0) {
          fn = Math.floor(fn / 2);
          sn = Math.floor(sn / 2);
        }
      }
    } else {
      r = node(r, p);
    }
    fn = Math.floor(fn / 2);
    sn = Math.floor(sn / 2);
  }
  return sn === 0 && r.equals(root);
}

/**
 * RFC 9162 Merkle tree hash kept incrementally: the roots of the perfect subtrees the leaves so far
 * decompose into (largest first), so appending a leaf costs O(1) amortised and the root O(log n).
 */
export class MerkleFrontier {
  private readonly stack: Array<{ size: number; hash: Buffer }> = [];
  size = 0;
  /** Node hashes computed so far (for tests that show the cost of a checkpoint). */
  hashes = 0;

  push(leaf: Buffer): void {
    let top = { size: 1, hash: leaf };
    while (this.stack.length > 0 && this.stack[this.stack.length - 1]!.size === top.size) {
      const left = this.stack.pop()!;
      top = { size: left.size * 2, hash: node(left.hash, top.hash) };
      this.hashes++;
    }
    this.stack.push(top);
    this.size++;
  }

  root(): Buffer {
    if (this.stack.length === 0) return createHash("sha256").digest();
    let r = this.stack[this.stack.length - 1]!.hash;
    for (let i = this.stack.length - 2; i >= 0; i--) {
      r = node(this.stack[i]!.hash, r);
      this.hashes++;
    }
    return r;
  }
}

// ---- reading a log ----------------------------------------------------------------------------

export type CheckpointView = {
  format: typeof CHECKPOINT_FORMAT;
  origin: string;
  size: number;
  /** base64 RFC 6962 Merkle tree hash over the first `size` entries. */
  rootHash: string;
  /** hex hash of entry `size` (the chain's head at this size). */
  headHash: string;
  keyId: string;
  /** The C2SP signed note: what to keep and hand to `sigil audit verify --checkpoint`. */
  note: string;
};

/** What this process has read of one identity's log, for its checkpoints. */
interface Tracked {
  cursor: ChainCursor;
  tree: MerkleFrontier;
  head: string;
  /** The key the log has handed signing to (the genesis entry's, then each rotation's new key). */
  keyId?: string;
  view?: CheckpointView;
  /** Checkpoints of one identity are made one at a time (each continues from the last). */
  queue: Promise<unknown>;
}

/** What a checkpoint reads: the registry (keys), the log under its chain lock, the keyring (signing). */
export type CheckpointSource = Pick<App, "identities" | "store" | "keyring">;

const tracked = new WeakMap<CheckpointSource, Map<string, Tracked>>();

function trackedOf(app: CheckpointSource, identityId: string): Tracked {
  let m = tracked.get(app);
  if (!m) tracked.set(app, (m = new Map()));
  let t = m.get(identityId);
  if (!t) m.set(identityId, (t = { cursor: { position: 0 }, tree: new MerkleFrontier(), head: ZERO_HASH, queue: Promise.resolve() }));
  return t;
}

/** Node hashes this process has computed for `identityId`'s checkpoints (tests: the cost of one). */
export function checkpointHashCount(app: CheckpointSource, identityId: string): number {
  return tracked.get(app)?.get(identityId)?.tree.hashes ?? 0;
}

/** A checkpoint of the identity's log as it stands, signed by its active key. */
export function makeCheckpoint(app: CheckpointSource, identityId: string): Promise<CheckpointView> {
  const t = trackedOf(app, identityId);
  const run = t.queue.then(() => catchUp(app, identityId, t));
  t.queue = run.catch(() => {});
  return run;
}

async function catchUp(app: CheckpointSource, identityId: string, t: Tracked): Promise<CheckpointView> {
  const rec = await app.identities.require(identityId);
  try {
    // Under the chain lock: only the entries appended since this process last looked.
    const { cursor } = await app.store.audit.withChain(identityId, t.cursor, async (view) => {
      for (const line of view.lines) {
        const e = JSON.parse(line) as AuditEntry;
        if (e.seq !== t.tree.size + 1 || e.prev !== t.head || !/^[0-9a-f]{64}$/.test(e.hash)) {
          throw new Error(`audit log of ${identityId} is malformed at entry ${t.tree.size + 1}`);
        }
        t.tree.push(Buffer.from(e.hash, "hex"));
        t.head = e.hash;
        if (e.seq === 1) t.keyId = e.keyId;
        if (typeof e.newKeyId === "string") t.keyId = e.newKeyId;
      }
      return { lines: [], value: null };
    });
    t.cursor = cursor;
  } catch (err) {
    // The log is not what this process read before (or not readable): start again next time.
    Object.assign(t, { cursor: { position: 0 }, tree: new MerkleFrontier(), head: ZERO_HASH, keyId: undefined, view: undefined });
    throw err;
  }
  const size = t.tree.size;
  if (t.view && t.view.size === size && t.view.keyId === t.keyId) return t.view;
  const keyId = t.keyId;
  const key = keyId ? rec.keys.find((k) => k.keyId === keyId) : undefined;
  if (!keyId || !key) throw new SigilError("key_missing", `the audit log of ${identityId} names no active key in the registry`);
  const { secretKey } = await app.keyring.signer(identityId, keyId);
  const signer = { keyId, publicKey: new Uint8Array(fromB64(key.publicKey)), sign: (m: Uint8Array) => edSign(secretKey, m) };
  const root = t.tree.root();
  const origin = checkpointOrigin(identityId);
  const note = await signNote(checkpointBody(origin, size, root), [{ name: origin, signer }]);
  t.view = { format: CHECKPOINT_FORMAT, origin, size, rootHash: base64(root), headHash: t.head, keyId, note };
  return t.view;
}

// ---- verifying a kept checkpoint against a log -------------------------------------------------

export type CheckpointCheck = {
  origin: string;
  identityId: string;
  size: number;
  ok: boolean;
  /** Entries the log holds now. */
  logEntries?: number;
  error?: string;
};

/** Reads a checkpoint file: the raw signed note, the JSON `--json` prints, or a receipt (its checkpoint). */
export function readCheckpointText(text: string): string {
  const t = text.replace(/^\uFEFF/, "");
  if (t.trimStart().startsWith("{")) {
    try {
      const j = JSON.parse(t) as { note?: unknown; checkpoint?: { note?: unknown } };
      if (typeof j.note === "string") return j.note; // `sigil audit checkpoint ID --json`
      if (typeof j.checkpoint?.note === "string") return j.checkpoint.note; // a receipt
    } catch {
      /* not JSON: treated as a note */
    }
  }
  return t.replace(/\r\n/g, "\n");
}

/** The identity a checkpoint note claims to be about (from its origin line), unverified. */
export function checkpointIdentity(note: string): string | undefined {
  const origin = note.split("\n", 1)[0] ?? "";
  return origin.startsWith("sigil/") ? origin.slice("sigil/".length) : undefined;
}

/**
 * Checks a kept checkpoint against a log: the note must be signed by one of the identity's keys,
 * and the log (its entries' hashes, in order; the caller verifies the chain itself) must still
 * contain `size` entries whose Merkle root is the checkpointed one. A shorter log was truncated
 * or rolled back; a different root means its history was rewritten.
 */
export function checkCheckpoint(
  note: string,
  identityId: string,
  keys: Array<{ keyId: string; publicKey: string }>,
  entryHashes: string[],
): CheckpointCheck {
  const origin = checkpointOrigin(identityId);
  const base = { origin, identityId, size: 0, logEntries: entryHashes.length };
  let size: number;
  let root: Buffer;
  try {
    const verifiers = keys
      .map((k) => ({ keyId: k.keyId, publicKey: new Uint8Array(fromB64(k.publicKey)) }))
      .filter((k) => k.publicKey.length === 32 && keyThumbprint(k.publicKey) === k.keyId)
      .map((k) => ({ name: origin, publicKey: k.publicKey }));
    const opened = openNote(note, verifiers);
    const cp = parseCheckpoint(opened.text);
    if (cp.origin !== origin) return { ...base, ok: false, error: `the checkpoint is for ${cp.origin}, not ${origin}` };
    size = cp.size;
    root = Buffer.from(cp.rootHash);
  } catch (err) {
    return { ...base, ok: false, error: `the checkpoint does not verify: ${(err as Error).message}` };
  }
  if (entryHashes.length < size) {
    return {
      ...base,
      size,
      ok: false,
      error: `the log has ${entryHashes.length} entries, fewer than the ${size} the checkpoint commits to (truncated or rolled back)`,
    };
  }
  const leaves = entryHashes.slice(0, size).map((h) => Buffer.from(h, "hex"));
  if (!merkleRoot(leaves).equals(root)) {
    return { ...base, size, ok: false, error: `the log's first ${size} entries are not the ones the checkpoint commits to (history rewritten)` };
  }
  return { ...base, size, ok: true };
}

// ---- `sigil audit verify --checkpoint FILE [--bundle FILE]` ------------------------------------

export type CheckpointReport = { ok: boolean; identities: VerifyResult[]; checkpoint: CheckpointCheck };

/** What checking a home's log needs: public data only (audit/verify-home.ts: PublicHome, which needs no master key). */
export type LogReader = {
  requireIdentity(id: string): Promise<IdentityRecord>;
  publicKeys(rec: IdentityRecord): PublicKeyInfo[];
  verify(id: string): Promise<{ identities: VerifyResult[] }>;
  store: { audit: { readLines(id: string): AsyncIterable<string> } };
};

/** Reads a checkpoint file for the CLI (a note, `--json` output, or a receipt). */
export function readCheckpointFile(file: string): string {
  try {
    return readCheckpointText(readFileSync(file, "utf8"));
  } catch {
    throw new SigilError("invalid_checkpoint", `${file} cannot be read.`);
  }
}

/**
 * Verifies the log the checkpoint is about — the home's (`sigil`) or an exported bundle's — in full,
 * and checks that it still holds what the checkpoint commits to. `id`, when given, must be the
 * identity the checkpoint names.
 */
export async function verifyCheckpointFile(
  note: string,
  source: { log: LogReader; id?: string } | { bundle: unknown; trusted?: KeySource },
): Promise<CheckpointReport> {
  const cpId = checkpointIdentity(note);
  if (!cpId) throw new SigilError("invalid_checkpoint", "The file is not a sigil checkpoint (its first line is not sigil/<identity id>).");
  let chain: VerifyResult;
  let keys: Array<{ keyId: string; publicKey: string }>;
  const hashes: string[] = [];
  const collect = (e: unknown): boolean => {
    const entry = (typeof e === "string" ? safeParse(e) : e) as { seq?: unknown; hash?: unknown } | undefined;
    if (!entry || entry.seq !== hashes.length + 1 || typeof entry.hash !== "string" || !/^[0-9a-f]{64}$/.test(entry.hash)) return false;
    hashes.push(entry.hash);
    return true;
  };
  if ("log" in source) {
    if (source.id !== undefined && source.id !== cpId) {
      throw new SigilError("invalid_arguments", `The checkpoint is about ${cpId.slice(0, 64)}, not ${source.id.slice(0, 64)}.`);
    }
    const rec = await source.log.requireIdentity(cpId);
    keys = source.log.publicKeys(rec);
    chain = (await source.log.verify(cpId)).identities[0]!;
    for await (const line of source.log.store.audit.readLines(cpId)) if (!collect(line)) break;
  } else {
    const b = source.bundle as Partial<AuditBundle>;
    const r = await verifyBundle(b, source.trusted);
    if (b.identity?.id !== cpId) throw new SigilError("invalid_arguments", `The checkpoint is about ${cpId.slice(0, 64)}, but the bundle is the log of ${String(b.identity?.id).slice(0, 64)}.`);
    chain = r.identities[0]!;
    keys = source.trusted ? keysFor(cpId, source.trusted) : (b.keys ?? []);
    for (const e of b.entries ?? []) if (!collect(e)) break;
  }
  // Only entries that verified count: a log whose chain breaks cannot vouch for what follows.
  const trusted = chain.ok ? hashes : hashes.slice(0, Math.max(0, (chain.firstBadSeq ?? 1) - 1));
  const checkpoint = checkCheckpoint(note, cpId, keys, trusted);
  return { ok: chain.ok && checkpoint.ok, identities: [chain], checkpoint };
}

function safeParse(s: string): unknown {
  try {
    return JSON.parse(s);
  } catch {
    return undefined;
  }
}
