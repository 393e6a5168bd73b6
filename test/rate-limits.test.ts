/**
 * Policy documents as the operator gives them (CLI --policy, create_identity, update_policy), the
 * policy version in audit entries, and `rateLimits` over rolling windows — held across two real
 * `sigil serve` processes sharing one home, and across the window edges with an injected clock.
 */
import { writeFileSync } from "node:fs";
import path from "node:path";
import { afterAll, afterEach, describe, expect, it } from "vitest";
import { cleanupHomes, makeHome, stdioClient, text, type Home, type Identity } from "./support/home.js";
import { startTwilioServer, type TestTwilioServer } from "./support/twilio.js";
import { outboxFiles, toolEntries } from "./support/channels.js";
import { openApp } from "../src/app.js";
import { callAgentTool, type AgentSession } from "../src/pipeline/agent-call.js";
import { sendSms } from "../tools/send-sms.js";

const SID = "AC" + "fedcba9876543210".repeat(2);
const TOKEN = "twilio-rate-token";
const OWN = "+14155550100";

const servers: TestTwilioServer[] = [];
const closers: Array<() => Promise<unknown>> = [];
afterEach(async () => {
  await Promise.all(closers.splice(0).map((c) => c().catch(() => undefined)));
  await Promise.all(servers.splice(0).map((s) => s.close()));
});
afterAll(cleanupHomes);

async function session(home: Home, token: string, env: NodeJS.ProcessEnv = {}) {
  const s = await stdioClient(home, token, { env });
  closers.push(() => s.client.close());
  return s;
}

async function twilio(): Promise<TestTwilioServer> {
  const s = await startTwilioServer({ accountSid: SID, authToken: TOKEN });
  servers.push(s);
  return s;
}

describe("policy documents are validated wherever they come in", () => {
  const BAD: Array<readonly [unknown, RegExp]> = [
    [{ allowedDomains: ["example.com"], maxRecipient: 3 }, /^policy: unknown key "maxRecipient"$/],
    [{ rateLimits: { send_sms: { perHour: 3 } } }, /^policy\.rateLimits\.send_sms: unknown key "perHour"$/],
    [{ rateLimits: { send_sms: { perMinute: 0 } } }, /^policy\.rateLimits\.send_sms\.perMinute: must be a positive integer$/],
    [{ rateLimits: { send_sms: { perDay: 1.5 } } }, /^policy\.rateLimits\.send_sms\.perDay: must be a positive integer$/],
    [{ rateLimits: { send_sms: {} } }, /^policy\.rateLimits\.send_sms: must set perMinute and\/or perDay$/],
    [{ rateLimits: { "Send-SMS": { perMinute: 1 } } }, /^policy\.rateLimits.*must name an agent tool/],
    [{ rateLimits: [] }, /^policy\.rateLimits: must be an object/],
    [{ maxRecipients: 0 }, /^policy\.maxRecipients: must be an integer between 1 and 1000$/],
    [{ allowedDomains: "example.com" }, /^policy\.allowedDomains: must be an array of domain names$/],
    [{ allowedDomains: ["ex\u0430mple.com"] }, /^policy\.allowedDomains\[0\]: is not a valid domain: .*lookalike/],
    [{ allowedDomains: ["evil.com>"] }, /^policy\.allowedDomains\[0\]: is not a valid domain/],
    [{ allowedPhoneNumbers: ["+1 415 555 0100"] }, /^policy\.allowedPhoneNumbers\[0\]: must be an E\.164 number/],
    [{ allowedPhoneCountries: ["us"] }, /^policy\.allowedPhoneCountries\[0\]: must be a known upper-case ISO 3166/],
    [{ allowedPhoneCountries: ["XX"] }, /^policy\.allowedPhoneCountries\[0\]: must be a known upper-case ISO 3166/],
    [["allowedDomains"], /^policy: must be a JSON object$/],
  ];

  it("CLI --policy: one clear sentence on stderr, non-zero exit, nothing created", () => {
    const home = makeHome();
    for (const [policy, message] of BAD) {
      const r = home.cli(["identity", "create", "--name", "x", "--channels", "email,sms", "--policy", JSON.stringify(policy), "--json"]);
      expect(r.code, JSON.stringify(policy)).not.toBe(0);
      expect(r.stdout).toBe("");
      const lines = r.stderr.trim().split("\n");
      expect(lines).toHaveLength(1);
      expect(lines[0]!.replace(/^sigil: /, ""), JSON.stringify(policy)).toMatch(message);
    }
    const notJson = home.cli(["identity", "create", "--name", "x", "--channels", "sms", "--policy", "{allowedDomains: [x]}"]);
    expect(notJson.code).not.toBe(0);
    expect(notJson.stderr).toMatch(/--policy is not valid JSON/);
    expect(home.json(["identity", "list"])).toEqual([]);
    // @file works, and the stored policy is the normalised one.
    const file = path.join(home.dir, "policy.json");
    writeFileSync(file, JSON.stringify({ allowedDomains: ["Example.COM", "example.com"], rateLimits: { send_email: { perMinute: 2 } } }));
    const id = home.json(["identity", "create", "--name", "ok", "--channels", "email", "--policy", `@${file}`]);
    expect(home.json(["identity", "show", id.id]).policy).toEqual({ allowedDomains: ["example.com"], rateLimits: { send_email: { perMinute: 2 } } });
  });

  it("create_identity and update_policy (admin tools): denied invalid_policy with the same sentence; nothing changes", async () => {
    const home = makeHome();
    const { client } = await session(home, home.adminToken);
    for (const [policy, message] of BAD.filter(([p]) => !Array.isArray(p))) {
      const r = await client.callTool({ name: "create_identity", arguments: { name: "x", channels: ["sms"], policies: policy } });
      expect(r.isError).toBe(true);
      const m = /^denied: invalid_policy: (.*)$/.exec(text(r));
      expect(m, text(r)).not.toBeNull();
      expect(m![1]).toMatch(message);
    }
    expect(home.json(["identity", "list"])).toEqual([]);
    const created = await client.callTool({ name: "create_identity", arguments: { name: "y", channels: ["sms"], policies: { allowedPhoneCountries: ["US"] }, phone: OWN } });
    expect(created.isError, text(created)).toBeFalsy();
    const id = (created.structuredContent as any).id as string;
    const before = home.json(["identity", "show", id]);
    for (const [policy, message] of BAD.filter(([p]) => !Array.isArray(p)).slice(0, 6)) {
      const r = await client.callTool({ name: "update_policy", arguments: { identityId: id, policies: policy } });
      expect(text(r)).toMatch(/^denied: invalid_policy: /);
      expect(text(r).replace(/^denied: invalid_policy: /, "")).toMatch(message);
    }
    const after = home.json(["identity", "show", id]);
    expect(after.policyVersion).toBe(before.policyVersion);
    expect(after.policy).toEqual(before.policy);
    expect(toolEntries(home, id, "policy_updated")).toHaveLength(0);
  });

  it("the policy version is recorded in every attempt's entry, and an update reaches a running session on its next call", async () => {
    const home = makeHome();
    const a = home.createIdentity({ channels: "sms", policy: { allowedPhoneCountries: ["US"] }, phone: OWN });
    const admin = await session(home, home.adminToken);
    const agent = await session(home, a.token);
    const sms = (n: number) => agent.client.callTool({ name: "send_sms", arguments: { to: "+14155550123", body: `m${n}` } });
    expect((await sms(1)).isError).toBeFalsy();
    const upd = await admin.client.callTool({
      name: "update_policy",
      arguments: { identityId: a.id, policies: { allowedPhoneCountries: ["US"], rateLimits: { send_sms: { perMinute: 2 } } } },
    });
    expect(upd.isError, text(upd)).toBeFalsy();
    expect((upd.structuredContent as any).policyVersion).toBe(2);
    // The limit counts the attempt made under version 1 as well: 1 used, 1 left.
    expect((await sms(2)).isError).toBeFalsy();
    expect(text(await sms(3))).toMatch(/^denied: rate_limited: "send_sms" may be used at most 2 times per minute\.$/);
    const e = toolEntries(home, a.id, "send_sms").filter((x) => x.phase !== "result");
    expect(e.map((x) => [x.decision, x.policyVersion])).toEqual([["allow", 1], ["allow", 2], ["deny", 2]]);
    const updated = toolEntries(home, a.id, "policy_updated");
    expect(updated.map((x) => [x.phase, x.decision, x.policyVersion])).toEqual([["intent", "allow", 2], ["result", "ok", 2]]);
    expect(outboxFiles(home, "json")).toHaveLength(2);
  });
});

describe("rateLimits hold across processes sharing a home", () => {
  it("perMinute: 12 concurrent sends from two `sigil serve` processes → exactly 5 reach Twilio; the others are rate_limited; other tools are not counted", async () => {
    const server = await twilio();
    const home = makeHome();
    const a = home.createIdentity({ channels: "sms,voice", policy: { allowedPhoneCountries: ["US"], rateLimits: { send_sms: { perMinute: 5 } } }, phone: OWN });
    const env = { TWILIO_ACCOUNT_SID: SID, TWILIO_AUTH_TOKEN: TOKEN, SIGIL_TWILIO_API_URL: server.url };
    const p1 = await session(home, a.token, env);
    const p2 = await session(home, a.token, env);
    const calls = Array.from({ length: 12 }, (_, i) => (i % 2 ? p2 : p1).client.callTool({ name: "send_sms", arguments: { to: "+14155550123", body: `n${i}` } }));
    const rs = await Promise.all(calls);
    const ok = rs.filter((r) => !r.isError);
    const limited = rs.filter((r) => /^denied: rate_limited: /.test(text(r)));
    expect(ok).toHaveLength(5);
    expect(limited).toHaveLength(7);
    expect(server.requests.filter((r) => r.resource === "sms")).toHaveLength(5);
    expect(new Set(server.requests.map((r) => r.form.Body)).size).toBe(5);
    // Both processes wrote into the one chain; the intents are exactly five.
    const e = toolEntries(home, a.id, "send_sms");
    expect(e.filter((x) => x.phase === "intent" && x.decision === "allow")).toHaveLength(5);
    expect(e.filter((x) => x.decision === "deny" && x.reason === "rate_limited")).toHaveLength(7);
    expect(new Set(e.map((x) => x.session)).size).toBe(2);
    // The limit is per tool.
    const call = await p2.client.callTool({ name: "place_call", arguments: { to: "+14155550123", message: "still fine" } });
    expect(call.isError, text(call)).toBeFalsy();
    // A third process started now sees the same count.
    const p3 = await session(home, a.token, env);
    expect(text(await p3.client.callTool({ name: "send_sms", arguments: { to: "+14155550123", body: "late" } }))).toMatch(/^denied: rate_limited: /);
    expect(server.requests.filter((r) => r.resource === "sms")).toHaveLength(5);
    expect(home.json(["audit", "verify", a.id]).ok).toBe(true);
  });

  it("perDay across processes, and an allowed attempt counts even when the provider then fails", async () => {
    const server = await twilio();
    const home = makeHome();
    const a = home.createIdentity({ channels: "voice", policy: { allowedPhoneCountries: ["US"], rateLimits: { place_call: { perDay: 3 } } }, phone: OWN });
    const env = { TWILIO_ACCOUNT_SID: SID, TWILIO_AUTH_TOKEN: TOKEN, SIGIL_TWILIO_API_URL: server.url, SIGIL_PROVIDER_TIMEOUT_MS: "2000" };
    const p1 = await session(home, a.token, env);
    const p2 = await session(home, a.token, env);
    server.setMode({ kind: "error", status: 400, code: 21215 });
    const failed = await p1.client.callTool({ name: "place_call", arguments: { to: "+14155550123", message: "x" } });
    expect(text(failed)).toMatch(/^error: provider_rejected: /);
    server.setMode({ kind: "ok" });
    const rs = await Promise.all(Array.from({ length: 8 }, (_, i) => (i % 2 ? p2 : p1).client.callTool({ name: "place_call", arguments: { to: "+14155550123", message: `c${i}` } })));
    expect(rs.filter((r) => !r.isError)).toHaveLength(2);
    for (const r of rs.filter((x) => x.isError)) expect(text(r)).toBe('denied: rate_limited: "place_call" may be used at most 3 times per day.');
    expect(server.requests).toHaveLength(3);
  });
});

describe("rolling windows, with the clock injected into the real pipeline", () => {
  it("perMinute and perDay slide: an attempt leaves the minute window 60 s later and the day window 24 h later", async () => {
    const home = makeHome();
    const a: Identity = home.createIdentity({ channels: "sms", policy: { allowedPhoneCountries: ["US"], rateLimits: { send_sms: { perMinute: 2, perDay: 3 } } }, phone: OWN });
    const t0 = Date.now() + 1000;
    let now = t0;
    const app = await openApp({ home: home.env.SIGIL_HOME!, env: {}, now: () => now });
    closers.push(() => app.close());
    const s: AgentSession = {
      deps: app.agent,
      identityId: a.id,
      tokenHash: app.auth.hash(a.token),
      sessionId: "s_clock",
      memory: { secretsRead: new Set() },
    };
    const at = async (offsetMs: number): Promise<string> => {
      now = t0 + offsetMs;
      const r = await callAgentTool(s, sendSms, "send_sms", { to: "+14155550123", body: `at ${offsetMs}` }, undefined);
      return r.isError ? String((r.content[0] as { text: string }).text) : "ok";
    };
    const MIN = 60_000;
    const DAY = 86_400_000;
    expect(await at(0)).toBe("ok");
    expect(await at(1_000)).toBe("ok");
    expect(await at(2_000)).toMatch(/^denied: rate_limited: .*2 times per minute/);
    expect(await at(MIN - 1)).toMatch(/^denied: rate_limited: .*per minute/); // t0 is still inside (now-60s, now]
    expect(await at(MIN)).toBe("ok"); // t0 left the window; third of the day
    expect(await at(3 * MIN)).toMatch(/^denied: rate_limited: .*3 times per day/);
    expect(await at(DAY - 1)).toMatch(/^denied: rate_limited: .*per day/);
    expect(await at(DAY)).toBe("ok"); // t0 left the day window
    expect(await at(DAY + 1)).toMatch(/^denied: rate_limited: .*per day/); // 1 s, 60 s and DAY are inside
    expect(await at(DAY + MIN + 1)).toBe("ok");
    const e = toolEntries(home, a.id, "send_sms").filter((x) => x.phase !== "result");
    expect(e.filter((x) => x.decision === "allow")).toHaveLength(5);
    expect(e.filter((x) => x.reason === "rate_limited")).toHaveLength(5);
    expect(outboxFiles(home, "json")).toHaveLength(5);
  });
});
