/**
 * Concurrency at scale: 16 `sigil serve` processes on one home, all calling at once. Limits and
 * rate limits are exact (never exceeded, never under-used), the chain never forks, idempotent
 * duplicates act once, and no registry update from concurrent admin sessions is lost.
 */
import { readFileSync } from "node:fs";
import path from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { cleanupHomes, makeHome, text } from "./support/home.js";
import { auditOf, ledgerOf, outboxRecords, resultsByIntent, startServer } from "./support/fleet.js";

afterAll(cleanupHomes);

const AGENT_PROCS = 12;
const ADMIN_PROCS = 4;
const PER_KIND = 4; // concurrent calls of each kind per agent process
const PRICE = 100;
const LIMIT = 2_500; // 25 charges
const PER_MINUTE = 20;
const UPDATES = 4; // update_policy per admin process
const CREATES = 3; // create_identity per admin process
const OWN = "+14155550100";
const policy = (extra: Record<string, unknown> = {}) => ({
  allowedPhoneCountries: ["US"],
  cardSpendingLimitCents: LIMIT,
  rateLimits: { send_sms: { perMinute: PER_MINUTE } },
  ...extra,
});

describe(`${AGENT_PROCS + ADMIN_PROCS} server processes on one home`, () => {
  it(`${AGENT_PROCS} agent processes x ${PER_KIND * 4} concurrent calls and ${ADMIN_PROCS} admin processes: limits exact, one chain, no lost update`, { timeout: 120_000 }, async () => {
    const home = makeHome();
    const a = home.createIdentity({ name: "busy", channels: "sms,voice,card", phone: OWN, policy: policy() });
    const t0 = Date.now();
    const [agents, admins] = await Promise.all([
      Promise.all(Array.from({ length: AGENT_PROCS }, () => startServer(home, a.token))),
      Promise.all(Array.from({ length: ADMIN_PROCS }, () => startServer(home, home.adminToken))),
    ]);
    const t1 = Date.now();

    const agentCalls = agents.flatMap((s, p) =>
      Array.from({ length: PER_KIND }, (_, i) => [
        { s, name: "card_charge", arguments: { amountCents: PRICE, currency: "USD", merchant: "Scale Books", idempotencyKey: `c-${p}-${i}` } },
        { s, name: "send_sms", arguments: { to: "+14155550123", body: `scale ${p}-${i}` } },
        { s, name: "whoami", arguments: {} },
        // The same key from every process at once: one call is placed, the rest replay it.
        { s, name: "place_call", arguments: { to: "+14155550123", message: "one call only", idempotencyKey: "shared-call" } },
      ]).flat(),
    );
    const adminCalls = admins.flatMap((s, p) => [
      ...Array.from({ length: UPDATES }, (_, i) => ({
        s,
        name: "update_policy",
        arguments: { identityId: a.id, policies: policy({ allowedPhoneNumbers: [`+1415555${1000 + p * 10 + i}`] }) },
      })),
      ...Array.from({ length: CREATES }, (_, i) => ({ s, name: "create_identity", arguments: { name: `made-${p}-${i}`, channels: [] } })),
    ]);
    const all = [...agentCalls, ...adminCalls];
    const results: any[] = await Promise.all(all.map((c) => c.s.client.callTool({ name: c.name, arguments: c.arguments })));
    const t2 = Date.now();
    await Promise.all([...agents, ...admins].map((s) => s.close()));
    process.stderr.write(`[scale] start ${t1 - t0} ms, ${all.length} calls in ${t2 - t1} ms\n`);
    for (const s of [...agents, ...admins]) expect(s.stderr()).toBe("");

    const by = (name: string) => results.filter((_, i) => all[i]!.name === name);
    const ok = (rs: any[]) => rs.filter((r) => !r.isError);
    const reasons = (rs: any[]) => new Set(rs.filter((r) => r.isError).map((r) => text(r).split(":").slice(0, 2).join(":")));

    // The card limit is exact: 25 approved, the rest refused by the limit, the ledger agrees.
    const charges = by("card_charge");
    expect(ok(charges)).toHaveLength(LIMIT / PRICE);
    expect(reasons(charges)).toEqual(new Set(["denied: spending_limit"]));
    const ledger = ledgerOf(home, a.id);
    expect(ledger.filter((l) => l.status === "approved").reduce((s, l) => s + l.amountCents, 0)).toBe(LIMIT);
    // The rate limit is exact: 20 sent, the rest refused by it, 20 in the outbox.
    const sms = by("send_sms");
    expect(ok(sms)).toHaveLength(PER_MINUTE);
    expect(reasons(sms)).toEqual(new Set(["denied: rate_limited"]));
    const out = outboxRecords(home);
    expect(out.filter((r) => r.kind === "sms")).toHaveLength(PER_MINUTE);
    // Unlimited calls all succeed; the idempotent duplicates placed one call.
    expect(ok(by("whoami"))).toHaveLength(AGENT_PROCS * PER_KIND);
    const calls = by("place_call");
    expect(ok(calls)).toHaveLength(AGENT_PROCS * PER_KIND);
    expect(new Set(calls.map((r) => r.structuredContent.sid)).size).toBe(1);
    expect(out.filter((r) => r.kind === "call")).toHaveLength(1);

    // One chain: every acknowledged receipt is its own entry, gap-free, verified, nothing left open.
    const log = auditOf(home, a.id);
    expect(log.map((e) => e.seq)).toEqual(log.map((_, i) => i + 1));
    const receipts = ok(results).map((r) => r.structuredContent?.receipt).filter(Boolean);
    for (const rc of receipts) expect(log[rc.seq - 1].hash).toBe(rc.hash);
    const fresh = ok(agentCalls.map((_, i) => results[i])).filter((r) => !text(r).startsWith("already done"));
    expect(new Set(fresh.map((r) => r.structuredContent.receipt.seq)).size).toBe(fresh.length);
    const resolved = resultsByIntent(log);
    for (const e of log.filter((x) => x.phase === "intent")) expect(resolved.get(e.seq)?.decision).toBe("ok");
    const verify = home.json(["audit", "verify"]);
    expect(verify.ok).toBe(true);
    for (const v of verify.identities) expect(v.unresolvedIntents).toBeUndefined();

    // No lost registry update.
    expect(ok(adminCalls.map((_, i) => results[agentCalls.length + i]))).toHaveLength(adminCalls.length);
    const rec = JSON.parse(readFileSync(path.join(home.env.SIGIL_HOME!, "identities", `${a.id}.json`), "utf8"));
    expect(rec.policyVersion).toBe(1 + ADMIN_PROCS * UPDATES);
    expect(rec.policy).toMatchObject({ cardSpendingLimitCents: LIMIT, rateLimits: { send_sms: { perMinute: PER_MINUTE } } });
    const updates = log.filter((e) => e.tool === "policy_updated" && e.phase === "result" && e.decision === "ok").map((e) => e.policyVersion);
    expect(updates.sort((x, y) => x - y)).toEqual(Array.from({ length: ADMIN_PROCS * UPDATES }, (_, i) => i + 2));
    const names = home.json<any[]>(["identity", "list"]).map((i) => i.name);
    for (let p = 0; p < ADMIN_PROCS; p++) for (let i = 0; i < CREATES; i++) expect(names).toContain(`made-${p}-${i}`);
    expect(names).toHaveLength(1 + ADMIN_PROCS * CREATES);
  });
});
