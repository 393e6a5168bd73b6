import * as z from "zod";
import { Denied } from "../src/errors.js";
import { defineTool } from "../src/pipeline/tool.js";
import { ProviderError } from "../src/providers/types.js";
import { CardDeclined, categoryDecision, categoryRulesOf, type CardProcessor } from "../src/providers/card/processor.js";
import { ReceiptSchema } from "./outbound.js";

/** Printable text without control or format characters (what a statement line can show). */
const PRINTABLE = /^[^\p{Cc}\p{Cf}\p{Zl}\p{Zp}]*$/u;

/** `12345` cents of USD → "123.45 USD" (the currency's own number of minor digits). */
export function formatAmount(amountCents: number, currency: string): string {
  let digits = 2;
  try {
    digits = new Intl.NumberFormat("en-US", { style: "currency", currency }).resolvedOptions().maximumFractionDigits ?? 2;
  } catch {
    /* unknown code: two digits */
  }
  const unit = 10 ** digits;
  const whole = Math.floor(amountCents / unit).toLocaleString("en-US");
  const frac = digits > 0 ? "." + String(amountCents % unit).padStart(digits, "0") : "";
  return `${whole}${frac} ${currency}`;
}

/**
 * card_charge: charges the identity's own card.
 *
 * Policy (README: "Money" and "Policy") decides before anything is charged: the rolling-24-hour limit counts every
 * approved or still-pending charge, and the intent entry that carries `amountCents` IS the
 * reservation, written atomically with that decision under the identity's chain lock (so
 * concurrent calls, in any number of processes, never approve past the limit). A decline or an
 * unreachable processor writes a `failed` result that releases it; an unknown outcome keeps it.
 */
export const cardCharge = defineTool({
  name: "card_charge",
  title: "Charge the card",
  description:
    "Charges this identity's card within the policy's 24-hour and per-charge limits, merchant categories and currency; above a threshold a human must approve. Refusal: `denied: <code>: <why>`.",
  channel: "card",
  annotations: { readOnlyHint: false, destructiveHint: false, idempotentHint: true, openWorldHint: true },
  input: z.strictObject({
    amountCents: z.int().positive().max(Number.MAX_SAFE_INTEGER).describe("In minor units: 1250 = $12.50"),
    currency: z.string().regex(/^[A-Z]{3}$/, { message: "must be an upper-case ISO 4217 code such as USD" }).describe("ISO 4217, e.g. USD"),
    merchant: z.string().trim().min(1).max(200).regex(PRINTABLE, { message: "must not contain control characters" }).describe("As on the statement"),
    merchantCategory: z.string().regex(/^\d{4}$/, { message: "must be a 4-digit merchant category code" }).optional().describe("The MCC you expect, 4 digits; refused if the processor states another"),
    description: z.string().max(500).regex(PRINTABLE, { message: "must not contain control characters" }).optional().describe("What the charge is for"),
    idempotencyKey: z.string().min(1).max(200).regex(/^[\x21-\x7e]+$/, { message: "must be printable ASCII without spaces" }).describe("Unique per purchase; a retry with it returns the first result, charged once"),
  }),
  output: z.object({
    chargeId: z.string(),
    status: z.literal("approved"),
    cardId: z.string().optional(),
    amountCents: z.number().int(),
    currency: z.string(),
    merchant: z.string(),
    merchantCategory: z.string().optional().describe("The merchant category (MCC) as the card processor stated it"),
    receipt: ReceiptSchema,
  }),
  effect: "act",
  action: (a) => ({
    kind: "card",
    tool: "card_charge",
    amountCents: a.amountCents,
    currency: a.currency,
    ...(a.merchantCategory !== undefined ? { merchantCategory: a.merchantCategory } : {}),
  }),
  redact: (a, hash) => ({
    amountCents: a.amountCents,
    currency: a.currency,
    merchant: a.merchant,
    ...(a.merchantCategory !== undefined ? { merchantCategory: a.merchantCategory } : {}),
    ...(a.description !== undefined ? { description: hash(a.description) } : {}),
    idempotencyKey: a.idempotencyKey,
  }),
  idempotencyKey: (a) => a.idempotencyKey,
  approval(a, normalized) {
    const amountCents = normalized.kind === "card" ? normalized.amountCents : a.amountCents;
    const currency = normalized.kind === "card" ? normalized.currency : a.currency;
    const amount = formatAmount(amountCents, currency);
    const lines = [
      `Approve a card charge of ${amount} (${amountCents} minor units) to "${a.merchant}"?`,
      a.merchantCategory ? `Merchant category claimed by the agent (the card processor checks it): ${a.merchantCategory}` : undefined,
      a.description ? `Description: ${a.description}` : undefined,
    ].filter(Boolean);
    return {
      message: lines.join("\n"),
      requestedSchema: {
        type: "object",
        properties: {
          approve: { type: "boolean", title: `Charge ${amount} to ${a.merchant}`, description: "Set to true to allow this charge.", default: false },
        },
        required: ["approve"],
      },
    };
  },
  async run(ctx, a, normalized) {
    if (normalized.kind !== "card") throw new Error("card_charge needs a card action");
    let processor: CardProcessor;
    try {
      processor = await ctx.providers.card();
    } catch (err) {
      throw new ProviderError("unavailable", "the card processor is not configured correctly; nothing was charged", { cause: err });
    }
    // The category comes from the processor (src/providers/card/processor.ts): asked before any
    // authorization, and decided again by the processor at authorization and checked in its answer.
    const categoryRules = categoryRulesOf(ctx.policy);
    if (processor.merchantCategory) {
      const known = await processor.merchantCategory(a.merchant);
      const problem = categoryDecision(known, normalized.merchantCategory, categoryRules);
      if (problem) throw new Denied(problem.reason, problem.message);
    }
    let res;
    try {
      res = await processor.charge({
        identityId: ctx.identity.id,
        amountCents: normalized.amountCents,
        currency: normalized.currency,
        merchant: a.merchant,
        ...(normalized.merchantCategory !== undefined ? { merchantCategory: normalized.merchantCategory } : {}),
        ...(categoryRules !== undefined ? { categoryRules } : {}),
        ...(a.description !== undefined ? { description: a.description } : {}),
        reference: `${ctx.identity.id}:${a.idempotencyKey}`,
      });
    } catch (err) {
      if (err instanceof CardDeclined) throw new Denied(err.reason, err.publicMessage, { cause: err });
      if (err instanceof ProviderError && err.kind === "rejected") {
        throw new Denied("card_declined", "the card issuer declined the charge; nothing was charged.", { cause: err });
      }
      throw err;
    }
    const structured = {
      chargeId: res.chargeId,
      status: "approved" as const,
      ...(res.cardId ? { cardId: res.cardId } : {}),
      amountCents: normalized.amountCents,
      currency: normalized.currency,
      merchant: a.merchant,
      // The processor's category, never the agent's claim.
      ...(res.merchantCategory !== undefined ? { merchantCategory: res.merchantCategory } : {}),
    };
    return {
      structured,
      providerId: res.chargeId,
      text: `Charged ${formatAmount(normalized.amountCents, normalized.currency)} to ${a.merchant} (${res.chargeId}).`,
    };
  },
});
