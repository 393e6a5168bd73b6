import { describe, expect, it } from "vitest";
import fc from "fast-check";
import { runs } from "./support/runs.js";
import { domainAllowed, normalizeDomain, validateAddress } from "../src/policy/email-address.js";

const STRICT_ADDRESS = /^[a-z0-9#$&'*+/=?^_`{|}~-]+(?:\.[a-z0-9#$&'*+/=?^_`{|}~-]+)*@(?:[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?\.)+(?:[a-z]{2,63}|xn--[a-z0-9-]{1,59})$/;

describe("validateAddress: accepted addresses", () => {
  const good: Array<[string, string]> = [
    ["a@ok.com", "a@ok.com"],
    ["Alice.Smith@Example.COM", "alice.smith@example.com"],
    ["a+tag@sub.ok.com", "a+tag@sub.ok.com"],
    ["o'brien@ok.co.uk", "o'brien@ok.co.uk"],
    ["x_y-z@ok-domain.io", "x_y-z@ok-domain.io"],
    ["a#b$c&d*e/f=g?h^i`j{k|l}m~n@ok.com", "a#b$c&d*e/f=g?h^i`j{k|l}m~n@ok.com"],
    ["user@bücher.de", "user@xn--bcher-kva.de"],
    ["user@xn--bcher-kva.de", "user@xn--bcher-kva.de"],
    ["user@BÜCHER.de", "user@xn--bcher-kva.de"],
    ["user@пример.рф", "user@xn--e1afmkfd.xn--p1ai"],
    ["user@例え.jp", "user@xn--r8jz45g.jp"],
    ["user@δοκιμή.gr", "user@xn--jxalpdlp.gr"],
    ["a@1ok.com", "a@1ok.com"],
    ["a@xn--p1ai.xn--p1ai", "a@xn--p1ai.xn--p1ai"],
  ];
  it.each(good)("%s", (input, expected) => {
    const r = validateAddress(input);
    expect(r).toMatchObject({ ok: true, address: expected });
    if (r.ok) {
      expect(r.address).toBe(`${r.local}@${r.domain}`);
      expect(r.address).toMatch(STRICT_ADDRESS);
    }
  });
});

describe("validateAddress: hostile or malformed input is refused", () => {
  const long = "a".repeat(64);
  const bad: string[] = [
    "",
    "plain",
    "@ok.com",
    "a@",
    '"a@ok.com" <x@evil.com>',
    "Alice <a@ok.com>",
    "<a@ok.com>",
    "a@ok.com <x@evil.com>",
    "a@ok.com, b@evil.com",
    "a@ok.com,b@evil.com",
    "a@ok.com; b@evil.com",
    "a@ok.com\r\nBcc: x@evil.com",
    "a@ok.com\nx@evil.com",
    "a@ok.com\r",
    "g: a@ok.com;",
    "g:a@ok.com;",
    "undisclosed-recipients:;",
    "a(x)@ok.com",
    "a@ok.com(comment)",
    "(c)a@ok.com",
    "a@[127.0.0.1]",
    "a@[IPv6:::1]",
    "a@127.0.0.1",
    "a@1.2.3.4",
    "a@0x7f.1",
    "a@ok.com.",
    "a@.ok.com",
    "a@ok..com",
    ".a@ok.com",
    "a.@ok.com",
    "a..b@ok.com",
    '"a b"@ok.com',
    '"a"@ok.com',
    '"a@evil.com"@ok.com',
    "a\\@evil.com@ok.com",
    "a\\b@ok.com",
    "a@evil.com@ok.com",
    "a%evil.com@ok.com",
    "evil.com!a@ok.com",
    "a@ok.com\u0000",
    "a\u0000@ok.com",
    "a@ok.com\u007f",
    "a@ok.com\u0085",
    "a@ok.com\u00a0",
    "a @ok.com",
    " a@ok.com",
    "a@ok.com ",
    "a\t@ok.com",
    "a@ok\u200b.com",
    "a@ok.com\u200b",
    "a\u200d@ok.com",
    "a@exa\u200dmple.com",
    "a@exa\u200cmple.com",
    "a@ok.com\u200e",
    "a@ok.com\u200f",
    "a@ok.com\u2028",
    "a@ok.com\u2029",
    "a@\u202eok.com",
    "a@ok.com\u2060",
    "a@ok.com\u2064",
    "\ufeffa@ok.com",
    "a@ok.com\ud800",
    "a@ok.com\ue000",
    "a@ex\u0430mple.com", // Cyrillic а
    "a@\u0435xample.com", // Cyrillic е
    "a@\u0435\u0445\u0430m\u0440l\u0435.com", // mixed Cyrillic/Latin
    "a@\u0430\u0440\u0440\u04cf\u0435.com", // all-Cyrillic "аррӏе"
    "a@xn--80ak6aa92e.com", // punycode of "аррӏе"
    "a@xn--exmple-4nf.com", // punycode of "exаmple"
    "a@\u03bf\u03c1\u03bf.com", // all-Greek "ορο"
    "a@ex\u03b1mple.com", // Greek alpha
    "a@p\u0251ypal.com", // Latin alpha lookalike
    "a@goog\u0131e.com", // dotless i
    "a@\uff45\uff58\uff41\uff4d\uff50\uff4c\uff45.com", // fullwidth letters
    "a@EXAMPLE\uff0ecom", // fullwidth dot
    "a@example\u3002com", // ideographic full stop
    "a@example\uff61com",
    "\uff41@ok.com", // fullwidth local
    "a\uff20ok.com", // fullwidth @
    "ü@ok.com",
    "user@bu\u0308cher.de", // decomposed, not canonical
    "a@ok_under.com",
    "a@-ok.com",
    "a@ok-.com",
    "a@ab--cd.com",
    "a@xn--example-.com", // punycode decoding to ASCII
    "a@xn--zz.com",
    "a@localhost",
    "a@com",
    "a@ok.c",
    "a@ok.123",
    `a@${"b".repeat(64)}.com`,
    `${long}x@ok.com`,
    `a@${Array.from({ length: 60 }, () => "abcd").join(".")}.com`,
    "x".repeat(10_000) + "@ok.com",
    "a@ok.com" + "\u0301",
    "a@ok.com/",
    "a@ok.com?",
    "a@ok.com#x",
    "a@ok.com%0d%0a",
    "=?utf-8?b?YUBldmlsLmNvbQ==?=@ok.com",
    "a@ok.com\u0008",
    "a@ok.com\u001b[0m",
    "a@ok.com\u180e",
    "a@ok.com\u00ad",
    "a@o\u0338k.com",
    "a@1\u0483.com", // a digit with a Cyrillic combining mark
    "a@xn--1-zxb.com", // its punycode
    "a@ok-\u0301x.com", // a combining mark on a hyphen
  ];
  it.each(bad.map((b) => [JSON.stringify(b).slice(0, 90), b]))("%s", (_label, input) => {
    const r = validateAddress(input);
    expect(r.ok).toBe(false);
    if (!r.ok) {
      expect(typeof r.reason).toBe("string");
      expect(r.reason.length).toBeGreaterThan(0);
    }
  });

  it("refuses non-string input without throwing", () => {
    expect(validateAddress(undefined as unknown as string).ok).toBe(false);
    expect(validateAddress(42 as unknown as string).ok).toBe(false);
  });

  it("accepts the longest legal local part and refuses one more", () => {
    expect(validateAddress(`${long}@ok.com`).ok).toBe(true);
    expect(validateAddress(`${long}a@ok.com`).ok).toBe(false);
  });

  it("accepts 63-char labels and refuses 64", () => {
    expect(validateAddress(`a@${"b".repeat(63)}.com`).ok).toBe(true);
    expect(validateAddress(`a@${"b".repeat(64)}.com`).ok).toBe(false);
  });

  it("refuses total length over 254", () => {
    const domain = `${"a".repeat(63)}.${"b".repeat(63)}.${"c".repeat(63)}.${"d".repeat(57)}.com`; // 251
    expect(domain.length).toBeLessThanOrEqual(253);
    expect(validateAddress(`ab@${domain}`).ok).toBe(false);
    expect(normalizeDomain(domain).ok).toBe(true);
  });
});

describe("normalizeDomain", () => {
  it("normalises case and IDN", () => {
    expect(normalizeDomain("Example.COM")).toEqual({ ok: true, ascii: "example.com" });
    expect(normalizeDomain("bücher.de")).toEqual({ ok: true, ascii: "xn--bcher-kva.de" });
  });
  it("allows whole-script non-Latin labels that are not lookalikes", () => {
    expect(normalizeDomain("пример.рф").ok).toBe(true);
    expect(normalizeDomain("δοκιμή.gr").ok).toBe(true);
    expect(normalizeDomain("日本語.jp").ok).toBe(true);
    expect(normalizeDomain("ひらがな漢字カタカナ.jp").ok).toBe(true);
  });
  it("refuses lookalikes", () => {
    expect(normalizeDomain("ехаmрlе.com").ok).toBe(false);
    expect(normalizeDomain("аррӏе.com").ok).toBe(false);
    expect(normalizeDomain("ѕсоре.com").ok).toBe(false);
  });
});

describe("domainAllowed", () => {
  const cases: Array<[string, string[], boolean]> = [
    ["example.com", ["example.com"], true],
    ["mail.example.com", ["example.com"], true],
    ["a.b.example.com", ["example.com"], true],
    ["evil-example.com", ["example.com"], false],
    ["notexample.com", ["example.com"], false],
    ["example.com.evil.com", ["example.com"], false],
    ["example.co", ["example.com"], false],
    ["com", ["example.com"], false],
    ["anything.org", ["*"], true],
    ["example.com", [], false],
    ["", ["example.com"], false],
    ["example.com", ["other.com", "example.com"], true],
  ];
  it.each(cases)("%s in %j → %s", (d, list, expected) => {
    expect(domainAllowed(d, list)).toBe(expected);
  });
});

describe("properties", () => {
  const controlOrSpace = /[\p{Cc}\p{Cf}\p{Z}\s]/u;
  it("validateAddress never throws; accepted outputs are strict", () => {
    const atoms = fc.constantFrom(
      "a", "Z", "0", ".", "@", "<", ">", "\"", "(", ")", ",", ";", ":", "\\", "[", "]", " ", "\r", "\n",
      "\u0000", "\u200b", "\u202e", "\ufeff", "%", "!", "-", "xn--", "com", "ok", "\u0430", "\u0435", "ü",
      "\uff41", "\u3002", "é", "日", "α", "ο", "*", "'", "+",
    );
    const structured = fc.array(atoms, { maxLength: 30 }).map((xs) => xs.join(""));
    fc.assert(
      fc.property(fc.oneof(fc.string({ unit: "binary", maxLength: 80 }), fc.string({ unit: "grapheme" }), structured), (s) => {
        const r = validateAddress(s);
        if (r.ok) {
          expect(r.address).toMatch(STRICT_ADDRESS);
          expect(controlOrSpace.test(r.address)).toBe(false);
          expect(r.address.length).toBeLessThanOrEqual(254);
          expect(r.address).toBe(r.address.toLowerCase());
        }
      }),
      { numRuns: runs(2000) },
    );
  });

  it("domainAllowed(d, [a]) implies equal or label-boundary subdomain", () => {
    const label = fc.stringMatching(/^[a-z0-9-]{1,6}$/);
    const domain = fc.array(label, { minLength: 1, maxLength: 4 }).map((xs) => xs.join("."));
    fc.assert(
      fc.property(fc.oneof(domain, fc.string()), fc.oneof(domain, fc.string()), (d, a) => {
        if (a === "*") return;
        if (domainAllowed(d, [a])) expect(d === a || d.endsWith(`.${a}`)).toBe(true);
      }),
      { numRuns: runs(2000) },
    );
    fc.assert(
      fc.property(domain, domain, (sub, a) => {
        expect(domainAllowed(`${sub}.${a}`, [a])).toBe(true);
        expect(domainAllowed(`${sub}-${a}`, [a])).toBe(false);
      }),
      { numRuns: runs(500) },
    );
  });
});
