/**
 * The store as the rest of sigil reads it: every identity and tenant record is MAC'd under the master key
 * when written and checked when read (src/identity/record-mac.ts). A backend (store/file,
 * store/postgres) keeps no key and knows nothing of this; whoever writes its files or tables
 * without the master key can make a record unreadable, never make it say something sigil did not
 * write.
 *
 * - Writes (`createIdentity`, `updateIdentity`) seal the record; `updateIdentity` refuses to
 *   build on a record that fails its check (so a forged field is never re-sealed as genuine).
 * - Reads (`getIdentity`, `identityByTokenHash`) throw `RecordTampered` for a record whose MAC is
 *   missing or wrong; `listIdentities` leaves such records out. Each detection is reported to
 *   `onTampered` first (the composition root audits it in that identity's log and on stderr).
 * - Tenant records likewise (kind `tenant`): `getTenant` and `tenantByTokenHash` throw
 *   `RecordTampered`, `listTenants` leaves such records out — so a tenant admin token hash copied
 *   into another tenant's record names no one. A tenant has no log of its own: its detections are
 *   reported on stderr.
 * - Everything else (metadata, secrets — sealed with their own associated data —, the audit
 *   chains — signed —, locks) passes through unchanged.
 *
 * A MAC proves sigil wrote the record, not that it is the latest one: rollback to an older, validly
 * MAC'd record is checked against the identity's signed log by the agent pipeline.
 */
import type { AuditBackend, IdentityRecord, Store, TenantRecord } from "../../store/types.js";
import { type RecordMac, RecordTampered } from "./record-mac.js";
import { nextTurn } from "../util/yield.js";

/** The record kind of tenant records' MACs. */
export const TENANT_RECORD_KIND = "tenant";

/** What is reported for each record that fails its check. */
export interface TamperReport {
  kind: "identity" | "tenant";
  id: string;
  /** The record as found (for de-duplicating reports of the same forgery). */
  record: unknown;
}

/**
 * Every member of `Store` this class does not define itself is the backend's own, bound to it
 * (the constructor installs them): the metadata, secrets, tenants, approvers, approvals, locks and
 * the audit chains pass through unchanged. Records that carry their own MAC (approvers) are
 * checked by their owners (src/approval/approvers.ts); identity and tenant records are checked here.
 */
// eslint-disable-next-line @typescript-eslint/no-unsafe-declaration-merging
export interface AuthenticatedStore extends Store {}

// eslint-disable-next-line @typescript-eslint/no-unsafe-declaration-merging
export class AuthenticatedStore {
  /** Checked records (the file store hands out the same object until the record changes). */
  private readonly checked = new WeakSet<object>();

  constructor(
    /** The backend, unchecked: only for what authenticates itself (sealed keys, see keyring.ts). */
    readonly raw: Store,
    private readonly macs: RecordMac,
    private readonly onTampered: (report: TamperReport) => Promise<void>,
  ) {
    for (const name of methodsOf(raw)) {
      if (!(name in this)) (this as unknown as Record<string, unknown>)[name] = (raw as unknown as Record<string, (...a: unknown[]) => unknown>)[name]!.bind(raw);
    }
  }

  get kind(): Store["kind"] {
    return this.raw.kind;
  }
  get audit(): AuditBackend {
    return this.raw.audit;
  }

  /** The record if its MAC checks; otherwise reports it and throws `RecordTampered`. */
  private async verified(rec: IdentityRecord | undefined, id: string): Promise<IdentityRecord | undefined> {
    if (!rec) return undefined;
    if (this.checked.has(rec)) return rec;
    // The MAC is over the id the record was asked by: a record moved under another id fails.
    if (rec.id !== id || !this.macs.check("identity", id, rec)) {
      await this.report(id, rec);
      throw new RecordTampered("identity", id);
    }
    this.checked.add(rec);
    return rec;
  }

  private async report(id: string, record: unknown, kind: TamperReport["kind"] = "identity"): Promise<void> {
    await this.onTampered({ kind, id, record }).catch(() => {});
  }

  /** The tenant record if its MAC checks (bound to the id it was asked by); otherwise reports it and throws `RecordTampered`. */
  private async verifiedTenant(rec: TenantRecord | undefined, id: string): Promise<TenantRecord | undefined> {
    if (!rec) return undefined;
    if (this.checked.has(rec)) return rec;
    if (rec.id !== id || !this.macs.check(TENANT_RECORD_KIND, id, rec)) {
      await this.report(id, rec, "tenant");
      throw new RecordTampered(TENANT_RECORD_KIND, id);
    }
    this.checked.add(rec);
    return rec;
  }

  /** The tenant record sealed: its `mac` covers every other member, bound to its id. */
  sealTenant(record: TenantRecord): TenantRecord {
    return this.macs.seal(TENANT_RECORD_KIND, record.id, record);
  }

  createTenant(record: TenantRecord): Promise<void> {
    return this.raw.createTenant(this.sealTenant(record));
  }

  async getTenant(id: string): Promise<TenantRecord | undefined> {
    return this.verifiedTenant(await this.raw.getTenant(id), id);
  }

  async tenantByTokenHash(tokenHash: string): Promise<TenantRecord | undefined> {
    const rec = await this.raw.tenantByTokenHash(tokenHash);
    return rec ? this.verifiedTenant(rec, typeof rec.id === "string" ? rec.id : "") : undefined;
  }

  /** Every tenant whose record checks (a record that fails is reported and left out). */
  async listTenants(): Promise<TenantRecord[]> {
    const out: TenantRecord[] = [];
    for (const rec of await this.raw.listTenants()) {
      try {
        const ok = await this.verifiedTenant(rec, typeof rec.id === "string" ? rec.id : "");
        if (ok) out.push(ok);
      } catch (err) {
        if (!(err instanceof RecordTampered)) throw err;
      }
    }
    return out;
  }

  async updateTenant(id: string, update: (current: TenantRecord) => TenantRecord): Promise<TenantRecord> {
    let tampered: TenantRecord | undefined;
    try {
      return await this.raw.updateTenant(id, (current) => {
        if (current.id !== id || !this.macs.check(TENANT_RECORD_KIND, id, current)) {
          tampered = current;
          throw new RecordTampered(TENANT_RECORD_KIND, id);
        }
        return this.sealTenant(update(current));
      });
    } catch (err) {
      if (err instanceof RecordTampered && tampered) await this.report(id, tampered, "tenant");
      throw err;
    }
  }

  /** The identity record sealed: its `mac` covers every other member, bound to its id. */
  seal(record: IdentityRecord): IdentityRecord {
    return this.macs.seal("identity", record.id, record);
  }

  createIdentity(record: IdentityRecord): Promise<void> {
    return this.raw.createIdentity(this.seal(record));
  }

  async getIdentity(id: string): Promise<IdentityRecord | undefined> {
    return this.verified(await this.raw.getIdentity(id), id);
  }

  async identityByTokenHash(tokenHash: string): Promise<IdentityRecord | undefined> {
    const rec = await this.raw.identityByTokenHash(tokenHash);
    return rec ? this.verified(rec, typeof rec.id === "string" ? rec.id : "") : undefined;
  }

  /** Every identity whose record checks (a record that fails is reported and left out). */
  async listIdentities(): Promise<IdentityRecord[]> {
    const out: IdentityRecord[] = [];
    let i = 0;
    for (const rec of await this.raw.listIdentities()) {
      try {
        const ok = await this.verified(rec, typeof rec.id === "string" ? rec.id : "");
        if (ok) out.push(ok);
      } catch (err) {
        if (!(err instanceof RecordTampered)) throw err;
      }
      if (++i % 256 === 0) await nextTurn(); // a MAC per record: 10,000 in one go would hold up every request
    }
    return out;
  }

  async updateIdentity(id: string, update: (current: IdentityRecord) => IdentityRecord | Promise<IdentityRecord>): Promise<IdentityRecord> {
    let tampered: IdentityRecord | undefined;
    try {
      return await this.raw.updateIdentity(id, async (current) => {
        if (current.id !== id || !this.macs.check("identity", id, current)) {
          tampered = current;
          throw new RecordTampered("identity", id);
        }
        const next = await update(current);
        return this.seal(next);
      });
    } catch (err) {
      // Reported outside the backend's lock (the report writes to the identity's audit chain).
      if (err instanceof RecordTampered && tampered) await this.report(id, tampered);
      throw err;
    }
  }

}

/** The names of an object's methods, own and inherited (up to Object.prototype). */
function methodsOf(obj: object): string[] {
  const out = new Set<string>();
  for (let p: object | null = obj; p && p !== Object.prototype; p = Object.getPrototypeOf(p)) {
    for (const name of Object.getOwnPropertyNames(p)) {
      if (name === "constructor") continue;
      const d = Object.getOwnPropertyDescriptor(p, name);
      if (d && typeof d.value === "function") out.add(name);
    }
  }
  return [...out];
}
