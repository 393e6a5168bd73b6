/**
 * Each chain's live verification status for the audit pages: `sigil audit verify` (the
 * `verify_audit` operation, scoped to the admin's tenant) run in the background — one chain at a
 * time, so pages never wait for it — and its result kept until the log grows or 5 minutes pass.
 * A page shows the last result (or "verifying…") and the console's script refreshes it; "Verify
 * again" verifies at once.
 */
import type { AdminContext } from "../pipeline/tool.js";

export type ChainStatus =
  | { state: "verifying" }
  | { state: "ok" | "failed"; entries: number; firstBadSeq?: number; error?: string; at: number };

interface Entry {
  result?: Exclude<ChainStatus, { state: "verifying" }>;
  /** The log's length when the result was computed (a longer log is verified again). */
  seq?: number;
  running?: boolean;
}

/** A result for an unchanged log is kept this long (verifying a 1,000,000-entry log takes minutes of CPU). */
const FRESH_MS = 5 * 60_000;
const MAX_TRACKED = 20_000;

export class ChainStatuses {
  private readonly entries = new Map<string, Entry>();
  private queue: Promise<void> = Promise.resolve();

  constructor(private readonly now: () => number) {}

  /**
   * The chain's status as last verified; starts a verification when there is none, the log has
   * grown since (`seq`: its current length), it is older than 15 s, or `force`.
   */
  status(ops: Pick<AdminContext, "audit">, id: string, seq: number, force = false): ChainStatus {
    let e = this.entries.get(id);
    if (!e) {
      if (this.entries.size >= MAX_TRACKED) this.entries.delete(this.entries.keys().next().value!);
      this.entries.set(id, (e = {}));
    }
    const stale = !e.result || e.seq !== seq || this.now() - e.result.at > FRESH_MS || force;
    if (stale && !e.running) {
      e.running = true;
      const entry = e;
      this.queue = this.queue.then(async () => {
        try {
          const r = (await ops.audit.verify(id)).identities[0];
          entry.result = r
            ? { state: r.ok ? "ok" : "failed", entries: r.entries, ...(r.firstBadSeq !== undefined ? { firstBadSeq: r.firstBadSeq } : {}), ...(r.error ? { error: r.error } : {}), at: this.now() }
            : { state: "failed", entries: 0, error: "no such log", at: this.now() };
          entry.seq = seq;
        } catch (err) {
          entry.result = { state: "failed", entries: 0, error: (err as { publicMessage?: string }).publicMessage ?? "the log could not be read", at: this.now() };
          entry.seq = seq;
        } finally {
          entry.running = false;
        }
      });
    }
    return force || !e.result ? { state: "verifying" } : e.result;
  }
}
