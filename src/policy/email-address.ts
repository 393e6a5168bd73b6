/**
 * Strict validation of ONE plain email address (recipient or sender) and of
 * domain names, plus the allow-list domain match used by the policy.
 *
 * Guarantees of `validateAddress` when it returns ok:
 *  - the result is exactly `local@domain`, lower-cased, pure printable ASCII,
 *    at most 254 characters, with nothing a mail library could reinterpret:
 *    no display name, `<>`, comments `()`, groups `:`/`;`, lists `,`, quotes,
 *    backslashes, whitespace, control or Unicode format characters, address
 *    literals `[..]`, or IP-address domains;
 *  - local part: 1..64 chars of a conservative dot-atom
 *    (letters, digits, `#$&'*+/=?^_\`{|}~-`, single inner dots). `%` and `!`
 *    are refused on purpose: they are the "percent hack" and UUCP bang-path
 *    routing syntaxes (`a%evil.com@ok.com`), which ask the allowed domain's
 *    server to relay elsewhere. `=?` is refused too: RFC 2047 encoded-words
 *    in a local part are decoded by some mail software into a different
 *    address ("splitting the email atom"). Non-ASCII local parts are refused;
 *  - domain: see `normalizeDomain`.
 *
 * Domain rule (`normalizeDomain`), designed so that what the policy compares is
 * what a human reads:
 *  - the input may be ASCII or Unicode (IDN); every label must already be in
 *    canonical form: after lower-casing it must equal either its ASCII
 *    (punycode) form or its Unicode form as produced by IDNA (UTS 46) — so
 *    fullwidth letters, ideographic dots, decomposed accents and other
 *    characters IDNA would silently remap are refused rather than folded;
 *  - the ASCII form has >= 2 labels, each 1..63 LDH characters not starting
 *    or ending with `-`, `--` in positions 3-4 only for `xn--`, total <= 253,
 *    and a top-level label that is alphabetic (or `xn--`), so IP addresses
 *    (`1.2.3.4`, `0x7f.1`) are not domains here;
 *  - every `xn--` label must round-trip (decode to non-ASCII text that
 *    encodes back to the same label) and its Unicode text must pass the script
 *    rule: all its characters (by Unicode Script_Extensions) must belong to
 *    ONE script from the UTS 31 "recommended" list, or to one of the UTS 39
 *    "highly restrictive" combinations Latin+Han+Hiragana+Katakana,
 *    Latin+Han+Bopomofo, Latin+Han+Hangul. So Latin mixed with Cyrillic or
 *    Greek (`exаmple` with a Cyrillic `а`) is refused;
 *  - whole-script lookalikes are refused: a Cyrillic or Greek label whose
 *    letters are ALL in a small table of Latin-looking letters (`аррӏе`,
 *    `ехаmрlе` in Cyrillic) is refused, and a Latin label containing a
 *    non-ASCII letter that renders like a plain ASCII letter (e.g. `ɑ`, `ı`,
 *    `ɡ`, small capitals) is refused.
 *
 * `domainAllowed(d, list)`: true iff `"*"` is in the list, or d equals an entry
 * or is a subdomain of it at a label boundary (`evil-example.com` does not
 * match `example.com`). Both sides must be normalised ASCII lower-case.
 */
import { domainToASCII, domainToUnicode } from "node:url";

export type AddressResult =
  | { ok: true; address: string; local: string; domain: string }
  | { ok: false; reason: string };

export type DomainResult = { ok: true; ascii: string } | { ok: false; reason: string };

const MAX_ADDRESS = 254;
const MAX_LOCAL = 64;
const MAX_DOMAIN = 253;

/** Control (C0, C1, DEL), format (zero-width, bidi, BOM...), separators, private use, surrogates, unassigned. */
const FORBIDDEN_CHARS = /[\p{Cc}\p{Cf}\p{Z}\p{Co}\p{Cs}\p{Cn}\s]/u;

const LOCAL_ATOM = "[A-Za-z0-9#$&'*+/=?^_`{|}~-]+";
const LOCAL_RE = new RegExp(`^${LOCAL_ATOM}(?:\\.${LOCAL_ATOM})*$`);
const LDH_LABEL = /^[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?$/;
const TLD = /^(?:[a-z]{2,63}|xn--[a-z0-9-]{1,59})$/;

/** UTS 31 Table 5 recommended scripts (the scripts IDN labels may use). */
const RECOMMENDED_SCRIPTS = [
  "Latin", "Cyrillic", "Greek", "Armenian", "Hebrew", "Arabic", "Thaana", "Devanagari",
  "Bengali", "Gurmukhi", "Gujarati", "Oriya", "Tamil", "Telugu", "Kannada", "Malayalam",
  "Sinhala", "Thai", "Lao", "Tibetan", "Myanmar", "Georgian", "Hangul", "Ethiopic",
  "Khmer", "Han", "Hiragana", "Katakana", "Bopomofo",
] as const;
type Script = (typeof RECOMMENDED_SCRIPTS)[number];
const SCRIPT_RES: ReadonlyArray<readonly [Script, RegExp]> = RECOMMENDED_SCRIPTS.map(
  (s) => [s, new RegExp(`^\\p{Script_Extensions=${s}}$`, "u")] as const,
);
/** Allowed script sets: each single script, plus the UTS 39 highly restrictive CJK combinations. */
const SCRIPT_SETS: ReadonlyArray<ReadonlySet<Script>> = [
  ...RECOMMENDED_SCRIPTS.map((s) => new Set<Script>([s])),
  new Set<Script>(["Latin", "Han", "Hiragana", "Katakana"]),
  new Set<Script>(["Latin", "Han", "Bopomofo"]),
  new Set<Script>(["Latin", "Han", "Hangul"]),
];

/** Cyrillic and Greek lower-case letters that look like Latin letters. */
export const LATIN_LOOKALIKES_CYRILLIC_GREEK: ReadonlySet<string> = new Set([
  // Cyrillic
  "а", "в", "е", "ё", "һ", "і", "ї", "ј", "ӏ", "к", "о", "р", "ԛ", "ѕ", "ԝ", "х", "у", "ү",
  "ԁ", "ь", "с", "ѵ", "ѡ", "ԍ", "п", "т", "м", "н",
  // Greek (lunate sigma ϲ is not listed: IDNA maps it to σ, so it never reaches this table)
  "ο", "ρ", "ν", "ι", "κ", "χ", "γ", "υ", "α", "ϳ", "ό", "ί", "ύ",
]);
/**
 * Non-ASCII Latin letters that render like a plain ASCII letter (no visible diacritic). Long s (ſ)
 * and Cherokee ꮃ are not listed: IDNA maps them (to s, and to upper-case Cherokee) before this check.
 */
export const LATIN_ASCII_LOOKALIKES: ReadonlySet<string> = new Set([
  "ɑ", "ɡ", "ı", "ȷ", "ĸ", "ɩ", "ɪ", "ʀ", "ʏ", "ʙ", "ʜ", "ʟ", "ɴ", "ᴀ", "ᴄ", "ᴅ", "ᴇ", "ᴊ",
  "ᴋ", "ᴍ", "ᴏ", "ᴘ", "ᴛ", "ᴜ", "ᴠ", "ᴡ", "ᴢ", "ꜱ", "ʋ", "ɒ", "ɔ", "ɛ", "ƅ", "ƙ",
  "ɾ", "ʂ", "ʃ", "ɣ", "ꞵ", "ꭓ", "ǀ", "ǃ", "ł", "ƚ", "ꞁ", "ꝺ", "ꞇ", "ẜ", "ẝ",
]);

function scriptsOf(ch: string): Script[] {
  const out: Script[] = [];
  for (const [name, re] of SCRIPT_RES) if (re.test(ch)) out.push(name);
  return out;
}

/** The script rule for the Unicode form of one label; returns a reason or undefined if fine. */
function checkLabelScripts(label: string): string | undefined {
  const perChar: Script[][] = [];
  // A combining mark belongs on a letter (IDNA2008 refuses one at a label's start; on a digit or a
  // hyphen, as in `1\u0483`, it is as meaningless and renders as a lookalike).
  let prev = "";
  for (const ch of label) {
    if (/\p{M}/u.test(ch) && !/[\p{L}\p{M}]/u.test(prev)) return "has a combining mark that does not follow a letter";
    prev = ch;
  }
  for (const ch of label) {
    if (/^[0-9-]$/.test(ch)) continue; // shared by every script
    if (/^[a-z]$/.test(ch)) {
      perChar.push(["Latin"]);
      continue;
    }
    const s = scriptsOf(ch);
    if (s.length === 0) return "contains a character outside the scripts allowed in domain names";
    perChar.push(s);
  }
  const fits = SCRIPT_SETS.some((set) => perChar.every((ss) => ss.some((s) => set.has(s))));
  if (!fits) return "mixes scripts (lookalike domain)";
  const within = (s: Script) => perChar.every((ss) => ss.includes(s));
  const letters = [...label].filter((ch) => /\p{L}/u.test(ch));
  if (within("Cyrillic") || within("Greek")) {
    if (letters.length > 0 && letters.every((ch) => LATIN_LOOKALIKES_CYRILLIC_GREEK.has(ch))) {
      return "consists only of letters that look like Latin letters (lookalike domain)";
    }
  }
  if (letters.some((ch) => LATIN_ASCII_LOOKALIKES.has(ch))) {
    return "contains a letter that looks like a plain ASCII letter (lookalike domain)";
  }
  return undefined;
}

/**
 * Why an `xn--` label (lower-case LDH) is refused, or undefined: it must decode to non-ASCII text
 * that is not itself an `xn--` label and encodes back to the same label, and that text must pass
 * the script rule. (Node's IDNA already refuses most malformed punycode before this point; the
 * round trip is checked here anyway, so the rule does not depend on that.)
 */
export function aceLabelProblem(a: string): string | undefined {
  const uni = domainToUnicode(a);
  if (uni === "" || uni.startsWith("xn--") || /^[\x00-\x7f]*$/.test(uni) || domainToASCII(uni) !== a) {
    return "domain has an invalid punycode label";
  }
  const why = checkLabelScripts(uni);
  return why === undefined ? undefined : `domain label ${why}`;
}

/**
 * Validate and normalise a domain name to lower-case ASCII (punycode).
 * Used for email domains and for policy `allowedDomains` entries.
 */
export function normalizeDomain(input: string): DomainResult {
  if (typeof input !== "string" || input.length === 0) return { ok: false, reason: "domain is empty" };
  if (input.length > MAX_DOMAIN) return { ok: false, reason: "domain is too long" };
  if (FORBIDDEN_CHARS.test(input)) {
    return { ok: false, reason: "domain contains whitespace, control or invisible characters" };
  }
  if (input.startsWith("[")) return { ok: false, reason: "address literals are not allowed" };
  if (/[^\p{L}\p{M}\p{N}.-]/u.test(input)) {
    return { ok: false, reason: "domain contains characters that are not allowed" };
  }
  const inLabels = input.split(".");
  if (inLabels.some((l) => l.length === 0)) {
    return { ok: false, reason: "domain has an empty label (leading, trailing or double dot)" };
  }
  if (inLabels.length < 2) return { ok: false, reason: "domain must have at least two labels" };
  const ascii = domainToASCII(input);
  if (ascii === "") return { ok: false, reason: "domain is not a valid internationalised domain name" };
  const asciiLabels = ascii.split(".");
  if (ascii.length > MAX_DOMAIN || asciiLabels.length !== inLabels.length) {
    return { ok: false, reason: "domain is not a valid domain name" };
  }
  for (let i = 0; i < asciiLabels.length; i++) {
    const a = asciiLabels[i]!;
    const given = inLabels[i]!.toLowerCase();
    if (!LDH_LABEL.test(a)) return { ok: false, reason: "domain has an invalid label" };
    const isAce = a.startsWith("xn--");
    if (a.slice(2, 4) === "--" && !isAce) return { ok: false, reason: "domain has an invalid label" };
    const uni = isAce ? domainToUnicode(a) : a;
    if (given !== a && given !== uni) {
      return { ok: false, reason: "domain is not in canonical form (contains characters IDNA would remap)" };
    }
    if (isAce) {
      const why = aceLabelProblem(a);
      if (why !== undefined) return { ok: false, reason: why };
    }
  }
  if (!TLD.test(asciiLabels[asciiLabels.length - 1]!)) {
    return { ok: false, reason: "domain must end in an alphabetic top-level label (IP addresses are not allowed)" };
  }
  return { ok: true, ascii };
}

/** Validate one plain email address; see the file comment for the exact rule. */
export function validateAddress(input: string): AddressResult {
  if (typeof input !== "string" || input.length === 0) return { ok: false, reason: "address is empty" };
  if (input.length > MAX_ADDRESS) return { ok: false, reason: "address is too long" };
  if (FORBIDDEN_CHARS.test(input)) {
    return { ok: false, reason: "address contains whitespace, control or invisible characters" };
  }
  if (/[<>]/.test(input)) return { ok: false, reason: "display names and angle brackets are not allowed" };
  if (/[()]/.test(input)) return { ok: false, reason: "comments are not allowed" };
  if (input.includes('"')) return { ok: false, reason: "quoted local parts are not allowed" };
  if (input.includes("\\")) return { ok: false, reason: "backslashes are not allowed" };
  if (/[,;:]/.test(input)) return { ok: false, reason: "lists and groups are not allowed; give one plain address" };
  if (/[[\]]/.test(input)) return { ok: false, reason: "address literals are not allowed" };
  const at = input.indexOf("@");
  if (at < 0) return { ok: false, reason: "address has no @" };
  if (input.indexOf("@", at + 1) >= 0) return { ok: false, reason: "address has more than one @" };
  const local = input.slice(0, at);
  const domainIn = input.slice(at + 1);
  if (local.length === 0) return { ok: false, reason: "local part is empty" };
  if (local.length > MAX_LOCAL) return { ok: false, reason: "local part is too long" };
  if (/[^\x00-\x7f]/.test(local)) return { ok: false, reason: "non-ASCII local parts are not allowed" };
  if (/[%!]/.test(local)) {
    return { ok: false, reason: "routing characters (% and !) are not allowed in the local part" };
  }
  if (!LOCAL_RE.test(local)) return { ok: false, reason: "local part is not a plain dot-atom" };
  if (local.includes("=?")) {
    return { ok: false, reason: "encoded-word syntax (=?...?=) is not allowed in the local part" };
  }
  const d = normalizeDomain(domainIn);
  if (!d.ok) return d;
  const localLc = local.toLowerCase();
  const address = `${localLc}@${d.ascii}`;
  if (address.length > MAX_ADDRESS) return { ok: false, reason: "address is too long" };
  return { ok: true, address, local: localLc, domain: d.ascii };
}

/** Equal or label-boundary subdomain of an allowed entry; `"*"` allows any domain. */
export function domainAllowed(domainAscii: string, allowed: readonly string[]): boolean {
  if (typeof domainAscii !== "string" || domainAscii.length === 0) return false;
  for (const a of allowed) {
    if (a === "*") return true;
    if (typeof a !== "string" || a.length === 0) continue;
    if (domainAscii === a || domainAscii.endsWith(`.${a}`)) return true;
  }
  return false;
}
