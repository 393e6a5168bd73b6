/**
 * Refusal floods are bounded (README "Guarantees"): past 60 refusals a minute an identity's further
 * refusals are answered `denied: throttled: …` and summarised in one entry with a count, never
 * written one by one. The limit is counted from the chain, so it holds across sessions and processes.
 */
import { afterAll, describe, expect, it } from "vitest";
import { cleanupHomes, makeHome, stdioClient, text } from "./support/home.js";
import { openApp } from "../src/app.js";
import { callAgentTool, type AgentSession } from "../src/pipeline/agent-call.js";
import { sendSms } from "../tools/send-sms.js";

afterAll(() => cleanupHomes());

const DEFAULT_LIMIT = { SIGIL_REFUSALS_PER_MINUTE: "" }; // unset: the default of 60

describe("refusal floods", () => {
  it("past 60 refusals in a minute further ones are throttled, unwritten, and summarised with their count; a minute later refusals are written again", async () => {
    const home = makeHome(DEFAULT_LIMIT);
    // No allowedPhoneCountries: every SMS is refused by policy.
    const a = home.createIdentity({ channels: "sms", phone: "+14155550100", policy: {} });
    const t0 = Date.now() + 1000;
    let now = t0;
    const app = await openApp({ home: home.env.SIGIL_HOME!, env: {}, now: () => now });
    const s: AgentSession = { deps: app.agent, identityId: a.id, tokenHash: app.auth.hash(a.token), sessionId: "s_flood", memory: { secretsRead: new Set() } };
    const sms = (args: Record<string, unknown>) => callAgentTool(s, sendSms, "send_sms", args, undefined).then((r) => text(r));

    const answers: string[] = [];
    for (let i = 0; i < 100; i++) {
      now = t0 + i * 10; // a second's worth of calls
      answers.push(await sms({ to: "+14155550123", body: `flood ${i}` }));
    }
    // Refusals before policy (validation) are throttled too.
    answers.push(await sms({ to: "+14155550123", body: "x", extra: 1 }));
    expect(answers.slice(0, 60).every((t) => /^denied: (?!throttled)[a-z_]+: /.test(t))).toBe(true);
    expect(answers.slice(60).every((t) => /^denied: throttled: /.test(t))).toBe(true);

    // A minute after the first refusals, the window has room again: the refusal is written and says why.
    now = t0 + 60_000 + 10;
    const later = await sms({ to: "+14155550123", body: "later" });
    expect(later).toMatch(/^denied: (?!throttled)[a-z_]+: /);

    await app.close(); // writes the pending summary
    const log = home.auditLog(a.id);
    const refusals = log.filter((e) => e.tool === "send_sms" && e.decision === "deny");
    expect(refusals).toHaveLength(61);
    const summaries = log.filter((e) => e.tool === "refusals_throttled");
    expect(summaries).toHaveLength(1);
    expect(summaries[0]).toMatchObject({ decision: "deny", reason: "throttled", count: 41, phase: "event" });
    expect(Date.parse(summaries[0].from)).toBe(t0 + 600);
    expect(Date.parse(summaries[0].to)).toBe(t0 + 990);
    expect(home.json(["audit", "verify", a.id]).ok).toBe(true);
  });

  it("the window is the identity's, across processes: a second process that starts after 60 refusals is throttled at once", async () => {
    const home = makeHome(DEFAULT_LIMIT);
    const a = home.createIdentity({ channels: "sms", phone: "+14155550100", policy: {} });
    const t0 = Date.now() + 1000;
    const first = await openApp({ home: home.env.SIGIL_HOME!, env: {}, now: () => t0 });
    const s1: AgentSession = { deps: first.agent, identityId: a.id, tokenHash: first.auth.hash(a.token), sessionId: "s_one", memory: { secretsRead: new Set() } };
    for (let i = 0; i < 60; i++) await callAgentTool(s1, sendSms, "send_sms", { to: "+14155550123", body: `one ${i}` }, undefined);
    await first.close();
    const second = await openApp({ home: home.env.SIGIL_HOME!, env: {}, now: () => t0 + 1000 });
    const s2: AgentSession = { deps: second.agent, identityId: a.id, tokenHash: second.auth.hash(a.token), sessionId: "s_two", memory: { secretsRead: new Set() } };
    expect(text(await callAgentTool(s2, sendSms, "send_sms", { to: "+14155550123", body: "two" }, undefined))).toMatch(/^denied: throttled: /);
    await second.close();
    const log = home.auditLog(a.id);
    expect(log.filter((e) => e.tool === "send_sms" && e.decision === "deny")).toHaveLength(60);
    expect(log.filter((e) => e.tool === "refusals_throttled").map((e) => e.count)).toEqual([1]);
  });

  it("through a real stdio server with the default limit: the agent reads `denied: throttled`, and the summary is in the log once the server closes", async () => {
    const home = makeHome(DEFAULT_LIMIT);
    const a = home.createIdentity({ channels: "sms", phone: "+14155550100", policy: {} });
    const { client, transport } = await stdioClient(home, a.token);
    const texts: string[] = [];
    for (let i = 0; i < 70; i++) texts.push(text(await client.callTool({ name: "send_sms", arguments: { to: "+14155550123", body: `e2e ${i}` } })));
    const pid = transport.pid!;
    await client.close();
    // The server flushes its summary when stdin closes, then exits.
    const deadline = Date.now() + 60_000;
    while (Date.now() < deadline && alive(pid)) await new Promise((r) => setTimeout(r, 50));
    const throttled = texts.filter((t) => t.startsWith("denied: throttled: ")).length;
    // 60 written refusals at most within a minute; a loaded machine may spread the calls over more.
    expect(throttled).toBeGreaterThanOrEqual(10);
    const log = home.auditLog(a.id);
    const written = log.filter((e) => e.tool === "send_sms" && e.decision === "deny").length;
    const summarised = log.filter((e) => e.tool === "refusals_throttled").reduce((n, e) => n + e.count, 0);
    expect(written + summarised).toBe(70);
    expect(summarised).toBe(throttled);
  });

  it("SIGIL_REFUSALS_PER_MINUTE that is not a whole number from 1 to 1,000,000 stops the server with a clear sentence", () => {
    const home = makeHome();
    const r = home.cli(["serve"], { env: { SIGIL_REFUSALS_PER_MINUTE: "lots", SIGIL_TOKEN: home.createIdentity({ channels: "" }).token } });
    expect(r.code).not.toBe(0);
    expect(r.stderr).toMatch(/SIGIL_REFUSALS_PER_MINUTE must be a whole number/);
  });
});

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}
