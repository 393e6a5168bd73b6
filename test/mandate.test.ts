/**
 * Payment mandates end to end (SPEC §13, README "Payment mandates"): the SDK's MCP Client against
 * the built server; every mandate sigil hands out is checked by independent code
 * (test/support/ap2.ts: `@sd-jwt/core` + `@sd-jwt/crypto-nodejs` + `jose`) against the provider key
 * as a merchant fetches it from the key directory — signatures, `sd_hash` links, constraints —
 * and AP2's own documented example chain goes through the same verifier. Refusals (over the
 * amount, another payee, a second purchase, over the budget, policy limits) are audited and sign
 * nothing; two presentations racing for a one-purchase mandate: one wins.
 */
import { afterAll, describe, expect, it } from "vitest";
import { CompactSign, SignJWT, generateKeyPair } from "jose";
import { createHash } from "node:crypto";
import { backends, pgQuery, pgSkipNote } from "./support/backends.js";
import { type Home, type Identity, cleanupHomes, cliAsync, makeHome, stdioClient, text, until } from "./support/home.js";
import { paymentViolations, verifyChain } from "./support/ap2.js";

afterAll(cleanupHomes);

const LONG = { timeout: 180_000 };
const PAYEE = { id: "merchant_1", name: "Demo Merchant", website: "https://demo-merchant.example" };
const POLICY = { cardSpendingLimitCents: 50_000, cardPerChargeLimitCents: 20_000, allowedPayees: ["merchant_1", "merchant_2"] };
const now = (): number => Math.floor(Date.now() / 1000);
const sha = (s: string): string => createHash("sha256").update(s, "ascii").digest("base64url");

/** The tenant's provider key as a merchant gets it: from the key directory. */
function providerKey(home: Home, tenant = "default"): Record<string, unknown> {
  const dir = home.json<any>(["keys", "directory"]);
  return dir.tenants.find((t: any) => t.tenant === tenant).providerKeys[0];
}

async function merchantCheckout(payee = PAYEE, total = 19_900): Promise<string> {
  const { privateKey } = await generateKeyPair("ES256");
  return new SignJWT({ order_id: "order-1", merchant: payee, line_items: [{ id: "line_1", product: { id: "sku-1", title: "Gold Sneaker", price: total }, quantity: 1 }], total_price: total, currency: "USD" })
    .setProtectedHeader({ alg: "ES256", typ: "JWT" })
    .sign(privateKey);
}

async function agent(home: Home, id: Identity) {
  const { client } = await stdioClient(home, id.token);
  const call = async (name: string, args: Record<string, unknown>) => {
    const r = await client.callTool({ name, arguments: args });
    return { r, text: text(r), s: r.structuredContent as any };
  };
  return { client, call };
}

describe.each(backends)(`payment mandates (%s store)${pgSkipNote}`, (backend) => {
  it("issues an AP2 open pair rooted in the tenant's provider key and closes it for one purchase; an outside verifier accepts both chains", LONG, async () => {
    const home = makeHome({}, { store: backend });
    const a = home.createIdentity({ name: "buyer", channels: "card", policy: POLICY });
    const root = providerKey(home);
    const { call, client } = await agent(home, a);
    try {
      const issued = await call("create_payment_mandate", { payee: PAYEE, currency: "USD", maxAmountCents: 20_000, lineItems: [{ id: "sku-1", title: "Gold Sneaker" }] });
      expect(issued.r.isError, issued.text).toBeFalsy();
      const { mandateId, mandate, constraints, providerKeyId, paymentKeyId, receipt } = issued.s;
      expect(mandateId).toMatch(/^mnd_[0-9a-f]{20}$/);
      expect(providerKeyId).toBe(root.kid);
      expect(constraints).toMatchObject({ currency: "USD", maxAmountCents: 20_000, payeeId: "merchant_1" });
      const t = now();
      // The open mandates, as a verifier holding only the directory's provider key sees them.
      const openPay = await verifyChain(mandate.payment, { rootKey: root, nowSeconds: t });
      const openChk = await verifyChain(mandate.checkout, { rootKey: root, nowSeconds: t });
      const pay = openPay.hops[0]!.mandate;
      expect(pay.vct).toBe("mandate.payment.open.1");
      expect(openPay.hops[0]!.header).toMatchObject({ alg: "ES256", kid: root.kid });
      expect(pay.constraints).toEqual([
        { type: "payment.amount_range", currency: "USD", max: 20_000, min: 0 },
        { type: "payment.allowed_payees", allowed: [PAYEE] },
        { type: "payment.reference", conditional_transaction_id: sha(mandate.checkout) },
      ]);
      expect((pay.exp as number) - (pay.iat as number)).toBeLessThanOrEqual(86_400);
      const cnf = (pay.cnf as any).jwk;
      const jwks = home.json<{ keys: any[] }>(["keys", "export", a.id]).keys.filter((k) => k.kty === "EC");
      expect(jwks.map((k) => [k.x, k.y, k.kid])).toEqual([[cnf.x, cnf.y, paymentKeyId]]);
      const chk = openChk.hops[0]!.mandate;
      expect(chk.vct).toBe("mandate.checkout.open.1");
      expect(chk.constraints).toEqual([
        { type: "checkout.line_items", items: [{ id: "line_1", acceptable_items: [{ id: "sku-1", title: "Gold Sneaker" }], quantity: 1 }] },
        { type: "checkout.allowed_merchants", allowed: [PAYEE] },
      ]);
      expect(chk.cnf).toEqual(pay.cnf);

      // Close it for one purchase: a merchant's checkout JWT, the verifier's aud and nonce.
      const checkoutJwt = await merchantCheckout();
      const presented = await call("present_payment_mandate", { mandateId, aud: "credential-provider", nonce: "n-123456", amountCents: 19_900, payee: PAYEE, checkoutJwt });
      expect(presented.r.isError, presented.text).toBeFalsy();
      const { closed, transactionId } = presented.s;
      expect(transactionId).toBe(sha(checkoutJwt));
      const p = await verifyChain(closed.payment, { rootKey: root, aud: "credential-provider", nonce: "n-123456", nowSeconds: now() });
      expect(p.hops).toHaveLength(2);
      expect(p.hops[1]!.claims.sd_hash).toBe(sha(mandate.payment)); // bound to the open mandate exactly as issued
      expect(p.hops[1]!.mandate).toMatchObject({ vct: "mandate.payment.1", transaction_id: sha(checkoutJwt), payee: PAYEE, payment_amount: { amount: 19_900, currency: "USD" }, payment_instrument: { type: "card" } });
      expect(paymentViolations(p.hops[0]!.mandate, p.hops[1]!.mandate, { openCheckoutHash: sha(mandate.checkout) })).toEqual([]);
      const c = await verifyChain(closed.checkout, { rootKey: root, aud: "credential-provider", nonce: "n-123456", nowSeconds: now() });
      expect(c.hops[1]!.mandate).toMatchObject({ vct: "mandate.checkout.1", checkout_jwt: checkoutJwt, checkout_hash: sha(checkoutJwt) });
      expect(c.hashes[0]).toBe(sha(mandate.checkout)); // the closed checkout is bound to the open one the payment references
      // A verifier expecting another aud or nonce refuses it.
      await expect(verifyChain(closed.payment, { rootKey: root, aud: "someone-else", nonce: "n-123456", nowSeconds: now() })).rejects.toThrow(/aud/);
      await expect(verifyChain(closed.payment, { rootKey: root, aud: "credential-provider", nonce: "other", nowSeconds: now() })).rejects.toThrow(/nonce/);

      // Each is an audit entry with the hashes of what was handed out, and the receipts name them.
      const log = home.auditLog(a.id);
      const issuedEntry = log.find((e) => e.tool === "create_payment_mandate" && e.phase === "result");
      expect(issuedEntry).toMatchObject({ decision: "ok", seq: receipt.seq, result: { mandateId, checkoutHash: sha(mandate.checkout), paymentHash: sha(mandate.payment) } });
      const presentedEntry = log.find((e) => e.tool === "present_payment_mandate" && e.phase === "result");
      expect(presentedEntry).toMatchObject({ decision: "ok", seq: presented.s.receipt.seq, result: { paymentChainHash: sha(closed.payment), checkoutChainHash: sha(closed.checkout) } });
      // The presentation reserved its amount like a charge.
      expect(log.find((e) => e.tool === "present_payment_mandate" && e.phase === "intent")).toMatchObject({ decision: "allow", amountCents: 19_900 });
    } finally {
      await client.close();
    }
  });

  it("refuses, audits and signs nothing for: more than the mandate allows, another payee, a second purchase, over the budget, after expiry of policy room", LONG, async () => {
    const home = makeHome({}, { store: backend });
    const a = home.createIdentity({ name: "buyer", channels: "card", policy: POLICY });
    const { call, client } = await agent(home, a);
    try {
      const one = (await call("create_payment_mandate", { payee: PAYEE, currency: "USD", maxAmountCents: 5000 })).s;
      const present = (mandateId: string, over: Record<string, unknown> = {}) =>
        call("present_payment_mandate", { mandateId, aud: "cp", nonce: `n-${Math.random()}`, amountCents: 4000, payee: PAYEE, ...over });
      expect((await present(one.mandateId, { amountCents: 5001 })).text).toMatch(/^denied: mandate_amount_range: /);
      expect((await present(one.mandateId, { payee: { ...PAYEE, id: "merchant_2" } })).text).toMatch(/^denied: mandate_payee: /);
      // Same id, another name: the token's payee is checked too (refused after the intent: failed, released).
      expect((await present(one.mandateId, { payee: { ...PAYEE, name: "Evil Merchant" } })).text).toMatch(/^denied: mandate_payee: /);
      expect((await present("mnd_00000000000000000000")).text).toMatch(/^denied: mandate_not_found: /);
      const first = await present(one.mandateId);
      expect(first.r.isError, first.text).toBeFalsy();
      expect((await present(one.mandateId)).text).toMatch(/^denied: mandate_used: /);

      // A budget: several purchases, never the same one twice, never past the budget.
      const multi = (await call("create_payment_mandate", { payee: PAYEE, currency: "USD", maxAmountCents: 3000, budgetCents: 7000 })).s;
      expect(multi.constraints).toMatchObject({ budgetCents: 7000 });
      const checkoutA = await merchantCheckout(PAYEE, 3000);
      expect((await present(multi.mandateId, { amountCents: 3000, checkoutJwt: checkoutA })).r.isError).toBeFalsy();
      expect((await present(multi.mandateId, { amountCents: 1000, checkoutJwt: checkoutA })).text).toMatch(/^denied: mandate_overlap: /);
      const second = await present(multi.mandateId, { amountCents: 3000, checkoutJwt: await merchantCheckout(PAYEE, 3000) });
      expect(second.r.isError, second.text).toBeFalsy();
      expect((await present(multi.mandateId, { amountCents: 1001 })).text).toMatch(/^denied: mandate_budget: /);
      expect((await present(multi.mandateId, { amountCents: 1000 })).r.isError).toBeFalsy();
      // The closed mandate meets the open one's budget as an outside verifier counts it.
      const root = providerKey(home);
      const v = await verifyChain(second.s.closed.payment, { rootKey: root, nowSeconds: now() });
      expect(paymentViolations(v.hops[0]!.mandate, v.hops[1]!.mandate, { openCheckoutHash: sha(multi.mandate.checkout), spentBefore: 3000 })).toEqual([]);
      expect(paymentViolations(v.hops[0]!.mandate, v.hops[1]!.mandate, { openCheckoutHash: sha(multi.mandate.checkout), spentBefore: 4001 })).toEqual(["over budget"]);

      // Issuance beyond the policy is refused, never narrowed.
      expect((await call("create_payment_mandate", { payee: PAYEE, currency: "USD", maxAmountCents: 20_001 })).text).toMatch(/^denied: per_charge_limit: /);
      expect((await call("create_payment_mandate", { payee: { ...PAYEE, id: "merchant_9" }, currency: "USD" })).text).toMatch(/^denied: payee_not_allowed: /);
      expect((await call("create_payment_mandate", { payee: PAYEE, currency: "EUR" })).text).toMatch(/^denied: currency_not_allowed: /);
      expect((await call("create_payment_mandate", { payee: PAYEE, currency: "USD", expiresAt: new Date(Date.now() + 25 * 3600_000).toISOString() })).text).toMatch(/^denied: invalid_arguments: /);
      // 11,000 of the 50,000 are reserved by presentations: a budget above the rest is refused.
      expect((await call("create_payment_mandate", { payee: PAYEE, currency: "USD", maxAmountCents: 1000, budgetCents: 39_001 })).text).toMatch(/^denied: spending_limit: /);

      const log = home.auditLog(a.id);
      const denied = log.filter((e) => e.decision === "deny").map((e) => [e.tool, e.reason]);
      expect(denied).toEqual(expect.arrayContaining([
        ["present_payment_mandate", "mandate_amount_range"],
        ["present_payment_mandate", "mandate_payee"],
        ["present_payment_mandate", "mandate_not_found"],
        ["present_payment_mandate", "mandate_used"],
        ["present_payment_mandate", "mandate_overlap"],
        ["present_payment_mandate", "mandate_budget"],
        ["create_payment_mandate", "per_charge_limit"],
        ["create_payment_mandate", "payee_not_allowed"],
        ["create_payment_mandate", "spending_limit"],
      ]));
      // The name mismatch was caught after the intent: a failed result, its reservation released.
      expect(log.filter((e) => e.tool === "present_payment_mandate" && e.phase === "result" && e.decision === "failed").map((e) => e.reason)).toEqual(["mandate_payee"]);
      // Exactly the presentations that passed signed something (ok results).
      expect(log.filter((e) => e.tool === "present_payment_mandate" && e.phase === "result" && e.decision === "ok")).toHaveLength(4);
    } finally {
      await client.close();
    }
  });

  it("two presentations racing for a one-purchase mandate: exactly one is signed, in any process", LONG, async () => {
    const home = makeHome({}, { store: backend });
    const a = home.createIdentity({ name: "buyer", channels: "card", policy: POLICY });
    const first = await agent(home, a);
    const second = await agent(home, a);
    try {
      const m = (await first.call("create_payment_mandate", { payee: PAYEE, currency: "USD", maxAmountCents: 5000 })).s;
      const results = await Promise.all(
        [first, second, first, second].map((x, i) => x.call("present_payment_mandate", { mandateId: m.mandateId, aud: "cp", nonce: `race-${i}`, amountCents: 4000, payee: PAYEE })),
      );
      const ok = results.filter((r) => !r.r.isError);
      expect(ok).toHaveLength(1);
      for (const r of results.filter((x) => x.r.isError)) expect(r.text).toMatch(/^denied: mandate_used: /);
    } finally {
      await first.client.close();
      await second.client.close();
    }
  });

  it("a stored mandate changed without the log is refused; merchant-category rules stay enforced inside sigil", LONG, async () => {
    const home = makeHome({}, { store: backend });
    home.merchants({ "Demo Merchant": "5734", "Casino": "7995" });
    const a = home.createIdentity({ name: "buyer", channels: "card", policy: { ...POLICY, blockedMerchantCategories: ["7995"] } });
    const { call, client } = await agent(home, a);
    try {
      expect((await call("create_payment_mandate", { payee: { id: "merchant_2", name: "Casino" }, currency: "USD" })).text).toMatch(/^denied: merchant_category_blocked: /);
      const m1 = (await call("create_payment_mandate", { payee: PAYEE, currency: "USD", maxAmountCents: 5000 })).s;
      const m2 = (await call("create_payment_mandate", { payee: PAYEE, currency: "USD", maxAmountCents: 9000 })).s;
      // A store writer puts m2's (validly signed, wider) tokens under m1's id.
      const raw = JSON.stringify({ id: m1.mandateId, identityId: a.id, tenantId: "default", createdAt: new Date().toISOString(), checkout: m2.mandate.checkout, payment: m2.mandate.payment });
      if (backend === "file") {
        const { writeFileSync } = await import("node:fs");
        const path = await import("node:path");
        writeFileSync(path.join(home.env.SIGIL_HOME!, "mandates", `${m1.mandateId}.json`), raw);
      } else {
        await pgQuery(home.env.SIGIL_STORE_URL!, "UPDATE sigil_payment_mandates SET record = $2 WHERE id = $1", [m1.mandateId, raw]);
      }
      const r = await call("present_payment_mandate", { mandateId: m1.mandateId, aud: "cp", nonce: "n1", amountCents: 4000, payee: PAYEE });
      expect(r.text).toMatch(/^denied: mandate_tampered: /);
    } finally {
      await client.close();
    }
  });
});

describe("payment mandates: disclosures and AP2's own example", () => {
  it("tampering with any disclosure, or dropping or adding one, fails verification", LONG, async () => {
    const home = makeHome();
    const a = home.createIdentity({ name: "buyer", channels: "card", policy: POLICY });
    const root = providerKey(home);
    const { call, client } = await agent(home, a);
    let chainText: string;
    try {
      const m = (await call("create_payment_mandate", { payee: PAYEE, currency: "USD", maxAmountCents: 5000, lineItems: [{ id: "sku-1", title: "Gold Sneaker" }] })).s;
      const p = await call("present_payment_mandate", { mandateId: m.mandateId, aud: "cp", nonce: "n1", amountCents: 4000, payee: PAYEE, checkoutJwt: await merchantCheckout() });
      expect(p.r.isError, p.text).toBeFalsy();
      chainText = p.s.closed.checkout;
      await expect(verifyChain(chainText, { rootKey: root, aud: "cp", nonce: "n1", nowSeconds: now() })).resolves.toBeDefined();
    } finally {
      await client.close();
    }
    // Every disclosure of both hops, one at a time: a byte changed inside it, dropped, duplicated.
    const [openPart, leafPart] = chainText.split("~~") as [string, string];
    const hops = [openPart.split("~"), leafPart.split("~")];
    const rebuild = (h: string[][]): string => `${h[0]!.join("~")}~~${h[1]!.join("~")}`;
    let cases = 0;
    for (let hop = 0; hop < 2; hop++) {
      for (let i = 1; i < hops[hop]!.length; i++) {
        if (hops[hop]![i] === "") continue;
        const decoded = JSON.parse(Buffer.from(hops[hop]![i]!, "base64url").toString("utf8"));
        const edited = JSON.stringify(decoded).replace(/"([^"]{2,})"(?=[,\]}])/, '"$1x"'); // one string value changed
        const variants = [
          hops.map((h, j) => (j === hop ? h.map((d, k) => (k === i ? Buffer.from(edited).toString("base64url") : d)) : h)),
          hops.map((h, j) => (j === hop ? h.filter((_, k) => k !== i) : h)),
          hops.map((h, j) => (j === hop ? [...h.slice(0, i), h[i]!, ...h.slice(i)] : h)),
        ];
        for (const v of variants) {
          cases++;
          await expect(verifyChain(rebuild(v), { rootKey: root, aud: "cp", nonce: "n1", nowSeconds: now() })).rejects.toThrow();
        }
      }
    }
    expect(cases).toBeGreaterThanOrEqual(15); // 4 open disclosures, 2 closed, 3 ways each
  });

  it("AP2's documented example chain (docs/ap2/payment_mandate.md) parses and verifies through the same verifier", async () => {
    // The open payment mandate chained with its closed mandate, as encoded in AP2 v0.2's documentation
    // (google-agentic-commerce/AP2, Apache-2.0). Its provider key was never published, so the root's
    // signature is unchecked; the closed hop verifies under the open mandate's cnf.jwk and sd_hash.
    const t = 1777342370;
    const v = await verifyChain(AP2_DOC_PAYMENT_CHAIN, { rootKey: "unchecked", aud: "credential-provider", nonce: "a8b7c6d5e4f3a2b1c0d9e8f7a6b5c4d3", nowSeconds: t });
    expect(v.hops[1]!.claims.sd_hash).toBe("uixoHemmfrrCSbPREo9j-ziLuMkqExsPeWrwA-PK0Ck");
    expect(v.hashes[0]).toBe("uixoHemmfrrCSbPREo9j-ziLuMkqExsPeWrwA-PK0Ck");
    expect(v.hops[1]!.mandate).toMatchObject({ vct: "mandate.payment.1", payment_amount: { amount: 19900, currency: "USD" } });
    expect(paymentViolations(v.hops[0]!.mandate, v.hops[1]!.mandate, { openCheckoutHash: "FzLoxbbtgQGYZxoSM2NJYJtkFTSsdfUBoVEQ12k7JN8" })).toEqual([]);
    // The closed hop re-signed by any other key does not verify: the chain is really checked.
    const { privateKey } = await generateKeyPair("ES256");
    const [open, leaf] = AP2_DOC_PAYMENT_CHAIN.split("~~") as [string, string];
    const [leafJwt, ...leafRest] = leaf.split("~");
    const resigned = await new CompactSign(Buffer.from(leafJwt!.split(".")[1]!, "base64url")).setProtectedHeader({ alg: "ES256", typ: "kb+sd-jwt" }).sign(privateKey);
    const forged = `${open}~~${[resigned, ...leafRest].join("~")}`;
    await expect(verifyChain(forged, { rootKey: "unchecked", aud: "credential-provider", nonce: "a8b7c6d5e4f3a2b1c0d9e8f7a6b5c4d3", nowSeconds: t })).rejects.toThrow();
    // The wrong nonce is refused.
    await expect(verifyChain(AP2_DOC_PAYMENT_CHAIN, { rootKey: "unchecked", aud: "credential-provider", nonce: "x", nowSeconds: t })).rejects.toThrow(/nonce/);
  });
});

const AP2_DOC_PAYMENT_CHAIN =
  "eyJhbGciOiAiRVMyNTYiLCAidHlwIjogImV4YW1wbGUrc2Qtand0IiwgImtpZCI6ICJhZ2VudC1wcm92aWRlci1rZXktMSJ9.eyJkZWxlZ2F0ZV9wYXlsb2FkIjogW3siLi4uIjogIjNZUnRaLWxCTmhJX1loZ2dTaHJkSGhyU3VEUFNwd012SjNWV2pVbmhEUU0ifV0sICJfc2RfYWxnIjogInNoYS0yNTYifQ.ZQ_5x2hYLusuUNAA2OJloeS2w3fxZRCsSvcU-wg9fK7nlMmsbpK6EPlntD8oHq5waegxsLmSL51V5hfyaQViMg~WyJzOVdQdDJVNEdhcGNKc255RWI2YmpnIiwgeyJpZCI6ICJtZXJjaGFudF8xIiwgIm5hbWUiOiAiRGVtbyBNZXJjaGFudCIsICJ3ZWJzaXRlIjogImh0dHBzOi8vZGVtby1tZXJjaGFudC5leGFtcGxlIn1d~WyJadEtTNUZTcklBWTZIbEdCNEhvN21nIiwgeyJ2Y3QiOiAibWFuZGF0ZS5wYXltZW50Lm9wZW4uMSIsICJjb25zdHJhaW50cyI6IFt7InR5cGUiOiAicGF5bWVudC5hbW91bnRfcmFuZ2UiLCAiY3VycmVuY3kiOiAiVVNEIiwgIm1heCI6IDIwMDAwLCAibWluIjogMH0sIHsidHlwZSI6ICJwYXltZW50LmFsbG93ZWRfcGF5ZWVzIiwgImFsbG93ZWQiOiBbeyIuLi4iOiAib0VIN2kxZ3liLXpuNmF3d2p5NTdMdnp4a1FEZkQtOHR2bEMyWHVJa2dPQSJ9XX0sIHsidHlwZSI6ICJwYXltZW50LnJlZmVyZW5jZSIsICJjb25kaXRpb25hbF90cmFuc2FjdGlvbl9pZCI6ICJGekxveGJidGdRR1laeG9TTTJOSllKdGtGVFNzZGZVQm9WRVExMms3Sk44In1dLCAiY25mIjogeyJqd2siOiB7ImNydiI6ICJQLTI1NiIsICJrdHkiOiAiRUMiLCAieCI6ICJRcFN5eFBRSHkzOHhja3l2RHI1NGdaM1Q0MnpqOWlMdFY0a295YjVVMjdjIiwgInkiOiAiMzdITGQ3SkppbnhqSkluOEo3SGlqc3NvZWNCbGZoZFctZ1VMN2ZlSTlsdyJ9fSwgImlhdCI6IDE3NzczNDIzNTcsICJleHAiOiAxNzc3MzQ1OTU3fV0~~eyJhbGciOiAiRVMyNTYiLCAidHlwIjogImtiK3NkLWp3dCJ9.eyJkZWxlZ2F0ZV9wYXlsb2FkIjogW3siLi4uIjogIkcyRHVVNklqeURrRC05SXRTdGRzVW80OEM1dUpxRHMxRTlIZjVHVDNUZ00ifV0sICJpYXQiOiAxNzc3MzQyMzcwLCAiYXVkIjogImNyZWRlbnRpYWwtcHJvdmlkZXIiLCAibm9uY2UiOiAiYThiN2M2ZDVlNGYzYTJiMWMwZDllOGY3YTZiNWM0ZDMiLCAic2RfaGFzaCI6ICJ1aXhvSGVtbWZyckNTYlBSRW85ai16aUx1TWtxRXhzUGVXcndBLVBLMENrIiwgIl9zZF9hbGciOiAic2hhLTI1NiJ9.TgI6w9zeL993uzAYE9fnAJXjnrpliDY5DpDKTSQoioH3msapVIz0Ex23ncQXwmsSmT3xOqkSpigQD1EYKck-dQ~WyJmVzZNY0JKSW1xT0R1aFFscEk0SWR3IiwgeyJ2Y3QiOiAibWFuZGF0ZS5wYXltZW50LjEiLCAidHJhbnNhY3Rpb25faWQiOiAiTml2V2h1cWZ6Y3ZaTmFwdklFSjItM3RzZFFMa2l1SWN5ZTJnNDZXVmdYOCIsICJwYXllZSI6IHsiaWQiOiAibWVyY2hhbnRfMSIsICJuYW1lIjogIkRlbW8gTWVyY2hhbnQiLCAid2Vic2l0ZSI6ICJodHRwczovL2RlbW8tbWVyY2hhbnQuZXhhbXBsZSJ9LCAicGF5bWVudF9hbW91bnQiOiB7ImFtb3VudCI6IDE5OTAwLCAiY3VycmVuY3kiOiAiVVNEIn0sICJwYXltZW50X2luc3RydW1lbnQiOiB7ImlkIjogInN0dWIiLCAidHlwZSI6ICJjYXJkIiwgImRlc2NyaXB0aW9uIjogIkNhcmQgXHUyMDIyXHUyMDIyXHUyMDIyNDI0MiJ9fV0~";

void until;
void cliAsync;
