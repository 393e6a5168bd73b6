import * as z from "zod";
import { defineAdminTool } from "../../src/pipeline/tool.js";
import { ADMIN, IdentityView, identityId } from "./schemas.js";

export const updatePolicy = defineAdminTool({
  name: "update_policy",
  title: "Update policy",
  description: "Replaces an identity's policy document (validated; default deny). Takes effect on the next call of every running session.",
  annotations: { ...ADMIN, idempotentHint: true },
  input: z
    .strictObject({
      identityId,
      policy: z.record(z.string(), z.unknown()).optional().describe("The complete new policy document"),
      policies: z.record(z.string(), z.unknown()).optional().describe("Older name of policy, still accepted"),
    })
    .refine((a) => (a.policy === undefined) !== (a.policies === undefined), { error: "give the new policy document once, as policy (policies is its older name)", path: ["policy"] }),
  output: IdentityView,
  run: async ({ identities }, a) => ({ ...(await identities.updatePolicy(a.identityId, a.policy ?? a.policies)) }),
});
