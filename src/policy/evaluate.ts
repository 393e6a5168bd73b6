/**
 * The policy decision: one pure, default-deny function.
 *
 * Guarantees of `evaluate(policy, action, usage, nowMs)`:
 *  - never throws for any action value (arguments are re-checked defensively;
 *    exceptions thrown by `usage` itself propagate, and the caller must treat
 *    them as a refusal);
 *  - anything the policy does not explicitly allow is refused with a reason
 *    code and one short sentence that echoes at most ~80 sanitised characters;
 *  - when allowed, `normalized` holds the values the caller MUST use instead
 *    of the raw arguments.
 *
 * Rules, in order:
 *  1. rate limits (any kind): `rateLimits[tool].perMinute` counts allowed
 *     attempts in (now-60s, now], `perDay` in (now-24h, now]; refused when the
 *     count already reached the limit (so the limit-th attempt is allowed);
 *  2. email: `allowedDomains` absent → email_not_allowed; `to` non-empty;
 *     more than 1000 raw addresses → too_many_recipients before any parsing;
 *     every address must pass `validateAddress` (one bad → invalid_recipient)
 *     and `domainAllowed`; the de-duplicated to+cc count must be
 *     <= `maxRecipients`, which defaults to 10 when absent;
 *  3. sms/call: both phone keys absent → phone_not_allowed; strict E.164
 *     (`parsePhone`); premium/shared-cost → premium_rate even if listed;
 *     then listed number or listed country;
 *  4. vault: `allowedSecrets` globs; `*` matches any run of characters
 *     (including none, and including `/`); every other character matches
 *     itself, case-sensitively; no other wildcard syntax;
 *  5. card: `cardSpendingLimitCents` absent → card_not_allowed; amount a
 *     positive safe integer; currency (case-insensitive input) equal to
 *     `cardCurrency ?? "USD"`; per-charge limit; a claimed MCC: blocked before
 *     allowed (no claim: the processor's category is checked by card_charge); spent in (now-24h, now] + amount <= limit; needsApproval when
 *     amount > approvalAboveCents or > approval.aboveCents;
 *  7. approval (after the rules above allowed the action): needsApproval when
 *     the tool is in `approval.tools`, or `approval.newRecipients` is true and a
 *     normalised recipient was never sent to (`usage.contacted`), or
 *     `approval.afterUntrustedInput` is true, the action goes out (email, sms,
 *     call, card, sign, a payment mandate) and the session has read untrusted input (`session`);
 *  8. payment mandates (src/mandates/): issuing one (`mandate`) is allowed only where a charge of
 *     its largest amount would be — card rules as above on `maxAmountCents` (default: the
 *     per-charge limit, else the 24-hour limit), capped by what is left of the 24-hour limit —
 *     with the payee in `allowedPayees` when present, a budget no larger than what is left of the
 *     24-hour limit and no smaller than the largest amount, and an expiry within 24 hours
 *     (default 1 hour); `normalized` holds the constraints, which are never wider than this.
 *     Presenting one (`mandate_use`) is a charge of its exact amount in the policy's currency
 *     (card rules, its approval asked at issuance).
 *  6. sign: `allowedSigningOrigins` absent → origin_not_allowed; the URL read
 *     alike by WHATWG and RFC 3986 parsers (`checkSigningUrl`: no userinfo,
 *     backslash, host escape, control character or rewritten path); https only
 *     (http only for loopback hosts); normalized.url is the URL signed; the origin
 *     must be listed or `"*"` must be listed.
 */
import { domainAllowed, validateAddress } from "./email-address.js";
import { parsePhone } from "./phone.js";
import { isLoopbackHost, safeEcho, type Policy } from "./schema.js";
import { checkSigningUrl } from "../provenance/url.js";

export type Action =
  | { kind: "none"; tool: string }
  | { kind: "email"; tool: string; to: string[]; cc: string[] }
  | { kind: "sms" | "call"; tool: string; to: string }
  | { kind: "vault"; tool: string; name: string }
  | { kind: "card"; tool: string; amountCents: number; currency: string; merchantCategory?: string }
  | { kind: "sign"; tool: string; url: string }
  | { kind: "mandate"; tool: string; payeeId: string; currency: string; maxAmountCents?: number; budgetCents?: number; expiresAtMs?: number }
  | { kind: "mandate_use"; tool: string; amountCents: number; approvedAtIssue?: false };

export interface Usage {
  /** allowed attempts of `tool` with time >= sinceMs (epoch ms) */
  countSince(tool: string, sinceMs: number): number;
  /** cents spent or reserved on the card with time >= sinceMs */
  spentSince(sinceMs: number): number;
  /**
   * Whether this identity ever sent to this recipient (normalised email address or E.164 number)
   * successfully; absent: nobody counts as contacted (policy `approval.newRecipients` then asks).
   */
  contacted?(recipient: string): boolean;
}

export type ReasonCode =
  | "invalid_recipient"
  | "email_not_allowed"
  | "domain_not_allowed"
  | "too_many_recipients"
  | "invalid_phone"
  | "phone_not_allowed"
  | "premium_rate"
  | "secret_not_allowed"
  | "card_not_allowed"
  | "currency_not_allowed"
  | "per_charge_limit"
  | "spending_limit"
  | "merchant_category_blocked"
  | "merchant_category_not_allowed"
  | "origin_not_allowed"
  | "payee_not_allowed"
  | "rate_limited"
  | "invalid_arguments";

export type NormalizedAction =
  | { kind: "none" }
  | { kind: "email"; to: string[]; cc: string[] }
  | { kind: "sms" | "call"; to: string; country: string | undefined }
  | { kind: "vault"; name: string }
  | { kind: "card"; amountCents: number; currency: string; merchantCategory?: string }
  | { kind: "sign"; url: string; origin: string }
  | { kind: "mandate"; currency: string; maxAmountCents: number; budgetCents?: number; expiresAtMs: number };

export type Decision =
  | { allow: true; needsApproval: boolean; normalized: NormalizedAction }
  | { allow: false; reason: ReasonCode; message: string };

/** Used when `maxRecipients` is absent. */
export const DEFAULT_MAX_RECIPIENTS = 10;
export const MINUTE_MS = 60_000;
export const DAY_MS = 86_400_000;
/** How long a payment mandate lives when the request names no expiry, and the longest it may. */
export const MANDATE_DEFAULT_TTL_MS = 3_600_000;
export const MANDATE_MAX_TTL_MS = DAY_MS;
const MAX_RAW_RECIPIENTS = 1000;
const MAX_SECRET_NAME = 256;
const MAX_URL = 8192;

function deny(reason: ReasonCode, message: string): Decision {
  return { allow: false, reason, message };
}

function allow(normalized: NormalizedAction, needsApproval = false): Decision {
  return { allow: true, needsApproval, normalized };
}

function q(v: unknown): string {
  return JSON.stringify(safeEcho(typeof v === "string" ? v : String(v)));
}

function isStringArray(v: unknown): v is string[] {
  return Array.isArray(v) && v.every((x) => typeof x === "string");
}

/** Glob match where `*` matches any run of characters (possibly empty); linear-time greedy backtracking. */
export function globMatch(pattern: string, name: string): boolean {
  let p = 0;
  let n = 0;
  let star = -1;
  let mark = 0;
  while (n < name.length) {
    if (p < pattern.length && pattern[p] !== "*" && pattern[p] === name[n]) {
      p++;
      n++;
    } else if (p < pattern.length && pattern[p] === "*") {
      star = p++;
      mark = n;
    } else if (star >= 0) {
      p = star + 1;
      n = ++mark;
    } else {
      return false;
    }
  }
  while (p < pattern.length && pattern[p] === "*") p++;
  return p === pattern.length;
}

function checkRateLimit(policy: Policy, tool: string, usage: Usage, nowMs: number): Decision | undefined {
  const limits = policy.rateLimits;
  if (!limits || !Object.hasOwn(limits, tool)) return undefined;
  const rl = limits[tool];
  if (!rl) return undefined;
  // A count that is not a non-negative number (NaN, negative) would raise the allowance: refuse.
  const under = (count: number, limit: number): boolean => count >= 0 && count < limit;
  if (rl.perMinute !== undefined && !under(usage.countSince(tool, nowMs - MINUTE_MS + 1), rl.perMinute)) {
    return deny("rate_limited", `${q(tool)} may be used at most ${rl.perMinute} times per minute.`);
  }
  if (rl.perDay !== undefined && !under(usage.countSince(tool, nowMs - DAY_MS + 1), rl.perDay)) {
    return deny("rate_limited", `${q(tool)} may be used at most ${rl.perDay} times per day.`);
  }
  return undefined;
}

function evalEmail(policy: Policy, a: { to: unknown; cc: unknown }): Decision {
  const allowed = policy.allowedDomains;
  if (!allowed) return deny("email_not_allowed", "This identity's policy does not allow sending email.");
  const cc = a.cc === undefined ? [] : a.cc;
  if (!isStringArray(a.to) || !isStringArray(cc)) {
    return deny("invalid_arguments", "Recipients must be arrays of strings.");
  }
  if (a.to.length === 0) return deny("invalid_arguments", "At least one \"to\" recipient is required.");
  const max = policy.maxRecipients ?? DEFAULT_MAX_RECIPIENTS;
  if (a.to.length + cc.length > MAX_RAW_RECIPIENTS) {
    return deny("too_many_recipients", `The message has more than the allowed ${max} recipients.`);
  }
  const seen = new Set<string>();
  const norm = (list: string[]): string[] | Decision => {
    const out: string[] = [];
    for (const raw of list) {
      const v = validateAddress(raw);
      if (!v.ok) return deny("invalid_recipient", `Recipient ${q(raw)} is not a plain email address: ${v.reason}.`);
      if (!domainAllowed(v.domain, allowed)) {
        return deny("domain_not_allowed", `Recipient domain ${q(v.domain)} is not in allowedDomains.`);
      }
      if (!seen.has(v.address)) {
        seen.add(v.address);
        out.push(v.address);
      }
    }
    return out;
  };
  const to = norm(a.to);
  if (!Array.isArray(to)) return to;
  const ccN = norm(cc);
  if (!Array.isArray(ccN)) return ccN;
  if (seen.size > max) {
    return deny("too_many_recipients", `The message has ${seen.size} recipients; at most ${max} are allowed.`);
  }
  return allow({ kind: "email", to, cc: ccN });
}

function evalPhone(policy: Policy, kind: "sms" | "call", to: unknown): Decision {
  const numbers = policy.allowedPhoneNumbers;
  const countries = policy.allowedPhoneCountries;
  const what = kind === "sms" ? "SMS" : "calls";
  if (!numbers && !countries) return deny("phone_not_allowed", `This identity's policy does not allow ${what}.`);
  if (typeof to !== "string") return deny("invalid_phone", "The destination must be an E.164 string.");
  const p = parsePhone(to);
  if (!p.ok) return deny("invalid_phone", `Destination ${q(to)} ${p.reason}.`);
  if (p.premium) return deny("premium_rate", `Destination ${p.e164} is a premium-rate number.`);
  const listed = numbers?.includes(p.e164) ?? false;
  const inCountry = p.country !== undefined && (countries?.includes(p.country) ?? false);
  if (!listed && !inCountry) {
    return deny("phone_not_allowed", `Destination ${p.e164} is not in allowedPhoneNumbers or allowedPhoneCountries.`);
  }
  return allow({ kind, to: p.e164, country: p.country });
}

function evalVault(policy: Policy, name: unknown): Decision {
  const globs = policy.allowedSecrets;
  if (typeof name !== "string" || name.length === 0 || name.length > MAX_SECRET_NAME) {
    return deny("invalid_arguments", `The secret name must be a string of 1 to ${MAX_SECRET_NAME} characters.`);
  }
  if (!globs || !globs.some((g) => globMatch(g, name))) {
    return deny("secret_not_allowed", `Secret ${q(name)} is not in allowedSecrets.`);
  }
  return allow({ kind: "vault", name });
}

function evalCard(
  policy: Policy,
  a: { amountCents: unknown; currency: unknown; merchantCategory?: unknown },
  usage: Usage,
  nowMs: number,
): Decision {
  const limit = policy.cardSpendingLimitCents;
  if (limit === undefined) return deny("card_not_allowed", "This identity's policy does not allow card charges.");
  const amount = a.amountCents;
  if (typeof amount !== "number" || !Number.isSafeInteger(amount) || amount <= 0) {
    return deny("invalid_arguments", "amountCents must be a positive integer.");
  }
  if (typeof a.currency !== "string" || !/^[A-Za-z]{3}$/.test(a.currency)) {
    return deny("invalid_arguments", "currency must be a 3-letter ISO 4217 code.");
  }
  const currency = a.currency.toUpperCase();
  const allowedCurrency = policy.cardCurrency ?? "USD";
  if (currency !== allowedCurrency) {
    return deny("currency_not_allowed", `Only ${allowedCurrency} charges are allowed.`);
  }
  const mcc = a.merchantCategory;
  if (mcc !== undefined && (typeof mcc !== "string" || !/^\d{4}$/.test(mcc))) {
    return deny("invalid_arguments", "merchantCategory must be a 4-digit merchant category code.");
  }
  if (policy.cardPerChargeLimitCents !== undefined && amount > policy.cardPerChargeLimitCents) {
    return deny("per_charge_limit", `A single charge may be at most ${policy.cardPerChargeLimitCents} cents.`);
  }
  if (mcc !== undefined && policy.blockedMerchantCategories?.includes(mcc)) {
    return deny("merchant_category_blocked", `Merchant category ${mcc} is blocked.`);
  }
  // The agent's category is only a claim: one the rules refuse is refused here; without one (or
  // with an allowed one) the card processor states the category and card_charge checks it before
  // and at authorization (src/providers/card/processor.ts, README "Merchant categories").
  const allowedMcc = policy.allowedMerchantCategories;
  if (allowedMcc !== undefined && mcc !== undefined && !allowedMcc.includes(mcc)) {
    return deny("merchant_category_not_allowed", `Merchant category ${mcc} is not in allowedMerchantCategories.`);
  }
  const spent = usage.spentSince(nowMs - DAY_MS + 1);
  if (typeof spent !== "number" || !Number.isFinite(spent) || spent < 0 || spent + amount > limit) {
    return deny("spending_limit", `The charge would exceed the ${limit}-cent limit for any 24 hours.`);
  }
  const above = (t: number | undefined): boolean => t !== undefined && amount > t;
  const needsApproval = above(policy.approvalAboveCents) || above(policy.approval?.aboveCents);
  const normalized: NormalizedAction = { kind: "card", amountCents: amount, currency };
  if (mcc !== undefined) normalized.merchantCategory = mcc;
  return allow(normalized, needsApproval);
}

/**
 * Issuing a payment mandate: the constraints it may carry, each no wider than the policy allows a
 * charge now (see rule 8 above). Refused — never narrowed silently — when the request asks for more.
 */
function evalMandate(policy: Policy, a: Extract<Action, { kind: "mandate" }>, usage: Usage, nowMs: number): Decision {
  const limit = policy.cardSpendingLimitCents;
  if (limit === undefined) return deny("card_not_allowed", "This identity's policy does not allow card payments.");
  if (typeof a.payeeId !== "string" || a.payeeId.length === 0) return deny("invalid_arguments", "payee.id is required.");
  if (policy.allowedPayees !== undefined && !policy.allowedPayees.includes(a.payeeId)) {
    return deny("payee_not_allowed", `Payee ${q(a.payeeId)} is not in allowedPayees.`);
  }
  const int = (v: unknown): v is number => typeof v === "number" && Number.isSafeInteger(v) && v > 0;
  if (a.maxAmountCents !== undefined && !int(a.maxAmountCents)) return deny("invalid_arguments", "maxAmountCents must be a positive integer.");
  if (a.budgetCents !== undefined && !int(a.budgetCents)) return deny("invalid_arguments", "budgetCents must be a positive integer.");
  const spent = usage.spentSince(nowMs - DAY_MS + 1);
  if (typeof spent !== "number" || !Number.isFinite(spent) || spent < 0) return deny("spending_limit", "The spending so far cannot be counted.");
  const headroom = limit - spent;
  const perCharge = Math.min(policy.cardPerChargeLimitCents ?? limit, limit);
  const max = a.maxAmountCents ?? Math.min(perCharge, headroom);
  if (max <= 0 || headroom <= 0) return deny("spending_limit", `Nothing is left of the ${limit}-cent limit for any 24 hours.`);
  // The largest amount is checked as a charge of that amount would be (currency, per-charge limit, 24 h limit).
  const asCharge = evalCard(policy, { amountCents: max, currency: a.currency }, usage, nowMs);
  if (!asCharge.allow) return asCharge;
  if (asCharge.normalized.kind !== "card") return deny("invalid_arguments", "The mandate is malformed.");
  let budget: number | undefined;
  if (a.budgetCents !== undefined) {
    if (a.budgetCents > headroom) return deny("spending_limit", `The budget would exceed the ${headroom} cents left of the ${limit}-cent limit for any 24 hours.`);
    if (a.budgetCents < max) return deny("invalid_arguments", "budgetCents must be at least maxAmountCents.");
    budget = a.budgetCents;
  }
  const exp = a.expiresAtMs ?? nowMs + MANDATE_DEFAULT_TTL_MS;
  if (!Number.isFinite(exp) || exp <= nowMs) return deny("invalid_arguments", "expiresAt must be in the future.");
  if (exp > nowMs + MANDATE_MAX_TTL_MS) return deny("invalid_arguments", "expiresAt must be at most 24 hours from now.");
  return allow({ kind: "mandate", currency: asCharge.normalized.currency, maxAmountCents: max, ...(budget !== undefined ? { budgetCents: budget } : {}), expiresAtMs: exp }, asCharge.needsApproval);
}

function evalSign(policy: Policy, url: unknown): Decision {
  const origins = policy.allowedSigningOrigins;
  if (!origins) return deny("origin_not_allowed", "This identity's policy does not allow signing requests.");
  if (typeof url !== "string" || url.length === 0 || url.length > MAX_URL) {
    return deny("invalid_arguments", `url must be a string of 1 to ${MAX_URL} characters.`);
  }
  // Only URLs that WHATWG and RFC 3986 parsers read alike (src/provenance/url.ts): no userinfo,
  // backslashes, escapes in the host, control characters, or anything the parser would rewrite.
  const checked = checkSigningUrl(url);
  if (!checked.ok && checked.scheme) return deny("origin_not_allowed", "Only https URLs (or http to loopback) may be signed.");
  if (!checked.ok) return deny("invalid_arguments", `${checked.problem}.`);
  const u = checked.url;
  if (!(u.protocol === "https:" || (u.protocol === "http:" && isLoopbackHost(u.hostname)))) {
    return deny("origin_not_allowed", "Only https URLs (or http to loopback) may be signed.");
  }
  const origin = u.origin;
  if (!origins.includes("*") && !origins.includes(origin)) {
    return deny("origin_not_allowed", `Origin ${q(origin)} is not in allowedSigningOrigins.`);
  }
  return allow({ kind: "sign", url: checked.normalized, origin });
}

/**
 * Policy `approval`: the action is allowed but asks a human first when its tool is listed in
 * `approval.tools`, or (with `approval.newRecipients`) a recipient was never sent to before.
 * (Amount thresholds are decided by the card rules above.)
 */
function withApprovalRules(policy: Policy, action: Action, d: Decision, usage: Usage, session: SessionFacts): Decision {
  // A refusal (including one for a malformed policy or action) is returned before either is read.
  if (!d.allow || d.needsApproval) return d;
  const rules = policy.approval;
  if (!rules) return d;
  if (rules.tools?.includes(action.tool)) return { ...d, needsApproval: true };
  if (rules.afterUntrustedInput === true && session.untrustedInput === true && OUTBOUND_KINDS.has(d.normalized.kind)) return { ...d, needsApproval: true };
  if (rules.newRecipients === true) {
    const n = d.normalized;
    const recipients = n.kind === "email" ? [...n.to, ...n.cc] : n.kind === "sms" || n.kind === "call" ? [n.to] : [];
    const known = (r: string): boolean => {
      try {
        return usage.contacted?.(r) === true;
      } catch {
        return false; // cannot tell: ask
      }
    };
    if (recipients.some((r) => !known(r))) return { ...d, needsApproval: true };
  }
  return d;
}

/** What policy knows of the calling session (src/pipeline/agent-call.ts): whether it read untrusted inbound text. */
export interface SessionFacts {
  untrustedInput?: boolean;
}

/** Actions that reach someone outside sigil: what `approval.afterUntrustedInput` holds back. */
const OUTBOUND_KINDS: ReadonlySet<NormalizedAction["kind"]> = new Set(["email", "sms", "call", "card", "sign", "mandate"]);

export function evaluate(policy: Policy, action: Action, usage: Usage, nowMs: number, session: SessionFacts = {}): Decision {
  return withApprovalRules(policy, action, evaluateRules(policy, action, usage, nowMs), usage, session);
}

function evaluateRules(policy: Policy, action: Action, usage: Usage, nowMs: number): Decision {
  if (typeof action !== "object" || action === null || typeof action.tool !== "string" || action.tool === "") {
    return deny("invalid_arguments", "The action is malformed.");
  }
  if (typeof policy !== "object" || policy === null || !Number.isFinite(nowMs)) {
    return deny("invalid_arguments", "The policy or time is malformed.");
  }
  const rl = checkRateLimit(policy, action.tool, usage, nowMs);
  if (rl) return rl;
  switch (action.kind) {
    case "none":
      return allow({ kind: "none" });
    case "email":
      return evalEmail(policy, action);
    case "sms":
    case "call":
      return evalPhone(policy, action.kind, action.to);
    case "vault":
      return evalVault(policy, action.name);
    case "card":
      return evalCard(policy, action, usage, nowMs);
    case "sign":
      return evalSign(policy, action.url);
    case "mandate":
      return evalMandate(policy, action, usage, nowMs);
    case "mandate_use": {
      // A presentation is a charge of its amount in the policy's currency; its approval was asked at
      // issuance — unless nothing of sigil's was issued (`approvedAtIssue: false`, a Verifiable
      // Intent L2 from outside): then above the threshold it is asked now, as for a charge.
      const d = evalCard(policy, { amountCents: action.amountCents, currency: policy.cardCurrency ?? "USD" }, usage, nowMs);
      return d.allow && action.approvedAtIssue !== false ? { ...d, needsApproval: false } : d;
    }
    default:
      return deny("invalid_arguments", "The action kind is unknown.");
  }
}
