import * as z from "zod";
import { defineAdminTool } from "../../src/pipeline/tool.js";
import { ADMIN_READ } from "./schemas.js";

export const listTenants = defineAdminTool({
  name: "list_tenants",
  title: "List tenants",
  description: "Lists tenants and their public keys (a tenant admin: its own).",
  annotations: ADMIN_READ,
  input: z.strictObject({}),
  output: z.object({
    tenants: z.array(z.object({ id: z.string(), name: z.string(), keyId: z.string(), publicKey: z.string(), createdAt: z.string() })),
  }),
  run: async ({ tenants }) => ({ tenants: await tenants.list() }),
});
