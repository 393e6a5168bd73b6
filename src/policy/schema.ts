/**
 * The policy document (README: "Policy"; docs/ARCHITECTURE.md for where it is evaluated).
 *
 * Guarantees of `parsePolicy` / `parsePolicyJson`:
 *  - unknown keys (top level and inside `rateLimits` entries) are an error;
 *  - every value is bounded: arrays <= 1000 entries, strings <= 253 chars,
 *    rateLimits <= 100 tools, JSON text <= 1 MiB;
 *  - normalised output: `allowedDomains` lower-case ASCII (IDNA), validated
 *    with the same rule as email domains; `allowedSigningOrigins` reduced to
 *    `scheme://host[:port]` (lower-cased, default port dropped); lists are
 *    de-duplicated. The output parses again to itself;
 *  - errors are ONE sentence naming the offending key, e.g.
 *    `policy.maxRecipients: must be an integer between 1 and 1000`.
 * Absent keys are left absent (evaluate.ts decides what absence means).
 */
import * as z from "zod";
import { normalizeDomain } from "./email-address.js";
import { E164_RE, phoneLib } from "./phone.js";

const MAX_LIST = 1000;
const MAX_STR = 253;
const MAX_TOOLS = 100;
const MAX_JSON = 1024 * 1024;

function dedupe(xs: string[]): string[] {
  return [...new Set(xs)];
}

function list<T extends z.ZodType<string, unknown>>(item: T, what: string) {
  return z
    .array(item, { error: `must be an array of ${what}` })
    .max(MAX_LIST, { error: `must have at most ${MAX_LIST} entries` })
    .transform(dedupe);
}

function str(msg: string) {
  return z.string({ error: msg }).max(MAX_STR, { error: `must be at most ${MAX_STR} characters` });
}

function intIn(min: number, max: number, msg: string) {
  return z.int({ error: msg }).min(min, { error: msg }).max(max, { error: msg });
}

const cents = () => intIn(0, Number.MAX_SAFE_INTEGER, "must be a non-negative integer number of cents");

const domainEntry = str("must be a domain name or \"*\"").transform((s, ctx) => {
  if (s === "*") return s;
  const d = normalizeDomain(s);
  if (!d.ok) {
    ctx.issues.push({ code: "custom", input: s, message: `is not a valid domain: ${d.reason}` });
    return z.NEVER;
  }
  return d.ascii;
});

const LOOPBACK_HOSTS = new Set(["localhost", "[::1]"]);
/** True for hosts that never leave the machine (localhost, 127.0.0.0/8, ::1). */
export function isLoopbackHost(hostname: string): boolean {
  return LOOPBACK_HOSTS.has(hostname) || /^127\.\d{1,3}\.\d{1,3}\.\d{1,3}$/.test(hostname);
}

/** Normalise an origin such as `https://Shop.Example:443/` to `https://shop.example`; undefined if not an origin. */
export function normalizeOrigin(s: string): string | undefined {
  if (!/^https?:\/\/[^/?#\\@\s]+\/?$/i.test(s)) return undefined;
  let u: URL;
  try {
    u = new URL(s);
  } catch {
    return undefined;
  }
  if (u.username !== "" || u.password !== "" || u.hostname === "") return undefined;
  if (u.protocol !== "https:" && !(u.protocol === "http:" && isLoopbackHost(u.hostname))) return undefined;
  return u.origin;
}

const originEntry = str("must be an origin such as https://shop.example or \"*\"").transform((s, ctx) => {
  if (s === "*") return s;
  const o = normalizeOrigin(s);
  if (o === undefined) {
    ctx.issues.push({
      code: "custom",
      input: s,
      message: "must be an https origin such as https://shop.example (scheme, host and optional port; no path; http only for loopback) or \"*\"",
    });
    return z.NEVER;
  }
  return o;
});

const countryEntry = str("must be an ISO 3166 alpha-2 country code such as \"US\"").refine(
  (s) => /^[A-Z]{2}$/.test(s) && phoneLib().isSupportedCountry(s),
  { error: "must be a known upper-case ISO 3166 alpha-2 country code such as \"US\"" },
);

const phoneEntry = str("must be an E.164 number such as \"+14155550100\"").regex(E164_RE, {
  error: "must be an E.164 number such as \"+14155550100\"",
});

const secretEntry = str("must be a secret name or glob").regex(/^[\x21-\x7e]+$/, {
  error: "must be a non-empty secret name or glob of printable ASCII without spaces",
});

const mccEntry = str("must be a 4-digit merchant category code").regex(/^\d{4}$/, {
  error: "must be a 4-digit merchant category code such as \"5734\"",
});

const rateLimitEntry = z
  .strictObject(
    {
      perMinute: intIn(1, 1_000_000, "must be a positive integer").optional(),
      perDay: intIn(1, 100_000_000, "must be a positive integer").optional(),
    },
    { error: "must be an object with perMinute and/or perDay" },
  )
  .refine((r) => r.perMinute !== undefined || r.perDay !== undefined, {
    error: "must set perMinute and/or perDay",
  });

export const TOOL_NAME_RE = /^[a-z][a-z0-9_]{0,63}$/;

/** The agent tools a policy can name in `rateLimits` (kept equal to tools/index.ts by a test). */
export const AGENT_TOOL_NAMES = ["whoami", "send_email", "send_sms", "place_call", "vault_get", "card_charge", "sign_http_request", "list_messages", "read_message", "create_payment_mandate", "present_payment_mandate"] as const;

/** Approver ids (`sigil approver add`): `apr_` and 20 hex digits. */
export const APPROVER_ID_RE = /^apr_[0-9a-f]{20}$/;

/** Longest an action may wait for a decision (`approval.timeoutSeconds`), and the default. */
export const MAX_APPROVAL_TIMEOUT_S = 86_400;
export const DEFAULT_APPROVAL_TIMEOUT_S = 300;

/**
 * Policy `approval` (README: "Approvals"): which actions need a human's approval and who gives it.
 * `approvalAboveCents` stays the card shorthand beside it; when both are present either threshold
 * asks, and this block says who answers.
 */
const approvalBlock = z
  .strictObject(
    {
      aboveCents: cents().optional(),
      tools: list(
        str("must be an agent tool name").refine((t) => (AGENT_TOOL_NAMES as readonly string[]).includes(t) && t !== "whoami", {
          error: `must name an agent tool that acts (${AGENT_TOOL_NAMES.filter((t) => t !== "whoami").join(", ")})`,
        }),
        "tool names",
      ).optional(),
      newRecipients: z.boolean({ error: "must be true or false" }).optional(),
      // SPEC §12: once a session has read an untrusted inbound message, its outbound actions ask first.
      afterUntrustedInput: z.boolean({ error: "must be true or false" }).optional(),
      approvers: list(str("must be an approver id such as apr_…").regex(APPROVER_ID_RE, { error: "must be an approver id (apr_ and 20 hex digits, as `sigil approver add` prints)" }), "approver ids").optional(),
      quorum: intIn(1, 100, "must be an integer between 1 and 100").optional(),
      via: z
        .array(z.enum(["approver", "client"], { error: 'must be "approver" or "client"' }), { error: 'must be an array of "approver" and/or "client"' })
        .min(1, { error: 'must name at least one of "approver", "client"' })
        .max(10, { error: 'must name at most "approver" and "client"' })
        .transform((xs) => [...new Set(xs)])
        .optional(),
      requirePasskey: z.boolean({ error: "must be true or false" }).optional(),
      timeoutSeconds: intIn(1, MAX_APPROVAL_TIMEOUT_S, `must be an integer number of seconds between 1 and ${MAX_APPROVAL_TIMEOUT_S}`).optional(),
    },
    { error: "must be an object such as {\"aboveCents\": 5000, \"via\": [\"approver\"]}" },
  )
  .superRefine((a, ctx) => {
    if (a.quorum !== undefined && a.approvers !== undefined && a.approvers.length > 0 && a.quorum > a.approvers.length) {
      ctx.addIssue({ code: "custom", path: ["quorum"], message: `must be at most the number of approvers named (${a.approvers.length})` });
    }
    const via = a.via ?? ["approver"];
    if (!via.includes("approver") && (a.approvers !== undefined || a.quorum !== undefined || a.requirePasskey === true)) {
      const key = a.approvers !== undefined ? "approvers" : a.quorum !== undefined ? "quorum" : "requirePasskey";
      ctx.addIssue({ code: "custom", path: [key], message: 'applies only when via includes "approver"' });
    }
    // A client's form answer is one attestation, not a person: beside a quorum of approvers it would approve alone.
    if (a.quorum !== undefined && a.quorum > 1 && via.includes("client")) {
      ctx.addIssue({ code: "custom", path: ["quorum"], message: 'above 1 cannot be combined with via "client": a client\'s answer would approve alone' });
    }
    // A client's form answer carries no passkey: allowing it would let the client approve what only a passkey may.
    if (a.requirePasskey === true && via.includes("client")) {
      ctx.addIssue({ code: "custom", path: ["requirePasskey"], message: 'cannot be combined with via "client": a client\'s answer carries no passkey' });
    }
  });

/** Inbound messages (SPEC §12, src/inbound/): how long they are kept and how many, and whether mail must authenticate. */
export const DEFAULT_RETAIN_DAYS = 30;
export const DEFAULT_MAX_MESSAGES = 1000;
const inboundBlock = z.strictObject(
  {
    retainDays: intIn(1, 3650, "must be a whole number of days from 1 to 3650").optional(),
    maxMessages: intIn(1, 100_000, "must be a whole number from 1 to 100000").optional(),
    requireAuthentication: z.boolean({ error: "must be true or false" }).optional(),
  },
  { error: "must be an object such as {\"retainDays\": 30}" },
);

/** A sender whose messages are not marked untrusted: a domain (as in allowedDomains), "*", or an E.164 number. */
const senderEntry = str("must be a domain name, \"*\" or an E.164 number").transform((s, ctx) => {
  if (s.startsWith("+")) {
    if (!E164_RE.test(s)) {
      ctx.issues.push({ code: "custom", input: s, message: "must be an E.164 number such as \"+14155550100\"" });
      return z.NEVER;
    }
    return s;
  }
  if (s === "*") return s;
  const d = normalizeDomain(s);
  if (!d.ok) {
    ctx.issues.push({ code: "custom", input: s, message: `is not a valid domain: ${d.reason}` });
    return z.NEVER;
  }
  return d.ascii;
});

export const PolicySchema = z.strictObject(
  {
    allowedDomains: list(domainEntry, "domain names"),
    maxRecipients: intIn(1, 1000, "must be an integer between 1 and 1000"),
    allowedPhoneCountries: list(countryEntry, "country codes"),
    allowedPhoneNumbers: list(phoneEntry, "E.164 numbers"),
    allowedSecrets: list(secretEntry, "secret names or globs"),
    cardSpendingLimitCents: cents(),
    cardPerChargeLimitCents: cents(),
    allowedMerchantCategories: list(mccEntry, "4-digit merchant category codes"),
    blockedMerchantCategories: list(mccEntry, "4-digit merchant category codes"),
    approvalAboveCents: cents(),
    approval: approvalBlock,
    rateLimits: z
      .record(
        z.string().refine((t) => (AGENT_TOOL_NAMES as readonly string[]).includes(t), {
          error: `must name an agent tool (${AGENT_TOOL_NAMES.join(", ")})`,
        }),
        rateLimitEntry,
        { error: "must be an object mapping tool names to {perMinute?, perDay?}" },
      )
      .refine((r) => Object.keys(r).length <= MAX_TOOLS, { error: `must name at most ${MAX_TOOLS} tools` }),
    allowedSigningOrigins: list(originEntry, "origins"),
    allowedSenders: list(senderEntry, "domain names or E.164 numbers"),
    inbound: inboundBlock,
    /** Payment mandates (src/mandates/): the payee ids a mandate may name; absent, any payee (as card_charge's merchants). */
    allowedPayees: list(str("must be a payee id").regex(/^[\x21-\x7e]+$/, { error: "must be a payee id of printable ASCII without spaces" }), "payee ids"),
    cardCurrency: z
      .string({ error: "must be an ISO 4217 currency code such as \"USD\"" })
      .regex(/^[A-Z]{3}$/, { error: "must be an upper-case ISO 4217 currency code such as \"USD\"" }),
  },
  { error: "must be a JSON object" },
).partial();

export type Policy = z.output<typeof PolicySchema>;

export type PolicyParseResult = { ok: true; policy: Policy } | { ok: false; error: string };

/** Make a value safe to echo in one line: no control/format chars, at most 80 chars. */
export function safeEcho(s: string, max = 80): string {
  const clean = s.replace(/[\p{Cc}\p{Cf}\p{Zl}\p{Zp}\p{Co}\p{Cs}]/gu, "?");
  return clean.length > max ? `${clean.slice(0, max)}…` : clean;
}

function formatPath(path: ReadonlyArray<PropertyKey>): string {
  let out = "policy";
  for (const p of path) {
    if (typeof p === "number") out += `[${p}]`;
    else if (typeof p === "string" && /^[A-Za-z_][A-Za-z0-9_]*$/.test(p)) out += `.${p}`;
    else out += `[${JSON.stringify(safeEcho(String(p), 40))}]`;
  }
  return out;
}

function formatIssue(issue: z.core.$ZodIssue): string {
  const where = formatPath(issue.path);
  if (issue.code === "unrecognized_keys") {
    const keys = issue.keys.slice(0, 3).map((k) => JSON.stringify(safeEcho(k, 40)));
    const more = issue.keys.length > 3 ? ` (and ${issue.keys.length - 3} more)` : "";
    return `${where}: unknown key${issue.keys.length > 1 ? "s" : ""} ${keys.join(", ")}${more}`;
  }
  if (issue.code === "invalid_key") {
    return `${where}: ${issue.issues[0]?.message ?? "invalid key"}`;
  }
  return `${where}: ${issue.message}`;
}

/** Parse an already-decoded policy value. */
export function parsePolicy(input: unknown): PolicyParseResult {
  if (input === null || typeof input !== "object" || Array.isArray(input)) {
    return { ok: false, error: "policy: must be a JSON object" };
  }
  // Cheap size guard before zod walks anything.
  for (const [k, v] of Object.entries(input as Record<string, unknown>)) {
    if (Array.isArray(v) && v.length > MAX_LIST * 10) {
      return { ok: false, error: `${formatPath([k])}: must have at most ${MAX_LIST} entries` };
    }
  }
  // zod's record drops a "__proto__" key silently; refuse it like any other bad tool name.
  const rl = (input as Record<string, unknown>).rateLimits;
  if (rl !== null && typeof rl === "object" && Object.hasOwn(rl, "__proto__")) {
    return { ok: false, error: 'policy.rateLimits["__proto__"]: tool names must be lower-case identifiers such as send_sms' };
  }
  const r = PolicySchema.safeParse(input);
  if (r.success) return { ok: true, policy: r.data };
  const first = r.error.issues[0];
  return { ok: false, error: first ? formatIssue(first) : "policy: is invalid" };
}

/** Parse policy JSON text. */
export function parsePolicyJson(text: string): PolicyParseResult {
  if (typeof text !== "string") return { ok: false, error: "policy: must be JSON text" };
  if (text.length > MAX_JSON) return { ok: false, error: "policy: JSON text is larger than 1 MiB" };
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch (e) {
    const msg = e instanceof Error ? safeEcho(e.message) : "syntax error";
    return { ok: false, error: `policy: is not valid JSON (${msg})` };
  }
  return parsePolicy(value);
}
