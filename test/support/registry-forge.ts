/**
 * What someone who can write the store but lacks the master key can do: read and write identity
 * records and the registry metadata directly — the home's files (`identities/<id>.json`, the token
 * index `tokens/<hash>`, `tenants/`, `tenant-tokens/`, `sigil.json`) or the PostgreSQL tables
 * (`sigil_identities`, `sigil_tenants`, `sigil_meta`)
 * — never through sigil. Plus, for building expectations only, the keyed token hash a home stores.
 */
import { readFileSync, renameSync, rmSync, writeFileSync } from "node:fs";
import path from "node:path";
import { MasterKey } from "../../src/crypto/master-key.js";
import { tokenHash } from "../../src/crypto/tokens.js";
import { TokenHashes } from "../../src/identity/record-mac.js";
import { JOURNAL_NAME } from "../../src/policy/exfiltration-journal.js";
import { pgQuery } from "./backends.js";
import type { Home } from "./home.js";

/** The home's master key (what an attacker does NOT have: tests use it only to state expectations). */
export function masterOf(home: Home): MasterKey {
  if (home.env.SIGIL_MASTER_KEY) return MasterKey.fromBase64(home.env.SIGIL_MASTER_KEY);
  return MasterKey.fromBase64(readFileSync(path.join(home.env.SIGIL_HOME!, "master.key"), "utf8"));
}

/** The keyed hash the registry stores for `token`. */
export function storedTokenHash(home: Home, token: string): string {
  return TokenHashes.from(masterOf(home)).hash(token);
}

/** The hash an attacker can compute for a token of their own: the plain, unkeyed form. */
export const plainTokenHash = tokenHash;

const homeDir = (home: Home): string => home.env.SIGIL_HOME!;

/** Writes a file the way an editor would: a new inode, so every reader's cache sees the change. */
function replaceFile(file: string, text: string): void {
  writeFileSync(file + ".forge", text, { mode: 0o600 });
  renameSync(file + ".forge", file);
}

export async function readRecord(home: Home, id: string): Promise<any> {
  if (home.store === "file") return JSON.parse(readFileSync(path.join(homeDir(home), "identities", `${id}.json`), "utf8"));
  const rows = await pgQuery(home.env.SIGIL_STORE_URL!, "SELECT record FROM sigil_identities WHERE id = $1", [id]);
  return rows[0]?.record;
}

/** Writes `record` as identity `id`'s, its token index entry included (as the store keeps it). */
export async function writeRecord(home: Home, id: string, record: any): Promise<void> {
  if (home.store === "file") {
    const before = await readRecord(home, id);
    replaceFile(path.join(homeDir(home), "identities", `${id}.json`), JSON.stringify(record, null, 1) + "\n");
    if (before?.tokenHash !== record.tokenHash) {
      writeFileSync(path.join(homeDir(home), "tokens", record.tokenHash), id + "\n", { mode: 0o600 });
      rmSync(path.join(homeDir(home), "tokens", before.tokenHash), { force: true });
    }
    return;
  }
  await pgQuery(home.env.SIGIL_STORE_URL!, "UPDATE sigil_identities SET record = $2, token_hash = $3 WHERE id = $1", [id, JSON.stringify(record), record.tokenHash]);
}

export async function readTenant(home: Home, id: string): Promise<any> {
  if (home.store === "file") return JSON.parse(readFileSync(path.join(homeDir(home), "tenants", `${id}.json`), "utf8"));
  return (await pgQuery(home.env.SIGIL_STORE_URL!, "SELECT record FROM sigil_tenants WHERE id = $1", [id]))[0]?.record;
}

/**
 * Writes `record` as tenant `id`'s, its admin token index included (file: `tenant-tokens/<hash>`;
 * PostgreSQL: the `admin_token_hash` column, taken from whichever row held it first).
 */
export async function writeTenant(home: Home, id: string, record: any): Promise<void> {
  if (home.store === "file") {
    replaceFile(path.join(homeDir(home), "tenants", `${id}.json`), JSON.stringify(record, null, 1) + "\n");
    if (record.adminTokenHash) writeFileSync(path.join(homeDir(home), "tenant-tokens", record.adminTokenHash), id + "\n", { mode: 0o600 });
    return;
  }
  const url = home.env.SIGIL_STORE_URL!;
  if (record.adminTokenHash) await pgQuery(url, "UPDATE sigil_tenants SET admin_token_hash = NULL WHERE admin_token_hash = $1 AND id <> $2", [record.adminTokenHash, id]);
  await pgQuery(url, "UPDATE sigil_tenants SET record = $2, admin_token_hash = $3 WHERE id = $1", [id, JSON.stringify(record), record.adminTokenHash ?? null]);
}

export async function readMeta(home: Home): Promise<any> {
  if (home.store === "file") return JSON.parse(readFileSync(path.join(homeDir(home), "sigil.json"), "utf8"));
  return (await pgQuery(home.env.SIGIL_STORE_URL!, "SELECT meta FROM sigil_meta WHERE id = 1"))[0]?.meta;
}

export async function writeMeta(home: Home, meta: any): Promise<void> {
  if (home.store === "file") return replaceFile(path.join(homeDir(home), "sigil.json"), JSON.stringify(meta, null, 1) + "\n");
  await pgQuery(home.env.SIGIL_STORE_URL!, "UPDATE sigil_meta SET meta = $1 WHERE id = 1", [JSON.stringify(meta)]);
}

/**
 * Rewrites a home's registry exactly as the previous format (schema 1) kept it: identity records
 * without MACs and with plain SHA-256 token hashes, metadata with the plain admin token hash, the
 * schema-1 master-key check value and no MAC. Tokens are needed to write their plain hashes.
 */
export async function toPreviousFormat(home: Home, identities: Array<{ id: string; token: string }>): Promise<void> {
  for (const who of identities) {
    const { mac: _m, ...rec } = await readRecord(home, who.id);
    await writeRecord(home, who.id, { ...rec, tokenHash: plainTokenHash(who.token) });
  }
  const { mac: _m, ...meta } = await readMeta(home);
  await writeMeta(home, { ...meta, schemaVersion: 1, adminTokenHash: plainTokenHash(home.adminToken), masterKeyCheck: masterOf(home).checkValue() });
}

/** The exfiltration guard's journal of an identity as the store holds it (the sealed record; undefined when absent). */
export async function readJournal(home: Home, id: string): Promise<any> {
  if (home.store === "file") {
    const file = path.join(homeDir(home), "secrets", `${id}.json`);
    try {
      return JSON.parse(readFileSync(file, "utf8")).secrets?.[JOURNAL_NAME];
    } catch {
      return undefined;
    }
  }
  return (await pgQuery(home.env.SIGIL_STORE_URL!, "SELECT record FROM sigil_secrets WHERE identity_id = $1 AND name = $2", [id, JOURNAL_NAME]))[0]?.record;
}

/** Puts `record` back as the identity's journal, or deletes the journal when `record` is undefined. */
export async function writeJournal(home: Home, id: string, record: any): Promise<void> {
  if (home.store === "file") {
    const file = path.join(homeDir(home), "secrets", `${id}.json`);
    const doc = JSON.parse(readFileSync(file, "utf8"));
    if (record === undefined) delete doc.secrets[JOURNAL_NAME];
    else doc.secrets[JOURNAL_NAME] = record;
    return replaceFile(file, JSON.stringify(doc));
  }
  const url = home.env.SIGIL_STORE_URL!;
  await pgQuery(url, "DELETE FROM sigil_secrets WHERE identity_id = $1 AND name = $2", [id, JOURNAL_NAME]);
  if (record !== undefined) await pgQuery(url, "INSERT INTO sigil_secrets (identity_id, name, record) VALUES ($1, $2, $3)", [id, JOURNAL_NAME, JSON.stringify(record)]);
}
