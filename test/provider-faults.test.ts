/**
 * Provider faults end to end, through the MCP tool: SMTP refusing, dropping the connection at each
 * stage or stalling; the Twilio-compatible API answering 4xx, 5xx, garbage, a redirect, a trickle or
 * nothing; the card processor declining, failing, answering garbage, hanging up or being down. For
 * each: a clear, safe error; a result entry whose decision matches it (`failed` = nothing happened,
 * `unknown` = it may have); exactly one request to the provider (no automatic retry); a definite
 * failure frees the idempotency key, an unknown one never lets it be repeated; card reservations
 * released exactly when nothing was charged.
 * (The simple cases — SMTP 550 and stalled DATA, Twilio 400/429/500/hang, card 402/503/hang — are in
 * channels-email, channels-telephony and card; this file covers the rest, and the money arithmetic.)
 */
import { createServer, type IncomingMessage, type ServerResponse } from "node:http";
import type { AddressInfo } from "node:net";
import { afterAll, afterEach, describe, expect, it } from "vitest";
import { cleanupHomes, makeHome, stdioClient, text } from "./support/home.js";
import { type SmtpBehaviour, startSmtpServer, type TestSmtpServer } from "./support/smtp.js";
import { type TestTwilioServer, type TwilioMode, startTwilioServer } from "./support/twilio.js";
import { auditOf } from "./support/fleet.js";

const SID = "AC" + "fa017".repeat(7).slice(0, 32);
const TWILIO_TOKEN = "provider-faults-token";
const OWN = "+14155550100";
const SAFE = /^(error: provider_(rejected|unavailable|unknown)|denied: card_declined): [^\n]{1,300}$/;
const LEAKY = /127\.0\.0\.1|localhost|:\d{4,5}\b|Error:|\bat \w+ \(|ECONN|ETIMEDOUT|AC[0-9a-f]{8}|provider-faults-token|<html|oops/;

const closers: Array<() => Promise<unknown>> = [];
afterEach(async () => {
  await Promise.all(closers.splice(0).map((c) => c().catch(() => undefined)));
});
afterAll(cleanupHomes);

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
const codeOf = (r: any) => text(r).split(":")[1]!.trim();

describe("SMTP faults through send_email", () => {
  const cases: Array<{ name: string; b: SmtpBehaviour; decision: "failed" | "unknown" | "either"; code?: string }> = [
    { name: "drops the connection on connect", b: { dropOnConnect: true }, decision: "failed", code: "provider_unavailable" },
    { name: "never greets (stalls)", b: { stallGreeting: true }, decision: "failed", code: "provider_unavailable" },
    { name: "refuses the sender (550)", b: { rejectMailFrom: 550 }, decision: "failed", code: "provider_rejected" },
    { name: "defers the message (451)", b: { rejectData: 451 }, decision: "failed", code: "provider_unavailable" },
    { name: "refuses the message (554)", b: { rejectData: 554 }, decision: "failed", code: "provider_rejected" },
    { name: "drops the connection mid-message", b: { dropMidData: true }, decision: "unknown", code: "provider_unknown" },
    // With PIPELINING, DATA may already be on the wire: unknown is the safe answer, unavailable is exact.
    { name: "drops the connection at MAIL FROM", b: { dropOnMailFrom: true }, decision: "either" },
  ];

  it(`${cases.length} faults: safe error, matching audit result, one connection each, and retries only when nothing went out`, { timeout: 60_000 }, async () => {
    const smtp: TestSmtpServer = await startSmtpServer();
    closers.push(() => smtp.close());
    const home = makeHome();
    const a = home.createIdentity({ channels: "email", policy: { allowedDomains: ["example.com"] } });
    const { client, stderr } = await stdioClient(home, a.token, { env: { SIGIL_SMTP_URL: smtp.url(), SIGIL_PROVIDER_TIMEOUT_MS: "400" } });
    closers.push(() => client.close());
    // The caller's retries go through a second session of the same identity whose provider timeout
    // is generous: the short one above is for the faults, and a healthy exchange on a busy machine
    // can take longer than 400 ms.
    const patient = await stdioClient(home, a.token, { env: { SIGIL_SMTP_URL: smtp.url(), SIGIL_PROVIDER_TIMEOUT_MS: "30000" } });
    closers.push(() => patient.client.close());
    for (const [i, c] of cases.entries()) {
      const args = { to: ["bob@example.com"], subject: `fault ${i}`, text: "x", idempotencyKey: `smtp-${i}` };
      smtp.setBehaviour(c.b);
      const conns = smtp.connectionCount;
      const t0 = Date.now();
      const r: any = await client.callTool({ name: "send_email", arguments: args });
      expect(Date.now() - t0, c.name).toBeLessThan(30_000); // generous: a stalled fault never ends by itself
      expect(text(r), c.name).toMatch(SAFE);
      expect(text(r), c.name).not.toMatch(LEAKY);
      if (c.code) expect(codeOf(r), c.name).toBe(c.code);
      const last = auditOf(home, a.id).at(-1);
      const decision = codeOf(r) === "provider_unknown" ? "unknown" : "failed";
      if (c.decision !== "either") expect(decision, c.name).toBe(c.decision);
      expect([last.phase, last.decision, last.reason], c.name).toEqual(["result", decision, codeOf(r)]);
      await sleep(100);
      expect(smtp.connectionCount - conns, c.name).toBe(1); // never retried behind the caller's back
      // The caller's retry with the same key: sent once if nothing went out, refused if it may have.
      smtp.setBehaviour({});
      const before = smtp.messages.length;
      const again: any = await patient.client.callTool({ name: "send_email", arguments: args });
      if (decision === "failed") {
        expect(again.isError, `${c.name}: ${text(again)}`).toBeFalsy();
        expect(smtp.messages.length - before).toBe(1);
      } else {
        expect(text(again), c.name).toMatch(/^denied: outcome_unknown: /);
        expect(smtp.messages.length - before).toBe(0);
      }
    }
    expect(stderr()).toMatch(/ref_[0-9a-f]+ send_email failed/); // the operator gets the detail
    expect(home.json(["audit", "verify", a.id]).ok).toBe(true);
  });
});

describe("Twilio-compatible API faults through send_sms and place_call", () => {
  const cases: Array<{ name: string; mode: TwilioMode; decision: "failed" | "unknown"; code: string }> = [
    { name: "201 with a body that is not JSON", mode: { kind: "garbage" }, decision: "unknown", code: "provider_unknown" },
    { name: "201 JSON without a sid", mode: { kind: "status", status: 201, body: '{"status":"queued"}', contentType: "application/json" }, decision: "unknown", code: "provider_unknown" },
    { name: "drops the connection", mode: { kind: "drop" }, decision: "unknown", code: "provider_unknown" },
    { name: "answers a byte at a time, forever", mode: { kind: "trickle" }, decision: "unknown", code: "provider_unknown" },
    { name: "503 without Twilio's JSON", mode: { kind: "status", status: 503, body: "oops" }, decision: "unknown", code: "provider_unknown" },
    { name: "503 with Twilio's JSON", mode: { kind: "error", status: 503, code: 20503 }, decision: "failed", code: "provider_unavailable" },
    { name: "401: sigil's credentials refused", mode: { kind: "error", status: 401, code: 20003 }, decision: "failed", code: "provider_unavailable" },
    { name: "404 JSON error", mode: { kind: "error", status: 404, code: 20404 }, decision: "failed", code: "provider_rejected" },
    { name: "a redirect", mode: { kind: "status", status: 302, body: "<html>moved</html>", contentType: "text/html" }, decision: "unknown", code: "provider_unknown" },
  ];

  it(`${cases.length} faults, for SMS and calls: safe error, matching audit result, one request each, no double send`, { timeout: 90_000 }, async () => {
    const twilio: TestTwilioServer = await startTwilioServer({ accountSid: SID, authToken: TWILIO_TOKEN });
    closers.push(() => twilio.close());
    const home = makeHome();
    const a = home.createIdentity({ channels: "sms,voice", phone: OWN, policy: { allowedPhoneCountries: ["US"] } });
    const env = { TWILIO_ACCOUNT_SID: SID, TWILIO_AUTH_TOKEN: TWILIO_TOKEN, SIGIL_TWILIO_API_URL: twilio.url, SIGIL_PROVIDER_TIMEOUT_MS: "400" };
    const { client } = await stdioClient(home, a.token, { env });
    closers.push(() => client.close());
    // Retries go through a second session with a generous provider timeout (see the SMTP case).
    const patient = await stdioClient(home, a.token, { env: { ...env, SIGIL_PROVIDER_TIMEOUT_MS: "30000" } });
    closers.push(() => patient.client.close());
    for (const [i, c] of cases.entries()) {
      for (const tool of ["send_sms", "place_call"] as const) {
        const args = tool === "send_sms" ? { to: "+14155550123", body: `fault ${i}`, idempotencyKey: `tw-${i}` } : { to: "+14155550123", message: `fault ${i}`, idempotencyKey: `tw-${i}` };
        const what = `${tool}: ${c.name}`;
        twilio.setMode(c.mode);
        const n = twilio.requests.length;
        const t0 = Date.now();
        const r: any = await client.callTool({ name: tool, arguments: args });
        expect(Date.now() - t0, what).toBeLessThan(30_000); // generous: a hang never ends by itself
        expect(text(r), what).toMatch(SAFE);
        expect(text(r), what).not.toMatch(LEAKY);
        expect(codeOf(r), what).toBe(c.code);
        const last = auditOf(home, a.id).at(-1);
        expect([last.tool, last.phase, last.decision, last.reason], what).toEqual([tool, "result", c.decision, c.code]);
        await sleep(150);
        expect(twilio.requests.length - n, what).toBe(1);
        twilio.setMode({ kind: "ok" });
        const again: any = await patient.client.callTool({ name: tool, arguments: args });
        if (c.decision === "failed") expect(again.isError, `${what}: ${text(again)}`).toBeFalsy();
        else expect(text(again), what).toMatch(/^denied: outcome_unknown: /);
        expect(twilio.requests.length - n, what).toBe(c.decision === "failed" ? 2 : 1);
      }
    }
    expect(home.json(["audit", "verify", a.id]).ok).toBe(true);
  });
});

describe("card processor faults through card_charge", () => {
  it("garbage, 500, a hang-up and a timeout keep the reservation (unknown); a decline and 503 release it; a processor that is down releases it; none is retried", { timeout: 60_000 }, async () => {
    const requests: any[] = [];
    const server = createServer((req: IncomingMessage, res: ServerResponse) => {
      let buf = "";
      req.on("data", (d) => (buf += d));
      req.on("end", () => {
        const body = JSON.parse(buf);
        requests.push(body);
        const reply = (status: number, payload: string) => {
          res.writeHead(status, { "content-type": "application/json" });
          res.end(payload);
        };
        switch (body.merchant) {
          case "Garbage": return reply(200, "<html>not json");
          case "Boom": return reply(500, '{"error":"internal"}');
          case "HangUp": return req.socket.destroy();
          case "Hang": return; // never answers
          case "Decline": return reply(402, '{"status":"declined"}');
          case "Busy": return reply(503, '{"error":"busy"}');
          default: return reply(200, JSON.stringify({ chargeId: `ext_${requests.length}`, status: "approved" }));
        }
      });
    });
    await new Promise<void>((r) => server.listen(0, "127.0.0.1", r));
    closers.push(async () => {
      server.closeAllConnections();
      server.close();
    });
    const url = `http://127.0.0.1:${(server.address() as AddressInfo).port}/charges`;
    const LIMIT = 10_000;
    const home = makeHome({ SIGIL_PROVIDER_TIMEOUT_MS: "400" });
    const a = home.createIdentity({ channels: "card", policy: { cardSpendingLimitCents: LIMIT } });
    const { client } = await stdioClient(home, a.token, { env: { SIGIL_CARD_PROCESSOR_URL: url } });
    closers.push(() => client.close());
    const cases = [
      { merchant: "Garbage", amount: 100, code: "provider_unknown", decision: "unknown" },
      { merchant: "Boom", amount: 200, code: "provider_unknown", decision: "unknown" },
      { merchant: "HangUp", amount: 300, code: "provider_unknown", decision: "unknown" },
      { merchant: "Hang", amount: 400, code: "provider_unknown", decision: "unknown" },
      { merchant: "Decline", amount: 3000, code: "card_declined", decision: "failed" },
      { merchant: "Busy", amount: 3000, code: "provider_unavailable", decision: "failed" },
    ];
    for (const c of cases) {
      const args = { amountCents: c.amount, currency: "USD", merchant: c.merchant, idempotencyKey: `card-${c.merchant}` };
      const n = requests.length;
      const r: any = await client.callTool({ name: "card_charge", arguments: args });
      expect(text(r), c.merchant).toMatch(SAFE);
      expect(text(r), c.merchant).not.toMatch(LEAKY);
      expect(codeOf(r), c.merchant).toBe(c.code);
      const last = auditOf(home, a.id).at(-1);
      expect([last.phase, last.decision, last.reason], c.merchant).toEqual(["result", c.decision, c.code]);
      await sleep(100);
      expect(requests.length - n, c.merchant).toBe(1);
      if (c.decision === "unknown") {
        expect(text(await client.callTool({ name: "card_charge", arguments: args })), c.merchant).toMatch(/^denied: outcome_unknown: /);
        expect(requests.length - n, c.merchant).toBe(1);
      }
    }
    // A processor that is down (connection refused): nothing was charged, released.
    const closed = createServer();
    await new Promise<void>((r) => closed.listen(0, "127.0.0.1", r));
    const closedPort = (closed.address() as AddressInfo).port;
    await new Promise((r) => closed.close(r));
    const down = await stdioClient(home, a.token, { env: { SIGIL_CARD_PROCESSOR_URL: `http://127.0.0.1:${closedPort}/charges` } });
    closers.push(() => down.client.close());
    const refused: any = await down.client.callTool({ name: "card_charge", arguments: { amountCents: 3000, currency: "USD", merchant: "Down", idempotencyKey: "card-down" } });
    expect(codeOf(refused)).toBe("provider_unavailable");
    expect(text(refused)).not.toMatch(LEAKY);

    // The money: unknown outcomes (100+200+300+400) stay reserved; the rest was released.
    const reserved = 1000;
    expect(text(await client.callTool({ name: "card_charge", arguments: { amountCents: LIMIT - reserved + 1, currency: "USD", merchant: "Fine", idempotencyKey: "over" } }))).toMatch(/^denied: spending_limit: /);
    const fits: any = await client.callTool({ name: "card_charge", arguments: { amountCents: LIMIT - reserved, currency: "USD", merchant: "Fine", idempotencyKey: "exact" } });
    expect(fits.isError, text(fits)).toBeFalsy();
    expect(home.json(["audit", "verify", a.id]).ok).toBe(true);
  });
});

/** A loopback port nothing listens on (bound, then closed). */
async function closedPort(): Promise<number> {
  const s = createServer();
  await new Promise<void>((r) => s.listen(0, "127.0.0.1", r));
  const port = (s.address() as AddressInfo).port;
  await new Promise((r) => s.close(r));
  return port;
}

describe("unreachable providers", () => {
  it("a card processor that cannot be reached (refused, or a host that does not resolve): provider_unavailable, reservation released, retry allowed, the log names the cause", { timeout: 60_000 }, async () => {
    const LIMIT = 5000;
    const home = makeHome();
    const a = home.createIdentity({ channels: "card", policy: { cardSpendingLimitCents: LIMIT } });
    const port = await closedPort();
    const targets = [
      { url: `http://127.0.0.1:${port}/charges`, cause: new RegExp(`cause: POST http://127\\.0\\.0\\.1:${port}: connect ECONNREFUSED 127\\.0\\.0\\.1:${port}`) },
      { url: "http://nonexistent.invalid/charges", cause: /cause: POST http:\/\/nonexistent\.invalid: getaddrinfo (ENOTFOUND|EAI_AGAIN) nonexistent\.invalid/ },
    ];
    const args = { amountCents: LIMIT, currency: "USD", merchant: "Far away", idempotencyKey: "unreachable" };
    for (const t of targets) {
      const { client, stderr } = await stdioClient(home, a.token, { env: { SIGIL_CARD_PROCESSOR_URL: t.url } });
      closers.push(() => client.close());
      for (const attempt of ["first", "retry with the same key"]) {
        const r: any = await client.callTool({ name: "card_charge", arguments: args });
        expect(text(r), `${t.url} ${attempt}`).toMatch(/^error: provider_unavailable: the card processor could not be reached; nothing was charged \(ref_[0-9a-f]+\)\.$/);
        const last = auditOf(home, a.id).at(-1);
        expect([last.phase, last.decision, last.reason], t.url).toEqual(["result", "failed", "provider_unavailable"]);
        const ref = /\((ref_[0-9a-f]+)\)/.exec(text(r))![1]!;
        expect(stderr(), t.url).toMatch(new RegExp(`${ref} card_charge failed: .*could not be reached.*${t.cause.source}`));
      }
    }
    // Nothing stayed reserved: the whole limit can be charged now, under the same key.
    const { client } = await stdioClient(home, a.token);
    closers.push(() => client.close());
    const ok: any = await client.callTool({ name: "card_charge", arguments: args });
    expect(ok.isError, text(ok)).toBeFalsy();
    expect(home.json(["audit", "verify", a.id]).ok).toBe(true);
  });

  it("email, SMS and calls to a provider that cannot be reached: one sentence that says once that nothing was sent", { timeout: 60_000 }, async () => {
    const port = await closedPort();
    const home = makeHome();
    const a = home.createIdentity({ channels: "email,sms,voice", phone: OWN, policy: { allowedDomains: ["example.com"], allowedPhoneCountries: ["US"] } });
    const env = { SIGIL_SMTP_URL: `smtp://127.0.0.1:${port}`, TWILIO_ACCOUNT_SID: SID, TWILIO_AUTH_TOKEN: TWILIO_TOKEN, SIGIL_TWILIO_API_URL: `http://127.0.0.1:${port}` };
    const { client } = await stdioClient(home, a.token, { env });
    closers.push(() => client.close());
    const cases = [
      { tool: "send_email", args: { to: ["bob@example.com"], subject: "hi", text: "x" }, says: "the mail server could not be reached; nothing was sent" },
      { tool: "send_sms", args: { to: "+14155550123", body: "x" }, says: "the telephony provider could not be reached; the SMS was not sent" },
      { tool: "place_call", args: { to: "+14155550123", message: "x" }, says: "the telephony provider could not be reached; the call was not sent" },
    ];
    for (const c of cases) {
      const r: any = await client.callTool({ name: c.tool, arguments: c.args });
      expect(text(r), c.tool).toMatch(new RegExp(`^error: provider_unavailable: ${c.says} \\(ref_[0-9a-f]+\\)\\.$`));
    }
  });
});
