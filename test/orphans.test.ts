import { afterAll, describe, expect, it } from "vitest";
import { readFileSync } from "node:fs";
import path from "node:path";
import { cleanupHomes, makeHome, stdioClient } from "./support/home.js";

afterAll(cleanupHomes);

describe("an intent left without a result by a crashed process", () => {
  it("is reported by verify, then recorded as unknown (never retried) by the next process that opens the log", async () => {
    const home = makeHome();
    const a = home.createIdentity({ channels: "" });
    const { openApp } = await import("../dist/src/app.js");
    const crashed = await openApp({ home: home.env.SIGIL_HOME!, env: home.env });
    // What a process killed between its intent and its result leaves behind.
    await crashed.chains.commit(a.id, () => ({
      value: null,
      draft: { tool: "send_sms", phase: "intent", decision: "allow", instance: "inst_00000000dead", session: "s_gone", args: { to: "+14155550100" } },
    }));
    await crashed.close();
    const before = home.json(["audit", "verify", a.id]);
    expect(before.identities[0]).toMatchObject({ ok: true, unresolvedIntents: [2] });

    const { client } = await stdioClient(home, a.token);
    await client.callTool({ name: "whoami", arguments: {} });
    await client.close();
    const log = readFileSync(path.join(home.env.SIGIL_HOME!, "audit", `${a.id}.jsonl`), "utf8").trim().split("\n").map((l) => JSON.parse(l));
    expect(log[2]).toMatchObject({ tool: "send_sms", phase: "result", intent: 2, decision: "unknown", reason: "orphaned_intent" });
    const after = home.json(["audit", "verify", a.id]);
    expect(after.identities[0].ok).toBe(true);
    expect(after.identities[0].unresolvedIntents).toBeUndefined();
  });

  it("an intent of a process that is still running is left alone", async () => {
    const home = makeHome();
    const a = home.createIdentity({ channels: "" });
    const { openApp } = await import("../dist/src/app.js");
    const live = await openApp({ home: home.env.SIGIL_HOME!, env: home.env });
    await live.chains.commit(a.id, () => ({
      value: null,
      draft: { tool: "send_sms", phase: "intent", decision: "allow", instance: live.instanceId, session: "s_live" },
    }));
    const { client } = await stdioClient(home, a.token);
    await client.callTool({ name: "whoami", arguments: {} });
    await client.close();
    await live.close();
    const v = home.json(["audit", "verify", a.id]);
    expect(v.identities[0].unresolvedIntents).toEqual([2]);
  });
});

describe("a policy update interrupted between its audit entry and the registry write", () => {
  it("never has its version number reused by the next update", async () => {
    const home = makeHome();
    const a = home.createIdentity({ channels: "email", policy: { allowedDomains: ["example.com"] } });
    const { openApp } = await import("../dist/src/app.js");
    const crashed = await openApp({ home: home.env.SIGIL_HOME!, env: home.env });
    // What a process killed after the audit entry of version 2 and before the registry write leaves.
    await crashed.chains.commit(a.id, () => ({ value: null, draft: { session: "admin", tool: "policy_updated", phase: "event", decision: "ok", policyVersion: 2 } }));
    await crashed.close();
    expect(home.json(["identity", "show", a.id]).policyVersion).toBe(1);
    const admin = await stdioClient(home, home.adminToken);
    const r = await admin.client.callTool({ name: "update_policy", arguments: { identityId: a.id, policies: { allowedDomains: ["example.org"] } } });
    await admin.client.close();
    expect((r.structuredContent as any).policyVersion).toBe(3);
    const versions = readFileSync(path.join(home.env.SIGIL_HOME!, "audit", `${a.id}.jsonl`), "utf8")
      .trim()
      .split("\n")
      .map((l) => JSON.parse(l))
      .filter((e) => e.tool === "policy_updated" && e.phase !== "result")
      .map((e) => e.policyVersion);
    expect(versions).toEqual([2, 3]);
  });
});
