import * as z from "zod";
import { defineAdminTool } from "../../src/pipeline/tool.js";
import { ADMIN, identityId } from "./schemas.js";

export const rotateToken = defineAdminTool({
  name: "rotate_token",
  title: "Rotate agent token",
  description: "Issues a new agent token for the identity. The old token stops working at once, in every running session.",
  annotations: { ...ADMIN, destructiveHint: true },
  input: z.strictObject({ identityId }),
  output: z.object({ token: z.string() }),
  run: ({ identities }, a) => identities.rotateToken(a.identityId),
});
