import { mkdtemp, readdir, readFile, rm, stat } from "node:fs/promises";
import { createServer, type AddressInfo } from "node:net";
import { tmpdir } from "node:os";
import path from "node:path";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import {
  buildSayTwiml,
  createTelephonyProvider,
  escapeXmlText,
  rewriteOrigin,
  telephonyFrom,
} from "../src/providers/telephony.js";
import { ProviderError } from "../src/providers/types.js";
import { parseConfig } from "../src/config.js";
import { startTwilioServer, type TestTwilioServer } from "./support/twilio.js";

const FAST = 500;
const SID = "AC" + "0123456789abcdef".repeat(2);
const TOKEN = "test-auth-token-0123456789";
const FROM = "+14155550100";
const TO = "+14155550123";

let home: string;
let outboxDir: string;
const servers: TestTwilioServer[] = [];

beforeEach(async () => {
  home = await mkdtemp(path.join(tmpdir(), "sigil-tel-"));
  outboxDir = path.join(home, "outbox");
});
afterEach(async () => {
  await Promise.all(servers.splice(0).map((s) => s.close()));
  await rm(home, { recursive: true, force: true });
});

async function twilioServer(): Promise<TestTwilioServer> {
  const s = await startTwilioServer({ accountSid: SID, authToken: TOKEN });
  servers.push(s);
  return s;
}

function twilioProvider(apiUrl: string, timeoutMs = FAST) {
  return createTelephonyProvider({ outboxDir, timeoutMs, twilio: { accountSid: SID, authToken: TOKEN, apiUrl } });
}

async function expectProviderError(p: Promise<unknown>, kind: ProviderError["kind"]): Promise<ProviderError> {
  const err = await p.then(
    () => undefined,
    (e: unknown) => e,
  );
  expect(err).toBeInstanceOf(ProviderError);
  const pe = err as ProviderError;
  expect(pe.kind).toBe(kind);
  expect(pe.publicMessage).not.toMatch(/127\.0\.0\.1|localhost|\/tmp|at \w+ \(/);
  expect(pe.publicMessage).not.toContain(TOKEN);
  expect(pe.publicMessage).not.toContain(SID);
  return pe;
}

async function freePort(): Promise<number> {
  const srv = createServer();
  await new Promise<void>((r) => srv.listen(0, "127.0.0.1", r));
  const port = (srv.address() as AddressInfo).port;
  await new Promise<void>((r) => srv.close(() => r()));
  return port;
}

describe("TwiML", () => {
  it("escapes the message as text and strips control characters", () => {
    expect(escapeXmlText(`a&b<c>d"e'f`)).toBe("a&amp;b&lt;c&gt;d&quot;e&apos;f");
    expect(escapeXmlText("x\u0000y\u0007z\u001b\u007f!")).toBe("xyz!");
    expect(escapeXmlText("line1\nline2")).toBe("line1\nline2");
    expect(buildSayTwiml("<Play>http://evil</Play>")).toBe(
      '<?xml version="1.0" encoding="UTF-8"?><Response><Say>&lt;Play&gt;http://evil&lt;/Play&gt;</Say></Response>',
    );
    expect(buildSayTwiml("]]></Say><Dial>+19005550000</Dial><Say>")).not.toMatch(/<Dial>/);
  });

  it("rewrites only the origin", () => {
    expect(rewriteOrigin(`https://api.twilio.com/2010-04-01/Accounts/${SID}/Messages.json`, "http://127.0.0.1:9999")).toBe(
      `http://127.0.0.1:9999/2010-04-01/Accounts/${SID}/Messages.json`,
    );
    expect(rewriteOrigin("https://api.twilio.com/2010-04-01/x.json?a=1", "https://tw.example/prefix/")).toBe(
      "https://tw.example/prefix/2010-04-01/x.json?a=1",
    );
  });
});

describe("outbox telephony provider", () => {
  it("writes one .json per SMS and per call (0600 in a 0700 dir)", async () => {
    const provider = createTelephonyProvider({ outboxDir });
    expect(provider.name).toBe("outbox");
    const sms = await provider.sendSms({ from: FROM, to: TO, body: "Your code is 1234" });
    const call = await provider.placeCall({ from: FROM, to: TO, message: "Hello <Play>http://evil</Play> & bye" });
    expect(sms.providerId).toMatch(/^SM[0-9a-f]{32}$/);
    expect(call.providerId).toMatch(/^CA[0-9a-f]{32}$/);

    const files = (await readdir(outboxDir)).filter((f) => !f.startsWith(".")).sort();
    expect(files).toHaveLength(2);
    expect(((await stat(outboxDir)).mode & 0o777).toString(8)).toBe("700");
    const records = [];
    for (const f of files) {
      expect(f).toMatch(/^\d{4}-\d\d-\d\dT\d\d-\d\d-\d\d\.\d{3}Z-[0-9a-f]{16}\.json$/);
      expect(((await stat(path.join(outboxDir, f))).mode & 0o777).toString(8)).toBe("600");
      records.push(JSON.parse(await readFile(path.join(outboxDir, f), "utf8")) as Record<string, string>);
    }
    const smsRec = records.find((r) => r.kind === "sms")!;
    const callRec = records.find((r) => r.kind === "call")!;
    expect(smsRec).toEqual({ kind: "sms", from: FROM, to: TO, body: "Your code is 1234", createdAt: expect.any(String), id: sms.providerId });
    expect(new Date(smsRec.createdAt!).toISOString()).toBe(smsRec.createdAt);
    expect(callRec).toEqual({
      kind: "call",
      from: FROM,
      to: TO,
      message: "Hello <Play>http://evil</Play> & bye",
      twiml: '<?xml version="1.0" encoding="UTF-8"?><Response><Say>Hello &lt;Play&gt;http://evil&lt;/Play&gt; &amp; bye</Say></Response>',
      createdAt: expect.any(String),
      id: call.providerId,
    });
  });

  it("refuses malformed numbers and bodies, writing nothing", async () => {
    const provider = createTelephonyProvider({ outboxDir });
    for (const bad of ["14155550123", "+0123", "+1415555012345678", "+1 415 555 0123", "+14155550123;ext=1", "+14155550123\n"]) {
      await expectProviderError(provider.sendSms({ from: FROM, to: bad, body: "x" }), "rejected");
      await expectProviderError(provider.placeCall({ from: bad, to: TO, message: "x" }), "rejected");
    }
    await expectProviderError(provider.sendSms({ from: FROM, to: TO, body: "" }), "rejected");
    await expectProviderError(provider.sendSms({ from: FROM, to: TO, body: "x".repeat(1601) }), "rejected");
    await expectProviderError(provider.placeCall({ from: FROM, to: TO, message: "  " }), "rejected");
    await expectProviderError(provider.placeCall({ from: FROM, to: TO, message: "<".repeat(1000) }), "rejected");
    await expect(readdir(outboxDir)).rejects.toThrow();
  });
});

describe("Twilio telephony provider", () => {
  it("sends an SMS: path, Basic auth, form fields From/To/Body", async () => {
    const server = await twilioServer();
    const provider = twilioProvider(server.url);
    expect(provider.name).toBe("twilio");
    const res = await provider.sendSms({ from: FROM, to: TO, body: "Hi & <b>bye</b> ünïcode" });
    expect(res.providerId).toMatch(/^SM[0-9a-f]{32}$/);
    expect(server.requests).toHaveLength(1);
    const req = server.requests[0]!;
    expect(req.method).toBe("POST");
    expect(req.path).toBe(`/2010-04-01/Accounts/${SID}/Messages.json`);
    expect(req.basicAuth).toEqual({ user: SID, pass: TOKEN });
    expect(req.authorized).toBe(true);
    expect(req.contentType).toMatch(/^application\/x-www-form-urlencoded/);
    expect(req.form).toEqual({ From: FROM, To: TO, Body: "Hi & <b>bye</b> ünïcode" });
    expect(await readdir(outboxDir).catch(() => [])).toEqual([]);
  });

  it("places a call with server-built TwiML: From/To/Twiml, the message escaped as text", async () => {
    const server = await twilioServer();
    const res = await twilioProvider(server.url).placeCall({ from: FROM, to: TO, message: "<Play>http://evil</Play>" });
    expect(res.providerId).toMatch(/^CA[0-9a-f]{32}$/);
    const req = server.requests[0]!;
    expect(req.path).toBe(`/2010-04-01/Accounts/${SID}/Calls.json`);
    expect(req.authorized).toBe(true);
    expect(Object.keys(req.form).sort()).toEqual(["From", "To", "Twiml"]);
    expect(req.form.From).toBe(FROM);
    expect(req.form.To).toBe(TO);
    expect(req.form.Twiml).toBe(
      '<?xml version="1.0" encoding="UTF-8"?><Response><Say>&lt;Play&gt;http://evil&lt;/Play&gt;</Say></Response>',
    );
    expect(req.form.Url).toBeUndefined();
    expect(req.form.SendDigits).toBeUndefined();
  });

  it("400 with a Twilio error → rejected, naming Twilio's code but not the body", async () => {
    const server = await twilioServer();
    server.setMode({ kind: "error", status: 400, code: 21211, message: "The 'To' number +14155550123 is not a valid phone number." });
    const err = await expectProviderError(twilioProvider(server.url).sendSms({ from: FROM, to: TO, body: "x" }), "rejected");
    expect(err.publicMessage).toContain("21211");
    expect(err.publicMessage).not.toContain("not a valid phone number");
    await expectProviderError(twilioProvider(server.url).placeCall({ from: FROM, to: TO, message: "x" }), "rejected");
  });

  it("401 (wrong credentials) → unavailable", async () => {
    const server = await twilioServer();
    const provider = createTelephonyProvider({ outboxDir, timeoutMs: FAST, twilio: { accountSid: SID, authToken: "wrong-token", apiUrl: server.url } });
    const err = await expectProviderError(provider.sendSms({ from: FROM, to: TO, body: "x" }), "unavailable");
    expect(err.publicMessage).toContain("20003");
    expect(err.publicMessage).not.toContain("wrong-token");
    expect(server.requests[0]?.authorized).toBe(false);
  });

  it("500 → unknown; 502 → unknown", async () => {
    const server = await twilioServer();
    server.setMode({ kind: "error", status: 500, code: 20500, message: "Internal Server Error" });
    await expectProviderError(twilioProvider(server.url).sendSms({ from: FROM, to: TO, body: "x" }), "unknown");
    server.setMode({ kind: "status", status: 502, body: "Bad Gateway" });
    await expectProviderError(twilioProvider(server.url).placeCall({ from: FROM, to: TO, message: "x" }), "unknown");
  });

  it("503 with Twilio's JSON, and 429 → unavailable; 503 without it → unknown", async () => {
    const server = await twilioServer();
    server.setMode({ kind: "error", status: 503, code: 20503, message: "Service Unavailable" });
    await expectProviderError(twilioProvider(server.url).sendSms({ from: FROM, to: TO, body: "x" }), "unavailable");
    server.setMode({ kind: "error", status: 429, code: 20429, message: "Too Many Requests" });
    await expectProviderError(twilioProvider(server.url).sendSms({ from: FROM, to: TO, body: "x" }), "unavailable");
    expect(server.requests).toHaveLength(2); // no automatic retry
    server.setMode({ kind: "status", status: 503, body: "<html>upstream unavailable</html>", contentType: "text/html" });
    await expectProviderError(twilioProvider(server.url).sendSms({ from: FROM, to: TO, body: "x" }), "unknown");
  });

  it("garbage 2xx body → unknown; 2xx JSON without a sid → unknown", async () => {
    const server = await twilioServer();
    server.setMode({ kind: "garbage" });
    await expectProviderError(twilioProvider(server.url).sendSms({ from: FROM, to: TO, body: "x" }), "unknown");
    server.setMode({ kind: "status", status: 201, body: JSON.stringify({ status: "queued" }), contentType: "application/json" });
    await expectProviderError(twilioProvider(server.url).placeCall({ from: FROM, to: TO, message: "x" }), "unknown");
  });

  it("no answer → unknown within the timeout", async () => {
    const server = await twilioServer();
    server.setMode({ kind: "hang" });
    const t0 = Date.now();
    const err = await expectProviderError(twilioProvider(server.url).sendSms({ from: FROM, to: TO, body: "x" }), "unknown");
    expect(Date.now() - t0).toBeLessThan(30_000); // generous: the server never answers, so only the timeout ends it
    expect(err.publicMessage).toMatch(/in time/);
    expect(server.requests).toHaveLength(1);
  });

  it("an endlessly slow answer → unknown: an overall deadline ends it, not an idle timer", async () => {
    const server = await twilioServer();
    server.setMode({ kind: "trickle" });
    const t0 = Date.now();
    await expectProviderError(twilioProvider(server.url).sendSms({ from: FROM, to: TO, body: "x" }), "unknown");
    expect(Date.now() - t0).toBeLessThan(30_000); // generous: the trickle never stops, so only an overall deadline (not an idle timer) ends it
  });

  it("connection dropped after the request → unknown", async () => {
    const server = await twilioServer();
    server.setMode({ kind: "drop" });
    await expectProviderError(twilioProvider(server.url).placeCall({ from: FROM, to: TO, message: "x" }), "unknown");
  });

  it("connection refused → unavailable", async () => {
    const port = await freePort();
    const err = await expectProviderError(twilioProvider(`http://127.0.0.1:${port}`).sendSms({ from: FROM, to: TO, body: "x" }), "unavailable");
    expect(err.publicMessage).not.toContain(String(port));
  });

  it("refuses malformed input before any request", async () => {
    const server = await twilioServer();
    await expectProviderError(twilioProvider(server.url).sendSms({ from: FROM, to: "+1415555 0123", body: "x" }), "rejected");
    expect(server.requests).toHaveLength(0);
  });
});

describe("environment", () => {
  it("the configuration selects Twilio with both credentials, the outbox with none", async () => {
    const telephonyFromEnv = (env: Record<string, string>, dir: string) => telephonyFrom(parseConfig(env), dir);
    expect(telephonyFromEnv({}, outboxDir).name).toBe("outbox");
    expect(() => telephonyFromEnv({ TWILIO_ACCOUNT_SID: SID }, outboxDir)).toThrow(/both/);
    expect(() => telephonyFromEnv({ TWILIO_ACCOUNT_SID: "XX123", TWILIO_AUTH_TOKEN: "t" }, outboxDir)).toThrow(/AC/);
    expect(() => telephonyFromEnv({ TWILIO_ACCOUNT_SID: SID, TWILIO_AUTH_TOKEN: "t", SIGIL_TWILIO_API_URL: "ftp://x" }, outboxDir)).toThrow(/SIGIL_TWILIO_API_URL/);

    const server = await twilioServer();
    const provider = telephonyFromEnv(
      { TWILIO_ACCOUNT_SID: SID, TWILIO_AUTH_TOKEN: TOKEN, SIGIL_TWILIO_API_URL: server.url, SIGIL_PROVIDER_TIMEOUT_MS: "800" },
      outboxDir,
    );
    expect(provider.name).toBe("twilio");
    await provider.sendSms({ from: FROM, to: TO, body: "via env" });
    expect(server.requests[0]?.form.Body).toBe("via env");
  });
});
