/**
 * Hostile input, through the real `sigil serve` over stdio with real (loopback) SMTP, Twilio and card
 * providers behind it. Property-based (fast-check) over every agent tool's arguments and over the
 * policy document: random and adversarial values — huge strings, deep nesting, unicode tricks,
 * control characters, numbers at the edges, unknown keys — never crash the server, never take more
 * than a small fixed time, never send, charge, sign or reveal anything the policy does not allow,
 * and always leave an audit entry. Then malformed JSON-RPC (stdio) and hostile HTTP requests, which
 * are refused without harming the sessions beside them.
 *
 * fast-check prints the seed and the shrunk counterexample of a failure; pass it back with
 * `{ seed, path }` to replay it.
 */
import { spawn } from "node:child_process";
import { readFileSync, statSync } from "node:fs";
import { request } from "node:http";
import path from "node:path";
import fc from "fast-check";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { CLI, cleanupHomes, cpuMs, httpClient, makeHome, startHttpServer, stdioClient, text, type Home, type Identity } from "./support/home.js";
import { startSmtpServer, type TestSmtpServer } from "./support/smtp.js";
import { startTwilioServer, type TestTwilioServer } from "./support/twilio.js";
import { ledgerOf } from "./support/fleet.js";

const SID = "AC" + "40571e".repeat(6).slice(0, 32);
const TWILIO_TOKEN = "hostile-twilio-token";
const OWN = "+14155550100";
const SECRET = "hostile-secret-value-0b7e2d";
const RUNS = Number(process.env.SIGIL_FUZZ_RUNS ?? (process.env.SIGIL_SOAK === "1" ? 1000 : 100));
/**
 * A bound on pathological slowness (runaway regexes, quadratic parsing), not a benchmark: the
 * server's CPU time per call, which a loaded machine does not stretch the way it stretches wall time
 * (slow fsyncs, other processes). Wall time only has the generous call timeout.
 */
const CPU_BOUND_MS = 2000;
const PER_CHARGE = 5000;
const POLICY = {
  allowedDomains: ["example.com"],
  maxRecipients: 3,
  allowedPhoneCountries: ["US"],
  allowedPhoneNumbers: ["+442079460123"],
  allowedSecrets: ["api/*"],
  cardSpendingLimitCents: 100_000_000,
  cardPerChargeLimitCents: PER_CHARGE,
  blockedMerchantCategories: ["7995"],
  allowedSigningOrigins: ["https://shop.example"],
};

// ---- generators ---------------------------------------------------------------------------------

const TRICKY = [
  "", " ", "\u0000", "a\u0000b", "\r\n", "\n.\n", "\r\n.\r\n", "\t", "\u001b[31mred", "\u007f", "\u0085", "\u2028", "\u2029",
  "\u202egnp.exe", "\u200b", "\u200d", "\ufeff", "\ud800", "\udfff", "\ud83d", "😀", "e\u0301", "İ", "ß", "ﬃ", "ａｄｍｉｎ",
  "../../../etc/passwd", "..", "/", "\\", "C:\\Windows", "__proto__", "constructor", "prototype", "toString", "hasOwnProperty",
  "%00", "%0d%0a", "${7*7}", "{{7*7}}", "<script>alert(1)</script>", "' OR '1'='1", "\"; DROP TABLE x; --", "$(reboot)", "`id`",
  "<Response><Play>https://evil.example/x.mp3</Play></Response>", "]]><Say>hi</Say>", "&amp;", "&#x3C;",
  "xn--80ak6aa92e.com", "аpple.com", "+1 (415) 555-0123", "+19005550123", "+14155550123", "+442079460123", "+16135550123",
  "tel:+14155550123", "+1415555012300000000", "+", "00014155550123",
  "bob@example.com", "BOB@EXAMPLE.COM", "bob@sub.example.com", "eve@evil.example", "bob@example.com\r\nBcc: eve@evil.example",
  "bob@example.com, eve@evil.example", "\"eve@evil.example\"@example.com", "eve@evil.example (bob@example.com)", "bob@example.com.",
  "https://shop.example/cart", "https://shop.example@evil.example/", "https://evil.example/", "http://127.0.0.1/", "https://SHOP.example:443/x",
  "https://shop.example:8443/", "javascript:alert(1)", "file:///etc/passwd",
  "api/key", "api/../other", "api/*", "*", "other", "api//key",
  "USD", "usd", "EUR", "7995", "5734", "0000", "GET", "POST", "G E T", "web-bot-auth", "agent-payer-auth",
];
const HUGE = [4_096, 65_536, 1_000_000];
/**
 * The SDK's stdio framing takes at most 10 MiB per message and ends the session beyond it (pinned in
 * spine-stdio.test.ts). A few HUGE strings in one header dictionary can pass that (seed 511125354
 * built ~12 MB), which is that other test's case, not this one's: argument sets stay under 9 MiB.
 */
const fitsOneStdioMessage = (args: Record<string, unknown>): boolean => Buffer.byteLength(JSON.stringify(args)) < 9 * 1024 * 1024;

const tricky = fc.constantFrom(...TRICKY);
const hostileString = fc.oneof(
  { arbitrary: tricky, weight: 5 },
  { arbitrary: fc.string({ unit: "binary", maxLength: 48 }), weight: 3 },
  { arbitrary: fc.string({ unit: "grapheme", maxLength: 24 }), weight: 1 },
  { arbitrary: fc.tuple(tricky, fc.string({ unit: "binary", maxLength: 6 }), tricky).map((p) => p.join("")), weight: 2 },
  { arbitrary: fc.tuple(fc.constantFrom(...HUGE), fc.constantFrom("A", "é", "\u0000", "😀", "<")).map(([n, c]) => c.repeat(n)), weight: 1 },
);
const edgeNumber = fc.oneof(
  fc.constantFrom(0, -0, -1, 1, 0.5, 99.999, 2 ** 31 - 1, 2 ** 31, 2 ** 32, 2 ** 53 - 1, 2 ** 53, 2 ** 53 + 2, -(2 ** 53), Number.MAX_VALUE, Number.MIN_VALUE, 1e308, 1e-308, NaN, Infinity, -Infinity, PER_CHARGE, PER_CHARGE + 1),
  fc.integer(),
  fc.double(),
);
/** A value nested `depth` levels deep (arrays and objects alternating by the bits of `shape`). */
const deep = fc.tuple(fc.integer({ min: 1, max: 3000 }), fc.integer()).map(([depth, shape]) => {
  let v: unknown = "core";
  for (let i = 0; i < depth; i++) v = (shape >> i % 31) & 1 ? [v] : { k: v };
  return v;
});
const hostileValue: fc.Arbitrary<unknown> = fc.oneof(
  { arbitrary: hostileString, weight: 8 },
  { arbitrary: edgeNumber, weight: 3 },
  { arbitrary: fc.constantFrom(true, false, null), weight: 1 },
  { arbitrary: deep, weight: 1 },
  { arbitrary: fc.array(hostileString, { maxLength: 5 }), weight: 3 },
  { arbitrary: fc.dictionary(hostileString, hostileString, { maxKeys: 3 }), weight: 1 },
);

/** `arb` one time in six, else null. */
const rarely = <T>(arb: fc.Arbitrary<T>): fc.Arbitrary<T | null> => fc.oneof({ arbitrary: fc.constant(null), weight: 5 }, { arbitrary: arb, weight: 1 });

/**
 * Arguments for a tool: its valid base with any subset of fields replaced by hostile values, one
 * sometimes dropped, and sometimes an unknown key added.
 */
function argumentsFor(base: Record<string, unknown>, typed: Record<string, fc.Arbitrary<unknown>> = {}): fc.Arbitrary<Record<string, unknown>> {
  const keys = Object.keys(base);
  const field = (k: string) => (typed[k] ? fc.oneof({ arbitrary: typed[k]!, weight: 2 }, { arbitrary: hostileValue, weight: 1 }) : hostileValue);
  // Some argument sets use only the typed (mostly plausible) values, so the allowed side is reached too.
  const plausible = fc.record(Object.fromEntries(keys.map((k) => [k, typed[k] ?? fc.constant(base[k])])));
  const mutated = fc
    .record({
      replaced: fc.record(Object.fromEntries(keys.map((k) => [k, fc.option(field(k), { freq: 2 })]))), // each field: kept or replaced, 1:1
      dropped: keys.length ? rarely(fc.constantFrom(...keys)) : fc.constant(null),
      extra: rarely(fc.tuple(hostileString, hostileValue)),
    })
    .map(({ replaced, dropped, extra }) => {
      const out: Record<string, unknown> = {};
      for (const k of keys) {
        if (k === dropped) continue;
        const r = (replaced as Record<string, unknown>)[k];
        out[k] = r === null ? base[k] : r;
      }
      if (extra && extra[0] !== "") Object.defineProperty(out, extra[0], { value: extra[1], enumerable: true, configurable: true, writable: true });
      return out;
    });
  return fc.oneof({ arbitrary: mutated, weight: 3 }, { arbitrary: plausible, weight: 1 });
}

/** `good` four times in five, else `other`. */
const mostly = <T, U>(good: fc.Arbitrary<T>, other: fc.Arbitrary<U>): fc.Arbitrary<T | U> => fc.oneof({ arbitrary: good, weight: 4 }, { arbitrary: other, weight: 1 });
/** Mostly plausible text, sometimes hostile. */
const prose = mostly(fc.constantFrom("hello", "Grüße aus Köln 😀", "line one\nline two", "A".repeat(500), "e\u0301 İ ß"), fc.oneof(fc.string({ minLength: 1, maxLength: 80 }), hostileString));
// A key sigil has not used yet, or a reused one (idempotency paths), or a hostile one.
let keyCounter = 0;
const idemKey = mostly(fc.constant(null).map(() => `k-${++keyCounter}`), fc.oneof(fc.constantFrom("k-1", "k-2", "reused"), hostileString));
const phone = mostly(
  fc.constantFrom("+14155550123", "+12125550199", "+442079460123"),
  fc.constantFrom("+16135550123", "+19005550123", "+447700900123", "+33612345678", "+1 415 555 0123"),
);
const address = mostly(
  fc.constantFrom("bob@example.com", "carol@sub.example.com", "DAVE@Example.COM"),
  fc.constantFrom("eve@evil.example", "mallory@example.com.evil.example", "bob@example.com, eve@evil.example", "<bob@example.com>"),
);

const TOOLS: Array<{ name: string; args: fc.Arbitrary<Record<string, unknown>> }> = [
  { name: "whoami", args: argumentsFor({}) },
  {
    name: "send_email",
    args: argumentsFor(
      { to: ["bob@example.com"], cc: [], subject: "hello", text: "body", idempotencyKey: "e-1" },
      { to: fc.array(address, { minLength: 1, maxLength: 4 }), cc: mostly(fc.constant([]), fc.array(address, { maxLength: 3 })), subject: prose, text: prose, idempotencyKey: idemKey },
    ),
  },
  {
    name: "send_sms",
    args: argumentsFor({ to: "+14155550123", body: "hello", idempotencyKey: "s-1" }, { to: phone, body: prose, idempotencyKey: idemKey }),
  },
  {
    name: "place_call",
    args: argumentsFor({ to: "+14155550123", message: "hello", idempotencyKey: "c-1" }, { to: phone, message: prose, idempotencyKey: idemKey }),
  },
  {
    name: "card_charge",
    args: argumentsFor(
      { amountCents: 100, currency: "USD", merchant: "Fuzz Books", merchantCategory: "5734", description: "d", idempotencyKey: "ch-1" },
      {
        amountCents: mostly(fc.integer({ min: 1, max: PER_CHARGE }), fc.oneof(fc.integer({ min: PER_CHARGE + 1, max: PER_CHARGE * 2 }), edgeNumber)),
        currency: mostly(fc.constant("USD"), fc.constantFrom("EUR", "usd", "US", "USDD")),
        merchant: fc.oneof(fc.constantFrom("Acme", "Ünïcødé Café", "Shop 😀", "M".repeat(200)), hostileString),
        merchantCategory: mostly(fc.constantFrom("5734", "0000"), fc.constantFrom("7995", "573", "57345")),
        description: prose,
        idempotencyKey: idemKey,
      },
    ),
  },
  { name: "vault_get", args: argumentsFor({ name: "api/key" }, { name: fc.constantFrom("api/key", "api/missing", "other", "api/../other", "API/key", "api/key\u0000", "*") }) },
  {
    name: "sign_http_request",
    args: argumentsFor(
      { method: "GET", url: "https://shop.example/cart", headers: {}, tag: "web-bot-auth" },
      {
        method: fc.constantFrom("GET", "POST", "get", "G ET", "CONNECT"),
        url: fc.oneof(fc.constantFrom(...TRICKY.filter((s) => s.includes("://"))), hostileString),
        headers: fc.dictionary(hostileString, hostileString, { maxKeys: 4 }),
        tag: fc.constantFrom("web-bot-auth", "agent-browser-auth", "agent-payer-auth", "evil"),
      },
    ),
  },
];

// ---- the world the properties look at ---------------------------------------------------------------

let home: Home;
let agent: Identity;
let smtp: TestSmtpServer;
let twilio: TestTwilioServer;
let session: Awaited<ReturnType<typeof stdioClient>>;
let logFile: string;

beforeAll(async () => {
  smtp = await startSmtpServer();
  twilio = await startTwilioServer({ accountSid: SID, authToken: TWILIO_TOKEN });
  home = makeHome();
  // Merchant categories come from the processor: it knows these two (others are unknown, so refused).
  home.merchants({ Acme: "5734", "Fuzz Books": "5734" });
  agent = home.createIdentity({ name: "fuzz", channels: "email,sms,voice,vault,card,sign", phone: OWN, policy: POLICY });
  home.json(["secret", "put", agent.id, "api/key"], { input: SECRET });
  home.json(["secret", "put", agent.id, "other"], { input: "not-for-this-agent-" + SECRET });
  logFile = path.join(home.env.SIGIL_HOME!, "audit", `${agent.id}.jsonl`);
  session = await stdioClient(home, agent.token, {
    env: { SIGIL_SMTP_URL: smtp.url(), TWILIO_ACCOUNT_SID: SID, TWILIO_AUTH_TOKEN: TWILIO_TOKEN, SIGIL_TWILIO_API_URL: twilio.url },
  });
});
afterAll(async () => {
  await session?.client.close();
  await smtp?.close();
  await twilio?.close();
  cleanupHomes();
});

const US_NUMBER = /^\+1[2-9]\d{2}[2-9]\d{6}$/;
const PREMIUM = /^\+1(900|976)/;
const ALLOWED_RCPT = /^[^@\s]+@(?:[a-z0-9-]+\.)*example\.com$/;

/** Calls that were allowed, per tool (so a property that only ever saw refusals is noticed). */
const allowed: Record<string, number> = {};
/** The most server CPU one call of each tool took (printed, to see the margin under the bound). */
const maxCpu: Record<string, number> = {};

/** What the outside world saw so far. */
function world() {
  return {
    mails: smtp.messages.length,
    connections: smtp.connectionCount,
    twilio: twilio.requests.length,
    ledger: ledgerOf(home, agent.id).length,
    log: statSync(logFile).size,
  };
}

async function hostileCall(name: string, args: Record<string, unknown>): Promise<void> {
  const before = world();
  const cpu0 = cpuMs(session.transport.pid);
  const r: any = await session.client.callTool({ name, arguments: args }, undefined, { timeout: 60_000 });
  const cpu = (cpuMs(session.transport.pid) ?? 0) - (cpu0 ?? 0);
  const after = world();
  const what = `${name} ${JSON.stringify(args).slice(0, 300)}`;
  expect(cpu, `${what} used ${Math.round(cpu)} ms of server CPU`).toBeLessThan(CPU_BOUND_MS);
  maxCpu[name] = Math.max(maxCpu[name] ?? 0, cpu);
  // Always an audit entry (only this session writes to the log).
  expect(after.log, what).toBeGreaterThan(before.log);
  const newMails = smtp.messages.slice(before.mails);
  const newTwilio = twilio.requests.slice(before.twilio);
  const newLedger = ledgerOf(home, agent.id).slice(before.ledger);
  if (r.isError) {
    // A refusal is one safe line, and nothing reached a provider.
    expect(text(r), what).toMatch(/^(denied|error): [a-z_]+: [^\n\r\u0000]{1,400}$/);
    expect(r.structuredContent, what).toBeUndefined();
    expect(after.connections - before.connections, what).toBe(0);
    expect(newTwilio, what).toHaveLength(0);
    expect(newLedger, what).toHaveLength(0);
    expect(JSON.stringify(r), what).not.toContain(SECRET);
    return;
  }
  const sc = r.structuredContent;
  expect(sc?.receipt?.identityId, what).toBe(agent.id);
  allowed[name] = (allowed[name] ?? 0) + 1;
  const replay = text(r).startsWith("already done");
  const sent = newMails.length + newTwilio.length + newLedger.length;
  switch (name) {
    case "send_email":
      expect(sent, what).toBe(replay ? 0 : 1);
      for (const m of newMails) {
        expect(m.rcptTo.length).toBeLessThanOrEqual(POLICY.maxRecipients);
        for (const rcpt of m.rcptTo) expect(rcpt, what).toMatch(ALLOWED_RCPT);
        expect(m.raw.toString("latin1").split(/\r?\n\r?\n/)[0], what).not.toMatch(/^bcc:/im); // the header block (a body line may read "Bcc:")
      }
      break;
    case "send_sms":
    case "place_call":
      expect(sent, what).toBe(replay ? 0 : 1);
      for (const q of newTwilio) {
        expect(q.form.From).toBe(OWN);
        expect(q.form.To === "+442079460123" || (US_NUMBER.test(q.form.To!) && !PREMIUM.test(q.form.To!)), `${what} → ${q.form.To}`).toBe(true);
        expect(q.form.Url).toBeUndefined();
        if (name === "place_call") expect(q.form.Twiml).toMatch(/^<\?xml version="1\.0" encoding="UTF-8"\?><Response><Say>[^<]*<\/Say><\/Response>$/);
      }
      break;
    case "card_charge":
      expect(sent, what).toBe(replay ? 0 : 1);
      for (const l of newLedger) {
        expect(l.status).toBe("approved");
        expect(l.amountCents).toBeGreaterThan(0);
        expect(l.amountCents).toBeLessThanOrEqual(PER_CHARGE);
        expect(l.merchantCategory).not.toBe("7995");
      }
      break;
    case "vault_get":
      expect(sent).toBe(0);
      expect(sc.name, what).toBe("api/key");
      expect(sc.value).toBe(SECRET);
      break;
    case "sign_http_request":
      expect(sent).toBe(0);
      expect(new URL(args.url as string).origin, what).toBe("https://shop.example");
      break;
    default:
      expect(sent).toBe(0);
  }
}

describe("hostile tool arguments through the real stdio server", () => {
  for (const tool of TOOLS) {
    it(`${tool.name}: ${RUNS} random and adversarial argument sets — bounded time, an audit entry each, nothing sent that the policy forbids`, { timeout: 300_000 }, async () => {
      await fc.assert(
        fc.asyncProperty(tool.args.filter(fitsOneStdioMessage), (args) => hostileCall(tool.name, args)),
        { numRuns: RUNS },
      );
      // Also the tool names themselves: unknown, near-miss and hostile names are refused and audited.
      await fc.assert(
        fc.asyncProperty(fc.oneof(hostileString.filter((s) => s.length < 5000), fc.constantFrom("WHOAMI", "whoami ", "send_sms\u0000", "create_identity", "update_policy")), (name) =>
          hostileCall(name, {}),
        ),
        { numRuns: 5 },
      );
      expect((await session.client.callTool({ name: "whoami", arguments: {} })).isError).toBeFalsy();
      // The generators reach the allowed side too: the checks above were not only about refusals.
      expect(allowed[tool.name] ?? 0, `${tool.name} was never allowed`).toBeGreaterThan(0);
      process.stderr.write(`[hostile] ${tool.name}: ${allowed[tool.name]} of ${RUNS} allowed; at most ${Math.round(maxCpu[tool.name] ?? 0)} ms of server CPU per call\n`);
    });
  }

  it("the log of all of that verifies, and the secret it read is nowhere in it", () => {
    const v = home.json(["audit", "verify", agent.id]);
    expect(v.ok).toBe(true);
    expect(v.identities[0].unresolvedIntents).toBeUndefined();
    expect(readFileSync(logFile, "utf8")).not.toContain(SECRET);
    expect(session.stderr()).not.toContain(SECRET);
  });
});

// ---- the policy document ------------------------------------------------------------------------

describe("hostile policy documents", () => {
  const NUMBERS: Record<string, string> = { "+14155550123": "US", "+16135550123": "CA", "+442079460123": "GB", "+33612345678": "FR", "+19005550123": "US-premium" };
  const ADDRESSES = ["a@example.com", "b@sub.example.com", "c@evil.example", "d@EXAMPLE.com", "e@example.com.evil.example"];
  const listOf = (items: fc.Arbitrary<unknown>) => fc.oneof({ arbitrary: fc.array(items, { maxLength: 4 }), weight: 6 }, { arbitrary: hostileValue, weight: 1 });
  const policyDoc = fc.tuple(fc.record(
    {
      allowedDomains: listOf(fc.oneof(fc.constantFrom("example.com", "EXAMPLE.COM", "*", "evil.example", ".example.com", "com", "xn--80ak6aa92e.com"), hostileString)),
      maxRecipients: fc.oneof(fc.integer({ min: 0, max: 1001 }), edgeNumber, hostileValue),
      allowedPhoneCountries: listOf(fc.oneof(fc.constantFrom("US", "CA", "GB", "FR", "us", "XX", "ZZ"), hostileString)),
      allowedPhoneNumbers: listOf(fc.oneof(fc.constantFrom(...Object.keys(NUMBERS), "+1415555012", "14155550123"), hostileString)),
      allowedSecrets: listOf(hostileString),
      cardSpendingLimitCents: fc.oneof(fc.integer({ min: -1, max: 10_000 }), edgeNumber),
      rateLimits: fc.oneof(
        fc.dictionary(fc.constantFrom("send_sms", "send_email", "SEND", "__proto__", "constructor"), fc.record({ perMinute: fc.oneof(fc.integer({ min: 0, max: 5 }), edgeNumber) }, { requiredKeys: [] })),
        hostileValue,
      ),
    },
    { requiredKeys: [] },
  ), rarely(fc.tuple(hostileString, hostileValue))).map(([doc, extra]) => (extra ? { ...doc, [extra[0]]: extra[1] } : doc))
    // Under the stdio framing bound, as for the tools' arguments: a larger document ends the admin session (spine-stdio.test.ts).
    .filter(fitsOneStdioMessage);

  // The policies are tried in LANES identities at once (each with its own agent and admin
  // process), RUNS in all: the same number of cases, in a fraction of the wall time, since each
  // case mostly waits for fsyncs. What an identity sent is told apart by its own sender (From
  // number, envelope sender).
  const LANES = 4;
  it(`${RUNS} random policies via update_policy (${LANES} identities at once): refused with one sentence or applied, in bounded time, and nothing is sent that the applied document does not allow`, { timeout: 300_000 }, async () => {
    const smtpP = await startSmtpServer();
    const twilioP = await startTwilioServer({ accountSid: SID, authToken: TWILIO_TOKEN });
    const h = makeHome();
    const providerEnv = { SIGIL_SMTP_URL: smtpP.url(), TWILIO_ACCOUNT_SID: SID, TWILIO_AUTH_TOKEN: TWILIO_TOKEN, SIGIL_TWILIO_API_URL: twilioP.url };
    const identityFile = (id: string) => path.join(h.env.SIGIL_HOME!, "identities", `${id}.json`);
    const lane = async (i: number): Promise<void> => {
      const from = `+1415555011${i}`;
      const p = h.createIdentity({ name: `policy-fuzz-${i}`, channels: "email,sms", phone: from, policy: {} });
      const mailFrom = JSON.parse(readFileSync(identityFile(p.id), "utf8")).email as string;
      const [admin, agentSession] = await Promise.all([stdioClient(h, h.adminToken), stdioClient(h, p.token, { env: providerEnv })]);
      const mine = () => ({ sms: twilioP.requests.filter((q) => q.form.From === from).length, mails: smtpP.messages.filter((m) => m.mailFrom === mailFrom).length });
      let version = 1;
      try {
        await fc.assert(
          fc.asyncProperty(policyDoc, fc.constantFrom(...Object.keys(NUMBERS)), fc.constantFrom(...ADDRESSES), async (doc, number, addr) => {
            const adminCpu = cpuMs(admin.transport.pid);
            const r: any = await admin.client.callTool({ name: "update_policy", arguments: { identityId: p.id, policies: doc } }, undefined, { timeout: 60_000 });
            // Bounded, and linear in the document: a policy of several MiB (two huge strings) costs
            // the stdio JSON-RPC framing and parsing ~200 ms of CPU per MiB before sigil sees it.
            const mib = Buffer.byteLength(JSON.stringify(doc)) / (1 << 20);
            expect((cpuMs(admin.transport.pid) ?? 0) - (adminCpu ?? 0)).toBeLessThan(CPU_BOUND_MS + 500 * mib);
            if (r.isError) {
              expect(text(r)).toMatch(/^denied: invalid_policy: policy[^\n\r\u0000]{1,400}$/);
            } else {
              version++;
              expect(r.structuredContent.policyVersion).toBe(version);
            }
            // Whatever policy is in force now, the agent can do only what that document allows.
            const stored = JSON.parse(readFileSync(identityFile(p.id), "utf8"));
            const applied = stored.policy;
            expect(stored.policyVersion).toBe(version);
            const before = mine();
            const agentCpu = cpuMs(agentSession.transport.pid);
            const sms: any = await agentSession.client.callTool({ name: "send_sms", arguments: { to: number, body: "policy fuzz" } }, undefined, { timeout: 60_000 });
            const mid = mine();
            const mail: any = await agentSession.client.callTool({ name: "send_email", arguments: { to: [addr], subject: "policy fuzz", text: "x" } }, undefined, { timeout: 60_000 });
            const after = mine();
            expect((cpuMs(agentSession.transport.pid) ?? 0) - (agentCpu ?? 0)).toBeLessThan(2 * CPU_BOUND_MS);
            const country = NUMBERS[number]!;
            const numberOk = country !== "US-premium" && ((applied.allowedPhoneNumbers ?? []).includes(number) || (applied.allowedPhoneCountries ?? []).includes(country));
            if (!sms.isError) expect(numberOk, `sms to ${number} under ${JSON.stringify(applied)}`).toBe(true);
            expect(mid.sms - before.sms).toBe(sms.isError ? 0 : 1);
            const domain = addr.split("@")[1]!.toLowerCase();
            const domains: string[] = applied.allowedDomains ?? [];
            const addrOk = domains.some((d) => d === "*" || domain === d || domain.endsWith("." + d));
            if (!mail.isError) expect(addrOk, `mail to ${addr} under ${JSON.stringify(applied)}`).toBe(true);
            expect(after.mails - mid.mails).toBe(mail.isError ? 0 : 1);
            if (!r.isError && !("rateLimits" in applied)) {
              // Without limits in the way, what the document allows does go out (the oracle is not vacuous).
              if (numberOk) expect(sms.isError, text(sms)).toBeFalsy();
              if (addrOk) expect(mail.isError, text(mail)).toBeFalsy();
            }
          }),
          { numRuns: Math.ceil(RUNS / LANES) },
        );
      } finally {
        await admin.client.close();
        await agentSession.client.close();
      }
      const log = h.json(["audit", "verify", p.id]);
      expect(log.ok).toBe(true);
      expect(log.identities[0].unresolvedIntents).toBeUndefined();
      const entries = readFileSync(path.join(h.env.SIGIL_HOME!, "audit", `${p.id}.jsonl`), "utf8").trim().split("\n").map((l) => JSON.parse(l));
      expect(entries.filter((e) => e.tool === "policy_updated" && e.phase === "result" && e.decision === "ok")).toHaveLength(version - 1);
    };
    try {
      await Promise.all(Array.from({ length: LANES }, (_, i) => lane(i)));
    } finally {
      await smtpP.close();
      await twilioP.close();
    }
  });
});

// ---- malformed JSON-RPC and hostile HTTP ----------------------------------------------------------

describe("malformed JSON-RPC and hostile HTTP requests", () => {
  it("stdio: garbage, broken and deeply nested JSON-RPC lines get errors or nothing, and the session goes on", async () => {
    const h = makeHome();
    const a = h.createIdentity({ channels: "" });
    const proc = spawn(process.execPath, [CLI, "serve"], { env: { ...h.env, SIGIL_TOKEN: a.token }, stdio: ["pipe", "pipe", "pipe"] });
    let out = "";
    let err = "";
    proc.stdout.on("data", (d: Buffer) => (out += d.toString()));
    proc.stderr.on("data", (d: Buffer) => (err += d.toString()));
    const send = (line: string) => proc.stdin.write(line + "\n");
    const waitFor = async (id: number): Promise<any> => {
      const until = Date.now() + 10_000;
      for (;;) {
        const msg = out
          .split("\n")
          .filter((l) => l.trim())
          .map((l) => JSON.parse(l))
          .find((m) => m.id === id);
        if (msg) return msg;
        if (Date.now() > until || proc.exitCode !== null) throw new Error(`no answer to ${id}; exit ${proc.exitCode}; stderr ${err}`);
        await new Promise((r) => setTimeout(r, 10));
      }
    };
    send(JSON.stringify({ jsonrpc: "2.0", id: 1, method: "initialize", params: { protocolVersion: "2025-06-18", capabilities: {}, clientInfo: { name: "raw", version: "1" } } }));
    await waitFor(1);
    send(JSON.stringify({ jsonrpc: "2.0", method: "notifications/initialized" }));
    const hostile = [
      "garbage",
      "{",
      "{}",
      "[]",
      "null",
      "42",
      '"string"',
      "\u0000\u0001\u0002",
      "\ufeff{}",
      JSON.stringify({ jsonrpc: "1.0", id: 900, method: "tools/list" }),
      JSON.stringify({ jsonrpc: "2.0", id: { nested: true }, method: "tools/list" }),
      JSON.stringify({ jsonrpc: "2.0", id: 901, method: "no/such/method" }),
      JSON.stringify({ jsonrpc: "2.0", id: 902, method: "tools/call", params: { name: "whoami", arguments: "not an object" } }),
      JSON.stringify({ jsonrpc: "2.0", id: 903, method: "tools/call", params: { name: 5 } }),
      JSON.stringify({ jsonrpc: "2.0", id: 904, method: "tools/call" }),
      JSON.stringify({ jsonrpc: "2.0", id: 905, result: { spoofed: true } }),
      JSON.stringify({ jsonrpc: "2.0", id: 906, method: "tools/call", params: { name: "whoami", arguments: { ["__proto__"]: { admin: true } } } }),
      JSON.stringify([{ jsonrpc: "2.0", id: 907, method: "tools/list" }]),
      "[".repeat(200_000) + "]".repeat(200_000),
      '{"a":'.repeat(100_000) + "1" + "}".repeat(100_000),
      JSON.stringify({ jsonrpc: "2.0", id: 908, method: "tools/call", params: { name: "whoami", arguments: { pad: "x".repeat(5_000_000) } } }),
    ];
    for (const line of hostile) send(line);
    send(JSON.stringify({ jsonrpc: "2.0", id: 2, method: "tools/call", params: { name: "whoami", arguments: {} } }));
    const t0 = Date.now();
    const ok = await waitFor(2);
    expect(Date.now() - t0).toBeLessThan(30_000); // generous: the session was not stuck behind the hostile lines
    expect(ok.result.structuredContent.id).toBe(a.id);
    for (const id of [901, 902, 903, 904]) expect((await waitFor(id)).error, String(id)).toBeDefined();
    // A "__proto__" key is dropped by the MCP layer's parse (it never becomes a prototype): whoami as usual.
    expect((await waitFor(906)).result.content[0].text).toMatch(/^(denied: invalid_arguments: |You are )/);
    expect((await waitFor(908)).result.content[0].text).toMatch(/^denied: invalid_arguments: /);
    // Every line the server wrote is JSON-RPC; nothing else ever reaches stdout.
    for (const line of out.split("\n").filter((l) => l.trim())) expect(JSON.parse(line).jsonrpc).toBe("2.0");
    expect(proc.exitCode).toBeNull();
    proc.stdin.end();
    await new Promise((r) => proc.once("exit", r));
    expect(h.json(["audit", "verify", a.id]).ok).toBe(true);
  });

  it("HTTP: oversized, truncated, deeply nested, batched and malformed requests are refused while two sessions carry on", { timeout: 120_000 }, async () => {
    const h = makeHome();
    const a = h.createIdentity({ channels: "" });
    const b = h.createIdentity({ channels: "" });
    const server = await startHttpServer(h);
    try {
      const sa = await httpClient(server.url, a.token);
      const sb = await httpClient(server.url, b.token);
      const sid = sa.transport.sessionId!;
      const headers = { "content-type": "application/json", accept: "application/json, text/event-stream", authorization: `Bearer ${a.token}` };
      const post = (body: string | Buffer, extra: Record<string, string> = {}) =>
        fetch(server.url, { method: "POST", headers: { ...headers, ...extra }, body }).then(async (r) => (await r.arrayBuffer(), r.status));
      /** A request that promises more body than it sends, then stops. */
      const truncated = () =>
        new Promise<string>((resolve) => {
          const req = request(server.url, { method: "POST", headers: { ...headers, "content-length": "100000" } }, (res) => resolve(String(res.statusCode)));
          req.on("error", () => resolve("reset"));
          req.on("close", () => resolve("reset"));
          req.write('{"jsonrpc":"2.0","id":1,"method":"tools/li');
          setTimeout(() => req.destroy(), 300);
        });
      const batch = JSON.stringify(Array.from({ length: 300 }, (_, i) => ({ jsonrpc: "2.0", id: i, method: "tools/call", params: { name: "whoami", arguments: {} } })));
      const hostile = [
        () => post(Buffer.alloc(8 * 1024 * 1024, 0x7b)),
        () => post("x".repeat(3 * 1024 * 1024)),
        () => post("[".repeat(300_000) + "]".repeat(300_000)),
        () => post('{"a":'.repeat(100_000) + "1" + "}".repeat(100_000), { "mcp-session-id": sid }),
        () => post(batch, { "mcp-session-id": sid }),
        () => post("{not json", { "mcp-session-id": sid }),
        () => post(JSON.stringify({ jsonrpc: "2.0", id: 1, method: "tools/call", params: { name: "whoami", arguments: "x" } }), { "mcp-session-id": sid }),
        () => post(JSON.stringify({ jsonrpc: "2.0", id: 1, method: "tools/list" }), { "mcp-session-id": sid, "content-type": "text/plain" }),
        () => post("\u0000".repeat(1000), { "mcp-session-id": sid }),
        () => post(JSON.stringify({ jsonrpc: "2.0", id: 1, method: "tools/list" }), { "mcp-session-id": "../../etc/passwd" }),
        truncated,
      ];
      const t0 = Date.now();
      const during = Promise.all(Array.from({ length: 10 }, () => sb.client.callTool({ name: "whoami", arguments: {} })));
      const statuses = await Promise.all([...hostile, ...hostile].map((f) => f()));
      const fine = await during;
      expect(Date.now() - t0).toBeLessThan(60_000); // generous: nothing hung
      for (const s of statuses) expect(s === "reset" || Number(s) < 500, `status ${s}`).toBe(true);
      expect(statuses.slice(0, 2).map(Number)).toEqual([413, 413]);
      for (const r of fine) expect((r.structuredContent as any).id).toBe(b.id);
      // Both sessions still answer, as themselves.
      expect(((await sa.client.callTool({ name: "whoami", arguments: {} })).structuredContent as any).id).toBe(a.id);
      expect(((await sb.client.callTool({ name: "whoami", arguments: {} })).structuredContent as any).id).toBe(b.id);
      await sa.client.close();
      await sb.client.close();
      expect(server.proc.exitCode).toBeNull();
    } finally {
      await server.stop();
    }
    const v = h.json(["audit", "verify"]);
    expect(v.ok).toBe(true);
  });
});
