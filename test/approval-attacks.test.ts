/**
 * Hostile review of approvals (README: "Approvals"): ways to get an action approved that policy
 * does not allow. Each case drives the built CLI or the SDK MCP Client against `sigil serve`.
 */
import { afterAll, describe, expect, it } from "vitest";
import { cleanupHomes, cliAsync, makeHome, stdioClient, text, until } from "./support/home.js";
import { backends } from "./support/backends.js";

afterAll(cleanupHomes);

const LONG = { timeout: 120_000 };

describe("approvals under attack", () => {
  it("requirePasskey with via client is refused: the client's form answer carries no passkey, so it could approve what only a passkey may (identity create and update_policy; nothing changes)", LONG, async () => {
    const home = makeHome({});
    const passkeyViaClient = { cardSpendingLimitCents: 100_000, approval: { aboveCents: 100, via: ["approver", "client"], requirePasskey: true, timeoutSeconds: 30 } };
    const created = home.cli(["identity", "create", "--name", "agent", "--channels", "card", "--policy", JSON.stringify(passkeyViaClient), "--json"]);
    expect(created.code).not.toBe(0);
    expect(created.stderr).toMatch(/policy\.approval\.requirePasskey: cannot be combined with via "client"/);
    expect(home.json(["identity", "list"])).toEqual([]);

    const a = home.createIdentity({ channels: "card", policy: { cardSpendingLimitCents: 100_000 } });
    const before = home.json(["identity", "show", a.id]);
    const admin = await stdioClient(home, home.adminToken);
    const u = await admin.client.callTool({ name: "update_policy", arguments: { identityId: a.id, policies: passkeyViaClient } });
    expect(text(u)).toMatch(/^denied: invalid_\w+: .*requirePasskey: cannot be combined with via "client"/);
    await admin.client.close();
    expect(home.json(["identity", "show", a.id])).toEqual(before);
  });
});

describe("a quorum cannot be replaced by the client", () => {
  it("quorum above 1 with via client is refused: one automatic client answer would approve what needs two approvers (identity create and update_policy; nothing changes)", LONG, async () => {
    const home = makeHome({});
    const ann = home.addApprover({ name: "Ann" });
    const bob = home.addApprover({ name: "Bob" });
    const twoOrClient = { cardSpendingLimitCents: 100_000, approval: { aboveCents: 100, approvers: [ann.id, bob.id], quorum: 2, via: ["approver", "client"], timeoutSeconds: 30 } };
    const created = home.cli(["identity", "create", "--name", "agent", "--channels", "card", "--policy", JSON.stringify(twoOrClient), "--json"]);
    expect(created.code).not.toBe(0);
    expect(created.stderr).toMatch(/policy\.approval\.quorum: above 1 cannot be combined with via "client"/);
    expect(home.json(["identity", "list"])).toEqual([]);

    const a = home.createIdentity({ channels: "card", policy: { cardSpendingLimitCents: 100_000 } });
    const before = home.json(["identity", "show", a.id]);
    const admin = await stdioClient(home, home.adminToken);
    const u = await admin.client.callTool({ name: "update_policy", arguments: { identityId: a.id, policies: twoOrClient } });
    expect(text(u)).toMatch(/^denied: invalid_\w+: .*quorum: above 1 cannot be combined with via "client"/);
    await admin.client.close();
    expect(home.json(["identity", "show", a.id])).toEqual(before);
  });
});

describe.each(backends)("another tenant's approver (%s store)", (backend) => {
  it("an approver of tenant B neither sees nor decides tenant A's approval, even one that names no approver: not_found word for word as a missing id, nothing recorded; A's approver then decides it", LONG, async () => {
    const home = makeHome({}, { store: backend });
    const tA = home.createTenant("alpha");
    const tB = home.createTenant("beta");
    const ann = home.addApprover({ name: "Ann", tenant: tA.id });
    const bea = home.addApprover({ name: "Bea", tenant: tB.id });
    const a = home.createIdentity({ channels: "card", tenant: tA.id, policy: { cardSpendingLimitCents: 100_000, approval: { aboveCents: 100, timeoutSeconds: 90 } } });
    const agent = await stdioClient(home, a.token);
    const call = agent.client.callTool({ name: "card_charge", arguments: { amountCents: 5000, currency: "USD", merchant: "Acme", idempotencyKey: "k1" } }, undefined, { timeout: 100_000 });
    const pending = await until(async () => {
      const r = await cliAsync(home, ["approvals", "list", "--pending", "--json"], { SIGIL_APPROVER_TOKEN: ann.token });
      const list = r.code === 0 ? JSON.parse(r.stdout) : [];
      return list.length === 1 ? list[0] : undefined;
    }, 60_000, "a pending approval");
    const MISSING = "apv_0123456789abcdef0123";
    // Through the CLI.
    const listedB = await cliAsync(home, ["approvals", "list", "--json"], { SIGIL_APPROVER_TOKEN: bea.token });
    expect(JSON.parse(listedB.stdout)).toEqual([]);
    for (const verb of ["approve", "deny"]) {
      const foreign = await cliAsync(home, ["approvals", verb, pending.id], { SIGIL_APPROVER_TOKEN: bea.token });
      const missing = await cliAsync(home, ["approvals", verb, MISSING], { SIGIL_APPROVER_TOKEN: bea.token });
      expect(foreign.code).not.toBe(0);
      expect([foreign.code, foreign.stdout, foreign.stderr.replace(pending.id, MISSING)]).toEqual([missing.code, missing.stdout, missing.stderr]);
    }
    // Through the approver tools over stdio.
    const b = await stdioClient(home, bea.token);
    expect((await b.client.callTool({ name: "list_approvals", arguments: {} })).structuredContent).toEqual({ approvals: [] });
    for (const decision of ["approve", "deny"]) {
      const foreign = await b.client.callTool({ name: "decide_approval", arguments: { approvalId: pending.id, decision } });
      const missing = await b.client.callTool({ name: "decide_approval", arguments: { approvalId: MISSING, decision } });
      expect(text(foreign).replace(pending.id, MISSING)).toBe(text(missing));
      expect(text(missing)).toMatch(/^denied: not_found: /);
    }
    await b.client.close();
    expect(home.auditLog(a.id).filter((e) => e.tool === "approval_decided")).toEqual([]);
    // A's own approver still decides it, and the call goes through once.
    expect((await cliAsync(home, ["approvals", "approve", pending.id], { SIGIL_APPROVER_TOKEN: ann.token })).code).toBe(0);
    const r = await call;
    expect(r.isError, text(r)).toBeFalsy();
    await agent.client.close();
    expect(home.auditLog(a.id).filter((e) => e.tool === "approval_decided").map((e) => [e.approverId, e.tenantId, e.decision])).toEqual([[ann.id, tA.id, "approved"]]);
  });
});

describe("names cannot carry terminal sequences", () => {
  it("a tenant or approver name with an escape sequence or a control character is refused and nothing is created; the lists stay as they were", LONG, async () => {
    const home = makeHome({});
    const tenantsBefore = home.json(["tenant", "list"]);
    const approversBefore = home.json(["approver", "list"]);
    for (const name of ["evil\u001b[2J", "bell\u0007", "line\nbreak", "bidi\u202e"]) {
      const t = home.cli(["tenant", "create", "--name", name, "--json"]);
      expect(t.code, JSON.stringify(name)).not.toBe(0);
      expect(t.stdout + t.stderr).not.toContain("\u001b");
      const a = home.cli(["approver", "add", "--name", name, "--json"]);
      expect(a.code, JSON.stringify(name)).not.toBe(0);
      expect(a.stdout + a.stderr).not.toContain("\u001b");
    }
    expect(home.json(["tenant", "list"])).toEqual(tenantsBefore);
    expect(home.json(["approver", "list"])).toEqual(approversBefore);
    const admin = await stdioClient(home, home.adminToken);
    const r = await admin.client.callTool({ name: "create_tenant", arguments: { name: "evil\u001b[2J" } });
    expect(text(r)).toMatch(/^denied: invalid_\w+: /);
    expect(text(r)).not.toContain("\u001b");
    await admin.client.close();
    expect(home.json(["tenant", "list"])).toEqual(tenantsBefore);
  });
});
