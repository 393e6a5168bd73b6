/**
 * `sigil keys export ID`: the identity's JWKS — current and retired keys with their validity, `kid`
 * = RFC 7638 thumbprint — exactly what `GET /identities/<id>/keys` serves, for offline use (e.g.
 * `sigil receipt verify-email --keys FILE`). `sigil keys directory`: the Web Bot Auth directory
 * document that `GET /.well-known/http-message-signatures-directory` serves (unsigned here: the
 * response signature covers the authority it is fetched at, so only the server can make it).
 * Both always print JSON (`--json` is accepted for uniformity).
 */
import { directoryDocument, directoryInputs, identityJwks } from "../provenance/directory.js";
import type { RegisterCommands } from "./commands.js";

export const registerKeysCommands: RegisterCommands = (program, kit) => {
  const keys = program.command("keys").description("export the public keys others verify this home's identities with");
  keys
    .command("export")
    .description("print the identity's JWKS: current and retired keys with validity (as GET /identities/<id>/keys)")
    .argument("<id>")
    .addOption(kit.jsonOpt())
    .action(async (id: string) => {
      const doc = await kit.withApp(async (app) => identityJwks(await app.identities.published(id)));
      process.stdout.write(JSON.stringify(doc, null, 2) + "\n");
    });
  keys
    .command("directory")
    .description("print the Web Bot Auth key directory document (as GET /.well-known/http-message-signatures-directory, without its response signature)")
    .addOption(kit.jsonOpt())
    .action(async () => {
      const doc = await kit.withApp(async (app) => {
        const { records, tenants, providerKeys } = await directoryInputs(app);
        return directoryDocument(records, app.now(), tenants, providerKeys);
      });
      process.stdout.write(JSON.stringify(doc, null, 2) + "\n");
    });
};
