/**
 * Tenants: sets of identities with their own admin token and their own Ed25519 key.
 *
 * - `default` is made by `sigil init` (and, for a home made before tenants existed, on its first
 *   open: every identity without a tenant belongs to it). Its admin is the root admin (the token
 *   `sigil init` printed), which sees every tenant.
 * - `sigil tenant create` / `create_tenant` makes `tn_…` with its own admin token (`sigil_admin_…`,
 *   only its hash is kept) that sees and manages only its tenant's identities (src/tenant/scope.ts).
 * - The record is MAC'd under the master key (kind `tenant`, src/identity/authenticated-store.ts):
 *   a store writer cannot copy one tenant's admin token hash into another tenant's record.
 * - The tenant key signs delegation statements for its identities' keys
 *   (src/provenance/delegation.ts). Its secret is sealed under the master key's signing-keys
 *   subkey, the associated data binding it to the tenant and key id, so a store writer without the
 *   master key can neither read it nor move it to another tenant.
 */
import { b64, fromB64 } from "../crypto/encoding.js";
import { type MasterKey } from "../crypto/master-key.js";
import { open as openSealed, seal } from "../crypto/seal.js";
import { generateSigningKey, keyThumbprint, sign, verifySignature } from "../crypto/ed25519.js";
import { newToken, randomId } from "../crypto/tokens.js";
import { Denied, SigilError } from "../errors.js";
import { NAME_RE } from "../identity/records.js";
import { RecordMac, TokenHashes } from "../identity/record-mac.js";
import { TENANT_RECORD_KIND } from "../identity/authenticated-store.js";
import { DEFAULT_TENANT, type IdentityRecord, type KeyRecord, type Store, StoreError, type TenantRecord } from "../../store/types.js";

export { DEFAULT_TENANT };

/** The tenant an identity belongs to (records older than tenants belong to `default`). */
export function tenantOf(rec: Pick<IdentityRecord, "tenantId">): string {
  return rec.tenantId ?? DEFAULT_TENANT;
}

export const tenantKeyAd = (tenantId: string, keyId: string): string => `sigil-tenant-key-v1\n${tenantId}\n${keyId}`;

/** A tenant as the CLI and admin tools show it: never its token hash or sealed key. */
export interface TenantView {
  id: string;
  name: string;
  keyId: string;
  publicKey: string;
  createdAt: string;
}

export function tenantView(t: TenantRecord): TenantView {
  return { id: t.id, name: t.name, keyId: t.key.keyId, publicKey: t.key.publicKey, createdAt: t.createdAt };
}

function newTenantKey(master: MasterKey, tenantId: string, at: string): KeyRecord {
  const kp = generateSigningKey();
  const keyId = keyThumbprint(kp.publicKey);
  return {
    keyId,
    publicKey: b64(kp.publicKey),
    sealed: seal(master.subkey("signing-keys"), kp.secretKey, tenantKeyAd(tenantId, keyId)),
    createdAt: at,
    notBefore: at,
    status: "active",
  };
}

/**
 * Makes the default tenant if the home has none (a home made before tenants existed). Safe to race.
 * `store` may be the backend itself (sigil init, the first open): the record is sealed here.
 */
export async function ensureDefaultTenant(store: Pick<Store, "getTenant" | "createTenant">, master: MasterKey, now: () => number): Promise<void> {
  if (await store.getTenant(DEFAULT_TENANT)) return;
  const at = new Date(now()).toISOString();
  const record: TenantRecord = { id: DEFAULT_TENANT, name: "default", key: newTenantKey(master, DEFAULT_TENANT, at), createdAt: at, updatedAt: at };
  try {
    await store.createTenant(RecordMac.from(master).seal(TENANT_RECORD_KIND, DEFAULT_TENANT, record));
  } catch (err) {
    if (err instanceof StoreError && err.code === "conflict") return; // another process made it first
    throw err;
  }
}

export class Tenants {
  private readonly secretKeys = new Map<string, Uint8Array>();

  constructor(
    private readonly store: Pick<Store, "getTenant" | "createTenant" | "listTenants" | "tenantByTokenHash">,
    private readonly master: MasterKey,
    private readonly now: () => number,
  ) {}

  async create(input: { name: string }): Promise<{ id: string; name: string; adminToken: string; keyId: string; publicKey: string }> {
    const name = typeof input.name === "string" ? input.name.trim() : "";
    if (!NAME_RE.test(name)) {
      throw new Denied("invalid_arguments", "name must be 1-64 letters, digits, spaces, dots, dashes or underscores, starting with a letter or digit.");
    }
    const id = randomId("tn_");
    const adminToken = newToken("admin");
    const at = new Date(this.now()).toISOString();
    const key = newTenantKey(this.master, id, at);
    await this.store.createTenant({ id, name, adminTokenHash: TokenHashes.from(this.master).hash(adminToken), key, createdAt: at, updatedAt: at });
    return { id, name, adminToken, keyId: key.keyId, publicKey: key.publicKey };
  }

  async list(): Promise<TenantView[]> {
    return (await this.store.listTenants()).map(tenantView);
  }

  /** The tenant's record; refused (`not_found`) when there is none. */
  async require(id: string): Promise<TenantRecord> {
    const t = typeof id === "string" ? await this.store.getTenant(id) : undefined;
    if (!t) throw new Denied("not_found", `No tenant ${typeof id === "string" ? id.slice(0, 40) : ""}.`);
    return t;
  }

  /**
   * The tenant's secret key, opened from its sealed form. Opening proves the record is the one
   * sigil made for this tenant: the sealed key only opens under this home's master key with this
   * tenant's id and key id, and its public half must be the record's public key.
   */
  async secretKey(t: TenantRecord): Promise<Uint8Array> {
    const cacheKey = `${t.id}\n${t.key.keyId}\n${t.key.publicKey}`;
    let sk = this.secretKeys.get(cacheKey);
    if (!sk) {
      let opened: Uint8Array;
      try {
        opened = openSealed(this.master.subkey("signing-keys"), t.key.sealed, tenantKeyAd(t.id, t.key.keyId));
      } catch {
        throw new SigilError("key_missing", `the key of tenant ${t.id} cannot be opened with this home's master key`);
      }
      const pk = fromB64(t.key.publicKey);
      const probe = "sigil-tenant-key-check-v1";
      if (keyThumbprint(pk) !== t.key.keyId || !verifySignature(pk, probe, sign(opened, probe))) {
        throw new SigilError("key_missing", `the key of tenant ${t.id} does not match its record`);
      }
      sk = opened;
      this.secretKeys.set(cacheKey, sk);
    }
    return sk;
  }
}
