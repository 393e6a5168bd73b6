import * as z from "zod";
import { defineAdminTool } from "../../src/pipeline/tool.js";
import { ADMIN, identityId } from "./schemas.js";

export const rotateKey = defineAdminTool({
  name: "rotate_key",
  title: "Rotate signing key",
  description: "Gives the identity a new signing key. The rotation is recorded in its audit log, signed by both keys; the old key stays verifiable.",
  annotations: ADMIN,
  input: z.strictObject({ identityId }),
  output: z.object({ keyId: z.string(), publicKey: z.string(), previousKeyId: z.string() }),
  run: ({ identities }, a) => identities.rotateKey(a.identityId),
});
