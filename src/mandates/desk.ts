/**
 * What the mandate tools are handed (ToolContext `mandates`): issuing an open pair on the terms the
 * policy decided, and closing an issued pair. The provider key never leaves this module — a tool
 * can only ask for a mandate on normalised terms, never for a signature over bytes of its choosing —
 * and neither do the payments keys.
 *
 * The store's mandate record is not an authority: presenting checks it against the hashes the
 * issuance's audit entry recorded (ChainState `mandate`), so a record changed without the log is
 * refused (`mandate_tampered`).
 */
import { randomBytes } from "node:crypto";
import { randomId } from "../crypto/tokens.js";
import { Denied } from "../errors.js";
import type { MandateRecord, Store } from "../../store/types.js";
import type { AuditChains } from "../audit/chain.js";
import { b64urlSha256, closeMandates, issueOpenMandates, type LineItem, type Payee } from "./ap2.js";
import type { PaymentKeys } from "./keys.js";
import { checkPurchase, issueL3, readL2, type L3Pair, type Party } from "./vi.js";

export interface IssueRequest {
  identityId: string;
  tenantId: string;
  payee: Payee;
  currency: string;
  maxAmountCents: number;
  budgetCents?: number;
  expiresAtMs: number;
  lineItems?: LineItem[];
}

export interface Issued {
  mandateId: string;
  checkout: string;
  payment: string;
  checkoutHash: string;
  paymentHash: string;
  providerKeyId: string;
  paymentKeyId: string;
}

export interface PresentRequest {
  identityId: string;
  aud: string;
  nonce: string;
  amountCents: number;
  payee: Payee;
  checkoutJwt?: string;
}

export interface Presented {
  /** The closed payment mandate chain (open payment `~~` closed payment). */
  payment: string;
  /** The closed checkout mandate chain, when a checkout JWT was given. */
  checkout?: string;
  transactionId: string;
  /** SHA-256 (base64url) of each chain: what the audit entry records. */
  paymentChainHash: string;
  checkoutChainHash?: string;
}

/** A Verifiable Intent presentation: the user's L2 and the purchase (src/mandates/vi.ts). */
export interface IntentRequest {
  identityId: string;
  l2: string;
  network: { aud: string; nonce: string };
  merchant: { aud: string; nonce: string };
  amountCents: number;
  currency: string;
  payee: Party;
  checkoutJwt: string;
  lineItems?: Array<{ id: string; quantity: number }>;
}

export interface IntentPresented extends L3Pair {
  /** The payments key that signed both (the L2's cnf kid). */
  paymentKeyId: string;
  /** SHA-256 (base64url) of the L2 as given, and of each L3: what the audit entry records. */
  l2Hash: string;
  l3aHash: string;
  l3bHash: string;
}

/** The open mandate's disclosed payload (the first array-element disclosure carrying a `vct`). */
function openPayload(compact: string): Record<string, unknown> {
  for (const d of compact.split("~").slice(1)) {
    if (d === "") continue;
    const arr = JSON.parse(Buffer.from(d, "base64url").toString("utf8")) as unknown;
    if (Array.isArray(arr) && arr.length === 2 && arr[1] !== null && typeof arr[1] === "object" && "vct" in (arr[1] as object)) return arr[1] as Record<string, unknown>;
  }
  throw new Error("the open mandate has no disclosed payload");
}

const sameMerchant = (a: Payee, b: Payee): boolean => a.id === b.id && a.name === b.name && (a.website ?? "") === (b.website ?? "");

export class MandateDesk {
  constructor(
    private readonly store: Pick<Store, "createMandate" | "getMandate">,
    private readonly keys: Pick<PaymentKeys, "providerSigner" | "identitySigner" | "identitySignerByKid">,
    private readonly chains: Pick<AuditChains, "state">,
    private readonly now: () => number,
  ) {}

  async issue(r: IssueRequest): Promise<Issued> {
    const provider = await this.keys.providerSigner(r.tenantId);
    const agent = await this.keys.identitySigner(r.identityId);
    const nowMs = this.now();
    const pair = await issueOpenMandates(provider, agent, {
      payee: r.payee,
      currency: r.currency,
      maxAmountCents: r.maxAmountCents,
      ...(r.budgetCents !== undefined ? { budgetCents: r.budgetCents } : {}),
      ...(r.lineItems ? { lineItems: r.lineItems } : {}),
      iat: Math.floor(nowMs / 1000),
      exp: Math.floor(r.expiresAtMs / 1000),
    });
    const record: MandateRecord = {
      id: randomId("mnd_"),
      identityId: r.identityId,
      tenantId: r.tenantId,
      createdAt: new Date(nowMs).toISOString(),
      checkout: pair.checkout,
      payment: pair.payment,
    };
    await this.store.createMandate(record);
    return { mandateId: record.id, ...pair, providerKeyId: provider.keyId, paymentKeyId: agent.keyId };
  }

  /**
   * Verifiable Intent's L3a/L3b for a user's L2 whose cnf names this identity's active payments
   * key — the same key (thumbprint and public JWK), never another — and whose constraints the
   * purchase stays inside (checked again here: the tool's checkState already refused otherwise).
   */
  async presentIntent(r: IntentRequest): Promise<IntentPresented> {
    const read = readL2(r.l2, this.now());
    if (!read.ok) throw new Denied(read.refusal.reason, read.refusal.message);
    const v = read.view;
    const checked = checkPurchase(v, r);
    if (!checked.ok) throw new Denied(checked.refusal.reason, checked.refusal.message);
    const agent = await this.keys.identitySignerByKid(r.identityId, v.keyId);
    if (!agent || agent.jwk.x !== v.jwk.x || agent.jwk.y !== v.jwk.y) {
      throw new Denied("mandate_key", `the L2's cnf names key ${v.keyId.slice(0, 60)}, which is not this identity's active payments key (its JWKS lists it); nothing was signed.`);
    }
    const pair = await issueL3(agent, v, checked.views, {
      network: r.network,
      merchant: r.merchant,
      iat: Math.floor(this.now() / 1000),
      amountCents: r.amountCents,
      currency: r.currency,
      payee: r.payee,
      checkoutJwt: r.checkoutJwt,
      ...(r.lineItems ? { lineItems: r.lineItems } : {}),
    });
    return { ...pair, paymentKeyId: agent.keyId, l2Hash: b64urlSha256(r.l2), l3aHash: b64urlSha256(pair.l3a), l3bHash: b64urlSha256(pair.l3b) };
  }

  /**
   * The closed leaves for an issued mandate, for a presentation that policy and the log's record of
   * the mandate (checked under the chain's lock) already allowed. Re-checks what only the tokens say.
   */
  async present(mandateId: string, r: PresentRequest): Promise<Presented> {
    const m = (await this.chains.state(r.identityId)).mandate(mandateId);
    if (!m) throw new Denied("mandate_not_found", `no mandate ${mandateId.slice(0, 40)} was issued to this identity.`);
    const rec = await this.store.getMandate(m.id);
    if (!rec || rec.identityId !== r.identityId || b64urlSha256(rec.checkout) !== m.checkoutHash || b64urlSha256(rec.payment) !== m.paymentHash) {
      throw new Denied("mandate_tampered", `the stored mandate ${m.id} is not the one the audit log records; nothing was signed.`);
    }
    const open = openPayload(rec.payment);
    const payees = ((open.constraints as Array<Record<string, unknown>>).find((c) => c.type === "payment.allowed_payees")?.allowed ?? []) as unknown[];
    const allowed = rec.payment
      .split("~")
      .slice(1)
      .filter((d) => d !== "")
      .map((d) => JSON.parse(Buffer.from(d, "base64url").toString("utf8")) as unknown[])
      .filter((arr) => arr.length === 2 && arr[1] !== null && typeof arr[1] === "object" && !("vct" in (arr[1] as object)))
      .map((arr) => arr[1] as Payee);
    if (payees.length === 0 || !allowed.some((p) => sameMerchant(p, r.payee))) {
      throw new Denied("mandate_payee", "the payee is not the one this mandate allows; nothing was signed.");
    }
    const cnfKid = (open.cnf as { kid?: unknown } | undefined)?.kid;
    const agent = typeof cnfKid === "string" ? await this.keys.identitySignerByKid(r.identityId, cnfKid) : undefined;
    if (!agent) throw new Denied("mandate_key_retired", "the payments key this mandate names has been rotated; ask for a new mandate.");
    const closed = await closeMandates(agent, { checkout: rec.checkout, payment: rec.payment }, {
      aud: r.aud,
      nonce: r.nonce,
      iat: Math.floor(this.now() / 1000),
      amountCents: r.amountCents,
      currency: m.currency,
      payee: r.payee,
      ...(r.checkoutJwt !== undefined ? { checkoutJwt: r.checkoutJwt } : {}),
      transactionId: randomBytes(32).toString("base64url"),
      instrument: { id: r.identityId, type: "card", description: "sigil card" },
    });
    return {
      payment: closed.payment,
      ...(closed.checkout !== undefined ? { checkout: closed.checkout, checkoutChainHash: b64urlSha256(closed.checkout) } : {}),
      transactionId: closed.transactionId,
      paymentChainHash: b64urlSha256(closed.payment),
    };
  }
}
