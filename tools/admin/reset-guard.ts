import * as z from "zod";
import { defineAdminTool } from "../../src/pipeline/tool.js";
import { identityId } from "./schemas.js";

export const resetGuard = defineAdminTool({
  name: "reset_exfiltration_guard",
  title: "Reset exfiltration guard",
  description:
    "After investigating guard_tampered: acknowledges the secrets the guard's record lost (audited), so outbound calls resume. Those values are no longer guarded; replace them. Refused while the record cannot be opened, or when nothing is lost.",
  annotations: { readOnlyHint: false, destructiveHint: true, idempotentHint: false, openWorldHint: false },
  input: z.strictObject({ identityId }),
  output: z.object({ identityId: z.string(), acknowledged: z.array(z.object({ name: z.string(), version: z.number().int(), readAt: z.string() })) }),
  run: ({ secrets }, a) => secrets.resetGuard(a.identityId),
});
