/**
 * Approvers and the approval flow (README: "Approvals"), end to end: the built CLI, `sigil serve`
 * over stdio and Streamable HTTP with the SDK client, approvers deciding from other processes,
 * both stores.
 */
import { afterAll, describe, expect, it } from "vitest";
import { writeFileSync } from "node:fs";
import path from "node:path";
import { ElicitRequestSchema } from "@modelcontextprotocol/sdk/types.js";
import { type Approver, type Home, cleanupHomes, cliAsync, httpClient, makeHome, startHttpServer, stdioClient, text, until } from "./support/home.js";
import { backends } from "./support/backends.js";
import { readLedger } from "../src/providers/card/embedded.js";
import { verifyDecision } from "../src/approval/approvals.js";

afterAll(cleanupHomes);

const LONG = { timeout: 120_000 };
const charge = (amountCents: number, idempotencyKey: string) => ({ name: "card_charge", arguments: { amountCents, currency: "USD", merchant: "Acme Books", idempotencyKey } });

/** `sigil approvals list --json` as `who` sees it. */
function listAs(home: Home, who: Approver | undefined, pending = true): any[] {
  return home.json(["approvals", "list", ...(pending ? ["--pending"] : [])], { env: who ? { SIGIL_APPROVER_TOKEN: who.token } : {} });
}
/** Waits until `who` sees exactly one pending approval and returns it. */
async function pendingOne(home: Home, who: Approver, opts: { evenExpired?: boolean } = {}): Promise<any> {
  return until(async () => {
    const r = await cliAsync(home, ["approvals", "list", ...(opts.evenExpired ? [] : ["--pending"]), "--json"], { SIGIL_APPROVER_TOKEN: who.token });
    const list = r.code === 0 ? JSON.parse(r.stdout) : [];
    return list.length === 1 ? list[0] : undefined;
  }, 60_000, "a pending approval");
}
const decide = (home: Home, who: Approver, verb: "approve" | "deny", id: string) => cliAsync(home, ["approvals", verb, id, "--json"], { SIGIL_APPROVER_TOKEN: who.token });
const ledger = async (home: Home, id: string) => (home.store === "file" ? (await readLedger(home.env.SIGIL_HOME!, id)).map((l) => [l.status, l.amountCents]) : undefined);
const entries = (home: Home, id: string, tool: string) => home.auditLog(id).filter((e) => e.tool === tool);

describe.each(backends)("approvers decide (%s store)", (backend) => {
  it("a charge above approval.aboveCents waits; an approver approves with the CLI from another process (an approver of another tenant: not_found); the call completes with the approval in its log", LONG, async () => {
    const home = makeHome({}, { store: backend });
    const ann = home.addApprover({ name: "Ann" });
    expect(ann.id).toMatch(/^apr_[0-9a-f]{20}$/);
    expect(ann.token).toMatch(/^sigil_approver_/);
    const a = home.createIdentity({ channels: "card", policy: { cardSpendingLimitCents: 100_000, approval: { aboveCents: 5000, timeoutSeconds: 90 } } });
    const { client } = await stdioClient(home, a.token); // no elicitation: the approver decides
    const small = await client.callTool(charge(5000, "small"));
    expect(small.isError, text(small)).toBeFalsy();
    const call = client.callTool(charge(7550, "big"), undefined, { timeout: 100_000 });
    const p = await pendingOne(home, ann);
    expect(p).toMatchObject({ identityId: a.id, tenantId: "default", tool: "card_charge", status: "pending", action: { amountCents: 7550, currency: "USD", merchant: "Acme Books" } });
    expect(p.id).toMatch(/^apv_[0-9a-f]{20}$/);
    expect(Date.parse(p.expiresAt) - Date.parse(p.requestedAt)).toBe(90_000);
    // An approver of another tenant: the approval does not exist for it (the policy names no one,
    // so any approver of the identity's own tenant may decide — and only those).
    const other = home.addApprover({ name: "Mallory", tenant: home.createTenant("other").id });
    expect(listAs(home, other)).toEqual([]);
    const foreign = await decide(home, other, "approve", p.id);
    expect(foreign.code).not.toBe(0);
    expect(foreign.stderr).toMatch(new RegExp(`No approval ${p.id}`));
    const d = await decide(home, ann, "approve", p.id);
    expect(d.code, d.stderr).toBe(0);
    expect(JSON.parse(d.stdout)).toEqual({ approvalId: p.id, decision: "approve", status: "approved" });
    const r = await call;
    expect(r.isError, text(r)).toBeFalsy();
    expect((r.structuredContent as any).amountCents).toBe(7550);
    expect((r.structuredContent as any).receipt.approvalId).toBe(p.id);
    await client.close();
    // receipt explain checks the approver's signature and names who approved and how.
    const file = path.join(home.dir, "receipt.json");
    writeFileSync(file, JSON.stringify(r.structuredContent));
    const explained = home.json(["receipt", "explain", file]);
    expect(explained.answers.find((x: any) => x.question === "approval")).toMatchObject({ status: "ok", answer: `${p.id} for tenant default: ${ann.id} (approver, signed)` });
    if (backend === "file") expect(await ledger(home, a.id)).toEqual([["approved", 5000], ["approved", 7550]]);
    expect(listAs(home, ann, false).map((x) => [x.id, x.status, x.decidedBy.map((y: any) => [y.approverId, y.decision, y.via])])).toEqual([[p.id, "used", [[ann.id, "approve", "approver"]]]]);

    // The log: requested (id, action hash, expiry), decided (approver, tenant, via, signature), the intent using it.
    const requested = entries(home, a.id, "approval_requested");
    const decided = entries(home, a.id, "approval_decided");
    expect(requested).toHaveLength(1);
    expect(requested[0]).toMatchObject({ approvalId: p.id, forTool: "card_charge", expiresAt: p.expiresAt, tenantId: "default" });
    expect(requested[0].actionHash).toMatch(/^hmac-sha256:/);
    expect(decided).toHaveLength(1);
    expect(decided[0]).toMatchObject({ approvalId: p.id, approverId: ann.id, tenantId: "default", via: "approver", decision: "approved", approverKeyId: ann.keyId, approverPublicKey: ann.publicKey });
    expect(decided[0].statement).toMatchObject({ approvalId: p.id, identityId: a.id, actionHash: requested[0].actionHash, decision: "approve", approverId: ann.id });
    expect(verifyDecision(decided[0].statement, ann.publicKey, decided[0].approverSignature)).toBe(true);
    expect(verifyDecision({ ...decided[0].statement, decision: "deny" }, ann.publicKey, decided[0].approverSignature)).toBe(false);
    const intent = home.auditLog(a.id).find((e) => e.tool === "card_charge" && e.phase === "intent" && e.approvalId === p.id);
    expect(intent).toBeTruthy();
    expect(intent.seq).toBeGreaterThan(decided[0].seq);
    expect(home.json(["audit", "verify", a.id]).ok).toBe(true);
  });

  it("deny: the call is refused with the approval id, nothing is charged, and a retry with the same idempotencyKey is refused without a new request", LONG, async () => {
    const home = makeHome({}, { store: backend });
    const ann = home.addApprover({ name: "Ann" });
    const a = home.createIdentity({ channels: "card", policy: { cardSpendingLimitCents: 100_000, approval: { aboveCents: 5000, timeoutSeconds: 90 } } });
    const { client } = await stdioClient(home, a.token);
    const call = client.callTool(charge(6000, "k1"), undefined, { timeout: 100_000 });
    const p = await pendingOne(home, ann);
    const d = await decide(home, ann, "deny", p.id);
    expect(JSON.parse(d.stdout).status).toBe("denied");
    const r = await call;
    expect(text(r)).toMatch(new RegExp(`^denied: approval_denied: .*\\(approval ${p.id}\\)`));
    const again = await client.callTool(charge(6000, "k1"));
    expect(text(again)).toMatch(new RegExp(`^denied: approval_denied: .*\\(approval ${p.id}\\)`));
    await client.close();
    expect(entries(home, a.id, "approval_requested")).toHaveLength(1);
    expect(home.auditLog(a.id).filter((e) => e.tool === "card_charge" && e.phase === "intent")).toEqual([]);
    if (backend === "file") expect(await ledger(home, a.id)).toEqual([]);
    // A second decision on a closed approval changes nothing.
    const late = await decide(home, ann, "approve", p.id);
    expect(late.code).not.toBe(0);
    expect(late.stderr).toMatch(/already denied/);
  });

  it("timeout: no decision within timeoutSeconds refuses with approval_timeout naming the approval; a decision after it is refused", LONG, async () => {
    const home = makeHome({}, { store: backend });
    const ann = home.addApprover({ name: "Ann" });
    const a = home.createIdentity({ channels: "card", policy: { cardSpendingLimitCents: 100_000, approval: { aboveCents: 5000, timeoutSeconds: 2 } } });
    const { client } = await stdioClient(home, a.token);
    const r = await client.callTool(charge(6000, "t1"), undefined, { timeout: 60_000 });
    expect(text(r)).toMatch(/^denied: approval_timeout: .*\(approval apv_[0-9a-f]{20}\)/);
    const id = /\(approval (apv_[0-9a-f]{20})\)/.exec(text(r))![1]!;
    const late = await decide(home, ann, "approve", id);
    expect(late.code).not.toBe(0);
    expect(late.stderr).toMatch(/already expired/);
    // The same key asks again (a question nobody answered is not a decision).
    const again = await client.callTool(charge(6000, "t1"), undefined, { timeout: 60_000 });
    expect(text(again)).toMatch(/^denied: approval_timeout: /);
    expect(text(again)).not.toContain(id);
    await client.close();
    expect(entries(home, a.id, "approval_requested")).toHaveLength(2);
    expect(entries(home, a.id, "approval_decided")).toEqual([]);
    expect(home.auditLog(a.id).filter((e) => e.reason === "approval_timeout").map((e) => e.approvalId)).toEqual(entries(home, a.id, "approval_requested").map((e) => e.approvalId));
    expect(home.auditLog(a.id).filter((e) => e.tool === "card_charge" && e.phase === "intent")).toEqual([]);
  });

  it("two approvers deciding at once: exactly one outcome, and the waiting call follows it", LONG, async () => {
    const home = makeHome({}, { store: backend });
    const ann = home.addApprover({ name: "Ann" });
    const bob = home.addApprover({ name: "Bob" });
    const a = home.createIdentity({ channels: "card", policy: { cardSpendingLimitCents: 100_000, approval: { aboveCents: 5000, approvers: [ann.id, bob.id], timeoutSeconds: 90 } } });
    const { client } = await stdioClient(home, a.token);
    const call = client.callTool(charge(6000, "r1"), undefined, { timeout: 100_000 });
    const p = await pendingOne(home, ann);
    const [x, y] = await Promise.all([decide(home, ann, "approve", p.id), decide(home, bob, "deny", p.id)]);
    expect([x.code, y.code].filter((c) => c === 0)).toHaveLength(1);
    const r = await call;
    await client.close();
    const decided = entries(home, a.id, "approval_decided");
    expect(decided).toHaveLength(1);
    if (x.code === 0) {
      expect(decided[0].approverId).toBe(ann.id);
      expect(r.isError, text(r)).toBeFalsy();
      expect(y.stderr).toMatch(/already (approved|used)/);
    } else {
      expect(decided[0].approverId).toBe(bob.id);
      expect(text(r)).toMatch(/^denied: approval_denied: /);
      expect(x.stderr).toMatch(/already denied/);
    }
  });

  it("quorum 2: one approver counts once however often it decides; the second approver completes it; an approver the policy does not name sees nothing (not_found)", LONG, async () => {
    const home = makeHome({}, { store: backend });
    const ann = home.addApprover({ name: "Ann" });
    const bob = home.addApprover({ name: "Bob" });
    const eve = home.addApprover({ name: "Eve" });
    const a = home.createIdentity({ channels: "card", policy: { cardSpendingLimitCents: 100_000, approval: { aboveCents: 5000, approvers: [ann.id, bob.id], quorum: 2, timeoutSeconds: 90 } } });
    const { client } = await stdioClient(home, a.token);
    const call = client.callTool(charge(6000, "q1"), undefined, { timeout: 100_000 });
    const p = await pendingOne(home, ann);
    const twice = await Promise.all([decide(home, ann, "approve", p.id), decide(home, ann, "approve", p.id)]);
    expect(twice.map((t) => t.code).sort()).toEqual([0, 1]);
    expect(twice.find((t) => t.code !== 0)!.stderr).toMatch(/already decided/);
    expect(JSON.parse(twice.find((t) => t.code === 0)!.stdout).status).toBe("pending");
    // Not named: the approval does not exist for Eve.
    expect(listAs(home, eve)).toEqual([]);
    const e = await decide(home, eve, "approve", p.id);
    expect(e.code).not.toBe(0);
    expect(e.stderr).toMatch(/No approval apv_/);
    expect(listAs(home, bob).map((x) => x.id)).toEqual([p.id]);
    const b = await decide(home, bob, "approve", p.id);
    expect(JSON.parse(b.stdout).status).toBe("approved");
    const r = await call;
    expect(r.isError, text(r)).toBeFalsy();
    await client.close();
    expect(entries(home, a.id, "approval_decided").map((x) => x.approverId)).toEqual([ann.id, bob.id]);
  });

  it("a decision racing the timeout: exactly one outcome, the same for the approver and the agent", LONG, async () => {
    const home = makeHome({}, { store: backend });
    const ann = home.addApprover({ name: "Ann" });
    const a = home.createIdentity({ channels: "card", policy: { cardSpendingLimitCents: 100_000, approval: { aboveCents: 5000, timeoutSeconds: 3 } } });
    const { client } = await stdioClient(home, a.token);
    const call = client.callTool(charge(6000, "race"), undefined, { timeout: 60_000 });
    // Listed whatever its status: on a loaded machine the 3 s may pass before the list is read.
    const p = await pendingOne(home, ann, { evenExpired: true });
    // Decide as close to the deadline as this machine allows.
    await new Promise((r) => setTimeout(r, Math.max(0, Date.parse(p.expiresAt) - Date.now() - 150)));
    const d = await decide(home, ann, "approve", p.id);
    const r = await call;
    await client.close();
    const log = home.auditLog(a.id);
    const decided = log.filter((e) => e.tool === "approval_decided");
    const timedOut = log.filter((e) => e.reason === "approval_timeout");
    const intents = log.filter((e) => e.tool === "card_charge" && e.phase === "intent");
    if (d.code === 0) {
      expect(r.isError, text(r)).toBeFalsy();
      expect([decided.length, timedOut.length, intents.length]).toEqual([1, 0, 1]);
    } else {
      expect(d.stderr).toMatch(/already expired/);
      expect(text(r)).toMatch(/^denied: approval_timeout: /);
      expect([decided.length, intents.length]).toEqual([0, 0]);
    }
  });

  it("an approval is for one exact action: after the agent's process is gone, a retry for another amount is refused; the same action proceeds without a new request", LONG, async () => {
    const home = makeHome({}, { store: backend });
    const ann = home.addApprover({ name: "Ann" });
    const a = home.createIdentity({ channels: "card", policy: { cardSpendingLimitCents: 100_000, approval: { aboveCents: 5000, timeoutSeconds: 90 } } });
    const first = await stdioClient(home, a.token);
    void first.client.callTool(charge(6000, "once"), undefined, { timeout: 100_000 }).catch(() => {});
    const p = await pendingOne(home, ann);
    await first.client.close(); // the agent's process goes away while the approval is pending
    expect(JSON.parse((await decide(home, ann, "approve", p.id)).stdout).status).toBe("approved");
    const { client } = await stdioClient(home, a.token);
    const more = await client.callTool(charge(9000, "once"));
    expect(text(more)).toMatch(new RegExp(`^denied: idempotency_conflict: .*\\(approval ${p.id}\\)`));
    const same = await client.callTool(charge(6000, "once"));
    expect(same.isError, text(same)).toBeFalsy();
    const replay = await client.callTool(charge(6000, "once"));
    expect(text(replay)).toMatch(/^already done with this idempotencyKey/);
    await client.close();
    expect(entries(home, a.id, "approval_requested")).toHaveLength(1);
    expect(home.auditLog(a.id).filter((e) => e.tool === "card_charge" && e.phase === "intent").map((e) => [e.amountCents, e.approvalId])).toEqual([[6000, p.id]]);
    if (backend === "file") expect(await ledger(home, a.id)).toEqual([["approved", 6000]]);
  });

  it("approved, then the policy changes: the approval does not carry over (approval_stale), and a tightened limit refuses outright", LONG, async () => {
    const home = makeHome({}, { store: backend });
    const ann = home.addApprover({ name: "Ann" });
    const policy = { cardSpendingLimitCents: 100_000, approval: { aboveCents: 5000, timeoutSeconds: 90 } };
    const a = home.createIdentity({ channels: "card", policy });
    const admin = await stdioClient(home, home.adminToken);
    for (const [key, next, refusal] of [
      ["stale", { ...policy, cardPerChargeLimitCents: 50_000 }, /^denied: approval_stale: /],
      ["tight", { ...policy, cardPerChargeLimitCents: 5500 }, /^denied: per_charge_limit: /],
    ] as const) {
      const first = await stdioClient(home, a.token);
      void first.client.callTool(charge(6000, key), undefined, { timeout: 100_000 }).catch(() => {});
      const p = await pendingOne(home, ann);
      await first.client.close();
      expect((await decide(home, ann, "approve", p.id)).code).toBe(0);
      const u = await admin.client.callTool({ name: "update_policy", arguments: { identityId: a.id, policies: next } });
      expect(u.isError, text(u)).toBeFalsy();
      const { client } = await stdioClient(home, a.token);
      const r = await client.callTool(charge(6000, key));
      expect(text(r), key).toMatch(refusal);
      await client.close();
    }
    await admin.client.close();
    expect(home.auditLog(a.id).filter((e) => e.tool === "card_charge" && e.phase === "intent")).toEqual([]);
    if (backend === "file") expect(await ledger(home, a.id)).toEqual([]);
  });
});
