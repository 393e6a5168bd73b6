/**
 * The vault's administrative side: put and delete an identity's secrets, list their names. Agents
 * read through `VaultReader` (vault_get) only. The audit log records names and versions, never
 * values.
 */
import { Denied, SigilError } from "../errors.js";
import { type AuditChains, type ChainState, GUARD_RESET_TOOL, type VaultRead } from "../audit/chain.js";
import { type ExfiltrationJournal, READ_WINDOW_MS } from "../policy/exfiltration-journal.js";
import type { Store } from "../../store/types.js";
import { adminChange } from "./identities.js";
import { requireIdentity } from "./records.js";
import { type SecretValue, Vault, assertSecretName, secretValueBytes } from "./vault.js";

/** What an agent tool may do with the vault: read the bound identity's secrets. */
export interface VaultReader {
  get(name: string): Promise<SecretValue | undefined>;
}

export class Secrets {
  constructor(
    private readonly store: Store,
    private readonly chains: AuditChains,
    readonly vault: Vault,
    /** This process's instance id, recorded in admin intents (see `adminChange`). */
    private readonly instanceId?: string,
    /** The exfiltration guard's journal (src/policy/exfiltration-journal.ts), for `resetGuard`. */
    private readonly guard?: Pick<ExfiltrationJournal, "missing">,
    private readonly now: () => number = Date.now,
  ) {}

  /** A reader of one identity's secrets. */
  readerFor(identityId: string): VaultReader {
    return { get: (name) => this.vault.get(identityId, name) };
  }

  /**
   * Stores `value` as the next version of the identity's secret `name`. The audit log records the
   * name and version (never the value): an intent before the sealed value is written, its result
   * after (see `adminChange`). Admin writers are serialised by the identity's admin lock, so the
   * recorded version is the one written.
   */
  async put(id: string, name: string, value: string): Promise<{ name: string; version: number }> {
    assertSecretName(name);
    secretValueBytes(value).fill(0);
    return this.store.withIdentityLock(id, async () => {
      const rec = await requireIdentity(this.store, id);
      if (rec.revokedAt) throw new Denied("revoked", `Identity ${id} is revoked.`);
      const version = await this.vault.nextVersion(id, name);
      return adminChange(
        this.chains,
        this.instanceId,
        id,
        "secret_put",
        () => ({ value: null, fields: { name, version } }),
        () => this.vault.put(id, name, value, version),
        () => ({ name, version }),
      );
    });
  }

  /** Deletes the identity's secret `name` (every version); the audit log records the name and the version deleted. */
  async delete(id: string, name: string): Promise<{ name: string; deleted: boolean; version?: number }> {
    assertSecretName(name);
    return this.store.withIdentityLock(id, async () => {
      await requireIdentity(this.store, id);
      const version = await this.vault.version(id, name);
      if (version === undefined) return { name, deleted: false };
      const deleted = await adminChange(
        this.chains,
        this.instanceId,
        id,
        "secret_deleted",
        () => ({ value: null, fields: { name, version } }),
        () => this.vault.delete(id, name),
        () => ({ name, version }),
      );
      return { name, deleted, version };
    });
  }

  /**
   * After an investigation of `guard_tampered`: acknowledges the vault reads the log records (24 h)
   * that the exfiltration guard's journal lost and the vault can no longer rebuild, so outbound
   * calls are decided again (those values are no longer guarded: replace them where they are used).
   * Audited in the identity's log: intent `guard_reset` naming each read (name, version, time),
   * its `ok` result is the acknowledgement (src/audit/chain.ts). Refused (audited, nothing changes)
   * while the tamper is still present — the journal's record exists but cannot be opened (restore
   * it, or remove it: then its reads are lost and can be acknowledged) — or when the journal lacks
   * nothing.
   */
  async resetGuard(id: string): Promise<{ identityId: string; acknowledged: Array<{ name: string; version: number; readAt: string }> }> {
    await requireIdentity(this.store, id);
    const guard = this.guard;
    if (!guard) throw new SigilError("unavailable", "the exfiltration guard is not available here.");
    const lost = async (state: ChainState): Promise<VaultRead[] | { reason: string; message: string }> => {
      let missing: VaultRead[] | undefined;
      try {
        missing = await guard.missing(id, state.vaultReadsSince(this.now() - READ_WINDOW_MS));
      } catch (err) {
        if (err instanceof SigilError && err.code === "guard_unavailable") {
          return { reason: "guard_unavailable", message: `the exfiltration guard's record of ${id} exists but cannot be opened (altered, or from another master key): the tamper is still there. Restore the record from a backup, or remove it from the store (its reads are then lost and can be acknowledged), and run this again.` };
        }
        throw err;
      }
      if (!missing || missing.length === 0) return { reason: "not_tampered", message: `the exfiltration guard's record of ${id} holds every secret the audit log says vault_get handed out in 24 hours (or can rebuild it from the vault): there is nothing to reset.` };
      return missing;
    };
    return this.store.withIdentityLock(id, async () => {
      // Decided, and a refusal recorded, under the chain lock (the log and the journal as they are now).
      const { value: found } = await this.chains.commit<VaultRead[] | { reason: string; message: string }>(id, async (state) => {
        const r = await lost(state);
        if (Array.isArray(r)) return { value: r };
        return { value: r, draft: { tool: GUARD_RESET_TOOL, session: "admin", phase: "call" as const, decision: "deny", reason: r.reason } };
      });
      if (!Array.isArray(found)) throw new Denied(found.reason, found.message);
      const reads = found.map((r) => ({ t: r.t, name: r.name, version: r.version }));
      await adminChange(
        this.chains,
        this.instanceId,
        id,
        GUARD_RESET_TOOL,
        () => ({ value: null, fields: { reads } }),
        async (_v, state) => {
          // Still exactly these, under the lock that records the result (a restored journal in between: nothing to acknowledge).
          const now = await lost(state);
          const key = (x: VaultRead): string => `${x.t}\n${x.version}\n${x.name}`;
          if (!Array.isArray(now) || now.map(key).sort().join("\0") !== reads.map(key).sort().join("\0")) {
            throw new Denied("not_tampered", "the guard's record changed while the reset was being recorded; nothing was acknowledged. Run it again.");
          }
        },
        () => ({ acknowledged: reads.length }),
      );
      return { identityId: id, acknowledged: reads.map((r) => ({ name: r.name, version: r.version, readAt: new Date(r.t).toISOString() })) };
    });
  }

  /** The names and current versions of the identity's secrets (never values). */
  async list(id: string): Promise<Array<{ name: string; version: number }>> {
    await requireIdentity(this.store, id);
    const out: Array<{ name: string; version: number }> = [];
    for (const name of await this.vault.names(id)) {
      const version = await this.vault.version(id, name).catch(() => undefined);
      if (version !== undefined) out.push({ name, version });
    }
    return out;
  }
}
