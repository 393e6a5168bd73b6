/**
 * AP2 v0.2 mandates (google-agentic-commerce/AP2, docs/ap2/*.md, schemas code/sdk/schemas/ap2/*.json)
 * as SD-JWTs made with `@sd-jwt/core`:
 *
 * - Roots (open mandates), signed by the tenant's provider key (header `kid` = its thumbprint):
 *   `{delegate_payload: [<mandate>], _sd_alg}` where the mandate is an array-element disclosure —
 *   `mandate.checkout.open.1` (constraints `checkout.allowed_merchants`, and `checkout.line_items`
 *   when the request names items) and `mandate.payment.open.1` (`payment.amount_range`,
 *   `payment.allowed_payees`, `payment.reference`, and for a budget `payment.budget` +
 *   `payment.agent_recurrence`), each with `cnf.jwk` = the identity's payments key, `iat` and `exp`.
 *   Allowed merchants/payees and acceptable items are array-element disclosures too, as in AP2's
 *   examples. `payment.reference.conditional_transaction_id` is the digest of the open checkout
 *   mandate (SHA-256 of its compact form, as AP2's reference SDK computes it).
 * - Closed leaves (KB-SD-JWT hops, header `typ: kb+sd-jwt`), signed by the payments key the open
 *   mandate's `cnf.jwk` names: `{delegate_payload: [<closed mandate>], iat, aud, nonce, sd_hash}`,
 *   `sd_hash` = SHA-256 of the open mandate exactly as presented; the hop is joined to it with `~~`.
 *   `mandate.payment.1` carries `transaction_id` (the checkout hash), `payee`, `payment_amount`,
 *   `payment_instrument`; `mandate.checkout.1` carries `checkout_jwt` (itself a disclosure) and
 *   `checkout_hash` = SHA-256 of the checkout JWT.
 *
 * Written by hand on top of the library (as AP2's own SDK does): the `delegate_payload` wrapping,
 * the `~~` chaining and the hashes. Amounts are integer minor units; AP2's `payment.budget.max` is a
 * number in major units (its reference SDK multiplies it by 100), so it is written as such.
 */
import { createHash, randomBytes, sign as nodeSign } from "node:crypto";
import { SDJwtInstance } from "@sd-jwt/core";
import type { EsSigner } from "./keys.js";

export const VCT = {
  checkoutOpen: "mandate.checkout.open.1",
  paymentOpen: "mandate.payment.open.1",
  checkout: "mandate.checkout.1",
  payment: "mandate.payment.1",
} as const;

export interface Payee {
  id: string;
  name: string;
  website?: string;
}

export interface LineItem {
  id: string;
  title: string;
  quantity: number;
}

/** The constraints sigil's policy decided (src/policy/evaluate.ts, `mandate`). */
export interface OpenTerms {
  payee: Payee;
  currency: string;
  maxAmountCents: number;
  budgetCents?: number;
  lineItems?: LineItem[];
  iat: number;
  exp: number;
}

export const b64urlSha256 = (s: string): string => createHash("sha256").update(s, "ascii").digest("base64url");

function instance(signer: EsSigner): SDJwtInstance<Record<string, unknown>> {
  return new SDJwtInstance({
    signAlg: "ES256",
    signer: async (data: string) => nodeSign("sha256", Buffer.from(data, "ascii"), { key: signer.privateKey, dsaEncoding: "ieee-p1363" }).toString("base64url"),
    hasher: async (data: string | ArrayBuffer) => new Uint8Array(createHash("sha256").update(typeof data === "string" ? data : new Uint8Array(data)).digest()),
    hashAlg: "sha-256",
    saltGenerator: async () => randomBytes(16).toString("base64url"),
  });
}

/** Minor-unit digits of a currency (ISO 4217 via Intl; 2 when unknown). */
export function minorDigits(currency: string): number {
  try {
    return new Intl.NumberFormat("en-US", { style: "currency", currency }).resolvedOptions().maximumFractionDigits ?? 2;
  } catch {
    return 2;
  }
}

const merchant = (p: Payee): Payee => ({ id: p.id, name: p.name, ...(p.website !== undefined ? { website: p.website } : {}) });

/** The open checkout + open payment mandate pair, signed by the provider key. */
export async function issueOpenMandates(provider: EsSigner, agent: EsSigner, t: OpenTerms): Promise<{ checkout: string; payment: string; checkoutHash: string; paymentHash: string }> {
  const sd = instance(provider);
  const header = { typ: "sd+jwt", kid: provider.keyId };
  const cnf = { jwk: { ...agent.jwk }, kid: agent.keyId };
  const checkoutConstraints: Record<string, unknown>[] = [];
  const checkoutFrame: Record<number, unknown> = {};
  if (t.lineItems && t.lineItems.length > 0) {
    checkoutFrame[checkoutConstraints.length] = { items: Object.fromEntries(t.lineItems.map((_, i) => [i, { acceptable_items: { _sd: [0] } }])) };
    checkoutConstraints.push({
      type: "checkout.line_items",
      items: t.lineItems.map((li, i) => ({ id: `line_${i + 1}`, acceptable_items: [{ id: li.id, title: li.title }], quantity: li.quantity })),
    });
  }
  checkoutFrame[checkoutConstraints.length] = { allowed: { _sd: [0] } };
  checkoutConstraints.push({ type: "checkout.allowed_merchants", allowed: [merchant(t.payee)] });
  const checkout = await sd.issue(
    { delegate_payload: [{ vct: VCT.checkoutOpen, constraints: checkoutConstraints, cnf, iat: t.iat, exp: t.exp }] },
    { delegate_payload: { _sd: [0], 0: { constraints: checkoutFrame } } } as never,
    { header },
  );
  const checkoutHash = b64urlSha256(checkout);

  const paymentConstraints: Record<string, unknown>[] = [
    { type: "payment.amount_range", currency: t.currency, max: t.maxAmountCents, min: 0 },
    { type: "payment.allowed_payees", allowed: [merchant(t.payee)] },
    { type: "payment.reference", conditional_transaction_id: checkoutHash },
  ];
  if (t.budgetCents !== undefined) {
    paymentConstraints.push({ type: "payment.budget", currency: t.currency, max: t.budgetCents / 10 ** minorDigits(t.currency) });
    paymentConstraints.push({ type: "payment.agent_recurrence", frequency: "ON_DEMAND" });
  }
  const payment = await sd.issue(
    { delegate_payload: [{ vct: VCT.paymentOpen, constraints: paymentConstraints, cnf, iat: t.iat, exp: t.exp }] },
    { delegate_payload: { _sd: [0], 0: { constraints: { 1: { allowed: { _sd: [0] } } } } } } as never,
    { header },
  );
  return { checkout, payment, checkoutHash, paymentHash: b64urlSha256(payment) };
}

/** `open~~closed`: an open SD-JWT (ending in `~`) joined to the hop that closes it. */
export const chain = (open: string, closed: string): string => `${open.endsWith("~") ? open.slice(0, -1) : open}~~${closed}`;

export interface CloseTerms {
  aud: string;
  nonce: string;
  iat: number;
  amountCents: number;
  currency: string;
  payee: Payee;
  /** The merchant's checkout JWT, when there is one (then also the closed checkout mandate). */
  checkoutJwt?: string;
  /** When there is no checkout JWT: the transaction id to state (random, unguessable). */
  transactionId: string;
  instrument: { id: string; type: string; description?: string };
}

/** The closed payment (and checkout) leaves for an open pair, signed by the payments key named by their `cnf`. */
export async function closeMandates(agent: EsSigner, open: { checkout: string; payment: string }, c: CloseTerms): Promise<{ payment: string; checkout?: string; transactionId: string }> {
  const sd = instance(agent);
  const header = { typ: "kb+sd-jwt" };
  const checkoutHash = c.checkoutJwt !== undefined ? b64urlSha256(c.checkoutJwt) : undefined;
  const transactionId = checkoutHash ?? c.transactionId;
  const closedPayment = {
    vct: VCT.payment,
    transaction_id: transactionId,
    payee: merchant(c.payee),
    payment_amount: { amount: c.amountCents, currency: c.currency },
    payment_instrument: c.instrument,
  };
  const paymentLeaf = await sd.issue(
    { delegate_payload: [closedPayment], iat: c.iat, aud: c.aud, nonce: c.nonce, sd_hash: b64urlSha256(open.payment) },
    { delegate_payload: { _sd: [0] } } as never,
    { header },
  );
  let checkout: string | undefined;
  if (c.checkoutJwt !== undefined) {
    const leaf = await sd.issue(
      { delegate_payload: [{ vct: VCT.checkout, checkout_jwt: c.checkoutJwt, checkout_hash: checkoutHash }], iat: c.iat, aud: c.aud, nonce: c.nonce, sd_hash: b64urlSha256(open.checkout) },
      { delegate_payload: { _sd: [0], 0: { _sd: ["checkout_jwt"] } } } as never,
      { header },
    );
    checkout = chain(open.checkout, leaf);
  }
  return { payment: chain(open.payment, paymentLeaf), ...(checkout !== undefined ? { checkout } : {}), transactionId };
}
