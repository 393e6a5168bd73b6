/**
 * The exfiltration guard's matcher (src/policy/exfiltration.ts), pinned where mutation testing
 * found it loose (issue 20): the exact minimum lengths at which each decoder starts to look (a
 * 4-character PIN is 8 hex digits, 6 base64 symbols, 7 base32 symbols), the ASCII fast path's
 * character classes at their boundaries, the non-ASCII path, and the decoders' edge cases.
 * The attacks and properties: test/exfiltration.test.ts.
 */
import { describe, expect, it } from "vitest";
import { base32Decode, carriesAny, carriesSecret, compileSecrets, gramLength, htmlDecode, normalize, percentDecode, scan } from "../../src/policy/exfiltration.js";

const guarded = (text: string, secrets: string[]): boolean => carriesSecret(secrets, [text]);
const b64 = (s: string | Buffer): string => Buffer.from(s).toString("base64");

describe("each decoder starts at the shortest encoding that can hold a 4-character secret", () => {
  const pin = "7391";
  it("the whole text is exactly the secret, or exactly its encoding", () => {
    expect(guarded("7391", [pin])).toBe(true);
    expect(guarded("1937", [pin])).toBe(true);
    expect(Buffer.from(pin).toString("hex")).toBe("37333931");
    expect(guarded("37333931", [pin])).toBe(true); // 8 hex digits
    expect(guarded("NzM5MQ", [pin])).toBe(true); // 6 base64 symbols, unpadded
    expect(guarded("NzM5MQ==", [pin])).toBe(true);
    expect(guarded("G4ZTSMI", [pin])).toBe(true); // 7 base32 symbols
  });
  it("one symbol fewer cannot hold it and is not refused", () => {
    expect(guarded("3733393", [pin])).toBe(false);
    expect(guarded("NzM5M", [pin])).toBe(false);
    expect(guarded("G4ZTSM", [pin])).toBe(false);
  });
  it("fewer bytes than the secret has characters can still hold it: decoded text is normalised, and NFKC expands", () => {
    // U+33AF (㎯) is 3 bytes of UTF-8 and normalises to "rad∕s2", i.e. "rads2".
    const sq = "\u33af";
    expect(normalize(sq)).toBe("rads2");
    expect(Buffer.from(sq).toString("hex")).toBe("e38eaf");
    expect(guarded("e38eaf", ["rads"])).toBe(true); // 6 hex digits
    expect(guarded(b64(sq), ["rads"])).toBe(true); // 4 base64 symbols
    expect(guarded("4OHK6", ["rads"])).toBe(true); // 5 base32 symbols
    expect(guarded("e38eaf", ["radx"])).toBe(false);
  });
});

describe("the ASCII fast path for decoded bytes keeps exactly letters and digits", () => {
  // Secrets made of letters and digits only take the fast path; each boundary character of the
  // kept ranges is in the secret, and each neighbour just outside them is between its letters.
  it("A, Z, a, z, 0 and 9 are kept (upper case folded)", () => {
    expect(guarded(b64("xxAZaz09yy"), ["azaz09"])).toBe(true);
    expect(guarded(b64("xxAZAZ09yy"), ["azaz09"])).toBe(true);
  });
  it("the characters next to those ranges are dropped", () => {
    for (const sep of ["@", "[", "`", "{", "/", ":", "\u007f", "\u0080", "\u00ff"]) {
      const plain = Buffer.concat([Buffer.from("q"), ...[..."k0z9"].flatMap((c) => [Buffer.from(c), Buffer.from(sep, "latin1")]), Buffer.from("q")]);
      expect(guarded(plain.toString("base64"), ["k0z9"]), JSON.stringify(sep)).toBe(true);
    }
  });
  it("a secret with letters beyond ASCII is matched in decoded text after full normalisation", () => {
    expect(compileSecrets(["pässwörd"]).ascii).toBe(false);
    expect(compileSecrets(["passw0rd"]).ascii).toBe(true);
    expect(guarded(b64("user: PÄSSWÖRD!"), ["pässwörd"])).toBe(true);
    expect(guarded(Buffer.from("x-pässwörd-y").toString("hex"), ["pässwörd"])).toBe(true);
  });
  it("an encoding of text whose characters beyond ASCII normalise to an ASCII secret is caught", () => {
    // Plain, these are caught by normalisation; encoded, the decoded bytes must be normalised alike.
    for (const [text, secret] of [
      ["ａｂｃｄｅ", "abcde"],
      ["Straße12", "strasse12"],
      ["ﬁle1234", "file1234"],
      ["ＫＥＹ-９９", "key99"],
      ["İD-ıd-ß0", "ididss0"],
    ]) {
      expect(guarded(text, [secret]), text).toBe(true);
      for (const enc of [b64(text), Buffer.from(text).toString("hex"), Buffer.from(text).toString("base64url")]) {
        expect(guarded(`see ${enc} ok`, [secret]), `${text} as ${enc}`).toBe(true);
      }
    }
    // Characters that normalise to nothing ASCII are dropped, as before; other text is not refused.
    expect(guarded(b64("a\u00e9b\u00e9c\u00e9d"), ["abcd"])).toBe(true);
    expect(guarded(b64("ａｂｃｘ"), ["abcd"])).toBe(false);
  });
});

describe("normalize on text with characters beyond ASCII", () => {
  it("removes punctuation, symbols, spaces, controls and marks there too", () => {
    expect(normalize("é-x_y.z/1:2+3$4^5`6|7~8\u00a0\u3000\u2028\u0085\u0301!")).toBe("éxyz12345678");
    expect(normalize("ü\u200b\u00adv")).toBe("üv");
    expect(normalize("ß€¥")).toBe("ss");
  });
  it("recomposes what it decomposed", () => {
    expect(normalize("Å")).toBe("å");
    expect(normalize("A\u030a")).toBe("å");
    expect(normalize("ǅ")).toBe("dž");
  });
});

describe("decoders at their edges", () => {
  it("percentDecode: astral characters, U+0080 and a % at the very end", () => {
    expect(percentDecode("%41😀%42")).toBe("A😀B");
    expect(percentDecode("%41\u0080")).toBe("A\u0080");
    expect(percentDecode("%41\u007f")).toBe("A\u007f");
    expect(percentDecode("x%41")).toBe("xA");
    expect(percentDecode("x%4")).toBe("x%4");
    expect(percentDecode("%%41")).toBe("%A");
    expect(percentDecode("%4g%41")).toBe("%4gA");
    expect(percentDecode("%41 ab12 x41")).toBe("A ab12 x41"); // only after a %
    expect(percentDecode("%41\uffffB")).toBe("A\uffffB");
    expect(percentDecode("\ud800x")).toBe("\ud800x"); // nothing to decode: returned as it is
  });
  it("percentDecode: every hex digit in either case, the bytes of UTF-8 and of nothing valid, a % too near the end", () => {
    expect(percentDecode("%30%39%61%66%41%46%2f%2F%3a%40%60%67")).toBe("09afAF//:@`g");
    expect(percentDecode("%00%7f")).toBe("\u0000\u007f");
    expect(percentDecode("%C3%a9 %E2%82%AC %F0%9F%98%80")).toBe("é € 😀");
    expect(percentDecode("%ff%C3")).toBe("\ufffd\ufffd"); // not UTF-8: replacement characters
    for (const kept of ["%", "a%", "%4", "%%", "%g0", "%0g", "%:0", "%0:", "%/0", "%0@", "%G0", "%é1", "%1é"]) expect(percentDecode(kept), kept).toBe(kept);
    expect(percentDecode("%é%41\ud800")).toBe("%éA\ufffd"); // a lone surrogate has no UTF-8: U+FFFD
    expect(percentDecode("%41%42")).toBe("AB"); // and nothing after the last decoded byte
  });
  it("control bytes are not digits or letters", () => {
    expect(guarded(b64(Buffer.from([0x10, 0x11, 0x12, 0x13, 0x14])), ["01234"])).toBe(false);
    expect(guarded(b64(Buffer.from([0x01, 0x02, 0x03, 0x04, 0x05])), ["abcde"])).toBe(false);
  });
  it("htmlDecode: the code point range, surrogates, case of names and of x", () => {
    expect(htmlDecode("&#0;")).toBe("&#0;");
    expect(htmlDecode("&#1;")).toBe("\u0001");
    expect(htmlDecode("&#x10ffff;")).toBe("\u{10ffff}");
    expect(htmlDecode("&#x110000;")).toBe("&#x110000;");
    expect(htmlDecode("&#xd7ff;&#xd800;&#xdfff;&#xe000;")).toBe("\ud7ff&#xd800;&#xdfff;\ue000");
    expect(htmlDecode("&#X41;&#65&AMP;&Lt;&nbsp")).toBe("AA&<\u00a0");
    expect(htmlDecode("&#x123456789;&#12345678901;")).toBe("&#x123456789;&#12345678901;");
    expect(htmlDecode("&a;&abcdefghi;")).toBe("&a;&abcdefghi;");
    expect(htmlDecode("no entities")).toBe("no entities");
  });
  it("base32Decode: from an offset, skipping other characters, and from beyond the end", () => {
    expect(base32Decode("MFRGG").toString()).toBe("abc");
    expect(base32Decode("xxMFRGG", 2).toString()).toBe("abc");
    expect(base32Decode("MF\u00e9RG-G==").toString()).toBe("abc");
    expect(base32Decode("MF\u0080RG\u007fG").toString()).toBe("abc");
    expect(base32Decode("AB", 5).length).toBe(0);
    expect(base32Decode("").length).toBe(0);
    // 8 symbols are 40 bits: five whole bytes, nothing left over.
    expect([...base32Decode("77777777")]).toEqual([255, 255, 255, 255, 255]);
    // A long input: every byte is right however far in (no overflow of the bit buffer).
    const bytes = Buffer.from(Array.from({ length: 300 }, (_, i) => (i * 37 + 11) & 0xff));
    const A = "ABCDEFGHIJKLMNOPQRSTUVWXYZ234567";
    let bits = "";
    for (const b of bytes) bits += b.toString(2).padStart(8, "0");
    let enc = "";
    for (let i = 0; i + 5 <= bits.length; i += 5) enc += A[parseInt(bits.slice(i, i + 5), 2)];
    expect(base32Decode(enc).equals(bytes.subarray(0, Math.floor((enc.length * 5) / 8)))).toBe(true);
  });
});

describe("compiling and scanning", () => {
  it("a gram is found over the whole of a long secret's windows, not only the first", () => {
    // 16 raw characters keep 16 at the start but only 10 at the end ("lmnopq-r-s-t-u-v-w" → 10 within 16).
    expect(gramLength("abcdefghijklmnopq-r-s-t-u-v-w")).toBe(10);
    expect(gramLength("abcdefghijklmnopqrstuvwxyz-1-2-3-4-5-6-7-8")).toBe(8);
  });
  it("grams whose rolling hashes collide are both kept", () => {
    const [a, b] = ["gqzbid62dyoggdgm", "io2vt8mb42ga1ped"]; // equal 32-bit rolling hashes
    const set = compileSecrets([a, b]);
    expect(set.tables[0]!.grams.size).toBe(3); // a's and b's reversals, and the shared hash
    expect(scan(set, a)).toBe(true);
    expect(scan(set, b)).toBe(true);
    expect(scan(compileSecrets([a]), b)).toBe(false);
  });
  it("a window whose hash passes the filter but is no gram is not a match", () => {
    // A long secret sets many filter bits; a long text over other letters hits some of them.
    let r = 7;
    const rnd = (n: number): number => ((r = (Math.imul(r, 1103515245) + 12345) >>> 0) >>> 8) % n;
    const secret = Array.from({ length: 4000 }, () => "abcdefghijklm"[rnd(13)]).join("");
    const text = Array.from({ length: 20000 }, () => "nopqrstuvwxyz"[rnd(13)]).join("");
    expect(scan(compileSecrets([secret]), text)).toBe(false);
  });
  it("texts are separate fields: an escape split across two of them is not assembled", () => {
    const set = compileSecrets(["abcd"]);
    expect(carriesAny(set, ["%6", "1bcd"])).toBe(false);
    expect(carriesAny(set, ["%61bcd"])).toBe(true);
  });
  it("values that are not strings, or too short, are skipped; equal grams from several secrets are kept once", () => {
    const set = compileSecrets(["abcd", 5 as never, null as never, "abc", "abcd", "dcba"]);
    expect(set.tables.map((t) => t.length)).toEqual([4]);
    expect([...set.tables[0]!.grams.values()].flat().sort()).toEqual(["abcd", "dcba"]);
    expect(carriesAny(set, ["xabcdx"])).toBe(true);
    expect(carriesAny(set, ["abc"])).toBe(false);
  });
  it("scan finds a gram at the first and the last position, in a text exactly as long as the gram", () => {
    const set = compileSecrets(["qrstuvwxyz"]);
    expect(scan(set, "qrstuvwxyz")).toBe(true);
    expect(scan(set, "qrstuvwxyzab")).toBe(true);
    expect(scan(set, "abqrstuvwxyz")).toBe(true);
    expect(scan(set, "qrstuvwxy")).toBe(false);
    expect(scan(set, "")).toBe(false);
  });
  it("texts are joined so that a secret split across them is found, and empty or missing ones are skipped", () => {
    const set = compileSecrets(["abcdefgh"]);
    expect(carriesAny(set, ["abcd", "", undefined, "efgh"])).toBe(true);
    expect(carriesAny(set, [])).toBe(false);
    expect(carriesAny(set, ["abcd efgh"])).toBe(true);
  });
});

describe("the Unicode fact the ASCII path relies on", () => {
  it("after NFKC, only ß, İ and ı (in the BMP) case-fold to something with ASCII letters or digits", () => {
    const found: string[] = [];
    for (let cp = 0x80; cp <= 0xffff; cp++) {
      if (cp >= 0xd800 && cp <= 0xdfff) continue;
      const c = String.fromCharCode(cp);
      if (c.normalize("NFKC") !== c) continue;
      if (/[a-z0-9]/.test(c.toUpperCase().toLowerCase().normalize("NFKC"))) found.push(c);
    }
    expect(found).toEqual(["ß", "İ", "ı"]);
  });
});

describe("separators inside an encoded payload", () => {
  // A non-ASCII secret's encodings carry the alphabet-specific symbols (+ and / in base64, - and _
  // in base64url), so only the pass for that alphabet can read them; wrapping puts separators
  // inside the payload, which that pass must remove without putting anything in their place.
  const secret = "ÿþýüöäßÿþý";
  const plain = Buffer.from(`»${secret}«`);
  it("line-wrapped base64 and base64url", () => {
    const b64s = plain.toString("base64");
    const b64u = plain.toString("base64url");
    expect(b64s).toMatch(/[+/]/);
    expect(b64u).toMatch(/[-_]/);
    expect(guarded(b64s.replace(/(.{8})/g, "$1\r\n"), [secret])).toBe(true);
    expect(guarded(b64u.replace(/(.{8})/g, "$1 "), [secret])).toBe(true);
  });
  it("base32 in groups", () => {
    const A = "ABCDEFGHIJKLMNOPQRSTUVWXYZ234567";
    let bits = "";
    for (const b of plain) bits += b.toString(2).padStart(8, "0");
    let enc = "";
    for (let i = 0; i + 5 <= bits.length; i += 5) enc += A[parseInt(bits.slice(i, i + 5), 2)];
    expect(guarded(enc.replace(/(.{4})/g, "$1-"), [secret])).toBe(true);
  });
});

describe("decoded forms come only from the text", () => {
  it("a text with nothing that decodes to letters or digits carries no secret, whatever words the secret is made of", () => {
    const ascii = ["password", "hunter22", "correcthorse", "strykerwashere", "mutantwashere"];
    // A secret beyond ASCII takes the whole set off the ASCII path: both paths are checked.
    for (const wordy of [ascii, [...ascii, "grüßgott"]]) {
      for (const text of ["", "!!!", "-- .. --", "\u200b\u200b"]) {
        expect(carriesSecret(wordy, [text])).toBe(false);
      }
      expect(carriesSecret(wordy, ["here: strykerwashere"])).toBe(true);
    }
  });
});
