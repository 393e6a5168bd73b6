/**
 * The card processor contract: what card_charge needs from whoever issues the identity's card.
 *
 * sigil ships two implementations: the embedded processor (embedded.ts, the default: a ledger in
 * the home, so everything works offline) and an HTTP processor (http.ts, `SIGIL_CARD_PROCESSOR_URL`)
 * that a real issuer, or a test double, can stand behind. A real issuer integration implements
 * this interface and is chosen in `src/providers/index.ts`.
 *
 * Contract of `charge`:
 *  - resolves only when the charge was approved, with the processor's charge id;
 *  - throws `ProviderError("rejected")` when the charge was declined (no money moved: sigil
 *    releases the reservation and reports `denied: card_declined`);
 *  - throws `ProviderError("unavailable")` when the processor could not be reached and nothing
 *    was charged (the reservation is released);
 *  - throws `ProviderError("unknown")` when the outcome is not known (a timeout after the request
 *    left): the reservation is kept and the charge is never retried automatically.
 * Amounts are in the currency's minor units (cents), already checked against policy.
 *
 * Merchant categories come from the processor, never from the agent (README: "Merchant
 * categories"). The agent's `merchantCategory` is only a claim. Two steps, both by the processor:
 *  - `merchantCategory(merchant)` (optional lookup): the category the processor knows for this
 *    merchant, asked before any authorization, so a charge the category rules refuse never
 *    reaches the card (the embedded processor answers from `$SIGIL_HOME/card/merchants.json`);
 *  - `charge` gets the policy's `categoryRules` and the agent's claim and decides at
 *    authorization — where the category that counts is known, so a category changed after the
 *    lookup cannot slip through — declining with `CardDeclined` (reason `merchant_category_*`);
 *    an approval reports the category it authorized (`ChargeResult.merchantCategory`), which
 *    sigil checks again (`categoryDecision`).
 */
import { ProviderError } from "../types.js";

export interface ChargeRequest {
  identityId: string;
  amountCents: number;
  /** ISO 4217, upper case. */
  currency: string;
  merchant: string;
  /** The category the agent claimed (unverified): a processor that knows another declines. */
  merchantCategory?: string;
  /** The policy's category rules, when it has any: the processor declines what they refuse. */
  categoryRules?: CategoryRules;
  description?: string;
  /** Stable for one attempt, so a processor can de-duplicate a repeated request. */
  reference: string;
}

export interface ChargeResult {
  chargeId: string;
  status: "approved";
  /** The identity's card, as the processor names it (never a full card number). */
  cardId?: string;
  /** The merchant category (MCC) the processor authorized the charge under, when it knows it. */
  merchantCategory?: string;
}

export interface CardProcessor {
  readonly name: string;
  /** The merchant's category as the processor knows it (undefined: unknown), before any charge. */
  merchantCategory?(merchant: string): Promise<string | undefined>;
  charge(req: ChargeRequest): Promise<ChargeResult>;
}

export interface CategoryRules {
  allowed?: readonly string[];
  blocked?: readonly string[];
}

export type CategoryReason = "merchant_category_unknown" | "merchant_category_mismatch" | "merchant_category_blocked" | "merchant_category_not_allowed";
export const CATEGORY_REASONS: readonly string[] = ["merchant_category_unknown", "merchant_category_mismatch", "merchant_category_blocked", "merchant_category_not_allowed"];

/** A decline with a reason sigil reports to the agent as `denied: <reason>`. */
export class CardDeclined extends ProviderError {
  constructor(
    readonly reason: CategoryReason,
    message: string,
  ) {
    super("rejected", message);
  }
}

/** The policy's category rules, when it has any. */
export function categoryRulesOf(policy: { allowedMerchantCategories?: readonly string[]; blockedMerchantCategories?: readonly string[] }): CategoryRules | undefined {
  const { allowedMerchantCategories: allowed, blockedMerchantCategories: blocked } = policy;
  if (allowed === undefined && blocked === undefined) return undefined;
  return { ...(allowed !== undefined ? { allowed } : {}), ...(blocked !== undefined ? { blocked } : {}) };
}

/**
 * The one category rule, applied by the processors and by sigil: `known` is the processor's
 * category (undefined: it cannot state one), `claimed` the agent's.
 *  - a claim that differs from the processor's category → merchant_category_mismatch;
 *  - with any category rule: no category → merchant_category_unknown; blocked →
 *    merchant_category_blocked; an allow-list without it → merchant_category_not_allowed.
 */
export function categoryDecision(known: string | undefined, claimed: string | undefined, rules: CategoryRules | undefined): { reason: CategoryReason; message: string } | undefined {
  if (claimed !== undefined && known !== undefined && claimed !== known) {
    return { reason: "merchant_category_mismatch", message: `the card processor knows this merchant as category ${known}, not ${claimed}; nothing was charged.` };
  }
  if (rules === undefined) return undefined;
  if (known === undefined) {
    return { reason: "merchant_category_unknown", message: "the card processor cannot state this merchant's category, and this identity's policy has category rules; nothing was charged." };
  }
  if (rules.blocked?.includes(known)) return { reason: "merchant_category_blocked", message: `merchant category ${known} is blocked; nothing was charged.` };
  if (rules.allowed !== undefined && !rules.allowed.includes(known)) {
    return { reason: "merchant_category_not_allowed", message: `merchant category ${known} is not in allowedMerchantCategories; nothing was charged.` };
  }
  return undefined;
}

/** How merchant names are matched: NFKC, whitespace runs as one space, trimmed, case-folded. */
export function merchantKey(name: string): string {
  return name.normalize("NFKC").replace(/\s+/gu, " ").trim().toLowerCase();
}

export const MCC_RE = /^\d{4}$/;

/** The one reading of the processor test hooks shared by the processors (see embedded.ts). */
export const DECLINE_TEST_MERCHANT = "DECLINE-TEST";
