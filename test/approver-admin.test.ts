/**
 * Approver management on the admin surface (README "Approvals"): add_approver, list_approvers,
 * remove_approver and list_approvals, for the root admin (every tenant) and a tenant admin (its own
 * tenant only: another tenant's approver, approval or tenant is `not_found`, word for word as a
 * missing one). Admins do not decide approvals: no decide_approval on their surface. The SDK Client
 * against the built server over stdio, on both stores.
 */
import { afterAll, describe, expect, it } from "vitest";
import { type Home, cleanupHomes, cliAsync, makeHome, stdioClient, text } from "./support/home.js";
import { backends } from "./support/backends.js";

afterAll(cleanupHomes);

const MISSING_TENANT = "tn_" + "0".repeat(20);
const MISSING_APPROVER = "apr_" + "0".repeat(20);

async function admin(home: Home, token: string) {
  const { client } = await stdioClient(home, token);
  return {
    client,
    call: async (name: string, args: Record<string, unknown>) => {
      const r = (await client.callTool({ name, arguments: args })) as any;
      return { text: text(r), data: r.structuredContent as any, isError: r.isError };
    },
  };
}

/** A card charge that asks for approval and times out (the request stays, status expired). */
async function expiredApproval(home: Home, tenant: string): Promise<string> {
  const a = home.createIdentity({ name: "payer", channels: "card", tenant, policy: { cardSpendingLimitCents: 100_000, approval: { aboveCents: 10, timeoutSeconds: 2 } } });
  const { client } = await stdioClient(home, a.token);
  try {
    const r = await client.callTool({ name: "card_charge", arguments: { amountCents: 500, currency: "USD", merchant: "Acme Books", idempotencyKey: "k" } }, undefined, { timeout: 60_000 });
    expect(text(r)).toMatch(/^denied: approval_timeout: /);
  } finally {
    await client.close();
  }
  return a.id;
}

describe.each(backends)("approvers on the admin surface (%s store)", (backend) => {
  it("a tenant admin adds, lists and removes only its own tenant's approvers and sees only its approvals; another tenant's is not_found word for word; no admin decides", { timeout: 240_000 }, async () => {
    const home = makeHome({}, { store: backend });
    const ta = home.createTenant("alpha");
    const tb = home.createTenant("beta");
    const alpha = await admin(home, ta.adminToken);
    const root = await admin(home, home.adminToken);
    try {
      const names = (await alpha.client.listTools()).tools.map((t) => t.name);
      expect(names).toEqual(expect.arrayContaining(["add_approver", "list_approvers", "remove_approver", "list_approvals"]));
      expect(names).not.toContain("decide_approval");
      expect((await root.client.listTools()).tools.map((t) => t.name)).not.toContain("decide_approval");

      const ann = await alpha.call("add_approver", { name: "Ann", email: "ann@example.com" });
      expect(ann.isError, ann.text).toBeFalsy();
      expect(ann.data).toMatchObject({ tenantId: ta.id, name: "Ann", email: "ann@example.com" });
      expect(ann.data.token).toMatch(/^sigil_approver_/);
      const bob = await root.call("add_approver", { name: "Bob", tenantId: tb.id });
      expect(bob.data.tenantId).toBe(tb.id);
      expect((await root.call("add_approver", { name: "Dee" })).data.tenantId).toBe("default");

      // Another tenant is as unknown to alpha's admin as a tenant that does not exist.
      const elsewhere = await alpha.call("add_approver", { name: "Eve", tenantId: tb.id });
      const nowhere = await alpha.call("add_approver", { name: "Eve", tenantId: MISSING_TENANT });
      expect(elsewhere.text).toBe(`denied: not_found: No tenant ${tb.id}.`);
      expect(nowhere.text).toBe(`denied: not_found: No tenant ${MISSING_TENANT}.`);
      expect((await alpha.call("list_approvers", { tenantId: tb.id })).text).toBe(`denied: not_found: No tenant ${tb.id}.`);

      expect((await alpha.call("list_approvers", {})).data.approvers.map((x: any) => x.id)).toEqual([ann.data.id]);
      expect((await root.call("list_approvers", {})).data.approvers.map((x: any) => x.name).sort()).toEqual(["Ann", "Bob", "Dee"]);

      // Bob (beta's) cannot be removed by alpha's admin, and is told apart from no one.
      const foreign = await alpha.call("remove_approver", { id: bob.data.id });
      const missing = await alpha.call("remove_approver", { id: MISSING_APPROVER });
      expect(foreign.text).toBe(`denied: not_found: No approver ${bob.data.id}.`);
      expect(missing.text).toBe(`denied: not_found: No approver ${MISSING_APPROVER}.`);
      expect((await cliAsync(home, ["approvals", "list", "--json"], { SIGIL_APPROVER_TOKEN: bob.data.token })).code).toBe(0); // still works

      const removed = await alpha.call("remove_approver", { id: ann.data.id });
      expect(removed.data).toMatchObject({ id: ann.data.id });
      const annNow = await cliAsync(home, ["approvals", "list", "--json"], { SIGIL_APPROVER_TOKEN: ann.data.token });
      expect(annNow.code).not.toBe(0); // its token names no one any more

      // Approvals: each admin sees its own tenant's (root: all), with status from the log.
      const mine = await expiredApproval(home, ta.id);
      const theirs = await expiredApproval(home, tb.id);
      const seenByAlpha = (await alpha.call("list_approvals", {})).data.approvals;
      expect(seenByAlpha.map((x: any) => [x.identityId, x.tenantId, x.status])).toEqual([[mine, ta.id, "expired"]]);
      expect((await alpha.call("list_approvals", { status: "pending" })).data.approvals).toEqual([]);
      expect((await alpha.call("list_approvals", { tenantId: tb.id })).text).toBe(`denied: not_found: No tenant ${tb.id}.`);
      expect((await root.call("list_approvals", {})).data.approvals.map((x: any) => x.identityId).sort()).toEqual([mine, theirs].sort());
      expect((await root.call("list_approvals", { tenantId: tb.id })).data.approvals.map((x: any) => x.identityId)).toEqual([theirs]);
    } finally {
      await alpha.client.close();
      await root.client.close();
    }
  });
});
