/**
 * The store backends the store-dependent suites run against: the embedded home always, and
 * PostgreSQL when the global setup (pg-global.ts) has a server. Each PostgreSQL home gets a fresh
 * database of its own, so test files (and tests) run in parallel without seeing each other.
 *
 *   describe.each(backends)("… (%s store)", (backend) => { const home = makeHome({}, { store: backend }); … })
 */
import { spawnSync } from "node:child_process";
import { randomBytes } from "node:crypto";
import path from "node:path";
import { fileURLToPath } from "node:url";
import pg from "pg";
import { inject } from "vitest";
import { withDatabase } from "./pg-cluster.mjs";

export type Backend = "file" | "postgres";

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "../..");

/** Superuser URL on the test server, "" when there is none. */
export const pgUrl: string = inject("pgUrl") ?? "";
/** Why there is no PostgreSQL (printed by the global setup too). */
export const pgNote: string = inject("pgNote") ?? "";
/** PostgreSQL's binaries, for tests that need a cluster of their own ("" when not installed). */
export const pgBin: string = inject("pgBin") ?? "";

export const backends: Backend[] = pgUrl ? ["file", "postgres"] : ["file"];

if (!pgUrl) process.stderr.write(`[sigil tests] ${pgNote || "No PostgreSQL: the PostgreSQL store tests are SKIPPED."}\n`);

/** A title suffix that makes a skip visible in the report. */
export const pgSkipNote = pgUrl ? "" : " — SKIPPED: PostgreSQL is not installed";

const CREATE_DB = `
import pg from "pg";
const [admin, name] = process.argv.slice(1);
const c = new pg.Client({ connectionString: admin });
await c.connect();
await c.query('CREATE DATABASE "' + name + '"');
await c.end();
`;

/** Creates a fresh, empty database on the test server and returns its URL (synchronously, for makeHome). */
export function freshDatabaseUrlSync(): string {
  if (!pgUrl) throw new Error("no PostgreSQL server for the tests");
  const name = "sigil_t_" + randomBytes(6).toString("hex");
  const r = spawnSync(process.execPath, ["--input-type=module", "-e", CREATE_DB, pgUrl, name], { cwd: ROOT, encoding: "utf8", timeout: 30_000 });
  if (r.status !== 0) throw new Error(`creating test database ${name} failed: ${r.stderr}`);
  return withDatabase(pgUrl, name);
}

/** Creates a fresh, empty database on the test server and returns its URL. */
export async function freshDatabaseUrl(): Promise<string> {
  if (!pgUrl) throw new Error("no PostgreSQL server for the tests");
  const name = "sigil_t_" + randomBytes(6).toString("hex");
  await pgQuery(pgUrl, `CREATE DATABASE "${name}"`);
  return withDatabase(pgUrl, name);
}

/** One statement on its own connection. */
export async function pgQuery<R extends pg.QueryResultRow = any>(url: string, sql: string, params: unknown[] = []): Promise<R[]> {
  const c = new pg.Client({ connectionString: url });
  await c.connect();
  try {
    return (await c.query<R>(sql, params)).rows;
  } finally {
    await c.end();
  }
}

/** A held connection, for tests that keep a transaction (and its locks) open. */
export async function pgConnect(url: string): Promise<pg.Client> {
  const c = new pg.Client({ connectionString: url });
  c.on("error", () => {});
  await c.connect();
  return c;
}

export { withDatabase };
