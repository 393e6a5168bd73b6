/**
 * The constraints of a payment mandate come from policy and are never wider than it
 * (src/policy/evaluate.ts, rule 8): a property test over random policies, spending so far and
 * requests. Whatever evaluate allows carries a largest amount within the per-charge limit and what
 * is left of the 24-hour limit, a budget within what is left, the policy's currency, a listed payee
 * and an expiry within 24 hours; what it does not allow is never issued (create_payment_mandate
 * signs only after `allow`, test/mandate.test.ts). Pure module, in process.
 */
import { describe, expect, it } from "vitest";
import fc from "fast-check";
import { parsePolicy } from "../src/policy/schema.js";
import { evaluate, DAY_MS } from "../src/policy/evaluate.js";

const NOW = Date.UTC(2026, 5, 1, 12, 0, 0);

const policyArb = fc.record(
  {
    cardSpendingLimitCents: fc.integer({ min: 0, max: 1_000_000 }),
    cardPerChargeLimitCents: fc.integer({ min: 0, max: 1_000_000 }),
    allowedPayees: fc.array(fc.constantFrom("m1", "m2", "m3"), { maxLength: 3 }),
    approvalAboveCents: fc.integer({ min: 0, max: 1_000_000 }),
    cardCurrency: fc.constantFrom("USD", "EUR"),
  },
  { requiredKeys: [] },
);

const requestArb = fc.record({
  payeeId: fc.constantFrom("m1", "m2", "m3", "m4"),
  currency: fc.constantFrom("USD", "EUR", "GBP"),
  maxAmountCents: fc.option(fc.integer({ min: -5, max: 1_200_000 }), { nil: undefined }),
  budgetCents: fc.option(fc.integer({ min: -5, max: 2_000_000 }), { nil: undefined }),
  expiresInMs: fc.option(fc.integer({ min: -DAY_MS, max: 2 * DAY_MS }), { nil: undefined }),
});

describe("payment mandate constraints from policy", () => {
  it("what evaluate allows is never wider than the policy; what it refuses has a reason", () => {
    fc.assert(
      fc.property(policyArb, requestArb, fc.integer({ min: 0, max: 1_500_000 }), (raw, req, spent) => {
        const parsed = parsePolicy(raw);
        expect(parsed.ok).toBe(true);
        if (!parsed.ok) return;
        const policy = parsed.policy;
        const d = evaluate(
          policy,
          {
            kind: "mandate",
            tool: "create_payment_mandate",
            payeeId: req.payeeId,
            currency: req.currency,
            ...(req.maxAmountCents !== undefined ? { maxAmountCents: req.maxAmountCents } : {}),
            ...(req.budgetCents !== undefined ? { budgetCents: req.budgetCents } : {}),
            ...(req.expiresInMs !== undefined ? { expiresAtMs: NOW + req.expiresInMs } : {}),
          },
          { countSince: () => 0, spentSince: () => spent },
          NOW,
        );
        if (!d.allow) {
          expect(d.reason).toMatch(/^[a-z_]+$/);
          return;
        }
        expect(d.normalized.kind).toBe("mandate");
        if (d.normalized.kind !== "mandate") return;
        const n = d.normalized;
        const limit = policy.cardSpendingLimitCents!;
        expect(limit).toBeDefined();
        const left = limit - spent;
        expect(n.maxAmountCents).toBeGreaterThan(0);
        expect(n.maxAmountCents).toBeLessThanOrEqual(left);
        if (policy.cardPerChargeLimitCents !== undefined) expect(n.maxAmountCents).toBeLessThanOrEqual(policy.cardPerChargeLimitCents);
        if (req.maxAmountCents !== undefined) expect(n.maxAmountCents).toBe(req.maxAmountCents); // refused, never narrowed silently
        if (n.budgetCents !== undefined) {
          expect(n.budgetCents).toBeLessThanOrEqual(left);
          expect(n.budgetCents).toBeGreaterThanOrEqual(n.maxAmountCents);
          expect(n.budgetCents).toBe(req.budgetCents);
        } else expect(req.budgetCents).toBeUndefined();
        expect(n.currency).toBe(policy.cardCurrency ?? "USD");
        expect(req.currency).toBe(n.currency);
        if (policy.allowedPayees !== undefined) expect(policy.allowedPayees).toContain(req.payeeId);
        expect(n.expiresAtMs).toBeGreaterThan(NOW);
        expect(n.expiresAtMs).toBeLessThanOrEqual(NOW + DAY_MS);
        expect(d.needsApproval).toBe(policy.approvalAboveCents !== undefined && n.maxAmountCents > policy.approvalAboveCents);
      }),
      { numRuns: 5000 },
    );
  });

  it("a request within the policy is allowed as asked", () => {
    fc.assert(
      fc.property(fc.integer({ min: 2, max: 1_000_000 }), fc.integer({ min: 0, max: 1_000_000 }), fc.integer({ min: 1, max: DAY_MS }), (limit, spentRaw, ttl) => {
        const spent = spentRaw % limit;
        const left = limit - spent;
        const max = Math.max(1, Math.floor(left / 2));
        const d = evaluate(
          { cardSpendingLimitCents: limit },
          { kind: "mandate", tool: "create_payment_mandate", payeeId: "m1", currency: "USD", maxAmountCents: max, budgetCents: left, expiresAtMs: NOW + ttl },
          { countSince: () => 0, spentSince: () => spent },
          NOW,
        );
        expect(d).toEqual({ allow: true, needsApproval: false, normalized: { kind: "mandate", currency: "USD", maxAmountCents: max, budgetCents: left, expiresAtMs: NOW + ttl } });
      }),
      { numRuns: 2000 },
    );
  });

  it("a presentation is a charge of its amount: per-charge and 24-hour limits apply at the moment it is presented", () => {
    const p = { cardSpendingLimitCents: 10_000, cardPerChargeLimitCents: 4000, approvalAboveCents: 100 };
    const use = (amountCents: number, spent: number) => evaluate(p, { kind: "mandate_use", tool: "present_payment_mandate", amountCents }, { countSince: () => 0, spentSince: () => spent }, NOW);
    expect(use(4000, 6000)).toEqual({ allow: true, needsApproval: false, normalized: { kind: "card", amountCents: 4000, currency: "USD" } });
    expect(use(4001, 0)).toMatchObject({ allow: false, reason: "per_charge_limit" });
    expect(use(4000, 6001)).toMatchObject({ allow: false, reason: "spending_limit" });
  });
});
