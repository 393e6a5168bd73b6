/** Shapes shared by the admin tools (the same fields as the CLI's --json). */
import * as z from "zod";
import { CHANNELS } from "../../store/types.js";

export const identityId = z.string().min(1).max(64).describe("The identity's id (id_…)");
export const Channel = z.enum(CHANNELS);

export const KeyView = z.object({
  keyId: z.string(),
  publicKey: z.string(),
  status: z.string(),
  notBefore: z.string().optional(),
  notAfter: z.string().optional(),
});

export const IdentityView = z.object({
  id: z.string(),
  name: z.string(),
  tenantId: z.string(),
  channels: z.array(z.string()),
  email: z.string(),
  phone: z.string().optional(),
  policy: z.record(z.string(), z.unknown()),
  policyVersion: z.number(),
  createdAt: z.string(),
  revokedAt: z.string().optional(),
  keyId: z.string(),
  publicKey: z.string(),
  keys: z.array(KeyView),
});

export const VerifyReport = z.object({
  ok: z.boolean(),
  identities: z.array(
    z.object({
      id: z.string(),
      entries: z.number(),
      ok: z.boolean(),
      firstBadSeq: z.number().optional(),
      error: z.string().optional(),
      head: z.string().optional(),
      unresolvedIntents: z.array(z.number()).optional(),
    }),
  ),
});

export const ADMIN = { readOnlyHint: false, destructiveHint: false, idempotentHint: false, openWorldHint: false } as const;
export const ADMIN_READ = { readOnlyHint: true, destructiveHint: false, idempotentHint: true, openWorldHint: false } as const;
