import * as z from "zod";
import { defineTool } from "../src/pipeline/tool.js";

export const whoami = defineTool({
  name: "whoami",
  title: "Who am I",
  description:
    "This session's identity: id, name, channels, own email and phone, signing key, and the policy all its tools obey. No arguments.",
  channel: null,
  annotations: { readOnlyHint: true, destructiveHint: false, idempotentHint: true, openWorldHint: false },
  input: z.strictObject({}),
  output: z.object({
    id: z.string(),
    name: z.string(),
    channels: z.array(z.string()),
    email: z.string(),
    phone: z.string().optional(),
    keyId: z.string(),
    publicKey: z.string(),
    policy: z.record(z.string(), z.unknown()),
    policyVersion: z.number(),
    receipt: z.unknown(),
  }),
  effect: "read",
  action: () => ({ kind: "none", tool: "whoami" }),
  redact: () => ({}),
  async run(ctx) {
    const id = ctx.identity;
    const structured = {
      id: id.id,
      name: id.name,
      channels: id.channels,
      email: id.email,
      ...(id.phone ? { phone: id.phone } : {}),
      keyId: id.keyId,
      publicKey: id.publicKey,
      policy: id.policy,
      policyVersion: id.policyVersion,
    };
    return { structured, text: `You are ${id.name} (${id.id}); channels: ${id.channels.join(", ") || "none"}.`, audit: {} };
  },
});
