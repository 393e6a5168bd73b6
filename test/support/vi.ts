/**
 * Verifiable Intent for the tests, written independently of sigil's code from the specification
 * (agent-intent/verifiable-intent spec/credential-format.md v0.1) and its reference implementation's
 * formats:
 *
 * - `issueL1`/`issueL2`: a card issuer's L1 (`sd+jwt`) and a user's autonomous-mode L2
 *   (`kb-sd-jwt+kb`), disclosures composed here and signed with `jose`.
 * - `verifyVi`: the checks a network / merchant makes on L1 → L2 → L3a/L3b — each signature with
 *   `@sd-jwt/core` (+ `@sd-jwt/crypto-nodejs`), every disclosure referenced, `typ`s, the L2's
 *   `sd_hash` over L1, the agent key resolved from L2 `cnf` by the L3 header `kid` (never a key in
 *   the L3), each L3's `sd_hash` over the selective L2 view it came with (which must hold its pair's
 *   mandate), no `cnf` in L3, times (exp ≤ 1 h after iat), aud/nonce, required fields, the L2's
 *   payment instrument, `transaction_id == checkout_hash == SHA-256(checkout_jwt)`, and the L3
 *   values against the L2's amount, payee, merchant and line-item constraints.
 */
import { createHash, randomBytes } from "node:crypto";
import { SignJWT, importJWK, type JWK } from "jose";
import { SDJwtInstance } from "@sd-jwt/core";
import { ES256, digest } from "@sd-jwt/crypto-nodejs";

type Obj = Record<string, any>;
const sha = (s: string): string => createHash("sha256").update(s, "ascii").digest("base64url");
const b64json = (v: unknown): string => Buffer.from(JSON.stringify(v)).toString("base64url");
const decode = (s: string): any => JSON.parse(Buffer.from(s, "base64url").toString("utf8"));

/** An array-element disclosure `[salt, value]` and its digest. */
export function disclosure(value: unknown): { encoded: string; digest: string } {
  const encoded = b64json([randomBytes(16).toString("base64url"), value]);
  return { encoded, digest: sha(encoded) };
}

async function sign(header: Obj, payload: Obj, privateJwk: JWK): Promise<string> {
  return new SignJWT(payload).setProtectedHeader({ alg: "ES256", ...header }).sign(await importJWK(privateJwk, "ES256"));
}

export async function issueL1(issuer: { privateJwk: JWK; kid: string }, userPublicJwk: JWK, o: { iat: number; cardId?: string }): Promise<string> {
  const email = b64json([randomBytes(16).toString("base64url"), "email", "user@example.com"]);
  const jwt = await sign(
    { typ: "sd+jwt", kid: issuer.kid },
    {
      iss: "https://issuer.example", sub: "user-1", iat: o.iat, exp: o.iat + 365 * 86400, vct: "https://credentials.mastercard.com/card",
      cnf: { jwk: userPublicJwk }, pan_last_four: "1234", scheme: "mastercard", ...(o.cardId ? { card_id: o.cardId } : {}), _sd: [sha(email)], _sd_alg: "sha-256",
    },
    issuer.privateJwk,
  );
  return `${jwt}~${email}~`;
}

export interface L2Options {
  user: { privateJwk: JWK; kid: string };
  l1: string;
  /** The agent's cnf (as the L2 states it). */
  cnf: Obj;
  /** Overrides the payment mandate's cnf (to make the two differ). */
  paymentCnf?: Obj;
  merchants: Obj[];
  /** Indexes into merchants the payment mandate allows (default: the first). */
  payees?: number[];
  items?: Obj[];
  itemQuantity?: number;
  amount?: Obj;
  extraPaymentConstraints?: Obj[];
  paymentInstrument?: Obj;
  iat: number;
  exp: number;
  typ?: string;
  /** Leave out the payment.reference constraint, or point it elsewhere. */
  reference?: "omit" | "wrong";
}

export interface IssuedL2 {
  l2: string;
  base: string;
  checkout: string;
  payment: string;
  merchants: string[];
  items: string[];
}

/** An autonomous-mode L2: one open checkout + open payment pair, merchants and items as nested disclosures. */
export async function issueL2(o: L2Options): Promise<IssuedL2> {
  const merchants = o.merchants.map((m) => disclosure(m));
  const items = (o.items ?? []).map((i) => disclosure(i));
  const checkoutConstraints: Obj[] = [{ type: "mandate.checkout.allowed_merchants", allowed: merchants.map((m) => ({ "...": m.digest })) }];
  if (items.length > 0) checkoutConstraints.push({ type: "mandate.checkout.line_items", items: [{ id: "line-1", acceptable_items: items.map((i) => ({ "...": i.digest })), quantity: o.itemQuantity ?? 1 }] });
  const checkout = disclosure({ vct: "mandate.checkout.open.1", cnf: o.cnf, constraints: checkoutConstraints });
  const paymentConstraints: Obj[] = [
    { type: "mandate.payment.allowed_payees", allowed: (o.payees ?? [0]).map((i) => ({ "...": merchants[i]!.digest })) },
    { type: "mandate.payment.amount_range", currency: "USD", min: 100, max: 30_000, ...o.amount },
    ...(o.reference === "omit" ? [] : [{ type: "mandate.payment.reference", conditional_transaction_id: o.reference === "wrong" ? sha("other") : checkout.digest }]),
    ...(o.extraPaymentConstraints ?? []),
  ];
  const payment = disclosure({
    vct: "mandate.payment.open.1",
    cnf: o.paymentCnf ?? o.cnf,
    payment_instrument: o.paymentInstrument ?? { type: "mastercard.srcDigitalCard", id: "card-1", description: "Mastercard **** 1234" },
    constraints: paymentConstraints,
  });
  const all = [...merchants, ...items, checkout, payment];
  const base = await sign(
    { typ: o.typ ?? "kb-sd-jwt+kb", kid: o.user.kid },
    {
      nonce: randomBytes(8).toString("hex"), aud: "https://agent.example", iss: "https://wallet.example", iat: o.iat, exp: o.exp, sd_hash: sha(o.l1),
      delegate_payload: [{ "...": checkout.digest }, { "...": payment.digest }], _sd_alg: "sha-256", _sd: all.map((d) => d.digest),
    },
    o.user.privateJwk,
  );
  return { l2: `${base}~${all.map((d) => `${d.encoded}~`).join("")}`, base, checkout: checkout.encoded, payment: payment.encoded, merchants: merchants.map((m) => m.encoded), items: items.map((i) => i.encoded) };
}

// ---------------------------------------------------------------------------------------------
// The verifier.

function referenced(v: unknown, out: string[]): void {
  if (Array.isArray(v)) for (const x of v) referenced(x, out);
  else if (v !== null && typeof v === "object") {
    for (const [k, x] of Object.entries(v)) {
      if (k === "_sd" && Array.isArray(x)) for (const d of x) out.push(String(d));
      else if (k === "..." && typeof x === "string") out.push(x);
      else referenced(x, out);
    }
  }
}

/** Signature (when a key is given), every disclosure referenced, none repeated; the header, payload (resolved) and disclosures by digest. */
async function openSdJwt(compact: string, key: JWK | undefined, nowSeconds: number, label: string): Promise<{ header: Obj; raw: Obj; claims: Obj; byDigest: Map<string, string> }> {
  const parts = compact.split("~");
  if (parts.at(-1) !== "") throw new Error(`${label}: must end in ~`);
  const disclosures = parts.slice(1, -1);
  const raw = decode(parts[0]!.split(".")[1]!);
  const refs: string[] = [];
  referenced(raw, refs);
  for (const d of disclosures) referenced(decode(d), refs);
  const byDigest = new Map(disclosures.map((d) => [sha(d), d] as const));
  if (byDigest.size !== disclosures.length) throw new Error(`${label}: a disclosure is repeated`);
  if (Array.isArray(raw._sd) && new Set(raw._sd).size !== raw._sd.length) throw new Error(`${label}: _sd lists a digest twice`);
  for (const d of byDigest.keys()) if (!refs.includes(d)) throw new Error(`${label}: a disclosure is referenced by nothing`);
  if (key) {
    const sd = new SDJwtInstance({ verifier: await ES256.getVerifier(key as never), hasher: digest });
    try {
      await sd.verify(compact, { currentDate: nowSeconds, skewSeconds: 300 });
    } catch (err) {
      throw new Error(`${label}: ${(err as Error).message}`);
    }
  }
  const claims = (await new SDJwtInstance({ hasher: digest }).getClaims(compact)) as Obj;
  return { header: decode(parts[0]!.split(".")[0]!), raw, claims, byDigest };
}

const sameParty = (a: Obj, b: Obj): boolean => (a.id !== undefined && b.id !== undefined ? a.id === b.id : a.name === b.name && !!a.website && a.website === b.website);
/** Elements of a constraint list with references resolved from the disclosures this verifier got. */
const resolved = (list: unknown, byDigest: Map<string, string>): Obj[] =>
  (Array.isArray(list) ? list : []).flatMap((e: any) => (e && typeof e["..."] === "string" ? (byDigest.has(e["..."]) ? [decode(byDigest.get(e["..."])!)[1]] : []) : [e]));
const bare = (t: string): string => (t.startsWith("mandate.") ? t.slice(8) : t);

export interface ViInput {
  l1?: string;
  issuerKey?: JWK;
  /** The full L2 (checked when given with l1). */
  l2?: string;
  l2ForNetwork: string;
  l2ForMerchant: string;
  l3a: string;
  l3b: string;
  /** What each recipient expects (a member left out or null is not checked, as the reference's vectors do). */
  network: { aud?: string | null; nonce?: string | null };
  merchant: { aud?: string | null; nonce?: string | null };
  nowSeconds: number;
  /** "payment": leave the checkout mandate's constraints unchecked (the reference's vectors carry no L3b line items). */
  constraints?: "all" | "payment";
}

export interface ViVerified {
  l3a: { header: Obj; claims: Obj; payment: Obj };
  l3b: { header: Obj; claims: Obj; checkout: Obj };
  agentKid: string;
}

export async function verifyVi(v: ViInput): Promise<ViVerified> {
  // L1 → L2 (when the verifier has them): the user's key from L1, L2's sd_hash over L1.
  const base = v.l2ForNetwork.split("~")[0]!;
  if (v.l2ForMerchant.split("~")[0] !== base) throw new Error("the two L2 views are of different L2s");
  if (v.l1 !== undefined) {
    const l1 = await openSdJwt(v.l1, v.issuerKey, v.nowSeconds, "L1");
    if (l1.header.typ !== "sd+jwt" || l1.header.alg !== "ES256") throw new Error("L1: typ/alg");
    const userKey = l1.claims.cnf?.jwk as JWK;
    for (const [name, view] of [["network", v.l2ForNetwork], ["merchant", v.l2ForMerchant], ...(v.l2 ? [["full", v.l2]] : [])] as const) {
      const l2 = await openSdJwt(view, userKey, v.nowSeconds, `L2 (${name} view)`);
      if (l2.header.typ !== "kb-sd-jwt+kb") throw new Error("L2: typ");
      if (l2.raw.sd_hash !== sha(v.l1)) throw new Error("L2: sd_hash does not bind L1");
    }
  }
  const views = { network: await openSdJwt(v.l2ForNetwork, undefined, v.nowSeconds, "L2 network view"), merchant: await openSdJwt(v.l2ForMerchant, undefined, v.nowSeconds, "L2 merchant view") };
  const mandateOf = (view: typeof views.network, vct: string): Obj | undefined => (view.claims.delegate_payload as Obj[]).find((m) => m && m.vct === vct);
  const l2Payment = mandateOf(views.network, "mandate.payment.open.1");
  const l2Checkout = mandateOf(views.merchant, "mandate.checkout.open.1");
  if (!l2Payment) throw new Error("the network's L2 view does not hold the payment mandate");
  if (!l2Checkout) throw new Error("the merchant's L2 view does not hold the checkout mandate");
  if (JSON.stringify(l2Payment.cnf) !== JSON.stringify(l2Checkout.cnf)) throw new Error("L2 cnf differs between the mandates");
  const agentJwk = l2Payment.cnf.jwk as JWK;
  const agentKid = (l2Payment.cnf.kid ?? agentJwk.kid) as string;
  // The payment mandate references this checkout mandate.
  const checkoutDigest = [...views.merchant.byDigest.entries()].find(([, d]) => decode(d)[1]?.vct === "mandate.checkout.open.1")![0];
  const ref = (l2Payment.constraints as Obj[]).find((c) => bare(c.type) === "payment.reference");
  if (!ref || ref.conditional_transaction_id !== checkoutDigest) throw new Error("L2: payment.reference does not name the checkout mandate");

  const l3 = async (compact: string, view: string, label: string, want: ViInput["network"], vct: string) => {
    const o = await openSdJwt(compact, agentJwk, v.nowSeconds, label);
    if (o.header.typ !== "kb-sd-jwt" || o.header.alg !== "ES256") throw new Error(`${label}: typ/alg`);
    if ("jwk" in o.header) throw new Error(`${label}: a self-asserted jwk`);
    if (o.header.kid !== agentKid) throw new Error(`${label}: kid does not match L2 cnf`);
    if ("cnf" in o.raw) throw new Error(`${label}: cnf in an L3`);
    if (o.raw.sd_hash !== sha(view)) throw new Error(`${label}: sd_hash does not match its L2 view`);
    if (typeof o.raw.iat !== "number" || o.raw.iat > v.nowSeconds + 300) throw new Error(`${label}: iat`);
    if (typeof o.raw.exp !== "number" || o.raw.exp + 300 < v.nowSeconds || o.raw.exp - o.raw.iat > 3600) throw new Error(`${label}: exp`);
    if (want.aud != null && o.raw.aud !== want.aud) throw new Error(`${label}: aud`);
    if (want.nonce != null && o.raw.nonce !== want.nonce) throw new Error(`${label}: nonce`);
    const m = (o.claims.delegate_payload as Obj[]).find((x) => x && x.vct === vct);
    if (!m) throw new Error(`${label}: no ${vct}`);
    return { header: o.header, claims: o.claims, mandate: m };
  };
  const a = await l3(v.l3a, v.l2ForNetwork, "L3a", v.network, "mandate.payment.1");
  const b = await l3(v.l3b, v.l2ForMerchant, "L3b", v.merchant, "mandate.checkout.1");
  const pay = a.mandate;
  const chk = b.mandate;
  for (const k of ["transaction_id", "payee", "payment_amount", "payment_instrument"]) if (pay[k] === undefined) throw new Error(`L3a: no ${k}`);
  if (!pay.payee.name || !pay.payee.website) throw new Error("L3a: payee name and website");
  if (!Number.isInteger(pay.payment_amount.amount)) throw new Error("L3a: amount must be an integer");
  if (pay.payment_instrument.id !== l2Payment.payment_instrument.id || pay.payment_instrument.type !== l2Payment.payment_instrument.type) throw new Error("L3a: payment instrument is not the L2's");
  if (chk.checkout_hash !== sha(chk.checkout_jwt)) throw new Error("L3b: checkout_hash");
  if (pay.transaction_id !== chk.checkout_hash) throw new Error("L3a.transaction_id != L3b.checkout_hash");

  // The L3 values against the L2's constraints (as disclosed to each recipient).
  for (const c of l2Payment.constraints as Obj[]) {
    switch (bare(c.type)) {
      case "payment.amount_range":
        if (pay.payment_amount.currency !== c.currency || pay.payment_amount.amount > c.max || (c.min !== undefined && pay.payment_amount.amount < c.min)) throw new Error("L3a: amount outside the L2's range");
        break;
      case "payment.allowed_payees": {
        const allowed = resolved(c.allowed, views.network.byDigest);
        if (allowed.length > 0 && !allowed.some((p) => sameParty(p, pay.payee))) throw new Error("L3a: payee not allowed");
        break;
      }
      case "payment.reference":
      case "payment.budget":
      case "payment.recurrence":
      case "payment.agent_recurrence":
        break;
      default:
        throw new Error(`L2: unknown constraint ${c.type}`);
    }
  }
  const checkoutClaims = decode(chk.checkout_jwt.split(".")[1]);
  for (const c of v.constraints === "payment" ? [] : (l2Checkout.constraints as Obj[])) {
    switch (bare(c.type)) {
      case "checkout.allowed_merchants": {
        const allowed = resolved(c.allowed, views.merchant.byDigest);
        if (allowed.length > 0 && !allowed.some((m) => sameParty(m, checkoutClaims.merchant ?? {}))) throw new Error("L3b: merchant not allowed");
        break;
      }
      case "checkout.line_items": {
        const bought = (chk.line_items ?? []) as Obj[];
        if (bought.length === 0) throw new Error("L3b: no line items");
        for (const li of bought) {
          const ok = (c.items as Obj[]).some((line) => li.quantity <= line.quantity && resolved(line.acceptable_items, views.merchant.byDigest).some((i) => i.id === li.id));
          if (!ok) throw new Error(`L3b: item ${li.id} not allowed`);
        }
        break;
      }
      default:
        throw new Error(`L2: unknown constraint ${c.type}`);
    }
  }
  return { l3a: { header: a.header, claims: a.claims, payment: pay }, l3b: { header: b.header, claims: b.claims, checkout: chk }, agentKid };
}
