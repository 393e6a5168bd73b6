/**
 * Offline verification of an identity's audit log: a streaming pass that checks, for every entry,
 * its bytes (the line is exactly the RFC 8785 canonical form of its content), its place (gap-free
 * `seq`, `prev` linking to the previous entry's hash), its content (the hash recomputed over the
 * canonical body) and its signature by the key that was active at that point of the chain.
 *
 * Keys are anchored: the log itself says which key is active where — the first key is the one the
 * creation entry (seq 1) carries, and only a rotation entry signed by the outgoing key, naming the
 * incoming one and co-signed by it hands signing over. The caller says which keys it trusts (the
 * identity's published JWKS, a home's registry, or — unanchored — a bundle's own list): an entry
 * verifies only if the key active at its position is one of those, with the entry's time inside
 * that key's validity window. So a log re-signed with a foreign key fails against the real keys,
 * and a retired key cannot sign history dated after its retirement. Verifying needs public keys
 * only.
 *
 * A long log is verified on every core: the per-entry work that needs nothing from the rest of the
 * chain (parse, canonical form, hash, Ed25519 signatures — verify-entry.ts, nearly all of the time)
 * runs in worker threads (verify-pool.ts) over slices of the log, and the sequential pass below
 * uses those results in place of computing them itself. Both compute them with the same function
 * and the same trusted keys, so the verdict, the first bad seq and its message are the same with
 * or without workers.
 */
import { keyThumbprint } from "../crypto/ed25519.js";
import { type AuditEntry, ENTRY_VERSION, ZERO_HASH, creationTool } from "./entry.js";
import { DEFECT_MESSAGE, type EntryDefect, type Examined, examineEntry, isKeyIdOf, strictPublicKey } from "./verify-entry.js";
import { PARALLEL_MIN_ENTRIES, type Precomputed, precompute, workerCount } from "./verify-pool.js";

export { verifierThreads } from "./verify-pool.js";

export interface PublicKeyInfo {
  keyId: string;
  publicKey: string; // base64
  /** From when the key signs (ISO 8601); absent: from the beginning. */
  notBefore?: string;
  /** Until when the key signs (ISO 8601), for a retired key; absent: still active. */
  notAfter?: string;
  /** A "pending" key has not been handed signing by the log and is never trusted. */
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

interface TrustedKey {
  publicKey: Uint8Array;
  /** The validity window in whole seconds (JWKS NumericDates are seconds), inclusive. */
  from: number;
  to: number;
}

const seconds = (iso: string | undefined, fallback: number): number => {
  if (iso === undefined) return fallback;
  const ms = Date.parse(iso);
  return Number.isFinite(ms) ? Math.floor(ms / 1000) : Number.NaN;
};

/** The keys a caller trusts, checked: each id must be its key's thumbprint, each window readable. */
function trustedKeys(keys: PublicKeyInfo[]): Map<string, TrustedKey> | string {
  const out = new Map<string, TrustedKey>();
  for (const k of keys) {
    if (!k || k.status === "pending") continue;
    const pk = strictPublicKey(k.publicKey);
    if (!pk || !isKeyIdOf(k.keyId, pk)) return `key ${String(k?.keyId)} does not match its public key`;
    const from = seconds(k.notBefore, -Infinity);
    const to = seconds(k.notAfter, Infinity);
    if (Number.isNaN(from) || Number.isNaN(to) || to < from) return `key ${k.keyId} has an unreadable validity window`;
    out.set(k.keyId, { publicKey: pk, from, to });
  }
  return out;
}

/** How many signatures the sequential pass checked itself (the rest came from worker threads). */
let inlineSignatureChecks = 0;
export function verifierCounters(): { inlineSignatureChecks: number } {
  return { inlineSignatureChecks };
}

export async function verifyChain(
  identityId: string,
  lines: AsyncIterable<string> | Iterable<string | AuditEntry>,
  keys: PublicKeyInfo[],
): Promise<VerifyResult> {
  const checker = ChainChecker.open(identityId, keys);
  if (!(checker instanceof ChainChecker)) return checker;
  let items: AsyncIterable<string | AuditEntry> | Iterable<string | AuditEntry> = lines;
  let pre: Precomputed | undefined;
  if (workerCount() > 1) {
    const all: Array<string | AuditEntry> = [];
    for await (const raw of lines as AsyncIterable<string | AuditEntry>) all.push(raw);
    items = all;
    if (all.length >= PARALLEL_MIN_ENTRIES) pre = await precompute(all, keys).catch(() => undefined);
  }
  let index = -1;
  for await (const raw of items as AsyncIterable<string | AuditEntry>) {
    index++;
    let x: Examined;
    if (pre && pre.done[index] === 1) {
      const defect = pre.defects[index] as EntryDefect | null;
      let entry: AuditEntry | undefined;
      if (defect !== "json") entry = (typeof raw === "string" ? JSON.parse(raw) : raw) as AuditEntry;
      x = { entry, ...(defect ? { defect } : {}), hash: pre.hashes[index] ?? undefined, sig: pre.sig[index] as Examined["sig"], sigNew: pre.sigNew[index] as Examined["sigNew"] };
    } else {
      x = checker.examine(raw);
      if (x.sig !== -1) inlineSignatureChecks++;
      if (x.sigNew !== -1) inlineSignatureChecks++;
    }
    const failed = checker.check(x);
    if (failed) return failed;
  }
  return checker.result();
}

/**
 * Where a verification stopped, so that it can go on with the entries appended after it (the
 * console's verification status, src/audit/verification.ts): the next seq expected, the hash it
 * must link to, the key active there, and the intents still without a result.
 */
export interface CheckpointState {
  expected: number;
  prev: string;
  active?: string;
  open: number[];
}

/**
 * The sequential pass of the verifier, one entry at a time: its place (seq, prev), identity,
 * format version, hash, time, the key active at that point (anchored by the creation entry and
 * handed over only by rotation entries) and its window, and the signature(s) `examine` checked.
 * `verifyChain` drives it over a whole log; a verifier thread (verify-worker.ts) drives it over a
 * log sent in batches, from the start or from a `CheckpointState`.
 */
export class ChainChecker {
  private expected = 1;
  private prev = ZERO_HASH;
  private active: string | undefined;
  private readonly open = new Set<number>();

  private constructor(
    readonly identityId: string,
    private readonly trust: Map<string, TrustedKey>,
  ) {}

  /** A checker for these trusted keys (from `resume`: after the entries it describes), or the failure the keys themselves are. */
  static open(identityId: string, keys: PublicKeyInfo[], resume?: CheckpointState): ChainChecker | VerifyResult {
    const trust = trustedKeys(keys);
    if (typeof trust === "string") return { id: identityId, entries: resume ? resume.expected - 1 : 0, ok: false, firstBadSeq: resume ? resume.expected : 1, error: trust };
    const c = new ChainChecker(identityId, trust);
    if (resume) {
      c.expected = resume.expected;
      c.prev = resume.prev;
      c.active = resume.active;
      for (const s of resume.open) c.open.add(s);
    }
    return c;
  }

  /** The per-entry work (parse, canonical form, hash, signatures under the trusted keys). */
  examine(raw: unknown): Examined {
    return examineEntry(raw, (keyId) => this.trust.get(keyId)?.publicKey);
  }

  /** How many entries have passed. */
  get entries(): number {
    return this.expected - 1;
  }

  checkpoint(): CheckpointState {
    return { expected: this.expected, prev: this.prev, ...(this.active !== undefined ? { active: this.active } : {}), open: [...this.open] };
  }

  /** The verdict so far, for a log that ends here. */
  result(): VerifyResult {
    const result: VerifyResult = { id: this.identityId, entries: this.expected - 1, ok: true, head: this.prev };
    if (this.open.size) result.unresolvedIntents = [...this.open];
    return result;
  }

  /** Checks the next entry: undefined when it is in order, else the failure (and nothing after it counts). */
  check(x: Examined): VerifyResult | undefined {
    const expected = this.expected;
    const trust = this.trust;
    let active = this.active;
    const bad = (error: string): VerifyResult => ({ id: this.identityId, entries: expected - 1, ok: false, firstBadSeq: expected, error });
    if (x.defect) return bad(`entry ${expected} ${DEFECT_MESSAGE[x.defect]}`);
    const e = x.entry!;
    if (e.seq !== expected) {
      if (typeof e.seq === "number" && e.seq < expected) return bad(`found seq ${e.seq} where ${expected} was expected (a duplicated or reordered entry)`);
      return bad(`found seq ${String(e.seq)} where ${expected} was expected (entries missing, inserted or reordered)`);
    }
    if (e.identity !== this.identityId) return bad(`entry ${expected} belongs to another identity`);
    if (e.prev !== this.prev) return bad(`entry ${expected} does not link to the previous entry (inserted, deleted, reordered or from another copy of the log)`);
    if (e.v !== ENTRY_VERSION) return bad(`entry ${expected} has format version ${String(e.v)}, which this verifier does not know`);
    if (x.hash !== e.hash) return bad(`entry ${expected} does not match its hash (its content was changed)`);
    const at = typeof e.ts === "string" ? Date.parse(e.ts) : Number.NaN;
    if (!Number.isFinite(at) || new Date(at).toISOString() !== e.ts) return bad(`entry ${expected} has no valid time`);
    if (expected === 1) {
      // The first key is fixed by the creation entry, which carries it.
      const first = e.tool === creationTool(this.identityId) ? strictPublicKey(e.publicKey) : undefined;
      if (!first) return bad(`entry 1 is not the ${creationTool(this.identityId) === "tenant_created" ? "tenant" : "identity"}'s creation entry carrying its first key`);
      if (!isKeyIdOf(e.keyId, first)) return bad(`entry 1 is signed by key ${String(e.keyId)} but carries the first key ${keyIdOf(first)}`);
      active = e.keyId;
    }
    if (e.keyId !== active) return bad(`entry ${expected} is signed by key ${String(e.keyId)} but key ${active} was active`);
    const key = trust.get(active!);
    if (!key) return bad(`entry ${expected} is signed by key ${active}, which is not among the trusted keys`);
    const second = Math.floor(at / 1000);
    if (second < key.from || second > key.to) {
      return bad(`entry ${expected} is dated ${e.ts}, outside the validity of key ${active} (${windowText(key)})`);
    }
    if (x.sig !== 1) return bad(`entry ${expected} has an invalid signature`);
    // A key rotation is an intent (naming the incoming key, handing nothing over), then its result:
    // `ok` is the handover itself; a `failed` or `unknown` result hands nothing over. Older logs
    // record the handover as one `event` entry. Anything else carrying rotation members, or a
    // rotation entry that should hand over but does not, is held to the rotation rules and fails.
    const handover = e.newKeyId !== undefined || e.newPublicKey !== undefined;
    const noHandover = e.tool === "key_rotated" && (e.phase === "intent" || (e.phase === "result" && e.decision !== "ok"));
    if (!handover && (e.tool !== "key_rotated" || noHandover)) {
      if (e.sigNew !== undefined) return bad(`entry ${expected} carries a second signature but is not a key rotation`);
    } else {
      const newPk = strictPublicKey(e.newPublicKey);
      if (noHandover) return bad(`key rotation entry ${expected} is an intent or an unsuccessful result but hands signing over`);
      if (e.tool !== "key_rotated" || e.previousKeyId !== active) return bad(`key rotation entry ${expected} does not name the outgoing key ${active}`);
      if (!newPk || !isKeyIdOf(e.newKeyId, newPk)) return bad(`key rotation entry ${expected} names a key that does not match its public key`);
      if (e.newKeyId === active) return bad(`key rotation entry ${expected} hands signing to the key that is already active`);
      if (x.sigNew !== 1) return bad(`key rotation entry ${expected} is not signed by the new key`);
      if (!trust.has(e.newKeyId as string)) return bad(`key rotation entry ${expected} hands signing to key ${String(e.newKeyId)}, which is not among the trusted keys`);
      active = e.newKeyId as string;
    }
    if (e.phase === "intent" && e.decision === "allow") this.open.add(e.seq);
    if (e.phase === "result" && typeof e.intent === "number") this.open.delete(e.intent);
    this.active = active;
    this.prev = e.hash;
    this.expected++;
    return undefined;
  }
}

function keyIdOf(publicKey: Uint8Array): string {
  return keyThumbprint(publicKey);
}

function windowText(k: TrustedKey): string {
  const t = (s: number): string => (Number.isFinite(s) ? new Date(s * 1000).toISOString().replace(".000Z", "Z") : "…");
  return `${t(k.from)} to ${t(k.to)}`;
}
