import * as z from "zod";
import { defineAdminTool } from "../../src/pipeline/tool.js";
import { ADMIN_READ, VerifyReport, identityId } from "./schemas.js";

export const verifyAudit = defineAdminTool({
  name: "verify_audit",
  title: "Verify audit log",
  description: "Verifies every entry (hash chain and signatures) of one identity's log, or of all logs, and names the first bad seq.",
  annotations: ADMIN_READ,
  input: z.strictObject({ identityId: identityId.optional() }),
  output: VerifyReport,
  run: async ({ audit }, a) => ({ ...(await audit.verify(a.identityId)) }),
});
