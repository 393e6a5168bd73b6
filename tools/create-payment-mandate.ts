import * as z from "zod";
import { defineTool } from "../src/pipeline/tool.js";
import { CurrencySchema, PayeeSchema, checkPayeeCategory, printable } from "../src/mandates/tooling.js";
import { formatAmount } from "./card-charge.js";
import { ReceiptSchema } from "./outbound.js";

const Constraints = z.object({
  currency: z.string(),
  maxAmountCents: z.number().int(),
  budgetCents: z.number().int().optional(),
  payeeId: z.string(),
  expiresAt: z.string(),
});

/**
 * create_payment_mandate: an AP2 v0.2 open checkout + open payment mandate pair for one payee,
 * signed by the tenant's provider key (src/mandates/). Policy decides the constraints before
 * anything is signed — never wider than a charge policy would allow now (src/policy/evaluate.ts,
 * rule 8) — and above the approval threshold a human approves first; merchant-category rules are
 * checked against the card processor's category for the payee, inside sigil.
 */
export const createPaymentMandate = defineTool({
  name: "create_payment_mandate",
  title: "Create a payment mandate",
  description:
    "Issues an AP2 open checkout + payment mandate pair (SD-JWTs) for one payee within the card policy; present it with present_payment_mandate. Refusal: `denied: <code>: <why>`.",
  channel: "card",
  annotations: { readOnlyHint: false, destructiveHint: false, idempotentHint: false, openWorldHint: true },
  input: z.strictObject({
    payee: PayeeSchema,
    currency: CurrencySchema.describe("ISO 4217, e.g. USD"),
    maxAmountCents: z.int().positive().optional().describe("Largest payment, minor units (default: policy's)"),
    budgetCents: z.int().positive().optional().describe("Total of several payments; absent: one payment"),
    expiresAt: z
      .string()
      .max(40)
      .refine((v) => /^\d{4}-\d\d-\d\dT\d\d:\d\d(:\d\d(\.\d+)?)?(Z|[+-]\d\d:\d\d)$/.test(v) && Number.isFinite(Date.parse(v)), { error: "must be an ISO 8601 time with offset" })
      .optional()
      .describe("ISO 8601, ≤ 24 h ahead (default 1 h)"),
    lineItems: z
      .array(z.strictObject({ id: printable(200), title: printable(200), quantity: z.int().positive().max(1000).default(1) }))
      .max(50)
      .optional()
      .describe("Items the checkout must hold"),
  }),
  output: z.object({
    mandateId: z.string(),
    mandate: z.object({ checkout: z.string(), payment: z.string() }),
    constraints: Constraints,
    providerKeyId: z.string(),
    paymentKeyId: z.string(),
    receipt: ReceiptSchema,
  }),
  effect: "act",
  action: (a) => ({
    kind: "mandate",
    tool: "create_payment_mandate",
    payeeId: a.payee.id,
    currency: a.currency,
    ...(a.maxAmountCents !== undefined ? { maxAmountCents: a.maxAmountCents } : {}),
    ...(a.budgetCents !== undefined ? { budgetCents: a.budgetCents } : {}),
    ...(a.expiresAt !== undefined ? { expiresAtMs: Date.parse(a.expiresAt) } : {}),
  }),
  redact: (a) => ({
    payee: a.payee,
    currency: a.currency,
    ...(a.maxAmountCents !== undefined ? { maxAmountCents: a.maxAmountCents } : {}),
    ...(a.budgetCents !== undefined ? { budgetCents: a.budgetCents } : {}),
    ...(a.expiresAt !== undefined ? { expiresAt: a.expiresAt } : {}),
    ...(a.lineItems !== undefined ? { lineItems: a.lineItems } : {}),
  }),
  approval(a, normalized) {
    const max = normalized.kind === "mandate" ? normalized.maxAmountCents : (a.maxAmountCents ?? 0);
    const budget = normalized.kind === "mandate" ? normalized.budgetCents : a.budgetCents;
    const lines = [
      `Approve a payment mandate to "${a.payee.name}" (${a.payee.id}) for payments of up to ${formatAmount(max, a.currency)} each?`,
      budget !== undefined ? `In total at most ${formatAmount(budget, a.currency)}.` : "For one payment.",
      normalized.kind === "mandate" ? `Valid until ${new Date(normalized.expiresAtMs).toISOString()}.` : undefined,
    ].filter(Boolean);
    return {
      message: lines.join("\n"),
      requestedSchema: {
        type: "object",
        properties: { approve: { type: "boolean", title: `Mandate up to ${formatAmount(max, a.currency)} to ${a.payee.name}`, description: "Set to true to allow this mandate.", default: false } },
        required: ["approve"],
      },
    };
  },
  async run(ctx, a, normalized) {
    if (normalized.kind !== "mandate" || !ctx.mandates) throw new Error("create_payment_mandate needs a mandate action");
    await checkPayeeCategory(ctx, a.payee.name);
    const issued = await ctx.mandates.issue({
      identityId: ctx.identity.id,
      tenantId: ctx.identity.tenantId,
      payee: a.payee,
      currency: normalized.currency,
      maxAmountCents: normalized.maxAmountCents,
      ...(normalized.budgetCents !== undefined ? { budgetCents: normalized.budgetCents } : {}),
      expiresAtMs: normalized.expiresAtMs,
      ...(a.lineItems !== undefined ? { lineItems: a.lineItems } : {}),
    });
    const constraints = {
      currency: normalized.currency,
      maxAmountCents: normalized.maxAmountCents,
      ...(normalized.budgetCents !== undefined ? { budgetCents: normalized.budgetCents } : {}),
      payeeId: a.payee.id,
      expiresAt: new Date(Math.floor(normalized.expiresAtMs / 1000) * 1000).toISOString(),
    };
    return {
      structured: {
        mandateId: issued.mandateId,
        mandate: { checkout: issued.checkout, payment: issued.payment },
        constraints,
        providerKeyId: issued.providerKeyId,
        paymentKeyId: issued.paymentKeyId,
      },
      providerId: issued.mandateId,
      // The log keeps the hashes of both tokens (what presenting checks the stored mandate against) and the constraints.
      audit: { mandateId: issued.mandateId, checkoutHash: issued.checkoutHash, paymentHash: issued.paymentHash, constraints, providerKeyId: issued.providerKeyId, paymentKeyId: issued.paymentKeyId },
      text: `Mandate ${issued.mandateId}: up to ${formatAmount(normalized.maxAmountCents, normalized.currency)} per payment to ${a.payee.name}, until ${constraints.expiresAt}.`,
    };
  },
});
