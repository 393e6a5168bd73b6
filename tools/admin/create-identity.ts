import * as z from "zod";
import { defineAdminTool } from "../../src/pipeline/tool.js";
import { ADMIN, Channel } from "./schemas.js";

export const createIdentity = defineAdminTool({
  name: "create_identity",
  title: "Create identity",
  description: "Issues a new agent identity with its own signing key, token and policy. Returns the agent token once; only its hash is kept.",
  annotations: ADMIN,
  input: z.strictObject({
    name: z.string().min(1).max(64).describe("A human-readable name"),
    channels: z.array(Channel).max(6).describe("Channels the identity may use: email, sms, voice, vault, card, sign"),
    policy: z.record(z.string(), z.unknown()).optional().describe("The policy document (see the README's Policy section); default deny"),
    policies: z.record(z.string(), z.unknown()).optional().describe("Older name of policy, still accepted"),
    email: z.string().max(254).optional().describe("The identity's own From address"),
    phone: z.string().max(16).optional().describe("The identity's own E.164 number"),
    tenantId: z.string().max(64).optional().describe("Its tenant (default: the caller's, or default)"),
  }).refine((a) => a.policy === undefined || a.policies === undefined, { error: "give the policy document once, as policy (policies is its older name)", path: ["policy"] }),
  output: z.object({ id: z.string(), name: z.string(), token: z.string(), keyId: z.string(), publicKey: z.string() }),
  run: ({ identities }, a) => identities.create({ name: a.name, channels: a.channels, policy: a.policy ?? a.policies ?? {}, email: a.email, phone: a.phone, ...(a.tenantId !== undefined ? { tenantId: a.tenantId } : {}) }),
});
