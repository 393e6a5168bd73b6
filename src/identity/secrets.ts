/**
 * The vault's administrative side: put and delete an identity's secrets, list their names. Agents
 * read through `VaultReader` (vault_get) only. The audit log records names and versions, never
 * values.
 */
import { Denied } from "../errors.js";
import type { AuditChains } from "../audit/chain.js";
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
