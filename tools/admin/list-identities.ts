import * as z from "zod";
import { defineAdminTool } from "../../src/pipeline/tool.js";
import { ADMIN_READ, IdentityView } from "./schemas.js";

export const listIdentities = defineAdminTool({
  name: "list_identities",
  title: "List identities",
  description: "Lists every identity (never tokens or private keys).",
  annotations: ADMIN_READ,
  input: z.strictObject({}),
  output: z.object({ identities: z.array(IdentityView) }),
  run: async ({ identities }) => ({ identities: await identities.list() }),
});
