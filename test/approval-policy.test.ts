/**
 * Policy `approval` (README: "Approvals"): the strict schema with one clear sentence per mistake,
 * and what evaluate asks approval for (amount, listed tools, first contact with a recipient). Pure
 * modules, tested in process.
 */
import { describe, expect, it } from "vitest";
import { parsePolicy, type Policy } from "../src/policy/schema.js";
import { evaluate, type Usage } from "../src/policy/evaluate.js";
import { approvalSettings } from "../src/approval/approvals.js";

const NOW = Date.UTC(2026, 0, 15, 12, 0, 0);
const APR = "apr_0123456789abcdef0123";
const APR2 = "apr_fedcba9876543210fedc";

function pol(input: unknown): Policy {
  const r = parsePolicy(input);
  if (!r.ok) throw new Error(r.error);
  return r.policy;
}

const usage = (contacted: string[] = []): Usage => ({
  countSince: () => 0,
  spentSince: () => 0,
  contacted: (r) => contacted.includes(r),
});

describe("policy approval: the schema", () => {
  it("accepts the documented block and keeps it as written (via de-duplicated)", () => {
    const block = { aboveCents: 5000, tools: ["send_email"], newRecipients: true, approvers: [APR, APR2], quorum: 1, via: ["approver", "client", "approver"], requirePasskey: false, timeoutSeconds: 300 };
    const p = pol({ cardSpendingLimitCents: 100, approvalAboveCents: 10, approval: block });
    expect(p.approval).toEqual({ ...block, via: ["approver", "client"] });
    // The output parses again to itself.
    expect(pol(p)).toEqual(p);
  });

  it.each([
    [{ approval: { aboveCent: 5 } }, /^policy\.approval: unknown key "aboveCent"$/],
    [{ approval: [] }, /^policy\.approval: must be an object/],
    [{ approval: { aboveCents: -1 } }, /^policy\.approval\.aboveCents: must be a non-negative integer number of cents$/],
    [{ approval: { tools: ["send_mail"] } }, /^policy\.approval\.tools\[0\]: must name an agent tool that acts \(/],
    [{ approval: { tools: ["whoami"] } }, /^policy\.approval\.tools\[0\]: must name an agent tool that acts/],
    [{ approval: { newRecipients: "yes" } }, /^policy\.approval\.newRecipients: must be true or false$/],
    [{ approval: { approvers: ["bob"] } }, /^policy\.approval\.approvers\[0\]: must be an approver id \(apr_/],
    [{ approval: { quorum: 0 } }, /^policy\.approval\.quorum: must be an integer between 1 and 100$/],
    [{ approval: { approvers: [APR], quorum: 2 } }, /^policy\.approval\.quorum: must be at most the number of approvers named \(1\)$/],
    [{ approval: { via: [] } }, /^policy\.approval\.via: must name at least one of "approver", "client"$/],
    [{ approval: { via: ["email"] } }, /^policy\.approval\.via\[0\]: must be "approver" or "client"$/],
    [{ approval: { via: ["client"], approvers: [APR] } }, /^policy\.approval\.approvers: applies only when via includes "approver"$/],
    [{ approval: { approvers: [APR, APR2], quorum: 2, via: ["approver", "client"] } }, /^policy\.approval\.quorum: above 1 cannot be combined with via "client": a client's answer would approve alone$/],
    [{ approval: { via: ["approver", "client"], requirePasskey: true } }, /^policy\.approval\.requirePasskey: cannot be combined with via "client": a client's answer carries no passkey$/],
    [{ approval: { timeoutSeconds: 0 } }, /^policy\.approval\.timeoutSeconds: must be an integer number of seconds between 1 and 86400$/],
    [{ approval: { timeoutSeconds: 86_401 } }, /^policy\.approval\.timeoutSeconds: must be an integer number of seconds/],
  ])("refuses %j with one sentence naming the key", (input, message) => {
    const r = parsePolicy(input);
    expect(r.ok).toBe(false);
    expect(!r.ok && r.error).toMatch(message);
  });

  it("settings: the block's via/approvers/quorum/timeout, defaults via approver, quorum 1, 300 s; without a block the client is asked", () => {
    expect(approvalSettings(pol({ approval: { tools: ["send_sms"] } }))).toEqual({ via: ["approver"], approvers: [], quorum: 1, requirePasskey: false, timeoutMs: 300_000 });
    expect(approvalSettings(pol({ approval: { approvers: [APR, APR2], quorum: 2, timeoutSeconds: 5, via: ["approver"] } }))).toEqual({
      via: ["approver"],
      approvers: [APR, APR2],
      quorum: 2,
      requirePasskey: false,
      timeoutMs: 5000,
    });
    expect(approvalSettings(pol({ approvalAboveCents: 5 })).via).toEqual(["client"]);
  });
});

describe("policy approval: what needs approval", () => {
  const card = (amountCents: number) => ({ kind: "card" as const, tool: "card_charge", amountCents, currency: "USD" });
  const needs = (policy: unknown, action: Parameters<typeof evaluate>[1], u: Usage = usage()) => {
    const d = evaluate(pol(policy), action, u, NOW);
    if (!d.allow) throw new Error(`refused: ${d.reason}`);
    return d.needsApproval;
  };

  it("approval.aboveCents asks above the amount, like approvalAboveCents; either threshold asks", () => {
    expect(needs({ cardSpendingLimitCents: 100_000, approval: { aboveCents: 5000 } }, card(5000))).toBe(false);
    expect(needs({ cardSpendingLimitCents: 100_000, approval: { aboveCents: 5000 } }, card(5001))).toBe(true);
    expect(needs({ cardSpendingLimitCents: 100_000, approvalAboveCents: 9000, approval: { aboveCents: 5000 } }, card(6000))).toBe(true);
    expect(needs({ cardSpendingLimitCents: 100_000, approvalAboveCents: 5000, approval: { aboveCents: 9000 } }, card(6000))).toBe(true);
    expect(needs({ cardSpendingLimitCents: 100_000, approval: { tools: ["send_sms"] } }, card(6000))).toBe(false);
  });

  it("approval.tools asks for every call of a listed tool, and only those", () => {
    const p = { allowedDomains: ["example.com"], allowedPhoneCountries: ["US"], approval: { tools: ["send_email"] } };
    expect(needs(p, { kind: "email", tool: "send_email", to: ["a@example.com"], cc: [] })).toBe(true);
    expect(needs(p, { kind: "sms", tool: "send_sms", to: "+14155550123" })).toBe(false);
  });

  it("approval.newRecipients asks when any recipient (to or cc, normalised) was never sent to; not when all were", () => {
    const p = { allowedDomains: ["example.com"], allowedPhoneCountries: ["US"], approval: { newRecipients: true } };
    const known = usage(["a@example.com", "+14155550123"]);
    expect(needs(p, { kind: "email", tool: "send_email", to: ["A@Example.com"], cc: [] }, known)).toBe(false);
    expect(needs(p, { kind: "email", tool: "send_email", to: ["a@example.com"], cc: ["b@example.com"] }, known)).toBe(true);
    expect(needs(p, { kind: "sms", tool: "send_sms", to: "+14155550123" }, known)).toBe(false);
    expect(needs(p, { kind: "call", tool: "place_call", to: "+14155550124" }, known)).toBe(true);
    // Usage that cannot tell (no history, or it fails) asks.
    expect(needs(p, { kind: "sms", tool: "send_sms", to: "+14155550123" }, { countSince: () => 0, spentSince: () => 0 })).toBe(true);
    expect(needs(p, { kind: "sms", tool: "send_sms", to: "+14155550123" }, { ...known, contacted: () => { throw new Error("x"); } })).toBe(true);
    // Without the flag nobody is new.
    expect(needs({ allowedDomains: ["example.com"] }, { kind: "email", tool: "send_email", to: ["z@example.com"], cc: [] })).toBe(false);
  });

  it("approval.newRecipients concerns only actions with recipients: a secret, a card charge, a signature or a plain tool call asks nothing", () => {
    const p = { allowedSecrets: ["*"], cardSpendingLimitCents: 100_000, allowedSigningOrigins: ["*"], approval: { newRecipients: true } };
    // Nobody was ever contacted, and the usage says so for anything it is asked about.
    const nobody: Usage = { countSince: () => 0, spentSince: () => 0, contacted: () => false };
    expect(needs(p, { kind: "vault", tool: "vault_read", name: "db/password" }, nobody)).toBe(false);
    expect(needs(p, card(100), nobody)).toBe(false);
    expect(needs(p, { kind: "sign", tool: "sign_request", url: "https://shop.example/" }, nobody)).toBe(false);
    expect(needs(p, { kind: "none", tool: "whoami" }, nobody)).toBe(false);
  });

  it("approval.afterUntrustedInput asks for every action that goes out once the session read untrusted input, and only then", () => {
    const p = { allowedDomains: ["example.com"], allowedPhoneCountries: ["US"], allowedSecrets: ["*"], cardSpendingLimitCents: 100_000, allowedSigningOrigins: ["*"], approval: { afterUntrustedInput: true } };
    const known = usage(["a@example.com", "+14155550123"]);
    const outbound: Array<Parameters<typeof evaluate>[1]> = [
      { kind: "email", tool: "send_email", to: ["a@example.com"], cc: [] },
      { kind: "sms", tool: "send_sms", to: "+14155550123" },
      { kind: "call", tool: "place_call", to: "+14155550123" },
      card(100),
      { kind: "sign", tool: "sign_request", url: "https://shop.example/" },
    ];
    const inward: Array<Parameters<typeof evaluate>[1]> = [{ kind: "vault", tool: "vault_read", name: "db/password" }, { kind: "none", tool: "whoami" }];
    const asks = (policy: unknown, action: Parameters<typeof evaluate>[1], session?: { untrustedInput?: boolean }) => {
      const d = evaluate(pol(policy), action, known, NOW, session);
      if (!d.allow) throw new Error(`refused: ${d.reason}`);
      return d.needsApproval;
    };
    for (const a of outbound) {
      expect(asks(p, a, { untrustedInput: true }), a.kind).toBe(true);
      expect(asks(p, a, { untrustedInput: false }), a.kind).toBe(false);
      expect(asks(p, a, {}), a.kind).toBe(false);
      expect(asks(p, a), a.kind).toBe(false);
      expect(asks({ ...p, approval: { afterUntrustedInput: false } }, a, { untrustedInput: true }), a.kind).toBe(false);
    }
    for (const a of inward) expect(asks(p, a, { untrustedInput: true }), a.kind).toBe(false);
  });

  it("a refusal stays a refusal: approval never turns a denied action into one that asks", () => {
    const d = evaluate(pol({ allowedDomains: ["example.com"], approval: { tools: ["send_email"] } }), { kind: "email", tool: "send_email", to: ["a@evil.com"], cc: [] }, usage(), NOW);
    expect(d).toMatchObject({ allow: false, reason: "domain_not_allowed" });
  });
});
