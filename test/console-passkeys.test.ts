/**
 * Passkeys (SPEC §9, §10) in a real Chromium with the DevTools Protocol's virtual authenticator
 * (`WebAuthn.addVirtualAuthenticator`): an approver registers a passkey in the console, signs in
 * with it, and approves with it a charge whose policy says `approval.requirePasskey` — which no
 * other way can approve — while the agent's MCP call waits; the `approval_decided` entry records
 * via `passkey` and the authenticator's assertion over the hash of the decision statement, which
 * verifies on its own. A passkey record changed without the master key is not used.
 */
import { readFileSync, writeFileSync } from "node:fs";
import path from "node:path";
import { createHash } from "node:crypto";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { Browser } from "playwright-core";
import { verifyAuthenticationResponse } from "@simplewebauthn/server";
import { type HttpServer, type Home, cleanupHomes, httpClient, makeHome, startHttpServer, stdioClient, text, until, withApp } from "./support/home.js";
import { browserSkipNote, haveBrowser, launchBrowser, newPage, screenshot } from "./support/browser.js";
import { decisionBytes } from "../src/approval/approvals.js";

describe.skipIf(!haveBrowser)(`passkeys in Chromium (virtual authenticator)${browserSkipNote}`, () => {
  let home: Home;
  let server: HttpServer;
  let origin: string;
  let browser: Browser;

  beforeAll(async () => {
    home = makeHome();
    server = await startHttpServer(home);
    // WebAuthn needs a domain as the relying party id: localhost, not 127.0.0.1.
    origin = `http://localhost:${server.port}`;
    browser = await launchBrowser();
  }, 120_000);
  afterAll(async () => {
    await browser?.close();
    await server?.stop();
    cleanupHomes();
  });

  it("register a passkey, sign in with it, approve a requirePasskey charge with it while the agent waits; the assertion is recorded and verifies", { timeout: 240_000 }, async () => {
    const ann = home.addApprover({ name: "Ann" });
    const a = home.createIdentity({ name: "buyer", channels: "card", policy: { cardSpendingLimitCents: 100_000, approval: { aboveCents: 1000, requirePasskey: true, timeoutSeconds: 180 } } });
    const { context, page } = await newPage(browser);
    const cdp = await context.newCDPSession(page);
    await cdp.send("WebAuthn.enable");
    await cdp.send("WebAuthn.addVirtualAuthenticator", {
      options: { protocol: "ctap2", transport: "internal", hasResidentKey: true, hasUserVerification: true, isUserVerified: true, automaticPresenceSimulation: true },
    });
    // Sign in with the token, register a passkey.
    await page.goto(origin + "/console/sign-in");
    await page.fill("#token", ann.token);
    await Promise.all([page.waitForURL(/\/console\/approvals/), page.click("form.signin button[type=submit]")]);
    await page.goto(origin + "/console/passkeys");
    await page.fill("#passkey-name", "virtual key");
    await Promise.all([page.waitForURL(/\/console\/passkeys$/), page.click("#passkey-register button[type=submit]")]);
    await expect.poll(() => page.locator(".notice.ok").textContent()).toMatch(/registered/);
    expect(await page.locator("tbody tr").count()).toBe(1);
    await screenshot(page, "passkeys");
    // Sign out, sign in with the passkey alone.
    await Promise.all([page.waitForURL(/sign-in/), page.click("header button[type=submit]")]);
    await Promise.all([page.waitForURL(/\/console\/approvals/), page.click("#passkey-signin button[type=submit]")]);
    expect(await page.textContent("header")).toMatch(new RegExp(`approver ${ann.id}.*passkey`));

    // The agent's charge waits for a passkey approval.
    const { client } = await httpClient(server.url, a.token);
    const call = client.callTool({ name: "card_charge", arguments: { amountCents: 4200, currency: "USD", merchant: "Acme Books", idempotencyKey: "pk1" } }, undefined, { timeout: 200_000 });
    try {
      const link = await until(async () => {
        await page.goto(`${origin}/console/approvals`);
        const l = page.locator("a[href^='/console/approvals/apv_']").first();
        return (await l.count()) > 0 ? await l.getAttribute("href") : undefined;
      }, 60_000, "the pending approval");
      const approvalId = link!.split("/").pop()!;
      // No other way approves it: the approver tool is refused, and the page offers no plain Approve.
      const tool = await stdioClient(home, ann.token);
      const refused = await tool.client.callTool({ name: "decide_approval", arguments: { approvalId, decision: "approve" } });
      expect(text(refused)).toMatch(/^denied: passkey_required: /);
      await tool.client.close();
      await page.goto(origin + link!);
      expect(await page.locator("button[value=approve]").count()).toBe(0);
      expect(await page.textContent("#approval-rule")).toMatch(/requirePasskey/);
      await screenshot(page, "approval-passkey");
      await Promise.all([page.waitForURL(new RegExp(`approvals/${approvalId}$`)), page.click("#passkey-approve button[type=submit]")]);
      await expect.poll(() => page.locator(".notice.ok").textContent()).toMatch(/with your passkey/);
      const r = await call;
      expect(r.isError, text(r)).toBeFalsy();
      expect((r.structuredContent as any).receipt.approvalId).toBe(approvalId);

      // The entry: via passkey, the assertion over SHA-256 of the decision statement.
      const d = home.auditLog(a.id).find((e) => e.tool === "approval_decided")!;
      expect(d).toMatchObject({ via: "passkey", approverId: ann.id, decision: "approved" });
      const challenge = createHash("sha256").update(decisionBytes(d.statement)).digest("base64url");
      expect(d.passkey.challenge).toBe(challenge);
      const clientData = JSON.parse(Buffer.from(d.passkey.clientDataJSON, "base64url").toString("utf8"));
      expect(clientData).toMatchObject({ type: "webauthn.get", challenge, origin });
      // It verifies with nothing but what the entry holds (the counter check aside).
      const v = await verifyAuthenticationResponse({
        response: { id: d.passkey.credentialId, rawId: d.passkey.credentialId, type: "public-key", clientExtensionResults: {}, response: { authenticatorData: d.passkey.authenticatorData, clientDataJSON: d.passkey.clientDataJSON, signature: d.passkey.signature } },
        expectedChallenge: challenge,
        expectedOrigin: origin,
        expectedRPID: "localhost",
        credential: { id: d.passkey.credentialId, publicKey: Buffer.from(d.passkey.publicKey, "base64url"), counter: 0 },
        requireUserVerification: false,
      });
      expect(v.verified).toBe(true);
      // The registration is in the tenant's own log (intent, then ok), naming the credential, its key and
      // the relying party; receipt explain says who approved and how, and checks the assertion against it.
      const tenantLog = readFileSync(path.join(home.env.SIGIL_HOME!, "audit", "default.jsonl"), "utf8").trim().split("\n").map((l) => JSON.parse(l));
      const registered = tenantLog.filter((e) => e.tool === "passkey_registered");
      expect(registered.map((e) => [e.phase, e.decision])).toEqual([["intent", "allow"], ["result", "ok"]]);
      expect(registered[0]).toMatchObject({ approverId: ann.id, credentialId: d.passkey.credentialId, credentialPublicKey: d.passkey.publicKey, rpId: "localhost", origin });
      const receiptFile = path.join(home.dir, "passkey-receipt.json");
      writeFileSync(receiptFile, JSON.stringify(r.structuredContent));
      const approval = home.json(["receipt", "explain", receiptFile]).answers.find((x: any) => x.question === "approval");
      expect(approval).toMatchObject({ status: "ok", answer: `${approvalId} for tenant default: ${ann.id} via passkey ${d.passkey.credentialId.slice(0, 22)}… (its assertion over the decision statement)` });
      expect(approval.detail).toMatch(/each passkey assertion verifies with the credential the tenant's log registered, over the hash of its decision statement/);
      // A changed statement would not: the challenge binds the exact action.
      const forged = createHash("sha256").update(decisionBytes({ ...d.statement, actionHash: "0".repeat(64) })).digest("base64url");
      expect(forged).not.toBe(challenge);

      // Replay: that assertion does not approve another waiting charge (its challenge is the first's statement).
      const second = client.callTool({ name: "card_charge", arguments: { amountCents: 4300, currency: "USD", merchant: "Acme Books", idempotencyKey: "pk2" } }, undefined, { timeout: 200_000 });
      void second.catch(() => {});
      const other = await until(() => withApp(home, async (app) => (await app.approvals.list({ status: "pending" })).find((x) => x.identityId === a.id)?.id), 60_000, "the second approval");
      await withApp(home, async (app) => {
        const rec = (await app.store.getApprover(ann.id))!;
        await expect(app.approvals.decide(rec, other, "approve", undefined, { ...d.passkey })).rejects.toMatchObject({ code: "passkey_invalid" });
        await expect(app.approvals.decide(rec, other, "approve")).rejects.toMatchObject({ code: "passkey_required" });
        expect((await app.approvals.list({ status: "pending" })).map((x) => x.id)).toContain(other);
      });
    } finally {
      await client.close();
      await context.close();
    }

    // A passkey record changed without the master key (its key swapped) is not used.
    const file = path.join(home.env.SIGIL_HOME!, "passkeys", `${ann.id}.json`);
    const stored = JSON.parse(readFileSync(file, "utf8"));
    expect(stored).toHaveLength(1);
    await withApp(home, async (app) => expect(await app.passkeys.list(ann.id)).toHaveLength(1));
    stored[0].approverId = "apr_" + "1".repeat(20);
    writeFileSync(file, JSON.stringify(stored));
    await withApp(home, async (app) => expect(await app.passkeys.list(ann.id)).toHaveLength(0));
  });
});
