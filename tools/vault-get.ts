import * as z from "zod";
import { Denied } from "../src/errors.js";
import { defineTool } from "../src/pipeline/tool.js";
import { SECRET_NAME_MAX, secretNameProblem } from "../src/identity/vault.js";
import { ReceiptSchema } from "./outbound.js";

/**
 * vault_get: returns one of the identity's secrets, if `allowedSecrets` names it.
 *
 * It is an "act" tool rather than a "read" one: the intent entry (name only) is durable before the
 * secret is opened, and the result entry records `{name, version}` — the version is only known
 * once the secret is read — never the value. The value goes back to this session only, and is
 * recorded in the exfiltration guard's sealed journal by the reader the pipeline hands out.
 */
export const vaultGet = defineTool({
  name: "vault_get",
  title: "Get a secret",
  description:
    "Returns a vault secret of this identity by name, if the policy's allowedSecrets lists it. Never logged; its value cannot leave through other tools. Refusal: `denied: <code>: <why>`.",
  channel: "vault",
  annotations: { readOnlyHint: true, destructiveHint: false, idempotentHint: true, openWorldHint: false },
  input: z.strictObject({
    name: z
      .string()
      .min(1)
      .max(SECRET_NAME_MAX)
      .refine((n) => secretNameProblem(n) === undefined, { message: "not a valid secret name (letters, digits, . _ - and / separators; no \"..\")" })
      .describe("The secret's name, e.g. \"stripe/api-key\""),
  }),
  output: z.object({
    name: z.string(),
    version: z.number().int(),
    value: z.string(),
    receipt: ReceiptSchema,
  }),
  effect: "act",
  action: (a) => ({ kind: "vault", tool: "vault_get", name: a.name }),
  redact: (a) => ({ name: a.name }),
  async run(ctx, a) {
    const secret = await ctx.vault.get(a.name);
    if (!secret) throw new Denied("secret_not_found", `there is no secret named "${a.name}" for this identity.`);
    ctx.memory.secretsRead.add(secret.value);
    return {
      structured: { name: secret.name, version: secret.version, value: secret.value },
      text: JSON.stringify({ name: secret.name, version: secret.version, value: secret.value }),
      audit: { name: secret.name, version: secret.version },
    };
  },
});
