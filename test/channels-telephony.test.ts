/**
 * send_sms and place_call end to end: the built `sigil serve` over stdio, a Twilio-compatible
 * REST server on loopback (path, Basic auth and form fields checked), the outbox, the audit log.
 */
import { readFileSync } from "node:fs";
import { afterAll, afterEach, describe, expect, it } from "vitest";
import { cleanupHomes, makeHome, stdioClient, text, type Home, type Identity, hints } from "./support/home.js";
import { startTwilioServer, type TestTwilioServer } from "./support/twilio.js";
import { auditHasher, auditText, outboxFiles, toolEntries } from "./support/channels.js";

const SID = "AC" + "0123456789abcdef".repeat(2);
const TOKEN = "twilio-test-auth-token-5f2c";
const OWN = "+14155550100";

const servers: TestTwilioServer[] = [];
const closers: Array<() => Promise<unknown>> = [];
afterEach(async () => {
  await Promise.all(closers.splice(0).map((c) => c().catch(() => undefined)));
  await Promise.all(servers.splice(0).map((s) => s.close()));
});
afterAll(cleanupHomes);

async function twilio(): Promise<TestTwilioServer> {
  const s = await startTwilioServer({ accountSid: SID, authToken: TOKEN });
  servers.push(s);
  return s;
}

const twilioEnv = (s: TestTwilioServer, extra: NodeJS.ProcessEnv = {}): NodeJS.ProcessEnv => ({
  TWILIO_ACCOUNT_SID: SID,
  TWILIO_AUTH_TOKEN: TOKEN,
  SIGIL_TWILIO_API_URL: s.url,
  ...extra,
});

async function session(home: Home, who: Identity, env: NodeJS.ProcessEnv = {}) {
  const s = await stdioClient(home, who.token, { env });
  closers.push(() => s.client.close());
  return s;
}

const POLICY = { allowedPhoneCountries: ["US", "CA"], allowedPhoneNumbers: ["+442079460123", "+19005550123"] };

describe("send_sms and place_call act from the identity's own number", () => {
  it("send_sms: Twilio gets exactly one authenticated request with From = own number, To = the validated number, Body", async () => {
    const server = await twilio();
    const home = makeHome();
    const a = home.createIdentity({ channels: "sms", policy: POLICY, phone: OWN });
    const { client } = await session(home, a, twilioEnv(server));
    const body = "Your order 7731 ships today. Reply STOP to opt out.";
    const r = await client.callTool({ name: "send_sms", arguments: { to: "+16135550123", body } });
    expect(r.isError, text(r)).toBeFalsy();
    const sc = r.structuredContent as any;
    expect(sc.sid).toMatch(/^SM[0-9a-f]{32}$/);
    expect(sc).toMatchObject({ status: "accepted", from: OWN, to: "+16135550123" });
    expect(server.requests).toHaveLength(1);
    const req = server.requests[0]!;
    expect(req).toMatchObject({ method: "POST", path: `/2010-04-01/Accounts/${SID}/Messages.json`, resource: "sms", authorized: true, basicAuth: { user: SID, pass: TOKEN } });
    expect(req.contentType).toMatch(/^application\/x-www-form-urlencoded/);
    expect(req.form).toEqual({ From: OWN, To: "+16135550123", Body: body });

    const hash = await auditHasher(home);
    const e = toolEntries(home, a.id, "send_sms");
    expect(e.map((x) => [x.phase, x.decision])).toEqual([["intent", "allow"], ["result", "ok"]]);
    expect(e[0]!.args).toEqual({ to: "+16135550123", body: hash(body) });
    expect(e[0]!.policyVersion).toBe(1);
    expect(e[1]!.providerId).toBe(sc.sid);
    expect(e[1]!.seq).toBe(sc.receipt.seq);
    expect(auditText(home, a.id)).not.toContain("ships today");
    expect(home.json(["audit", "verify", a.id]).ok).toBe(true);
  });

  it("place_call: the spoken message goes as server-built TwiML (escaped, no Url), never as caller markup", async () => {
    const server = await twilio();
    const home = makeHome();
    const a = home.createIdentity({ channels: "voice", policy: POLICY, phone: OWN });
    const { client } = await session(home, a, twilioEnv(server));
    const message = `Hello </Say><Play>http://127.0.0.1:1/evil.mp3</Play><Dial>+19005550123</Dial><Say> & goodbye`;
    const r = await client.callTool({ name: "place_call", arguments: { to: "+442079460123", message } });
    expect(r.isError, text(r)).toBeFalsy();
    const sc = r.structuredContent as any;
    expect(sc.sid).toMatch(/^CA[0-9a-f]{32}$/);
    expect(sc).toMatchObject({ status: "accepted", from: OWN, to: "+442079460123" });
    expect(server.requests).toHaveLength(1);
    const req = server.requests[0]!;
    expect(req).toMatchObject({ path: `/2010-04-01/Accounts/${SID}/Calls.json`, resource: "call", authorized: true });
    expect(Object.keys(req.form).sort()).toEqual(["From", "To", "Twiml"]);
    expect(req.form.From).toBe(OWN);
    expect(req.form.To).toBe("+442079460123");
    const twiml = req.form.Twiml!;
    expect(twiml).toMatch(/^<\?xml version="1\.0" encoding="UTF-8"\?><Response><Say>[^<]*<\/Say><\/Response>$/);
    expect(twiml).toContain("&lt;/Say&gt;&lt;Play&gt;http://127.0.0.1:1/evil.mp3&lt;/Play&gt;");
    expect(twiml).toContain("&amp; goodbye");
    const hash = await auditHasher(home);
    const e = toolEntries(home, a.id, "place_call");
    expect(e[0]!.args).toEqual({ to: "+442079460123", message: hash(message) });
    expect(e[1]!.providerId).toBe(sc.sid);
    expect(auditText(home, a.id)).not.toContain("goodbye");
  });

  it("outbox by default: one .json per SMS and per call under $SIGIL_HOME/outbox", async () => {
    const home = makeHome();
    const a = home.createIdentity({ channels: "sms,voice", policy: POLICY, phone: OWN });
    const { client } = await session(home, a);
    const s = await client.callTool({ name: "send_sms", arguments: { to: "+14155550123", body: "offline" } });
    const c = await client.callTool({ name: "place_call", arguments: { to: "+14155550123", message: "spoken offline" } });
    expect([s.isError, c.isError]).toEqual([undefined, undefined]);
    expect((s.structuredContent as any).status).toBe("outbox");
    const files = outboxFiles(home, "json").map((f) => JSON.parse(readFileSync(f, "utf8")));
    expect(files).toHaveLength(2);
    const sms = files.find((f) => f.kind === "sms");
    const call = files.find((f) => f.kind === "call");
    expect(sms).toMatchObject({ from: OWN, to: "+14155550123", body: "offline", id: (s.structuredContent as any).sid });
    expect(call).toMatchObject({ from: OWN, to: "+14155550123", message: "spoken offline", id: (c.structuredContent as any).sid });
    expect(call.twiml).toContain("<Say>spoken offline</Say>");
  });

  it("an identity with the sms or voice channel and no number of its own is refused at creation (CLI and admin tool), and nothing is created", async () => {
    const home = makeHome();
    for (const channels of ["sms", "voice", "sms,voice", "email,sms"]) {
      const r = home.cli(["identity", "create", "--name", "numberless", "--channels", channels, "--json"]);
      expect(r.code, channels).toBe(1);
      expect(r.stdout).toBe("");
      expect(r.stderr.trim().split("\n")).toHaveLength(1);
      expect(r.stderr).toMatch(/channels? needs? the identity's own number: give phone \(--phone\) as E\.164/);
    }
    const { client } = await stdioClient(home, home.adminToken);
    closers.push(() => client.close());
    const viaTool = await client.callTool({ name: "create_identity", arguments: { name: "numberless", channels: ["voice"], policy: POLICY } });
    expect(viaTool.isError).toBe(true);
    expect(text(viaTool)).toMatch(/^denied: invalid_arguments: the voice channel needs the identity's own number/);
    expect(home.json(["identity", "list"])).toEqual([]);
    // With a number, the same identity is issued and its tools are listed.
    const a = home.createIdentity({ channels: "sms,voice", phone: OWN, policy: POLICY });
    expect(home.json(["identity", "show", a.id]).phone).toBe(OWN);
  });

  it("channels select the tools: sms lists send_sms and the inbox readers, voice place_call only", async () => {
    const home = makeHome();
    const s = home.createIdentity({ channels: "sms", policy: POLICY, phone: OWN });
    const v = home.createIdentity({ channels: "voice", policy: POLICY, phone: OWN });
    const ss = await session(home, s);
    const sv = await session(home, v);
    const names = async (c: typeof ss) => (await c.client.listTools()).tools.map((t) => t.name).filter((n) => n !== "whoami").sort();
    expect(await names(ss)).toEqual(["list_messages", "read_message", "send_sms"]); // the inbox tools belong to email and sms
    expect(await names(sv)).toEqual(["place_call"]);
    expect(text(await ss.client.callTool({ name: "place_call", arguments: { to: "+14155550123", message: "x" } }))).toMatch(/^denied: tool_not_available: /);
  });
});

describe("hostile destinations reach no one", () => {
  // [destination, expected reason]
  const HOSTILE: Array<readonly [string, string]> = [
    ["4155550123", "invalid_phone"],
    ["14155550123", "invalid_phone"],
    ["+1 415 555 0123", "invalid_phone"],
    ["+1-415-555-0123", "invalid_phone"],
    ["+1(415)5550123", "invalid_phone"],
    ["+1.415.555.0123", "invalid_phone"],
    ["tel:+14155550123", "invalid_phone"],
    ["sip:alice@evil.com", "invalid_phone"],
    ["client:alice", "invalid_phone"],
    ["+14155550123;ext=1", "invalid_phone"],
    ["+14155550123x12", "invalid_phone"],
    ["+14155550123,1234", "invalid_phone"], // DTMF pause digits
    ["+14155550123w1234", "invalid_phone"],
    ["+14155550123#", "invalid_phone"],
    ["+14155550123*9", "invalid_phone"],
    ["+1415555012\uff13", "invalid_phone"], // fullwidth digit
    ["+\u0661\u0664\u0661\u0665\u0665\u0665\u0665\u0660\u0661\u0662\u0663", "invalid_phone"], // Arabic-Indic digits
    ["++14155550123", "invalid_phone"],
    ["+014155550123", "invalid_phone"],
    ["0014155550123", "invalid_phone"],
    ["+14155550123\n", "invalid_phone"],
    ["+14155550123\r\n+19005550123", "invalid_phone"],
    [" +14155550123", "invalid_phone"],
    ["+14155550123 ", "invalid_phone"],
    ["+14155550123\u200b", "invalid_phone"],
    ["+\u202e14155550123", "invalid_phone"],
    ["+1415555O123", "invalid_phone"], // letter O
    ["+1-800-FLOWERS", "invalid_phone"],
    ["+", "invalid_phone"],
    ["+1415555", "invalid_phone"],
    ["+1234567890123456", "invalid_phone"],
    ["+1415555012", "invalid_phone"], // too short to be valid
    ["+19765550123", "invalid_phone"], // not an assigned range
    ["+14155550123,+19005550123", "invalid_phone"],
    ["+19005550123", "premium_rate"], // US 900, even though listed in allowedPhoneNumbers
    ["+19002345678", "premium_rate"],
    ["+449098790000", "premium_rate"], // UK 09
    ["+448712345678", "premium_rate"], // UK 087 shared cost
    ["+448441234567", "premium_rate"], // UK 084 shared cost
    ["+33899123456", "premium_rate"], // FR 089
    ["+4915012345678", "phone_not_allowed"], // DE mobile: country not allowed
    ["+442079460124", "phone_not_allowed"], // GB, not the listed number
    ["+88213400000", "phone_not_allowed"], // international network, no country
    ["+80012345678", "phone_not_allowed"], // universal freephone, no country
    ["+390899123456", "phone_not_allowed"],
    ["", "invalid_arguments"],
    ["+1" + "4".repeat(70), "invalid_arguments"],
  ];

  it(`a table of ${HOSTILE.length} hostile numbers, for SMS and calls: each refused with its reason, audited as denied, and the Twilio server received nothing`, async () => {
    const server = await twilio();
    const home = makeHome();
    const a = home.createIdentity({ channels: "sms,voice", policy: POLICY, phone: OWN });
    const { client } = await session(home, a, twilioEnv(server));
    const seen: Record<string, string[]> = { send_sms: [], place_call: [] };
    for (const [to, reason] of HOSTILE) {
      for (const [name, args] of [["send_sms", { to, body: "hi" }], ["place_call", { to, message: "hi" }]] as const) {
        const r = await client.callTool({ name, arguments: args });
        expect(r.isError, `${name} ${JSON.stringify(to)}`).toBe(true);
        expect(text(r), `${name} ${JSON.stringify(to)}`).toMatch(new RegExp(`^denied: ${reason}: `));
        expect(text(r)).not.toMatch(/[\r\n\u200b\u202e]/);
        seen[name]!.push(reason);
      }
    }
    expect(server.requests).toHaveLength(0);
    for (const name of ["send_sms", "place_call"]) {
      const e = toolEntries(home, a.id, name);
      expect(e.every((x) => x.phase === "call" && x.decision === "deny")).toBe(true);
      expect(e.map((x) => x.reason)).toEqual(seen[name]);
    }
    expect(outboxFiles(home, "json")).toHaveLength(0);
    // The same client still reaches allowed numbers: the refusals were about the numbers.
    const ok = await client.callTool({ name: "send_sms", arguments: { to: "+442079460123", body: "hi" } });
    expect(ok.isError, text(ok)).toBeFalsy();
    expect(server.requests.map((r) => r.form.To)).toEqual(["+442079460123"]);
  });

  it("no phone keys in the policy: no SMS and no calls; unknown arguments (Url, Twiml, from, mediaUrl…) are refused", async () => {
    const server = await twilio();
    const home = makeHome();
    const none = home.createIdentity({ channels: "sms,voice", policy: { allowedDomains: ["example.com"] }, phone: OWN });
    const a = home.createIdentity({ channels: "sms,voice", policy: POLICY, phone: OWN });
    const s0 = await session(home, none, twilioEnv(server));
    expect(text(await s0.client.callTool({ name: "send_sms", arguments: { to: "+14155550123", body: "x" } }))).toMatch(/^denied: phone_not_allowed: /);
    expect(text(await s0.client.callTool({ name: "place_call", arguments: { to: "+14155550123", message: "x" } }))).toMatch(/^denied: phone_not_allowed: /);
    const { client } = await session(home, a, twilioEnv(server));
    for (const extra of ["from", "From", "url", "Url", "twiml", "Twiml", "mediaUrl", "statusCallback", "sendDigits", "record", "applicationSid", "messagingServiceSid"]) {
      const sms = await client.callTool({ name: "send_sms", arguments: { to: "+14155550123", body: "x", [extra]: "http://127.0.0.1:1/x" } });
      expect(text(sms)).toBe(`denied: invalid_arguments: unknown argument(s): ${extra}.`);
      const call = await client.callTool({ name: "place_call", arguments: { to: "+14155550123", message: "x", [extra]: "<Response><Dial>+19005550123</Dial></Response>" } });
      expect(text(call)).toBe(`denied: invalid_arguments: unknown argument(s): ${extra}.`);
    }
    for (const args of [{ to: "+14155550123", body: "" }, { to: "+14155550123", body: "   " }, { to: "+14155550123", body: "x".repeat(1601) }, { to: ["+14155550123"], body: "x" }, { to: 14155550123, body: "x" }]) {
      expect(text(await client.callTool({ name: "send_sms", arguments: args }))).toMatch(/^denied: invalid_arguments: /);
    }
    for (const args of [{ to: "+14155550123", message: " \n " }, { to: "+14155550123", message: "x".repeat(3001) }, { to: "+14155550123", message: "&".repeat(1000) }]) {
      expect(text(await client.callTool({ name: "place_call", arguments: args }))).toMatch(/^denied: invalid_arguments: /);
    }
    expect(server.requests).toHaveLength(0);
  });
});

describe("provider failures and idempotency", () => {
  it("Twilio refuses → provider_rejected (audited failed, key freed); busy → provider_unavailable; 5xx → provider_unknown; nothing leaks", async () => {
    const server = await twilio();
    const home = makeHome();
    const a = home.createIdentity({ channels: "sms,voice", policy: POLICY, phone: OWN });
    const { client } = await session(home, a, twilioEnv(server, { SIGIL_PROVIDER_TIMEOUT_MS: "2000" }));
    server.setMode({ kind: "error", status: 400, code: 21211, message: "The 'To' number +14155550123 is not a valid phone number." });
    const rej = await client.callTool({ name: "send_sms", arguments: { to: "+14155550123", body: "x", idempotencyKey: "sms-1" } });
    expect(text(rej)).toMatch(/^error: provider_rejected: the telephony provider refused the SMS \(Twilio error 21211\); nothing was sent \(ref_[0-9a-f]+\)\.$/);
    server.setMode({ kind: "error", status: 429, code: 20429, message: "Too Many Requests" });
    const busy = await client.callTool({ name: "place_call", arguments: { to: "+14155550123", message: "x" } });
    expect(text(busy)).toMatch(/^error: provider_unavailable: /);
    server.setMode({ kind: "error", status: 500, code: 20500, message: "Internal" });
    const boom = await client.callTool({ name: "place_call", arguments: { to: "+14155550123", message: "y" } });
    expect(text(boom)).toMatch(/^error: provider_unknown: .*may or may not/);
    for (const r of [rej, busy, boom]) {
      expect(text(r)).not.toMatch(/127\.0\.0\.1|not a valid phone number|Too Many|Internal|AC0123|twilio-test/);
    }
    const results = [...toolEntries(home, a.id, "send_sms"), ...toolEntries(home, a.id, "place_call")].filter((e) => e.phase === "result");
    expect(results.map((e) => [e.tool, e.decision, e.reason])).toEqual([
      ["send_sms", "failed", "provider_rejected"],
      ["place_call", "failed", "provider_unavailable"],
      ["place_call", "unknown", "provider_unknown"],
    ]);
    expect(server.requests).toHaveLength(3);
    // A definite refusal frees the key: the retry goes out once.
    server.setMode({ kind: "ok" });
    const retry = await client.callTool({ name: "send_sms", arguments: { to: "+14155550123", body: "x", idempotencyKey: "sms-1" } });
    expect(retry.isError, text(retry)).toBeFalsy();
    expect(server.requests).toHaveLength(4);
  });

  it("a timeout after the request left → provider_unknown, audited unknown, not retried; the same key is then refused", async () => {
    const server = await twilio();
    server.setMode({ kind: "hang" });
    const home = makeHome();
    const a = home.createIdentity({ channels: "sms", policy: POLICY, phone: OWN });
    const { client } = await session(home, a, twilioEnv(server, { SIGIL_PROVIDER_TIMEOUT_MS: "300" }));
    const args = { to: "+14155550123", body: "did it go?", idempotencyKey: "hang-1" };
    const t0 = Date.now();
    const r = await client.callTool({ name: "send_sms", arguments: args });
    expect(Date.now() - t0).toBeLessThan(30_000); // generous: the server never answers, so only the 300 ms timeout ends the call
    expect(text(r)).toMatch(/^error: provider_unknown: the telephony provider did not answer in time; the SMS may or may not have been sent; it .*will not be retried/);
    await new Promise((res) => setTimeout(res, 700)); // long enough for any retry to have shown up
    expect(server.requests).toHaveLength(1);
    const again = await client.callTool({ name: "send_sms", arguments: args });
    expect(text(again)).toMatch(/^denied: outcome_unknown: /);
    expect(server.requests).toHaveLength(1);
    expect(toolEntries(home, a.id, "send_sms").map((e) => [e.phase, e.decision, e.reason ?? null])).toEqual([
      ["intent", "allow", null],
      ["result", "unknown", "provider_unknown"],
      ["call", "deny", "outcome_unknown"],
    ]);
  });

  it("idempotencyKey: a repeat returns the first sid and sends nothing; other arguments with the key are refused; keys are per tool", async () => {
    const server = await twilio();
    const home = makeHome();
    const a = home.createIdentity({ channels: "sms,voice", policy: POLICY, phone: OWN });
    const env = twilioEnv(server);
    const s1 = await session(home, a, env);
    const s2 = await session(home, a, env);
    const sms = { to: "+14155550123", body: "2FA code for Bob: 481516", idempotencyKey: "otp-42" };
    const first = await s1.client.callTool({ name: "send_sms", arguments: sms });
    expect(first.isError, text(first)).toBeFalsy();
    const again = await s2.client.callTool({ name: "send_sms", arguments: sms });
    expect(again.structuredContent).toEqual(first.structuredContent);
    expect(text(again)).toMatch(/^already done with this idempotencyKey/);
    for (const changed of [{ body: "2FA code for Bob: 000000" }, { to: "+14155550124" }]) {
      expect(text(await s1.client.callTool({ name: "send_sms", arguments: { ...sms, ...changed } }))).toMatch(/^denied: idempotency_conflict: /);
    }
    // The same key on another tool is that tool's own key.
    const call = await s1.client.callTool({ name: "place_call", arguments: { to: "+14155550123", message: "hello", idempotencyKey: "otp-42" } });
    expect(call.isError, text(call)).toBeFalsy();
    const callAgain = await s2.client.callTool({ name: "place_call", arguments: { to: "+14155550123", message: "hello", idempotencyKey: "otp-42" } });
    expect((callAgain.structuredContent as any).sid).toBe((call.structuredContent as any).sid);
    expect(server.requests.map((r) => r.resource)).toEqual(["sms", "call"]);
    // Concurrent duplicates from two processes: one request.
    const burst = { ...sms, idempotencyKey: "otp-43" };
    const rs = await Promise.all([s1, s2, s1, s2].map((s) => s.client.callTool({ name: "send_sms", arguments: burst })));
    expect(new Set(rs.map((r) => (r.structuredContent as any)?.sid)).size).toBe(1);
    expect(server.requests).toHaveLength(3);
    expect(home.json(["audit", "verify", a.id]).ok).toBe(true);
  });

  it("a secret read in this session cannot leave by SMS or call", async () => {
    const server = await twilio();
    const home = makeHome();
    const a = home.createIdentity({ channels: "sms,voice,vault", policy: { ...POLICY, allowedSecrets: ["pin"] }, phone: OWN });
    home.json(["secret", "put", a.id, "pin"], { input: "8675309-door" });
    const { client } = await session(home, a, twilioEnv(server));
    expect((await client.callTool({ name: "vault_get", arguments: { name: "pin" } })).isError).toBeFalsy();
    const b64 = Buffer.from("8675309-door").toString("base64");
    const r1 = await client.callTool({ name: "send_sms", arguments: { to: "+14155550123", body: `code 8675309-door` } });
    const r2 = await client.callTool({ name: "place_call", arguments: { to: "+14155550123", message: `spell ${b64}` } });
    for (const r of [r1, r2]) expect(text(r)).toMatch(/^denied: secret_exfiltration: /);
    expect(server.requests).toHaveLength(0);
    expect(auditText(home, a.id)).not.toContain("8675309");
  });
});
