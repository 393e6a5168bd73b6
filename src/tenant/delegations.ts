/**
 * Issuing and checking delegation statements (the format is src/provenance/delegation.ts).
 *
 * - `refreshed(record, at)`: the record with its statements brought up to date — a new statement
 *   when the active key, the channels or the policy differ from the open one (which is re-signed
 *   closed at `at`), every open one closed at revocation. Identity operations call it inside the
 *   same registry write that makes the change, so the statements never lag the record they vouch
 *   for; an identity made before tenants existed gets its first statement (dated from its key's
 *   activation) the first time one is asked for (`current`).
 * - `member(record, tenantId)`: whether the identity belongs to the tenant — its record says so AND
 *   the tenant's key signed a statement for it. The tenant key is checked against its sealed secret
 *   (src/tenant/tenants.ts), so a store writer without the master key can neither move an identity
 *   into a tenant nor make a key that passes for the tenant's.
 */
import { SigilError } from "../errors.js";
import { fromB64 } from "../crypto/encoding.js";
import type { JwksKey } from "../crypto/jwk.js";
import { tenantJwks } from "../provenance/directory.js";
import { policyHash } from "../identity/records.js";
import type { DelegationRecord, IdentityRecord, Store, TenantRecord } from "../../store/types.js";
import { type DelegationStatement, signDelegation, verifyDelegation } from "../provenance/delegation.js";
import { type Tenants, tenantOf } from "./tenants.js";
import { RecordTampered } from "../identity/record-mac.js";

/** What a verifier needs: the identity's statements and its tenant's public key (as a JWKS). */
export interface DelegationDocument {
  identity: string;
  tenant: { id: string; keys: JwksKey[] };
  delegations: DelegationRecord[];
}

const sameStatement = (d: DelegationRecord, want: Omit<DelegationStatement, "notBefore">): boolean =>
  d.tenant === want.tenant &&
  d.tenantKeyId === want.tenantKeyId &&
  d.identity === want.identity &&
  d.keyId === want.keyId &&
  d.policyHash === want.policyHash &&
  d.channels.length === want.channels.length &&
  d.channels.every((c, i) => c === want.channels[i]);

export class Delegations {
  constructor(
    private readonly store: Pick<Store, "getTenant" | "getIdentity" | "updateIdentity">,
    private readonly tenants: Pick<Tenants, "secretKey">,
    private readonly now: () => number,
  ) {}

  private async tenantOf(rec: IdentityRecord): Promise<TenantRecord> {
    const id = tenantOf(rec);
    const t = await this.store.getTenant(id);
    if (!t) throw new SigilError("tenant_missing", `The tenant ${id} of identity ${rec.id} is not in the registry.`);
    return t;
  }

  async refreshed(rec: IdentityRecord, at: string): Promise<IdentityRecord> {
    const list = rec.delegations ?? [];
    const open = list.filter((d) => d.notAfter === undefined);
    const active = rec.keys.find((k) => k.status === "active");
    const t = await this.tenantOf(rec);
    if (rec.revokedAt !== undefined || !active) {
      if (open.length === 0) return rec;
      const sk = await this.tenants.secretKey(t);
      const end = rec.revokedAt ?? at;
      return { ...rec, delegations: list.map((d) => (d.notAfter === undefined ? signDelegation(sk, { ...d, notAfter: end }) : d)) };
    }
    const want = { tenant: t.id, tenantKeyId: t.key.keyId, identity: rec.id, keyId: active.keyId, channels: [...rec.channels], policyHash: policyHash(rec.policy) };
    if (open.length === 1 && sameStatement(open[0]!, want)) return rec;
    const sk = await this.tenants.secretKey(t);
    const closed = list.map((d) => (d.notAfter === undefined ? signDelegation(sk, { ...d, notAfter: at }) : d));
    // The first statement of an identity stands from its key's activation (an identity made before
    // tenants existed is vouched for from then on); a later one from the change it follows.
    const notBefore = list.length === 0 ? (active.notBefore ?? rec.createdAt) : at;
    return { ...rec, delegations: [...closed, signDelegation(sk, { ...want, notBefore })] };
  }

  /** The identity's statements, up to date (issued now, in one registry write, if they lag its record). */
  async current(id: string): Promise<{ record: IdentityRecord; tenant: TenantRecord } | undefined> {
    let rec = await this.store.getIdentity(id);
    if (!rec) return undefined;
    const at = new Date(this.now()).toISOString();
    const fresh = await this.refreshed(rec, at);
    if (fresh !== rec) rec = await this.store.updateIdentity(id, (r) => this.refreshed(r, at));
    return { record: rec, tenant: await this.tenantOf(rec) };
  }

  /** What GET /identities/<id>/delegation serves and audit bundles carry. */
  async document(id: string): Promise<DelegationDocument | undefined> {
    const cur = await this.current(id);
    if (!cur) return undefined;
    return { identity: id, tenant: { id: cur.tenant.id, keys: tenantJwks(cur.tenant) }, delegations: cur.record.delegations ?? [] };
  }

  /** Whether the identity belongs to the tenant: its record says so, and the tenant's key vouches for it (see above). */
  member = async (rec: IdentityRecord, tenantId: string): Promise<boolean> => {
    if (tenantOf(rec) !== tenantId) return false;
    // A tenant record that fails its MAC vouches for no one (the store has reported it).
    const t = await this.store.getTenant(tenantId).catch((err: unknown) => (err instanceof RecordTampered ? undefined : Promise.reject(err)));
    if (!t) return false;
    try {
      await this.tenants.secretKey(t); // the record's key is the tenant's own (opens its sealed secret)
    } catch {
      return false;
    }
    const pk = fromB64(t.key.publicKey);
    return (rec.delegations ?? []).some((d) => d.tenant === tenantId && d.identity === rec.id && d.tenantKeyId === t.key.keyId && verifyDelegation(d, pk));
  };
}
