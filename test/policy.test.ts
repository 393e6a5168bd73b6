import { describe, expect, it } from "vitest";
import fc from "fast-check";
import { runs } from "./support/runs.js";
import { parsePolicy, parsePolicyJson, PolicySchema, type Policy } from "../src/policy/schema.js";
import {
  DAY_MS,
  DEFAULT_MAX_RECIPIENTS,
  evaluate,
  globMatch,
  MINUTE_MS,
  type Action,
  type Decision,
  type Usage,
} from "../src/policy/evaluate.js";

const NOW = Date.UTC(2025, 0, 15, 12, 0, 0);

/** In-memory usage: records allowed attempts and card spend with timestamps. */
class FakeUsage implements Usage {
  attempts: Array<{ tool: string; at: number }> = [];
  spends: Array<{ cents: number; at: number }> = [];
  countSince(tool: string, sinceMs: number): number {
    return this.attempts.filter((a) => a.tool === tool && a.at >= sinceMs).length;
  }
  spentSince(sinceMs: number): number {
    return this.spends.filter((s) => s.at >= sinceMs).reduce((t, s) => t + s.cents, 0);
  }
  attempt(tool: string, at: number, n = 1): this {
    for (let i = 0; i < n; i++) this.attempts.push({ tool, at });
    return this;
  }
  spend(cents: number, at: number): this {
    this.spends.push({ cents, at });
    return this;
  }
}

function pol(input: unknown): Policy {
  const r = parsePolicy(input);
  if (!r.ok) throw new Error(r.error);
  return r.policy;
}

function denied(d: Decision): string {
  return d.allow ? "allowed" : d.reason;
}

const none = new FakeUsage();
const email = (to: string[], cc: string[] = []): Action => ({ kind: "email", tool: "send_email", to, cc });
const sms = (to: string): Action => ({ kind: "sms", tool: "send_sms", to });
const call = (to: string): Action => ({ kind: "call", tool: "place_call", to });
const vault = (name: string): Action => ({ kind: "vault", tool: "vault_get", name });
const card = (amountCents: number, currency = "USD", merchantCategory?: string): Action =>
  merchantCategory === undefined
    ? { kind: "card", tool: "card_charge", amountCents, currency }
    : { kind: "card", tool: "card_charge", amountCents, currency, merchantCategory };
const sign = (url: string): Action => ({ kind: "sign", tool: "sign_http_request", url });

const DOCUMENTED_EXAMPLE = {
  allowedDomains: ["example.com"],
  maxRecipients: 10,
  allowedPhoneCountries: ["US", "CA"],
  allowedPhoneNumbers: ["+14155550100"],
  allowedSecrets: ["stripe/*", "crm-api-key"],
  cardSpendingLimitCents: 25000,
  cardPerChargeLimitCents: 10000,
  allowedMerchantCategories: ["5734", "7372"],
  blockedMerchantCategories: ["7995"],
  approvalAboveCents: 5000,
  rateLimits: { send_sms: { perMinute: 5, perDay: 100 } },
};

describe("parsePolicy", () => {
  it("accepts the documented example policy unchanged", () => {
    expect(parsePolicy(DOCUMENTED_EXAMPLE)).toEqual({ ok: true, policy: DOCUMENTED_EXAMPLE });
  });

  it("accepts the empty policy (deny everything)", () => {
    expect(parsePolicy({})).toEqual({ ok: true, policy: {} });
  });

  it("normalises domains and origins, de-duplicates, and is idempotent", () => {
    const r = parsePolicy({
      allowedDomains: ["Example.COM", "bücher.de", "example.com", "*"],
      allowedSigningOrigins: ["https://Shop.Example:443/", "https://shop.example", "http://127.0.0.1:8080", "*"],
      cardCurrency: "EUR",
    });
    expect(r).toEqual({
      ok: true,
      policy: {
        allowedDomains: ["example.com", "xn--bcher-kva.de", "*"],
        allowedSigningOrigins: ["https://shop.example", "http://127.0.0.1:8080", "*"],
        cardCurrency: "EUR",
      },
    });
    if (r.ok) expect(parsePolicy(r.policy)).toEqual(r);
  });

  const errors: Array<[string, unknown, string]> = [
    ["unknown key", { bcc: ["x@evil.com"] }, 'policy: unknown key "bcc"'],
    ["several unknown keys", { a: 1, b: 2 }, 'policy: unknown keys "a", "b"'],
    ["maxRecipients 0", { maxRecipients: 0 }, "policy.maxRecipients: must be an integer between 1 and 1000"],
    ["maxRecipients 1001", { maxRecipients: 1001 }, "policy.maxRecipients: must be an integer between 1 and 1000"],
    ["maxRecipients 1.5", { maxRecipients: 1.5 }, "policy.maxRecipients: must be an integer between 1 and 1000"],
    ["maxRecipients string", { maxRecipients: "10" }, "policy.maxRecipients: must be an integer between 1 and 1000"],
    ["allowedDomains string", { allowedDomains: "example.com" }, "policy.allowedDomains: must be an array"],
    ["allowedDomains lookalike", { allowedDomains: ["ex\u0430mple.com"] }, "policy.allowedDomains[0]: is not a valid domain"],
    ["allowedDomains IP", { allowedDomains: ["1.2.3.4"] }, "policy.allowedDomains[0]: is not a valid domain"],
    ["allowedDomains wildcard sub", { allowedDomains: ["*.example.com"] }, "policy.allowedDomains[0]"],
    ["allowedDomains too many", { allowedDomains: Array.from({ length: 1001 }, (_, i) => `d${i}.com`) }, "policy.allowedDomains: must have at most 1000 entries"],
    ["allowedDomains huge", { allowedDomains: new Array(100_000).fill("a.com") }, "policy.allowedDomains: must have at most 1000 entries"],
    ["country UK", { allowedPhoneCountries: ["UK"] }, "policy.allowedPhoneCountries[0]: must be a known"],
    ["country lower", { allowedPhoneCountries: ["us"] }, "policy.allowedPhoneCountries[0]"],
    ["phone not E.164", { allowedPhoneNumbers: ["+1 415 555 0100"] }, "policy.allowedPhoneNumbers[0]: must be an E.164 number"],
    ["secret with space", { allowedSecrets: ["a b"] }, "policy.allowedSecrets[0]"],
    ["secret too long", { allowedSecrets: ["x".repeat(254)] }, "policy.allowedSecrets[0]: must be at most 253 characters"],
    ["negative limit", { cardSpendingLimitCents: -1 }, "policy.cardSpendingLimitCents: must be a non-negative integer"],
    ["unsafe limit", { cardSpendingLimitCents: 2 ** 53 }, "policy.cardSpendingLimitCents: must be a non-negative integer"],
    ["float per charge", { cardPerChargeLimitCents: 1.5 }, "policy.cardPerChargeLimitCents: must be a non-negative integer"],
    ["approval NaN", { approvalAboveCents: Number.NaN }, "policy.approvalAboveCents"],
    ["MCC 5 digits", { allowedMerchantCategories: ["57341"] }, "policy.allowedMerchantCategories[0]: must be a 4-digit"],
    ["MCC number", { blockedMerchantCategories: [7995] }, "policy.blockedMerchantCategories[0]"],
    ["rate unknown key", { rateLimits: { send_sms: { perHour: 1 } } }, 'policy.rateLimits.send_sms: unknown key "perHour"'],
    ["rate empty", { rateLimits: { send_sms: {} } }, "policy.rateLimits.send_sms: must set perMinute and/or perDay"],
    ["rate zero", { rateLimits: { send_sms: { perMinute: 0 } } }, "policy.rateLimits.send_sms.perMinute: must be a positive integer"],
    ["rate bad tool", { rateLimits: { "Send SMS": { perDay: 1 } } }, "policy.rateLimits"],
    ["rate misspelled tool", { rateLimits: { send_smss: { perDay: 1 } } }, "policy.rateLimits.send_smss: must name an agent tool"],
    ["rate array", { rateLimits: [] }, "policy.rateLimits: must be an object"],
    ["rate __proto__", JSON.parse('{"rateLimits":{"__proto__":{"perDay":1}}}'), "policy.rateLimits"],
    ["origin with path", { allowedSigningOrigins: ["https://a.com/x"] }, "policy.allowedSigningOrigins[0]: must be an https origin"],
    ["origin http", { allowedSigningOrigins: ["http://a.com"] }, "policy.allowedSigningOrigins[0]"],
    ["origin creds", { allowedSigningOrigins: ["https://u:p@a.com"] }, "policy.allowedSigningOrigins[0]"],
    ["origin query", { allowedSigningOrigins: ["https://a.com?x"] }, "policy.allowedSigningOrigins[0]"],
    ["origin bare host", { allowedSigningOrigins: ["a.com"] }, "policy.allowedSigningOrigins[0]"],
    ["currency lower", { cardCurrency: "usd" }, "policy.cardCurrency: must be an upper-case ISO 4217"],
    ["not object", [], "policy: must be a JSON object"],
    ["null", null, "policy: must be a JSON object"],
    ["control chars in key", { "bad\nkey\u202e": 1 }, 'policy: unknown key "bad?key?"'],
  ];
  it.each(errors)("%s", (_name, input, prefix) => {
    const r = parsePolicy(input);
    expect(r.ok).toBe(false);
    if (!r.ok) {
      expect(r.error.startsWith(prefix)).toBe(true);
      expect(r.error).not.toMatch(/[\r\n]/);
      expect(r.error.length).toBeLessThan(300);
    }
  });

  it("parsePolicyJson parses text and reports bad JSON clearly", () => {
    expect(parsePolicyJson('{"maxRecipients": 3}')).toEqual({ ok: true, policy: { maxRecipients: 3 } });
    const bad = parsePolicyJson("{ nope");
    expect(bad.ok).toBe(false);
    if (!bad.ok) expect(bad.error).toMatch(/^policy: is not valid JSON/);
    const big = parsePolicyJson(" ".repeat(2 * 1024 * 1024));
    expect(big.ok).toBe(false);
    expect(parsePolicyJson('{"bcc": 1}')).toEqual({ ok: false, error: 'policy: unknown key "bcc"' });
  });

  it("is a strict zod schema", () => {
    expect(PolicySchema.safeParse({ extra: 1 }).success).toBe(false);
  });
});

describe("evaluate: rate limits", () => {
  const p = pol({ allowedPhoneCountries: ["US"], rateLimits: { send_sms: { perMinute: 2, perDay: 3 }, whoami: { perMinute: 1 } } });

  it("allows up to perMinute in the rolling minute, refuses one more", () => {
    const u = new FakeUsage().attempt("send_sms", NOW - 1000);
    expect(denied(evaluate(p, sms("+14155550100"), u, NOW))).toBe("allowed");
    u.attempt("send_sms", NOW);
    expect(denied(evaluate(p, sms("+14155550100"), u, NOW))).toBe("rate_limited");
  });

  it("minute window is (now-60s, now]", () => {
    const u = new FakeUsage().attempt("send_sms", NOW - MINUTE_MS).attempt("send_sms", NOW - MINUTE_MS + 1);
    // one attempt exactly 60 s ago has expired, the other is inside
    expect(denied(evaluate(p, sms("+14155550100"), u, NOW))).toBe("allowed");
    const u2 = new FakeUsage().attempt("send_sms", NOW - MINUTE_MS + 1, 2);
    expect(denied(evaluate(p, sms("+14155550100"), u2, NOW))).toBe("rate_limited");
  });

  it("day window is (now-24h, now]", () => {
    const u = new FakeUsage().attempt("send_sms", NOW - DAY_MS + 1, 2).attempt("send_sms", NOW - DAY_MS);
    expect(denied(evaluate(p, sms("+14155550100"), u, NOW))).toBe("allowed");
    u.attempt("send_sms", NOW - DAY_MS + 1);
    expect(denied(evaluate(p, sms("+14155550100"), u, NOW))).toBe("rate_limited");
  });

  it("applies to kind none and only to the named tool", () => {
    const u = new FakeUsage().attempt("whoami", NOW);
    expect(denied(evaluate(p, { kind: "none", tool: "whoami" }, u, NOW))).toBe("rate_limited");
    expect(denied(evaluate(p, { kind: "none", tool: "whoami" }, none, NOW))).toBe("allowed");
    expect(denied(evaluate(p, sms("+14155550100"), u, NOW))).toBe("allowed");
  });

  it("comes before every other rule", () => {
    const u = new FakeUsage().attempt("send_sms", NOW, 5);
    expect(denied(evaluate(p, sms("garbage"), u, NOW))).toBe("rate_limited");
  });

  it("ignores prototype names", () => {
    expect(denied(evaluate(p, { kind: "none", tool: "constructor" }, none, NOW))).toBe("allowed");
    expect(denied(evaluate(p, { kind: "none", tool: "__proto__" }, none, NOW))).toBe("allowed");
  });
});

describe("evaluate: email", () => {
  const p = pol({ allowedDomains: ["ok.com", "bücher.de"], maxRecipients: 3 });

  it("refuses when allowedDomains is absent", () => {
    expect(denied(evaluate({}, email(["a@ok.com"]), none, NOW))).toBe("email_not_allowed");
  });

  it("allows listed domains and subdomains, normalised", () => {
    const d = evaluate(p, email(["A@OK.com", "b@mail.ok.com"], ["c@BÜCHER.de"]), none, NOW);
    expect(d).toEqual({
      allow: true,
      needsApproval: false,
      normalized: { kind: "email", to: ["a@ok.com", "b@mail.ok.com"], cc: ["c@xn--bcher-kva.de"] },
    });
  });

  it("refuses other domains, including label-boundary tricks", () => {
    expect(denied(evaluate(p, email(["a@evil.com"]), none, NOW))).toBe("domain_not_allowed");
    expect(denied(evaluate(p, email(["a@evil-ok.com"]), none, NOW))).toBe("domain_not_allowed");
    expect(denied(evaluate(p, email(["a@ok.com.evil.com"]), none, NOW))).toBe("domain_not_allowed");
    expect(denied(evaluate(p, email(["a@ok.com"], ["b@evil.com"]), none, NOW))).toBe("domain_not_allowed");
  });

  it("one bad recipient refuses the whole message", () => {
    for (const bad of [
      '"a@ok.com" <x@evil.com>',
      "a@ok.com, b@evil.com",
      "a@ok.com\r\nBcc: x@evil.com",
      "g: a@ok.com;",
      "a(x)@ok.com",
      "a@[127.0.0.1]",
      "a%evil.com@ok.com",
      "a@ex\u0430mple.com",
    ]) {
      const d = evaluate(p, email(["good@ok.com", bad]), none, NOW);
      expect(denied(d)).toBe("invalid_recipient");
      if (!d.allow) {
        expect(d.message).not.toMatch(/[\r\n]/);
      }
    }
  });

  it("needs at least one to, and arrays of strings", () => {
    expect(denied(evaluate(p, email([]), none, NOW))).toBe("invalid_arguments");
    expect(denied(evaluate(p, email([], ["a@ok.com"]), none, NOW))).toBe("invalid_arguments");
    expect(denied(evaluate(p, { kind: "email", tool: "send_email", to: "a@ok.com" } as unknown as Action, none, NOW))).toBe(
      "invalid_arguments",
    );
    expect(denied(evaluate(p, email([1 as unknown as string]), none, NOW))).toBe("invalid_arguments");
  });

  it("maxRecipients counts de-duplicated to+cc: exact limit allowed, one more refused", () => {
    expect(denied(evaluate(p, email(["a@ok.com", "b@ok.com"], ["c@ok.com"]), none, NOW))).toBe("allowed");
    expect(denied(evaluate(p, email(["a@ok.com", "b@ok.com"], ["c@ok.com", "d@ok.com"]), none, NOW))).toBe(
      "too_many_recipients",
    );
    const dup = evaluate(p, email(["a@ok.com", "A@ok.com", "b@ok.com"], ["a@ok.com", "c@ok.com"]), none, NOW);
    expect(dup).toMatchObject({ allow: true, normalized: { to: ["a@ok.com", "b@ok.com"], cc: ["c@ok.com"] } });
  });

  it(`defaults maxRecipients to ${DEFAULT_MAX_RECIPIENTS}`, () => {
    const q = pol({ allowedDomains: ["*"] });
    const addrs = (n: number) => Array.from({ length: n }, (_, i) => `u${i}@any.org`);
    expect(denied(evaluate(q, email(addrs(DEFAULT_MAX_RECIPIENTS)), none, NOW))).toBe("allowed");
    expect(denied(evaluate(q, email(addrs(DEFAULT_MAX_RECIPIENTS + 1)), none, NOW))).toBe("too_many_recipients");
  });

  it("refuses huge recipient lists quickly", () => {
    const q = pol({ allowedDomains: ["*"], maxRecipients: 1000 });
    const many = new Array(100_000).fill("a@ok.com");
    expect(denied(evaluate(q, email(many), none, NOW))).toBe("too_many_recipients");
  });

  it("truncates echoed input", () => {
    const d = evaluate(p, email([`${"x".repeat(5000)}\u0000@ok.com`]), none, NOW);
    expect(d.allow).toBe(false);
    if (!d.allow) expect(d.message.length).toBeLessThan(300);
  });
});

describe("evaluate: sms and call", () => {
  const p = pol({ allowedPhoneCountries: ["CA"], allowedPhoneNumbers: ["+14155550100", "+19005550100"] });

  it("refuses when both keys are absent", () => {
    expect(denied(evaluate({}, sms("+14155550100"), none, NOW))).toBe("phone_not_allowed");
    expect(denied(evaluate({}, call("+14155550100"), none, NOW))).toBe("phone_not_allowed");
  });

  it("allows listed numbers and listed countries, normalised", () => {
    expect(evaluate(p, sms("+14155550100"), none, NOW)).toEqual({
      allow: true,
      needsApproval: false,
      normalized: { kind: "sms", to: "+14155550100", country: "US" },
    });
    expect(evaluate(p, call("+16135550100"), none, NOW)).toMatchObject({
      allow: true,
      normalized: { kind: "call", to: "+16135550100", country: "CA" },
    });
  });

  it("refuses other numbers", () => {
    expect(denied(evaluate(p, sms("+14155550101"), none, NOW))).toBe("phone_not_allowed");
    expect(denied(evaluate(p, sms("+442079460000"), none, NOW))).toBe("phone_not_allowed");
    expect(denied(evaluate(pol({ allowedPhoneCountries: ["US"] }), sms("+80012345678"), none, NOW))).toBe(
      "phone_not_allowed",
    );
  });

  it("refuses premium even when listed", () => {
    expect(denied(evaluate(p, sms("+19005550100"), none, NOW))).toBe("premium_rate");
    expect(denied(evaluate(pol({ allowedPhoneCountries: ["GB"] }), call("+449098790000"), none, NOW))).toBe("premium_rate");
  });

  it("refuses non-strict input", () => {
    for (const bad of ["+1 415 555 0100", "tel:+14155550100", "+14155550100;ext=1", "14155550100", "\uff0b14155550100"]) {
      expect(denied(evaluate(p, sms(bad), none, NOW))).toBe("invalid_phone");
    }
    expect(denied(evaluate(p, { kind: "sms", tool: "send_sms", to: 14155550100 } as unknown as Action, none, NOW))).toBe(
      "invalid_phone",
    );
  });
});

describe("evaluate: vault", () => {
  const p = pol({ allowedSecrets: ["stripe/*", "crm-api-key", "a*b*c"] });
  const cases: Array<[string, string]> = [
    ["stripe/live", "allowed"],
    ["stripe/", "allowed"],
    ["stripe/a/b", "allowed"],
    ["crm-api-key", "allowed"],
    ["abc", "allowed"],
    ["aXXbYYc", "allowed"],
    ["crm-api-key2", "secret_not_allowed"],
    ["CRM-API-KEY", "secret_not_allowed"],
    ["stripe", "secret_not_allowed"],
    ["xstripe/live", "secret_not_allowed"],
    ["ab", "secret_not_allowed"],
    ["", "invalid_arguments"],
    ["x".repeat(257), "invalid_arguments"],
  ];
  it.each(cases)("%s → %s", (name, expected) => {
    expect(denied(evaluate(p, vault(name), none, NOW))).toBe(expected);
  });
  it("refuses when allowedSecrets is absent", () => {
    expect(denied(evaluate({}, vault("anything"), none, NOW))).toBe("secret_not_allowed");
  });
  it("glob has no other wildcard syntax and stays fast", () => {
    expect(globMatch("a?c", "abc")).toBe(false);
    expect(globMatch("a.c", "abc")).toBe(false);
    expect(globMatch("[ab]", "a")).toBe(false);
    expect(globMatch("*", "")).toBe(true);
    const t = Date.now();
    expect(globMatch("*a*a*a*a*a*a*a*a*b", "a".repeat(256))).toBe(false);
    expect(Date.now() - t).toBeLessThan(100);
  });
});

describe("evaluate: card", () => {
  const p = pol({
    cardSpendingLimitCents: 25000,
    cardPerChargeLimitCents: 10000,
    allowedMerchantCategories: ["5734", "7372", "7995"],
    blockedMerchantCategories: ["7995"],
    approvalAboveCents: 5000,
  });

  it("refuses when cardSpendingLimitCents is absent", () => {
    expect(denied(evaluate({}, card(100), none, NOW))).toBe("card_not_allowed");
    expect(denied(evaluate({ cardPerChargeLimitCents: 100 }, card(1), none, NOW))).toBe("card_not_allowed");
  });

  it("validates the amount", () => {
    for (const bad of [0, -1, 1.5, Number.NaN, Infinity, 2 ** 53]) {
      expect(denied(evaluate(p, card(bad, "USD", "5734"), none, NOW))).toBe("invalid_arguments");
    }
    expect(denied(evaluate(p, { kind: "card", tool: "card_charge", amountCents: "100", currency: "USD" } as unknown as Action, none, NOW))).toBe(
      "invalid_arguments",
    );
  });

  it("checks the currency (default USD)", () => {
    expect(evaluate(p, card(100, "usd", "5734"), none, NOW)).toMatchObject({ allow: true, normalized: { currency: "USD" } });
    expect(denied(evaluate(p, card(100, "EUR", "5734"), none, NOW))).toBe("currency_not_allowed");
    expect(denied(evaluate(p, card(100, "US", "5734"), none, NOW))).toBe("invalid_arguments");
    const eur = pol({ cardSpendingLimitCents: 100, cardCurrency: "EUR" });
    expect(denied(evaluate(eur, card(100, "EUR"), none, NOW))).toBe("allowed");
    expect(denied(evaluate(eur, card(100, "USD"), none, NOW))).toBe("currency_not_allowed");
  });

  it("per-charge limit: exact allowed, +1 refused", () => {
    expect(denied(evaluate(p, card(10000, "USD", "5734"), none, NOW))).toBe("allowed");
    expect(denied(evaluate(p, card(10001, "USD", "5734"), none, NOW))).toBe("per_charge_limit");
  });

  it("a claimed MCC: blocked wins over allowed; no claim is left to the card processor's category", () => {
    expect(denied(evaluate(p, card(100, "USD", "7995"), none, NOW))).toBe("merchant_category_blocked");
    expect(denied(evaluate(p, card(100, "USD", "5411"), none, NOW))).toBe("merchant_category_not_allowed");
    // card_charge asks the processor and refuses what it cannot state (test/card.test.ts).
    expect(denied(evaluate(p, card(100, "USD"), none, NOW))).toBe("allowed");
    expect(denied(evaluate(p, card(100, "USD", "57"), none, NOW))).toBe("invalid_arguments");
    const noList = pol({ cardSpendingLimitCents: 1000, blockedMerchantCategories: ["7995"] });
    expect(denied(evaluate(noList, card(100), none, NOW))).toBe("allowed");
    expect(denied(evaluate(noList, card(100, "USD", "7995"), none, NOW))).toBe("merchant_category_blocked");
  });

  it("rolling 24 h spending: exact limit allowed, +1 refused, window (now-24h, now]", () => {
    const u = new FakeUsage().spend(20000, NOW - 1000);
    expect(denied(evaluate(p, card(5000, "USD", "5734"), u, NOW))).toBe("allowed");
    expect(denied(evaluate(p, card(5001, "USD", "5734"), u, NOW))).toBe("spending_limit");
    const old = new FakeUsage().spend(25000, NOW - DAY_MS);
    expect(denied(evaluate(p, card(5000, "USD", "5734"), old, NOW))).toBe("allowed");
    const edge = new FakeUsage().spend(25000, NOW - DAY_MS + 1);
    expect(denied(evaluate(p, card(1, "USD", "5734"), edge, NOW))).toBe("spending_limit");
  });

  it("fails closed on a nonsensical usage total", () => {
    const weird: Usage = { countSince: () => 0, spentSince: () => Number.NaN };
    expect(denied(evaluate(p, card(1, "USD", "5734"), weird, NOW))).toBe("spending_limit");
  });

  it("approval above threshold", () => {
    expect(evaluate(p, card(5000, "USD", "5734"), none, NOW)).toMatchObject({ allow: true, needsApproval: false });
    expect(evaluate(p, card(5001, "USD", "5734"), none, NOW)).toMatchObject({
      allow: true,
      needsApproval: true,
      normalized: { kind: "card", amountCents: 5001, currency: "USD", merchantCategory: "5734" },
    });
    expect(evaluate(pol({ cardSpendingLimitCents: 100 }), card(100), none, NOW)).toMatchObject({ needsApproval: false });
  });
});

describe("evaluate: sign", () => {
  const p = pol({ allowedSigningOrigins: ["https://shop.example", "https://api.example:8443", "http://localhost:3000"] });
  const cases: Array<[string, string]> = [
    ["https://shop.example/cart?x=1", "allowed"],
    ["https://SHOP.example:443/", "allowed"],
    ["https://api.example:8443/v1", "allowed"],
    ["http://localhost:3000/x", "allowed"],
    ["https://api.example/v1", "origin_not_allowed"],
    ["https://evil.example/", "origin_not_allowed"],
    ["https://shop.example.evil.com/", "origin_not_allowed"],
    ["http://shop.example/", "origin_not_allowed"],
    ["http://localhost:3001/", "origin_not_allowed"],
    ["ftp://shop.example/", "origin_not_allowed"],
    ["javascript:alert(1)", "origin_not_allowed"],
    ["https://user:pw@shop.example/", "invalid_arguments"],
    ["/relative", "invalid_arguments"],
    ["not a url", "invalid_arguments"],
    ["", "invalid_arguments"],
    [`https://shop.example/${"x".repeat(10_000)}`, "invalid_arguments"],
  ];
  it.each(cases.map(([u, e]) => [u.slice(0, 60), u, e]))("%s", (_l, url, expected) => {
    expect(denied(evaluate(p, sign(url), none, NOW))).toBe(expected);
  });
  it("returns the normalised origin", () => {
    expect(evaluate(p, sign("https://SHOP.example:443/a"), none, NOW)).toEqual({
      allow: true,
      needsApproval: false,
      normalized: { kind: "sign", url: "https://shop.example/a", origin: "https://shop.example" },
    });
  });
  it("refuses when absent; * allows any https origin but not plain http", () => {
    expect(denied(evaluate({}, sign("https://shop.example/"), none, NOW))).toBe("origin_not_allowed");
    const any = pol({ allowedSigningOrigins: ["*"] });
    expect(denied(evaluate(any, sign("https://anything.example/"), none, NOW))).toBe("allowed");
    expect(denied(evaluate(any, sign("http://anything.example/"), none, NOW))).toBe("origin_not_allowed");
  });
});

describe("evaluate: malformed actions", () => {
  it("refuses unknown kinds and bad tools", () => {
    expect(denied(evaluate({}, { kind: "teleport", tool: "x" } as unknown as Action, none, NOW))).toBe("invalid_arguments");
    expect(denied(evaluate({}, { kind: "none" } as unknown as Action, none, NOW))).toBe("invalid_arguments");
    expect(denied(evaluate({}, null as unknown as Action, none, NOW))).toBe("invalid_arguments");
  });
});

// ---------- properties ----------

const arbPolicyInput = fc.record(
  {
    allowedDomains: fc.array(fc.constantFrom("ok.com", "example.com", "*", "bücher.de"), { maxLength: 3 }),
    maxRecipients: fc.integer({ min: 1, max: 5 }),
    allowedPhoneCountries: fc.array(fc.constantFrom("US", "CA", "GB"), { maxLength: 2 }),
    allowedPhoneNumbers: fc.array(fc.constantFrom("+14155550100", "+19005550100"), { maxLength: 2 }),
    allowedSecrets: fc.array(fc.constantFrom("*", "a*", "stripe/*", "key"), { maxLength: 2 }),
    cardSpendingLimitCents: fc.integer({ min: 0, max: 10_000 }),
    cardPerChargeLimitCents: fc.integer({ min: 0, max: 10_000 }),
    allowedMerchantCategories: fc.array(fc.constantFrom("5734", "7995"), { maxLength: 2 }),
    blockedMerchantCategories: fc.array(fc.constantFrom("5734", "7995"), { maxLength: 2 }),
    approvalAboveCents: fc.integer({ min: 0, max: 10_000 }),
    rateLimits: fc.dictionary(
      fc.constantFrom("send_email", "send_sms", "whoami", "card_charge"),
      fc.record({ perMinute: fc.integer({ min: 1, max: 3 }), perDay: fc.integer({ min: 1, max: 5 }) }, { requiredKeys: [] }).filter(
        (r) => r.perMinute !== undefined || r.perDay !== undefined,
      ),
      { maxKeys: 2 },
    ),
    allowedSigningOrigins: fc.array(fc.constantFrom("https://shop.example", "*"), { maxLength: 2 }),
    cardCurrency: fc.constantFrom("USD", "EUR"),
  },
  { requiredKeys: [] },
);

const anyValue = fc.oneof(fc.string(), fc.integer(), fc.double(), fc.constant(undefined), fc.constant(null), fc.array(fc.string(), { maxLength: 3 }));
const arbAction: fc.Arbitrary<Action> = fc.oneof(
  fc.record({ kind: fc.constant("none"), tool: fc.constantFrom("whoami", "send_sms", "") }),
  fc.record({
    kind: fc.constant("email"),
    tool: fc.constant("send_email"),
    to: fc.oneof(fc.array(fc.oneof(fc.constantFrom("a@ok.com", "b@example.com", "x@evil.com", "a@ok.com, b@evil.com"), fc.string()), { maxLength: 6 }), anyValue),
    cc: fc.oneof(fc.array(fc.string(), { maxLength: 3 }), anyValue),
  }),
  fc.record({
    kind: fc.constantFrom("sms", "call"),
    tool: fc.constantFrom("send_sms", "place_call"),
    to: fc.oneof(fc.constantFrom("+14155550100", "+19005550100", "+16135550100", "+442079460000"), anyValue),
  }),
  fc.record({ kind: fc.constant("vault"), tool: fc.constant("vault_get"), name: fc.oneof(fc.constantFrom("key", "stripe/x", "abc"), anyValue) }),
  fc.record(
    {
      kind: fc.constant("card"),
      tool: fc.constant("card_charge"),
      amountCents: fc.oneof(fc.integer({ min: -10, max: 20_000 }), fc.double(), anyValue),
      currency: fc.oneof(fc.constantFrom("USD", "EUR", "usd"), anyValue),
      merchantCategory: fc.oneof(fc.constantFrom("5734", "7995", "1234"), anyValue),
    },
    { requiredKeys: ["kind", "tool", "amountCents", "currency"] },
  ),
  fc.record({ kind: fc.constant("sign"), tool: fc.constant("sign_http_request"), url: fc.oneof(fc.constantFrom("https://shop.example/x", "http://shop.example/"), fc.webUrl(), anyValue) }),
  fc.record({ kind: fc.string(), tool: anyValue }),
) as fc.Arbitrary<Action>;

const RELEVANT: Record<string, Array<keyof Policy>> = {
  email: ["allowedDomains"],
  sms: ["allowedPhoneCountries", "allowedPhoneNumbers"],
  call: ["allowedPhoneCountries", "allowedPhoneNumbers"],
  vault: ["allowedSecrets"],
  card: ["cardSpendingLimitCents"],
  sign: ["allowedSigningOrigins"],
};

describe("properties", () => {
  it("evaluate never throws and denies when the relevant key is absent", () => {
    fc.assert(
      fc.property(arbPolicyInput, arbAction, fc.integer({ min: 0, max: 5 }), (input, action, prior) => {
        const policy = pol(input);
        const usage = new FakeUsage().attempt(typeof action?.tool === "string" ? action.tool : "x", NOW - 10, prior);
        const d = evaluate(policy, action, usage, NOW);
        expect(typeof d.allow).toBe("boolean");
        if (!d.allow) {
          expect(d.message).not.toMatch(/[\u0000-\u001f\u007f]/);
          expect(d.message.length).toBeLessThan(400);
        }
        const keys = Object.hasOwn(RELEVANT, action.kind) ? RELEVANT[action.kind] : undefined;
        if (keys) {
          const stripped: Policy = { ...policy };
          for (const k of keys) delete stripped[k];
          expect(evaluate(stripped, action, usage, NOW).allow).toBe(false);
        }
      }),
      { numRuns: runs(1500) },
    );
  });

  it("the total allowed card spend never exceeds the limit in any 24 h window", () => {
    fc.assert(
      fc.property(
        fc.integer({ min: 0, max: 50_000 }),
        fc.array(fc.record({ amount: fc.integer({ min: -5, max: 30_000 }), gapMs: fc.oneof(fc.integer({ min: 0, max: 6 * 3600_000 }), fc.constantFrom(0, 1, 500, DAY_MS / 2, DAY_MS / 2 - 1, DAY_MS - 1, DAY_MS)) }), {
          maxLength: 40,
        }),
        (limit, charges) => {
          const policy = pol({ cardSpendingLimitCents: limit });
          const usage = new FakeUsage();
          let t = NOW;
          for (const c of charges) {
            t += c.gapMs;
            const d = evaluate(policy, card(c.amount), usage, t);
            if (d.allow) usage.spend(c.amount, t);
            // every rolling window ending now holds at most the limit
            expect(usage.spentSince(t - DAY_MS + 1)).toBeLessThanOrEqual(limit);
          }
          // and no window anywhere in the history exceeds it
          for (const s of usage.spends) {
            const inWindow = usage.spends.filter((x) => x.at >= s.at && x.at < s.at + DAY_MS).reduce((a, x) => a + x.cents, 0);
            expect(inWindow).toBeLessThanOrEqual(limit);
          }
        },
      ),
      { numRuns: runs(500) },
    );
  });
});
