/**
 * The console's pages in a real Chromium against the built server (`dist/cli.js serve --http`),
 * SPEC §10: create an identity (token shown once, not again on reload), the policy editor's error
 * path and diff, search and pages, rotate and revoke through the same audited operations as the
 * CLI, approve a waiting charge while an agent's MCP call (SDK Client over Streamable HTTP) waits
 * and see it complete, a tampered log shown as failing, CSRF refusals (no token, a wrong token, a
 * cross-site form), and a tenant admin who cannot see another tenant's identity. Screenshots go to a
 * scratch folder, or with `npm run screenshots` to docs/screenshots/ (the README shows them).
 */
import http from "node:http";
import { readFileSync, writeFileSync } from "node:fs";
import type { AddressInfo } from "node:net";
import path from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { Browser, BrowserContext, Page } from "playwright-core";
import { type HttpServer, type Home, cleanupHomes, httpClient, makeHome, startHttpServer, text, until, withApp } from "./support/home.js";
import { browserSkipNote, haveBrowser, launchBrowser, newPage, screenshot } from "./support/browser.js";

const LONG = { timeout: 180_000 };

describe.skipIf(!haveBrowser)(`console pages in Chromium${browserSkipNote}`, () => {
  let home: Home;
  let server: HttpServer;
  let origin: string;
  let browser: Browser;
  /** CSP violations reported by any page (there must be none: nothing inline). */
  const cspViolations: string[] = [];

  beforeAll(async () => {
    home = makeHome();
    server = await startHttpServer(home);
    origin = new URL(server.url).origin;
    browser = await launchBrowser();
  }, 120_000);
  afterAll(async () => {
    await browser?.close();
    await server?.stop();
    cleanupHomes();
  });

  async function signedIn(token: string): Promise<{ context: BrowserContext; page: Page }> {
    const { context, page } = await newPage(browser);
    page.on("console", (m) => {
      if (/Content Security Policy/i.test(m.text())) cspViolations.push(m.text());
    });
    await page.goto(origin + "/console/sign-in");
    await page.fill("#token", token);
    await Promise.all([page.waitForURL(/\/console\/(identities|approvals)/), page.click("form.signin button[type=submit]")]);
    return { context, page };
  }

  const show = (id: string): any => home.json(["identity", "show", id]);

  it("create an identity: its token is shown once, works, and is not shown again on reload", LONG, async () => {
    const { context, page } = await signedIn(home.adminToken);
    try {
      await page.fill("#name", "console-made");
      await page.check('input[name=channels][value="email"]');
      await page.fill("#email", "console-made@example.com");
      await page.fill("#policy", JSON.stringify({ allowedDomains: ["example.com"] }));
      await Promise.all([page.waitForURL(/\/console\/identities\/id_[0-9a-f]{20}\?shown=/), page.click("text=Create identity")]);
      const id = /identities\/(id_[0-9a-f]{20})/.exec(page.url())![1]!;
      const token = (await page.textContent("#shown-token"))!.trim();
      expect(token).toMatch(/^sigil_agent_/);
      await screenshot(page, "identity-created");
      // The token is the identity's: an MCP client connects with it.
      const { client } = await httpClient(server.url, token);
      const who = await client.callTool({ name: "whoami", arguments: {} });
      expect((who.structuredContent as any).id).toBe(id);
      await client.close();
      // Reload (the same URL, ?shown= included): the token is gone.
      await page.reload();
      expect(await page.locator("#shown-token").count()).toBe(0);
      expect(await page.content()).not.toContain(token);
      await page.goBack().catch(() => {});
      expect(await page.content()).not.toContain(token);
      // Creation is audited exactly as the CLI's: the same creation entry.
      const cli = home.createIdentity({ name: "cli-made", channels: "email" });
      const strip = (e: any): unknown => ({ seq: e.seq, tool: e.tool, phase: e.phase, session: e.session, decision: e.decision });
      expect(strip(home.auditLog(id)[0])).toEqual(strip(home.auditLog(cli.id)[0]));
    } finally {
      await context.close();
    }
  });

  it("creation refuses bad input next to the field, keeps what was typed, and creates nothing", LONG, async () => {
    const before = home.json<any[]>(["identity", "list"]).length;
    const { context, page } = await signedIn(home.adminToken);
    try {
      await page.fill("#name", "needs-a-number");
      await page.check('input[name=channels][value="sms"]');
      await page.click("text=Create identity");
      await expect.poll(() => page.locator("#phone-error").textContent()).toMatch(/own number/);
      expect(await page.inputValue("#name")).toBe("needs-a-number");
      await page.fill("#policy", '{"allowedDomains": "example.com"}');
      await page.click("text=Create identity");
      await expect.poll(() => page.locator("#policy-error").textContent()).toMatch(/allowedDomains/);
      expect(home.json<any[]>(["identity", "list"]).length).toBe(before);
    } finally {
      await context.close();
    }
  });

  it("the policy editor: invalid JSON and an invalid policy are shown inline and change nothing; a valid one shows its diff and saves a new version, audited like update_policy", LONG, async () => {
    const a = home.createIdentity({ name: "policy-target", channels: "email", policy: { allowedDomains: ["example.com"], maxRecipients: 5 } });
    const { context, page } = await signedIn(home.adminToken);
    try {
      await page.goto(`${origin}/console/identities/${a.id}`);
      await page.fill("#policy-text", '{"allowedDomains": ["example.com"], ');
      await page.click("button[value=save]");
      await expect.poll(() => page.locator("#policy-error").textContent()).toMatch(/not valid JSON/);
      await page.fill("#policy-text", '{"allowedDomains": ["example.com"], "maxRecipients": -3, "nonsense": true}');
      await page.click("button[value=save]");
      await expect.poll(() => page.locator("#policy-error").textContent()).toMatch(/maxRecipients|nonsense|unknown|Unrecognized/i);
      expect(await page.inputValue("#policy-text")).toContain('"nonsense": true'); // what was typed is kept
      expect(await page.getAttribute("#policy-text", "aria-describedby")).toBe("policy-error");
      await screenshot(page, "policy-editor-error");
      expect(show(a.id).policyVersion).toBe(1);
      expect(home.auditLog(a.id).filter((e) => e.tool === "policy_updated")).toEqual([]);
      // Preview: the diff against the version in force, nothing saved.
      await page.fill("#policy-text", JSON.stringify({ allowedDomains: ["example.com", "example.org"], maxRecipients: 5 }, null, 2));
      await page.click("button[value=preview]");
      await expect.poll(() => page.locator(".diff ins").allTextContents()).toContain('+     "example.org"');
      expect(show(a.id).policyVersion).toBe(1);
      await page.click("button[value=save]");
      await expect.poll(() => page.locator(".notice.ok").textContent()).toMatch(/version 2/);
      expect(await page.locator(".diff ins").allTextContents()).toContain('+     "example.org"');
      await screenshot(page, "policy-diff");
      expect(show(a.id)).toMatchObject({ policyVersion: 2, policy: { allowedDomains: ["example.com", "example.org"], maxRecipients: 5 } });
      // The same intent + result entries as `update_policy` / the CLI writes.
      const updates = home.auditLog(a.id).filter((e) => e.tool === "policy_updated");
      expect(updates.map((e) => [e.phase, e.session, e.policyVersion])).toEqual([
        ["intent", "admin", 2],
        ["result", "admin", 2],
      ]);
      expect(updates[1].decision).toBe("ok");
    } finally {
      await context.close();
    }
  });

  it("search and pages: 50 a page, newest first; search finds by name", LONG, async () => {
    await withApp(home, async (app) => {
      for (let i = 0; i < 60; i++) await app.identities.create({ name: `bulk-${i}`, channels: [], policy: {} });
      await app.identities.create({ name: "needle-in-haystack", channels: [], policy: {} });
    });
    const { context, page } = await signedIn(home.adminToken);
    try {
      // The list is kept for about a second (a page must not read 10,000 records): wait for it to catch up.
      await until(async () => {
        await page.goto(`${origin}/console/identities`);
        return (await page.locator("tbody tr").first().textContent())?.includes("needle-in-haystack") ? true : undefined;
      }, 30_000, "the list to show the new identities");
      expect(await page.locator("tbody tr").count()).toBe(50);
      await page.click("a[rel=next] >> nth=0");
      await page.waitForURL(/page=2/);
      const second = await page.locator("tbody tr").count();
      expect(second).toBeGreaterThan(10);
      await page.fill("#q", "needle");
      await Promise.all([page.waitForURL(/q=needle/), page.click("form[role=search] button")]);
      expect(await page.locator("tbody tr").count()).toBe(1);
      await screenshot(page, "identities");
    } finally {
      await context.close();
    }
  });

  it("rotate token and revoke: the new token is shown once, the old one stops working, the identity is revoked; each audited like the CLI", LONG, async () => {
    const a = home.createIdentity({ name: "to-rotate", channels: "email" });
    const { context, page } = await signedIn(home.adminToken);
    page.on("dialog", (d) => void d.accept());
    try {
      await page.goto(`${origin}/console/identities/${a.id}`);
      await Promise.all([page.waitForURL(/shown=/), page.click("text=Rotate agent token")]);
      const fresh = (await page.textContent("#shown-token"))!.trim();
      expect(fresh).toMatch(/^sigil_agent_/);
      expect(fresh).not.toBe(a.token);
      await expect(httpClient(server.url, a.token)).rejects.toThrow();
      const { client } = await httpClient(server.url, fresh);
      await client.close();
      await Promise.all([page.waitForURL(new RegExp(`identities/${a.id}$`)), page.click("text=Rotate signing key")]);
      expect(show(a.id).keys.length).toBe(2);
      await Promise.all([page.waitForURL(new RegExp(`identities/${a.id}$`)), page.click("button.danger:text('Revoke')")]);
      expect(show(a.id).revokedAt).toBeTruthy();
      await expect(httpClient(server.url, fresh)).rejects.toThrow();
      const tools = home.auditLog(a.id).filter((e) => e.session === "admin").map((e) => `${e.tool}:${e.phase}`);
      expect(tools).toEqual(["token_rotated:intent", "token_rotated:result", "key_rotated:intent", "key_rotated:result", "identity_revoked:intent", "identity_revoked:result"]);
    } finally {
      await context.close();
    }
  });

  it("approve a waiting charge: the agent's MCP call (Streamable HTTP) waits, the approver approves in the console, the call completes", LONG, async () => {
    const ann = home.addApprover({ name: "Ann" });
    const a = home.createIdentity({ name: "shopper", channels: "card", policy: { cardSpendingLimitCents: 100_000, approval: { aboveCents: 1000, timeoutSeconds: 150 } } });
    const { client } = await httpClient(server.url, a.token);
    const call = client.callTool({ name: "card_charge", arguments: { amountCents: 4200, currency: "USD", merchant: "Acme Books", idempotencyKey: "c1" } }, undefined, { timeout: 170_000 });
    let settled = false;
    void call.finally(() => (settled = true));
    const { context, page } = await signedIn(ann.token);
    try {
      const link = await until(async () => {
        await page.goto(`${origin}/console/approvals`);
        const l = page.locator("a[href^='/console/approvals/apv_']").first();
        return (await l.count()) > 0 ? await l.getAttribute("href") : undefined;
      }, 60_000, "the pending approval");
      await page.goto(origin + link!);
      expect(await page.textContent("#approval-action")).toContain('"amountCents": 4200');
      expect(await page.textContent("#approval-rule")).toMatch(/approval\.aboveCents: 1000 \(this charge: 4200\)/);
      expect(settled).toBe(false); // still waiting for the human
      await screenshot(page, "approval");
      await page.fill("#reason", "looks right");
      await Promise.all([page.waitForURL(/approvals\/apv_/), page.click("button[value=approve]")]);
      await expect.poll(() => page.locator(".notice.ok").textContent()).toMatch(/approved/);
      const r = await call;
      expect(r.isError, text(r)).toBeFalsy();
      expect((r.structuredContent as any).receipt.approvalId).toBe(link!.split("/").pop());
      const decided = home.auditLog(a.id).find((e) => e.tool === "approval_decided");
      expect(decided).toMatchObject({ approverId: ann.id, via: "approver", comment: "looks right", decision: "approved" });
      // The history says who and how.
      await page.goto(`${origin}/console/approvals`);
      expect(await page.textContent("body")).toMatch(new RegExp(`approve by ${ann.id} via approver`));
    } finally {
      await client.close();
      await context.close();
    }
  });

  it("a tampered audit log is shown as failing verification; an intact one as verified", LONG, async () => {
    const good = home.createIdentity({ name: "intact", channels: "email" });
    const bad = home.createIdentity({ name: "tampered", channels: "email" });
    for (const id of [good.id, bad.id]) home.json(["identity", "rotate-key", id]);
    const file = path.join(home.env.SIGIL_HOME!, "audit", `${bad.id}.jsonl`);
    const lines = readFileSync(file, "utf8").split("\n");
    const e = JSON.parse(lines[1]!);
    e.ts = new Date(Date.parse(e.ts) + 1000).toISOString(); // a moved timestamp, still canonical: its signature fails
    lines[1] = JSON.stringify(e);
    writeFileSync(file, lines.join("\n"));
    const { context, page } = await signedIn(home.adminToken);
    try {
      await page.goto(`${origin}/console/audit/${bad.id}`);
      await page.waitForSelector(`[data-chain-status="${bad.id}"][data-state=failed]`, { timeout: 60_000 });
      expect(await page.textContent(`[data-chain-status="${bad.id}"]`)).toMatch(/FAILS verification at seq 2/);
      await screenshot(page, "audit-tampered");
      await page.goto(`${origin}/console/audit/${good.id}`);
      await page.waitForSelector(`[data-chain-status="${good.id}"][data-state=ok]`, { timeout: 60_000 });
      // Filters: only key rotations.
      await page.selectOption("#tool", "key_rotated");
      await page.waitForURL(/tool=key_rotated/);
      const tools = await page.locator("tbody tr td:nth-child(3)").allTextContents();
      expect(tools.length).toBeGreaterThan(0);
      expect(new Set(tools)).toEqual(new Set(["key_rotated"]));
      // The bundle export is the CLI's.
      const bundle = await page.evaluate(async (u) => (await fetch(u)).json(), `${origin}/console/audit/${good.id}/bundle`);
      const cli = home.json(["audit", "export", good.id]);
      expect(bundle.entries).toEqual(cli.entries);
      const note = await page.evaluate(async (u) => (await fetch(u)).text(), `${origin}/console/audit/${good.id}/checkpoint`);
      expect(note).toMatch(new RegExp(`^sigil/${good.id}\n`));
    } finally {
      await context.close();
    }
  });

  it("CSRF: a form post without the token, with a wrong one, or from another site is refused and changes nothing", LONG, async () => {
    const a = home.createIdentity({ name: "csrf-target", channels: "email" });
    const { context, page } = await signedIn(home.adminToken);
    try {
      await page.goto(`${origin}/console/identities/${a.id}`);
      const post = (body: string): Promise<{ status: number; text: string }> =>
        page.evaluate(
          async ([u, b]) => {
            const r = await fetch(u!, { method: "POST", headers: { "content-type": "application/x-www-form-urlencoded" }, body: b!, redirect: "manual" });
            return { status: r.status, text: await r.text() };
          },
          [`${origin}/console/identities/${a.id}/revoke`, body],
        );
      const none = await post("");
      expect(none.status).toBe(403);
      expect(none.text).toMatch(/CSRF token is missing or wrong; nothing was changed/);
      const wrong = await post("csrf=" + "A".repeat(43));
      expect(wrong.status).toBe(403);
      // Another session's token does not work in this one.
      const other = await signedIn(home.adminToken);
      await other.page.goto(`${origin}/console/identities/${a.id}`);
      const otherCsrf = await other.page.getAttribute("input[name=csrf] >> nth=0", "value");
      await other.context.close();
      expect((await post("csrf=" + encodeURIComponent(otherCsrf!))).status).toBe(403);
      // A page of another origin posting a form at the console (the browser carries no cookie, SameSite=Strict).
      const evil = http.createServer((_req, res) => {
        res.writeHead(200, { "content-type": "text/html" });
        res.end(`<form id=f method=post action="${origin}/console/identities/${a.id}/revoke"><input name=csrf value=x></form><script>document.getElementById("f").submit()</script>`);
      });
      await new Promise<void>((r) => evil.listen(0, "127.0.0.1", r));
      try {
        const evilUrl = `http://localhost:${(evil.address() as AddressInfo).port}/`;
        const answered = page.waitForResponse((r) => r.url().includes("/revoke"), { timeout: 30_000 });
        await page.goto(evilUrl);
        expect((await answered).status()).toBe(403);
      } finally {
        evil.close();
      }
      expect(show(a.id).revokedAt).toBeUndefined();
      expect(home.auditLog(a.id).filter((e) => e.tool === "identity_revoked")).toEqual([]);
    } finally {
      await context.close();
    }
  });

  it("a tenant admin sees only its tenant: another tenant's identity is not found (as a missing id), cannot be changed or exported", LONG, async () => {
    const acme = home.createTenant("acme");
    const mine = home.createIdentity({ name: "acme-agent", channels: "email", tenant: acme.id });
    const theirs = home.createIdentity({ name: "default-agent", channels: "email" });
    const { context, page } = await signedIn(acme.adminToken);
    try {
      await page.goto(`${origin}/console/identities?q=agent`);
      const names = await page.locator("tbody tr td:first-child").allTextContents();
      expect(names).toContain("acme-agent");
      expect(names).not.toContain("default-agent");
      const missing = "id_" + "0".repeat(20);
      const r1 = await page.goto(`${origin}/console/identities/${theirs.id}`);
      expect(r1!.status()).toBe(404);
      const theirsText = (await page.textContent(".notice.error"))!.replace(theirs.id, "ID");
      await page.goto(`${origin}/console/identities/${missing}`);
      expect((await page.textContent(".notice.error"))!.replace(missing, "ID")).toBe(theirsText);
      expect((await page.goto(`${origin}/console/audit/${theirs.id}/bundle`))!.status()).toBe(404);
      expect((await page.goto(`${origin}/console/audit/${theirs.id}`))!.status()).toBe(404);
      expect((await page.goto(`${origin}/console/tenants`))!.status()).toBe(404); // root only
      await page.goto(`${origin}/console/identities/${mine.id}`);
      const csrf = await page.getAttribute("input[name=csrf] >> nth=0", "value");
      const status = await page.evaluate(
        async ([u, c]) => (await fetch(u!, { method: "POST", headers: { "content-type": "application/x-www-form-urlencoded" }, body: "csrf=" + encodeURIComponent(c!), redirect: "follow" })).text(),
        [`${origin}/console/identities/${theirs.id}/revoke`, csrf],
      );
      expect(status).toMatch(/No identity/);
      expect(show(theirs.id).revokedAt).toBeUndefined();
      expect(cspViolations).toEqual([]);
    } finally {
      await context.close();
    }
  });
});
