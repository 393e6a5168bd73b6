import * as z from "zod";
import { defineAdminTool } from "../../src/pipeline/tool.js";
import { ADMIN, identityId } from "./schemas.js";

export const revokeIdentity = defineAdminTool({
  name: "revoke_identity",
  title: "Revoke identity",
  description: "Revokes an identity: its token stops working and running sessions are refused on their next call. Its audit log stays verifiable.",
  annotations: { ...ADMIN, destructiveHint: true, idempotentHint: true },
  input: z.strictObject({ identityId }),
  output: z.object({ id: z.string(), revokedAt: z.string() }),
  run: ({ identities }, a) => identities.revoke(a.identityId),
});
