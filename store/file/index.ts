/**
 * The embedded store: a directory (the home) that several sigil processes share safely.
 *
 * - `sigil.json`: registry metadata (lowdb document).
 * - `identities/<id>.json`: one lowdb document per identity, so an update rewrites one small file
 *   and costs the same with 10 identities or 10,000. Read-modify-write happens under the identity's
 *   cross-process lock; readers revalidate their cache with one stat() per call.
 * - `tokens/<hash>`: the token index (token hash → identity id); the identity document stays the
 *   authority (its tokenHash must match), so a stale index entry can never authenticate. The
 *   hashes are keyed and the documents MAC'd under the master key, which this store never holds:
 *   src/identity/authenticated-store.ts checks them.
 * - `tenants/<id>.json`: one document per tenant; `tenant-tokens/<hash>`: the tenant admin token
 *   index (hash → tenant id; the tenant document stays the authority, as for identities).
 * - `secrets/<id>.json`: sealed vault secrets.
 * - `audit/<id>.jsonl`: the audit chains (see audit.ts).
 * - `approvers/<apr_id>.json` + `approver-tokens/<sha256>`: approvers and their token index (the
 *   approver document stays the authority, as for identities).
 * - `approvals/<apv_id>.json`: approval requests, written once (their status lives in the log).
 * - `provider-keys/<tenant>.json`: a tenant's mandate provider key, written once; `mandates/<mnd_id>.json`:
 *   issued payment mandates, written once (their use lives in the log). Both are the file store's
 *   equivalent of PostgreSQL migration 7; a home made before them has neither directory.
 * - `oauth-clients/<oc_id>.json`, `oauth-grants/<og_id>.json`: OAuth clients registered here and
 *   grants (src/oauth/); a grant's tokens are looked up by the grant id they carry, so no index.
 * - `inbound/<identity id>/<msg_id>.json`: messages received for an identity, content sealed
 *   (src/inbound/messages.ts); made on first receipt, like the approval directories.
 */
import path from "node:path";
import { Low } from "lowdb";
import { type FileLayer, createFileDurable, writeFileDurable } from "../../src/util/fsx.js";
import { type Locks } from "../../src/util/lock.js";
import { byCreation, nextTurn } from "../../src/util/yield.js";
import {
  type ApprovalRecord,
  type PasskeyRecord,
  type ApproverRecord,
  type IdentityRecord,
  type InboundRecord,
  INBOUND_ID_RE,
  type MandateRecord,
  type PaymentKeyRecord,
  type OAuthClientRecord,
  type OAuthGrantRecord,
  type RegistryMeta,
  type SecretRecord,
  type Store,
  type TenantRecord,
  TENANT_ID_RE,
  StoreError,
  ID_RE,
  HASH_RE,
  APPROVER_ID_RE,
  APPROVAL_ID_RE,
  MANDATE_ID_RE,
  OAUTH_CLIENT_ID_RE,
  OAUTH_GRANT_ID_RE,
} from "../types.js";
import { FileAuditBackend } from "./audit.js";
import { DurableJsonDocument } from "./json-document.js";


interface CachedIdentity {
  mtimeMs: number;
  ino: number;
  size: number;
  record: IdentityRecord;
}

interface SecretsDoc {
  secrets: Record<string, SecretRecord>;
}

export class FileStore implements Store {
  readonly kind = "file" as const;
  readonly audit: FileAuditBackend;
  private readonly cache = new Map<string, CachedIdentity>();
  private metaCache?: RegistryMeta;

  constructor(
    readonly home: string,
    private readonly files: FileLayer,
    private readonly locks: Locks,
  ) {
    this.audit = new FileAuditBackend(path.join(home, "audit"), files, locks);
  }

  private metaFile = (): string => path.join(this.home, "sigil.json");
  private identityFile = (id: string): string => path.join(this.home, "identities", `${id}.json`);
  private tokenFile = (hash: string): string => path.join(this.home, "tokens", hash);
  private secretsFile = (id: string): string => path.join(this.home, "secrets", `${id}.json`);
  private tenantFile = (id: string): string => path.join(this.home, "tenants", `${id}.json`);
  private tenantTokenFile = (hash: string): string => path.join(this.home, "tenant-tokens", hash);

  async initialise(meta: RegistryMeta): Promise<void> {
    for (const d of ["", "identities", "tokens", "tenants", "tenant-tokens", "secrets", "audit", "outbox"]) {
      await this.files.mkdir(path.join(this.home, d), 0o700);
    }
    const created = await createFileDurable(this.files, this.metaFile(), JSON.stringify(meta, null, 1) + "\n");
    if (!created) throw new StoreError(`${this.home} is already initialised`, "already_initialised");
  }

  async meta(): Promise<RegistryMeta> {
    if (this.metaCache) return this.metaCache;
    const db = new Low<RegistryMeta | null>(new DurableJsonDocument(this.files, this.metaFile()), null);
    await db.read();
    if (!db.data) throw new StoreError(`no sigil home at ${this.home} (run \`sigil init\`)`, "not_initialised");
    if (db.data.format !== "sigil-home" || typeof db.data.adminTokenHash !== "string") {
      throw new StoreError(`${this.metaFile()} is not a sigil registry`, "unreadable");
    }
    this.metaCache = db.data;
    return db.data;
  }

  async updateMeta(update: (current: RegistryMeta) => RegistryMeta): Promise<RegistryMeta> {
    return this.locks.withLock("registry:meta", async () => {
      this.metaCache = undefined;
      const before = await this.meta();
      const after = update(structuredClone(before));
      await writeFileDurable(this.files, this.metaFile(), JSON.stringify(after, null, 1) + "\n");
      this.metaCache = after;
      return after;
    });
  }

  async createIdentity(record: IdentityRecord): Promise<void> {
    if (!ID_RE.test(record.id)) throw new StoreError("bad identity id", "conflict");
    await this.locks.withLock(`registry:${record.id}`, async () => {
      // The token index first: an index entry without its identity authenticates nothing.
      await writeFileDurable(this.files, this.tokenFile(record.tokenHash), record.id + "\n");
      const created = await createFileDurable(this.files, this.identityFile(record.id), JSON.stringify(record, null, 1) + "\n");
      if (!created) throw new StoreError(`identity ${record.id} exists`, "conflict");
    });
  }

  async getIdentity(id: string): Promise<IdentityRecord | undefined> {
    if (!ID_RE.test(id)) return undefined;
    const file = this.identityFile(id);
    let st: { size: number; mtimeMs: number; ino: number };
    try {
      st = await this.files.stat(file);
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === "ENOENT") {
        this.cache.delete(id);
        return undefined;
      }
      throw new StoreError("the registry cannot be read", "unreadable", { cause: err });
    }
    const hit = this.cache.get(id);
    if (hit && hit.mtimeMs === st.mtimeMs && hit.ino === st.ino && hit.size === st.size) return hit.record;
    const db = new Low<IdentityRecord | null>(new DurableJsonDocument(this.files, file), null);
    await db.read();
    if (!db.data) return undefined;
    this.cache.set(id, { ...st, record: db.data });
    return db.data;
  }

  async identityByTokenHash(tokenHash: string): Promise<IdentityRecord | undefined> {
    if (!HASH_RE.test(tokenHash)) return undefined;
    let id: string;
    try {
      id = (await this.files.readFile(this.tokenFile(tokenHash))).toString("utf8").trim();
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === "ENOENT") return undefined;
      throw new StoreError("the registry cannot be read", "unreadable", { cause: err });
    }
    return this.getIdentity(id);
  }

  async listIdentities(): Promise<IdentityRecord[]> {
    await this.meta();
    const names = await this.files.readdir(path.join(this.home, "identities"));
    const out: IdentityRecord[] = [];
    let i = 0;
    for (const n of names.sort()) {
      if (!n.endsWith(".json") || n.startsWith(".")) continue;
      const rec = await this.getIdentity(n.slice(0, -5));
      if (rec) out.push(rec);
      if (++i % 256 === 0) await nextTurn(); // stat() is synchronous: 10,000 of them in one go would hold up every request
    }
    return out.sort(byCreation);
  }

  withIdentityLock<T>(id: string, fn: () => Promise<T>): Promise<T> {
    return this.locks.withLock(`admin:${id}`, fn);
  }

  async updateIdentity(
    id: string,
    update: (current: IdentityRecord) => IdentityRecord | Promise<IdentityRecord>,
  ): Promise<IdentityRecord> {
    return this.locks.withLock(`registry:${id}`, async () => {
      const db = new Low<IdentityRecord | null>(new DurableJsonDocument(this.files, this.identityFile(id)), null);
      await db.read();
      if (!db.data) throw new StoreError(`no identity ${id}`, "not_found");
      const before = db.data;
      const after = await update(structuredClone(before));
      if (after.tokenHash !== before.tokenHash) {
        await writeFileDurable(this.files, this.tokenFile(after.tokenHash), id + "\n");
      }
      db.data = after;
      await db.write();
      if (after.tokenHash !== before.tokenHash) {
        await this.files.unlink(this.tokenFile(before.tokenHash)).catch(() => {});
      }
      this.cache.delete(id);
      return after;
    });
  }

  async createTenant(record: TenantRecord): Promise<void> {
    if (!TENANT_ID_RE.test(record.id)) throw new StoreError("bad tenant id", "conflict");
    if (record.adminTokenHash !== undefined && !HASH_RE.test(record.adminTokenHash)) throw new StoreError("bad token hash", "conflict");
    await this.meta();
    // Homes made before tenants existed have neither directory.
    for (const d of ["tenants", "tenant-tokens"]) await this.files.mkdir(path.join(this.home, d), 0o700);
    await this.locks.withLock(`tenant:${record.id}`, async () => {
      if (record.adminTokenHash !== undefined) {
        // The token index first: an index entry without its tenant authenticates nothing.
        const indexed = await createFileDurable(this.files, this.tenantTokenFile(record.adminTokenHash), record.id + "\n");
        if (!indexed) throw new StoreError("that admin token hash is taken", "conflict");
      }
      const created = await createFileDurable(this.files, this.tenantFile(record.id), JSON.stringify(record, null, 1) + "\n");
      if (!created) throw new StoreError(`tenant ${record.id} exists`, "conflict");
    });
  }

  async getTenant(id: string): Promise<TenantRecord | undefined> {
    if (typeof id !== "string" || !TENANT_ID_RE.test(id)) return undefined;
    const db = new Low<TenantRecord | null>(new DurableJsonDocument(this.files, this.tenantFile(id)), null);
    await db.read();
    return db.data ?? undefined;
  }

  async tenantByTokenHash(tokenHash: string): Promise<TenantRecord | undefined> {
    if (typeof tokenHash !== "string" || !HASH_RE.test(tokenHash)) return undefined;
    let id: string;
    try {
      id = (await this.files.readFile(this.tenantTokenFile(tokenHash))).toString("utf8").trim();
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === "ENOENT") return undefined;
      throw new StoreError("the registry cannot be read", "unreadable", { cause: err });
    }
    return this.getTenant(id);
  }

  async updateTenant(id: string, update: (current: TenantRecord) => TenantRecord): Promise<TenantRecord> {
    if (typeof id !== "string" || !TENANT_ID_RE.test(id)) throw new StoreError(`no tenant ${id}`, "not_found");
    return this.locks.withLock(`tenant:${id}`, async () => {
      const db = new Low<TenantRecord | null>(new DurableJsonDocument(this.files, this.tenantFile(id)), null);
      await db.read();
      if (!db.data) throw new StoreError(`no tenant ${id}`, "not_found");
      const before = db.data;
      const after = update(structuredClone(before));
      if (after.id !== id || after.adminTokenHash !== before.adminTokenHash) throw new StoreError("an update cannot change a tenant's id or admin token", "conflict");
      db.data = after;
      await db.write();
      return after;
    });
  }

  async listTenants(): Promise<TenantRecord[]> {
    await this.meta();
    let names: string[];
    try {
      names = await this.files.readdir(path.join(this.home, "tenants"));
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === "ENOENT") return [];
      throw new StoreError("the registry cannot be read", "unreadable", { cause: err });
    }
    const out: TenantRecord[] = [];
    for (const n of names) {
      if (!n.endsWith(".json") || n.startsWith(".")) continue;
      const rec = await this.getTenant(n.slice(0, -5));
      if (rec) out.push(rec);
    }
    return out.sort((a, b) => a.createdAt.localeCompare(b.createdAt) || a.id.localeCompare(b.id));
  }

  private secretsDb(identityId: string): Low<SecretsDoc> {
    return new Low<SecretsDoc>(new DurableJsonDocument(this.files, this.secretsFile(identityId)), { secrets: {} });
  }

  async putSecret(identityId: string, name: string, make: (previousVersion: number) => SecretRecord): Promise<SecretRecord> {
    return this.locks.withLock(`secrets:${identityId}`, async () => {
      const db = this.secretsDb(identityId);
      await db.read();
      const rec = make(db.data.secrets[name]?.version ?? 0);
      db.data.secrets[name] = rec;
      await db.write();
      return rec;
    });
  }

  async getSecret(identityId: string, name: string): Promise<SecretRecord | undefined> {
    const db = this.secretsDb(identityId);
    await db.read();
    return Object.hasOwn(db.data.secrets, name) ? db.data.secrets[name] : undefined;
  }

  async deleteSecret(identityId: string, name: string): Promise<boolean> {
    return this.locks.withLock(`secrets:${identityId}`, async () => {
      const db = this.secretsDb(identityId);
      await db.read();
      if (!Object.hasOwn(db.data.secrets, name)) return false;
      delete db.data.secrets[name];
      await db.write();
      return true;
    });
  }

  async listSecretNames(identityId: string): Promise<string[]> {
    const db = this.secretsDb(identityId);
    await db.read();
    return Object.keys(db.data.secrets).sort();
  }

  private approverFile = (id: string): string => path.join(this.home, "approvers", `${id}.json`);
  private approverTokenFile = (hash: string): string => path.join(this.home, "approver-tokens", hash);
  private approvalFile = (id: string): string => path.join(this.home, "approvals", `${id}.json`);

  private async readDoc<T>(file: string): Promise<T | undefined> {
    const db = new Low<T | null>(new DurableJsonDocument(this.files, file), null);
    await db.read();
    return db.data ?? undefined;
  }

  private async dirNames(dir: string): Promise<string[]> {
    try {
      return (await this.files.readdir(path.join(this.home, dir))).filter((n) => n.endsWith(".json") && !n.startsWith(".")).sort();
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === "ENOENT") return [];
      throw new StoreError("the registry cannot be read", "unreadable", { cause: err });
    }
  }

  async createApprover(record: ApproverRecord): Promise<void> {
    if (!APPROVER_ID_RE.test(record.id) || !HASH_RE.test(record.tokenHash)) throw new StoreError("bad approver record", "conflict");
    for (const d of ["approvers", "approver-tokens"]) await this.files.mkdir(path.join(this.home, d), 0o700);
    await this.locks.withLock(`approver:${record.id}`, async () => {
      await writeFileDurable(this.files, this.approverTokenFile(record.tokenHash), record.id + "\n");
      const created = await createFileDurable(this.files, this.approverFile(record.id), JSON.stringify(record, null, 1) + "\n");
      if (!created) throw new StoreError(`approver ${record.id} exists`, "conflict");
    });
  }

  async getApprover(id: string): Promise<ApproverRecord | undefined> {
    if (typeof id !== "string" || !APPROVER_ID_RE.test(id)) return undefined;
    return this.readDoc<ApproverRecord>(this.approverFile(id));
  }

  async approverByTokenHash(tokenHash: string): Promise<ApproverRecord | undefined> {
    if (typeof tokenHash !== "string" || !HASH_RE.test(tokenHash)) return undefined;
    let id: string;
    try {
      id = (await this.files.readFile(this.approverTokenFile(tokenHash))).toString("utf8").trim();
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === "ENOENT") return undefined;
      throw new StoreError("the registry cannot be read", "unreadable", { cause: err });
    }
    return this.getApprover(id);
  }

  async listApprovers(): Promise<ApproverRecord[]> {
    const out: ApproverRecord[] = [];
    for (const n of await this.dirNames("approvers")) {
      const rec = await this.getApprover(n.slice(0, -5));
      if (rec) out.push(rec);
    }
    return out.sort((a, b) => a.createdAt.localeCompare(b.createdAt) || a.id.localeCompare(b.id));
  }

  async updateApprover(id: string, update: (current: ApproverRecord) => ApproverRecord): Promise<ApproverRecord> {
    if (!APPROVER_ID_RE.test(id)) throw new StoreError(`no approver ${id}`, "not_found");
    return this.locks.withLock(`approver:${id}`, async () => {
      const db = new Low<ApproverRecord | null>(new DurableJsonDocument(this.files, this.approverFile(id)), null);
      await db.read();
      if (!db.data) throw new StoreError(`no approver ${id}`, "not_found");
      const before = db.data;
      const after = update(structuredClone(before));
      if (after.id !== id || after.tokenHash !== before.tokenHash) throw new StoreError("an update cannot change an approver's id or token", "conflict");
      db.data = after;
      await db.write();
      // A removed approver's token names no one: its index entry goes too.
      if (after.removedAt) await this.files.unlink(this.approverTokenFile(after.tokenHash)).catch(() => {});
      return after;
    });
  }

  private passkeyFile = (approverId: string): string => path.join(this.home, "passkeys", `${approverId}.json`);

  async listPasskeys(approverId: string): Promise<PasskeyRecord[]> {
    if (!APPROVER_ID_RE.test(approverId)) return [];
    return (await this.readDoc<PasskeyRecord[]>(this.passkeyFile(approverId))) ?? [];
  }

  async updatePasskeys(approverId: string, update: (current: PasskeyRecord[]) => PasskeyRecord[]): Promise<PasskeyRecord[]> {
    if (!APPROVER_ID_RE.test(approverId)) throw new StoreError(`no approver ${approverId}`, "not_found");
    await this.files.mkdir(path.join(this.home, "passkeys"), 0o700);
    return this.locks.withLock(`passkeys:${approverId}`, async () => {
      const db = new Low<PasskeyRecord[] | null>(new DurableJsonDocument(this.files, this.passkeyFile(approverId)), null);
      await db.read();
      db.data = update(structuredClone(db.data ?? []));
      await db.write();
      return db.data;
    });
  }

  async createApproval(record: ApprovalRecord): Promise<void> {
    if (!APPROVAL_ID_RE.test(record.id)) throw new StoreError("bad approval id", "conflict");
    await this.files.mkdir(path.join(this.home, "approvals"), 0o700);
    const created = await createFileDurable(this.files, this.approvalFile(record.id), JSON.stringify(record, null, 1) + "\n");
    if (!created) throw new StoreError(`approval ${record.id} exists`, "conflict");
  }

  async getApproval(id: string): Promise<ApprovalRecord | undefined> {
    if (typeof id !== "string" || !APPROVAL_ID_RE.test(id)) return undefined;
    return this.readDoc<ApprovalRecord>(this.approvalFile(id));
  }

  async listApprovals(opts: { sinceIso?: string } = {}): Promise<ApprovalRecord[]> {
    const out: ApprovalRecord[] = [];
    for (const n of await this.dirNames("approvals")) {
      const rec = await this.getApproval(n.slice(0, -5));
      if (rec && (opts.sinceIso === undefined || rec.requestedAt >= opts.sinceIso)) out.push(rec);
    }
    return out.sort((a, b) => a.requestedAt.localeCompare(b.requestedAt) || a.id.localeCompare(b.id));
  }

  private providerKeyFile = (tenantId: string): string => path.join(this.home, "provider-keys", `${tenantId}.json`);
  private mandateFile = (id: string): string => path.join(this.home, "mandates", `${id}.json`);

  async putProviderKey(tenantId: string, record: PaymentKeyRecord): Promise<PaymentKeyRecord> {
    if (!TENANT_ID_RE.test(tenantId)) throw new StoreError("bad tenant id", "conflict");
    await this.files.mkdir(path.join(this.home, "provider-keys"), 0o700);
    const created = await createFileDurable(this.files, this.providerKeyFile(tenantId), JSON.stringify(record, null, 1) + "\n");
    if (created) return record;
    const held = await this.getProviderKey(tenantId);
    if (!held) throw new StoreError(`the provider key of ${tenantId} cannot be read`, "unreadable");
    return held;
  }

  async getProviderKey(tenantId: string): Promise<PaymentKeyRecord | undefined> {
    if (typeof tenantId !== "string" || !TENANT_ID_RE.test(tenantId)) return undefined;
    return this.readDoc<PaymentKeyRecord>(this.providerKeyFile(tenantId));
  }

  async createMandate(record: MandateRecord): Promise<void> {
    if (!MANDATE_ID_RE.test(record.id)) throw new StoreError("bad mandate id", "conflict");
    await this.files.mkdir(path.join(this.home, "mandates"), 0o700);
    const created = await createFileDurable(this.files, this.mandateFile(record.id), JSON.stringify(record, null, 1) + "\n");
    if (!created) throw new StoreError(`mandate ${record.id} exists`, "conflict");
  }

  async getMandate(id: string): Promise<MandateRecord | undefined> {
    if (typeof id !== "string" || !MANDATE_ID_RE.test(id)) return undefined;
    return this.readDoc<MandateRecord>(this.mandateFile(id));
  }

  async listMandates(): Promise<MandateRecord[]> {
    const out: MandateRecord[] = [];
    for (const n of await this.dirNames("mandates")) {
      const rec = await this.getMandate(n.slice(0, -5));
      if (rec) out.push(rec);
    }
    return out.sort((a, b) => a.id.localeCompare(b.id));
  }

  private oauthClientFile = (id: string): string => path.join(this.home, "oauth-clients", `${id}.json`);
  private oauthGrantFile = (id: string): string => path.join(this.home, "oauth-grants", `${id}.json`);

  async createOAuthClient(record: OAuthClientRecord): Promise<void> {
    if (!OAUTH_CLIENT_ID_RE.test(record.id)) throw new StoreError("bad OAuth client id", "conflict");
    await this.files.mkdir(path.join(this.home, "oauth-clients"), 0o700);
    const created = await createFileDurable(this.files, this.oauthClientFile(record.id), JSON.stringify(record, null, 1) + "\n");
    if (!created) throw new StoreError(`OAuth client ${record.id} exists`, "conflict");
  }

  async getOAuthClient(id: string): Promise<OAuthClientRecord | undefined> {
    if (typeof id !== "string" || !OAUTH_CLIENT_ID_RE.test(id)) return undefined;
    return this.readDoc<OAuthClientRecord>(this.oauthClientFile(id));
  }

  async listOAuthClients(): Promise<OAuthClientRecord[]> {
    const out: OAuthClientRecord[] = [];
    for (const n of await this.dirNames("oauth-clients")) {
      const rec = await this.getOAuthClient(n.slice(0, -5));
      if (rec) out.push(rec);
    }
    return out.sort((a, b) => a.createdAt.localeCompare(b.createdAt) || a.id.localeCompare(b.id));
  }

  async createOAuthGrant(record: OAuthGrantRecord): Promise<void> {
    if (!OAUTH_GRANT_ID_RE.test(record.id) || !ID_RE.test(record.identityId)) throw new StoreError("bad OAuth grant record", "conflict");
    await this.files.mkdir(path.join(this.home, "oauth-grants"), 0o700);
    const created = await createFileDurable(this.files, this.oauthGrantFile(record.id), JSON.stringify(record, null, 1) + "\n");
    if (!created) throw new StoreError(`OAuth grant ${record.id} exists`, "conflict");
  }

  async getOAuthGrant(id: string): Promise<OAuthGrantRecord | undefined> {
    if (typeof id !== "string" || !OAUTH_GRANT_ID_RE.test(id)) return undefined;
    return this.readDoc<OAuthGrantRecord>(this.oauthGrantFile(id));
  }

  async updateOAuthGrant(id: string, update: (current: OAuthGrantRecord) => OAuthGrantRecord): Promise<OAuthGrantRecord> {
    if (!OAUTH_GRANT_ID_RE.test(id)) throw new StoreError(`no OAuth grant ${id}`, "not_found");
    return this.locks.withLock(`oauth-grant:${id}`, async () => {
      const db = new Low<OAuthGrantRecord | null>(new DurableJsonDocument(this.files, this.oauthGrantFile(id)), null);
      await db.read();
      if (!db.data) throw new StoreError(`no OAuth grant ${id}`, "not_found");
      const after = update(structuredClone(db.data));
      if (after.id !== id || after.identityId !== db.data.identityId) throw new StoreError("an update cannot move a grant", "conflict");
      db.data = after;
      await db.write();
      return after;
    });
  }

  async listOAuthGrants(identityId: string): Promise<OAuthGrantRecord[]> {
    const out: OAuthGrantRecord[] = [];
    for (const n of await this.dirNames("oauth-grants")) {
      const rec = await this.getOAuthGrant(n.slice(0, -5));
      if (rec && rec.identityId === identityId) out.push(rec);
    }
    return out.sort((a, b) => a.createdAt.localeCompare(b.createdAt) || a.id.localeCompare(b.id));
  }

  private inboundDir = (identityId: string): string => path.join(this.home, "inbound", identityId);
  private inboundFile = (identityId: string, id: string): string => path.join(this.inboundDir(identityId), `${id}.json`);

  async putInbound(record: InboundRecord): Promise<void> {
    if (!INBOUND_ID_RE.test(record.id) || !ID_RE.test(record.identityId)) throw new StoreError("bad inbound message id", "conflict");
    await this.files.mkdir(path.join(this.home, "inbound"), 0o700);
    await this.files.mkdir(this.inboundDir(record.identityId), 0o700);
    const created = await createFileDurable(this.files, this.inboundFile(record.identityId, record.id), JSON.stringify(record) + "\n");
    if (!created) throw new StoreError(`message ${record.id} exists`, "conflict");
  }

  async getInbound(identityId: string, id: string): Promise<InboundRecord | undefined> {
    if (typeof id !== "string" || !INBOUND_ID_RE.test(id) || !ID_RE.test(identityId)) return undefined;
    const rec = await this.readDoc<InboundRecord>(this.inboundFile(identityId, id)).catch((err: unknown) => {
      if ((err as NodeJS.ErrnoException).code === "ENOENT") return undefined;
      throw err;
    });
    // A file moved from another identity's directory is not this identity's message.
    return rec && rec.id === id && rec.identityId === identityId ? rec : undefined;
  }

  async listInbound(identityId: string): Promise<InboundRecord[]> {
    if (!ID_RE.test(identityId)) return [];
    const out: InboundRecord[] = [];
    for (const n of await this.dirNames(path.join("inbound", identityId))) {
      const rec = await this.getInbound(identityId, n.slice(0, -5));
      if (rec) out.push(rec);
    }
    return out.sort((a, b) => a.receivedAt.localeCompare(b.receivedAt) || a.id.localeCompare(b.id));
  }

  async markInboundRead(identityId: string, id: string, at: string): Promise<boolean> {
    if (!INBOUND_ID_RE.test(id) || !ID_RE.test(identityId)) return false;
    return this.locks.withLock(`inbound:${identityId}`, async () => {
      const rec = await this.getInbound(identityId, id);
      if (!rec) return false;
      if (rec.readAt === undefined) await writeFileDurable(this.files, this.inboundFile(identityId, id), JSON.stringify({ ...rec, readAt: at }) + "\n");
      return true;
    });
  }

  async deleteInbound(identityId: string, ids: string[]): Promise<number> {
    if (!ID_RE.test(identityId)) return 0;
    return this.locks.withLock(`inbound:${identityId}`, async () => {
      let n = 0;
      for (const id of ids) {
        if (!INBOUND_ID_RE.test(id)) continue;
        try {
          await this.files.unlink(this.inboundFile(identityId, id));
          n++;
        } catch (err) {
          if ((err as NodeJS.ErrnoException).code !== "ENOENT") throw err;
        }
      }
      return n;
    });
  }

  async registerInstance(instanceId: string): Promise<void> {
    try {
      await this.locks.hold(`instance:${instanceId}`);
    } catch (err) {
      // A home on a read-only file system can still be read (and verified); such a process writes
      // nothing, so it has no intents whose owner anyone needs to tell apart.
      if ((err as NodeJS.ErrnoException).code !== "EROFS") throw err;
    }
  }

  async instanceAlive(instanceId: string): Promise<boolean | undefined> {
    return this.locks.isHeld(`instance:${instanceId}`);
  }

  async close(): Promise<void> {
    await this.audit.close();
  }
}
