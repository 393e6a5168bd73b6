/**
 * Hostile review of approvals (README: "Approvals"): ways to get an action approved that policy
 * does not allow. Each case drives the built CLI or the SDK MCP Client against `sigil serve`.
 */
import { afterAll, describe, expect, it } from "vitest";
import { cleanupHomes, makeHome, stdioClient, text } from "./support/home.js";

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
