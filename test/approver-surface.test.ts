/**
 * The approver surface (README: "Approvals"): what an approver token is served over stdio and
 * Streamable HTTP, that it names no one once removed or once its record is tampered with, approver
 * tools deciding on one server while the agent waits on another (PostgreSQL), URL-mode
 * elicitation to the approval page, client-attested approvals, and first contact with a recipient.
 */
import { afterAll, describe, expect, it } from "vitest";
import { readFileSync, writeFileSync } from "node:fs";
import path from "node:path";
import { ElicitRequestSchema, type ElicitResult } from "@modelcontextprotocol/sdk/types.js";
import { type Home, cleanupHomes, cliAsync, httpClient, makeHome, rawPost, INITIALIZE, startHttpServer, stdioClient, text, until } from "./support/home.js";
import { backends, pgQuery, pgSkipNote, pgUrl } from "./support/backends.js";

afterAll(cleanupHomes);

const LONG = { timeout: 120_000 };
const charge = (amountCents: number, idempotencyKey: string) => ({ name: "card_charge", arguments: { amountCents, currency: "USD", merchant: "Acme Books", idempotencyKey } });

/** Changes an approver's stored record behind sigil's back (the file, or the row). */
async function tamperApprover(home: Home, id: string, change: (r: any) => void): Promise<void> {
  if (home.store === "file") {
    const file = path.join(home.env.SIGIL_HOME!, "approvers", `${id}.json`);
    const r = JSON.parse(readFileSync(file, "utf8"));
    change(r);
    writeFileSync(file, JSON.stringify(r));
  } else {
    const [row] = await pgQuery(home.env.SIGIL_STORE_URL!, "SELECT record FROM sigil_approvers WHERE id = $1", [id]);
    change(row.record);
    await pgQuery(home.env.SIGIL_STORE_URL!, "UPDATE sigil_approvers SET record = $2, tenant_id = $3 WHERE id = $1", [id, JSON.stringify(row.record), row.record.tenantId]);
  }
}

describe.each(backends)("the approver surface (%s store)", (backend) => {
  it("an approver token is served exactly list_approvals and decide_approval (stdio and HTTP); agent and admin tokens cannot decide", LONG, async () => {
    const home = makeHome({}, { store: backend });
    const ann = home.addApprover({ name: "Ann", email: "ann@example.com" });
    expect(home.json(["approver", "list"])).toEqual([expect.objectContaining({ id: ann.id, name: "Ann", email: "ann@example.com", tenantId: "default", keyId: ann.keyId })]);
    expect(JSON.stringify(home.json(["approver", "list"]))).not.toMatch(/token|sealed/i);
    const a = home.createIdentity({ channels: "card", policy: { cardSpendingLimitCents: 100 } });
    const stdio = await stdioClient(home, ann.token);
    expect((await stdio.client.listTools()).tools.map((t) => t.name)).toEqual(["list_approvals", "decide_approval"]);
    expect(text(await stdio.client.callTool({ name: "card_charge", arguments: {} }))).toMatch(/^denied: tool_not_available: /);
    expect(text(await stdio.client.callTool({ name: "create_identity", arguments: { name: "x", channels: [] } }))).toMatch(/^denied: tool_not_available: /);
    expect(text(await stdio.client.callTool({ name: "decide_approval", arguments: { approvalId: "apv_0123456789abcdef0123", decision: "approve" } }))).toMatch(/^denied: not_found: /);
    expect(text(await stdio.client.callTool({ name: "decide_approval", arguments: { approvalId: "apv_0123456789abcdef0123", decision: "maybe" } }))).toMatch(/^denied: invalid_arguments: /);
    const listed = await stdio.client.callTool({ name: "list_approvals", arguments: {} });
    expect(listed.structuredContent).toEqual({ approvals: [] });
    await stdio.client.close();
    for (const token of [a.token, home.adminToken]) {
      const c = await stdioClient(home, token);
      expect((await c.client.listTools()).tools.map((t) => t.name)).not.toContain("decide_approval");
      expect(text(await c.client.callTool({ name: "decide_approval", arguments: { approvalId: "apv_0123456789abcdef0123", decision: "approve" } }))).toMatch(/^denied: tool_not_available: /);
      await c.client.close();
    }
    const server = await startHttpServer(home);
    try {
      const h = await httpClient(server.url, ann.token);
      expect((await h.client.listTools()).tools.map((t) => t.name)).toEqual(["list_approvals", "decide_approval"]);
      // Removed: the open session's next call is refused, a new request gets 401, stdio will not serve.
      expect(home.json(["approver", "remove", ann.id]).removedAt).toBeTruthy();
      await expect(h.client.callTool({ name: "list_approvals", arguments: {} })).rejects.toThrow(/401|Unauthorized/);
      expect((await rawPost(server.url, ann.token, INITIALIZE)).status).toBe(401);
    } finally {
      await server.stop();
    }
    const refused = await cliAsync(home, ["serve"], { SIGIL_TOKEN: ann.token });
    expect(refused.code).not.toBe(0);
    expect(refused.stderr).toMatch(/approver token/);
    expect((await cliAsync(home, ["approvals", "list"], { SIGIL_APPROVER_TOKEN: ann.token })).stderr).toMatch(/not a current approver token/);
  });

  it("the store is not an authority: an approver record changed without the master key (tenant, removal undone) names no one", LONG, async () => {
    const home = makeHome({}, { store: backend });
    const ann = home.addApprover({ name: "Ann" });
    const bob = home.addApprover({ name: "Bob" });
    await tamperApprover(home, ann.id, (r) => (r.tenantId = "other"));
    expect(home.json(["approver", "remove", bob.id]).removedAt).toBeTruthy();
    await tamperApprover(home, bob.id, (r) => delete r.removedAt);
    for (const who of [ann, bob]) {
      const r = await cliAsync(home, ["serve"], { SIGIL_TOKEN: who.token });
      expect(r.code, who.name).not.toBe(0);
      expect((await cliAsync(home, ["approvals", "list"], { SIGIL_APPROVER_TOKEN: who.token })).code).not.toBe(0);
    }
    expect(home.json(["approver", "list"])).toEqual([]);
  });

  it("via client: the connected client's form answer decides (recorded client-attested, no approver); first contact with a number asks, a number sent to before does not", LONG, async () => {
    const home = makeHome({}, { store: backend });
    const a = home.createIdentity({ channels: "sms", policy: { allowedPhoneCountries: ["US"], approval: { newRecipients: true, via: ["client"], timeoutSeconds: 60 } } });
    const { client } = await stdioClient(home, a.token, { capabilities: { elicitation: {} } });
    const asked: string[] = [];
    let answer: ElicitResult = { action: "accept" };
    client.setRequestHandler(ElicitRequestSchema, async (req) => {
      asked.push((req.params as any).message);
      return answer;
    });
    const sms = (to: string) => client.callTool({ name: "send_sms", arguments: { to, body: "hello" } });
    // accept without approve: true approves nothing
    expect(text(await sms("+14155550123"))).toMatch(/^denied: approval_declined: .*\(decline\)/);
    answer = { action: "accept", content: { approve: true } };
    const first = await sms("+14155550123");
    expect(first.isError, text(first)).toBeFalsy();
    expect(asked).toHaveLength(2);
    const again = await sms("+14155550123");
    expect(again.isError, text(again)).toBeFalsy();
    expect(asked).toHaveLength(2); // sent to before: no question
    expect(text(await (answer = { action: "decline" }, sms("+14155550124")))).toMatch(/^denied: approval_declined: /);
    expect(asked).toHaveLength(3);
    await client.close();
    const decided = home.auditLog(a.id).filter((e) => e.tool === "approval_decided");
    expect(decided.map((e) => [e.via, e.decision, e.approverId ?? null])).toEqual([
      ["client-attested", "denied", null],
      ["client-attested", "approved", null],
      ["client-attested", "denied", null],
    ]);
    expect(home.json(["audit", "verify", a.id]).ok).toBe(true);
  });
});

describe("URL-mode elicitation and two servers", () => {
  it("a client that opens URLs is sent SIGIL_PUBLIC_URL/console/approvals/<id>, and the call completes when an approver approves through decide_approval", LONG, async () => {
    const home = makeHome({ SIGIL_PUBLIC_URL: "https://sigil.example" });
    const ann = home.addApprover({ name: "Ann" });
    const a = home.createIdentity({ channels: "card", policy: { cardSpendingLimitCents: 100_000, approval: { aboveCents: 5000, timeoutSeconds: 90 } } });
    const { client } = await stdioClient(home, a.token, { capabilities: { elicitation: { url: {} } } });
    const asked: any[] = [];
    client.setRequestHandler(ElicitRequestSchema, async (req) => {
      asked.push(req.params);
      return { action: "accept" };
    });
    const call = client.callTool(charge(6000, "u1"), undefined, { timeout: 100_000 });
    const url = await until(() => asked[0]?.url as string | undefined, 60_000, "the URL elicitation");
    expect(asked[0].mode).toBe("url");
    const id = /^https:\/\/sigil\.example\/console\/approvals\/(apv_[0-9a-f]{20})$/.exec(url)?.[1];
    expect(id, url).toBeTruthy();
    const approver = await stdioClient(home, ann.token);
    const d = await approver.client.callTool({ name: "decide_approval", arguments: { approvalId: id, decision: "approve", reason: "ok by me" } });
    expect(d.structuredContent).toEqual({ approvalId: id, decision: "approve", status: "approved" });
    await approver.client.close();
    const r = await call;
    expect(r.isError, text(r)).toBeFalsy();
    await client.close();
    expect(home.auditLog(a.id).find((e) => e.tool === "approval_decided")).toMatchObject({ approvalId: id, comment: "ok by me", via: "approver" });
  });

  it(`PostgreSQL, two server processes: the agent waits on one, the approver decides on the other; a retry on the second after the first is gone proceeds without a new request${pgSkipNote}`, { timeout: 300_000 }, async () => {
    if (!pgUrl) return;
    const home = makeHome({}, { store: "postgres" });
    const ann = home.addApprover({ name: "Ann" });
    const a = home.createIdentity({ channels: "card", policy: { cardSpendingLimitCents: 100_000, approval: { aboveCents: 5000, timeoutSeconds: 90 } } });
    const one = await startHttpServer(home);
    const two = await startHttpServer(home);
    try {
      const agent = await httpClient(one.url, a.token);
      const approver = await httpClient(two.url, ann.token);
      const pending = async () => {
        const l = (await approver.client.callTool({ name: "list_approvals", arguments: { status: "pending" } })).structuredContent as any;
        return l.approvals.length === 1 ? l.approvals[0] : undefined;
      };
      // Decided on two, consumed by the call waiting on one.
      const call = agent.client.callTool(charge(6000, "pg1"), undefined, { timeout: 100_000 });
      const p1 = await until(pending, 60_000, "a pending approval");
      const d1 = await approver.client.callTool({ name: "decide_approval", arguments: { approvalId: p1.id, decision: "approve" } });
      expect(d1.isError, text(d1)).toBeFalsy();
      const r1 = await call;
      expect(r1.isError, text(r1)).toBeFalsy();
      // Asked on one, which then dies; decided on two; consumed by the retry on two.
      void agent.client.callTool(charge(7000, "pg2"), undefined, { timeout: 100_000 }).catch(() => {});
      const p2 = await until(pending, 60_000, "a second pending approval");
      one.proc.kill("SIGKILL");
      await one.stop();
      expect((await approver.client.callTool({ name: "decide_approval", arguments: { approvalId: p2.id, decision: "approve" } })).isError).toBeFalsy();
      const retry = await httpClient(two.url, a.token);
      const r2 = await retry.client.callTool(charge(7000, "pg2"));
      expect(r2.isError, text(r2)).toBeFalsy();
      await retry.client.close();
      await approver.client.close();
    } finally {
      await one.stop();
      await two.stop();
    }
    const log = home.auditLog(a.id);
    expect(log.filter((e) => e.tool === "approval_requested")).toHaveLength(2);
    expect(log.filter((e) => e.tool === "card_charge" && e.phase === "intent").map((e) => [e.amountCents, e.approvalId])).toEqual(
      log.filter((e) => e.tool === "approval_requested").map((e) => [e.args.amountCents, e.approvalId]),
    );
    expect(home.json(["audit", "verify", a.id]).ok).toBe(true);
  });
});
