import * as z from "zod";
import { defineAdminTool } from "../../src/pipeline/tool.js";
import { ADMIN } from "./schemas.js";

export const createTenant = defineAdminTool({
  name: "create_tenant",
  title: "Create tenant",
  description: "Creates a tenant: its own signing key, and an admin token (returned once) that manages only its identities.",
  annotations: ADMIN,
  rootOnly: true,
  input: z.strictObject({ name: z.string().min(1).max(64).describe("A human-readable name") }),
  output: z.object({ id: z.string(), name: z.string(), adminToken: z.string(), keyId: z.string(), publicKey: z.string() }),
  run: ({ tenants }, a) => tenants.create({ name: a.name }),
});
