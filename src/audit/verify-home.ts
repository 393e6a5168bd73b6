/**
 * Verifying a home's logs with public data only: the registry's public keys and the audit logs.
 * `sigil audit verify [ID]` opens the store through this, read-only, and never loads the master
 * key — an auditor who can read the registry and the audit files but holds no secret (no
 * SIGIL_MASTER_KEY, the key file unreadable or absent) can verify.
 */
import { describeStore, openStore } from "../../store/index.js";
import { type IdentityRecord, type Store, StoreError } from "../../store/types.js";
import { SigilError } from "../errors.js";
import { realFiles } from "../util/fsx.js";
import { filesFor } from "../util/faults.js";
import type { Config } from "../config.js";
import { type KeySource, type VerifyReport, keysFor, report } from "./anchor.js";
import { type PublicKeyInfo, verifyChain } from "./verify.js";

/** The public keys of an identity as the registry records them (pending keys are never trusted). */
export function registryKeys(rec: IdentityRecord): PublicKeyInfo[] {
  return rec.keys.map((k) => ({ keyId: k.keyId, publicKey: k.publicKey, status: k.status, notBefore: k.notBefore, notAfter: k.notAfter }));
}

export class PublicHome {
  private constructor(readonly store: Store) {}

  static async open(opts: { home: string; config: Pick<Config, "storeUrl" | "testFaults"> }): Promise<PublicHome> {
    const storeOpts = { home: opts.home, files: filesFor(realFiles, opts.config.testFaults), storeUrl: opts.config.storeUrl };
    const where = describeStore(storeOpts);
    const store = openStore(storeOpts);
    try {
      await store.meta();
    } catch (err) {
      await store.close().catch(() => {});
      if (err instanceof StoreError && err.code === "not_initialised") {
        throw new SigilError("not_initialised", `No sigil ${store.kind === "postgres" ? "registry in" : "home at"} ${where}: run \`sigil init\` first.`);
      }
      const why = store.kind === "postgres" && err instanceof StoreError ? ` (${err.message})` : "";
      throw new SigilError("registry_unreadable", `The registry at ${where} cannot be read${why}.`, { cause: err });
    }
    return new PublicHome(store);
  }

  async close(): Promise<void> {
    await this.store.close();
  }

  async requireIdentity(id: string): Promise<IdentityRecord> {
    const rec = typeof id === "string" ? await this.store.getIdentity(id) : undefined;
    if (!rec) throw new SigilError("not_found", `No identity ${typeof id === "string" ? id.slice(0, 40) : ""}.`);
    return rec;
  }

  publicKeys(rec: IdentityRecord): PublicKeyInfo[] {
    return registryKeys(rec);
  }

  /**
   * Verifies one identity's log or every log, against the registry's keys (anchored to the home)
   * or, when `trusted` is given, against those keys only.
   */
  async verify(id?: string, trusted?: KeySource): Promise<VerifyReport> {
    const recs = id !== undefined ? [await this.requireIdentity(id)] : await this.store.listIdentities();
    const identities = [];
    for (const rec of recs) {
      const keys = trusted ? keysFor(rec.id, trusted) : registryKeys(rec);
      identities.push(await verifyChain(rec.id, this.store.audit.readLines(rec.id), keys));
    }
    return report(identities, trusted ? "keys" : "home");
  }
}
