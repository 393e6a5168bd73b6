/**
 * What the exfiltration guard remembers about one identity, across sessions and processes: the
 * vault values it read in the last 24 hours and the tail of what it sent out in the last hour.
 *
 * It is one record per identity in the store's secret space, under a name the vault's name rule
 * can never produce (`JOURNAL_NAME`), sealed with XChaCha20-Poly1305 under the vault subkey with
 * associated data binding it to the identity and its version — the same protection as the secrets
 * it holds. Updates are compare-and-swap on the record's version (the store runs `make` under its
 * per-identity secrets lock), so two processes checking outbound text at once cannot both extend
 * the same tail: the second re-reads and re-checks against the first's text.
 *
 * A record that cannot be opened (altered, or from another master key) fails closed: outbound
 * calls of that identity are refused until an administrator removes it (`sigil secret delete` on
 * the record is refused by the name rule; delete the store record itself).
 */
import { open as openSealed, seal, type MasterKey } from "../crypto/core.js";
import { SigilError } from "../errors.js";
import type { Store } from "../../store/types.js";
import { carriesAny, compileSecrets, normalize } from "./exfiltration.js";

/** Not a valid secret name (`~` is outside the vault's name rule), so no tool or command can reach it. */
export const JOURNAL_NAME = "~exfiltration-guard";
export const READ_WINDOW_MS = 24 * 60 * 60 * 1000;
export const SEND_WINDOW_MS = 60 * 60 * 1000;
/** Raw characters of recent outbound text kept for encodings split across calls. */
export const RAW_TAIL = 4096;
/** Normalised characters of recent outbound text kept for plain runs split across calls. */
export const NORMALIZED_TAIL = 64;
const MAX_ATTEMPTS = 20;

interface Read {
  name: string;
  version: number;
  value: string;
  at: number;
}

interface Journal {
  reads: Read[];
  /** Recent outbound text: the raw tail and the normalised tail, and when it was last extended. */
  raw: string;
  norm: string;
  sentAt: number;
}

const EMPTY: Journal = { reads: [], raw: "", norm: "", sentAt: 0 };

const ad = (identityId: string, version: number): string => `sigil-exfiltration-guard-v1\n${identityId}\n${version}`;

export class ExfiltrationJournal {
  constructor(
    private readonly store: Store,
    private readonly master: MasterKey,
    private readonly now: () => number = Date.now,
  ) {}

  private get key(): Buffer {
    return this.master.subkey("vault");
  }

  private async load(identityId: string): Promise<{ version: number; journal: Journal }> {
    const rec = await this.store.getSecret(identityId, JOURNAL_NAME);
    if (!rec) return { version: 0, journal: EMPTY };
    try {
      const plain = openSealed(this.key, rec.sealed, ad(identityId, rec.version));
      const j = JSON.parse(Buffer.from(plain).toString("utf8")) as Journal;
      plain.fill(0);
      if (!Array.isArray(j.reads) || typeof j.raw !== "string" || typeof j.norm !== "string") throw new Error("shape");
      return { version: rec.version, journal: j };
    } catch {
      throw new SigilError("guard_unavailable", "the exfiltration guard's record for this identity cannot be opened, so nothing is sent.");
    }
  }

  /** Writes `next` as the version after `expected`; false when someone else wrote first. */
  private async swap(identityId: string, expected: number, next: Journal): Promise<boolean> {
    const bytes = Buffer.from(JSON.stringify(next), "utf8");
    try {
      await this.store.putSecret(identityId, JOURNAL_NAME, (previous) => {
        if (previous !== expected) throw new CasConflict();
        const version = previous + 1;
        return { name: JOURNAL_NAME, version, sealed: seal(this.key, bytes, ad(identityId, version)), updatedAt: new Date(this.now()).toISOString() };
      });
      return true;
    } catch (err) {
      if (err instanceof CasConflict) return false;
      throw err;
    } finally {
      bytes.fill(0);
    }
  }

  private live(j: Journal, now: number): Journal {
    const reads = j.reads.filter((r) => now - r.at < READ_WINDOW_MS && r.at <= now + 60_000);
    const recent = now - j.sentAt < SEND_WINDOW_MS;
    return { reads, raw: recent ? j.raw : "", norm: recent ? j.norm : "", sentAt: recent ? j.sentAt : 0 };
  }

  /** Remembers a value read with vault_get (call before the value is handed out; if it throws, do not hand it out). */
  async recordRead(identityId: string, read: { name: string; version: number; value: string }): Promise<void> {
    for (let i = 0; i < MAX_ATTEMPTS; i++) {
      const now = this.now();
      const { version, journal } = await this.load(identityId);
      const j = this.live(journal, now);
      const reads = j.reads.filter((r) => !(r.name === read.name && r.version === read.version && r.value === read.value));
      reads.push({ name: read.name, version: read.version, value: read.value, at: now });
      if (await this.swap(identityId, version, { ...j, reads })) return;
    }
    throw new SigilError("guard_unavailable", "the exfiltration guard's record is too busy to update; the secret was not returned.");
  }

  /**
   * True if `texts` (the string arguments of one tool call) carry a value this identity read in
   * the last 24 hours — alone, or following on from what it sent in the last hour. When they do
   * not and `outbound` is set, they are appended to the recent outbound tail (atomically with the
   * check). Identities that read nothing in 24 hours cost one record read.
   */
  async carries(identityId: string, texts: readonly string[], outbound: boolean): Promise<boolean> {
    for (let i = 0; i < MAX_ATTEMPTS; i++) {
      const now = this.now();
      const { version, journal } = await this.load(identityId);
      const j = this.live(journal, now);
      if (j.reads.length === 0) return false;
      const set = compileSecrets(j.reads.map((r) => r.value));
      if (carriesAny(set, texts)) return true;
      if (!outbound) return false;
      const joined = texts.filter((t) => t.length > 0).join("\n");
      // The same rule over the concatenation with the last hour's outbound text.
      if (j.raw !== "" && carriesAny(set, [j.raw, joined])) return true;
      if (j.norm !== "" && carriesAny(set, [j.norm + normalize(joined)])) return true;
      const raw = (j.raw + "\n" + joined).slice(-RAW_TAIL);
      const norm = (j.norm + normalize(joined)).slice(-NORMALIZED_TAIL);
      if (await this.swap(identityId, version, { reads: j.reads, raw, norm, sentAt: now })) return false;
    }
    throw new SigilError("guard_unavailable", "the exfiltration guard's record is too busy to update; nothing was sent.");
  }
}

class CasConflict extends Error {}
