/**
 * The home: where it lives, how its master key is found, creating one (`sigil init`) and opening
 * one (every other command and `sigil serve`). Opening checks the registry and that the master key
 * belongs to it, and refuses to start otherwise; what is built on the opened store is src/app.ts.
 */
import path from "node:path";
import { promises as fsp } from "node:fs";
import { createHmac } from "node:crypto";
import { cryptoReady } from "../crypto/sodium.js";
import { MasterKey } from "../crypto/master-key.js";
import { hashesEqual, newToken } from "../crypto/tokens.js";
import { SigilError } from "../errors.js";
import { describeStore, openStore } from "../../store/index.js";
import { type RegistryMeta, type Store, StoreError } from "../../store/types.js";
import { type FileLayer, realFiles } from "../util/fsx.js";
import { filesFor } from "../util/faults.js";
import { type Config, type Env, configFrom } from "../config.js";
import { ensureDefaultTenant } from "../tenant/tenants.js";
import { RecordMac, TokenHashes } from "./record-mac.js";
import { TENANT_RECORD_KIND } from "./authenticated-store.js";

/**
 * The registry's format. 1: plain SHA-256 token hashes, no record MACs. 2: token hashes keyed under
 * the master key and identity records MAC'd (src/identity/record-mac.ts). 3: tenant records MAC'd
 * too. An older home is upgraded in place when a newer sigil first opens it (`upgradeRegistry`).
 */
export const SCHEMA_VERSION = 3;

/** The record id of the registry metadata's MAC. */
const META_ID = "registry";

/**
 * The value the registry keeps to tell a wrong master key at start. Schema 2 keeps a value that
 * differs from schema 1's, so whoever writes the store cannot turn a schema-2 registry back into
 * schema 1 (which would make the next start re-run the upgrade and seal whatever forged records
 * it found): they would need schema 1's value, which a schema-2 registry never holds.
 */
export function masterKeyCheck(master: MasterKey, schemaVersion: number): string {
  if (schemaVersion < 2) return master.checkValue();
  return createHmac("sha256", master.subkey("master-check")).update("sigil-home/schema-2").digest("base64url").slice(0, 22);
}

/** Whether the master key belongs to the registry described by `meta` (its own schema's check value). */
export function masterKeyMatches(master: MasterKey, meta: RegistryMeta): boolean {
  return typeof meta.masterKeyCheck === "string" && hashesEqual(masterKeyCheck(master, meta.schemaVersion), meta.masterKeyCheck);
}

/** The registry metadata with its MAC (over every other member: the admin token hash included). */
export function sealMeta(macs: RecordMac, meta: RegistryMeta): RegistryMeta {
  return macs.seal("meta", META_ID, meta);
}

/** Whether the registry metadata's MAC checks (false when it has none). */
export function metaAuthentic(macs: RecordMac, meta: RegistryMeta): boolean {
  return macs.check("meta", META_ID, meta);
}

export interface HomeOptions {
  home: string;
  /** The parsed environment (src/config.ts); or `env`, parsed here. */
  config?: Config;
  env?: Env;
  files?: FileLayer;
}

export const masterKeyFile = (home: string): string => path.join(home, "master.key");

/**
 * The master key: `SIGIL_MASTER_KEY` (base64, 32 bytes) or the home's key file. Never generated
 * here: only `sigil init` creates one, so a lost key can never be silently replaced over data.
 */
export async function loadMasterKey(home: string, config: Pick<Config, "masterKey">): Promise<MasterKey> {
  if (config.masterKey !== undefined) {
    try {
      return MasterKey.fromBase64(config.masterKey);
    } catch {
      throw new SigilError("master_key_invalid", "SIGIL_MASTER_KEY is not base64 of 32 bytes.");
    }
  }
  let text: string;
  try {
    text = await fsp.readFile(masterKeyFile(home), "utf8");
  } catch {
    throw new SigilError(
      "master_key_missing",
      `The master key is missing: set SIGIL_MASTER_KEY or restore ${masterKeyFile(home)}; sigil will not start without it.`,
    );
  }
  try {
    return MasterKey.fromBase64(text);
  } catch {
    throw new SigilError("master_key_invalid", `${masterKeyFile(home)} does not hold a valid master key.`);
  }
}

/** Creates a new home. Refuses, changing nothing, if one is already initialised there. */
export async function initHome(opts: HomeOptions): Promise<{ home: string; adminToken: string }> {
  const config = configFrom(opts);
  await cryptoReady();
  const storeOpts = { home: opts.home, files: opts.files, storeUrl: config.storeUrl };
  const where = describeStore(storeOpts);
  const store = openStore(storeOpts);
  try {
    return await initIn(opts, config, store, where);
  } finally {
    await store.close();
  }
}

async function initIn(opts: HomeOptions, config: Config, store: Store, where: string): Promise<{ home: string; adminToken: string }> {
  const existing = await store.meta().then(
    () => true,
    (err: unknown) => {
      if (err instanceof StoreError && err.code === "not_initialised") return false;
      if (err instanceof StoreError && err.code === "schema_too_new") throw new SigilError("schema_too_new", `${err.message}.`);
      throw err;
    },
  );
  if (existing) throw new SigilError("already_initialised", `${where} is already initialised; nothing was changed.`);
  await fsp.mkdir(opts.home, { recursive: true, mode: 0o700 });
  await fsp.chmod(opts.home, 0o700);
  let master: MasterKey;
  if (config.masterKey !== undefined) {
    master = await loadMasterKey(opts.home, config);
  } else {
    master = MasterKey.generate();
    try {
      await fsp.writeFile(masterKeyFile(opts.home), master.toBase64() + "\n", { mode: 0o600, flag: "wx" });
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === "EEXIST") {
        throw new SigilError("already_initialised", `${masterKeyFile(opts.home)} already exists; refusing to replace a master key.`);
      }
      throw err;
    }
  }
  const adminToken = newToken("admin");
  try {
    await store.initialise(
      sealMeta(RecordMac.from(master), {
        format: "sigil-home",
        schemaVersion: SCHEMA_VERSION,
        createdAt: new Date().toISOString(),
        adminTokenHash: TokenHashes.from(master).hash(adminToken),
        masterKeyCheck: masterKeyCheck(master, SCHEMA_VERSION),
        tenantLogsSince: new Date().toISOString(),
      }),
    );
  } catch (err) {
    if (err instanceof StoreError && err.code === "already_initialised") {
      throw new SigilError("already_initialised", `${where} is already initialised; nothing was changed.`);
    }
    throw err;
  }
  await ensureDefaultTenant(store, master, Date.now);
  return { home: opts.home, adminToken };
}

/**
 * Opens an initialised home's store and master key; refuses to start when the registry or master
 * key is missing or wrong (the store is closed again then).
 */
export async function openHome(opts: HomeOptions): Promise<{ store: Store; master: MasterKey }> {
  const config = configFrom(opts);
  await cryptoReady();
  const storeOpts = { home: opts.home, files: opts.files ?? filesFor(realFiles, config.testFaults), storeUrl: config.storeUrl };
  const where = describeStore(storeOpts);
  const store = openStore(storeOpts);
  let meta;
  try {
    meta = await store.meta();
  } catch (err) {
    await store.close().catch(() => {});
    if (err instanceof StoreError && err.code === "not_initialised") {
      throw new SigilError("not_initialised", `No sigil ${store.kind === "postgres" ? "registry in" : "home at"} ${where}: run \`sigil init\` first.`);
    }
    if (err instanceof StoreError && err.code === "schema_too_new") throw new SigilError("schema_too_new", `${err.message}.`);
    const why = store.kind === "postgres" && err instanceof StoreError ? ` (${err.message})` : "";
    throw new SigilError("registry_unreadable", `The registry at ${where} cannot be read${why}; refusing to start.`, { cause: err });
  }
  try {
    if (meta.schemaVersion > SCHEMA_VERSION) {
      throw new SigilError("schema_too_new", `The home at ${opts.home} was written by a newer sigil (schema ${meta.schemaVersion}).`);
    }
    const master = await loadMasterKey(opts.home, config);
    if (!masterKeyMatches(master, meta)) {
      throw new SigilError("master_key_mismatch", `The master key does not belong to the home at ${opts.home}; refusing to start.`);
    }
    if (meta.schemaVersion < SCHEMA_VERSION) await upgradeRegistry(store, master);
    return { store, master };
  } catch (err) {
    await store.close().catch(() => {});
    throw err;
  }
}

/**
 * The in-place upgrade, without knowing any token. Schema 1 → 2: each identity's stored token hash
 * h becomes HMAC(k, h) — exactly the keyed hash of its token (record-mac.ts) — and the record is
 * MAC'd. Schema 2 → 3: each tenant record is MAC'd as it is (kind `tenant`; its admin token hash is
 * already keyed). Then the admin token hash (from schema 1), the master-key check value and the
 * metadata's MAC, in one atomic write that marks the upgrade done. Safe to run by several
 * processes at once and to resume after a crash: a record that already carries a valid MAC is left
 * as it is. What an older registry holds when the upgrade runs is taken as genuine (there is
 * nothing to check it against); every write after it is authenticated. Servers of the previous
 * version must be stopped first (a newer schema makes them refuse to start).
 */
export async function upgradeRegistry(store: Store, master: MasterKey): Promise<RegistryMeta> {
  const macs = RecordMac.from(master);
  const tokens = TokenHashes.from(master);
  const from = (await store.meta()).schemaVersion;
  if (from < 2) {
    for (const rec of await store.listIdentities()) {
      await store.updateIdentity(rec.id, (r) =>
        macs.check("identity", r.id, r) ? r : macs.seal("identity", r.id, { ...r, tokenHash: tokens.upgrade(r.tokenHash) }),
      );
    }
  }
  if (from < 3) {
    for (const t of await store.listTenants()) {
      await store.updateTenant(t.id, (r) => (macs.check(TENANT_RECORD_KIND, r.id, r) ? r : macs.seal(TENANT_RECORD_KIND, r.id, r)));
    }
  }
  return store.updateMeta((m) => {
    if (m.schemaVersion >= SCHEMA_VERSION) return m;
    if (!masterKeyMatches(master, m)) throw new SigilError("master_key_mismatch", "The master key does not belong to this registry; refusing to upgrade it.");
    return sealMeta(macs, {
      ...m,
      schemaVersion: SCHEMA_VERSION,
      adminTokenHash: m.schemaVersion < 2 ? tokens.upgrade(m.adminTokenHash) : m.adminTokenHash,
      masterKeyCheck: masterKeyCheck(master, SCHEMA_VERSION),
    });
  });
}
