/**
 * OAuth grants (README: "Clients that only know a URL"):
 *
 *   sigil oauth grants ID      the OAuth clients allowed to act as identity ID (never tokens)
 *   sigil oauth revoke GRANT   ends a grant: its access and refresh tokens stop working at once
 *                              (audited in the identity's log as `oauth_revoked`, reason `admin`)
 */
import { Denied } from "../errors.js";
import { shown } from "../util/printable.js";
import type { RegisterCommands } from "./commands.js";

export const registerOAuthCommands: RegisterCommands = (program, kit) => {
  const oauth = program.command("oauth").description("OAuth grants: which clients may act as an identity");
  oauth
    .command("grants")
    .description("list the OAuth grants of an identity (client, resource, when; never tokens)")
    .argument("<id>")
    .addOption(kit.jsonOpt())
    .action(async (id: string, o: { json?: boolean }) => {
      const list = await kit.withApp(async (app) => {
        if (!(await app.store.getIdentity(id))) throw new Denied("not_found", `No identity ${id.slice(0, 40)}.`);
        return app.oauth.grants.list(id);
      });
      kit.out(!!o.json, list, () =>
        list.length === 0
          ? "No OAuth grants."
          : list.map((g) => `${g.id}  ${shown(g.clientName)}  ${shown(g.clientId)}  ${g.createdAt}${g.revokedAt ? `  revoked ${g.revokedAt}` : ""}`).join("\n"),
      );
    });
  oauth
    .command("revoke")
    .description("revoke an OAuth grant: its access and refresh tokens stop working at once")
    .argument("<grant>")
    .addOption(kit.jsonOpt())
    .action(async (grant: string, o: { json?: boolean }) => {
      await kit.withApp(async (app) => {
        const g = await app.oauth.grants.read(grant);
        if (!g) throw new Denied("not_found", `No OAuth grant ${grant.slice(0, 40)}.`);
        await app.oauth.grants.revoke(grant, "admin");
      });
      kit.out(!!o.json, { id: grant, revoked: true }, () => `Revoked OAuth grant ${grant}.`);
    });
};
