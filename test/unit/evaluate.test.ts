/**
 * evaluate.ts, pinned where mutation testing found it loose (issue 20): the documented maximums at
 * their boundary, the reason code (and the rule) of every refusal, phone lists without countries,
 * userinfo of any form in signing URLs, a broken clock or usage total failing closed, globs that
 * start with `*`, and a huge cc list meeting the recipient cap.
 */
import { describe, expect, it } from "vitest";
import fc from "fast-check";
import { parsePolicy, type Policy } from "../../src/policy/schema.js";
import { DAY_MS, DEFAULT_MAX_RECIPIENTS, MINUTE_MS, evaluate, globMatch, type Action, type Decision, type Usage } from "../../src/policy/evaluate.js";

const NOW = Date.UTC(2025, 0, 15, 12, 0, 0);

function pol(input: unknown): Policy {
  const r = parsePolicy(input);
  if (!r.ok) throw new Error(r.error);
  return r.policy;
}
const usage = (count = 0, spent = 0): Usage => ({ countSince: () => count, spentSince: () => spent });
const none = usage();
const reason = (d: Decision): string => (d.allow ? "allowed" : d.reason);
const message = (d: Decision): string => (d.allow ? "" : d.message);

const email = (to: unknown, cc: unknown = []): Action => ({ kind: "email", tool: "send_email", to, cc }) as Action;
const sms = (to: unknown): Action => ({ kind: "sms", tool: "send_sms", to }) as Action;
const call = (to: unknown): Action => ({ kind: "call", tool: "place_call", to }) as Action;
const vault = (name: unknown): Action => ({ kind: "vault", tool: "vault_get", name }) as Action;
const card = (amountCents: unknown, currency: unknown = "USD", merchantCategory?: unknown): Action =>
  ({ kind: "card", tool: "card_charge", amountCents, currency, ...(merchantCategory !== undefined ? { merchantCategory } : {}) }) as Action;
const sign = (url: unknown): Action => ({ kind: "sign", tool: "sign_http_request", url }) as Action;

describe("phone: allowedPhoneNumbers without allowedPhoneCountries", () => {
  const p = pol({ allowedPhoneNumbers: ["+14155550100"] });
  it("allows the listed number and nothing else, for SMS and calls", () => {
    for (const mk of [sms, call]) {
      expect(reason(evaluate(p, mk("+14155550100"), none, NOW))).toBe("allowed");
      for (const other of ["+14155550101", "+442079460000", "+33142685300", "+16135550123"]) {
        const d = evaluate(p, mk(other), none, NOW);
        expect(reason(d), other).toBe("phone_not_allowed");
        expect(message(d)).toMatch(/not in allowedPhoneNumbers or allowedPhoneCountries/);
      }
    }
  });
  it("countries without numbers allow that country only; the normalised result names the country", () => {
    const c = pol({ allowedPhoneCountries: ["GB"] });
    const d = evaluate(c, sms("+442079460000"), none, NOW);
    expect(d).toEqual({ allow: true, needsApproval: false, normalized: { kind: "sms", to: "+442079460000", country: "GB" } });
    expect(reason(evaluate(c, sms("+14155550100"), none, NOW))).toBe("phone_not_allowed");
    expect(evaluate(c, call("+442079460000"), none, NOW)).toMatchObject({ allow: true, normalized: { kind: "call" } });
  });
  it("each refusal names its rule", () => {
    const d0 = evaluate(pol({}), sms("+14155550100"), none, NOW);
    expect([reason(d0), message(d0)]).toEqual(["phone_not_allowed", "This identity's policy does not allow SMS."]);
    expect(message(evaluate(pol({}), call("+14155550100"), none, NOW))).toBe("This identity's policy does not allow calls.");
    expect(reason(evaluate(p, sms(14155550100), none, NOW))).toBe("invalid_phone");
    expect(message(evaluate(p, sms(14155550100), none, NOW))).toBe("The destination must be an E.164 string.");
    expect(reason(evaluate(p, sms("4155550100"), none, NOW))).toBe("invalid_phone");
    const prem = evaluate(pol({ allowedPhoneNumbers: ["+19005550100"], allowedPhoneCountries: ["US"] }), sms("+19005550100"), none, NOW);
    expect([reason(prem), message(prem)]).toEqual(["premium_rate", "Destination +19005550100 is a premium-rate number."]);
  });
});

describe("sign: userinfo of any form is refused", () => {
  const p = pol({ allowedSigningOrigins: ["https://shop.example"] });
  it.each(["https://user@shop.example/", "https://:pw@shop.example/", "https://user:pw@shop.example/", "https://@shop.example/", "https://user:@shop.example/"])("%s", (url) => {
    expect(reason(evaluate(p, sign(url), none, NOW))).toBe("invalid_arguments");
  });
  it("the URL length boundary is 8192 characters", () => {
    const base = "https://shop.example/";
    const at = base + "x".repeat(8192 - base.length);
    expect(at.length).toBe(8192);
    expect(reason(evaluate(p, sign(at), none, NOW))).toBe("allowed");
    const d = evaluate(p, sign(at + "x"), none, NOW);
    expect([reason(d), message(d)]).toEqual(["invalid_arguments", "url must be a string of 1 to 8192 characters."]);
    expect(reason(evaluate(p, sign(""), none, NOW))).toBe("invalid_arguments");
    expect(reason(evaluate(p, sign(42), none, NOW))).toBe("invalid_arguments");
  });
  it("refusals name their rule; an allowed one returns the URL it will sign and its origin", () => {
    const absent = evaluate(pol({}), sign("https://shop.example/"), none, NOW);
    expect([reason(absent), message(absent)]).toEqual(["origin_not_allowed", "This identity's policy does not allow signing requests."]);
    expect(message(evaluate(p, sign("http://shop.example/"), none, NOW))).toBe("Only https URLs (or http to loopback) may be signed.");
    expect(message(evaluate(p, sign("https://other.example/"), none, NOW))).toBe('Origin "https://other.example" is not in allowedSigningOrigins.');
    expect(evaluate(p, sign("https://shop.example/a?b=1"), none, NOW)).toEqual({
      allow: true,
      needsApproval: false,
      normalized: { kind: "sign", url: "https://shop.example/a?b=1", origin: "https://shop.example" },
    });
    expect(reason(evaluate(pol({ allowedSigningOrigins: ["*"] }), sign("https://any.example/"), none, NOW))).toBe("allowed");
  });
});

describe("a broken clock or usage total fails closed", () => {
  const p = pol({ cardSpendingLimitCents: 1000, rateLimits: { send_sms: { perMinute: 5, perDay: 10 } }, allowedPhoneCountries: ["US"] });
  it.each([NaN, Infinity, -Infinity])("clock %s", (now) => {
    for (const a of [sms("+14155550100"), card(100)]) {
      const d = evaluate(p, a, none, now);
      expect([reason(d), message(d)]).toEqual(["invalid_arguments", "The policy or time is malformed."]);
    }
  });
  it.each([NaN, -1, -1e9, Infinity])("rate-limit count %s refuses", (count) => {
    expect(reason(evaluate(p, sms("+14155550100"), usage(count), NOW))).toBe("rate_limited");
  });
  it.each([NaN, -1, -1e9, Infinity])("spent total %s refuses", (spent) => {
    expect(reason(evaluate(p, card(100), usage(0, spent), NOW))).toBe("spending_limit");
  });
  it("a malformed policy or action is refused", () => {
    expect(reason(evaluate(null as never, card(1), none, NOW))).toBe("invalid_arguments");
    expect(reason(evaluate(p, null as never, none, NOW))).toBe("invalid_arguments");
    expect(reason(evaluate(p, { kind: "card", tool: "" } as never, none, NOW))).toBe("invalid_arguments");
    expect(reason(evaluate(p, { kind: "card", tool: 5 } as never, none, NOW))).toBe("invalid_arguments");
    expect(message(evaluate(p, { kind: "bogus", tool: "x" } as never, none, NOW))).toBe("The action kind is unknown.");
  });
});

describe("rate limits: the windows and each limit's message", () => {
  const p = pol({ rateLimits: { send_sms: { perMinute: 2, perDay: 3 } }, allowedPhoneCountries: ["US"] });
  it("asks for (now-60s, now] and (now-24h, now]", () => {
    const asked: number[] = [];
    const u: Usage = { countSince: (_t, since) => (asked.push(since), 0), spentSince: () => 0 };
    evaluate(p, sms("+14155550100"), u, NOW);
    expect(asked).toEqual([NOW - MINUTE_MS + 1, NOW - DAY_MS + 1]);
  });
  it("names the limit that was reached", () => {
    const perMinute = evaluate(p, sms("+14155550100"), { countSince: (_t, s) => (s === NOW - MINUTE_MS + 1 ? 2 : 2), spentSince: () => 0 }, NOW);
    expect(message(perMinute)).toBe('"send_sms" may be used at most 2 times per minute.');
    const perDay = evaluate(p, sms("+14155550100"), { countSince: (_t, s) => (s === NOW - MINUTE_MS + 1 ? 0 : 3), spentSince: () => 0 }, NOW);
    expect(message(perDay)).toBe('"send_sms" may be used at most 3 times per day.');
    expect(reason(evaluate(p, sms("+14155550100"), { countSince: (_t, s) => (s === NOW - MINUTE_MS + 1 ? 1 : 2), spentSince: () => 0 }, NOW))).toBe("allowed");
  });
  it("tools without a limit are not counted", () => {
    const u: Usage = { countSince: () => 1e9, spentSince: () => 0 };
    expect(reason(evaluate(p, call("+14155550100"), u, NOW))).toBe("allowed");
    expect(reason(evaluate(pol({ allowedPhoneCountries: ["US"] }), sms("+14155550100"), u, NOW))).toBe("allowed");
  });
});

describe("vault: globs and the 256-character name", () => {
  it("globs starting or ending with * match at any position", () => {
    const p = pol({ allowedSecrets: ["*/prod"] });
    expect(reason(evaluate(p, vault("stripe/prod"), none, NOW))).toBe("allowed");
    expect(reason(evaluate(p, vault("a/b/prod"), none, NOW))).toBe("allowed");
    expect(reason(evaluate(p, vault("/prod"), none, NOW))).toBe("allowed");
    expect(reason(evaluate(p, vault("stripe/prod2"), none, NOW))).toBe("secret_not_allowed");
    expect(reason(evaluate(p, vault("stripe/dev"), none, NOW))).toBe("secret_not_allowed");
    expect(globMatch("*", "")).toBe(true);
    expect(globMatch("**", "abc")).toBe(true);
    expect(globMatch("a*", "a")).toBe(true);
    expect(globMatch("*a", "ba")).toBe(true);
    expect(globMatch("*a", "ab")).toBe(false);
    expect(globMatch("a*b*c", "axbxc")).toBe(true);
    expect(globMatch("a*b*c", "axbxcx")).toBe(false);
    expect(globMatch("a*bc", "abxbc")).toBe(true);
    expect(globMatch("", "")).toBe(true);
    expect(globMatch("", "a")).toBe(false);
    expect(globMatch("a", "")).toBe(false);
    expect(globMatch("ab", "a")).toBe(false);
  });
  it("globMatch agrees with an anchored regular expression", () => {
    const ch = fc.constantFrom("a", "b", "/");
    fc.assert(
      fc.property(fc.string({ unit: fc.constantFrom("a", "b", "/", "*"), maxLength: 8 }), fc.string({ unit: ch, maxLength: 10 }), (g, n) => {
        const re = new RegExp(`^${g.replace(/[/]/g, "\\/").replace(/\*/g, ".*")}$`, "s");
        expect(globMatch(g, n)).toBe(re.test(n));
      }),
    );
  });
  it("a name of 256 characters is evaluated, 257 is refused", () => {
    const p = pol({ allowedSecrets: ["*"] });
    expect(reason(evaluate(p, vault("x".repeat(256)), none, NOW))).toBe("allowed");
    const d = evaluate(p, vault("x".repeat(257)), none, NOW);
    expect([reason(d), message(d)]).toEqual(["invalid_arguments", "The secret name must be a string of 1 to 256 characters."]);
    expect(reason(evaluate(p, vault(""), none, NOW))).toBe("invalid_arguments");
    expect(reason(evaluate(p, vault(7), none, NOW))).toBe("invalid_arguments");
    expect(evaluate(p, vault("k"), none, NOW)).toEqual({ allow: true, needsApproval: false, normalized: { kind: "vault", name: "k" } });
    const absent = evaluate(pol({}), vault("k"), none, NOW);
    expect([reason(absent), message(absent)]).toEqual(["secret_not_allowed", 'Secret "k" is not in allowedSecrets.']);
  });
});

describe("email: the recipient caps", () => {
  const p = pol({ allowedDomains: ["example.com"], maxRecipients: 1000 });
  const addrs = (n: number, prefix = "u"): string[] => Array.from({ length: n }, (_, i) => `${prefix}${i}@example.com`);
  it("1000 raw recipients are evaluated; 1001 are refused before any address is parsed", () => {
    expect(reason(evaluate(p, email(addrs(600), addrs(400, "c")), none, NOW))).toBe("allowed");
    // 1001 entries, all malformed: refused by the count, not by the first bad address.
    const d = evaluate(p, email(["not an address"], Array(1000).fill("not an address")), none, NOW);
    expect(reason(d)).toBe("too_many_recipients");
    expect(message(d)).toBe("The message has more than the allowed 1000 recipients.");
    expect(reason(evaluate(p, email(["not an address"], Array(999).fill("not an address")), none, NOW))).toBe("invalid_recipient");
  });
  it("a huge cc list cannot skip the cap: cc counts toward maxRecipients", () => {
    const small = pol({ allowedDomains: ["example.com"], maxRecipients: 3 });
    expect(reason(evaluate(small, email(["a@example.com"], ["b@example.com", "c@example.com"]), none, NOW))).toBe("allowed");
    const d = evaluate(small, email(["a@example.com"], ["b@example.com", "c@example.com", "d@example.com"]), none, NOW);
    expect([reason(d), message(d)]).toEqual(["too_many_recipients", "The message has 4 recipients; at most 3 are allowed."]);
    expect(reason(evaluate(small, email(["a@example.com"], addrs(5000)), none, NOW))).toBe("too_many_recipients");
    // Duplicates (after normalisation) count once.
    expect(reason(evaluate(small, email(["a@example.com", "A@EXAMPLE.com"], ["a@example.com", "b@example.com", "c@example.com"]), none, NOW))).toBe("allowed");
  });
  it(`the default cap is ${DEFAULT_MAX_RECIPIENTS}`, () => {
    const dflt = pol({ allowedDomains: ["example.com"] });
    expect(reason(evaluate(dflt, email(addrs(DEFAULT_MAX_RECIPIENTS)), none, NOW))).toBe("allowed");
    const d = evaluate(dflt, email(addrs(DEFAULT_MAX_RECIPIENTS + 1)), none, NOW);
    expect([reason(d), message(d)]).toEqual(["too_many_recipients", "The message has 11 recipients; at most 10 are allowed."]);
  });
  it("each refusal names its rule, and cc is normalised and checked like to", () => {
    const absent = evaluate(pol({}), email(["a@example.com"]), none, NOW);
    expect([reason(absent), message(absent)]).toEqual(["email_not_allowed", "This identity's policy does not allow sending email."]);
    expect(message(evaluate(p, email([]), none, NOW))).toBe('At least one "to" recipient is required.');
    expect(message(evaluate(p, email("a@example.com"), none, NOW))).toBe("Recipients must be arrays of strings.");
    expect(message(evaluate(p, email(["a@example.com"], [5]), none, NOW))).toBe("Recipients must be arrays of strings.");
    expect(reason(evaluate(p, email(["a@example.com"], undefined), none, NOW))).toBe("allowed");
    expect(message(evaluate(p, email(["a@evil.com"]), none, NOW))).toBe('Recipient domain "evil.com" is not in allowedDomains.');
    expect(reason(evaluate(p, email(["a@example.com"], ["b@evil.com"]), none, NOW))).toBe("domain_not_allowed");
    expect(reason(evaluate(p, email(["a@example.com"], ["bad"]), none, NOW))).toBe("invalid_recipient");
    expect(message(evaluate(p, email(["bad"]), none, NOW))).toBe('Recipient "bad" is not a plain email address: address has no @.');
    expect(evaluate(p, email(["A@Example.com"], ["B@example.COM"]), none, NOW)).toEqual({
      allow: true,
      needsApproval: false,
      normalized: { kind: "email", to: ["a@example.com"], cc: ["b@example.com"] },
    });
  });
});

describe("card: each refusal names its rule", () => {
  const base = { cardSpendingLimitCents: 10_000, cardPerChargeLimitCents: 5_000, approvalAboveCents: 2_000 };
  it("amount, currency, category, limits and approval", () => {
    const p = pol(base);
    expect(message(evaluate(pol({}), card(1), none, NOW))).toBe("This identity's policy does not allow card charges.");
    for (const bad of [0, -1, 1.5, "100", Number.MAX_SAFE_INTEGER + 1]) {
      expect(message(evaluate(p, card(bad), none, NOW)), String(bad)).toBe("amountCents must be a positive integer.");
    }
    expect(reason(evaluate(p, card(1), none, NOW))).toBe("allowed");
    for (const bad of ["US", "USDD", "U5D", 840]) expect(message(evaluate(p, card(1, bad), none, NOW)), String(bad)).toBe("currency must be a 3-letter ISO 4217 code.");
    expect(evaluate(p, card(1, "usd"), none, NOW)).toMatchObject({ allow: true, normalized: { currency: "USD" } });
    expect(message(evaluate(p, card(1, "EUR"), none, NOW))).toBe("Only USD charges are allowed.");
    expect(reason(evaluate(pol({ ...base, cardCurrency: "EUR" }), card(1, "EUR"), none, NOW))).toBe("allowed");
    for (const bad of ["599", "59999", "abcd", 5999]) expect(message(evaluate(p, card(1, "USD", bad), none, NOW)), String(bad)).toBe("merchantCategory must be a 4-digit merchant category code.");
    expect(evaluate(p, card(1, "USD", "5734"), none, NOW)).toEqual({ allow: true, needsApproval: false, normalized: { kind: "card", amountCents: 1, currency: "USD", merchantCategory: "5734" } });
    expect(evaluate(p, card(1), none, NOW)).toEqual({ allow: true, needsApproval: false, normalized: { kind: "card", amountCents: 1, currency: "USD" } });
    expect(message(evaluate(p, card(5_001), none, NOW))).toBe("A single charge may be at most 5000 cents.");
    expect(reason(evaluate(p, card(5_000), usage(0, 5_000), NOW))).toBe("allowed");
    expect(message(evaluate(p, card(5_000), usage(0, 5_001), NOW))).toBe("The charge would exceed the 10000-cent limit for any 24 hours.");
    expect(evaluate(p, card(2_000), none, NOW)).toMatchObject({ allow: true, needsApproval: false });
    expect(evaluate(p, card(2_001), none, NOW)).toMatchObject({ allow: true, needsApproval: true });
    expect(evaluate(pol({ cardSpendingLimitCents: 10_000 }), card(9_999), none, NOW)).toMatchObject({ allow: true, needsApproval: false });
  });
  it("asks for the spend in (now-24h, now]", () => {
    const asked: number[] = [];
    evaluate(pol(base), card(1), { countSince: () => 0, spentSince: (s) => (asked.push(s), 0) }, NOW);
    expect(asked).toEqual([NOW - DAY_MS + 1]);
  });
  it("merchant categories: a claimed one is checked blocked first, then against the allowed list; none claimed is left to the card processor", () => {
    const p = pol({ ...base, blockedMerchantCategories: ["7995"], allowedMerchantCategories: ["7995", "5734"] });
    expect(message(evaluate(p, card(1, "USD", "7995"), none, NOW))).toBe("Merchant category 7995 is blocked.");
    expect(message(evaluate(p, card(1, "USD", "1234"), none, NOW))).toBe("Merchant category 1234 is not in allowedMerchantCategories.");
    // card_charge gets the category from the processor and refuses what it cannot state (test/card.test.ts).
    expect(reason(evaluate(p, card(1), none, NOW))).toBe("allowed");
    expect(reason(evaluate(pol({ ...base, blockedMerchantCategories: ["7995"] }), card(1), none, NOW))).toBe("allowed");
  });
});

describe("mutation survivors (issue 20): each one pinned by what it changes", () => {
  it("a glob's * is a wildcard only in the pattern: a name containing * gets no special treatment", () => {
    // A literal-matching `*` in the pattern would stop at the name's `*` and refuse the rest.
    expect(globMatch("*", "*x")).toBe(true);
    expect(globMatch("*", "**")).toBe(true);
    expect(globMatch("a*", "a*b")).toBe(true);
    expect(globMatch("*b", "*ab")).toBe(true);
    expect(reason(evaluate(pol({ allowedSecrets: ["*"] }), vault("*x"), none, NOW))).toBe("allowed");
    fc.assert(
      fc.property(fc.string({ unit: fc.constantFrom("a", "*"), maxLength: 6 }), fc.string({ unit: fc.constantFrom("a", "*"), maxLength: 8 }), (g, n) => {
        const re = new RegExp(`^${g.replace(/\*/g, ".*")}$`, "s");
        expect(globMatch(g, n)).toBe(re.test(n));
      }),
    );
  });

  it("a rate-limit entry with only perDay counts only the day; one with only perMinute only the minute", () => {
    const dayOnly = pol({ rateLimits: { send_sms: { perDay: 3 } }, allowedPhoneCountries: ["US"] });
    const asked: number[] = [];
    const u: Usage = { countSince: (_t, since) => (asked.push(since), 2), spentSince: () => 0 };
    expect(reason(evaluate(dayOnly, sms("+14155550100"), u, NOW))).toBe("allowed");
    expect(asked).toEqual([NOW - DAY_MS + 1]);
    const minuteOnly = pol({ rateLimits: { send_sms: { perMinute: 3 } }, allowedPhoneCountries: ["US"] });
    asked.length = 0;
    expect(reason(evaluate(minuteOnly, sms("+14155550100"), u, NOW))).toBe("allowed");
    expect(asked).toEqual([NOW - MINUTE_MS + 1]);
  });

  it("a policy object whose rate-limit entry is missing (not parsed from JSON) does not throw", () => {
    const p = { ...pol({ allowedPhoneCountries: ["US"] }), rateLimits: { send_sms: undefined } } as unknown as Policy;
    expect(reason(evaluate(p, sms("+14155550100"), none, NOW))).toBe("allowed");
  });

  it("an email action without a cc member is sent to its to list only", () => {
    const p = pol({ allowedDomains: ["example.com"] });
    const a = { kind: "email", tool: "send_email", to: ["a@example.com"] } as unknown as Action;
    expect(evaluate(p, a, none, NOW)).toStrictEqual({ allow: true, needsApproval: false, normalized: { kind: "email", to: ["a@example.com"], cc: [] } });
  });

  it("an unparseable phone number's refusal says what is wrong with it", () => {
    const p = pol({ allowedPhoneCountries: ["US"] });
    const d = evaluate(p, sms("4155550100"), none, NOW);
    expect(reason(d)).toBe("invalid_phone");
    expect(message(d)).toMatch(/^Destination "4155550100" .+\.$/);
  });

  it("a currency that is not a string is refused, not thrown on, even if it reads as a code", () => {
    const p = pol({ cardSpendingLimitCents: 1000 });
    for (const bad of [["USD"], { toString: () => "USD" }]) {
      const d = evaluate(p, card(1, bad), none, NOW);
      expect([reason(d), message(d)]).toEqual(["invalid_arguments", "currency must be a 3-letter ISO 4217 code."]);
    }
  });

  it("a charge with no claimed category has no category key in its normalised form", () => {
    const d = evaluate(pol({ cardSpendingLimitCents: 1000 }), card(1), none, NOW);
    expect(d).toStrictEqual({ allow: true, needsApproval: false, normalized: { kind: "card", amountCents: 1, currency: "USD" } });
  });

  it("sign: an empty URL, a non-http scheme and a URL the parsers read differently each get their own sentence", () => {
    const p = pol({ allowedSigningOrigins: ["https://shop.example"] });
    expect(message(evaluate(p, sign(""), none, NOW))).toBe("url must be a string of 1 to 8192 characters.");
    for (const url of ["ftp://shop.example/", "javascript:alert(1)", "file:///etc/passwd"]) {
      const d = evaluate(p, sign(url), none, NOW);
      expect([reason(d), message(d)], url).toEqual(["origin_not_allowed", "Only https URLs (or http to loopback) may be signed."]);
    }
    expect(message(evaluate(p, sign("https://user@shop.example/"), none, NOW))).toBe(
      "the URL carries userinfo (a name or password before @), which parsers read differently.",
    );
  });

  it("a malformed action is refused with its own sentence and never throws", () => {
    const p = pol({ allowedSecrets: ["*"] });
    for (const bad of [undefined, null, 5, "vault", { kind: "none", tool: "" }, { kind: "none" }, { kind: "none", tool: 7 }]) {
      const d = evaluate(p, bad as never, none, NOW);
      expect([reason(d), message(d)], String(JSON.stringify(bad))).toEqual(["invalid_arguments", "The action is malformed."]);
    }
    for (const bad of [undefined, null, 5, "policy"]) {
      const d = evaluate(bad as never, vault("k"), none, NOW);
      expect([reason(d), message(d)], String(bad)).toEqual(["invalid_arguments", "The policy or time is malformed."]);
    }
  });

  it("a none action is allowed as exactly { kind: none }", () => {
    expect(evaluate(pol({}), { kind: "none", tool: "whoami" }, none, NOW)).toStrictEqual({ allow: true, needsApproval: false, normalized: { kind: "none" } });
  });
});
