/**
 * Copies a whole store (the embedded home) into an empty PostgreSQL store, in ONE transaction:
 * either everything arrives — registry, tenants, identities, secrets and inbound messages (still sealed: the master key stays
 * where it was), mandate provider keys and issued payment mandates, OAuth clients and grants (records as they are, MACs included: the grants' token
 * hashes keep every issued token working), every audit line byte for byte with its chain head (identities' chains and tenants' own logs) —
 * or nothing does.
 * The caller verifies the source chains first and the copies afterwards (see commands/store.ts).
 */
import type { Store } from "../types.js";
import { StoreError } from "../types.js";
import type { Conn } from "./db.js";
import type { PostgresStore } from "./index.js";

const BATCH = 500;

export interface ImportCounts {
  tenants: number;
  identities: number;
  entries: number;
  secrets: number;
  oauthClients: number;
  oauthGrants: number;
}

async function insertLines(c: Conn, identityId: string, batch: Array<{ seq: number; line: string }>): Promise<void> {
  if (batch.length === 0) return;
  await c.query("INSERT INTO sigil_audit_entries (identity_id, seq, line) SELECT $1, s, l FROM unnest($2::bigint[], $3::text[]) AS t(s, l)", [
    identityId,
    batch.map((b) => b.seq),
    batch.map((b) => b.line),
  ]);
}

/** Copies one chain (an identity's, or a tenant's own log) line for line with its head; how many entries. */
async function copyChain(source: Store, c: Conn, chainId: string): Promise<number> {
  let n = 0;
  let batch: Array<{ seq: number; line: string }> = [];
  let head: { seq: number; hash: string | null } = { seq: 0, hash: null };
  for await (const line of source.audit.readLines(chainId)) {
    const e = JSON.parse(line) as { seq: number; hash: string };
    if (e.seq !== head.seq + 1) throw new StoreError(`the audit log of ${chainId} is not contiguous at seq ${e.seq}`, "conflict");
    head = { seq: e.seq, hash: e.hash };
    batch.push({ seq: e.seq, line });
    if (batch.length >= BATCH) {
      await insertLines(c, chainId, batch);
      batch = [];
    }
    n++;
  }
  await insertLines(c, chainId, batch);
  await c.query("INSERT INTO sigil_chain_heads (identity_id, seq, hash) VALUES ($1, $2, $3)", [chainId, head.seq, head.hash]);
  return n;
}

export async function importStore(source: Store, target: PostgresStore): Promise<ImportCounts> {
  const meta = await source.meta();
  const identities = await source.listIdentities();
  const tenants = await source.listTenants();
  await target.schema();
  return target.db.tx("main", async (c) => {
    // Nothing may be merged into an existing registry: the target must be empty.
    await c.query("LOCK TABLE sigil_meta, sigil_tenants, sigil_identities, sigil_chain_heads, sigil_audit_entries, sigil_secrets, sigil_approvers, sigil_approvals, sigil_oauth_clients, sigil_oauth_grants IN EXCLUSIVE MODE");
    const existing = await c.query<{ n: number }>(
      "SELECT (SELECT count(*) FROM sigil_meta)::int + (SELECT count(*) FROM sigil_tenants)::int + (SELECT count(*) FROM sigil_identities)::int + (SELECT count(*) FROM sigil_audit_entries)::int AS n",
    );
    if ((existing.rows[0]?.n ?? 0) > 0) {
      throw new StoreError(`${target.where} already holds sigil data; migrate only into an empty database`, "already_initialised");
    }
    const counts: ImportCounts = { tenants: 0, identities: 0, entries: 0, secrets: 0, oauthClients: 0, oauthGrants: 0 };
    for (const t of tenants) {
      // The tenant's own log (approvers, passkeys), when it has begun.
      counts.entries += await copyChain(source, c, t.id);
      await c.query("INSERT INTO sigil_tenants (id, admin_token_hash, record, created_at) VALUES ($1, $2, $3, $4)", [t.id, t.adminTokenHash ?? null, JSON.stringify(t), t.createdAt]);
      counts.tenants++;
      // Its mandate provider key (what merchants and networks trust), when it has one.
      const pk = await source.getProviderKey(t.id);
      if (pk) await c.query("INSERT INTO sigil_provider_keys (tenant_id, record) VALUES ($1, $2)", [t.id, JSON.stringify(pk)]);
    }
    for (const rec of identities) {
      await c.query("INSERT INTO sigil_identities (id, token_hash, record, created_at) VALUES ($1, $2, $3, $4)", [
        rec.id,
        rec.tokenHash,
        JSON.stringify(rec),
        rec.createdAt,
      ]);
      counts.identities++;
      counts.entries += await copyChain(source, c, rec.id);
      for (const name of await source.listSecretNames(rec.id)) {
        const s = await source.getSecret(rec.id, name);
        if (!s) continue;
        await c.query("INSERT INTO sigil_secrets (identity_id, name, record) VALUES ($1, $2, $3)", [rec.id, name, JSON.stringify(s)]);
        counts.secrets++;
      }
      // Inbound messages, still sealed (bound to identity, id, channel and time, all copied as they are).
      for (const m of await source.listInbound(rec.id)) {
        await c.query("INSERT INTO sigil_inbound (id, identity_id, channel, received_at, read_at, sealed) VALUES ($1, $2, $3, $4, $5, $6)", [
          m.id,
          m.identityId,
          m.channel,
          m.receivedAt,
          m.readAt ?? null,
          JSON.stringify(m.sealed),
        ]);
      }
    }
    // OAuth: registered clients, and each identity's grants (revoked ones too: their ids are in the
    // chains, and a revoked grant must stay revoked).
    for (const cl of await source.listOAuthClients()) {
      await c.query("INSERT INTO sigil_oauth_clients (id, record, created_at) VALUES ($1, $2, $3)", [cl.id, JSON.stringify(cl), cl.createdAt]);
      counts.oauthClients++;
    }
    for (const rec of identities) {
      for (const g of await source.listOAuthGrants(rec.id)) {
        await c.query("INSERT INTO sigil_oauth_grants (id, identity_id, record, created_at) VALUES ($1, $2, $3, $4)", [g.id, g.identityId, JSON.stringify(g), g.createdAt]);
        counts.oauthGrants++;
      }
    }
    // Approvers and approval requests (their status lives in the chains copied above).
    for (const a of await source.listApprovers()) {
      await c.query("INSERT INTO sigil_approvers (id, tenant_id, token_hash, record, created_at) VALUES ($1, $2, $3, $4, $5)", [a.id, a.tenantId, a.tokenHash, JSON.stringify(a), a.createdAt]);
    }
    for (const a of await source.listApprovers()) {
      const keys = await source.listPasskeys(a.id);
      if (keys.length > 0) await c.query("INSERT INTO sigil_passkeys (approver_id, records) VALUES ($1, $2)", [a.id, JSON.stringify(keys)]);
    }
    // Issued payment mandates (their use lives in the chains copied above; payments keys are in the identity records).
    for (const m of await source.listMandates()) {
      await c.query("INSERT INTO sigil_payment_mandates (id, identity_id, created_at, record) VALUES ($1, $2, $3, $4)", [m.id, m.identityId, m.createdAt, JSON.stringify(m)]);
    }
    for (const r of await source.listApprovals()) {
      await c.query("INSERT INTO sigil_approvals (id, identity_id, tenant_id, requested_at, record) VALUES ($1, $2, $3, $4, $5)", [r.id, r.identityId, r.tenantId, r.requestedAt, JSON.stringify(r)]);
    }
    // Nothing of this is visible to any instance before COMMIT.
    await c.query("INSERT INTO sigil_meta (id, meta) VALUES (1, $1)", [JSON.stringify(meta)]);
    return counts;
  });
}
