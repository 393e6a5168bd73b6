import * as z from "zod";
import { defineAdminTool } from "../../src/pipeline/tool.js";
import { SECRET_NAME_MAX, SECRET_VALUE_MAX_BYTES } from "../../src/identity/vault.js";
import { ADMIN, identityId } from "./schemas.js";

export const putSecret = defineAdminTool({
  name: "put_secret",
  title: "Put secret",
  description:
    "Stores a vault secret for an identity, sealed under the master key. Writing an existing name adds a new version. The audit log records the name and version, never the value.",
  annotations: ADMIN,
  input: z.strictObject({
    identityId,
    name: z.string().min(1).max(SECRET_NAME_MAX).describe("The secret's name, e.g. \"stripe/api-key\" (letters, digits, . _ - and / separators)"),
    value: z.string().min(1).max(SECRET_VALUE_MAX_BYTES).describe("The secret's value (UTF-8 text, at most 64 KiB)"),
  }),
  output: z.object({ name: z.string(), version: z.number().int() }),
  run: ({ secrets }, a) => secrets.put(a.identityId, a.name, a.value),
});
