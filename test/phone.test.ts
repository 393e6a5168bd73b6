import { describe, expect, it } from "vitest";
import fc from "fast-check";
import { parsePhone } from "../src/policy/phone.js";

const E164 = /^\+[1-9]\d{6,14}$/;

describe("parsePhone: valid numbers", () => {
  const good: Array<[string, string, boolean]> = [
    ["+14155550100", "US", false],
    ["+16135550100", "CA", false],
    ["+442079460000", "GB", false],
    ["+33612345678", "FR", false],
    ["+491701234567", "DE", false],
    ["+61491570156", "AU", false],
    ["+18005550100", "US", false], // toll free is not premium
    ["+19005550100", "US", true], // US 900 premium
    ["+449098790000", "GB", true], // UK 09 premium
    ["+448712345678", "GB", true], // UK 087 is classed premium
    ["+33891234567", "FR", true], // FR 089 premium
    ["+33810123456", "FR", true], // FR 081 shared cost, treated as premium
    ["+34901123456", "ES", true], // ES 901 shared cost
    ["+41840123456", "CH", true], // CH 084 shared cost
  ];
  it.each(good)("%s", (input, country, premium) => {
    const r = parsePhone(input);
    expect(r).toMatchObject({ ok: true, e164: input, country, premium });
  });

  it("returns undefined country for non-geographic numbers", () => {
    const r = parsePhone("+80012345678");
    expect(r).toMatchObject({ ok: true, country: undefined, premium: false });
  });
});

describe("parsePhone: hostile or invalid input is refused", () => {
  const bad: string[] = [
    "",
    "+",
    "+1 415 555 0100",
    "+1-415-555-0100",
    "+1 (415) 555-0100",
    "+1.415.555.0100",
    "tel:+14155550100",
    "sms:+14155550100",
    "+14155550100;ext=1",
    "+14155550100x12",
    "+14155550100 ext 12",
    "+14155550100#",
    "+14155550100,,1234",
    "14155550100",
    "0014155550100",
    "+014155550100",
    "+0",
    "+1415555010", // too short for NANP
    "+1415555010000000", // 16 digits
    "+19765550100", // unassigned area code
    "+4408451234567", // national trunk 0 after country code
    "+447700900123", // drama range not valid mobile
    "+1234567",
    " +14155550100",
    "+14155550100 ",
    "+14155550100\n",
    "+14155550100\u0000",
    "+1415555\u200b0100",
    "call +14155550100 now",
    "+14155550100 +19005550100",
    "\uff0b\uff11\uff14\uff11\uff15\uff15\uff15\uff15\uff10\uff11\uff10\uff10", // fullwidth
    "+\u0661\u0664\u0661\u0665\u0665\u0665\u0665\u0660\u0661\u0660\u0660", // Arabic-Indic
    "+\u06f1\u06f4\u06f1\u06f5\u06f5\u06f5\u06f5\u06f0\u06f1\u06f0\u06f0", // extended Arabic-Indic
    "+\u0967\u096a\u0967\u096b\u096b\u096b\u096b\u0966\u0967\u0966\u0966", // Devanagari
    "+1415555O100",
    "+1".padEnd(100_000, "5"),
    "+" + "9".repeat(15),
    "＋14155550100",
  ];
  it.each(bad.map((b) => [JSON.stringify(b).slice(0, 60), b]))("%s", (_l, input) => {
    const r = parsePhone(input);
    expect(r.ok).toBe(false);
  });

  it("refuses non-strings without throwing", () => {
    expect(parsePhone(14155550100 as unknown as string).ok).toBe(false);
    expect(parsePhone(null as unknown as string).ok).toBe(false);
  });
});

describe("properties", () => {
  it("accepted outputs are always strict E.164 equal to the input", () => {
    const digits = fc.stringMatching(/^[0-9]{0,16}$/);
    const arb = fc.oneof(
      fc.string({ maxLength: 40 }),
      fc.string({ unit: "binary", maxLength: 20 }),
      digits.map((d) => `+${d}`),
      fc.tuple(fc.constantFrom("1", "44", "33", "49", "61", "81", "86", "91", "7"), digits).map(([c, d]) => `+${c}${d}`),
    );
    fc.assert(
      fc.property(arb, (s) => {
        const r = parsePhone(s);
        if (r.ok) {
          expect(r.e164).toMatch(E164);
          expect(r.e164).toBe(s);
        }
      }),
      { numRuns: 1500 },
    );
  });
});
