/**
 * What the two mandate tools share: the payee argument, the merchant-category rule (enforced inside
 * sigil: AP2 has no constraint for it) and the refusals decided under the chain's lock.
 */
import * as z from "zod";
import { Denied } from "../errors.js";
import { ProviderError } from "../providers/types.js";
import { categoryDecision, categoryRulesOf, type CardProcessor } from "../providers/card/processor.js";
import type { ToolContext } from "../pipeline/tool.js";
import type { MandateState } from "../audit/chain.js";
import type { Policy } from "../policy/schema.js";
import { checkPurchase, readL2, type ViPurchase } from "./vi.js";

/** Printable text without control or format characters. */
const PRINTABLE = /^[^\p{Cc}\p{Cf}\p{Zl}\p{Zp}]*$/u;

/** A short printable string (checked by refinement: what tools/list publishes stays small). */
export const printable = (max: number) => z.string().min(1).max(max).refine((v) => PRINTABLE.test(v), { error: "must not contain control characters" });
/** Printable ASCII without spaces. */
export const token = (max: number) => z.string().min(1).max(max).refine((v) => /^[\x21-\x7e]+$/.test(v), { error: "must be printable ASCII without spaces" });

export const PayeeSchema = z
  .strictObject({
    id: token(200).describe("Merchant id"),
    name: printable(200).describe("Merchant name"),
    website: z.string().max(500).refine((v) => /^https:\/\/[^\s]+$/.test(v) && URL.canParse(v), { error: "must be an https URL" }).optional().describe("https URL"),
  })
  .describe("The merchant");

export const CurrencySchema = z.string().regex(/^[A-Z]{3}$/, { error: "must be an upper-case ISO 4217 code such as USD" });

/** The merchant-category rule for a payee, as card_charge applies it (by name, from the processor). */
export async function checkPayeeCategory(ctx: ToolContext, payeeName: string): Promise<void> {
  const rules = categoryRulesOf(ctx.policy);
  if (rules === undefined) return;
  let processor: CardProcessor;
  try {
    processor = await ctx.providers.card();
  } catch (err) {
    throw new ProviderError("unavailable", "the card processor is not configured correctly; nothing was signed", { cause: err });
  }
  const known = processor.merchantCategory ? await processor.merchantCategory(payeeName) : undefined;
  const problem = categoryDecision(known, undefined, rules);
  if (problem) throw new Denied(problem.reason, problem.message.replace("nothing was charged", "nothing was signed"));
}

/** The largest amount a charge may have without a human's approval under this policy (Infinity: no threshold). */
export function approvalThreshold(policy: Policy): number {
  return Math.min(policy.approvalAboveCents ?? Infinity, policy.approval?.aboveCents ?? Infinity);
}

/**
 * Whether a presentation of `amountCents` for `purchase` may use mandate `m` now: issued to this
 * identity, not expired, in its currency, within its amount range and payee, unused (a mandate
 * without a budget is for one purchase), never twice for one purchase, within its budget, and
 * approved at issuance if the amount now needs approval.
 */
export function presentationRefusal(
  m: MandateState | undefined,
  p: { amountCents: number; currency: string; payeeId: string; purchase: string; threshold: number },
  nowMs: number,
): { reason: string; message: string } | undefined {
  if (!m) return { reason: "mandate_not_found", message: "no such mandate was issued to this identity." };
  if (nowMs >= m.exp) return { reason: "mandate_expired", message: `mandate ${m.id} expired at ${new Date(m.exp).toISOString()}.` };
  if (p.currency !== m.currency) return { reason: "mandate_currency", message: `mandate ${m.id} is for ${m.currency}.` };
  if (p.amountCents > m.maxAmountCents) return { reason: "mandate_amount_range", message: `mandate ${m.id} allows at most ${m.maxAmountCents} minor units per payment.` };
  if (p.payeeId !== m.payeeId) return { reason: "mandate_payee", message: `mandate ${m.id} is for another payee.` };
  if (m.uses.some((u) => u.purchase === p.purchase)) return { reason: "mandate_overlap", message: `mandate ${m.id} was already presented for this purchase.` };
  if (m.budgetCents === undefined && m.uses.length > 0) return { reason: "mandate_used", message: `mandate ${m.id} was already presented; it is for one purchase.` };
  const used = m.uses.reduce((s, u) => s + u.amountCents, 0);
  if (m.budgetCents !== undefined && used + p.amountCents > m.budgetCents) {
    return { reason: "mandate_budget", message: `mandate ${m.id} has ${m.budgetCents - used} of its ${m.budgetCents} minor units left.` };
  }
  if (!m.approved && p.amountCents > p.threshold) return { reason: "approval_required", message: `mandate ${m.id} was issued without approval and this amount now needs one; ask for a new mandate.` };
  return undefined;
}

/**
 * Whether a Verifiable Intent presentation may be signed, as far as the L2 and the policy's payees
 * say (decided before the intent: a refusal here is a `deny` entry and reserves nothing): the L2
 * well formed and not expired, the purchase inside every constraint it states, the payee one the
 * policy's `allowedPayees` lists (when it lists any). Whether the L2 names this identity's key is
 * decided when signing (src/mandates/desk.ts `presentIntent`), where the key is read.
 */
export function intentRefusal(policy: Policy, l2: string, p: ViPurchase & { payee: { id: string } }, nowMs: number): { reason: string; message: string } | undefined {
  if (policy.allowedPayees !== undefined && !policy.allowedPayees.includes(p.payee.id)) {
    return { reason: "payee_not_allowed", message: `payee ${p.payee.id.slice(0, 60)} is not in this identity's allowedPayees; nothing was signed.` };
  }
  const read = readL2(l2, nowMs);
  if (!read.ok) return read.refusal;
  const checked = checkPurchase(read.view, p);
  return checked.ok ? undefined : checked.refusal;
}
