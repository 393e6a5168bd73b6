/**
 * The exfiltration guard's matcher (src/policy/exfiltration.ts), in process: each attack from the
 * hostile review, the boundaries of the rule (16-character runs, 4-character secrets, padding),
 * and fast-check properties for the normaliser, the decoders and the rolling-hash scan.
 */
import { describe, expect, it } from "vitest";
import fc from "fast-check";
import { runs } from "./support/runs.js";
import {
  EXFILTRATION,
  MIN_GUARDED,
  RUN,
  base32Decode,
  carriesAny,
  carriesSecret,
  compileSecrets,
  gramLength,
  htmlDecode,
  normalize,
  percentDecode,
  scan,
} from "../src/policy/exfiltration.js";

const SECRET = "sk_live_4eC39HqLyjWDarjtT1zdp7dc";
/** Without separators, so a match must cover exactly RUN characters. */
const PLAIN = "4eC39HqLyjWDarjtT1zdp7dcQ8vRm2Kx";
const guarded = (text: string, secrets: string[] = [SECRET]): boolean => carriesSecret(secrets, [text]);

function base32(bytes: Buffer): string {
  const A = "ABCDEFGHIJKLMNOPQRSTUVWXYZ234567";
  let bits = 0;
  let acc = 0;
  let out = "";
  for (const b of bytes) {
    acc = (acc << 8) | b;
    bits += 8;
    while (bits >= 5) {
      bits -= 5;
      out += A[(acc >> bits) & 31];
    }
    acc &= (1 << bits) - 1;
  }
  if (bits > 0) out += A[(acc << (5 - bits)) & 31];
  return out + "=".repeat((8 - (out.length % 8)) % 8);
}
const pctEvery = (s: string): string => [...Buffer.from(s)].map((b) => `%${b.toString(16).padStart(2, "0").toUpperCase()}`).join("");
const entities = (s: string, hex: boolean): string => [...s].map((c) => (hex ? `&#x${c.codePointAt(0)!.toString(16)};` : `&#${c.codePointAt(0)};`)).join("");
const reversed = (s: string): string => [...s].reverse().join("");

describe("normalize", () => {
  it("applies NFKC, full case folding, and removes separators, punctuation, zero-width and marks", () => {
    expect(normalize("ＡＢＣ１２３")).toBe("abc123"); // fullwidth
    expect(normalize("Straße")).toBe("strasse"); // full case folding
    expect(normalize("a\u200bb\u200cc\u200dd\u2060e\ufefff")).toBe("abcdef"); // zero-width
    expect(normalize("a b\tc\nd-e_f.g/h:i")).toBe("abcdefghi");
    expect(normalize("a\u0336b\u0336")).toBe("ab"); // strike-through marks
    expect(normalize("a\u3164b\uffa0c")).toBe("abc"); // Hangul fillers (default-ignorable letters)
    expect(normalize("e\u0301")).toBe(normalize("\u00e9")); // decomposed = composed
  });

  it("is idempotent", () => {
    fc.assert(fc.property(fc.string({ unit: "binary", maxLength: 40 }), (s) => normalize(normalize(s)) === normalize(s)), { numRuns: runs(2000) });
  });
});

describe("gramLength: how much of a secret a match must cover", () => {
  it("is the whole normalised value below 16 characters, and never less than 4", () => {
    expect(gramLength("1234")).toBe(4);
    expect(gramLength("12-34")).toBe(4);
    expect(gramLength("123")).toBeUndefined();
    expect(gramLength("1-2-3")).toBeUndefined();
    expect(gramLength("abcdefghijklmno")).toBe(15);
    expect(gramLength("abcdefghijklmnop")).toBe(16);
    expect(gramLength("x".repeat(1000))).toBe(16);
    expect(MIN_GUARDED).toBe(4);
    expect(RUN).toBe(16);
  });

  it("shrinks to the fewest characters any 16 raw characters keep, so runs with separators are caught", () => {
    // 16 consecutive raw characters of this value keep at least 13 normalised ones.
    expect(gramLength("1234-5678-9012-3456")).toBe(13);
    expect(guarded("pay with 4-5678-9012-3456 today", ["1234-5678-9012-3456"])).toBe(true);
    expect(guarded("pay with 678-9012-3456 today", ["1234-5678-9012-3456"])).toBe(false);
    expect(gramLength("a-b-c-d-e-f-g-h-i-j-k")).toBe(8);
    expect(gramLength("a----------------------b-c-d")).toBe(4);
  });
});

describe("the attacks from the hostile review", () => {
  const prefix = "Here is the thing you asked for: ";

  it("raw, upper-cased, lower-cased, and in the middle of other text", () => {
    expect(guarded(SECRET)).toBe(true);
    expect(guarded(prefix + SECRET + " thanks")).toBe(true);
    expect(guarded(SECRET.toUpperCase())).toBe(true);
    expect(guarded(SECRET.toLowerCase())).toBe(true);
    expect(guarded(prefix + "nothing secret here")).toBe(false);
  });

  it("base64 and base64url of a longer string containing it, at all three alignments, padded and unpadded", () => {
    for (const pad of ["", "x", "xy", "xyz", "wxyz"]) {
      const plain = Buffer.from(`${pad}token=${SECRET};end`);
      const b64 = plain.toString("base64");
      expect(guarded(prefix + b64), `base64 after ${pad.length}`).toBe(true);
      expect(guarded(prefix + b64.replace(/=+$/, "")), `unpadded after ${pad.length}`).toBe(true);
      expect(guarded(prefix + plain.toString("base64url")), `base64url after ${pad.length}`).toBe(true);
      // MIME line breaks inside the base64 text.
      expect(guarded(b64.replace(/(.{8})/g, "$1\r\n")), `wrapped after ${pad.length}`).toBe(true);
    }
    // A cut-out middle of someone else's base64 (it starts at any of the four symbol positions).
    const long = Buffer.from(`${"q".repeat(40)}${SECRET}${"q".repeat(40)}`).toString("base64");
    for (let cut = 0; cut < 4; cut++) expect(guarded(long.slice(cut + 8, -8)), `cut ${cut}`).toBe(true);
  });

  it("the base64 padding strip: unpadded base64 of a short secret is caught as well as padded", () => {
    const pin = "7391";
    expect(Buffer.from(pin).toString("base64")).toBe("NzM5MQ==");
    expect(guarded("code NzM5MQ== ok", [pin])).toBe(true);
    expect(guarded("code NzM5MQ ok", [pin])).toBe(true);
  });

  it("percent-encoding every byte, and base64 inside a percent-encoded URL", () => {
    expect(guarded(pctEvery(SECRET))).toBe(true);
    expect(guarded(pctEvery(SECRET).toLowerCase())).toBe(true);
    const b64 = encodeURIComponent(Buffer.from(`>>?${SECRET}`).toString("base64"));
    expect(b64).toMatch(/%2[BF]|%3D/);
    expect(guarded(`https://evil.example/?q=${b64}`)).toBe(true);
  });

  it("reversal", () => {
    expect(guarded(reversed(SECRET))).toBe(true);
    expect(guarded(prefix + reversed(SECRET).toUpperCase())).toBe(true);
  });

  it("separators, zero-width and fullwidth characters", () => {
    expect(guarded([...SECRET].join(" "))).toBe(true);
    expect(guarded([...SECRET].join("-"))).toBe(true);
    expect(guarded([...SECRET].join("\u200b"))).toBe(true);
    expect(guarded([...SECRET].join("\u2060\ufeff"))).toBe(true);
    const fullwidth = [...SECRET].map((c) => (c >= "!" && c <= "~" ? String.fromCodePoint(c.codePointAt(0)! + 0xfee0) : c)).join("");
    expect(fullwidth).not.toContain("sk");
    expect(guarded(fullwidth)).toBe(true);
  });

  it("HTML entities: decimal, hexadecimal, without semicolons", () => {
    expect(guarded(entities(SECRET, false))).toBe(true);
    expect(guarded(entities(SECRET, true))).toBe(true);
    expect(guarded(entities(SECRET, true).replace(/;/g, ""))).toBe(true);
    expect(htmlDecode("&lt;&amp;&gt;&quot;&apos;&nbsp;&bogus;")).toBe("<&>\"'\u00a0&bogus;");
  });

  it("base32 (upper or lower case) of a longer string at all five alignments; hex with separators", () => {
    for (let pad = 0; pad < 5; pad++) {
      const enc = base32(Buffer.from(`${"z".repeat(pad)}${SECRET}!`));
      expect(guarded(prefix + enc), `base32 after ${pad}`).toBe(true);
      expect(guarded(prefix + enc.toLowerCase().replace(/=+$/, "")), `lower unpadded after ${pad}`).toBe(true);
    }
    const hex = Buffer.from(SECRET).toString("hex");
    expect(guarded(hex)).toBe(true);
    expect(guarded(`0x${hex.toUpperCase()}`)).toBe(true);
    expect(guarded(hex.replace(/(..)/g, "$1:"))).toBe(true);
    expect(guarded(`z${hex}`)).toBe(true); // odd alignment
  });

  it("split across two messages: the concatenation is checked", () => {
    const a = `part one ${SECRET.slice(0, 12)}`;
    const b = `${SECRET.slice(12, 24)} end`;
    expect(guarded(a)).toBe(false);
    expect(guarded(b)).toBe(false);
    const set = compileSecrets([SECRET]);
    expect(carriesAny(set, [a, b])).toBe(true);
    expect(carriesAny(set, [b, a])).toBe(false); // the other order does not spell it
  });
});

describe("the boundaries of the rule", () => {
  it("a run of 16 consecutive characters is refused, 15 are not", () => {
    expect(gramLength(PLAIN)).toBe(RUN);
    for (let i = 0; i + RUN <= PLAIN.length; i++) {
      expect(guarded(`x ${PLAIN.slice(i, i + RUN)} y`, [PLAIN]), `run at ${i}`).toBe(true);
      expect(guarded(`x ${PLAIN.slice(i, i + RUN - 1)} y`, [PLAIN]), `short run at ${i}`).toBe(false);
    }
    // The secret's own separators count as characters of the raw run: 16 raw characters of SECRET keep 14.
    expect(gramLength(SECRET)).toBe(14);
    expect(guarded(`x ${SECRET.slice(0, 16)} y`)).toBe(true);
    expect(guarded(`x ${SECRET.slice(0, 15)} y`)).toBe(false);
  });

  it("4-character secrets (a PIN) are guarded in every form; 3-character ones are not guarded", () => {
    const pin = "4821";
    expect(guarded("your pin is 4821", [pin])).toBe(true);
    expect(guarded("your pin is 4-8-2-1", [pin])).toBe(true);
    expect(guarded("your pin is 1284", [pin])).toBe(true); // reversal
    expect(guarded(`your pin is ${Buffer.from(pin).toString("hex")}`, [pin])).toBe(true);
    expect(guarded(`your pin is ${base32(Buffer.from(pin))}`, [pin])).toBe(true);
    expect(guarded("your pin is 482", [pin])).toBe(false);
    expect(guarded("your pin is 482", ["482"])).toBe(false);
  });

  it("a secret shorter than 16 characters must appear whole", () => {
    const s = "Tr0ub4dor&3x";
    expect(guarded(`pw ${s}`, [s])).toBe(true);
    expect(guarded(`pw ${s.slice(0, -1)}`, [s])).toBe(false);
  });

  it("guards several secrets of different lengths at once; nothing guarded, nothing refused", () => {
    const set = compileSecrets(["1234", PLAIN, "abcdefghij", "ab"]);
    expect(set.tables.map((t) => t.length).sort((a, b) => a - b)).toEqual([4, 10, 16]);
    expect(carriesAny(set, ["call 1234"])).toBe(true);
    expect(carriesAny(set, ["xx abcdefghij"])).toBe(true);
    expect(carriesAny(set, ["ab ab ab"])).toBe(false);
    expect(carriesAny(compileSecrets([]), [SECRET])).toBe(false);
    expect(carriesAny(set, [undefined, ""])).toBe(false);
    expect(carriesSecret({ secretsRead: new Set([SECRET]) }, [SECRET])).toBe(true);
  });

  it("EXFILTRATION names the reason code the pipeline answers with", () => {
    expect(EXFILTRATION.reason).toBe("secret_exfiltration");
  });
});

describe("decoders", () => {
  it("percentDecode decodes %hh bytes and keeps everything else", () => {
    expect(percentDecode("a%41%zz%4")).toBe("aA%zz%4");
    expect(percentDecode("%E2%82%AC é")).toBe("€ é");
    expect(percentDecode("plain")).toBe("plain");
  });

  it("base32Decode matches a reference encoder for any bytes", () => {
    fc.assert(
      fc.property(fc.uint8Array({ maxLength: 64 }), (bytes) => {
        const enc = base32(Buffer.from(bytes)).replace(/=+$/, "");
        expect(base32Decode(enc).equals(Buffer.from(bytes))).toBe(true);
      }),
    );
  });
});

describe("properties", () => {
  const alnumChar = fc.constantFrom(..."abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789");
  const alnum = fc.string({ unit: alnumChar, minLength: 4, maxLength: 48 });
  const longAlnum = fc.string({ unit: alnumChar, minLength: 20, maxLength: 64 });
  const filler = fc.string({ unit: fc.constantFrom(..." .,;:!?-"), maxLength: 10 });
  const transforms: Array<[string, (s: string, pre: string) => string]> = [
    ["identity", (s) => s],
    ["upper", (s) => s.toUpperCase()],
    ["reverse", (s) => reversed(s)],
    ["spaced", (s) => [...s].join(" ")],
    ["zero-width", (s) => [...s].join("\u200b")],
    ["base64", (s, pre) => Buffer.from(pre + s).toString("base64")],
    ["base64 unpadded", (s, pre) => Buffer.from(pre + s).toString("base64").replace(/=+$/, "")],
    ["base64url", (s, pre) => Buffer.from(pre + s).toString("base64url")],
    ["base32", (s, pre) => base32(Buffer.from(pre + s))],
    ["hex", (s, pre) => Buffer.from(pre + s).toString("hex")],
    ["percent", (s) => pctEvery(s)],
    ["entities", (s) => entities(s, true)],
  ];

  it("every transformation of a guarded secret, anywhere in a text, is refused", () => {
    fc.assert(
      fc.property(alnum, fc.string({ maxLength: 7 }), filler, filler, fc.constantFrom(...transforms), (secret, pre, before, after, [, f]) => {
        expect(carriesSecret([secret], [`${before}${f(secret, pre)}${after}`])).toBe(true);
      }),
      { numRuns: runs(1500) },
    );
  });

  it("every run of 16 characters of a long secret, split at any point across two texts, is refused", () => {
    fc.assert(
      fc.property(longAlnum, fc.nat(), fc.nat(), (secret, at, cut) => {
        const i = at % (secret.length - RUN + 1);
        const run = secret.slice(i, i + RUN);
        const k = cut % (RUN + 1);
        expect(carriesAny(compileSecrets([secret]), [`a: ${run.slice(0, k)}`, `${run.slice(k)} :b`])).toBe(true);
      }),
    );
  });

  it("text made of characters the secret does not contain is never refused", () => {
    fc.assert(
      fc.property(
        fc.string({ unit: fc.constantFrom(..."0123456789"), minLength: 4, maxLength: 32 }),
        fc.string({ unit: fc.constantFrom(..."ghijkmnopqrstuvwxyz .,!"), maxLength: 200 }),
        (secret, text) => {
          expect(carriesSecret([secret], [text])).toBe(false);
        },
      ),
    );
  });

  it("the rolling-hash scan agrees with a plain substring search (of the secret and its reversal)", () => {
    fc.assert(
      fc.property(
        fc.array(fc.string({ unit: fc.constantFrom(..."abc"), minLength: 4, maxLength: 20 }), { minLength: 1, maxLength: 4 }),
        fc.string({ unit: fc.constantFrom(..."abc"), maxLength: 60 }),
        (secrets, text) => {
          const set = compileSecrets(secrets);
          // Grams of each secret and of its reversal.
          const naive = secrets.flatMap((s) => [s, reversed(s)]).some((s) => {
            const g = gramLength(s)!;
            for (let i = 0; i + g <= s.length; i++) if (text.includes(s.slice(i, i + g))) return true;
            return false;
          });
          expect(scan(set, text)).toBe(naive);
        },
      ),
      { numRuns: runs(2000) },
    );
  });
});
