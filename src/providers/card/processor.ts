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
 */
export interface ChargeRequest {
  identityId: string;
  amountCents: number;
  /** ISO 4217, upper case. */
  currency: string;
  merchant: string;
  merchantCategory?: string;
  description?: string;
  /** Stable for one attempt, so a processor can de-duplicate a repeated request. */
  reference: string;
}

export interface ChargeResult {
  chargeId: string;
  status: "approved";
  /** The identity's card, as the processor names it (never a full card number). */
  cardId?: string;
}

export interface CardProcessor {
  readonly name: string;
  charge(req: ChargeRequest): Promise<ChargeResult>;
}

/** The one reading of the processor test hooks shared by the processors (see embedded.ts). */
export const DECLINE_TEST_MERCHANT = "DECLINE-TEST";
