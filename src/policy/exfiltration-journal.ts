/**
 * What the exfiltration guard remembers about one identity, across sessions and processes: the
 * vault values it read in the last 24 hours and, per argument name, the end of what it sent out in
 * the last hour.
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
import { type MasterKey } from "../crypto/master-key.js";
import { open as openSealed, seal } from "../crypto/seal.js";
import { SigilError } from "../errors.js";
import type { Store } from "../../store/types.js";
import { EXFILTRATION, carriesAny, compileSecrets, normalize, scan } from "./exfiltration.js";

/** Not a valid secret name (`~` is outside the vault's name rule), so no tool or command can reach it. */
export const JOURNAL_NAME = "~exfiltration-guard";
export const READ_WINDOW_MS = 24 * 60 * 60 * 1000;
export const SEND_WINDOW_MS = 60 * 60 * 1000;
/** Raw characters of recent outbound text kept per argument (and of a field's start checked after it). */
export const RAW_TAIL = 1024;
/** Normalised characters of recent outbound text kept for plain runs split across calls. */
export const NORMALIZED_TAIL = 64;
const MAX_ATTEMPTS = 20;

interface Read {
  name: string;
  version: number;
  value: string;
  at: number;
}

/** The recent end of one argument's outbound stream (by argument name): raw, and normalised. */
interface End {
  raw: string;
  norm: string;
}

interface Journal {
  reads: Read[];
  /** The last hour's outbound text, per argument name, and when it was last extended. */
  ends: Record<string, End>;
  sentAt: number;
}

const EMPTY: Journal = { reads: [], ends: {}, sentAt: 0 };
/** At most this many argument names are followed (tools have fewer). */
const MAX_ENDS = 32;

const ad = (identityId: string, version: number): string => `sigil-exfiltration-guard-v1\n${identityId}\n${version}`;

/** A read the audit log says vault_get handed out (src/audit/chain.ts, `ChainState.vaultReadsSince`). */
export interface LoggedRead {
  t: number;
  name: string;
  version: number;
}

/** Why an outbound call is refused after the journal was found missing reads the log records. */
export const GUARD_TAMPERED = {
  reason: "guard_tampered",
  message: (n: number): string =>
    `the exfiltration guard's record lacks ${n} secret${n === 1 ? "" : "s"} the audit log says vault_get handed out in 24 h (deleted or rolled back); nothing is sent until ${n === 1 ? "it is" : "they are"} 24 h old or an admin resets the guard.`,
};

/**
 * How much older than the guard's 24 h window a logged read must be before its absence from the
 * journal is no longer a sign of tampering (clocks of different processes or instances may differ).
 */
export const CLOCK_MARGIN_MS = 5 * 60 * 1000;

export class ExfiltrationJournal {
  constructor(
    private readonly store: Store,
    private readonly master: MasterKey,
    private readonly now: () => number = Date.now,
    /** The identity's secret as the vault holds it now (to rebuild a read the journal lost). */
    private readonly vault?: (identityId: string, name: string) => Promise<{ name: string; version: number; value: string } | undefined>,
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
      if (!Array.isArray(j.reads) || j.ends === null || typeof j.ends !== "object") throw new Error("shape");
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
    return { reads, ends: recent ? j.ends : {}, sentAt: recent ? j.sentAt : 0 };
  }

  /**
   * Remembers a value read with vault_get (call before the value is handed out; if it throws, do
   * not hand it out). `at`: when it was read, if not now (a read rebuilt from the log).
   */
  async recordRead(identityId: string, read: { name: string; version: number; value: string }, at?: number): Promise<void> {
    for (let i = 0; i < MAX_ATTEMPTS; i++) {
      const now = this.now();
      const { version, journal } = await this.load(identityId);
      const j = this.live(journal, now);
      const reads = j.reads.filter((r) => !(r.name === read.name && r.version === read.version && r.value === read.value));
      reads.push({ name: read.name, version: read.version, value: read.value, at: at ?? now });
      if (await this.swap(identityId, version, { ...j, reads })) return;
    }
    throw new SigilError("guard_unavailable", "the exfiltration guard's record is too busy to update; the secret was not returned.");
  }

  /**
   * True if `fields` (a tool call's arguments, by name, as text) carry a value this identity read
   * in the last 24 hours — alone, or continuing what it sent in the last hour: each field's start
   * is checked after the end of every field sent before (so a secret split over two messages, or
   * over an SMS body and an email text, is caught), and each field's stream is followed across
   * calls (so one split over many messages is too, blank ones between included). When nothing is
   * carried and `outbound` is set, the fields extend the streams, atomically with the check.
   * Identities that read nothing in 24 hours cost one record read.
   */
  async carries(identityId: string, fields: ReadonlyArray<readonly [string, string]>, outbound: boolean): Promise<boolean> {
    for (let i = 0; i < MAX_ATTEMPTS; i++) {
      const now = this.now();
      const { version, journal } = await this.load(identityId);
      const j = this.live(journal, now);
      if (j.reads.length === 0) return false;
      const set = compileSecrets(j.reads.map((r) => r.value));
      if (carriesAny(set, fields.map(([, v]) => v))) return true;
      if (!outbound) return false;
      const ends = Object.values(j.ends);
      for (const [, v] of fields) {
        if (v.length === 0) continue;
        const head = v.slice(0, RAW_TAIL);
        const headNorm = normalize(head);
        for (const e of ends) {
          if (carriesAny(set, [e.raw, head]) || scan(set, e.norm + headNorm)) return true;
        }
      }
      const next: Record<string, End> = { ...j.ends };
      for (const [name, v] of fields) {
        if (v.length === 0) continue;
        const prev = next[name] ?? { raw: "", norm: "" };
        next[name] = { raw: (prev.raw + "\n" + v).slice(-RAW_TAIL), norm: (prev.norm + normalize(v)).slice(-NORMALIZED_TAIL) };
      }
      const names = Object.keys(next);
      for (const n of names.slice(0, Math.max(0, names.length - MAX_ENDS))) delete next[n];
      if (await this.swap(identityId, version, { reads: j.reads, ends: next, sentAt: now })) return false;
    }
    throw new SigilError("guard_unavailable", "the exfiltration guard's record is too busy to update; nothing was sent.");
  }

  /**
   * Compares the journal with what the identity's signed audit log says vault_get handed out
   * (`logged`, the reads inside the window): the log's `ok` result of a vault_get is written only
   * after the journal recorded the value, so a logged read the journal lacks means the journal was
   * deleted, truncated or put back from an older copy by whoever writes the store. What can be
   * rebuilt is: a secret whose version in the vault is still the one read is recorded again, with
   * the time the log gives (it expires when it would have). Then `fields` are checked against the
   * rebuilt journal. Returns the refusal, or undefined when the journal holds every logged read
   * and the fields carry none of them. Reads one record when nothing is missing.
   */
  async reconcile(
    identityId: string,
    logged: readonly LoggedRead[],
    fields: ReadonlyArray<readonly [string, string]>,
  ): Promise<{ reason: string; message: string } | undefined> {
    const missing = await this.missing(identityId, logged);
    if (missing === undefined) return undefined;
    if (missing.length > 0) return { reason: GUARD_TAMPERED.reason, message: GUARD_TAMPERED.message(missing.length) };
    if (await this.carries(identityId, fields, false)) return { reason: EXFILTRATION.reason, message: EXFILTRATION.message };
    return undefined;
  }

  /**
   * The logged reads (inside the window) the journal lacks after rebuilding what the vault still
   * holds: empty when it holds them all after a rebuild, undefined when nothing needed rebuilding.
   * Throws `guard_unavailable` when the journal cannot be opened.
   */
  async missing(identityId: string, logged: readonly LoggedRead[]): Promise<LoggedRead[] | undefined> {
    const now = this.now();
    const required = logged.filter((r) => now - r.t < READ_WINDOW_MS - CLOCK_MARGIN_MS);
    if (required.length === 0) return undefined;
    const held = (j: Journal): ((r: LoggedRead) => boolean) => {
      const have = new Set(j.reads.map((r) => `${r.version}\n${r.name}`));
      return (r) => !have.has(`${r.version}\n${r.name}`);
    };
    let missing = required.filter(held(this.live((await this.load(identityId)).journal, now)));
    if (missing.length === 0) return undefined;
    for (const r of missing) {
      const secret = await this.vault?.(identityId, r.name);
      if (secret && secret.version === r.version) await this.recordRead(identityId, secret, r.t);
    }
    missing = required.filter(held(this.live((await this.load(identityId)).journal, this.now())));
    return missing;
  }
}

class CasConflict extends Error {}

/** Every string in a value — strings and property names, at any depth (a tool call's argument, for the guard). */
export function stringsOf(value: unknown, out: string[] = [], depth = 0): string[] {
  if (depth > 8) return out;
  if (typeof value === "string") out.push(value);
  else if (Array.isArray(value)) for (const v of value) stringsOf(v, out, depth + 1);
  else if (value !== null && typeof value === "object") {
    for (const [k, v] of Object.entries(value)) {
      out.push(k);
      stringsOf(v, out, depth + 1);
    }
  }
  return out;
}
