/**
 * `sigil store migrate --to postgres://…`: copies the embedded home (SIGIL_HOME) into an empty
 * PostgreSQL store. Every audit chain is verified before the copy (a damaged chain is not carried
 * over silently: nothing is copied) and again from the database afterwards; the copy itself is one
 * transaction. The master key is not copied: keep the home's key file, or set SIGIL_MASTER_KEY on
 * every instance. Stop the instances using the home first.
 */
import { cryptoReady } from "../crypto/sodium.js";
import { hashesEqual } from "../crypto/tokens.js";
import { SigilError } from "../errors.js";
import { loadMasterKey, masterKeyMatches } from "../identity/home.js";
import { publicKeys } from "../identity/audit-log.js";
import { verifyChain } from "../audit/verify.js";
import { tenantKeys } from "../audit/verify-home.js";
import { openFileStore } from "../../store/index.js";
import { PostgresStore } from "../../store/postgres/index.js";
import { importStore } from "../../store/postgres/import.js";
import { isPostgresUrl, redactUrl } from "../../store/postgres/db.js";
import { StoreError } from "../../store/types.js";
import type { RegisterCommands } from "./commands.js";
import type { Config } from "../config.js";

export interface MigrateReport {
  from: string;
  to: string;
  identities: number;
  entries: number;
  secrets: number;
  oauthClients: number;
  oauthGrants: number;
  verified: boolean;
}

export const registerStoreCommands: RegisterCommands = (program, kit) => {
  const store = program.command("store").description("move a home between store backends");
  store
    .command("migrate")
    .description("copy the embedded home (SIGIL_HOME) into an empty PostgreSQL store; every audit chain is verified before and after")
    .requiredOption("--to <url>", "the target, postgres://user:pass@host:5432/db")
    .addOption(kit.jsonOpt())
    .action(async (o: { to: string; json?: boolean }) => {
      if (!isPostgresUrl(o.to)) throw new SigilError("invalid_arguments", "--to must be a postgres:// or postgresql:// URL.");
      const r = await migrateHome(kit.home(), o.to, kit.config());
      kit.out(!!o.json, r, () =>
        `Copied ${r.identities} identities, ${r.entries} audit entries, ${r.secrets} secrets, ${r.oauthClients} OAuth clients and ${r.oauthGrants} OAuth grants from ${r.from} to ${r.to}; every chain verifies there.\n` +
        `Run instances with SIGIL_STORE_URL set (and SIGIL_MASTER_KEY, or this home's master.key).`,
      );
    });
};

export async function migrateHome(home: string, url: string, config: Pick<Config, "masterKey">): Promise<MigrateReport> {
  await cryptoReady();
  const source = openFileStore({ home });
  const target = new PostgresStore(url);
  try {
    let meta;
    try {
      meta = await source.meta();
    } catch (err) {
      if (err instanceof StoreError && err.code === "not_initialised") throw new SigilError("not_initialised", `No sigil home at ${home} to migrate.`);
      throw err;
    }
    const master = await loadMasterKey(home, config);
    if (!masterKeyMatches(master, meta)) {
      throw new SigilError("master_key_mismatch", `The master key does not belong to the home at ${home}; the migrated store would be unusable.`);
    }
    const identities = await source.listIdentities();
    for (const rec of identities) {
      const v = await verifyChain(rec.id, source.audit.readLines(rec.id), publicKeys(rec));
      if (!v.ok) {
        throw new SigilError(
          "audit_invalid",
          `The audit log of ${rec.id} does not verify (seq ${v.firstBadSeq}: ${v.error}); nothing was copied. Run \`sigil audit verify\`.`,
        );
      }
    }
    // Tenants' own logs too (approvers, passkeys), against their tenant's key.
    const tenants = await source.listTenants();
    for (const t of tenants) {
      const v = await verifyChain(t.id, source.audit.readLines(t.id), tenantKeys(t));
      if (!v.ok) throw new SigilError("audit_invalid", `The audit log of tenant ${t.id} does not verify (seq ${v.firstBadSeq}: ${v.error}); nothing was copied. Run \`sigil audit verify\`.`);
    }
    let counts;
    try {
      counts = await importStore(source, target);
    } catch (err) {
      if (err instanceof StoreError && err.code === "already_initialised") throw new SigilError("already_initialised", `${err.message}; nothing was copied.`);
      if (err instanceof StoreError && err.code === "schema_too_new") throw new SigilError("schema_too_new", `${err.message}.`);
      if (err instanceof StoreError) throw new SigilError("store_unavailable", `The copy failed and was rolled back: ${err.message}.`, { cause: err });
      throw err;
    }
    // Read every chain back from the database and verify it there.
    for (const rec of identities) {
      const v = await verifyChain(rec.id, target.audit.readLines(rec.id), publicKeys(rec));
      if (!v.ok) throw new SigilError("audit_invalid", `The copy of ${rec.id}'s audit log does not verify (seq ${v.firstBadSeq}: ${v.error}).`);
    }
    for (const t of tenants) {
      const v = await verifyChain(t.id, target.audit.readLines(t.id), tenantKeys(t));
      if (!v.ok) throw new SigilError("audit_invalid", `The copy of tenant ${t.id}'s audit log does not verify (seq ${v.firstBadSeq}: ${v.error}).`);
    }
    return { from: home, to: redactUrl(url), ...counts, verified: true };
  } finally {
    await source.close();
    await target.close();
  }
}
