/**
 * Payment mandates above the identity's approval threshold go through the existing approval flow
 * (README "Approvals"): the SDK's MCP Client against the built server, a named approver deciding
 * from another process (`sigil approvals approve|deny`), on both stores.
 *
 * - create_payment_mandate with a max above the threshold waits: while it waits nothing is signed
 *   or stored; approved → issued (its receipt names the approval, an outside verifier accepts it);
 *   denied or timed out → nothing signed or stored, the refusal audited.
 * - A Verifiable Intent presentation (present_payment_mandate with an L2) above the threshold
 *   waits as well (sigil cannot verify the user's L2 signature: it is a charge like any other).
 */
import { afterAll, describe, expect, it } from "vitest";
import { readdirSync } from "node:fs";
import path from "node:path";
import { exportJWK, generateKeyPair, SignJWT } from "jose";
import { backends, pgQuery, pgSkipNote } from "./support/backends.js";
import { type Home, type Identity, cleanupHomes, cliAsync, makeHome, stdioClient, text, until } from "./support/home.js";
import { verifyChain } from "./support/ap2.js";
import { issueL1, issueL2, verifyVi } from "./support/vi.js";

afterAll(cleanupHomes);

const LONG = { timeout: 240_000 };
const PAYEE = { id: "merchant_1", name: "Demo Merchant", website: "https://demo-merchant.example" };
const POLICY = { cardSpendingLimitCents: 100_000, cardPerChargeLimitCents: 50_000, approval: { aboveCents: 5000, timeoutSeconds: 600 } };
const now = (): number => Math.floor(Date.now() / 1000);

/** How many issued mandates the store holds. */
async function storedMandates(home: Home): Promise<number> {
  if (home.store === "postgres") return (await pgQuery(home.env.SIGIL_STORE_URL!, "SELECT count(*)::int AS n FROM sigil_payment_mandates"))[0].n;
  try {
    return readdirSync(path.join(home.env.SIGIL_HOME!, "mandates")).filter((f) => f.endsWith(".json")).length;
  } catch {
    return 0;
  }
}

async function pendingApproval(home: Home, approverToken: string): Promise<{ id: string }> {
  return until(async () => {
    const r = await cliAsync(home, ["approvals", "list", "--pending", "--json"], { SIGIL_APPROVER_TOKEN: approverToken });
    const list = r.code === 0 ? JSON.parse(r.stdout) : [];
    return list.length === 1 ? list[0] : undefined;
  }, 60_000, "the pending approval");
}

/** Starts a call, waits until its approval is pending, checks nothing was signed meanwhile, then decides. */
async function decideWhileWaiting(home: Home, id: Identity, approverToken: string, call: () => Promise<any>, verb: "approve" | "deny", during: () => Promise<void>) {
  const outcome = call();
  const pending = await pendingApproval(home, approverToken);
  await during();
  // Still waiting: no result for this call in the log yet.
  const log = home.auditLog(id.id);
  expect(log.at(-1)).toMatchObject({ tool: "approval_requested" });
  const d = await cliAsync(home, ["approvals", verb, pending.id, "--json"], { SIGIL_APPROVER_TOKEN: approverToken });
  expect(d.code, d.stderr).toBe(0);
  return { r: await outcome, approvalId: pending.id };
}

describe.each(backends)(`payment mandates above the approval threshold (%s store)${pgSkipNote}`, (backend) => {
  it("create_payment_mandate waits for a named approver: nothing is signed while it waits; approve → issued; deny or timeout → nothing signed, audited", LONG, async () => {
    const home = makeHome({}, { store: backend });
    const ann = home.addApprover({ name: "Ann" });
    const a = home.createIdentity({ name: "buyer", channels: "card", policy: POLICY });
    const { client } = await stdioClient(home, a.token);
    const create = (max: number) => client.callTool({ name: "create_payment_mandate", arguments: { payee: PAYEE, currency: "USD", maxAmountCents: max } }, undefined, { timeout: 200_000, resetTimeoutOnProgress: true });
    try {
      // At the threshold: no question.
      const small = await create(5000);
      expect(small.isError, text(small)).toBeFalsy();
      expect(await storedMandates(home)).toBe(1);

      // Above it, approved: signed only after the decision.
      const yes = await decideWhileWaiting(home, a, ann.token, () => create(20_000), "approve", async () => {
        expect(await storedMandates(home)).toBe(1);
      });
      expect(yes.r.isError, text(yes.r)).toBeFalsy();
      const s = yes.r.structuredContent as any;
      expect(s.receipt.approvalId).toBe(yes.approvalId);
      expect(s.constraints.maxAmountCents).toBe(20_000);
      const root = home.json<any>(["keys", "directory"]).tenants.find((t: any) => t.tenant === "default").providerKeys[0];
      const v = await verifyChain(s.mandate.payment, { rootKey: root, nowSeconds: now() });
      expect(v.hops[0]!.mandate.constraints).toContainEqual({ type: "payment.amount_range", currency: "USD", max: 20_000, min: 0 });
      expect(await storedMandates(home)).toBe(2);

      // Denied: nothing signed or stored; the refusal names the approval.
      const no = await decideWhileWaiting(home, a, ann.token, () => create(30_000), "deny", async () => undefined);
      expect(no.r.isError).toBe(true);
      expect(text(no.r)).toMatch(/^denied: approval_denied: /);
      expect(await storedMandates(home)).toBe(2);

      const log = home.auditLog(a.id);
      const mine = log.filter((e) => e.tool === "create_payment_mandate");
      expect(mine.filter((e) => e.phase === "result" && e.decision === "ok")).toHaveLength(2);
      expect(mine.find((e) => e.phase === "intent" && e.approvalId === yes.approvalId)).toMatchObject({ decision: "allow" });
      expect(mine.find((e) => e.decision === "deny" && e.approvalId === no.approvalId)).toMatchObject({ reason: "approval_denied" });
      expect(log.filter((e) => e.tool === "approval_decided").map((e) => e.decision)).toEqual(["approved", "denied"]);
      expect(home.json<{ ok: boolean }>(["audit", "verify"]).ok).toBe(true);
    } finally {
      await client.close();
    }
  });

  it("no decision before the approval's timeout: nothing signed or stored, audited as approval_timeout", LONG, async () => {
    const home = makeHome({}, { store: backend });
    home.addApprover({ name: "Ann" });
    const a = home.createIdentity({ name: "buyer", channels: "card", policy: { ...POLICY, approval: { aboveCents: 5000, timeoutSeconds: 2 } } });
    const { client } = await stdioClient(home, a.token);
    try {
      const r = await client.callTool({ name: "create_payment_mandate", arguments: { payee: PAYEE, currency: "USD", maxAmountCents: 20_000 } }, undefined, { timeout: 120_000 });
      expect(r.isError).toBe(true);
      expect(text(r)).toMatch(/^denied: approval_timeout: /);
      expect(await storedMandates(home)).toBe(0);
      const mine = home.auditLog(a.id).filter((e) => e.tool === "create_payment_mandate");
      expect(mine.map((e) => [e.decision, e.reason])).toEqual([["deny", "approval_timeout"]]);
    } finally {
      await client.close();
    }
  });
});

describe("a Verifiable Intent presentation above the approval threshold", () => {
  it("waits for the approver: denied → nothing signed; approved → L3a/L3b", LONG, async () => {
    const home = makeHome();
    const ann = home.addApprover({ name: "Ann" });
    const a = home.createIdentity({ name: "buyer", channels: "card", policy: POLICY });
    const k = home.json<{ keys: any[] }>(["keys", "export", a.id]).keys.find((x) => x.kty === "EC");
    const gen = async () => {
      const { privateKey, publicKey } = await generateKeyPair("ES256", { extractable: true });
      return { privateJwk: await exportJWK(privateKey), publicJwk: await exportJWK(publicKey) };
    };
    const issuer = await gen();
    const user = await gen();
    const t = now();
    const l1 = await issueL1({ privateJwk: issuer.privateJwk, kid: "issuer-1" }, user.publicJwk, { iat: t - 60 });
    const { l2 } = await issueL2({ user: { privateJwk: user.privateJwk, kid: "user-1" }, l1, cnf: { jwk: { kty: "EC", crv: "P-256", x: k.x, y: k.y }, kid: k.kid }, merchants: [PAYEE], iat: t - 30, exp: t + 3600 });
    const { privateKey } = await generateKeyPair("ES256");
    const checkoutJwt = await new SignJWT({ merchant: PAYEE, total: 9000 }).setProtectedHeader({ alg: "ES256", typ: "JWT" }).sign(privateKey);
    const { client } = await stdioClient(home, a.token);
    const present = (nonce: string) =>
      client.callTool({ name: "present_payment_mandate", arguments: { l2, aud: "https://network.example", nonce, amountCents: 9000, payee: PAYEE, checkoutJwt } }, undefined, { timeout: 200_000, resetTimeoutOnProgress: true });
    try {
      const no = await decideWhileWaiting(home, a, ann.token, () => present("n-1"), "deny", async () => undefined);
      expect(text(no.r)).toMatch(/^denied: approval_denied: /);
      const yes = await decideWhileWaiting(home, a, ann.token, () => present("n-2"), "approve", async () => undefined);
      expect(yes.r.isError, text(yes.r)).toBeFalsy();
      const s = yes.r.structuredContent as any;
      expect(s.receipt.approvalId).toBe(yes.approvalId);
      await verifyVi({ l1, issuerKey: issuer.publicJwk, l2ForNetwork: s.l2.network, l2ForMerchant: s.l2.merchant, l3a: s.closed.payment, l3b: s.closed.checkout, network: { aud: "https://network.example", nonce: "n-2" }, merchant: { aud: PAYEE.website }, nowSeconds: now() });
      const oks = home.auditLog(a.id).filter((e) => e.tool === "present_payment_mandate" && e.phase === "result" && e.decision === "ok");
      expect(oks).toHaveLength(1);
    } finally {
      await client.close();
    }
  });
});
