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
import { parsePhoneNumber } from "libphonenumber-js/max";

export type PhoneResult =
  | { ok: true; e164: string; country: string | undefined; type: string | undefined; premium: boolean }
  | { ok: false; reason: string };

export const E164_RE = /^\+[1-9]\d{6,14}$/;

const PREMIUM_TYPES = new Set(["PREMIUM_RATE", "SHARED_COST"]);

export function parsePhone(input: string): PhoneResult {
  if (typeof input !== "string" || input.length > 16 || !E164_RE.test(input)) {
    return { ok: false, reason: "must be an E.164 number such as +14155550100 (no spaces, prefixes or extensions)" };
  }
  let parsed: ReturnType<typeof parsePhoneNumber> | undefined;
  try {
    parsed = parsePhoneNumber(input);
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
