/**
 * Mastercard Verifiable Intent, the agent layer (agent-intent/verifiable-intent: spec/credential-format.md
 * v0.1 §§4–6, and the formats of its reference implementation and test vectors, whose VCTs and
 * constraint types follow AP2: `mandate.payment.open.1`, `mandate.payment.amount_range`, …).
 *
 * The caller hands sigil a user's L2 — an autonomous-mode KB-SD-JWT+KB (`typ: kb-sd-jwt+kb`) whose
 * `delegate_payload` discloses one open checkout + open payment mandate pair with identical `cnf`,
 * the cnf naming the agent's key (`cnf.kid`, or `cnf.jwk.kid` as the reference implementation
 * writes it). sigil answers with two KB-SD-JWTs (`typ: kb-sd-jwt`, header `kid` = that key id,
 * signed by this identity's payments key, made with `@sd-jwt/core`):
 *
 * - L3a for the network: `mandate.payment.1` {transaction_id, payee, payment_amount, payment_instrument
 *   (the L2's)}; `sd_hash` = SHA-256 of the L2 as the network sees it: base JWT ~ payment mandate
 *   disclosure ~ the allowed-payee disclosure that matches ~.
 * - L3b for the merchant: `mandate.checkout.1` {checkout_jwt, checkout_hash, line_items?}; `sd_hash`
 *   over base JWT ~ checkout mandate disclosure ~ the disclosures of the items bought ~.
 * - `L3a.transaction_id == L3b.checkout_hash` = SHA-256 of the merchant's checkout JWT.
 *
 * Reading the L2 here is decoding, not verifying: sigil does not hold the user's L1, so it cannot
 * check the user's signature (the network does). What sigil checks is that the L2 is well formed,
 * that it names this identity's key, and that the purchase stays inside every constraint it states;
 * an L2 is not an authorisation sigil relies on — its own policy still decides the charge.
 *
 * Written by hand (no JS library reads VI): the `delegate_payload` resolution, the pair binding
 * (`payment.reference`), the constraint checks and the selective views. Disclosures are decoded
 * here synchronously so the checks can run under the chain's lock (AgentTool.checkState).
 */
import { createHash, randomBytes, sign as nodeSign } from "node:crypto";
import { decodeJwt, decodeProtectedHeader } from "jose";
import { SDJwtInstance } from "@sd-jwt/core";
import type { EsSigner } from "./keys.js";

export const VI_VCT = {
  checkoutOpen: ["mandate.checkout.open.1", "mandate.checkout.open"],
  paymentOpen: ["mandate.payment.open.1", "mandate.payment.open"],
  checkout: "mandate.checkout.1",
  payment: "mandate.payment.1",
} as const;

/** An L3's lifetime: the spec recommends 5 minutes (at most an hour). */
export const L3_LIFETIME_S = 300;
/** Clock skew allowed on the L2's times (the spec's recommendation). */
const SKEW_S = 300;

const sha = (s: string): string => createHash("sha256").update(s, "ascii").digest("base64url");

export interface ViRefusal {
  reason: string;
  message: string;
}

class Refused extends Error {
  constructor(readonly refusal: ViRefusal) {
    super(refusal.message);
  }
}
const refuse = (reason: string, message: string): never => {
  throw new Refused({ reason, message: `${message} Nothing was signed.` });
};

type Obj = Record<string, unknown>;
const isObj = (v: unknown): v is Obj => v !== null && typeof v === "object" && !Array.isArray(v);

interface Disclosed {
  encoded: string;
  value: unknown;
}

/** One of the L2's two mandates: its disclosure and its value with nested references resolved. */
interface Mandate {
  disclosure: string;
  digest: string;
  /** The mandate as disclosed (nested `{"...": d}` left as they are). */
  raw: Obj;
}

export interface L2View {
  baseJwt: string;
  checkout: Mandate;
  payment: Mandate;
  /** The key the pair's cnf names: its id and public JWK. */
  keyId: string;
  jwk: { kty: string; crv: string; x: string; y: string };
  paymentInstrument: Obj;
  exp: number;
  disclosures: Map<string, Disclosed>;
}

/** A merchant / payee as VI matches them: by id when both have one, else by name and website. */
export interface Party {
  id?: string;
  name: string;
  website?: string;
}

const sameParty = (a: Obj, b: Party): boolean =>
  typeof a.id === "string" && b.id !== undefined ? a.id === b.id : a.name === b.name && typeof a.website === "string" && a.website === b.website;

/** The constraint types sigil knows, by their name without the `mandate.` prefix (and the spec text's aliases). */
function constraintType(t: unknown): string | undefined {
  if (typeof t !== "string") return undefined;
  const bare = t.startsWith("mandate.") ? t.slice("mandate.".length) : t;
  const alias: Record<string, string> = { "payment.amount": "payment.amount_range", "payment.allowed_payee": "payment.allowed_payees", "checkout.allowed_merchant": "checkout.allowed_merchants" };
  return alias[bare] ?? bare;
}
const PAYMENT_TYPES = new Set(["payment.amount_range", "payment.allowed_payees", "payment.reference", "payment.budget", "payment.recurrence", "payment.agent_recurrence"]);
const CHECKOUT_TYPES = new Set(["checkout.allowed_merchants", "checkout.line_items"]);

function decodeDisclosure(encoded: string): unknown[] {
  let arr: unknown;
  try {
    if (!/^[A-Za-z0-9_-]+$/.test(encoded)) throw new Error("not base64url");
    arr = JSON.parse(Buffer.from(encoded, "base64url").toString("utf8"));
  } catch {
    return refuse("mandate_malformed", "an L2 disclosure is not base64url JSON.");
  }
  if (!Array.isArray(arr) || (arr.length !== 2 && arr.length !== 3) || typeof arr[0] !== "string") return refuse("mandate_malformed", "an L2 disclosure is not an SD-JWT disclosure.");
  return arr;
}

/** Every digest a value references: `_sd` members and `{"...": d}` array elements. */
function referencedDigests(v: unknown, out: string[]): void {
  if (Array.isArray(v)) for (const x of v) referencedDigests(x, out);
  else if (isObj(v)) {
    for (const [k, x] of Object.entries(v)) {
      if (k === "_sd" && Array.isArray(x)) for (const d of x) out.push(String(d));
      else if (k === "..." && typeof x === "string") out.push(x);
      else referencedDigests(x, out);
    }
  }
}

/** An array's elements with `{"...": d}` references replaced by their disclosed values (undisclosed ones left out). */
function resolvedElements(list: unknown, disclosures: Map<string, Disclosed>): Array<{ value: unknown; disclosure?: string }> {
  if (!Array.isArray(list)) return [];
  const out: Array<{ value: unknown; disclosure?: string }> = [];
  for (const el of list) {
    if (isObj(el) && Object.keys(el).length === 1 && typeof el["..."] === "string") {
      const d = disclosures.get(el["..."]);
      if (d) out.push({ value: d.value, disclosure: d.encoded });
    } else out.push({ value: el });
  }
  return out;
}

/**
 * Reads an L2 (autonomous mode) and checks its form: ES256, `kb-sd-jwt+kb`, every disclosure
 * referenced once, exactly one open checkout + open payment pair bound by `payment.reference`,
 * identical P-256 `cnf` naming a key id, a payment instrument, known constraint types, not expired.
 */
export function readL2(l2: string, nowMs: number): { ok: true; view: L2View } | { ok: false; refusal: ViRefusal } {
  try {
    return { ok: true, view: parseL2(l2, nowMs) };
  } catch (err) {
    if (err instanceof Refused) return { ok: false, refusal: err.refusal };
    throw err;
  }
}

function parseL2(l2: string, nowMs: number): L2View {
  if (!l2.endsWith("~")) refuse("mandate_malformed", "the L2 must be an SD-JWT presentation ending in ~ (no key-binding JWT).");
  const parts = l2.split("~");
  const baseJwt = parts[0]!;
  const encoded = parts.slice(1, -1);
  let header: Obj;
  let payload: Obj;
  try {
    header = decodeProtectedHeader(baseJwt) as Obj;
    payload = decodeJwt(baseJwt) as Obj;
  } catch {
    return refuse("mandate_malformed", "the L2's JWT cannot be decoded.");
  }
  if (header.alg !== "ES256") refuse("mandate_malformed", `the L2 is signed with ${String(header.alg).slice(0, 20)}; Verifiable Intent uses ES256.`);
  if (header.typ !== "kb-sd-jwt+kb") refuse("mandate_malformed", `the L2's typ is ${String(header.typ).slice(0, 30)}; an autonomous-mode L2 (kb-sd-jwt+kb) delegates to an agent.`);
  if (payload._sd_alg !== undefined && payload._sd_alg !== "sha-256") refuse("mandate_malformed", "the L2's _sd_alg must be sha-256.");
  if (typeof payload.exp !== "number" || !Number.isFinite(payload.exp)) refuse("mandate_malformed", "the L2 has no exp.");
  if (typeof payload.iat === "number" && payload.iat > nowMs / 1000 + SKEW_S) refuse("mandate_malformed", "the L2 is issued in the future.");
  if ((payload.exp as number) + SKEW_S < nowMs / 1000) refuse("mandate_expired", `the L2 expired at ${new Date((payload.exp as number) * 1000).toISOString()}.`);

  const disclosures = new Map<string, Disclosed>();
  for (const e of encoded) {
    const arr = decodeDisclosure(e);
    const digest = sha(e);
    if (disclosures.has(digest)) refuse("mandate_malformed", "an L2 disclosure is repeated.");
    disclosures.set(digest, { encoded: e, value: arr.at(-1) });
  }
  // Every disclosure referenced by the signed payload or another disclosure (a merchant may be
  // referenced by both mandates, as the reference implementation does); no `_sd` lists one twice.
  const refs: string[] = [];
  referencedDigests(payload, refs);
  for (const d of disclosures.values()) referencedDigests(d.value, refs);
  for (const digest of disclosures.keys()) if (!refs.includes(digest)) refuse("mandate_malformed", "an L2 disclosure is referenced by nothing.");
  if (Array.isArray(payload._sd) && new Set(payload._sd).size !== payload._sd.length) refuse("mandate_malformed", "the L2's _sd lists a digest twice.");

  const dp = payload.delegate_payload;
  if (!Array.isArray(dp) || dp.length !== 2) refuse("mandate_malformed", "the L2's delegate_payload must hold exactly one checkout and one payment mandate.");
  const mandates: Mandate[] = [];
  for (const ref of dp as unknown[]) {
    const digest = isObj(ref) && typeof ref["..."] === "string" ? ref["..."] : undefined;
    const d = digest !== undefined ? disclosures.get(digest) : undefined;
    if (!digest || !d || !isObj(d.value)) return refuse("mandate_malformed", "an L2 mandate is not disclosed.");
    mandates.push({ disclosure: d.encoded, digest, raw: d.value });
  }
  const checkout = mandates.find((m) => (VI_VCT.checkoutOpen as readonly unknown[]).includes(m.raw.vct));
  const payment = mandates.find((m) => (VI_VCT.paymentOpen as readonly unknown[]).includes(m.raw.vct));
  if (!checkout || !payment) return refuse("mandate_malformed", "the L2 must disclose an open checkout mandate and an open payment mandate (autonomous mode).");

  // Identical cnf on both, a P-256 key, and the id it is named by.
  const cnf = payment.raw.cnf;
  if (!isObj(cnf) || JSON.stringify(cnf) !== JSON.stringify(checkout.raw.cnf)) refuse("mandate_malformed", "the L2's two mandates must carry the same cnf.");
  const jwk = (cnf as Obj).jwk;
  if (!isObj(jwk) || jwk.kty !== "EC" || jwk.crv !== "P-256" || typeof jwk.x !== "string" || typeof jwk.y !== "string" || "d" in jwk) {
    return refuse("mandate_malformed", "the L2's cnf.jwk must be a public P-256 key.");
  }
  const kids = [(cnf as Obj).kid, jwk.kid].filter((k) => k !== undefined);
  if (kids.length === 0 || kids.some((k) => typeof k !== "string" || k === "") || new Set(kids).size !== 1) {
    return refuse("mandate_malformed", "the L2's cnf must name the agent's key by one kid.");
  }

  for (const [m, known, kind] of [[checkout, CHECKOUT_TYPES, "checkout"], [payment, PAYMENT_TYPES, "payment"]] as const) {
    const cs = m.raw.constraints;
    if (!Array.isArray(cs) || cs.length === 0 || !cs.every(isObj)) refuse("mandate_malformed", `the L2's ${kind} mandate must state its constraints.`);
    for (const c of cs as Obj[]) {
      const t = constraintType(c.type);
      if (!t || !known.has(t)) refuse("mandate_constraint_unknown", `the L2's ${kind} mandate has a constraint sigil cannot check (${String(c.type).slice(0, 60)}).`);
    }
  }
  // The pair is bound: the payment's reference is the checkout mandate's disclosure digest.
  const refs2 = (payment.raw.constraints as Obj[]).filter((c) => constraintType(c.type) === "payment.reference");
  if (refs2.length !== 1 || refs2[0]!.conditional_transaction_id !== checkout.digest) {
    refuse("mandate_malformed", "the L2's payment mandate must reference its checkout mandate (payment.reference).");
  }
  const pi = payment.raw.payment_instrument;
  if (!isObj(pi) || typeof pi.id !== "string" || pi.id === "" || typeof pi.type !== "string" || pi.type === "") {
    refuse("mandate_malformed", "the L2's payment mandate must name its payment instrument (id and type).");
  }
  return {
    baseJwt,
    checkout,
    payment,
    keyId: kids[0] as string,
    jwk: { kty: "EC", crv: "P-256", x: jwk.x as string, y: jwk.y as string },
    paymentInstrument: pi as Obj,
    exp: payload.exp as number,
    disclosures,
  };
}

export interface ViPurchase {
  amountCents: number;
  currency: string;
  payee: Party;
  lineItems?: Array<{ id: string; quantity: number }>;
}

export interface Views {
  /** The disclosures (after the base JWT) the network's view of L2 carries. */
  network: string[];
  /** The disclosures the merchant's view carries. */
  merchant: string[];
}

/**
 * Whether the purchase stays inside every constraint of the L2, and the disclosures each
 * recipient's view of the L2 needs. Budget and recurrence are left to the network (the spec's
 * division of labour) beyond one payment never exceeding the budget; sigil's own policy counts
 * its spending.
 */
export function checkPurchase(v: L2View, p: ViPurchase): { ok: true; views: Views } | { ok: false; refusal: ViRefusal } {
  const no = (reason: string, message: string) => ({ ok: false as const, refusal: { reason, message: `${message} Nothing was signed.` } });
  const network = [v.payment.disclosure];
  const merchant = [v.checkout.disclosure];
  for (const c of v.payment.raw.constraints as Obj[]) {
    switch (constraintType(c.type)) {
      case "payment.amount_range":
      case "payment.budget": {
        const what = constraintType(c.type) === "payment.budget" ? "budget" : "amount range";
        if (typeof c.currency !== "string" || typeof c.max !== "number") return no("mandate_malformed", `the L2's ${what} has no currency or max.`);
        if (c.currency !== p.currency) return no("mandate_currency", `the L2 allows payments in ${c.currency.slice(0, 3)}, not ${p.currency}.`);
        if (p.amountCents > c.max) return no("mandate_amount_range", `the L2's ${what} allows at most ${c.max} minor units.`);
        if (typeof c.min === "number" && p.amountCents < c.min && what === "amount range") return no("mandate_amount_range", `the L2's amount range starts at ${c.min} minor units.`);
        break;
      }
      case "payment.allowed_payees": {
        const allowed = resolvedElements(c.allowed ?? c.allowed_payees, v.disclosures);
        const hit = allowed.find((a) => isObj(a.value) && sameParty(a.value, p.payee));
        if (!hit) return no("mandate_payee", "the payee is not one the L2 allows.");
        if (hit.disclosure && !network.includes(hit.disclosure)) network.push(hit.disclosure);
        break;
      }
      default:
        break; // reference: checked when read; recurrence: the network's
    }
  }
  for (const c of v.checkout.raw.constraints as Obj[]) {
    switch (constraintType(c.type)) {
      case "checkout.allowed_merchants": {
        const allowed = resolvedElements(c.allowed ?? c.allowed_merchants, v.disclosures);
        const hit = allowed.find((a) => isObj(a.value) && sameParty(a.value, p.payee));
        if (!hit) return no("mandate_payee", "the merchant is not one the L2's checkout mandate allows.");
        break; // the merchant's view carries the checkout mandate and items, not the allow-list (spec §5.4)
      }
      case "checkout.line_items": {
        const lines = Array.isArray(c.items) ? (c.items as unknown[]).filter(isObj) : [];
        if (!p.lineItems || p.lineItems.length === 0) return no("mandate_line_items", "the L2 limits the items; name the lineItems bought.");
        for (const li of p.lineItems) {
          let found: string | undefined | null = null;
          for (const line of lines) {
            if (typeof line.quantity === "number" && li.quantity > line.quantity) continue;
            const item = resolvedElements(line.acceptable_items, v.disclosures).find((a) => isObj(a.value) && a.value.id === li.id);
            if (item) {
              found = item.disclosure;
              break;
            }
          }
          if (found === null) return no("mandate_line_items", `item ${li.id.slice(0, 60)} (×${li.quantity}) is not one the L2 allows.`);
          if (found && !merchant.includes(found)) merchant.push(found);
        }
        break;
      }
      default:
        break;
    }
  }
  return { ok: true, views: { network, merchant } };
}

/** `base~d1~d2~`: a recipient's view of the L2, as its L3's `sd_hash` binds it. */
export const selectiveView = (baseJwt: string, disclosures: string[]): string => `${baseJwt}~${disclosures.map((d) => `${d}~`).join("")}`;

export interface L3Terms {
  network: { aud: string; nonce: string };
  merchant: { aud: string; nonce: string };
  iat: number;
  amountCents: number;
  currency: string;
  payee: Party;
  checkoutJwt: string;
  lineItems?: Array<{ id: string; quantity: number }>;
}

export interface L3Pair {
  /** L3a: the final payment mandate, for the network. */
  l3a: string;
  /** L3b: the final checkout mandate, for the merchant. */
  l3b: string;
  /** The L2 views each L3's sd_hash binds (what the agent sends beside it). */
  l2ForNetwork: string;
  l2ForMerchant: string;
  /** = checkout_hash = SHA-256 of the checkout JWT. */
  transactionId: string;
}

/** L3a and L3b for a checked purchase, signed by the agent key the L2 names. */
export async function issueL3(agent: EsSigner, v: L2View, views: Views, t: L3Terms): Promise<L3Pair> {
  const sd = new SDJwtInstance<Record<string, unknown>>({
    signAlg: "ES256",
    signer: async (data: string) => nodeSign("sha256", Buffer.from(data, "ascii"), { key: agent.privateKey, dsaEncoding: "ieee-p1363" }).toString("base64url"),
    hasher: async (data: string | ArrayBuffer) => new Uint8Array(createHash("sha256").update(typeof data === "string" ? data : new Uint8Array(data)).digest()),
    hashAlg: "sha-256",
    saltGenerator: async () => randomBytes(16).toString("base64url"),
  });
  const header = { typ: "kb-sd-jwt", kid: v.keyId };
  const checkoutHash = sha(t.checkoutJwt);
  const l2ForNetwork = selectiveView(v.baseJwt, views.network);
  const l2ForMerchant = selectiveView(v.baseJwt, views.merchant);
  const exp = t.iat + L3_LIFETIME_S;
  const payee = { ...(t.payee.id !== undefined ? { id: t.payee.id } : {}), name: t.payee.name, ...(t.payee.website !== undefined ? { website: t.payee.website } : {}) };
  const finalPayment = {
    vct: VI_VCT.payment,
    transaction_id: checkoutHash,
    payee,
    payment_amount: { currency: t.currency, amount: t.amountCents },
    payment_instrument: v.paymentInstrument,
  };
  const l3a = await sd.issue(
    { nonce: t.network.nonce, aud: t.network.aud, iat: t.iat, exp, sd_hash: sha(l2ForNetwork), delegate_payload: [finalPayment] },
    { delegate_payload: { _sd: [0] } } as never,
    { header },
  );
  const finalCheckout = {
    vct: VI_VCT.checkout,
    checkout_jwt: t.checkoutJwt,
    checkout_hash: checkoutHash,
    ...(t.lineItems && t.lineItems.length > 0 ? { line_items: t.lineItems.map((li) => ({ id: li.id, quantity: li.quantity })) } : {}),
  };
  const l3b = await sd.issue(
    { nonce: t.merchant.nonce, aud: t.merchant.aud, iat: t.iat, exp, sd_hash: sha(l2ForMerchant), delegate_payload: [finalCheckout] },
    { delegate_payload: { _sd: [0] } } as never,
    { header },
  );
  return { l3a, l3b, l2ForNetwork, l2ForMerchant, transactionId: checkoutHash };
}
