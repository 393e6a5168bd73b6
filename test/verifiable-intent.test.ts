/**
 * Mastercard Verifiable Intent, sigil as the agent layer (SPEC §13, src/mandates/vi.ts):
 *
 * - The reference's own test vectors (test/fixtures/vi-reference-vectors.json, from the Python
 *   reference implementation): the test verifier (test/support/vi.ts, independent of sigil's code)
 *   accepts their valid autonomous chain and refuses their failing ones; sigil reads their L2 and,
 *   from their inputs and their agent key, builds L3s whose `sd_hash`es and final mandates are
 *   theirs, and which the verifier accepts.
 * - End to end, the SDK's MCP Client against the built server on both stores: a test issuer's L1
 *   and L2 naming the identity's payments key (from its JWKS) → present_payment_mandate {l2, …} →
 *   L3a/L3b that verify from L1 down; every refusal (another key, wider than the L2, malformed,
 *   unknown constraint, expired, items not allowed, payee outside policy) is audited and signs
 *   nothing.
 */
import { afterAll, describe, expect, it } from "vitest";
import { createHash, createPrivateKey } from "node:crypto";
import { readFileSync } from "node:fs";
import path from "node:path";
import { SignJWT, exportJWK, generateKeyPair, type JWK } from "jose";
import { backends, pgSkipNote } from "./support/backends.js";
import { type Home, type Identity, ROOT, cleanupHomes, makeHome, stdioClient, text } from "./support/home.js";
import { issueL1, issueL2, verifyVi } from "./support/vi.js";
import { checkPurchase, issueL3, readL2, selectiveView } from "../src/mandates/vi.js";

afterAll(cleanupHomes);

const LONG = { timeout: 240_000 };
const V = JSON.parse(readFileSync(path.join(ROOT, "test/fixtures/vi-reference-vectors.json"), "utf8"));
const sha = (s: string): string => createHash("sha256").update(s, "ascii").digest("base64url");
const decode = (s: string): any => JSON.parse(Buffer.from(s, "base64url").toString("utf8"));
const now = (): number => Math.floor(Date.now() / 1000);

describe("Verifiable Intent: the reference implementation's test vectors", () => {
  const scenario = (name: string) => V.chain_scenarios.find((s: any) => s.name === name);
  const inputOf = (s: any) => ({
    l1: s.l1,
    ...(s.skip_issuer_verification ? {} : { issuerKey: s.issuer_public }),
    l2: s.l2,
    l2ForNetwork: s.l2_payment_serialized,
    l2ForMerchant: s.l2_checkout_serialized,
    l3a: s.l3_payment,
    l3b: s.l3_checkout,
    network: { aud: s.expected_l3_payment_aud, nonce: s.expected_l3_payment_nonce },
    merchant: { aud: s.expected_l3_checkout_aud, nonce: s.expected_l3_checkout_nonce },
    nowSeconds: s.current_time,
  });

  it("the test verifier accepts their valid autonomous chain and refuses each of their failing scenarios", async () => {
    for (const name of ["autonomous_valid", "autonomous_skip_issuer_ok"]) {
      const s = scenario(name);
      expect(s.expected_valid).toBe(true);
      // Their L3b carries no line_items (their chain verifier leaves constraints to a separate step): checked here for payment only.
      const v = await verifyVi({ ...inputOf(s), constraints: "payment" });
      expect(v.agentKid).toBe("agent-key-1");
      expect(v.l3a.payment.transaction_id).toBe(V.shared.checkout_hash);
    }
    for (const [name, error] of [["autonomous_swapped_l3", /sd_hash|does not hold the payment mandate/], ["autonomous_wrong_l3_aud", /L3a: aud/], ["autonomous_l3_expired", /L2.*exp/i]] as const) {
      const s = scenario(name);
      expect(s.expected_valid).toBe(false);
      await expect(verifyVi({ ...inputOf(s), constraints: "payment" }), name).rejects.toThrow(error);
    }
    // A forged L1 (another issuer key) is refused too.
    const forged = { ...inputOf(scenario("autonomous_valid")), issuerKey: V.keys.agent.public, constraints: "payment" as const };
    await expect(verifyVi(forged)).rejects.toThrow(/L1/);
  });

  it("sigil reads their L2 and, from their inputs and agent key, builds L3a/L3b with their sd_hashes and final mandates; the verifier accepts them", async () => {
    const s = V.chain_scenarios.find((x: any) => x.name === "autonomous_valid");
    const t = s.current_time;
    const read = readL2(V.autonomous.l2.serialized, t * 1000);
    if (!read.ok) throw new Error(read.refusal.message);
    expect(read.view.keyId).toBe(V.keys.agent.kid); // their cnf names it as cnf.jwk.kid
    expect(read.view.jwk).toEqual({ kty: "EC", crv: "P-256", x: V.keys.agent.public.x, y: V.keys.agent.public.y });
    const a = V.autonomous.l3a.inputs;
    const b = V.autonomous.l3b.inputs;
    const purchase = { amountCents: a.final_payment.payment_amount.amount, currency: "USD", payee: a.final_payment.payee, lineItems: [{ id: "BAB86345", quantity: 1 }] };
    const checked = checkPurchase(read.view, purchase);
    if (!checked.ok) throw new Error(checked.refusal.message);
    // The selective views are exactly the ones their agent hashes (spec §5.4).
    expect(selectiveView(read.view.baseJwt, checked.views.network)).toBe(V.autonomous.l3a.selective_presentation);
    expect(selectiveView(read.view.baseJwt, checked.views.merchant)).toBe(V.autonomous.l3b.selective_presentation);

    const agent = { keyId: V.keys.agent.kid, jwk: read.view.jwk, privateKey: createPrivateKey({ key: V.keys.agent.private, format: "jwk" }) };
    const pair = await issueL3(agent, read.view, checked.views, {
      network: { aud: a.aud, nonce: a.nonce },
      merchant: { aud: b.aud, nonce: b.nonce },
      iat: a.iat,
      amountCents: purchase.amountCents,
      currency: "USD",
      payee: purchase.payee,
      checkoutJwt: V.shared.checkout_jwt,
    });
    const l3a = decode(pair.l3a.split("~")[0]!.split(".")[1]!);
    const l3b = decode(pair.l3b.split("~")[0]!.split(".")[1]!);
    expect(l3a.sd_hash).toBe(V.autonomous.l3a.sd_hash);
    expect(l3b.sd_hash).toBe(V.autonomous.l3b.sd_hash);
    expect({ iat: l3a.iat, exp: l3a.exp }).toEqual({ iat: a.iat, exp: a.exp });
    const v = await verifyVi({ l1: s.l1, issuerKey: s.issuer_public, l2: s.l2, l2ForNetwork: pair.l2ForNetwork, l2ForMerchant: pair.l2ForMerchant, l3a: pair.l3a, l3b: pair.l3b, network: { aud: a.aud, nonce: a.nonce }, merchant: { aud: b.aud, nonce: b.nonce }, nowSeconds: t, constraints: "payment" });
    expect(v.l3a.header).toEqual({ alg: "ES256", typ: "kb-sd-jwt", kid: "agent-key-1" });
    expect(v.l3a.payment).toEqual(a.final_payment);
    expect(v.l3b.checkout).toEqual(b.final_checkout);
    expect(pair.transactionId).toBe(V.shared.checkout_hash);

    // Their L2 with the agent's cnf split between the mandates is malformed; theirs, expired, is refused.
    const split = readL2(V.chain_scenarios.find((x: any) => x.name === "autonomous_split_agent").l2, t * 1000);
    expect(split.ok || split.refusal).toMatchObject({ reason: "mandate_malformed" });
    expect(readL2(V.autonomous.l2.serialized, (t + 200_000) * 1000)).toMatchObject({ ok: false, refusal: { reason: "mandate_expired" } });
    // A purchase above their range, from a payee they do not allow, or of an item they do not list: refused.
    expect(checkPurchase(read.view, { ...purchase, amountCents: 40_001 })).toMatchObject({ ok: false, refusal: { reason: "mandate_amount_range" } });
    expect(checkPurchase(read.view, { ...purchase, payee: { id: "merchant-uuid-2", name: "Babolat", website: "https://babolat.com" } })).toMatchObject({ ok: false, refusal: { reason: "mandate_payee" } });
    expect(checkPurchase(read.view, { ...purchase, lineItems: [{ id: "BAB86345", quantity: 2 }] })).toMatchObject({ ok: false, refusal: { reason: "mandate_line_items" } });
    expect(checkPurchase(read.view, { ...purchase, currency: "EUR" })).toMatchObject({ ok: false, refusal: { reason: "mandate_currency" } });
  });
});

// ---------------------------------------------------------------------------------------------

const MERCHANT = { id: "merchant_1", name: "Demo Merchant", website: "https://demo-merchant.example" };
const OTHER = { id: "merchant_2", name: "Other Shop", website: "https://other-shop.example" };
const ITEMS = [{ id: "sku-1", title: "Gold Sneaker" }, { id: "sku-2", title: "Silver Sneaker" }];
const POLICY = { cardSpendingLimitCents: 100_000, cardPerChargeLimitCents: 50_000, allowedPayees: ["merchant_1", "merchant_2"] };
const NETWORK = { aud: "https://network.example/vi", nonce: "net-nonce-1" };

async function esKey(): Promise<{ privateJwk: JWK; publicJwk: JWK }> {
  const { privateKey, publicKey } = await generateKeyPair("ES256", { extractable: true });
  return { privateJwk: await exportJWK(privateKey), publicJwk: await exportJWK(publicKey) };
}

async function checkoutJwt(merchant = MERCHANT, total = 27_999): Promise<string> {
  const { privateKey } = await generateKeyPair("ES256");
  return new SignJWT({ merchant, items: [{ id: "sku-1", quantity: 1 }], total, currency: "USD" }).setProtectedHeader({ alg: "ES256", typ: "JWT" }).sign(privateKey);
}

/** The identity's payments key as the user's wallet reads it: from its JWKS. */
function paymentsKey(home: Home, id: Identity): { kid: string; jwk: JWK } {
  const k = home.json<{ keys: any[] }>(["keys", "export", id.id]).keys.find((x) => x.kty === "EC");
  return { kid: k.kid, jwk: { kty: "EC", crv: "P-256", x: k.x, y: k.y } };
}

describe.each(backends)(`Verifiable Intent L3 from a caller's L2 (%s store)${pgSkipNote}`, (backend) => {
  it("signs L3a/L3b with the payments key the L2's cnf names, verifiable from L1 down; refuses, audits and signs nothing for another key, a wider purchase, a malformed or expired L2, unknown constraints, items not allowed", LONG, async () => {
    const home = makeHome({}, { store: backend });
    const a = home.createIdentity({ name: "buyer", channels: "card", policy: POLICY });
    const ours = paymentsKey(home, a);
    const issuer = await esKey();
    const user = await esKey();
    const t = now();
    const l1 = await issueL1({ privateJwk: issuer.privateJwk, kid: "issuer-1" }, user.publicJwk, { iat: t - 60, cardId: "card-1" });
    const l2Of = (over: Partial<Parameters<typeof issueL2>[0]> = {}) =>
      issueL2({ user: { privateJwk: user.privateJwk, kid: "user-1" }, l1, cnf: { jwk: ours.jwk, kid: ours.kid }, merchants: [MERCHANT, OTHER], items: ITEMS, iat: t - 30, exp: t + 3600, ...over });
    const { client } = await stdioClient(home, a.token);
    const present = async (l2: string, over: Record<string, unknown> = {}) => {
      const r = await client.callTool({ name: "present_payment_mandate", arguments: { l2, ...NETWORK, amountCents: 27_999, payee: MERCHANT, checkoutJwt: await checkoutJwt(), items: ["sku-1"], ...over } });
      return { r, text: text(r), s: r.structuredContent as any };
    };
    try {
      const good = await l2Of();
      const cj = await checkoutJwt();
      const ok = await present(good.l2, { checkoutJwt: cj });
      expect(ok.r.isError, ok.text).toBeFalsy();
      // L3a / L3b answer as the closed payment / checkout mandates, beside the L2 view each binds.
      const vi = { l3a: ok.s.closed.payment, l3b: ok.s.closed.checkout, l2ForNetwork: ok.s.l2.network, l2ForMerchant: ok.s.l2.merchant };
      const merchantNonce = decode(vi.l3b.split(".")[1]).nonce;
      expect(merchantNonce).toMatch(/^[A-Za-z0-9_-]{22}$/); // random, 128 bits
      expect(vi.l2ForNetwork).toBe(`${good.base}~${good.payment}~${good.merchants[0]}~`);
      expect(vi.l2ForMerchant).toBe(`${good.base}~${good.checkout}~${good.items[0]}~`);
      const v = await verifyVi({ l1, issuerKey: issuer.publicJwk, l2: good.l2, l2ForNetwork: vi.l2ForNetwork, l2ForMerchant: vi.l2ForMerchant, l3a: vi.l3a, l3b: vi.l3b, network: NETWORK, merchant: { aud: MERCHANT.website, nonce: merchantNonce }, nowSeconds: now() });
      expect(v.l3a.header).toEqual({ alg: "ES256", typ: "kb-sd-jwt", kid: ours.kid });
      expect(v.l3a.payment).toEqual({ vct: "mandate.payment.1", transaction_id: sha(cj), payee: MERCHANT, payment_amount: { currency: "USD", amount: 27_999 }, payment_instrument: { type: "mastercard.srcDigitalCard", id: "card-1", description: "Mastercard **** 1234" } });
      expect(v.l3b.checkout).toEqual({ vct: "mandate.checkout.1", checkout_jwt: cj, checkout_hash: sha(cj), line_items: [{ id: "sku-1", quantity: 1 }] });
      expect(ok.s.transactionId).toBe(sha(cj));
      // Another network or nonce than the one asked for does not verify.
      await expect(verifyVi({ l2ForNetwork: vi.l2ForNetwork, l2ForMerchant: vi.l2ForMerchant, l3a: vi.l3a, l3b: vi.l3b, network: { ...NETWORK, nonce: "other" }, merchant: { aud: MERCHANT.website, nonce: merchantNonce }, nowSeconds: now() })).rejects.toThrow(/nonce/);

      // The reference implementation's spelling (the kid inside cnf.jwk) names the key as well.
      const jwkKid = await l2Of({ cnf: { jwk: { ...ours.jwk, kid: ours.kid } }, itemQuantity: 2 });
      const ok2 = await present(jwkKid.l2, { items: ["sku-2", "sku-2"] });
      expect(ok2.r.isError, ok2.text).toBeFalsy();
      const v2 = await verifyVi({ l1, issuerKey: issuer.publicJwk, l2ForNetwork: ok2.s.l2.network, l2ForMerchant: ok2.s.l2.merchant, l3a: ok2.s.closed.payment, l3b: ok2.s.closed.checkout, network: NETWORK, merchant: { aud: MERCHANT.website }, nowSeconds: now() });
      expect(v2.l3b.checkout.line_items).toEqual([{ id: "sku-2", quantity: 2 }]);

      // Refusals: nothing signed, each audited.
      const stranger = await esKey();
      const refusals: Array<[string, Promise<string> | string, Record<string, unknown>, RegExp]> = [
        ["another agent's key", (await l2Of({ cnf: { jwk: stranger.publicJwk, kid: ours.kid } })).l2, {}, /^denied: mandate_key: /],
        ["another kid", (await l2Of({ cnf: { jwk: ours.jwk, kid: "agent-key-1" } })).l2, {}, /^denied: mandate_key: /],
        ["above the L2's max", good.l2, { amountCents: 30_001 }, /^denied: mandate_amount_range: /],
        ["below the L2's min", good.l2, { amountCents: 99 }, /^denied: mandate_amount_range: /],
        ["another currency than the L2's", (await l2Of({ amount: { currency: "EUR" } })).l2, {}, /^denied: mandate_currency: /],
        ["a payee the L2's payment mandate does not allow", good.l2, { payee: OTHER, checkoutJwt: await checkoutJwt(OTHER) }, /^denied: mandate_payee: /],
        ["an item the L2 does not list", good.l2, { items: ["sku-9"] }, /^denied: mandate_line_items: /],
        ["more items than the L2 allows", good.l2, { items: ["sku-1", "sku-1"] }, /^denied: mandate_line_items: /],
        ["no items for an L2 that limits them", good.l2, { items: undefined }, /^denied: mandate_line_items: /],
        ["an expired L2", (await l2Of({ exp: t - 3600 })).l2, {}, /^denied: mandate_expired: /],
        ["an immediate-mode typ", (await l2Of({ typ: "kb-sd-jwt" })).l2, {}, /^denied: mandate_malformed: /],
        ["no payment.reference", (await l2Of({ reference: "omit" })).l2, {}, /^denied: mandate_malformed: /],
        ["a reference to another checkout", (await l2Of({ reference: "wrong" })).l2, {}, /^denied: mandate_malformed: /],
        ["cnf differing between the mandates", (await l2Of({ paymentCnf: { jwk: stranger.publicJwk, kid: ours.kid } })).l2, {}, /^denied: mandate_malformed: /],
        ["a private key in cnf", (await l2Of({ cnf: { jwk: { ...ours.jwk, d: stranger.privateJwk.d }, kid: ours.kid } })).l2, {}, /^denied: mandate_malformed: /],
        ["the payment mandate's disclosure dropped", good.l2.replace(`${good.payment}~`, ""), {}, /^denied: mandate_malformed: /],
        ["an unreferenced disclosure added", `${good.l2}${good.items[0]!.slice(0, -2)}AA~`, {}, /^denied: mandate_malformed: /],
        ["a disclosure repeated", `${good.l2}${good.checkout}~`, {}, /^denied: mandate_malformed: /],
        ["a constraint sigil cannot check", (await l2Of({ extraPaymentConstraints: [{ type: "mandate.payment.velocity", max: 3 }] })).l2, {}, /^denied: mandate_constraint_unknown: /],
        ["a payee outside the identity's policy", (await l2Of({ merchants: [{ id: "merchant_9", name: "Nine", website: "https://nine.example" }] })).l2, { payee: { id: "merchant_9", name: "Nine", website: "https://nine.example" } }, /^denied: payee_not_allowed: /],
      ];
      for (const [what, l2, over, re] of refusals) {
        const r = await present(await l2, over);
        expect(r.r.isError, what).toBe(true);
        expect(r.text, what).toMatch(re);
        expect(r.s?.closed, what).toBeUndefined();
      }
      // Bad combinations never reach policy.
      expect((await present(good.l2, { checkoutJwt: undefined })).text).toMatch(/^denied: invalid_arguments: /);
      expect((await present(good.l2, { mandateId: "mnd_00000000000000000000" })).text).toMatch(/^denied: invalid_arguments: /);
      expect((await present(good.l2, { payee: { id: MERCHANT.id, name: MERCHANT.name } })).text).toMatch(/^denied: invalid_arguments: /);

      const log = home.auditLog(a.id);
      const mine = log.filter((e) => e.tool === "present_payment_mandate");
      // Exactly the two accepted presentations signed (ok results), each recording what it handed out.
      const oks = mine.filter((e) => e.phase === "result" && e.decision === "ok");
      expect(oks).toHaveLength(2);
      expect(oks[0]).toMatchObject({ result: { l2Hash: sha(good.l2), l3aHash: sha(vi.l3a), l3bHash: sha(vi.l3b), transactionId: sha(cj), paymentKeyId: ours.kid, amountCents: 27_999 } });
      expect(mine.find((e) => e.phase === "intent")).toMatchObject({ decision: "allow", amountCents: 27_999, args: { l2Hash: sha(good.l2), aud: NETWORK.aud, nonce: NETWORK.nonce } });
      expect(JSON.stringify(mine)).not.toContain(good.base); // the L2 itself stays out of the log
      // The key refusals come after the intent (the key is read when signing): failed results, amounts released.
      expect(mine.filter((e) => e.phase === "result" && e.decision === "failed").map((e) => e.reason)).toEqual(["mandate_key", "mandate_key"]);
      const denied = mine.filter((e) => e.decision === "deny").map((e) => e.reason);
      expect(denied).toEqual(expect.arrayContaining(["mandate_amount_range", "mandate_currency", "mandate_payee", "mandate_line_items", "mandate_expired", "mandate_malformed", "mandate_constraint_unknown", "payee_not_allowed", "invalid_arguments"]));
      expect(denied.length + 2).toBe(refusals.length + 3);
      expect(home.json<{ ok: boolean }>(["audit", "verify"]).ok).toBe(true);
    } finally {
      await client.close();
    }
  });
});
