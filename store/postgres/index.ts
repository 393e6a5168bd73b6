/**
 * The PostgreSQL store: several `sigil serve --http` instances on several machines share one
 * registry, one set of secrets and one set of audit chains (from which spend, rate counts and
 * idempotency records are derived, under each chain's lock — see audit.ts).
 *
 * - Identities: `sigil_identities` (the record as jsonb, the token hash in a unique column).
 *   Reads are one indexed SELECT with no cache, so a revocation, token or key rotation made by any
 *   instance is what every instance sees on its next call. Updates are `SELECT … FOR UPDATE` +
 *   UPDATE in one transaction: concurrent updates from any instance never get lost.
 * - Locks (`withIdentityLock`, secrets): a row of `sigil_locks` held `FOR UPDATE`. Never advisory
 *   locks: any role that can connect may take those (and so block sigil); a row lock needs sigil's
 *   own table privileges.
 * - The master key never comes from here: the registry holds only its check value.
 * - The schema is migrated on first use (see migrations.ts); a newer schema is refused.
 */
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
  StoreError,
  TENANT_ID_RE,
  ID_RE,
  HASH_RE,
  APPROVER_ID_RE,
  APPROVAL_ID_RE,
  MANDATE_ID_RE,
  OAUTH_CLIENT_ID_RE,
  OAUTH_GRANT_ID_RE,
} from "../types.js";
import type pg from "pg";
import { PgAuditBackend } from "./audit.js";
import { type Conn, Database, isUniqueViolation, pgLib, redactUrl, sleep } from "./db.js";
import { migrate } from "./migrations.js";
import { byCreation } from "../../src/util/yield.js";


export class PostgresStore implements Store {
  readonly kind = "postgres" as const;
  readonly audit: PgAuditBackend;
  readonly db: Database;
  private ready?: Promise<number>;
  private metaCache?: RegistryMeta;
  private liveness?: LivenessBeacon;

  constructor(readonly url: string, opts: { retryMs?: number } = {}) {
    this.db = new Database(url, opts);
    this.audit = new PgAuditBackend(this.db, () => this.schema());
  }

  /** Where the data lives, for messages (no password). */
  get where(): string {
    return `the PostgreSQL store ${redactUrl(this.url)}`;
  }

  /** Applies pending migrations once per process (refusing a newer schema). */
  schema(): Promise<number> {
    if (!this.ready) {
      this.ready = migrate(this.db);
      this.ready.catch(() => {
        this.ready = undefined; // try again on the next call (e.g. the database was down)
      });
    }
    return this.ready;
  }

  async initialise(meta: RegistryMeta): Promise<void> {
    await this.schema();
    const r = await this.db.query("INSERT INTO sigil_meta (id, meta) VALUES (1, $1) ON CONFLICT DO NOTHING", [JSON.stringify(meta)]);
    if (r.rowCount !== 1) throw new StoreError(`${this.where} is already initialised`, "already_initialised");
  }

  async meta(): Promise<RegistryMeta> {
    if (this.metaCache) return this.metaCache;
    await this.schema();
    const r = await this.db.query<{ meta: RegistryMeta }>("SELECT meta FROM sigil_meta WHERE id = 1");
    const m = r.rows[0]?.meta;
    if (!m) throw new StoreError(`no sigil registry in ${this.where} (run \`sigil init\`)`, "not_initialised");
    if (m.format !== "sigil-home" || typeof m.adminTokenHash !== "string") throw new StoreError(`${this.where} does not hold a sigil registry`, "unreadable");
    this.metaCache = m;
    return m;
  }

  async updateMeta(update: (current: RegistryMeta) => RegistryMeta): Promise<RegistryMeta> {
    await this.schema();
    const after = await this.db.tx("main", async (c) => {
      const r = await c.query<{ meta: RegistryMeta }>("SELECT meta FROM sigil_meta WHERE id = 1 FOR UPDATE");
      const before = r.rows[0]?.meta;
      if (!before) throw new StoreError(`no sigil registry in ${this.where} (run \`sigil init\`)`, "not_initialised");
      const next = update(structuredClone(before));
      await c.query("UPDATE sigil_meta SET meta = $1 WHERE id = 1", [JSON.stringify(next)]);
      return next;
    });
    this.metaCache = after;
    return after;
  }

  async createIdentity(record: IdentityRecord): Promise<void> {
    if (!ID_RE.test(record.id)) throw new StoreError("bad identity id", "conflict");
    await this.schema();
    try {
      await this.db.tx("main", async (c) => {
        await c.query("INSERT INTO sigil_identities (id, token_hash, record, created_at) VALUES ($1, $2, $3, $4)", [
          record.id,
          record.tokenHash,
          JSON.stringify(record),
          record.createdAt,
        ]);
        await c.query("INSERT INTO sigil_chain_heads (identity_id, seq, hash) VALUES ($1, 0, NULL) ON CONFLICT DO NOTHING", [record.id]);
      });
    } catch (err) {
      if (isUniqueViolation((err as { cause?: unknown }).cause ?? err)) throw new StoreError(`identity ${record.id} exists`, "conflict");
      throw err;
    }
  }

  async getIdentity(id: string): Promise<IdentityRecord | undefined> {
    if (typeof id !== "string" || !ID_RE.test(id)) return undefined;
    await this.schema();
    const r = await this.db.query<{ record: IdentityRecord }>("SELECT record FROM sigil_identities WHERE id = $1", [id]);
    return r.rows[0]?.record;
  }

  async identityByTokenHash(tokenHash: string): Promise<IdentityRecord | undefined> {
    if (typeof tokenHash !== "string" || !HASH_RE.test(tokenHash)) return undefined;
    await this.schema();
    const r = await this.db.query<{ record: IdentityRecord }>("SELECT record FROM sigil_identities WHERE token_hash = $1", [tokenHash]);
    return r.rows[0]?.record;
  }

  async listIdentities(): Promise<IdentityRecord[]> {
    await this.meta();
    const r = await this.db.query<{ record: IdentityRecord }>("SELECT record FROM sigil_identities ORDER BY created_at, id");
    return r.rows.map((row) => row.record).sort(byCreation);
  }

  async updateIdentity(
    id: string,
    update: (current: IdentityRecord) => IdentityRecord | Promise<IdentityRecord>,
  ): Promise<IdentityRecord> {
    await this.schema();
    try {
      return await this.db.tx("main", async (c) => {
        const r = await c.query<{ record: IdentityRecord }>("SELECT record FROM sigil_identities WHERE id = $1 FOR UPDATE", [id]);
        const before = r.rows[0]?.record;
        if (!before) throw new StoreError(`no identity ${id}`, "not_found");
        const after = await update(structuredClone(before));
        if (after.id !== id) throw new StoreError("an update cannot change an identity's id", "conflict");
        await c.query("UPDATE sigil_identities SET record = $2, token_hash = $3, version = version + 1, updated_at = now() WHERE id = $1", [
          id,
          JSON.stringify(after),
          after.tokenHash,
        ]);
        return after;
      });
    } catch (err) {
      if (isUniqueViolation((err as { cause?: unknown }).cause ?? err)) throw new StoreError("that token hash belongs to another identity", "conflict");
      throw err;
    }
  }

  /**
   * Holds the identity's admin lock — its `sigil_locks` row, locked FOR UPDATE in a transaction on
   * a dedicated connection — while `fn` runs. The transaction does nothing else (it gets no
   * idle-in-transaction timeout, so a long `fn` keeps its lock); if the connection drops, the lock
   * goes with it, like the advisory lock it replaces.
   */
  async withIdentityLock<T>(id: string, fn: () => Promise<T>): Promise<T> {
    await this.schema();
    const c = await this.db.retrying(async () => {
      const c = await this.db.checkout("locks");
      try {
        await c.query("BEGIN");
        await c.query("SET LOCAL idle_in_transaction_session_timeout = 0");
        await lockRow(c, `admin:${id}`);
        return c;
      } catch (err) {
        c.release(err ?? true);
        throw err;
      }
    });
    try {
      return await fn();
    } finally {
      await c.query("COMMIT").then(
        () => c.release(),
        (err: unknown) => c.release(err ?? true), // never reuse a connection that may still hold the lock
      );
    }
  }

  async createTenant(record: TenantRecord): Promise<void> {
    if (!TENANT_ID_RE.test(record.id)) throw new StoreError("bad tenant id", "conflict");
    if (record.adminTokenHash !== undefined && !HASH_RE.test(record.adminTokenHash)) throw new StoreError("bad token hash", "conflict");
    await this.meta();
    try {
      await this.db.query("INSERT INTO sigil_tenants (id, admin_token_hash, record, created_at) VALUES ($1, $2, $3, $4)", [
        record.id,
        record.adminTokenHash ?? null,
        JSON.stringify(record),
        record.createdAt,
      ]);
    } catch (err) {
      if (isUniqueViolation((err as { cause?: unknown }).cause ?? err)) throw new StoreError(`tenant ${record.id} (or its token hash) exists`, "conflict");
      throw err;
    }
  }

  async getTenant(id: string): Promise<TenantRecord | undefined> {
    if (typeof id !== "string" || !TENANT_ID_RE.test(id)) return undefined;
    await this.schema();
    const r = await this.db.query<{ record: TenantRecord }>("SELECT record FROM sigil_tenants WHERE id = $1", [id]);
    return r.rows[0]?.record;
  }

  async tenantByTokenHash(tokenHash: string): Promise<TenantRecord | undefined> {
    if (typeof tokenHash !== "string" || !HASH_RE.test(tokenHash)) return undefined;
    await this.schema();
    const r = await this.db.query<{ record: TenantRecord }>("SELECT record FROM sigil_tenants WHERE admin_token_hash = $1", [tokenHash]);
    return r.rows[0]?.record;
  }

  async updateTenant(id: string, update: (current: TenantRecord) => TenantRecord): Promise<TenantRecord> {
    await this.schema();
    return this.db.tx("main", async (c) => {
      const r = await c.query<{ record: TenantRecord }>("SELECT record FROM sigil_tenants WHERE id = $1 FOR UPDATE", [id]);
      const before = r.rows[0]?.record;
      if (!before) throw new StoreError(`no tenant ${id}`, "not_found");
      const after = update(structuredClone(before));
      if (after.id !== id || after.adminTokenHash !== before.adminTokenHash) throw new StoreError("an update cannot change a tenant's id or admin token", "conflict");
      await c.query("UPDATE sigil_tenants SET record = $2 WHERE id = $1", [id, JSON.stringify(after)]);
      return after;
    });
  }

  async listTenants(): Promise<TenantRecord[]> {
    await this.meta();
    const r = await this.db.query<{ record: TenantRecord }>("SELECT record FROM sigil_tenants ORDER BY created_at, id");
    return r.rows.map((row) => row.record);
  }

  async putSecret(identityId: string, name: string, make: (previousVersion: number) => SecretRecord): Promise<SecretRecord> {
    await this.schema();
    return this.db.tx("main", async (c) => {
      await lockRow(c, `secrets:${identityId}`);
      const r = await c.query<{ record: SecretRecord }>("SELECT record FROM sigil_secrets WHERE identity_id = $1 AND name = $2", [identityId, name]);
      const rec = make(r.rows[0]?.record.version ?? 0);
      await c.query(
        `INSERT INTO sigil_secrets (identity_id, name, record) VALUES ($1, $2, $3)
         ON CONFLICT (identity_id, name) DO UPDATE SET record = EXCLUDED.record`,
        [identityId, name, JSON.stringify(rec)],
      );
      return rec;
    });
  }

  async getSecret(identityId: string, name: string): Promise<SecretRecord | undefined> {
    await this.schema();
    const r = await this.db.query<{ record: SecretRecord }>("SELECT record FROM sigil_secrets WHERE identity_id = $1 AND name = $2", [identityId, name]);
    return r.rows[0]?.record;
  }

  async deleteSecret(identityId: string, name: string): Promise<boolean> {
    await this.schema();
    const r = await this.db.query("DELETE FROM sigil_secrets WHERE identity_id = $1 AND name = $2", [identityId, name]);
    return (r.rowCount ?? 0) > 0;
  }

  async listSecretNames(identityId: string): Promise<string[]> {
    await this.schema();
    const r = await this.db.query<{ name: string }>("SELECT name FROM sigil_secrets WHERE identity_id = $1", [identityId]);
    return r.rows.map((row) => row.name).sort();
  }

  async createApprover(record: ApproverRecord): Promise<void> {
    if (!APPROVER_ID_RE.test(record.id) || !HASH_RE.test(record.tokenHash)) throw new StoreError("bad approver record", "conflict");
    await this.schema();
    try {
      await this.db.query("INSERT INTO sigil_approvers (id, tenant_id, token_hash, record, created_at) VALUES ($1, $2, $3, $4, $5)", [
        record.id,
        record.tenantId,
        record.tokenHash,
        JSON.stringify(record),
        record.createdAt,
      ]);
    } catch (err) {
      if (isUniqueViolation((err as { cause?: unknown }).cause ?? err)) throw new StoreError(`approver ${record.id} exists`, "conflict");
      throw err;
    }
  }

  async getApprover(id: string): Promise<ApproverRecord | undefined> {
    if (typeof id !== "string" || !APPROVER_ID_RE.test(id)) return undefined;
    await this.schema();
    const r = await this.db.query<{ record: ApproverRecord }>("SELECT record FROM sigil_approvers WHERE id = $1", [id]);
    return r.rows[0]?.record;
  }

  async approverByTokenHash(tokenHash: string): Promise<ApproverRecord | undefined> {
    if (typeof tokenHash !== "string" || !HASH_RE.test(tokenHash)) return undefined;
    await this.schema();
    const r = await this.db.query<{ record: ApproverRecord }>("SELECT record FROM sigil_approvers WHERE token_hash = $1", [tokenHash]);
    return r.rows[0]?.record;
  }

  async listApprovers(): Promise<ApproverRecord[]> {
    await this.schema();
    const r = await this.db.query<{ record: ApproverRecord }>("SELECT record FROM sigil_approvers ORDER BY created_at, id");
    return r.rows.map((row) => row.record);
  }

  async updateApprover(id: string, update: (current: ApproverRecord) => ApproverRecord): Promise<ApproverRecord> {
    await this.schema();
    return this.db.tx("main", async (c) => {
      const r = await c.query<{ record: ApproverRecord }>("SELECT record FROM sigil_approvers WHERE id = $1 FOR UPDATE", [id]);
      const before = r.rows[0]?.record;
      if (!before) throw new StoreError(`no approver ${id}`, "not_found");
      const after = update(structuredClone(before));
      if (after.id !== id || after.tokenHash !== before.tokenHash) throw new StoreError("an update cannot change an approver's id or token", "conflict");
      await c.query("UPDATE sigil_approvers SET record = $2 WHERE id = $1", [id, JSON.stringify(after)]);
      return after;
    });
  }

  async createOAuthClient(record: OAuthClientRecord): Promise<void> {
    if (!OAUTH_CLIENT_ID_RE.test(record.id)) throw new StoreError("bad OAuth client id", "conflict");
    await this.schema();
    try {
      await this.db.query("INSERT INTO sigil_oauth_clients (id, record, created_at) VALUES ($1, $2, $3)", [record.id, JSON.stringify(record), record.createdAt]);
    } catch (err) {
      if (isUniqueViolation((err as { cause?: unknown }).cause ?? err)) throw new StoreError(`OAuth client ${record.id} exists`, "conflict");
      throw err;
    }
  }

  async getOAuthClient(id: string): Promise<OAuthClientRecord | undefined> {
    if (typeof id !== "string" || !OAUTH_CLIENT_ID_RE.test(id)) return undefined;
    await this.schema();
    const r = await this.db.query<{ record: OAuthClientRecord }>("SELECT record FROM sigil_oauth_clients WHERE id = $1", [id]);
    return r.rows[0]?.record;
  }

  async listOAuthClients(): Promise<OAuthClientRecord[]> {
    await this.schema();
    const r = await this.db.query<{ record: OAuthClientRecord }>("SELECT record FROM sigil_oauth_clients ORDER BY created_at, id");
    return r.rows.map((row) => row.record);
  }

  async createOAuthGrant(record: OAuthGrantRecord): Promise<void> {
    if (!OAUTH_GRANT_ID_RE.test(record.id) || !ID_RE.test(record.identityId)) throw new StoreError("bad OAuth grant record", "conflict");
    await this.schema();
    try {
      await this.db.query("INSERT INTO sigil_oauth_grants (id, identity_id, record, created_at) VALUES ($1, $2, $3, $4)", [
        record.id,
        record.identityId,
        JSON.stringify(record),
        record.createdAt,
      ]);
    } catch (err) {
      if (isUniqueViolation((err as { cause?: unknown }).cause ?? err)) throw new StoreError(`OAuth grant ${record.id} exists`, "conflict");
      throw err;
    }
  }

  async getOAuthGrant(id: string): Promise<OAuthGrantRecord | undefined> {
    if (typeof id !== "string" || !OAUTH_GRANT_ID_RE.test(id)) return undefined;
    await this.schema();
    const r = await this.db.query<{ record: OAuthGrantRecord }>("SELECT record FROM sigil_oauth_grants WHERE id = $1", [id]);
    return r.rows[0]?.record;
  }

  async updateOAuthGrant(id: string, update: (current: OAuthGrantRecord) => OAuthGrantRecord): Promise<OAuthGrantRecord> {
    if (!OAUTH_GRANT_ID_RE.test(id)) throw new StoreError(`no OAuth grant ${id}`, "not_found");
    await this.schema();
    return this.db.tx("main", async (c) => {
      const r = await c.query<{ record: OAuthGrantRecord }>("SELECT record FROM sigil_oauth_grants WHERE id = $1 FOR UPDATE", [id]);
      const before = r.rows[0]?.record;
      if (!before) throw new StoreError(`no OAuth grant ${id}`, "not_found");
      const after = update(structuredClone(before));
      if (after.id !== id || after.identityId !== before.identityId) throw new StoreError("an update cannot move a grant", "conflict");
      await c.query("UPDATE sigil_oauth_grants SET record = $2 WHERE id = $1", [id, JSON.stringify(after)]);
      return after;
    });
  }

  async listPasskeys(approverId: string): Promise<PasskeyRecord[]> {
    await this.schema();
    const r = await this.db.query<{ records: PasskeyRecord[] }>("SELECT records FROM sigil_passkeys WHERE approver_id = $1", [approverId]);
    return r.rows[0]?.records ?? [];
  }

  async updatePasskeys(approverId: string, update: (current: PasskeyRecord[]) => PasskeyRecord[]): Promise<PasskeyRecord[]> {
    await this.schema();
    return this.db.tx("main", async (c) => {
      await c.query("INSERT INTO sigil_passkeys (approver_id, records) VALUES ($1, '[]') ON CONFLICT (approver_id) DO NOTHING", [approverId]);
      const r = await c.query<{ records: PasskeyRecord[] }>("SELECT records FROM sigil_passkeys WHERE approver_id = $1 FOR UPDATE", [approverId]);
      const after = update(structuredClone(r.rows[0]?.records ?? []));
      await c.query("UPDATE sigil_passkeys SET records = $2 WHERE approver_id = $1", [approverId, JSON.stringify(after)]);
      return after;
    });
  }

  async listOAuthGrants(identityId: string): Promise<OAuthGrantRecord[]> {
    await this.schema();
    const r = await this.db.query<{ record: OAuthGrantRecord }>("SELECT record FROM sigil_oauth_grants WHERE identity_id = $1 ORDER BY created_at, id", [identityId]);
    return r.rows.map((row) => row.record);
  }

  async createApproval(record: ApprovalRecord): Promise<void> {
    if (!APPROVAL_ID_RE.test(record.id)) throw new StoreError("bad approval id", "conflict");
    await this.schema();
    try {
      await this.db.query("INSERT INTO sigil_approvals (id, identity_id, tenant_id, requested_at, record) VALUES ($1, $2, $3, $4, $5)", [
        record.id,
        record.identityId,
        record.tenantId,
        record.requestedAt,
        JSON.stringify(record),
      ]);
    } catch (err) {
      if (isUniqueViolation((err as { cause?: unknown }).cause ?? err)) throw new StoreError(`approval ${record.id} exists`, "conflict");
      throw err;
    }
  }

  async getApproval(id: string): Promise<ApprovalRecord | undefined> {
    if (typeof id !== "string" || !APPROVAL_ID_RE.test(id)) return undefined;
    await this.schema();
    const r = await this.db.query<{ record: ApprovalRecord }>("SELECT record FROM sigil_approvals WHERE id = $1", [id]);
    return r.rows[0]?.record;
  }

  async listApprovals(opts: { sinceIso?: string } = {}): Promise<ApprovalRecord[]> {
    await this.schema();
    const r = await this.db.query<{ record: ApprovalRecord }>(
      "SELECT record FROM sigil_approvals WHERE ($1::text IS NULL OR requested_at >= $1) ORDER BY requested_at, id",
      [opts.sinceIso ?? null],
    );
    return r.rows.map((row) => row.record);
  }

  async putProviderKey(tenantId: string, record: PaymentKeyRecord): Promise<PaymentKeyRecord> {
    if (!TENANT_ID_RE.test(tenantId)) throw new StoreError("bad tenant id", "conflict");
    await this.schema();
    await this.db.query("INSERT INTO sigil_provider_keys (tenant_id, record) VALUES ($1, $2) ON CONFLICT DO NOTHING", [tenantId, JSON.stringify(record)]);
    const held = await this.getProviderKey(tenantId);
    if (!held) throw new StoreError(`the provider key of ${tenantId} cannot be read`, "unreadable");
    return held;
  }

  async getProviderKey(tenantId: string): Promise<PaymentKeyRecord | undefined> {
    if (typeof tenantId !== "string" || !TENANT_ID_RE.test(tenantId)) return undefined;
    await this.schema();
    const r = await this.db.query<{ record: PaymentKeyRecord }>("SELECT record FROM sigil_provider_keys WHERE tenant_id = $1", [tenantId]);
    return r.rows[0]?.record;
  }

  async createMandate(record: MandateRecord): Promise<void> {
    if (!MANDATE_ID_RE.test(record.id)) throw new StoreError("bad mandate id", "conflict");
    await this.schema();
    try {
      await this.db.query("INSERT INTO sigil_payment_mandates (id, identity_id, created_at, record) VALUES ($1, $2, $3, $4)", [
        record.id,
        record.identityId,
        record.createdAt,
        JSON.stringify(record),
      ]);
    } catch (err) {
      if (isUniqueViolation((err as { cause?: unknown }).cause ?? err)) throw new StoreError(`mandate ${record.id} exists`, "conflict");
      throw err;
    }
  }

  async getMandate(id: string): Promise<MandateRecord | undefined> {
    if (typeof id !== "string" || !MANDATE_ID_RE.test(id)) return undefined;
    await this.schema();
    const r = await this.db.query<{ record: MandateRecord }>("SELECT record FROM sigil_payment_mandates WHERE id = $1", [id]);
    return r.rows[0]?.record;
  }

  async listMandates(): Promise<MandateRecord[]> {
    await this.schema();
    const r = await this.db.query<{ record: MandateRecord }>("SELECT record FROM sigil_payment_mandates ORDER BY id");
    return r.rows.map((x) => x.record);
  }

  async putInbound(record: InboundRecord): Promise<void> {
    if (!INBOUND_ID_RE.test(record.id) || !ID_RE.test(record.identityId)) throw new StoreError("bad inbound message id", "conflict");
    await this.schema();
    try {
      await this.db.query("INSERT INTO sigil_inbound (id, identity_id, channel, received_at, read_at, sealed) VALUES ($1, $2, $3, $4, $5, $6)", [
        record.id,
        record.identityId,
        record.channel,
        record.receivedAt,
        record.readAt ?? null,
        JSON.stringify(record.sealed),
      ]);
    } catch (err) {
      if (isUniqueViolation((err as { cause?: unknown }).cause ?? err)) throw new StoreError(`message ${record.id} exists`, "conflict");
      throw err;
    }
  }

  async getInbound(identityId: string, id: string): Promise<InboundRecord | undefined> {
    if (typeof id !== "string" || !INBOUND_ID_RE.test(id) || !ID_RE.test(identityId)) return undefined;
    await this.schema();
    const r = await this.db.query<InboundRow>("SELECT id, identity_id, channel, received_at, read_at, sealed FROM sigil_inbound WHERE id = $1 AND identity_id = $2", [id, identityId]);
    return r.rows[0] ? inboundOf(r.rows[0]) : undefined;
  }

  async listInbound(identityId: string): Promise<InboundRecord[]> {
    if (!ID_RE.test(identityId)) return [];
    await this.schema();
    const r = await this.db.query<InboundRow>(
      "SELECT id, identity_id, channel, received_at, read_at, sealed FROM sigil_inbound WHERE identity_id = $1 ORDER BY received_at, id",
      [identityId],
    );
    return r.rows.map(inboundOf);
  }

  async markInboundRead(identityId: string, id: string, at: string): Promise<boolean> {
    if (!INBOUND_ID_RE.test(id) || !ID_RE.test(identityId)) return false;
    await this.schema();
    const r = await this.db.query("UPDATE sigil_inbound SET read_at = coalesce(read_at, $3) WHERE id = $1 AND identity_id = $2", [id, identityId, at]);
    return r.rowCount === 1;
  }

  async deleteInbound(identityId: string, ids: string[]): Promise<number> {
    const valid = ids.filter((i) => INBOUND_ID_RE.test(i));
    if (!ID_RE.test(identityId) || valid.length === 0) return 0;
    await this.schema();
    const r = await this.db.query("DELETE FROM sigil_inbound WHERE identity_id = $1 AND id = ANY($2::text[])", [identityId, valid]);
    return r.rowCount ?? 0;
  }

  /**
   * Liveness across machines: the instance keeps a dedicated connection open for as long as it
   * runs, and records that connection's backend (pid and start time) in `sigil_instances`. It is
   * alive while that backend exists (pg_stat_activity): a process that dies loses its connection,
   * and the backend ends at once. Nobody without sigil's table privileges can write the row, and no
   * session can be another backend, so this cannot be faked from outside (an advisory lock could:
   * any role may take one). If the connection drops while the process lives (a database restart),
   * it is re-established and the row updated; in that short window another instance may judge this
   * one dead and record its open intents as `unknown` — conservative (spend stays reserved), never
   * a retry.
   */
  async registerInstance(instanceId: string): Promise<void> {
    await this.schema();
    this.liveness = new LivenessBeacon(this.url, instanceId, this.db);
    await this.liveness.start();
  }

  async instanceAlive(instanceId: string): Promise<boolean | undefined> {
    await this.schema();
    if (this.liveness?.instanceId === instanceId) return true;
    try {
      // backend_start is hidden for sessions of other roles; then the pid alone decides (a reused
      // pid errs towards "alive": the intent is left open, never retried).
      const r = await this.db.query<{ alive: boolean }>(
        `SELECT EXISTS (
           SELECT 1 FROM sigil_instances i JOIN pg_stat_activity a ON a.pid = i.backend_pid
            WHERE i.id = $1 AND (a.backend_start = i.backend_start OR a.backend_start IS NULL OR i.backend_start IS NULL)
         ) AS alive`,
        [instanceId],
      );
      return r.rows[0]!.alive;
    } catch {
      return undefined; // cannot tell
    }
  }

  async close(): Promise<void> {
    // Idle connections do not keep the process alive (allowExitOnIdle, the unref'd beacon), so
    // hold it open until they have said goodbye, or it would exit in the middle of this await.
    const keepAlive = setInterval(() => {}, 60_000);
    try {
      await this.liveness?.stop();
      await this.db.close();
    } finally {
      clearInterval(keepAlive);
    }
  }
}

interface InboundRow {
  id: string;
  identity_id: string;
  channel: "email" | "sms";
  received_at: string;
  read_at: string | null;
  sealed: InboundRecord["sealed"];
}

function inboundOf(row: InboundRow): InboundRecord {
  return {
    id: row.id,
    identityId: row.identity_id,
    channel: row.channel,
    receivedAt: row.received_at,
    sealed: row.sealed,
    ...(row.read_at !== null ? { readAt: row.read_at } : {}),
  };
}

/**
 * Takes the lock `name`: its `sigil_locks` row, FOR UPDATE, until the caller's transaction ends.
 * The row is created the first time the name is used.
 */
async function lockRow(c: Conn, name: string): Promise<void> {
  const sel = "SELECT 1 FROM sigil_locks WHERE name = $1 FOR UPDATE";
  if ((await c.query(sel, [name])).rowCount === 1) return;
  await c.query("INSERT INTO sigil_locks (name) VALUES ($1) ON CONFLICT DO NOTHING", [name]);
  if ((await c.query(sel, [name])).rowCount !== 1) throw new StoreError(`the lock ${name} cannot be taken`, "unavailable");
}

/** Keeps one connection open for the process's lifetime and records its backend as this instance's. */
class LivenessBeacon {
  private client?: pg.Client;
  private stopped = false;

  constructor(
    private readonly url: string,
    readonly instanceId: string,
    private readonly db: Database,
  ) {}

  async start(): Promise<void> {
    await this.db.retrying(() => this.connect());
    // Rows of instances that are gone say nothing any more ("no row" reads as dead): drop them.
    // (On the pool: the beacon's own connection does not keep the process alive.)
    await this.db
      .query(
        `DELETE FROM sigil_instances i WHERE NOT EXISTS (
           SELECT 1 FROM pg_stat_activity a WHERE a.pid = i.backend_pid
              AND (a.backend_start = i.backend_start OR a.backend_start IS NULL OR i.backend_start IS NULL))`,
      )
      .catch(() => {});
  }

  private async connect(): Promise<void> {
    const client = new (pgLib().Client)({ connectionString: this.url, application_name: "sigil-liveness", keepAlive: true } as pg.ClientConfig);
    client.on("error", (err) => this.db.log("the liveness connection was lost", err));
    await client.connect();
    try {
      await client.query(
        `INSERT INTO sigil_instances (id, backend_pid, backend_start)
           SELECT $1, pid, backend_start FROM pg_stat_activity WHERE pid = pg_backend_pid()
         ON CONFLICT (id) DO UPDATE SET backend_pid = EXCLUDED.backend_pid, backend_start = EXCLUDED.backend_start, seen_at = now()`,
        [this.instanceId],
      );
    } catch (err) {
      await client.end().catch(() => {});
      throw err;
    }
    // The beacon never keeps the process alive on its own.
    (client as unknown as { connection?: { stream?: { unref?: () => void } } }).connection?.stream?.unref?.();
    client.once("end", () => {
      if (this.client === client) this.client = undefined;
      if (!this.stopped) void this.reconnect();
    });
    this.client = client;
  }

  private async reconnect(): Promise<void> {
    for (let attempt = 0; !this.stopped; attempt++) {
      try {
        await this.connect();
        return;
      } catch {
        await sleep(Math.min(100 * 2 ** attempt, 2000));
      }
    }
  }

  async stop(): Promise<void> {
    this.stopped = true;
    await this.client?.query("DELETE FROM sigil_instances WHERE id = $1", [this.instanceId]).catch(() => {});
    await this.client?.end().catch(() => {});
  }
}
