/**
 * The exfiltration guard: a pure matcher that says whether outbound text carries a vault value the
 * identity has read. It knows nothing about sessions or storage; the caller supplies the values
 * read (see the README's "Secrets stay secret" section for where they come from) and the text.
 *
 * The rule. Both sides are normalised (`normalize`): NFKC, full case folding, and every
 * whitespace, punctuation, symbol, control, format (zero-width, bidi) and combining mark removed.
 * A secret is guarded when its normalised form has at least `MIN_GUARDED` (4) characters. Outbound
 * text carries it when, after normalisation, it contains a run of the secret's normalised form of
 * `gramLength(secret)` characters: `RUN` (16), or fewer when the secret itself has separators (the
 * fewest normalised characters any 16 consecutive characters of the raw value keep), or the whole
 * normalised value when that is shorter. The run is looked for:
 *  - in the text as it is, and reversed;
 *  - in what the text decodes to as hex, base64, base64url or base32 (RFC 4648) — taking every
 *    character alignment, so an encoding of a longer string that contains the secret at any byte
 *    offset is found, padded or not, with separators or junk characters between the symbols;
 *  - in all of the above after percent-decoding or HTML-entity decoding the text first
 *    (so `%73%65…`, `&#115;&#x65;…`, and base64 inside a percent-encoded URL are found).
 * One layer of encoding only (plus an optional percent/entity layer): see the README for what the
 * guard cannot catch.
 *
 * Cost: linear in the text (a rolling hash per decoded form), independent of how many secrets are
 * guarded; compiling the secrets is linear in their total length.
 */

/** Secrets whose normalised form is shorter than this are not guarded (they would match everywhere). */
export const MIN_GUARDED = 4;
/** Runs of this many consecutive characters of a secret are refused. */
export const RUN = 16;

const STRIP = /[\p{Z}\p{P}\p{S}\p{C}\p{M}\p{Default_Ignorable_Code_Point}\s]/gu;

/** NFKC, full case folding, then separators, punctuation, symbols, controls, format characters and marks removed. */
export function normalize(s: string): string {
  const k = s.normalize("NFKC");
  if (!NON_ASCII.test(k)) return asciiFold(k);
  return k.toUpperCase().toLowerCase().normalize("NFKC").replace(STRIP, "").normalize("NFKC");
}

const NON_ASCII = /[^\x00-\x7f]/;

/** Lower-cased ASCII letters and digits of `bytes`, everything else dropped (in place). */
function asciiFoldBytes(bytes: Buffer): string {
  let n = 0;
  for (let i = 0; i < bytes.length; i++) {
    let b = bytes[i]!;
    if (b >= 0x41 && b <= 0x5a) b |= 0x20;
    if ((b >= 0x61 && b <= 0x7a) || (b >= 0x30 && b <= 0x39)) bytes[n++] = b;
  }
  return bytes.toString("latin1", 0, n);
}

/** `normalize` restricted to ASCII output: lower-case letters and digits only, everything else dropped. */
function asciiFold(s: string): string {
  return s.toLowerCase().replace(/[^a-z0-9]+/g, "");
}

/**
 * After NFKC, the only characters beyond ASCII whose case folding yields ASCII letters are `ß`
 * (ss), `İ` (i + dot) and `ı` (i); everything else beyond ASCII is dropped before folding.
 */
const BEYOND_ASCII = /[^\x00-\x7f\u00df\u0130\u0131]+/g;

/**
 * A decoded form as the ASCII letters and digits it normalises to, for secrets that are ASCII
 * letters and digits only: all-ASCII bytes are folded in place (the common, cheap case); otherwise
 * the bytes are read as UTF-8 and NFKC-normalised first, so an encoding of `ｓｅｃｒｅｔ`, `ﬁle` or
 * `Straße` is read like one of `secret`, `file` or `strasse`.
 */
function asciiFoldDecoded(bytes: Buffer): string {
  for (let i = 0; i < bytes.length; i++) {
    if (bytes[i]! >= 0x80) return asciiFold(bytes.toString("utf8").normalize("NFKC").replace(BEYOND_ASCII, "").toUpperCase());
  }
  return asciiFoldBytes(bytes);
}

/**
 * How many normalised characters of `secret` a match must cover: the whole normalised value when
 * the raw value has fewer than RUN code points, else the fewest normalised characters kept by any
 * RUN consecutive code points (so a 16-character run that includes separators is still caught),
 * never less than MIN_GUARDED. Undefined when the secret is too short to guard.
 */
export function gramLength(secret: string): number | undefined {
  const whole = normalize(secret).length;
  if (whole < MIN_GUARDED) return undefined;
  const cps = [...secret];
  if (cps.length < RUN) return whole;
  const w = cps.map((c) => normalize(c).length);
  let sum = 0;
  for (let i = 0; i < RUN; i++) sum += w[i]!;
  let min = sum;
  for (let i = RUN; i < w.length; i++) {
    sum += w[i]! - w[i - RUN]!;
    if (sum < min) min = sum;
  }
  return Math.min(whole, Math.max(MIN_GUARDED, Math.min(RUN, min)));
}

const BASE = 0x01000193;

function powBase(n: number): number {
  let p = 1;
  for (let i = 0; i < n; i++) p = Math.imul(p, BASE);
  return p;
}

/** Grams of one length: rolling hash → the grams with that hash. */
interface GramTable {
  length: number;
  top: number; // BASE^(length-1)
  grams: Map<number, string[]>;
  /** One bit per hash value modulo FILTER_BITS: a cheap "certainly not" before the map lookup. */
  filter: Uint8Array;
}

const FILTER_BITS = 1 << 20;
const FILTER_MASK = FILTER_BITS - 1;

/** A compiled set of guarded secrets (build once per check with `compileSecrets`). */
export interface SecretSet {
  readonly tables: readonly GramTable[];
  /** Every gram is ASCII letters and digits (decoded forms can then be folded the cheap way). */
  readonly ascii: boolean;
}

function hashOf(s: string, from: number, len: number): number {
  let h = 0;
  for (let i = from; i < from + len; i++) h = (Math.imul(h, BASE) + s.charCodeAt(i)) | 0;
  return h;
}

/** Compile secret values into gram tables. Values too short to guard are skipped. */
export function compileSecrets(values: Iterable<string>): SecretSet {
  const byLength = new Map<number, GramTable>();
  let ascii = true;
  for (const value of values) {
    if (typeof value !== "string") continue;
    const g = gramLength(value);
    if (g === undefined) continue;
    const n = normalize(value);
    if (!/^[a-z0-9]*$/.test(n)) ascii = false;
    let t = byLength.get(g);
    if (!t) byLength.set(g, (t = { length: g, top: powBase(g - 1), grams: new Map(), filter: new Uint8Array(FILTER_BITS >> 3) }));
    // The value and its reversal: reversed text then needs no pass of its own.
    for (const form of [n, reverse(n)]) {
      for (let i = 0; i + g <= form.length; i++) {
        const gram = form.slice(i, i + g);
        const h = hashOf(gram, 0, g);
        t.filter[(h & FILTER_MASK) >> 3]! |= 1 << (h & 7);
        const list = t.grams.get(h);
        if (!list) t.grams.set(h, [gram]);
        else if (!list.includes(gram)) list.push(gram);
      }
    }
  }
  return { tables: [...byLength.values()], ascii };
}

/** True if normalised string `s` contains a gram of any table (rolling hash, verified on a hit). */
export function scan(set: SecretSet, s: string): boolean {
  for (const t of set.tables) {
    const g = t.length;
    if (s.length < g) continue;
    const filter = t.filter;
    let h = hashOf(s, 0, g);
    for (let i = 0; ; i++) {
      if ((filter[(h & FILTER_MASK) >> 3]! & (1 << (h & 7))) !== 0) {
        const hit = t.grams.get(h);
        if (hit && hit.includes(s.slice(i, i + g))) return true;
      }
      if (i + g >= s.length) break;
      h = (Math.imul(h - Math.imul(s.charCodeAt(i), t.top), BASE) + s.charCodeAt(i + g)) | 0;
    }
  }
  return false;
}

function reverse(s: string): string {
  return [...s].reverse().join("");
}

/** The value of each hex digit's character code; -1 for every other code below 128. */
const HEX_VALUE = new Int8Array(128).fill(-1);
for (let i = 0; i < 16; i++) HEX_VALUE[i.toString(16).charCodeAt(0)] = HEX_VALUE[i.toString(16).toUpperCase().charCodeAt(0)] = i;

/**
 * Percent-decoding at the byte level: every `%hh` becomes that byte, everything else its UTF-8.
 * Done in place on the text's UTF-8 bytes: `%hh` is ASCII and no byte of a multi-byte sequence
 * is, so a replacement never splits a character, and the output is never longer than the input.
 */
export function percentDecode(s: string): string {
  if (!s.includes("%")) return s;
  const b = Buffer.from(s);
  let n = 0;
  for (let i = 0; i < b.length; i++) {
    if (b[i] === 0x25) {
      const hi = HEX_VALUE[b[i + 1]!] ?? -1;
      const lo = HEX_VALUE[b[i + 2]!] ?? -1;
      if (hi >= 0 && lo >= 0) {
        b[n++] = (hi << 4) | lo;
        i += 2;
        continue;
      }
    }
    b[n++] = b[i]!;
  }
  return b.subarray(0, n).toString();
}

const NAMED_ENTITIES: Record<string, string> = { amp: "&", lt: "<", gt: ">", quot: '"', apos: "'", nbsp: "\u00a0" };

/** HTML character references: `&#ddd;`, `&#xhh;` (the `;` optional, as browsers read them) and the common named ones. */
export function htmlDecode(s: string): string {
  if (!s.includes("&")) return s;
  return s.replace(/&(?:#[xX]([0-9a-fA-F]{1,8})|#([0-9]{1,10})|([A-Za-z]{2,8}));?/g, (m, hex: string | undefined, dec: string | undefined, name: string | undefined) => {
    if (name !== undefined) return NAMED_ENTITIES[name.toLowerCase()] ?? m;
    const cp = hex !== undefined ? parseInt(hex, 16) : parseInt(dec!, 10);
    return cp > 0 && cp <= 0x10ffff && !(cp >= 0xd800 && cp <= 0xdfff) ? String.fromCodePoint(cp) : m;
  });
}

const B32 = "ABCDEFGHIJKLMNOPQRSTUVWXYZ234567";
const B32_VALUE = new Int8Array(128).fill(-1);
for (let i = 0; i < B32.length; i++) B32_VALUE[B32.charCodeAt(i)] = i;

/** RFC 4648 base32 (upper-case alphabet, no padding) from symbol `from` on; other characters skipped, trailing partial bits dropped. */
export function base32Decode(s: string, from = 0): Buffer {
  const out = Buffer.allocUnsafe(Math.max(0, s.length - from)); // a byte a symbol: room to spare
  let n = 0;
  let bits = 0;
  let acc = 0;
  for (let i = from; i < s.length; i++) {
    const c = s.charCodeAt(i);
    const v = c < 128 ? B32_VALUE[c]! : -1;
    if (v < 0) continue;
    acc = ((acc << 5) | v) & 0xffff;
    bits += 5;
    if (bits >= 8) {
      bits -= 8;
      out[n++] = (acc >> bits) & 0xff;
    }
  }
  return out.subarray(0, n);
}

/** The decoded forms of one layer of text, as bytes (hex, base64, base64url, base32 at every alignment). */
function decodings(layer: string, normalized: string): Buffer[] {
  // No minimum length: decoded bytes are normalised, and NFKC can expand them (the 3 bytes of
  // `㎯`, 6 hex digits or 4 base64 symbols, normalise to the 5 characters `rads2`).
  const out: Buffer[] = [];
  const nfkc = layer.normalize("NFKC");
  const hex = normalized.replace(/[^0-9a-f]+/g, "");
  for (let o = 0; o < 2; o++) out.push(Buffer.from(hex.slice(o, o + ((hex.length - o) & ~1)), "hex"));
  const b64 = nfkc.replace(/[^A-Za-z0-9+/]+/g, "");
  const b64u = nfkc.replace(/[^A-Za-z0-9_-]+/g, "");
  for (const [s, enc] of [
    [b64, "base64"],
    [b64u, "base64url"],
  ] as const) {
    for (let o = 0; o < 4; o++) out.push(Buffer.from(s.slice(o), enc));
  }
  const b32 = nfkc.toUpperCase().replace(/[^A-Z2-7]+/g, "");
  for (let o = 0; o < 8; o++) out.push(base32Decode(b32, o));
  return out;
}

function carries(set: SecretSet, text: string): boolean {
  const layers = new Set([text, percentDecode(text), htmlDecode(text)]);
  for (const layer of layers) {
    const n = normalize(layer);
    if (scan(set, n)) return true;
    for (const bytes of decodings(layer, n)) {
      // With ASCII-only secrets, only the ASCII letters and digits a decoded form normalises to can
      // be part of a match (the cheap path for the common case).
      if (scan(set, set.ascii ? asciiFoldDecoded(bytes) : normalize(bytes.toString("utf8")))) return true;
    }
  }
  return false;
}

/**
 * True if any of `texts`, or their concatenation (in order, so a secret split across arguments is
 * caught), carries one of the secrets in `set`. Pass the recent outbound history first to apply the
 * rule across calls.
 */
export function carriesAny(set: SecretSet, texts: ReadonlyArray<string | undefined>): boolean {
  if (set.tables.length === 0) return false;
  const hay = texts.filter((t): t is string => typeof t === "string" && t.length > 0);
  if (hay.length === 0) return false;
  // Every argument is a substring of the concatenation except at the decoders' alignments, which
  // the concatenation preserves for each piece (all alignments are tried), so one pass suffices.
  return carries(set, hay.join("\n"));
}

/** Convenience: compile `secrets` and check `texts`. `source` may be a session memory (`secretsRead`). */
export function carriesSecret(source: { secretsRead: Iterable<string> } | Iterable<string>, texts: ReadonlyArray<string | undefined>): boolean {
  const values = Symbol.iterator in source ? (source as Iterable<string>) : (source as { secretsRead: Iterable<string> }).secretsRead;
  return carriesAny(compileSecrets(values), texts);
}

export const EXFILTRATION = {
  reason: "secret_exfiltration",
  message: "this would send out a secret this identity read from the vault (or an encoding or part of it); it was not sent.",
} as const;
