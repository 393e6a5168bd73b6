import { afterAll, describe, expect, it } from "vitest";
import { createServer, type IncomingMessage, type Server, type ServerResponse } from "node:http";
import type { AddressInfo } from "node:net";
import { readFileSync, writeFileSync } from "node:fs";
import path from "node:path";
import { type Home, cleanupHomes, makeHome, stdioClient, text, hints } from "./support/home.js";
import { openApp } from "../src/app.js";
import { callAgentTool } from "../src/pipeline/agent-call.js";
import { readLedger } from "../src/providers/card/embedded.js";
import { AGENT_TOOLS } from "../tools/index.js";

afterAll(cleanupHomes);

const auditLog = (home: Home, id: string): any[] =>
  readFileSync(path.join(home.env.SIGIL_HOME!, "audit", `${id}.jsonl`), "utf8").trim().split("\n").map((l) => JSON.parse(l));
const ledger = (home: Home, id: string) => readLedger(home.env.SIGIL_HOME!, id);
const charge = (over: Record<string, unknown> = {}) => ({ amountCents: 100, currency: "USD", merchant: "Acme Books", idempotencyKey: "k-" + Math.random(), ...over });

describe("card_charge: policy limits", () => {
  it("enforces amount, currency, per-charge limit, merchant categories and the daily limit; the ledger holds exactly the approved charges", async () => {
    const home = makeHome();
    const a = home.createIdentity({
      channels: "card",
      policy: { cardSpendingLimitCents: 2500, cardPerChargeLimitCents: 1000, allowedMerchantCategories: ["5734", "5942"], blockedMerchantCategories: ["7995"] },
    });
    const none = home.createIdentity({ channels: "card", policy: {} });
    home.merchants({ "Acme Books": "5734" });
    const { client } = await stdioClient(home, a.token);
    const tool = (await client.listTools()).tools.find((t) => t.name === "card_charge")!;
    expect(hints(tool.annotations)).toMatchObject({ readOnlyHint: false, destructiveHint: false, idempotentHint: true, openWorldHint: true });
    expect((tool.inputSchema as any).required).toEqual(expect.arrayContaining(["amountCents", "currency", "merchant", "idempotencyKey"]));
    const call = (args: Record<string, unknown>) => client.callTool({ name: "card_charge", arguments: args });

    const cases: Array<[Record<string, unknown>, RegExp]> = [
      [charge({ amountCents: 0, merchantCategory: "5734" }), /^denied: invalid_arguments: amountCents/],
      [charge({ amountCents: -5, merchantCategory: "5734" }), /^denied: invalid_arguments: amountCents/],
      [charge({ amountCents: 1.5, merchantCategory: "5734" }), /^denied: invalid_arguments: amountCents/],
      [charge({ amountCents: 2 ** 53, merchantCategory: "5734" }), /^denied: invalid_arguments: amountCents/],
      [charge({ amountCents: "100", merchantCategory: "5734" }), /^denied: invalid_arguments: amountCents/],
      [charge({ currency: "usd", merchantCategory: "5734" }), /^denied: invalid_arguments: currency/],
      [charge({ currency: "EUR", merchantCategory: "5734" }), /^denied: currency_not_allowed: /],
      [charge({ merchantCategory: "57" }), /^denied: invalid_arguments: merchantCategory/],
      [{ amountCents: 100, currency: "USD", merchant: "Acme", merchantCategory: "5734" }, /^denied: invalid_arguments: idempotencyKey/],
      [charge({ merchant: "evil\u0007bell", merchantCategory: "5734" }), /^denied: invalid_arguments: merchant/],
      [charge({ amountCents: 1001, merchantCategory: "5734" }), /^denied: per_charge_limit: /],
      [charge({ merchantCategory: "7995" }), /^denied: merchant_category_blocked: /],
      [charge({ merchantCategory: "5411" }), /^denied: merchant_category_not_allowed: /],
    ];
    for (const [args, re] of cases) {
      const r = await call(args);
      expect(r.isError, JSON.stringify(args)).toBe(true);
      expect(text(r), JSON.stringify(args)).toMatch(re);
    }
    expect(await ledger(home, a.id)).toEqual([]); // nothing reached the processor

    // 1000 + 1000 + 500 = the 2500 limit; one more cent is refused.
    const ok: any[] = [];
    for (const amountCents of [1000, 1000, 500]) {
      const r = await call(charge({ amountCents, merchantCategory: "5734" }));
      expect(r.isError, text(r)).toBeFalsy();
      ok.push(r.structuredContent);
    }
    expect(ok[0]).toMatchObject({ status: "approved", amountCents: 1000, currency: "USD", merchant: "Acme Books", merchantCategory: "5734" });
    expect(ok[0].chargeId).toMatch(/^ch_[0-9a-f]{24}$/);
    expect(ok[0].cardId).toMatch(/^card_[0-9a-f]{16}$/);
    const over = await call(charge({ amountCents: 1, merchantCategory: "5734" }));
    expect(text(over)).toMatch(/^denied: spending_limit: /);
    await client.close();

    const lines = await ledger(home, a.id);
    expect(lines.map((l) => [l.status, l.amountCents, l.chargeId])).toEqual(ok.map((o) => ["approved", o.amountCents, o.chargeId]));
    // Each approved charge: an intent carrying the reservation, then an ok result with the charge id.
    const log = auditLog(home, a.id).filter((e) => e.tool === "card_charge");
    const intents = log.filter((e) => e.phase === "intent");
    expect(intents.map((e) => e.amountCents)).toEqual([1000, 1000, 500]);
    const results = log.filter((e) => e.phase === "result");
    expect(results.map((e) => [e.decision, e.providerId])).toEqual(ok.map((o) => ["ok", o.chargeId]));
    expect(results.map((e) => e.intent)).toEqual(intents.map((e) => e.seq));

    // No cardSpendingLimitCents: no charge at all.
    const c2 = await stdioClient(home, none.token);
    expect(text(await c2.client.callTool({ name: "card_charge", arguments: charge() }))).toMatch(/^denied: card_not_allowed: /);
    await c2.client.close();
    expect(home.json(["audit", "verify"]).ok).toBe(true);
  });

  it("a declined charge releases its reservation, is audited as failed, and is recorded as declined in the ledger", async () => {
    const home = makeHome({ SIGIL_CARD_DECLINE_ABOVE_CENTS: "900" });
    const a = home.createIdentity({ channels: "card", policy: { cardSpendingLimitCents: 1000 } });
    const { client } = await stdioClient(home, a.token);
    const d1 = await client.callTool({ name: "card_charge", arguments: charge({ amountCents: 1000, merchant: "DECLINE-TEST", idempotencyKey: "d1" }) });
    expect(d1.isError).toBe(true);
    expect(text(d1)).toMatch(/^denied: card_declined: /);
    const d2 = await client.callTool({ name: "card_charge", arguments: charge({ amountCents: 950, idempotencyKey: "d2" }) });
    expect(text(d2)).toMatch(/^denied: card_declined: /);
    // Both reservations were released: the whole limit is still available.
    const ok = await client.callTool({ name: "card_charge", arguments: charge({ amountCents: 900, idempotencyKey: "ok" }) });
    expect(ok.isError, text(ok)).toBeFalsy();
    const ok2 = await client.callTool({ name: "card_charge", arguments: charge({ amountCents: 100, idempotencyKey: "ok2" }) });
    expect(ok2.isError, text(ok2)).toBeFalsy();
    // A declined key is free for a retry (it charged nothing); now the limit is used up, so policy refuses it.
    const again = await client.callTool({ name: "card_charge", arguments: charge({ amountCents: 1000, merchant: "DECLINE-TEST", idempotencyKey: "d1" }) });
    expect(text(again)).toMatch(/^denied: spending_limit: /);
    await client.close();
    expect((await ledger(home, a.id)).map((l) => [l.status, l.amountCents])).toEqual([
      ["declined", 1000],
      ["declined", 950],
      ["approved", 900],
      ["approved", 100],
    ]);
    const results = auditLog(home, a.id).filter((e) => e.tool === "card_charge" && e.phase === "result");
    expect(results.map((e) => [e.decision, e.reason ?? null])).toEqual([
      ["failed", "card_declined"],
      ["failed", "card_declined"],
      ["ok", null],
      ["ok", null],
    ]);
  });
});

describe("card_charge: idempotency", () => {
  it("a retry with the same key and arguments returns the first result and charges once; other arguments are refused; concurrent duplicates charge once", async () => {
    const home = makeHome({ SIGIL_CARD_LATENCY_MS: "150" });
    const a = home.createIdentity({ channels: "card", policy: { cardSpendingLimitCents: 100_000 } });
    const { client } = await stdioClient(home, a.token);
    const args = { amountCents: 1234, currency: "USD", merchant: "Acme", description: "book", idempotencyKey: "order-1" };
    const first = await client.callTool({ name: "card_charge", arguments: args });
    expect(first.isError, text(first)).toBeFalsy();
    const retry = await client.callTool({ name: "card_charge", arguments: { ...args } });
    expect(retry.isError).toBeFalsy();
    expect(retry.structuredContent).toEqual(first.structuredContent); // same charge id, same receipt
    const conflict = await client.callTool({ name: "card_charge", arguments: { ...args, amountCents: 1235 } });
    expect(text(conflict)).toMatch(/^denied: idempotency_conflict: /);
    const conflict2 = await client.callTool({ name: "card_charge", arguments: { ...args, description: "other" } });
    expect(text(conflict2)).toMatch(/^denied: idempotency_conflict: /);

    // Five concurrent calls with one new key while the processor is slow: one charge, five equal answers.
    const burst = await Promise.all(Array.from({ length: 5 }, () => client.callTool({ name: "card_charge", arguments: { ...args, idempotencyKey: "order-2" } })));
    expect(burst.every((r) => !r.isError)).toBe(true);
    const ids = new Set(burst.map((r) => (r.structuredContent as any).chargeId));
    expect(ids.size).toBe(1);
    expect(new Set(burst.map((r) => (r.structuredContent as any).receipt.seq)).size).toBe(1);
    await client.close();

    // The same key from another process (another session of the identity) replays too.
    const other = await stdioClient(home, a.token);
    const fromOther = await other.client.callTool({ name: "card_charge", arguments: args });
    expect(fromOther.structuredContent).toEqual(first.structuredContent);
    await other.client.close();

    const lines = await ledger(home, a.id);
    expect(lines.map((l) => l.chargeId)).toEqual([(first.structuredContent as any).chargeId, [...ids][0]]);
    const log = auditLog(home, a.id).filter((e) => e.tool === "card_charge");
    expect(log.filter((e) => e.phase === "intent")).toHaveLength(2);
    expect(log.filter((e) => e.decision === "replayed")).toHaveLength(1 + 4 + 1);
  });
});

describe("card_charge: the rolling 24 hours, through the pipeline with a fixed clock", () => {
  it("spend older than 24 hours no longer counts; spend within it does", async () => {
    const home = makeHome();
    const a = home.createIdentity({ channels: "card", policy: { cardSpendingLimitCents: 1500 } });
    let t = Date.parse("2030-01-01T00:00:00.000Z");
    const app = await openApp({ home: home.env.SIGIL_HOME!, env: home.env, now: () => t });
    const session = {
      deps: app.agent,
      identityId: a.id,
      tokenHash: app.auth.hash(a.token),
      sessionId: "s_clock",
      memory: { secretsRead: new Set<string>() },
    };
    const tool = AGENT_TOOLS.find((x) => x.name === "card_charge");
    const pay = (amountCents: number) => callAgentTool(session, tool, "card_charge", charge({ amountCents }), undefined);
    const HOUR = 3_600_000;
    try {
      expect((await pay(1000)).isError).toBeFalsy(); // t0
      t += 12 * HOUR;
      expect((await pay(500)).isError).toBeFalsy(); // t0 + 12h: 1500 of 1500
      t += 12 * HOUR - 1;
      expect(text(await pay(1))).toMatch(/^denied: spending_limit: /); // t0 + 24h - 1ms: both still count
      t += 1;
      expect((await pay(1000)).isError).toBeFalsy(); // t0 + 24h: the first charge left the window
      expect(text(await pay(1))).toMatch(/^denied: spending_limit: /); // 500 + 1000 + 1 > 1500
      t += 12 * HOUR;
      expect((await pay(500)).isError).toBeFalsy(); // t0 + 36h: only the 1000 counts
    } finally {
      await app.close();
    }
    expect((await ledger(home, a.id)).filter((l) => l.status === "approved").map((l) => l.amountCents)).toEqual([1000, 500, 1000, 500]);
  });
});

describe("card_charge: merchant categories come from the processor, not the agent", () => {
  it("with 7995 blocked, a casino charge fails whether the agent omits the category or claims 5734; unknown merchants are refused under category rules; nothing reaches the card", async () => {
    const home = makeHome();
    // The operator tells the embedded processor its merchants (the CLI writes merchants.json).
    expect(home.json(["card", "merchant", "add", "Lucky Casino", "7995"])).toEqual({ merchant: "Lucky Casino", category: "7995" });
    expect(home.json(["card", "merchant", "add", "Acme Books", "5734"])).toEqual({ merchant: "Acme Books", category: "5734" });
    const bad = home.cli(["card", "merchant", "add", "Acme Books", "57a4"]);
    expect([bad.code, bad.stderr]).toEqual([1, "sigil: the category must be a 4-digit merchant category code (MCC).\n"]);
    expect(home.json(["card", "merchant", "list"])).toEqual({ "Lucky Casino": "7995", "Acme Books": "5734" });

    const ruled = home.createIdentity({ channels: "card", policy: { cardSpendingLimitCents: 1000, blockedMerchantCategories: ["7995"] } });
    const free = home.createIdentity({ channels: "card", policy: { cardSpendingLimitCents: 1000 } });
    const { client } = await stdioClient(home, ruled.token);
    const call = (args: Record<string, unknown>) => client.callTool({ name: "card_charge", arguments: charge({ amountCents: 1000, ...args }) });
    try {
      expect(text(await call({ merchant: "Lucky Casino" }))).toMatch(/^denied: merchant_category_blocked: merchant category 7995 is blocked/);
      expect(text(await call({ merchant: "Lucky Casino", merchantCategory: "5734" }))).toMatch(/^denied: merchant_category_mismatch: the card processor knows this merchant as category 7995, not 5734/);
      expect(text(await call({ merchant: "  lucky   CASINO " }))).toMatch(/^denied: merchant_category_blocked: /); // names match loosely
      expect(text(await call({ merchant: "Lucky Casin0", merchantCategory: "5734" }))).toMatch(/^denied: merchant_category_unknown: /);
      expect(text(await call({ merchant: "Acme Books", merchantCategory: "5942" }))).toMatch(/^denied: merchant_category_mismatch: /);
      // Every refusal above released its reservation: the whole limit is still there, and the
      // category an approval reports is the processor's.
      const ok = await call({ merchant: "Acme Books" });
      expect(ok.isError, text(ok)).toBeFalsy();
      expect(ok.structuredContent).toMatchObject({ status: "approved", merchant: "Acme Books", merchantCategory: "5734" });
    } finally {
      await client.close();
    }
    const lines = await ledger(home, ruled.id);
    expect(lines.map((l) => [l.status, l.merchant, l.processorCategory])).toEqual([["approved", "Acme Books", "5734"]]);
    const results = auditLog(home, ruled.id).filter((e) => e.tool === "card_charge" && e.phase === "result");
    expect(results.map((e) => [e.decision, e.reason ?? null])).toEqual([
      ["failed", "merchant_category_blocked"],
      ["failed", "merchant_category_mismatch"],
      ["failed", "merchant_category_blocked"],
      ["failed", "merchant_category_unknown"],
      ["failed", "merchant_category_mismatch"],
      ["ok", null],
    ]);

    // Without category rules a merchant may be unknown, but a claim that contradicts the processor is still refused.
    const c2 = await stdioClient(home, free.token);
    try {
      expect(text(await c2.client.callTool({ name: "card_charge", arguments: charge({ merchant: "Lucky Casino", merchantCategory: "5734" }) }))).toMatch(/^denied: merchant_category_mismatch: /);
      const unknown = await c2.client.callTool({ name: "card_charge", arguments: charge({ merchant: "Corner Shop" }) });
      expect(unknown.isError, text(unknown)).toBeFalsy();
      expect((unknown.structuredContent as any).merchantCategory).toBeUndefined();
    } finally {
      await c2.client.close();
    }
  });

  it("the embedded processor decides again at authorization: a category changed after the lookup, or a merchants.json it cannot read, charges nothing", async () => {
    const home = makeHome();
    const { EmbeddedCardProcessor } = await import("../src/providers/card/embedded.js");
    const { CardDeclined } = await import("../src/providers/card/processor.js");
    const p = new EmbeddedCardProcessor({ home: home.env.SIGIL_HOME! });
    const id = "id_" + "0".repeat(20);
    const req = { identityId: id, amountCents: 100, currency: "USD", merchant: "Shop", reference: "r1", categoryRules: { blocked: ["7995"] } };
    home.merchants({ Shop: "5734" });
    expect(await p.merchantCategory("shop")).toBe("5734");
    home.merchants({ Shop: "7995" }); // re-coded between the lookup and the charge
    const declined = await p.charge(req).catch((e) => e);
    expect(declined).toBeInstanceOf(CardDeclined);
    expect(declined.reason).toBe("merchant_category_blocked");
    await expect(p.charge({ ...req, merchant: "Other", reference: "r2" })).rejects.toMatchObject({ reason: "merchant_category_unknown" });
    await expect(p.charge({ ...req, categoryRules: { allowed: ["5734"] }, reference: "r3" })).rejects.toMatchObject({ reason: "merchant_category_not_allowed" });
    await expect(p.charge({ ...req, categoryRules: undefined, merchantCategory: "5734", reference: "r4" })).rejects.toMatchObject({ reason: "merchant_category_mismatch" });
    expect(await p.charge({ ...req, categoryRules: undefined, reference: "r5" })).toMatchObject({ status: "approved", merchantCategory: "7995" });
    expect((await ledger(home, id)).map((l) => [l.status, l.declineReason ?? null])).toEqual([
      ["declined", "merchant_category_blocked"],
      ["declined", "merchant_category_unknown"],
      ["declined", "merchant_category_not_allowed"],
      ["declined", "merchant_category_mismatch"],
      ["approved", null],
    ]);
    writeFileSync(path.join(home.env.SIGIL_HOME!, "card", "merchants.json"), '{"Shop": 7995}');
    await expect(p.merchantCategory("Shop")).rejects.toMatchObject({ kind: "unavailable" });
    await expect(p.charge({ ...req, reference: "r6" })).rejects.toMatchObject({ kind: "unavailable" });
    expect(await ledger(home, id)).toHaveLength(5);
  });
});

describe("card_charge: an HTTP card processor (SIGIL_CARD_PROCESSOR_URL)", () => {
  async function processor(behaviour: (body: any, res: ServerResponse) => void): Promise<{ url: string; requests: any[]; server: Server }> {
    const requests: any[] = [];
    const server = createServer((req: IncomingMessage, res: ServerResponse) => {
      let buf = "";
      req.on("data", (d) => (buf += d));
      req.on("end", () => {
        const body = JSON.parse(buf);
        requests.push({ body, headers: req.headers });
        behaviour(body, res);
      });
    });
    await new Promise<void>((r) => server.listen(0, "127.0.0.1", r));
    return { url: `http://127.0.0.1:${(server.address() as AddressInfo).port}/charges`, requests, server };
  }
  const reply = (res: ServerResponse, status: number, body: unknown) => {
    res.writeHead(status, { "content-type": "application/json" });
    res.end(JSON.stringify(body));
  };

  it("approves, declines (released), is unavailable (released), or times out (unknown: the reservation is kept)", async () => {
    let n = 0;
    const proc = await processor((body, res) => {
      n++;
      if (body.merchant === "Hang") return; // never answers: the client times out
      if (body.merchant === "Busy") return reply(res, 503, { error: "busy" });
      if (body.merchant === "Nope") return reply(res, 402, { status: "declined" });
      reply(res, 200, { chargeId: `ext_${n}`, status: "approved" });
    });
    const home = makeHome({ SIGIL_CARD_PROCESSOR_URL: proc.url, SIGIL_PROVIDER_TIMEOUT_MS: "3000", SIGIL_CARD_PROCESSOR_TOKEN: "proc-token" });
    const a = home.createIdentity({ channels: "card", policy: { cardSpendingLimitCents: 1000 } });
    const { client } = await stdioClient(home, a.token);
    const call = (args: Record<string, unknown>) => client.callTool({ name: "card_charge", arguments: charge(args) });
    try {
      const ok = await call({ amountCents: 100, merchant: "Fine", idempotencyKey: "h1" });
      expect(ok.structuredContent).toMatchObject({ chargeId: "ext_1", status: "approved" });
      expect(proc.requests[0].body).toMatchObject({ identityId: a.id, amountCents: 100, currency: "USD", merchant: "Fine", reference: `${a.id}:h1` });
      expect(proc.requests[0].headers["idempotency-key"]).toBe(`${a.id}:h1`);
      expect(proc.requests[0].headers.authorization).toBe("Bearer proc-token");

      expect(text(await call({ amountCents: 900, merchant: "Nope" }))).toMatch(/^denied: card_declined: /);
      expect(text(await call({ amountCents: 900, merchant: "Busy" }))).toMatch(/^error: provider_unavailable: .*nothing was charged/);
      // Both released: 900 still fits. Now a charge whose outcome is unknown keeps its 900 reserved.
      expect(text(await call({ amountCents: 900, merchant: "Hang", idempotencyKey: "h4" }))).toMatch(/^error: provider_unknown: /);
      expect(text(await call({ amountCents: 1, merchant: "Fine" }))).toMatch(/^denied: spending_limit: /);
      // The unknown charge is never repeated under its key.
      expect(text(await call({ amountCents: 900, merchant: "Hang", idempotencyKey: "h4" }))).toMatch(/^denied: outcome_unknown: /);
    } finally {
      await client.close();
      proc.server.closeAllConnections();
      proc.server.close();
    }
    expect(proc.requests).toHaveLength(4);
    const results = auditLog(home, a.id).filter((e) => e.tool === "card_charge" && e.phase === "result");
    expect(results.map((e) => [e.decision, e.reason ?? null])).toEqual([
      ["ok", null],
      ["failed", "card_declined"],
      ["failed", "provider_unavailable"],
      ["unknown", "provider_unknown"],
    ]);
  });

  it("reports the category in its authorization: it gets the rules and the claim, its category declines are refusals, and an approval the rules refuse is never reported as a success", async () => {
    let n = 0;
    const proc = await processor((body, res) => {
      n++;
      if (body.merchant === "Lucky Casino") return reply(res, 402, { status: "declined", declineReason: body.merchantCategory ? "merchant_category_mismatch" : "merchant_category_blocked" });
      if (body.merchant === "Rogue") return reply(res, 200, { chargeId: `ext_${n}`, status: "approved", merchantCategory: "7995" });
      if (body.merchant === "Silent") return reply(res, 200, { chargeId: `ext_${n}`, status: "approved" });
      reply(res, 200, { chargeId: `ext_${n}`, status: "approved", merchantCategory: "5734" });
    });
    const home = makeHome({ SIGIL_CARD_PROCESSOR_URL: proc.url });
    const a = home.createIdentity({ channels: "card", policy: { cardSpendingLimitCents: 1000, blockedMerchantCategories: ["7995"] } });
    const { client } = await stdioClient(home, a.token);
    const call = (args: Record<string, unknown>) => client.callTool({ name: "card_charge", arguments: charge(args) });
    try {
      expect(text(await call({ merchant: "Lucky Casino" }))).toMatch(/^denied: merchant_category_blocked: /);
      expect(text(await call({ merchant: "Lucky Casino", merchantCategory: "5734" }))).toMatch(/^denied: merchant_category_mismatch: /);
      expect(proc.requests[1].body).toMatchObject({ merchant: "Lucky Casino", merchantCategory: "5734", categoryRules: { blocked: ["7995"] } });
      const ok = await call({ merchant: "Books" });
      expect(ok.structuredContent).toMatchObject({ status: "approved", merchantCategory: "5734" });
      expect(text(await call({ merchant: "Books", merchantCategory: "5942" }))).toMatch(/^error: provider_unknown: .*category rules refuse it/);
      expect(text(await call({ merchant: "Rogue" }))).toMatch(/^error: provider_unknown: .*category rules refuse it/);
      expect(text(await call({ merchant: "Silent" }))).toMatch(/^error: provider_unknown: /);
    } finally {
      await client.close();
      proc.server.closeAllConnections();
      proc.server.close();
    }
    const results = auditLog(home, a.id).filter((e) => e.tool === "card_charge" && e.phase === "result");
    expect(results.map((e) => [e.decision, e.reason ?? null])).toEqual([
      ["failed", "merchant_category_blocked"],
      ["failed", "merchant_category_mismatch"],
      ["ok", null],
      ["unknown", "provider_unknown"],
      ["unknown", "provider_unknown"],
      ["unknown", "provider_unknown"],
    ]);
  });
});
