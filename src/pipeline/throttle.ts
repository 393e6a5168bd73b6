/**
 * Refusal floods stay bounded. Past REFUSALS_PER_MINUTE individual refusal entries in an identity's
 * log within the last minute (counted from the chain itself, so across sessions and processes),
 * further refusals are answered `denied: throttled: …` and not written one by one: this process
 * counts them and writes one summary entry (`refusals_throttled`, with the count and the time span)
 * per identity and minute, when the minute ends or the process closes. A deny-all agent hammering
 * sigil therefore writes at most ~60 entries a minute instead of thousands.
 */
import type { AuditChains, ChainState } from "../audit/chain.js";
import { THROTTLE_SUMMARY_TOOL } from "../audit/chain.js";
import { logInternal, refId } from "../errors.js";

/** The default limit; SIGIL_REFUSALS_PER_MINUTE (1 to 1,000,000, src/config.ts) sets another. */
export const REFUSALS_PER_MINUTE = 60;
export const REFUSAL_WINDOW_MS = 60_000;
export const THROTTLED = {
  reason: "throttled",
  message: "too many refused calls from this identity in the last minute; wait a minute before trying again.",
};

interface Pending {
  count: number;
  from: number;
  to: number;
  timer: NodeJS.Timeout;
}

export class RefusalThrottle {
  private readonly pending = new Map<string, Pending>();

  constructor(
    private readonly chains: Pick<AuditChains, "commit">,
    private readonly limit = REFUSALS_PER_MINUTE,
  ) {}

  /** Whether a refusal decided now must be throttled, given the chain state it is decided on. */
  over(state: ChainState, now: number): boolean {
    return state.refusalsSince(now - REFUSAL_WINDOW_MS) >= this.limit;
  }

  /** Counts one throttled refusal; its summary entry is written when the minute ends. */
  count(identityId: string, now: number): void {
    const p = this.pending.get(identityId);
    if (p) {
      p.count++;
      p.to = now;
      return;
    }
    const timer = setTimeout(() => void this.flush(identityId), REFUSAL_WINDOW_MS);
    timer.unref();
    this.pending.set(identityId, { count: 1, from: now, to: now, timer });
  }

  /** Writes the pending summary entries (of one identity, or all); called when the minute ends and on close. */
  async flush(identityId?: string): Promise<void> {
    const ids = identityId !== undefined ? [identityId] : [...this.pending.keys()];
    for (const id of ids) {
      const p = this.pending.get(id);
      if (!p) continue;
      this.pending.delete(id);
      clearTimeout(p.timer);
      try {
        await this.chains.commit(id, () => ({
          value: null,
          draft: {
            tool: THROTTLE_SUMMARY_TOOL,
            phase: "event",
            decision: "deny",
            reason: "throttled",
            count: p.count,
            from: new Date(p.from).toISOString(),
            to: new Date(p.to).toISOString(),
          },
        }));
      } catch (err) {
        logInternal(refId(), `summary of ${p.count} throttled refusals of ${id}`, err);
      }
    }
  }
}
