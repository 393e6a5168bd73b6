/**
 * Tenants (README: "Tenants"):
 *
 *   sigil tenant create --name N     a tenant with its own signing key and admin token (shown once)
 *   sigil tenant list                tenants with their public keys (never tokens or private keys)
 *
 * `sigil identity create --tenant ID` puts an identity in a tenant (default: `default`).
 */
import type { RegisterCommands } from "./commands.js";
import { shown } from "../util/printable.js";

export const registerTenantCommands: RegisterCommands = (program, kit) => {
  const tenant = program.command("tenant").description("tenants: sets of identities with their own admin token and signing key");
  tenant
    .command("create")
    .description("create a tenant: its own signing key (it signs its identities' delegation statements) and an admin token (shown once) that sees and manages only its identities")
    .requiredOption("--name <name>", "a human-readable name")
    .addOption(kit.jsonOpt())
    .action(async (o: { name: string; json?: boolean }) => {
      const r = await kit.withApp((app) => app.tenants.create({ name: o.name }));
      kit.out(!!o.json, r, () => `Created tenant ${r.id} (${shown(r.name)})\nkey: ${r.keyId}\nTenant admin token (shown once, keep it safe): ${r.adminToken}`);
    });
  tenant
    .command("list")
    .description("list tenants and their public keys (never tokens or private keys)")
    .addOption(kit.jsonOpt())
    .action(async (o: { json?: boolean }) => {
      const list = await kit.withApp((app) => app.tenants.list());
      kit.out(!!o.json, list, () => (list.length === 0 ? "No tenants." : list.map((t) => `${shown(t.id)}  ${shown(t.name)}  key ${shown(t.keyId)}`).join("\n")));
    });
};
