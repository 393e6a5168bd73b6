import { afterAll, describe, expect, it } from "vitest";
import { readFileSync } from "node:fs";
import path from "node:path";
import { type Home, cleanupHomes, makeHome, stdioClient, text } from "./support/home.js";
import { readLedger } from "../src/providers/card/embedded.js";

afterAll(cleanupHomes);

const auditLog = (home: Home, id: string): any[] =>
  readFileSync(path.join(home.env.SIGIL_HOME!, "audit", `${id}.jsonl`), "utf8").trim().split("\n").map((l) => JSON.parse(l));

/** `processes` separate `sigil serve` processes on one home, each firing `perProcess` concurrent charges. */
async function race(home: Home, token: string, processes: number, perProcess: number, args: (p: number, i: number) => Record<string, unknown>) {
  const sessions = await Promise.all(Array.from({ length: processes }, () => stdioClient(home, token)));
  try {
    const results = await Promise.all(
      sessions.flatMap(({ client }, p) =>
        Array.from({ length: perProcess }, (_, i) => client.callTool({ name: "card_charge", arguments: args(p, i) }, undefined, { timeout: 60_000 })),
      ),
    );
    return results;
  } catch (err) {
    // A server process that died: show why (its stderr) rather than only "Connection closed".
    throw new Error(`${String(err)}\n${sessions.map((s, i) => `server ${i} stderr: ${s.stderr()}`).join("\n")}`);
  } finally {
    await Promise.all(sessions.map((s) => s.client.close()));
  }
}

const dollar = (tag: string) => (p: number, i: number) => ({ amountCents: 100, currency: "USD", merchant: "Acme", idempotencyKey: `${tag}-${p}-${i}` });

describe("card limits hold across concurrent sessions and processes", () => {
  it("4 sigil serve processes x 10 concurrent $1.00 charges against $15.00: exactly 15 approved, and the ledger agrees", async () => {
    const home = makeHome({ SIGIL_CARD_LATENCY_MS: "40" });
    const a = home.createIdentity({ channels: "card", policy: { cardSpendingLimitCents: 1500 } });
    const results = await race(home, a.token, 4, 10, dollar("r"));
    const approved = results.filter((r) => !r.isError);
    const refused = results.filter((r) => r.isError);
    expect(approved).toHaveLength(15);
    expect(refused).toHaveLength(25);
    for (const r of refused) expect(text(r)).toMatch(/^denied: spending_limit: /);
    const ledger = await readLedger(home.env.SIGIL_HOME!, a.id);
    expect(ledger.filter((l) => l.status === "approved")).toHaveLength(15);
    expect(ledger).toHaveLength(15); // refused charges never reached the processor
    expect(new Set(approved.map((r) => (r.structuredContent as any).chargeId))).toEqual(new Set(ledger.map((l) => l.chargeId)));
    const log = auditLog(home, a.id);
    expect(log.filter((e) => e.phase === "intent").reduce((s, e) => s + e.amountCents, 0)).toBe(1500);
    expect(log.filter((e) => e.phase === "result" && e.decision === "ok")).toHaveLength(15);
    expect(home.json(["audit", "verify", a.id]).ok).toBe(true);
  });

  it("charges that fit are never refused: 4 processes x 10 concurrent $1.00 charges against $40.00 all succeed", async () => {
    const home = makeHome({ SIGIL_CARD_LATENCY_MS: "20" });
    const a = home.createIdentity({ channels: "card", policy: { cardSpendingLimitCents: 4000 } });
    const results = await race(home, a.token, 4, 10, dollar("fit"));
    expect(results.filter((r) => r.isError).map(text)).toEqual([]);
    expect((await readLedger(home.env.SIGIL_HOME!, a.id)).filter((l) => l.status === "approved")).toHaveLength(40);
  });

  it("one session, 30 concurrent $1.00 charges against $10.00: exactly 10 approved", async () => {
    const home = makeHome({ SIGIL_CARD_LATENCY_MS: "20" });
    const a = home.createIdentity({ channels: "card", policy: { cardSpendingLimitCents: 1000 } });
    const results = await race(home, a.token, 1, 30, dollar("one"));
    expect(results.filter((r) => !r.isError)).toHaveLength(10);
    expect(results.filter((r) => r.isError).every((r) => /^denied: spending_limit: /.test(text(r)))).toBe(true);
    expect((await readLedger(home.env.SIGIL_HOME!, a.id)).filter((l) => l.status === "approved")).toHaveLength(10);
  });

  it("declined charges in other processes release their reservations: after a wave of declines, exactly the limit is approved", async () => {
    const home = makeHome({ SIGIL_CARD_LATENCY_MS: "20" });
    const a = home.createIdentity({ channels: "card", policy: { cardSpendingLimitCents: 1500 } });
    const declines = await race(home, a.token, 4, 10, (p, i) => ({ ...dollar("d")(p, i), merchant: "DECLINE-TEST" }));
    expect(declines.every((r) => r.isError)).toBe(true);
    expect(declines.filter((r) => /^denied: card_declined: /.test(text(r))).length).toBeGreaterThanOrEqual(15);
    const results = await race(home, a.token, 4, 10, dollar("after"));
    expect(results.filter((r) => !r.isError)).toHaveLength(15);
    const ledger = await readLedger(home.env.SIGIL_HOME!, a.id);
    expect(ledger.filter((l) => l.status === "approved")).toHaveLength(15);
    expect(ledger.filter((l) => l.status === "declined").length).toBe(declines.filter((r) => /card_declined/.test(text(r))).length);
    expect(home.json(["audit", "verify", a.id]).ok).toBe(true);
  });
});
