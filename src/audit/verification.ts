/**
 * Each audit chain's verification status, kept beside the chains (`AuditChains.verification`):
 * what the console shows for a log, read without computing anything.
 *
 * - The chains report every length they see a log reach (`appended`, from each batch: entries this
 *   process appended and entries other processes did), so a status knows when entries arrived
 *   after its last verification: "verified up to N; M newer pending" — never "verified" for them.
 * - Verifications run on a verifier thread (verify-pool.ts `verifyOnThread`: the per-entry work and
 *   the sequential pass both there); this thread only reads the log and passes lines on. A full
 *   pass checks the whole log; a tail pass goes on from where the last one stopped (its
 *   `CheckpointState`) with only the entries after it, read backwards from the log's end.
 * - What runs when: a log nobody has looked at costs nothing. `status` (a page showing the log)
 *   queues a full pass when there has been none for 5 minutes (an edit anywhere in the log is found
 *   then), else a tail pass when entries are pending; after that, appends to a log looked at in
 *   the last 10 minutes queue a tail pass. `verifyNow` queues a full pass at once ("Verify again").
 *   At most a few run at once; their batches interleave on the thread, so a short log is not stuck
 *   behind a long one.
 * - A failure stays until a full pass succeeds. Without verifier threads (SIGIL_VERIFY_THREADS=0,
 *   or threads that cannot start) the same checker runs here, yielding to the event loop often.
 */
import type { AuditBackend } from "../../store/types.js";
import { ChainChecker, type CheckpointState, type PublicKeyInfo, type VerifyResult } from "./verify.js";
import { verifyOnThread } from "./verify-pool.js";
import { nextTurn } from "../util/yield.js";

export type VerificationState = "unverified" | "verified" | "pending" | "failed";

export interface VerificationStatus {
  /**
   * `unverified`: no verification has finished yet; `verified`: every entry this process knows of
   * passed; `pending`: entries 1…verifiedSeq passed, newer ones are not verified yet; `failed`.
   */
  state: VerificationState;
  /** The log's length as this process last saw it. */
  entries: number;
  /** Entries 1 … verifiedSeq passed (for `failed`: the ones before the first bad entry). */
  verifiedSeq: number;
  /** When the last verification finished (ms), and the last one over the whole log. */
  verifiedAt?: number;
  fullAt?: number;
  firstBadSeq?: number;
  error?: string;
  /** A verification of this log is queued or running. */
  running: boolean;
}

interface Track {
  entries: number;
  verifiedSeq: number;
  checkpoint?: CheckpointState;
  verifiedAt?: number;
  fullAt?: number;
  failure?: { firstBadSeq?: number; error: string };
  queued?: "full" | "tail";
  running?: "full" | "tail";
  viewedAt: number;
}

export interface VerificationOptions {
  backend: AuditBackend;
  /** The keys the identity's log must verify under (its published keys, as `sigil audit verify` uses). */
  keys: (identityId: string) => Promise<PublicKeyInfo[]>;
  now: () => number;
}

/** A full pass is made again when the last one is older than this (an edit to old entries is found then). */
export const FULL_EVERY_MS = 5 * 60_000;
/** Appends to a log shown this recently are verified as they come. */
const WATCH_MS = 10 * 60_000;
const MAX_TRACKED = 20_000;
const MAX_RUNNING = 4;
/** A tail longer than this is verified by a full pass instead. */
const TAIL_MAX = 20_000;
const TAIL_PAGE = 500;

export class ChainVerification {
  private readonly tracks = new Map<string, Track>();
  private readonly queue: string[] = [];
  private running = 0;
  /** Resolves when nothing is queued or running (for tests and shutdown). */
  private idleWaiters: Array<() => void> = [];

  constructor(private readonly opts: VerificationOptions) {}

  /**
   * The log's status as last verified — read, never computed. Marks the log as looked at and
   * queues what it needs (see the module comment). `seen`: a length the caller saw the log reach.
   */
  status(identityId: string, seen?: number): VerificationStatus {
    const t = this.track(identityId, true);
    t.viewedAt = this.opts.now();
    if (seen !== undefined && seen > t.entries) t.entries = seen;
    this.want(identityId, t);
    return this.view(t);
  }

  /** Queues a full pass of the log now ("Verify again"). */
  verifyNow(identityId: string): VerificationStatus {
    const t = this.track(identityId, true);
    t.viewedAt = this.opts.now();
    this.enqueue(identityId, t, "full");
    return this.view(t);
  }

  /** The chains saw the log reach `seq` entries. */
  appended(identityId: string, seq: number): void {
    const t = this.tracks.get(identityId);
    if (!t || seq <= t.entries) return;
    t.entries = seq;
    if (this.opts.now() - t.viewedAt <= WATCH_MS) this.want(identityId, t);
  }

  /** Resolves once no verification is queued or running. */
  idle(): Promise<void> {
    if (this.running === 0 && this.queue.length === 0) return Promise.resolve();
    return new Promise((resolve) => this.idleWaiters.push(resolve));
  }

  private track(identityId: string, create: boolean): Track {
    let t = this.tracks.get(identityId);
    if (t) {
      this.tracks.delete(identityId); // re-inserted: the least recently looked at goes first
      this.tracks.set(identityId, t);
      return t;
    }
    t = { entries: 0, verifiedSeq: 0, viewedAt: this.opts.now() };
    if (create) {
      if (this.tracks.size >= MAX_TRACKED) {
        for (const [id, old] of this.tracks) {
          if (!old.running && !old.queued) {
            this.tracks.delete(id);
            break;
          }
        }
      }
      this.tracks.set(identityId, t);
    }
    return t;
  }

  private view(t: Track): VerificationStatus {
    const state: VerificationState = t.failure ? "failed" : t.fullAt === undefined ? "unverified" : t.verifiedSeq >= t.entries ? "verified" : "pending";
    return {
      state,
      entries: Math.max(t.entries, t.verifiedSeq),
      verifiedSeq: t.verifiedSeq,
      ...(t.verifiedAt !== undefined ? { verifiedAt: t.verifiedAt } : {}),
      ...(t.fullAt !== undefined ? { fullAt: t.fullAt } : {}),
      ...(t.failure?.firstBadSeq !== undefined ? { firstBadSeq: t.failure.firstBadSeq } : {}),
      ...(t.failure ? { error: t.failure.error } : {}),
      running: t.running !== undefined || t.queued !== undefined,
    };
  }

  /** What the log needs now, if anything: a full pass when there was none for a while, else the tail. */
  private want(identityId: string, t: Track): void {
    const fullDue = t.fullAt === undefined || this.opts.now() - t.fullAt > FULL_EVERY_MS;
    if (fullDue && t.running !== "full") return this.enqueue(identityId, t, "full");
    if (!t.failure && t.verifiedSeq < t.entries) this.enqueue(identityId, t, "tail");
  }

  private enqueue(identityId: string, t: Track, kind: "full" | "tail"): void {
    if (t.queued === "full" || t.queued === kind) return;
    if (t.running && kind === "tail") {
      // The pass under way reads up to where the log is now, or its end hands over to `want` again.
      if (!t.queued) t.queued = "tail";
      return;
    }
    const wasQueued = t.queued !== undefined;
    t.queued = kind;
    if (!wasQueued && !t.running) this.queue.push(identityId);
    this.pump();
  }

  private pump(): void {
    while (this.running < MAX_RUNNING && this.queue.length > 0) {
      const id = this.queue.shift()!;
      const t = this.tracks.get(id);
      if (!t || !t.queued || t.running) continue;
      const kind = t.queued;
      t.queued = undefined;
      t.running = kind;
      this.running++;
      void this.run(id, t, kind).finally(() => {
        t.running = undefined;
        if (t.queued === "tail" && t.failure) t.queued = undefined; // a failure stays until a full pass
        this.running--;
        if (t.queued) this.queue.push(id);
        else if (this.opts.now() - t.viewedAt <= WATCH_MS) this.want(id, t);
        this.pump();
        if (this.running === 0 && this.queue.length === 0) for (const w of this.idleWaiters.splice(0)) w();
      });
    }
  }

  private async run(identityId: string, t: Track, kind: "full" | "tail"): Promise<void> {
    try {
      if (kind === "tail") {
        // Only from where a successful pass stopped; a failure stays until a full pass.
        if (!t.checkpoint || t.failure) return;
        if (await this.tail(identityId, t, t.checkpoint)) return;
      }
      const keys = await this.opts.keys(identityId);
      const r = await verifyLines(identityId, () => this.opts.backend.readLines(identityId), keys);
      this.record(t, r.result, r.checkpoint, true);
    } catch (err) {
      t.failure = { error: `the log could not be verified: ${(err as { publicMessage?: string }).publicMessage ?? (err instanceof Error ? err.message : String(err))}` };
      t.checkpoint = undefined;
    }
  }

  /**
   * Verifies the entries after `from`, read backwards from the log's end page by page; false when
   * a full pass is needed instead (a tail too long, or a log that no longer ends the way it did).
   */
  private async tail(identityId: string, t: Track, from: CheckpointState): Promise<boolean> {
    const backend = this.opts.backend;
    if (!backend.linesBefore) return false;
    const known = from.expected - 1;
    const newest: string[] = [];
    let cursor: { position: number } | undefined;
    let top: number | undefined;
    for (;;) {
      const page = await backend.linesBefore(identityId, cursor, TAIL_PAGE);
      let reached = false;
      for (const { line } of page) {
        const seq = seqOf(line);
        top ??= seq ?? Number.MAX_SAFE_INTEGER;
        if (seq !== undefined && seq <= known) {
          if (seq === known && newest.length === 0 && hashOf(line) !== from.prev) return false;
          reached = true;
          break;
        }
        newest.push(line);
      }
      const next = page[page.length - 1]?.before;
      if (reached || !next || next.position <= 0) break;
      if (newest.length > TAIL_MAX) return false;
      cursor = next;
      await nextTurn();
    }
    if (top !== undefined && top < known) {
      this.record(t, { id: identityId, entries: top, ok: false, firstBadSeq: top + 1, error: `the log ends at entry ${top}, but entries up to ${known} were verified before (entries were removed)` }, undefined, false);
      return true;
    }
    if (newest.length === 0) {
      t.verifiedAt = this.opts.now();
      return true;
    }
    const keys = await this.opts.keys(identityId);
    newest.reverse();
    const r = await verifyLines(identityId, () => newest, keys, from);
    this.record(t, r.result, r.checkpoint, false);
    return true;
  }

  private record(t: Track, result: VerifyResult, checkpoint: CheckpointState | undefined, full: boolean): void {
    const now = this.opts.now();
    if (result.ok) {
      t.verifiedSeq = result.entries;
      t.checkpoint = checkpoint;
      t.verifiedAt = now;
      if (full) {
        t.fullAt = now;
        t.failure = undefined;
      }
    } else {
      t.verifiedSeq = result.entries;
      t.checkpoint = undefined;
      t.verifiedAt = now;
      if (full) t.fullAt = now;
      t.failure = { ...(result.firstBadSeq !== undefined ? { firstBadSeq: result.firstBadSeq } : {}), error: result.error ?? "verification failed" };
    }
    if (t.verifiedSeq > t.entries) t.entries = t.verifiedSeq;
    if (!result.ok && result.firstBadSeq !== undefined && result.firstBadSeq > t.entries) t.entries = result.firstBadSeq;
  }
}

/**
 * Verifies lines on a verifier thread; without one, here, with the same checker, yielding to the
 * event loop every 256 entries. `lines` is called again for the fallback (a stream is read once).
 */
async function verifyLines(
  identityId: string,
  lines: () => AsyncIterable<string> | Iterable<string>,
  keys: PublicKeyInfo[],
  resume?: CheckpointState,
): Promise<{ result: VerifyResult; checkpoint?: CheckpointState }> {
  const onThread = await verifyOnThread(identityId, lines(), keys, resume).catch(() => undefined);
  if (onThread) return onThread;
  const c = ChainChecker.open(identityId, keys, resume);
  if (!(c instanceof ChainChecker)) return { result: c };
  let n = 0;
  for await (const line of lines() as AsyncIterable<string>) {
    const failed = c.check(c.examine(line));
    if (failed) return { result: failed };
    if (++n % 256 === 0) await nextTurn();
  }
  return { result: c.result(), checkpoint: c.checkpoint() };
}

function seqOf(line: string): number | undefined {
  try {
    const e = JSON.parse(line) as { seq?: unknown };
    return typeof e.seq === "number" ? e.seq : undefined;
  } catch {
    return undefined;
  }
}

function hashOf(line: string): string | undefined {
  try {
    const e = JSON.parse(line) as { hash?: unknown };
    return typeof e.hash === "string" ? e.hash : undefined;
  } catch {
    return undefined;
  }
}
