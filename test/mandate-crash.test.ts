/**
 * No payment mandate without its audit entry, whatever moment a crash picks: a real `sigil serve`
 * (stdio) process is SIGKILLed (SIGIL_TEST_CRASH, src/util/faults.ts) while issuing a mandate —
 * right after its intent entry is durable, or after the mandate was signed and stored but before
 * its result entry — and the next process finds: the log verifies; the open intent got its result
 * `unknown` (orphaned_intent), never `ok`; no receipt or token reached the client; a mandate stored
 * by the dead process is one the log never issued, so it cannot be presented (mandate_not_found);
 * and the chain continues (a new mandate is issued and presented). Both stores.
 */
import { readdirSync } from "node:fs";
import path from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { backends, pgQuery, pgSkipNote } from "./support/backends.js";
import { type Home, cleanupHomes, makeHome, stdioClient, text, until, withApp } from "./support/home.js";

afterAll(cleanupHomes);

const PAYEE = { id: "merchant_1", name: "Demo Merchant", website: "https://demo-merchant.example" };
const POLICY = { cardSpendingLimitCents: 50_000, cardPerChargeLimitCents: 20_000 };

async function storedMandateIds(home: Home): Promise<string[]> {
  if (home.store === "postgres") return (await pgQuery(home.env.SIGIL_STORE_URL!, "SELECT id FROM sigil_payment_mandates ORDER BY id")).map((r: any) => r.id);
  try {
    return readdirSync(path.join(home.env.SIGIL_HOME!, "mandates")).filter((f) => f.endsWith(".json")).map((f) => f.slice(0, -5)).sort();
  } catch {
    return [];
  }
}

describe.each(backends)(`a payment mandate interrupted by a crash (%s store)${pgSkipNote}`, (backend) => {
  it.each([
    ["create_payment_mandate:after-intent", 0],
    ["create_payment_mandate:after-act", 1],
  ] as const)("killed at %s: no mandate is issued without its audit entry, the log verifies, the chain continues", { timeout: 240_000 }, async (point, orphans) => {
    const home = makeHome({}, { store: backend });
    const a = home.createIdentity({ name: "buyer", channels: "card", policy: POLICY });
    const dying = await stdioClient(home, a.token, { env: { SIGIL_TEST_CRASH: point } });
    await expect(dying.client.callTool({ name: "create_payment_mandate", arguments: { payee: PAYEE, currency: "USD", maxAmountCents: 5000 } })).rejects.toThrow();
    await dying.client.close().catch(() => {});

    // The next process to open the chain resolves the dead one's intent (on PostgreSQL its backend may linger briefly).
    const verdict = await until(async () => {
      const v = await withApp(home, async (sigil) => {
        await sigil.chains.state(a.id);
        return (await sigil.audit.verify(a.id)).identities[0]!;
      });
      expect(v.ok, v.error).toBe(true);
      return v.unresolvedIntents === undefined ? v : undefined;
    }, 60_000, "the orphaned intent's result");
    expect(verdict.ok).toBe(true);
    const log = home.auditLog(a.id);
    const issuing = log.filter((e) => e.tool === "create_payment_mandate");
    expect(issuing.map((e) => [e.phase, e.decision, e.reason])).toEqual([
      ["intent", "allow", undefined],
      ["result", "unknown", "orphaned_intent"],
    ]);
    expect(issuing[1]).not.toHaveProperty("result"); // no mandate id, no hashes: the log issued nothing

    // What the dead process stored (only when it got that far) is no mandate: the log never issued it.
    const stored = await storedMandateIds(home);
    expect(stored).toHaveLength(orphans);
    const { client } = await stdioClient(home, a.token);
    try {
      for (const id of stored) {
        const r = await client.callTool({ name: "present_payment_mandate", arguments: { mandateId: id, aud: "cp", nonce: "n-orphan", amountCents: 1000, payee: PAYEE } });
        expect(text(r)).toMatch(/^denied: mandate_not_found: /);
      }
      // The chain continues: a new mandate is issued and presented.
      const m = await client.callTool({ name: "create_payment_mandate", arguments: { payee: PAYEE, currency: "USD", maxAmountCents: 5000 } });
      expect(m.isError, text(m)).toBeFalsy();
      const p = await client.callTool({ name: "present_payment_mandate", arguments: { mandateId: (m.structuredContent as any).mandateId, aud: "cp", nonce: "n-1", amountCents: 1000, payee: PAYEE } });
      expect(p.isError, text(p)).toBeFalsy();
    } finally {
      await client.close();
    }
    expect(home.json<{ ok: boolean }>(["audit", "verify"]).ok).toBe(true);
  });
});
