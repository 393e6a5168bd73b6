/**
 * Strict phone-number parsing for SMS and call destinations.
 *
 * Guarantees of `parsePhone` when it returns ok:
 *  - the input was EXACTLY an E.164 string (`+`, then 7..15 ASCII digits, no
 *    leading 0): this is checked with a regex BEFORE any library parsing, so
 *    nothing is extracted from free text (`tel:`, spaces, dashes, brackets,
 *    extensions `;ext=`/`x12`, Unicode digits are all refused);
 *  - libphonenumber-js with full metadata (`/max`) parsed it back to the very
 *    same E.164 string, found no extension, and judged it `isValid()`;
 *  - `e164` is that string; `country` is the ISO 3166 alpha-2 region or
 *    undefined for non-geographic numbers (+800, +882, ...); `type` is the
 *    libphonenumber type if known;
 *  - `premium` is true for PREMIUM_RATE and also for SHARED_COST numbers:
 *    shared-cost ranges (e.g. UK 084x/087x, FR 08 2x) bill the caller above a
 *    normal rate and are used for the same toll-fraud as premium ranges.
 */
import { createRequire } from "node:module";
import type * as PhoneLib from "libphonenumber-js/max";

let lib: typeof PhoneLib | undefined;
/**
 * libphonenumber-js with full metadata, loaded on first use: it is the largest thing sigil loads
 * (~35-55 ms), and a server needs it only when a phone number is first checked, never to start.
 * Its CommonJS build is the same library and metadata as the ES one, and loads synchronously.
 */
export function phoneLib(): typeof PhoneLib {
  return (lib ??= createRequire(import.meta.url)("libphonenumber-js/max") as typeof PhoneLib);
}

export type PhoneResult =
  | { ok: true; e164: string; country: string | undefined; type: string | undefined; premium: boolean }
  | { ok: false; reason: string };

export const E164_RE = /^\+[1-9]\d{6,14}$/;

const PREMIUM_TYPES = new Set(["PREMIUM_RATE", "SHARED_COST"]);

/**
 * Parsing a number with full metadata costs ~50-70 µs, on every SMS and call; the answer depends
 * on the string alone, and agents tend to write to the same numbers, so the last results are kept
 * (bounded, least recently used first out; frozen, so no caller can change a shared answer).
 */
const recent = new Map<string, PhoneResult>();
const RECENT_MAX = 1024;

export function parsePhone(input: string): PhoneResult {
  if (typeof input !== "string" || input.length > 16 || !E164_RE.test(input)) {
    return { ok: false, reason: "must be an E.164 number such as +14155550100 (no spaces, prefixes or extensions)" };
  }
  const hit = recent.get(input);
  if (hit) {
    recent.delete(input);
    recent.set(input, hit);
    return hit;
  }
  const result = Object.freeze(parseUncached(input));
  if (recent.size >= RECENT_MAX) recent.delete(recent.keys().next().value!);
  recent.set(input, result);
  return result;
}

function parseUncached(input: string): PhoneResult {
  let parsed: ReturnType<typeof PhoneLib.parsePhoneNumber> | undefined;
  try {
    parsed = phoneLib().parsePhoneNumber(input);
  } catch {
    parsed = undefined;
  }
  if (!parsed || parsed.number !== input || parsed.ext !== undefined) {
    return { ok: false, reason: "is not a valid phone number" };
  }
  if (!parsed.isValid()) return { ok: false, reason: "is not a valid phone number" };
  const type = parsed.getType();
  return {
    ok: true,
    e164: input,
    country: parsed.country,
    type,
    premium: type !== undefined && PREMIUM_TYPES.has(type),
  };
}
