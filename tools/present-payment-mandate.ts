import * as z from "zod";
import { defineTool } from "../src/pipeline/tool.js";
import { b64urlSha256 } from "../src/mandates/ap2.js";
import { PayeeSchema, approvalThreshold, checkPayeeCategory, presentationRefusal, token } from "../src/mandates/tooling.js";
import { MANDATE_ID_RE } from "../store/types.js";
import { formatAmount } from "./card-charge.js";
import { ReceiptSchema } from "./outbound.js";

/** What identifies the purchase a presentation is for: the checkout's hash, else the verifier's request (aud, nonce). */
const purchaseOf = (a: { aud: string; nonce: string; checkoutJwt?: string | undefined }): string =>
  a.checkoutJwt !== undefined ? b64urlSha256(a.checkoutJwt) : b64urlSha256(`sigil-presentation-v1\n${a.aud}\n${a.nonce}`);

/**
 * present_payment_mandate: the closed AP2 leaves (`mandate.payment.1`, and `mandate.checkout.1` for
 * a merchant's checkout JWT) for a verifier's `aud` and `nonce`, signed with this identity's
 * payments key, chained (`~~`) to the open mandate create_payment_mandate issued. Only after the
 * policy passes for that exact amount (a charge: per-charge and 24-hour limits; the amount is
 * reserved in the intent entry like card_charge's) and the log's record of the mandate allows it —
 * decided under the chain's lock, so two presentations racing for the last of a budget, or the same
 * purchase presented twice, cannot both pass. The payee's merchant category is checked as for a charge.
 */
export const presentPaymentMandate = defineTool({
  name: "present_payment_mandate",
  title: "Present a payment mandate",
  description:
    "Signs the closed AP2 payment (and checkout) mandate for one purchase under a create_payment_mandate mandate, for a verifier's aud and nonce. Refusal: `denied: <code>: <why>`.",
  channel: "card",
  annotations: { readOnlyHint: false, destructiveHint: false, idempotentHint: false, openWorldHint: true },
  input: z.strictObject({
    mandateId: z.string().max(24).refine((v) => MANDATE_ID_RE.test(v), { error: "must be a mandate id (mnd_…) from create_payment_mandate" }).describe("From create_payment_mandate"),
    aud: token(500).describe("The verifier's name for itself"),
    nonce: token(500).describe("The verifier's nonce"),
    amountCents: z.int().positive().describe("The payment, minor units"),
    payee: PayeeSchema,
    checkoutJwt: z.string().max(65_536).refine((v) => /^[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+$/.test(v), { error: "must be a compact JWS" }).optional().describe("Merchant-signed checkout JWT"),
  }),
  output: z.object({
    mandateId: z.string(),
    closed: z.object({ payment: z.string(), checkout: z.string().optional() }),
    transactionId: z.string(),
    amountCents: z.number().int(),
    currency: z.string(),
    receipt: ReceiptSchema,
  }),
  effect: "act",
  action: (a) => ({ kind: "mandate_use", tool: "present_payment_mandate", amountCents: a.amountCents }),
  redact: (a) => ({
    mandateId: a.mandateId,
    aud: a.aud,
    nonce: a.nonce,
    amountCents: a.amountCents,
    payee: a.payee,
    ...(a.checkoutJwt !== undefined ? { checkoutHash: b64urlSha256(a.checkoutJwt) } : {}),
    purchase: purchaseOf(a),
  }),
  checkState(ctx, a, normalized, chain, nowMs) {
    if (normalized.kind !== "card") return { reason: "invalid_arguments", message: "the presentation is malformed." };
    return presentationRefusal(chain.mandate(a.mandateId), { amountCents: a.amountCents, currency: normalized.currency, payeeId: a.payee.id, purchase: purchaseOf(a), threshold: approvalThreshold(ctx.policy) }, nowMs);
  },
  async run(ctx, a, normalized) {
    if (normalized.kind !== "card" || !ctx.mandates) throw new Error("present_payment_mandate needs a card action");
    await checkPayeeCategory(ctx, a.payee.name);
    const p = await ctx.mandates.present(a.mandateId, {
      identityId: ctx.identity.id,
      aud: a.aud,
      nonce: a.nonce,
      amountCents: normalized.amountCents,
      payee: a.payee,
      ...(a.checkoutJwt !== undefined ? { checkoutJwt: a.checkoutJwt } : {}),
    });
    return {
      structured: {
        mandateId: a.mandateId,
        closed: { payment: p.payment, ...(p.checkout !== undefined ? { checkout: p.checkout } : {}) },
        transactionId: p.transactionId,
        amountCents: normalized.amountCents,
        currency: normalized.currency,
      },
      providerId: p.transactionId,
      // The log keeps the hash of each compact chain it handed out.
      audit: { mandateId: a.mandateId, transactionId: p.transactionId, paymentChainHash: p.paymentChainHash, ...(p.checkoutChainHash !== undefined ? { checkoutChainHash: p.checkoutChainHash } : {}), amountCents: normalized.amountCents, currency: normalized.currency },
      text: `Presented mandate ${a.mandateId} for ${formatAmount(normalized.amountCents, normalized.currency)} to ${a.payee.name} (${a.aud}).`,
    };
  },
});
