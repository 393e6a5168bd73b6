import { afterAll, afterEach, describe, expect, it } from "vitest";
import { existsSync, readFileSync, readdirSync } from "node:fs";
import path from "node:path";
import { cleanupHomes, makeHome, stdioClient, text } from "./support/home.js";
import { startSmtpServer, type TestSmtpServer } from "./support/smtp.js";
import { startTwilioServer, type TestTwilioServer } from "./support/twilio.js";

afterAll(cleanupHomes);

const SID = "AC" + "fa11c10sed".repeat(3).slice(0, 32);
const TWILIO_TOKEN = "fail-closed-twilio-token";
const providers: Array<TestSmtpServer | TestTwilioServer> = [];
afterEach(async () => {
  await Promise.all(providers.splice(0).map((p) => p.close()));
});

/** One call of every side-effecting agent tool, each of which succeeds when the log can be written. */
const SIDE_EFFECTS: Array<{ name: string; arguments: Record<string, unknown> }> = [
  { name: "send_email", arguments: { to: ["bob@example.com"], subject: "quarterly numbers", text: "see attached" } },
  { name: "send_sms", arguments: { to: "+14155550123", body: "your code is 123456" } },
  { name: "place_call", arguments: { to: "+14155550123", message: "hello from the fail closed test" } },
  { name: "card_charge", arguments: { amountCents: 1250, currency: "USD", merchant: "Acme Books", idempotencyKey: "fc-charge-1" } },
  { name: "vault_get", arguments: { name: "api/key" } },
  { name: "sign_http_request", arguments: { method: "GET", url: "https://shop.example/cart" } },
];

describe("fail closed: no audit, no action", () => {
  for (const fault of ["datasync@/audit/=EIO", "write@/audit/=ENOSPC", "open@/audit/=EROFS"]) {
    it(`a tool call whose audit entry cannot be written (${fault}) is refused with audit_unavailable and leaves no entry`, async () => {
      const home = makeHome();
      const a = home.createIdentity({ channels: "" });
      const logFile = path.join(home.env.SIGIL_HOME!, "audit", `${a.id}.jsonl`);
      const before = readFileSync(logFile, "utf8");
      const { client, stderr } = await stdioClient(home, a.token, { env: { SIGIL_TEST_FAULTS: fault } });
      const r = await client.callTool({ name: "whoami", arguments: {} });
      expect(r.isError).toBe(true);
      expect(text(r)).toMatch(/^denied: audit_unavailable: the audit log cannot be written, so nothing was done \(ref_[0-9a-f]+\)\.$/);
      expect(r.structuredContent).toBeUndefined();
      await client.close();
      expect(readFileSync(logFile, "utf8")).toBe(before);
      expect(stderr()).toMatch(/ref_[0-9a-f]+ audit intent for whoami/);
      expect(home.json(["audit", "verify", a.id]).ok).toBe(true);
    });
  }

  it("the server recovers once the log can be written again (a later process appends after the untouched chain)", async () => {
    const home = makeHome();
    const a = home.createIdentity({ channels: "" });
    const bad = await stdioClient(home, a.token, { env: { SIGIL_TEST_FAULTS: "datasync@/audit/=EIO" } });
    expect((await bad.client.callTool({ name: "whoami", arguments: {} })).isError).toBe(true);
    await bad.client.close();
    const good = await stdioClient(home, a.token);
    const r = await good.client.callTool({ name: "whoami", arguments: {} });
    expect(r.isError).toBeFalsy();
    expect((r.structuredContent as any).receipt.seq).toBe(2);
    await good.client.close();
  });

  it("a registry that cannot be read stops the server from starting", () => {
    const home = makeHome();
    const a = home.createIdentity({ channels: "" });
    const r = home.cli(["serve"], { env: { SIGIL_TOKEN: a.token, SIGIL_TEST_FAULTS: "readFile@sigil.json=EIO" } });
    expect(r.code).toBe(1);
    expect(r.stdout).toBe("");
    expect(r.stderr).toMatch(/registry .* cannot be read; refusing to start/);
  });

  for (const fault of ["readFile@/identities/=EIO", "readFile@/tokens/=EIO"]) {
    it(`an identity record or token index that cannot be read (${fault}) stops stdio serve, and is not mistaken for a wrong token`, () => {
      const home = makeHome();
      const a = home.createIdentity({ channels: "" });
      const r = home.cli(["serve"], { env: { SIGIL_TOKEN: a.token, SIGIL_TEST_FAULTS: fault } });
      expect(r.code).toBe(1);
      expect(r.stdout).toBe("");
      expect(r.stderr).toMatch(/cannot (be )?read/);
      expect(r.stderr).not.toMatch(/wrong or revoked/);
      expect(home.cli(["identity", "list", "--json"], { env: { SIGIL_TEST_FAULTS: fault.replace("/tokens/", "/identities/") } }).code).toBe(1);
    });
  }

  describe("every side-effecting tool: no audit entry, no provider call", () => {
    const SECRET = "fail-closed-secret-value-5c1d9e";
    async function fixture() {
      const smtp = await startSmtpServer();
      const twilio = await startTwilioServer({ accountSid: SID, authToken: TWILIO_TOKEN });
      providers.push(smtp, twilio);
      const home = makeHome();
      const a = home.createIdentity({
        channels: "email,sms,voice,vault,card,sign",
        phone: "+14155550100",
        policy: {
          allowedDomains: ["example.com"],
          allowedPhoneCountries: ["US"],
          allowedSecrets: ["api/*"],
          cardSpendingLimitCents: 10_000,
          allowedSigningOrigins: ["https://shop.example"],
        },
      });
      home.json(["secret", "put", a.id, "api/key"], { input: SECRET });
      const env = { SIGIL_SMTP_URL: smtp.url(), TWILIO_ACCOUNT_SID: SID, TWILIO_AUTH_TOKEN: TWILIO_TOKEN, SIGIL_TWILIO_API_URL: twilio.url };
      const dir = home.env.SIGIL_HOME!;
      const logFile = path.join(dir, "audit", `${a.id}.jsonl`);
      const ledger = path.join(dir, "card", `${a.id}.jsonl`);
      const outbox = (): string[] => (existsSync(path.join(dir, "outbox")) ? readdirSync(path.join(dir, "outbox")) : []);
      return { smtp, twilio, home, a, env, logFile, ledger, outbox };
    }

    for (const fault of ["datasync@/audit/=EIO", "write@/audit/=ENOSPC", "open@/audit/=EROFS"]) {
      it(`${fault}: send_email, send_sms, place_call, card_charge, vault_get and sign_http_request all refuse with audit_unavailable and act on nothing`, async () => {
        const f = await fixture();
        const before = readFileSync(f.logFile, "utf8");
        const { client, stderr } = await stdioClient(f.home, f.a.token, { env: { ...f.env, SIGIL_TEST_FAULTS: fault } });
        for (const call of SIDE_EFFECTS) {
          const r = await client.callTool(call);
          expect(r.isError, call.name).toBe(true);
          expect(text(r), call.name).toMatch(/^denied: audit_unavailable: the audit log cannot be written, so nothing was done \(ref_[0-9a-f]+\)\.$/);
          expect(r.structuredContent, call.name).toBeUndefined();
          expect(JSON.stringify(r)).not.toContain(SECRET);
        }
        await client.close();
        // No provider was called: no SMTP connection, no Twilio request, no ledger line, no outbox file.
        expect(f.smtp.connectionCount).toBe(0);
        expect(f.twilio.requests).toHaveLength(0);
        expect(existsSync(f.ledger)).toBe(false);
        expect(f.outbox()).toEqual([]);
        expect(readFileSync(f.logFile, "utf8")).toBe(before);
        for (const call of SIDE_EFFECTS) expect(stderr()).toContain(`audit intent for ${call.name}`);
        expect(stderr()).not.toContain(SECRET);
        expect(f.home.json(["audit", "verify", f.a.id]).ok).toBe(true);

        // The same calls, once the log can be written, do act: the refusals above were the fault's doing.
        const good = await stdioClient(f.home, f.a.token, { env: f.env });
        for (const call of SIDE_EFFECTS) {
          const r = await good.client.callTool(call);
          expect(r.isError, `${call.name}: ${text(r)}`).toBeFalsy();
        }
        await good.client.close();
        expect(f.smtp.messages).toHaveLength(1);
        expect(f.twilio.requests.map((r) => r.resource)).toEqual(["sms", "call"]);
        expect(readFileSync(f.ledger, "utf8").trim().split("\n")).toHaveLength(1);
        expect(f.home.json(["audit", "verify", f.a.id]).ok).toBe(true);
      });
    }

    it("a refusal that cannot be audited is still a refusal (audit_unavailable), and an unknown tool too", async () => {
      const f = await fixture();
      const { client } = await stdioClient(f.home, f.a.token, { env: { ...f.env, SIGIL_TEST_FAULTS: "datasync@/audit/=EIO" } });
      for (const call of [
        { name: "send_email", arguments: { to: ["eve@evil.example"], subject: "s", text: "t" } },
        { name: "send_sms", arguments: { to: "+19005550123", body: "premium" } },
        { name: "no_such_tool", arguments: {} },
        { name: "card_charge", arguments: { amountCents: -1, currency: "USD", merchant: "x", idempotencyKey: "k" } },
      ]) {
        expect(text(await client.callTool(call)), call.name).toMatch(/^denied: audit_unavailable: /);
      }
      await client.close();
      expect(f.smtp.connectionCount + f.twilio.requests.length).toBe(0);
    });
  });
});
