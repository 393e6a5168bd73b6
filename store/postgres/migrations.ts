/**
 * The PostgreSQL schema as numbered migrations. Each runs once, in order, in one transaction holding
 * a lock on `sigil_schema` (several instances starting together apply it once). Not an advisory
 * lock: any role can take those, and so block sigil's start. A database whose schema is
 * newer than this sigil knows is refused: an older binary must never write into tables it does not
 * understand. Migrations only ever add; an applied migration is never edited — add the next one.
 *
 * Tables carry a `sigil_` prefix so the store can share a database (or use its own schema via the
 * URL's `options=-c search_path=…`).
 */
import type { Conn, Database } from "./db.js";
import { StoreError } from "../types.js";

export interface Migration {
  version: number;
  description: string;
  sql: string;
}

export const MIGRATIONS: Migration[] = [
  {
    version: 1,
    description: "registry, identities, secrets, audit chains",
    sql: `
      CREATE TABLE sigil_meta (
        id integer PRIMARY KEY CHECK (id = 1),
        meta jsonb NOT NULL
      );
      CREATE TABLE sigil_identities (
        id text PRIMARY KEY,
        token_hash text NOT NULL UNIQUE,
        record jsonb NOT NULL,
        created_at text NOT NULL,
        version bigint NOT NULL DEFAULT 1,
        updated_at timestamptz NOT NULL DEFAULT now()
      );
      CREATE TABLE sigil_secrets (
        identity_id text NOT NULL,
        name text NOT NULL,
        record jsonb NOT NULL,
        PRIMARY KEY (identity_id, name)
      );
      -- One row per chain: locked FOR UPDATE by every append, so appends to one identity's chain
      -- are serialised across instances; seq/hash are the last entry's.
      CREATE TABLE sigil_chain_heads (
        identity_id text PRIMARY KEY,
        seq bigint NOT NULL,
        hash text
      );
      -- The entries, verbatim. The primary key on the entry's own seq makes a fork (two entries
      -- with one seq) impossible even if the lock were bypassed.
      CREATE TABLE sigil_audit_entries (
        identity_id text NOT NULL,
        seq bigint NOT NULL,
        line text NOT NULL,
        PRIMARY KEY (identity_id, seq)
      );
    `,
  },
  {
    version: 2,
    description: "audit chain state snapshots",
    sql: `
      -- One authenticated state snapshot per chain (see src/audit/chain.ts): a new instance reads
      -- it plus the entries after its seq instead of replaying the whole chain. Never trusted
      -- blindly: its MAC and its seq/hash against sigil_audit_entries are checked on every read.
      CREATE TABLE sigil_chain_snapshots (
        identity_id text PRIMARY KEY,
        seq bigint NOT NULL,
        snapshot text NOT NULL
      );
    `,
  },
  {
    version: 3,
    description: "locks and instance liveness on sigil's own tables (no advisory locks)",
    sql: `
      -- One row per lock name (an identity's admin lock, its secrets): held by SELECT … FOR UPDATE,
      -- which needs UPDATE on this table, so a role without sigil's privileges cannot take it.
      CREATE TABLE sigil_locks (
        name text PRIMARY KEY
      );
      -- Each running instance's liveness connection: the instance is alive while a backend with
      -- this pid and start time exists (pg_stat_activity); the row is written only by sigil.
      CREATE TABLE sigil_instances (
        id text PRIMARY KEY,
        backend_pid integer NOT NULL,
        backend_start timestamptz,
        seen_at timestamptz NOT NULL DEFAULT now()
      );
    `,
  },
  {
    version: 4,
    description: "tenants",
    sql: `
      -- One row per tenant (the record as jsonb); its admin token hash in a unique column, NULL for
      -- the default tenant, whose admin is the root admin. Identities name their tenant inside
      -- their record (older records name none: they belong to the default tenant).
      CREATE TABLE sigil_tenants (
        id text PRIMARY KEY,
        admin_token_hash text UNIQUE,
        record jsonb NOT NULL,
        created_at text NOT NULL
      );
    `,
  },
  {
    version: 5,
    description: "approvers and approval requests",
    sql: `
      -- People who decide approvals for a tenant; the record (sealed key included) as jsonb.
      CREATE TABLE sigil_approvers (
        id text PRIMARY KEY,
        tenant_id text NOT NULL,
        token_hash text NOT NULL UNIQUE,
        record jsonb NOT NULL,
        created_at text NOT NULL
      );
      -- Approval requests, written once: their decisions and use are entries of the identity's
      -- audit chain (the authority), never columns here.
      CREATE TABLE sigil_approvals (
        id text PRIMARY KEY,
        identity_id text NOT NULL,
        tenant_id text NOT NULL,
        requested_at text NOT NULL,
        record jsonb NOT NULL
      );
      CREATE INDEX sigil_approvals_requested ON sigil_approvals (requested_at);
    `,
  },
  {
    version: 6,
    description: "inbound messages",
    sql: `
      -- Messages received for an identity (src/inbound/): the content only sealed under the master
      -- key (bound to identity, id, channel and received_at), never in a column of its own.
      CREATE TABLE sigil_inbound (
        id text PRIMARY KEY,
        identity_id text NOT NULL,
        channel text NOT NULL,
        received_at text NOT NULL,
        read_at text,
        sealed jsonb NOT NULL
      );
      CREATE INDEX sigil_inbound_identity ON sigil_inbound (identity_id, received_at);
    `,
  },
  {
    version: 7,
    description: "payment mandates: tenant provider keys and issued mandates",
    sql: `
      -- A tenant's ES256 mandate provider key (sealed private key inside the record); written once.
      CREATE TABLE sigil_provider_keys (
        tenant_id text PRIMARY KEY,
        record jsonb NOT NULL
      );
      -- Issued AP2 open mandate pairs, written once; their use is decided from the identity's log.
      CREATE TABLE sigil_payment_mandates (
        id text PRIMARY KEY,
        identity_id text NOT NULL,
        created_at text NOT NULL,
        record jsonb NOT NULL
      );
    `,
  },
  {
    version: 8,
    description: "OAuth clients and grants",
    sql: `
      -- OAuth clients registered dynamically (RFC 7591): public clients, no secret; the record
      -- (MAC'd under the master key) as jsonb. Clients known by a metadata document are not stored.
      CREATE TABLE sigil_oauth_clients (
        id text PRIMARY KEY,
        record jsonb NOT NULL,
        created_at text NOT NULL
      );
      -- Grants: a client may act as an identity at a resource. Tokens carry their grant id and are
      -- stored inside the record as keyed hashes, so they need no index of their own.
      CREATE TABLE sigil_oauth_grants (
        id text PRIMARY KEY,
        identity_id text NOT NULL,
        record jsonb NOT NULL,
        created_at text NOT NULL
      );
      CREATE INDEX sigil_oauth_grants_identity ON sigil_oauth_grants (identity_id, created_at);
    `,
  },
  {
    version: 9,
    description: "passkeys: approvers' WebAuthn credentials registered in the console",
    sql: `
      -- One row per approver: its passkeys (each MAC'd by sigil), updated under the row lock.
      CREATE TABLE sigil_passkeys (
        approver_id text PRIMARY KEY,
        records jsonb NOT NULL
      );
    `,
  },
];

export const LATEST_SCHEMA = Math.max(...MIGRATIONS.map((m) => m.version));

async function currentVersion(c: Conn): Promise<number> {
  return Math.max(0, ...(await appliedVersions(c)));
}

/**
 * The versions applied. Migration numbers are reserved ahead of time by parallel work, so one may
 * land before a lower one: every migration not yet applied runs, not only those above the highest.
 */
async function appliedVersions(c: Conn): Promise<number[]> {
  const exists = await c.query<{ t: string | null }>("SELECT to_regclass('sigil_schema')::text AS t");
  if (!exists.rows[0]?.t) return [];
  const r = await c.query<{ v: number }>("SELECT version::int AS v FROM sigil_schema");
  return r.rows.map((row) => row.v);
}

function tooNew(version: number): StoreError {
  return new StoreError(
    `the PostgreSQL schema is version ${version}, newer than this sigil understands (${LATEST_SCHEMA}); upgrade sigil, refusing to start`,
    "schema_too_new",
  );
}

/** Brings the schema up to date (or refuses a newer one). Returns the version now in place. */
export async function migrate(db: Database): Promise<number> {
  // Fast path: one read, no lock, when nothing is to be done.
  const applied = await db.tx("main", (c) => appliedVersions(c));
  const seen = Math.max(0, ...applied);
  if (seen > LATEST_SCHEMA) throw tooNew(seen);
  if (MIGRATIONS.every((m) => applied.includes(m.version))) return LATEST_SCHEMA;
  for (let attempt = 0; ; attempt++) {
    try {
      return await db.tx("main", async (c) => {
        await c.query(
          "CREATE TABLE IF NOT EXISTS sigil_schema (version integer PRIMARY KEY, description text NOT NULL, applied_at timestamptz NOT NULL DEFAULT now())",
        );
        // Self-conflicting, and LOCK TABLE checks privileges before it waits: only sigil's role can hold it.
        await c.query("LOCK TABLE sigil_schema IN SHARE ROW EXCLUSIVE MODE");
        const v = await currentVersion(c);
        if (v > LATEST_SCHEMA) throw tooNew(v);
        const done = new Set(await appliedVersions(c));
        for (const m of MIGRATIONS) {
          if (done.has(m.version)) continue;
          await c.query(m.sql);
          await c.query("INSERT INTO sigil_schema (version, description) VALUES ($1, $2)", [m.version, m.description]);
        }
        return LATEST_SCHEMA;
      });
    } catch (err) {
      // Two first starts creating sigil_schema at once: the loser sees a duplicate; it is there now.
      const code = ((err as { cause?: { code?: unknown } }).cause ?? (err as { code?: unknown }))?.code;
      if (attempt < 3 && (code === "23505" || code === "42P07")) continue;
      throw err;
    }
  }
}
