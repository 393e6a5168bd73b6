import * as z from "zod";
import { defineAdminTool } from "../../src/pipeline/tool.js";
import { SECRET_NAME_MAX } from "../../src/identity/vault.js";
import { identityId } from "./schemas.js";

export const deleteSecret = defineAdminTool({
  name: "delete_secret",
  title: "Delete secret",
  description:
    "Deletes an identity's vault secret (every version). The audit log records the name and the version deleted. Deleting a name that does not exist changes nothing and returns deleted: false.",
  annotations: { readOnlyHint: false, destructiveHint: true, idempotentHint: true, openWorldHint: false },
  input: z.strictObject({
    identityId,
    name: z.string().min(1).max(SECRET_NAME_MAX).describe("The secret's name"),
  }),
  output: z.object({ name: z.string(), deleted: z.boolean(), version: z.number().int().optional() }),
  run: ({ secrets }, a) => secrets.delete(a.identityId, a.name),
});
