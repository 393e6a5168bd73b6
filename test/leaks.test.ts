/**
 * Secrets never leak. Canary values planted in a vault secret, an email body and an SMS body are
 * driven through every path that could copy them somewhere — success, replay, refusal, invalid
 * arguments, exfiltration attempts, provider failures (one that echoes the body back in its error),
 * admin queries and exports, over stdio and HTTP — and are then looked for, raw and in common
 * encodings, everywhere sigil writes: every file under the home, the servers' stdout and stderr, the
 * CLI's output, MCP log notifications, and every error text.
 */
import { randomBytes } from "node:crypto";
import { readFileSync, readdirSync, statSync } from "node:fs";
import path from "node:path";
import { LoggingMessageNotificationSchema } from "@modelcontextprotocol/sdk/types.js";
import type { Client } from "@modelcontextprotocol/sdk/client/index.js";
import { afterAll, describe, expect, it } from "vitest";
import { cleanupHomes, httpClient, makeHome, startHttpServer, stdioClient, text, type Home, type Identity } from "./support/home.js";
import { startSmtpServer } from "./support/smtp.js";
import { startTwilioServer, type TestTwilioServer } from "./support/twilio.js";

afterAll(cleanupHomes);

const SID = "AC" + "1ea4".repeat(8);
const TWILIO_TOKEN = "leak-test-twilio-token";
const OWN = "+14155550100";
const canary = (what: string) => `canary-${what}-${randomBytes(10).toString("hex")}`;

/** Every form of `value` a careless write could leave: raw, base64, base64url, hex (both cases), URL-encoded. */
function forms(value: string): string[] {
  const b = Buffer.from(value);
  return [value, b.toString("base64").replace(/=+$/, ""), b.toString("base64url"), b.toString("hex"), b.toString("hex").toUpperCase(), encodeURIComponent(value)];
}

function filesUnder(dir: string): string[] {
  return readdirSync(dir).flatMap((name) => {
    const p = path.join(dir, name);
    return statSync(p).isDirectory() ? filesUnder(p) : [p];
  });
}

function expectNoCanary(where: string, haystack: string | Buffer, canaries: string[]): void {
  const hay = Buffer.isBuffer(haystack) ? haystack : Buffer.from(haystack);
  for (const c of canaries) for (const f of forms(c)) expect(hay.includes(f), `${where} carries ${c} (as ${f.slice(0, 24)}…)`).toBe(false);
}

interface Captured {
  notifications: string[];
  errors: string[];
  /** Results that are allowed to carry the secret: vault_get's own answer to the agent. */
  vaultAnswers: string[];
  results: string[];
}

/** Every path a canary can take through one agent session. */
async function drive(client: Client, cap: Captured, c: { secret: string; email: string; sms: string }, twilio: TestTwilioServer, tag: string): Promise<void> {
  const call = async (name: string, args: Record<string, unknown>) => {
    const r: any = await client.callTool({ name, arguments: args });
    const serialized = JSON.stringify(r);
    if (r.isError) cap.errors.push(text(r));
    if (name === "vault_get" && !r.isError) cap.vaultAnswers.push(serialized);
    else cap.results.push(serialized);
    return r;
  };
  // Successes and replays.
  expect((await call("send_email", { to: ["bob@example.com"], subject: "report", text: `body ${c.email}`, html: `<p>${c.email}</p>`, idempotencyKey: `e-${tag}` })).isError).toBeFalsy();
  expect(text(await call("send_email", { to: ["bob@example.com"], subject: "report", text: `body ${c.email}`, html: `<p>${c.email}</p>`, idempotencyKey: `e-${tag}` }))).toMatch(/^already done/);
  expect((await call("send_sms", { to: "+14155550123", body: `code ${c.sms}`, idempotencyKey: `s-${tag}` })).isError).toBeFalsy();
  expect(text(await call("send_sms", { to: "+14155550123", body: `code ${c.sms}`, idempotencyKey: `s-${tag}` }))).toMatch(/^already done/);
  // Refusals: by policy, by validation, by idempotency conflict, of unknown arguments.
  expect(text(await call("send_email", { to: ["eve@evil.example"], subject: c.email, text: c.email }))).toMatch(/^denied: domain_not_allowed: /);
  expect(text(await call("send_sms", { to: "+19005550123", body: c.sms }))).toMatch(/^denied: premium_rate: /);
  expect(text(await call("send_sms", { to: "+14155550123", body: `${c.sms} `.repeat(200) }))).toMatch(/^denied: invalid_arguments: /);
  expect(text(await call("send_sms", { to: "+1415555012", body: c.sms }))).toMatch(/^denied: invalid_phone: /);
  expect(text(await call("send_sms", { to: "+14155550123", body: `other ${c.sms}`, idempotencyKey: `s-${tag}` }))).toMatch(/^denied: idempotency_conflict: /);
  expect(text(await call("send_email", { to: ["bob@example.com"], subject: "s", text: "t", bcc: [c.email], headers: { "X-Leak": c.email } }))).toMatch(/^denied: invalid_arguments: /);
  expect(text(await call("vault_get", { name: "api/key", extra: c.secret }))).toMatch(/^denied: invalid_arguments: /);
  // The secret: read once (the agent's own answer), then every attempt to send it out is refused.
  expect((await call("vault_get", { name: "api/key" })).isError).toBeFalsy();
  expect(text(await call("send_sms", { to: "+14155550123", body: `leaking ${c.secret}` }))).toMatch(/^denied: secret_exfiltration: /);
  expect(text(await call("send_email", { to: ["bob@example.com"], subject: "s", text: Buffer.from(c.secret).toString("base64") }))).toMatch(/^denied: secret_exfiltration: /);
  expect(text(await call("send_email", { to: ["bob@example.com"], subject: c.secret, text: "x" }))).toMatch(/^denied: secret_exfiltration: /);
  // …also in the fields the log otherwise keeps as they are (recipients, merchant, idempotency key).
  expect(text(await call("send_sms", { to: c.secret, body: "x" }))).toMatch(/^denied: secret_exfiltration: /);
  expect(text(await call("send_email", { to: [`${c.secret}@example.com`], subject: "s", text: "x" }))).toMatch(/^denied: secret_exfiltration: /);
  expect(text(await call("card_charge", { amountCents: 100, currency: "USD", merchant: c.secret, idempotencyKey: `x-${tag}` }))).toMatch(/^denied: secret_exfiltration: /);
  expect(text(await call("card_charge", { amountCents: 100, currency: "USD", merchant: "Shop", idempotencyKey: c.secret }))).toMatch(/^denied: secret_exfiltration: /);
  // A provider that fails, and one that echoes the message body back in its error.
  twilio.setMode({ kind: "error", status: 400, code: 21617, message: `The message body "code ${c.sms}" was refused` });
  expect(text(await call("send_sms", { to: "+14155550123", body: `again ${c.sms}` }))).toMatch(/^error: provider_rejected: /);
  twilio.setMode({ kind: "error", status: 500, code: 20500, message: `internal: ${c.sms}` });
  expect(text(await call("send_sms", { to: "+14155550123", body: `third ${c.sms}` }))).toMatch(/^error: provider_unknown: /);
  twilio.setMode({ kind: "status", status: 201, body: `{"sid": 5, "echo": "${c.sms}"}`, contentType: "application/json" });
  expect(text(await call("send_sms", { to: "+14155550123", body: `fourth ${c.sms}` }))).toMatch(/^error: provider_unknown: /);
  twilio.setMode({ kind: "ok" });
}

describe("canaries in a secret, an email body and an SMS body go nowhere they should not", () => {
  it("not in the home, stdout, stderr, MCP log notifications, CLI output or any error text — over stdio and HTTP", { timeout: 90_000 }, async () => {
    const c = { secret: canary("secret"), email: canary("email"), sms: canary("sms") };
    const all = [c.secret, c.email, c.sms];
    const smtp = await startSmtpServer();
    const twilio = await startTwilioServer({ accountSid: SID, authToken: TWILIO_TOKEN });
    const providerEnv = { SIGIL_SMTP_URL: smtp.url(), TWILIO_ACCOUNT_SID: SID, TWILIO_AUTH_TOKEN: TWILIO_TOKEN, SIGIL_TWILIO_API_URL: twilio.url, SIGIL_PROVIDER_TIMEOUT_MS: "2000" };
    const home: Home = makeHome(providerEnv);
    const cli: Array<{ stdout: string; stderr: string }> = [];
    const a: Identity = home.createIdentity({
      name: "leaky",
      channels: "email,sms,vault,card",
      phone: OWN,
      policy: { allowedDomains: ["example.com"], allowedPhoneCountries: ["US"], allowedSecrets: ["api/*"], cardSpendingLimitCents: 10_000 },
    });
    const put = home.cli(["secret", "put", a.id, "api/key", "--json"], { input: c.secret });
    expect(put.code).toBe(0);
    cli.push(put);
    const cap: Captured = { notifications: [], errors: [], vaultAnswers: [], results: [] };
    const listen = async (client: Client) => {
      client.setNotificationHandler(LoggingMessageNotificationSchema, (n) => void cap.notifications.push(JSON.stringify(n.params)));
      await client.setLoggingLevel("debug");
    };

    // stdio
    const s = await stdioClient(home, a.token, { capabilities: {} });
    await listen(s.client);
    await drive(s.client, cap, c, twilio, "stdio");
    await s.client.close();

    // HTTP: the server process's stdout is not the MCP channel here, so it must carry nothing at all.
    const server = await startHttpServer(home);
    let out = "";
    let err = "";
    server.proc.stdout!.on("data", (d: Buffer) => (out += d.toString()));
    server.proc.stderr!.on("data", (d: Buffer) => (err += d.toString()));
    const h = await httpClient(server.url, a.token);
    await listen(h.client);
    await drive(h.client, cap, c, twilio, "http");
    // The admin surface: the log as an administrator sees it.
    const adm = await httpClient(server.url, home.adminToken);
    await listen(adm.client);
    const q: any = await adm.client.callTool({ name: "query_audit", arguments: { identityId: a.id, limit: 1000 } });
    expect(q.isError, text(q)).toBeFalsy();
    cap.results.push(JSON.stringify(q));
    cap.results.push(JSON.stringify(await adm.client.callTool({ name: "get_identity", arguments: { identityId: a.id } })));
    await h.client.close();
    await adm.client.close();
    await server.stop();

    cli.push(home.cli(["audit", "export", a.id, "--json"]));
    cli.push(home.cli(["audit", "verify", "--json"]));
    cli.push(home.cli(["identity", "show", a.id, "--json"]));
    expect(cli.every((r) => r.stdout.length > 0)).toBe(true);

    // The providers did get what was sent (so the canaries really went through sigil).
    expect(smtp.messages.map((m) => m.raw.toString())).toEqual(expect.arrayContaining([expect.stringContaining(c.email)]));
    expect(twilio.requests.some((r) => r.form.Body?.includes(c.sms))).toBe(true);
    expect(cap.vaultAnswers).toHaveLength(2);
    for (const v of cap.vaultAnswers) expect(v).toContain(c.secret);
    expect(cap.errors.length).toBeGreaterThanOrEqual(2 * 13);
    await smtp.close();
    await twilio.close();

    // Nowhere else.
    for (const f of filesUnder(home.env.SIGIL_HOME!)) {
      expectNoCanary(f, readFileSync(f), all);
    }
    expectNoCanary("stdio server stderr", s.stderr(), all);
    expectNoCanary("HTTP server stdout", out, all);
    expectNoCanary("HTTP server stderr", err, all);
    expect(out).toBe("");
    cli.forEach((r, i) => {
      expectNoCanary(`CLI ${i} stdout`, r.stdout, all);
      expectNoCanary(`CLI ${i} stderr`, r.stderr, all);
    });
    expectNoCanary("MCP log notifications", cap.notifications.join("\n"), all);
    cap.errors.forEach((e, i) => expectNoCanary(`error text ${i}: ${e}`, e, all));
    cap.results.forEach((r, i) => expectNoCanary(`result ${i}`, r, all));
    // The provider failures were logged for the operator, with reference ids, just not with the body.
    expect(s.stderr()).toMatch(/ref_[0-9a-f]+ send_sms failed/);
  });
});
