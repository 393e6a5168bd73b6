import * as z from "zod";
import { defineAdminTool } from "../../src/pipeline/tool.js";
import { ADMIN_READ, IdentityView, identityId } from "./schemas.js";

export const getIdentity = defineAdminTool({
  name: "get_identity",
  title: "Get identity",
  description: "Shows one identity: channels, addresses, policy and key history (never tokens or private keys).",
  annotations: ADMIN_READ,
  input: z.strictObject({ identityId }),
  output: IdentityView,
  run: async ({ identities }, a) => ({ ...(await identities.show(a.identityId)) }),
});
