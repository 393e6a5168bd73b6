/**
 * `sigil secret put ID NAME` (value from stdin), `sigil secret delete ID NAME`, `sigil secret list ID`.
 * The value is read from standard input so that it never appears in a process list or a shell
 * history; one trailing newline (as `echo` adds) is removed. Nothing prints the value back.
 */
import { SigilError } from "../errors.js";
import type { RegisterCommands } from "./commands.js";

export function stripOneNewline(s: string): string {
  if (s.endsWith("\r\n")) return s.slice(0, -2);
  if (s.endsWith("\n")) return s.slice(0, -1);
  return s;
}

export const registerSecretCommands: RegisterCommands = (program, kit) => {
  const secret = program.command("secret").description("store and delete an identity's vault secrets (sealed under the master key)");
  secret
    .command("put")
    .description("store a secret for the identity, value read from stdin; writing an existing name adds a version")
    .argument("<id>")
    .argument("<name>")
    .addOption(kit.jsonOpt())
    .action(async (id: string, name: string, o: { json?: boolean }) => {
      const value = stripOneNewline(await kit.readStdin());
      if (value === "") throw new SigilError("invalid_arguments", "No secret value on standard input; pipe it in, e.g. `printf %s \"$VALUE\" | sigil secret put ID NAME`.");
      const r = await kit.withApp((app) => app.secrets.put(id, name, value));
      kit.out(!!o.json, r, () => `Stored ${r.name} version ${r.version}`);
    });
  secret
    .command("delete")
    .description("delete a secret of the identity (every version)")
    .argument("<id>")
    .argument("<name>")
    .addOption(kit.jsonOpt())
    .action(async (id: string, name: string, o: { json?: boolean }) => {
      const r = await kit.withApp((app) => app.secrets.delete(id, name));
      kit.out(!!o.json, r, () => (r.deleted ? `Deleted ${r.name} (was version ${r.version})` : `No secret ${r.name}; nothing changed`));
    });
  secret
    .command("reset-guard")
    .description(
      "after investigating guard_tampered: acknowledge the secrets the exfiltration guard's record lost (recorded in the identity's audit log), so its outbound calls are decided again; those values are no longer guarded, so replace them. Refused while the record exists but cannot be opened, or when it lacks nothing",
    )
    .argument("<id>")
    .addOption(kit.jsonOpt())
    .action(async (id: string, o: { json?: boolean }) => {
      const r = await kit.withApp((app) => app.secrets.resetGuard(id));
      kit.out(!!o.json, r, () => `Acknowledged ${r.acknowledged.length} lost read${r.acknowledged.length === 1 ? "" : "s"} of ${r.identityId}: ${r.acknowledged.map((x) => `${x.name} v${x.version} (read ${x.readAt})`).join(", ")}. Replace ${r.acknowledged.length === 1 ? "that secret" : "those secrets"} where ${r.acknowledged.length === 1 ? "it is" : "they are"} used.`);
    });
  secret
    .command("list")
    .description("list the names and versions of the identity's secrets (never values)")
    .argument("<id>")
    .addOption(kit.jsonOpt())
    .action(async (id: string, o: { json?: boolean }) => {
      const r = await kit.withApp((app) => app.secrets.list(id));
      kit.out(!!o.json, r, () => (r.length === 0 ? "No secrets." : r.map((x) => `${x.name}  v${x.version}`).join("\n")));
    });
};
