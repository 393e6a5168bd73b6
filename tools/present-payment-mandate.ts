import * as z from "zod";
import { defineTool } from "../src/pipeline/tool.js";
import { randomBytes } from "node:crypto";
import { b64urlSha256 } from "../src/mandates/ap2.js";
import { PayeeSchema, approvalThreshold, checkPayeeCategory, intentRefusal, presentationRefusal, printable, token } from "../src/mandates/tooling.js";
import { MANDATE_ID_RE } from "../store/types.js";
import { formatAmount } from "./card-charge.js";
import { ReceiptSchema } from "./outbound.js";

/** What identifies the purchase a presentation is for: the checkout's hash, else the verifier's request (aud, nonce). */
/** `["a", "b", "a"]` → `[{id: "a", quantity: 2}, {id: "b", quantity: 1}]`: line items as VI states them. */
const lineItemsOf = (ids: string[]): Array<{ id: string; quantity: number }> => {
  const m = new Map<string, number>();
  for (const id of ids) m.set(id, (m.get(id) ?? 0) + 1);
  return [...m].map(([id, quantity]) => ({ id, quantity }));
};

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
 *
 * With `l2` instead of `mandateId` (Verifiable Intent, src/mandates/vi.ts): the user's L2 names this
 * identity's payments key in its cnf; the answer is L3a as `closed.payment` (for the network: `aud`,
 * `nonce`) and L3b as `closed.checkout` (for the merchant: aud the payee's website, a random nonce),
 * signed with that key, with the view of the L2 each binds (`l2.network`, `l2.merchant`: what the
 * agent sends beside each). `items` lists the item ids bought, one entry per unit. The purchase is a charge like card_charge's (policy's limits,
 * and above the threshold a human approves first: sigil cannot verify the user's signature on the
 * L2, so the L2 alone authorises nothing), and it must stay inside every constraint the L2 states.
 */
export const presentPaymentMandate = defineTool({
  name: "present_payment_mandate",
  title: "Present a payment mandate",
  description:
    "For one purchase and a verifier's aud/nonce: the closed AP2 mandates under a create_payment_mandate mandate, or Verifiable Intent L3a/L3b for an l2. Refusal: `denied: <code>: <why>`.",
  channel: "card",
  annotations: { readOnlyHint: false, destructiveHint: false, idempotentHint: false, openWorldHint: true },
  input: z
    .strictObject({
      mandateId: z.string().max(24).refine((v) => MANDATE_ID_RE.test(v), { error: "must be a mandate id (mnd_…) from create_payment_mandate" }).optional().describe("From create_payment_mandate"),
      l2: z.string().max(131_072).refine((v) => /^[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+(~[A-Za-z0-9_-]+)*~$/.test(v), { error: "must be an SD-JWT presentation ending in ~" }).optional().describe("Or a Verifiable Intent L2"),
      aud: token(500).describe("The verifier's name for itself"),
      nonce: token(500).describe("The verifier's nonce"),
      amountCents: z.int().positive().describe("The payment, minor units"),
      payee: PayeeSchema,
      checkoutJwt: z.string().max(65_536).refine((v) => /^[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+$/.test(v), { error: "must be a compact JWS" }).optional().describe("Merchant-signed checkout JWT"),
      items: z.array(printable(200)).max(50).optional().describe("l2: item ids bought, one per unit"),
    })
    .refine((a) => (a.mandateId === undefined) !== (a.l2 === undefined), { error: "give mandateId or l2, not both" })
    .refine((a) => a.l2 === undefined || (a.checkoutJwt !== undefined && a.payee.website !== undefined), { error: "with l2, checkoutJwt and payee.website are required" })
    .refine((a) => a.l2 !== undefined || a.items === undefined, { error: "items go with l2" }),
  output: z.object({
    mandateId: z.string().optional(),
    closed: z.object({ payment: z.string(), checkout: z.string().optional() }).optional(),
    l2: z.object({ network: z.string(), merchant: z.string() }).optional(),
    transactionId: z.string(),
    amountCents: z.number().int(),
    currency: z.string(),
    receipt: ReceiptSchema,
  }),
  effect: "act",
  action: (a) => ({ kind: "mandate_use", tool: "present_payment_mandate", amountCents: a.amountCents, ...(a.l2 !== undefined ? { approvedAtIssue: false as const } : {}) }),
  redact: (a) => ({
    ...(a.mandateId !== undefined ? { mandateId: a.mandateId } : {}),
    // The L2 itself stays out of the log (the user's constraints and card); its hash is kept.
    ...(a.l2 !== undefined ? { l2Hash: b64urlSha256(a.l2) } : {}),
    aud: a.aud,
    nonce: a.nonce,
    amountCents: a.amountCents,
    payee: a.payee,
    ...(a.checkoutJwt !== undefined ? { checkoutHash: b64urlSha256(a.checkoutJwt) } : {}),
    ...(a.items !== undefined ? { items: a.items } : {}),
    purchase: purchaseOf(a),
  }),
  approval(a, normalized) {
    const currency = normalized.kind === "card" ? normalized.currency : "";
    const amount = formatAmount(a.amountCents, currency);
    return {
      message: `Approve signing a Verifiable Intent payment of ${amount} to "${a.payee.name}" (${a.payee.id}) for ${a.aud}?`,
      requestedSchema: {
        type: "object",
        properties: { approve: { type: "boolean", title: `Pay ${amount} to ${a.payee.name}`, description: "Set to true to allow this payment.", default: false } },
        required: ["approve"],
      },
    };
  },
  checkState(ctx, a, normalized, chain, nowMs) {
    if (normalized.kind !== "card") return { reason: "invalid_arguments", message: "the presentation is malformed." };
    if (a.l2 !== undefined) return intentRefusal(ctx.policy, a.l2, { amountCents: a.amountCents, currency: normalized.currency, payee: a.payee, ...(a.items ? { lineItems: lineItemsOf(a.items) } : {}) }, nowMs);
    if (a.mandateId === undefined) return { reason: "invalid_arguments", message: "give mandateId or l2." };
    return presentationRefusal(chain.mandate(a.mandateId), { amountCents: a.amountCents, currency: normalized.currency, payeeId: a.payee.id, purchase: purchaseOf(a), threshold: approvalThreshold(ctx.policy) }, nowMs);
  },
  async run(ctx, a, normalized) {
    if (normalized.kind !== "card" || !ctx.mandates) throw new Error("present_payment_mandate needs a card action");
    await checkPayeeCategory(ctx, a.payee.name);
    if (a.l2 !== undefined) {
      const merchant = { aud: a.payee.website ?? "", nonce: randomBytes(16).toString("base64url") };
      const v = await ctx.mandates.presentIntent({
        identityId: ctx.identity.id,
        l2: a.l2,
        network: { aud: a.aud, nonce: a.nonce },
        merchant,
        amountCents: normalized.amountCents,
        currency: normalized.currency,
        payee: a.payee,
        checkoutJwt: a.checkoutJwt ?? "",
        ...(a.items !== undefined ? { lineItems: lineItemsOf(a.items) } : {}),
      });
      return {
        structured: {
          closed: { payment: v.l3a, checkout: v.l3b },
          l2: { network: v.l2ForNetwork, merchant: v.l2ForMerchant },
          transactionId: v.transactionId,
          amountCents: normalized.amountCents,
          currency: normalized.currency,
        },
        providerId: v.transactionId,
        // The log keeps the hashes of the L2 answered and of both L3s handed out.
        audit: { transactionId: v.transactionId, l2Hash: v.l2Hash, l3aHash: v.l3aHash, l3bHash: v.l3bHash, paymentKeyId: v.paymentKeyId, merchantAud: merchant.aud, merchantNonce: merchant.nonce, amountCents: normalized.amountCents, currency: normalized.currency },
        text: `Signed Verifiable Intent L3a (for ${a.aud}) and L3b (for ${merchant.aud}): ${formatAmount(normalized.amountCents, normalized.currency)} to ${a.payee.name}.`,
      };
    }
    if (a.mandateId === undefined) throw new Error("present_payment_mandate needs mandateId or l2");
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
