/**
 * The environment, read in one place. Every variable sigil reads is listed in `VARIABLES` with its
 * meaning and default, parsed here with zod into a typed `Config`, and handed down from the CLI
 * entry (src/cli/main.ts) or the composition root (src/app.ts); nothing else reads `process.env`.
 * A bad value is one `ConfigError` naming the variable, before anything is opened or changed
 * (the CLI exits 2). Empty or blank values count as unset. README "Environment" lists the same
 * variables (test/config.test.ts checks it).
 */
import os from "node:os";
import path from "node:path";
import * as z from "zod";
import { SigilError } from "./errors.js";

/** What the environment looks like to the parser (process.env, or a test's object). */
export type Env = Readonly<Record<string, string | undefined>>;

export interface Config {
  /** The data directory (resolved to an absolute path). */
  home: string;
  /** A `postgres://` / `postgresql://` URL selecting the PostgreSQL store; absent: the embedded home. */
  storeUrl?: string;
  /** The master key, base64 of 32 bytes, instead of `$SIGIL_HOME/master.key` (checked when the home opens). */
  masterKey?: string;
  /** The stdio session credential (trimmed). */
  token?: string;
  /** A file holding the stdio session credential (read when `token` is unset). */
  tokenFile?: string;
  /** The approver token `sigil approvals approve|deny` decide with (trimmed). */
  approverToken?: string;
  /** The server's public https origin. */
  publicUrl?: string;
  allowedHosts: string[];
  allowedOrigins: string[];
  maxSessionsPerIdentity: number;
  requestTimeoutMs: number;
  refusalsPerMinute: number;
  approvalTimeoutMs: number;
  providerTimeoutMs: number;
  smtpUrl?: string;
  dkim?: { domainName: string; keySelector: string; privateKeyFile: string };
  twilio?: { accountSid: string; authToken: string };
  twilioApiUrl?: string;
  cardProcessorUrl?: string;
  cardProcessorToken?: string;
  cardDeclineAboveCents?: number;
  cardLatencyMs: number;
  /** Audit-verification worker threads (0: verify on the main thread); absent: one per core (at most 16). */
  verifyThreads?: number;
  /** SIGIL_INBOUND_SMTP_PORT: `sigil serve --http` also listens for inbound mail on this port (src/inbound/smtp.ts). */
  inboundSmtpPort?: number;
  /** STARTTLS for the inbound listener: PEM certificate and key files. */
  inboundTls?: { certFile: string; keyFile: string };
  /** Test suite only: a JSON file of DNS answers the inbound listener's SPF/DKIM/DMARC checks use instead of DNS. */
  testDnsFile?: string;
  /** Test suite only: file-system faults to inject (src/util/faults.ts). */
  testFaults?: string;
  /** SIGIL_TEST_CRASH: the named step at which to SIGKILL this process (test suite only). */
  testCrash?: string;
  /** Test suite only: sigil's clock runs this far ahead of the wall clock (token expiry without sleeping). */
  testClockOffsetMs?: number;
  /** Test suite only: accept OAuth Client ID Metadata Documents over http on a loopback address. */
  testOAuthHttpDocuments?: boolean;
}

export interface Variable {
  name: string;
  /** One line: what it does. */
  meaning: string;
  /** The default, as the README states it ("—": unset unless given). */
  default: string;
}

/** A bad value in the environment: names the variable (never echoes a secret). */
export class ConfigError extends SigilError {
  constructor(message: string) {
    super("config_invalid", message);
  }
}

/** A value as given: blank counts as unset. */
const given = z
  .string()
  .optional()
  .transform((s) => (s === undefined || s.trim() === "" ? undefined : s));

/** Trimmed text, or undefined. */
const text = given.transform((s) => s?.trim());

/** A whole number from `min` to `max`, `dflt` when unset. The error quotes the value (these are never secrets). */
function wholeNumber(min: number, max: number, dflt: number): z.ZodType<number, string | undefined>;
function wholeNumber(min: number, max: number): z.ZodType<number | undefined, string | undefined>;
function wholeNumber(min: number, max: number, dflt?: number): z.ZodType<number | undefined, string | undefined> {
  return text.transform((raw, ctx) => {
    if (raw === undefined) return dflt;
    const n = Number(raw);
    if (!/^\d+$/.test(raw) || !Number.isSafeInteger(n) || n < min || n > max) {
      ctx.addIssue({ code: "custom", message: `must be a whole number from ${min} to ${max}, not "${raw.slice(0, 20)}"` });
      return z.NEVER;
    }
    return n;
  });
}

/** A URL whose protocol is one of `protocols`; the error never quotes it (it may hold a password). */
function url(protocols: string[], what: string, opts: { origin?: boolean; noCredentials?: boolean } = {}): z.ZodType<string | undefined, string | undefined> {
  return text.transform((raw, ctx) => {
    if (raw === undefined) return undefined;
    let u: URL;
    try {
      u = new URL(raw);
    } catch {
      ctx.addIssue({ code: "custom", message: `must be ${what}` });
      return z.NEVER;
    }
    if (!protocols.includes(u.protocol) || (opts.noCredentials && (u.username || u.password))) {
      ctx.addIssue({ code: "custom", message: `must be ${what}` });
      return z.NEVER;
    }
    return opts.origin ? u.origin : raw;
  });
}

const list = text.transform((s) => (s ?? "").split(",").map((x) => x.trim()).filter(Boolean));

const DOMAIN_RE = /^[A-Za-z0-9](?:[A-Za-z0-9.-]*[A-Za-z0-9])?$/;
const SELECTOR_RE = /^[A-Za-z0-9](?:[A-Za-z0-9._-]*[A-Za-z0-9])?$/;

/** Every variable: its parser, its meaning and its default. The order is the README's. */
const SPEC = {
  SIGIL_HOME: {
    parse: given.transform((s) => path.resolve(s ?? path.join(os.homedir(), ".sigil"))),
    meaning: "the data directory, created 0700, files 0600",
    default: "`~/.sigil`",
  },
  SIGIL_STORE_URL: {
    parse: text.transform((s, ctx) => {
      if (s !== undefined && !/^postgres(?:ql)?:\/\//i.test(s)) {
        ctx.addIssue({ code: "custom", message: "(or --store) must start with postgres:// or postgresql://" });
        return z.NEVER;
      }
      return s;
    }),
    meaning: "`postgres://…` selects the PostgreSQL store (also `--store URL` on any command)",
    default: "— (the embedded home)",
  },
  SIGIL_TOKEN: { parse: text, meaning: "the stdio session credential", default: "—" },
  SIGIL_TOKEN_FILE: { parse: given, meaning: "a file holding the stdio session credential (when SIGIL_TOKEN is unset)", default: "—" },
  SIGIL_APPROVER_TOKEN: { parse: text, meaning: "the approver token `sigil approvals approve` and `deny` decide with (and `approvals list` shows what it may decide)", default: "—" },
  SIGIL_MASTER_KEY: { parse: given, meaning: "base64 32-byte master key, instead of `$SIGIL_HOME/master.key`", default: "`$SIGIL_HOME/master.key`" },
  SIGIL_SMTP_URL: { parse: text, meaning: "e.g. `smtp://user:pass@host:587`; email goes by SMTP instead of the outbox", default: "— (the outbox)" },
  TWILIO_ACCOUNT_SID: { parse: text, meaning: "with TWILIO_AUTH_TOKEN: SMS and calls through Twilio instead of the outbox", default: "— (the outbox)" },
  TWILIO_AUTH_TOKEN: { parse: text, meaning: "with TWILIO_ACCOUNT_SID: SMS and calls through Twilio", default: "—" },
  SIGIL_TWILIO_API_URL: {
    parse: url(["https:", "http:"], "an http(s) URL"),
    meaning: "Twilio-compatible API origin",
    default: "`https://api.twilio.com`",
  },
  SIGIL_PROVIDER_TIMEOUT_MS: { parse: wholeNumber(1, 600_000, 15_000), meaning: "provider (SMTP, Twilio, card processor) timeout, 1–600000", default: "15000" },
  SIGIL_DKIM_DOMAIN: {
    parse: text.transform((s, ctx) => {
      if (s !== undefined && !DOMAIN_RE.test(s)) {
        ctx.addIssue({ code: "custom", message: "is not a domain name" });
        return z.NEVER;
      }
      return s;
    }),
    meaning: "with SIGIL_DKIM_SELECTOR and SIGIL_DKIM_PRIVATE_KEY_FILE: DKIM-sign outgoing email for this domain",
    default: "— (no DKIM)",
  },
  SIGIL_DKIM_SELECTOR: {
    parse: text.transform((s, ctx) => {
      if (s !== undefined && !SELECTOR_RE.test(s)) {
        ctx.addIssue({ code: "custom", message: "is not a valid selector" });
        return z.NEVER;
      }
      return s;
    }),
    meaning: "the DKIM selector",
    default: "—",
  },
  SIGIL_DKIM_PRIVATE_KEY_FILE: { parse: text, meaning: "the DKIM private key (PEM)", default: "—" },
  SIGIL_CARD_PROCESSOR_URL: {
    parse: url(["https:", "http:"], "an http(s) URL"),
    meaning: "an HTTP card processor instead of the embedded ledger",
    default: "— (the embedded ledger)",
  },
  SIGIL_CARD_PROCESSOR_TOKEN: { parse: given, meaning: "bearer token sent to the card processor", default: "—" },
  SIGIL_CARD_DECLINE_ABOVE_CENTS: {
    parse: wholeNumber(0, Number.MAX_SAFE_INTEGER),
    meaning: "the embedded ledger declines charges above this many cents",
    default: "— (no limit)",
  },
  SIGIL_CARD_LATENCY_MS: { parse: wholeNumber(0, 60_000, 0), meaning: "the embedded ledger waits this long per charge, 0–60000", default: "0" },
  SIGIL_APPROVAL_TIMEOUT_MS: {
    parse: wholeNumber(1_000, 3_600_000, 120_000),
    meaning: "how long the human has to answer an approval, 1000–3600000",
    default: "120000",
  },
  SIGIL_PUBLIC_URL: {
    parse: url(["https:"], "an https URL without credentials", { origin: true, noCredentials: true }),
    meaning:
      "where others reach `sigil serve --http` (e.g. `https://sigil.example`): its host is accepted and request signatures carry `Signature-Agent`",
    default: "—",
  },
  SIGIL_ALLOWED_HOSTS: { parse: list, meaning: "extra `Host` values the HTTP server accepts (comma-separated; behind a proxy)", default: "—" },
  SIGIL_ALLOWED_ORIGINS: { parse: list, meaning: "extra `Origin`s the HTTP server accepts (comma-separated)", default: "—" },
  SIGIL_MAX_SESSIONS_PER_IDENTITY: {
    parse: wholeNumber(1, 10_000, 32),
    meaning: 'HTTP sessions one identity (or the admin token) may hold at once, 1–10000 (see "Limits of the HTTP server")',
    default: "32",
  },
  SIGIL_REQUEST_TIMEOUT_MS: {
    parse: wholeNumber(100, 3_600_000, 30_000),
    meaning: "an HTTP request's headers and body must arrive within this, 100–3600000 (headers within 10 s)",
    default: "30000",
  },
  SIGIL_REFUSALS_PER_MINUTE: {
    parse: wholeNumber(1, 1_000_000, 60),
    meaning: "refusals of one identity written one by one per minute before further ones are throttled and summarised, 1–1000000",
    default: "60",
  },
  SIGIL_VERIFY_THREADS: {
    parse: wholeNumber(0, 1_000),
    meaning: "worker threads for audit verification (0: none; at most 16 are used)",
    default: "one per core",
  },
  SIGIL_INBOUND_SMTP_PORT: {
    parse: wholeNumber(0, 65_535),
    meaning: "with `sigil serve --http`: receive mail for identity addresses on this port (also `--smtp-port`; 0: any free port)",
    default: "— (no inbound mail)",
  },
  SIGIL_INBOUND_TLS_CERT_FILE: { parse: text, meaning: "with SIGIL_INBOUND_TLS_KEY_FILE: the inbound SMTP listener offers STARTTLS with this PEM certificate", default: "— (no STARTTLS)" },
  SIGIL_INBOUND_TLS_KEY_FILE: { parse: text, meaning: "the PEM private key for STARTTLS", default: "—" },
  SIGIL_TEST_DNS_FILE: { parse: given, meaning: "test suite only: DNS answers (JSON) for inbound SPF/DKIM/DMARC checks instead of DNS (never set in production)", default: "—" },
  SIGIL_TEST_FAULTS: { parse: given, meaning: "test suite only: inject file-system faults (never set in production)", default: "—" },
  SIGIL_TEST_CRASH: { parse: given, meaning: "test suite only: kill the process at this named step of an admin operation or agent call (never set in production)", default: "—" },
  SIGIL_TEST_CLOCK_OFFSET_MS: {
    parse: wholeNumber(0, 10 * 365 * 86_400_000),
    meaning: "test suite only: run sigil's clock this many milliseconds ahead (never set in production)",
    default: "—",
  },
  SIGIL_TEST_OAUTH_HTTP_DOCUMENTS: {
    parse: given,
    meaning: "test suite only: accept OAuth client metadata documents over http on a loopback address (never set in production)",
    default: "—",
  },
} satisfies Record<string, { parse: z.ZodType<unknown, string | undefined>; meaning: string; default: string }>;

/** Every variable sigil reads, with its meaning and default (README "Environment", `sigil --help`). */
export const VARIABLES: readonly Variable[] = Object.entries(SPEC).map(([name, v]) => ({ name, meaning: v.meaning, default: v.default }));

const schema = z.object(Object.fromEntries(Object.entries(SPEC).map(([k, v]) => [k, v.parse])) as { [K in keyof typeof SPEC]: (typeof SPEC)[K]["parse"] });

/**
 * The environment as a `Config`. Throws one `ConfigError` naming every bad variable (a value out of
 * range, a URL that is not one, half of a pair); otherwise the same defaults as always.
 */
export function parseConfig(env: Env): Config {
  const r = schema.safeParse(env);
  if (!r.success) {
    const problems = r.error.issues.map((i) => `${String(i.path[0])} ${i.message}`);
    throw new ConfigError(`${problems.join("; ")}.`);
  }
  const e = r.data;
  const pairs: string[] = [];
  const dkimSet = [e.SIGIL_DKIM_DOMAIN, e.SIGIL_DKIM_SELECTOR, e.SIGIL_DKIM_PRIVATE_KEY_FILE].filter((v) => v !== undefined).length;
  if (dkimSet !== 0 && dkimSet !== 3) pairs.push("DKIM needs all of SIGIL_DKIM_DOMAIN, SIGIL_DKIM_SELECTOR and SIGIL_DKIM_PRIVATE_KEY_FILE, or none");
  if ((e.SIGIL_INBOUND_TLS_CERT_FILE === undefined) !== (e.SIGIL_INBOUND_TLS_KEY_FILE === undefined)) pairs.push("STARTTLS needs both SIGIL_INBOUND_TLS_CERT_FILE and SIGIL_INBOUND_TLS_KEY_FILE, or neither");
  if ((e.TWILIO_ACCOUNT_SID === undefined) !== (e.TWILIO_AUTH_TOKEN === undefined)) pairs.push("Twilio needs both TWILIO_ACCOUNT_SID and TWILIO_AUTH_TOKEN, or neither");
  if (pairs.length) throw new ConfigError(`${pairs.join("; ")}.`);
  const opt = <K extends string, V>(key: K, v: V | undefined): { [P in K]?: V } => (v === undefined ? {} : ({ [key]: v } as { [P in K]?: V }));
  return {
    home: e.SIGIL_HOME,
    ...opt("storeUrl", e.SIGIL_STORE_URL),
    ...opt("masterKey", e.SIGIL_MASTER_KEY),
    ...opt("token", e.SIGIL_TOKEN),
    ...opt("tokenFile", e.SIGIL_TOKEN_FILE),
    ...opt("approverToken", e.SIGIL_APPROVER_TOKEN),
    ...opt("publicUrl", e.SIGIL_PUBLIC_URL),
    allowedHosts: e.SIGIL_ALLOWED_HOSTS,
    allowedOrigins: e.SIGIL_ALLOWED_ORIGINS,
    maxSessionsPerIdentity: e.SIGIL_MAX_SESSIONS_PER_IDENTITY,
    requestTimeoutMs: e.SIGIL_REQUEST_TIMEOUT_MS,
    refusalsPerMinute: e.SIGIL_REFUSALS_PER_MINUTE,
    approvalTimeoutMs: e.SIGIL_APPROVAL_TIMEOUT_MS,
    providerTimeoutMs: e.SIGIL_PROVIDER_TIMEOUT_MS,
    ...opt("smtpUrl", e.SIGIL_SMTP_URL),
    ...opt(
      "dkim",
      dkimSet === 3 ? { domainName: e.SIGIL_DKIM_DOMAIN!, keySelector: e.SIGIL_DKIM_SELECTOR!, privateKeyFile: e.SIGIL_DKIM_PRIVATE_KEY_FILE! } : undefined,
    ),
    ...opt("twilio", e.TWILIO_ACCOUNT_SID !== undefined ? { accountSid: e.TWILIO_ACCOUNT_SID, authToken: e.TWILIO_AUTH_TOKEN! } : undefined),
    ...opt("twilioApiUrl", e.SIGIL_TWILIO_API_URL),
    ...opt("cardProcessorUrl", e.SIGIL_CARD_PROCESSOR_URL),
    ...opt("cardProcessorToken", e.SIGIL_CARD_PROCESSOR_TOKEN),
    ...opt("cardDeclineAboveCents", e.SIGIL_CARD_DECLINE_ABOVE_CENTS),
    cardLatencyMs: e.SIGIL_CARD_LATENCY_MS,
    ...opt("verifyThreads", e.SIGIL_VERIFY_THREADS),
    ...opt("inboundSmtpPort", e.SIGIL_INBOUND_SMTP_PORT),
    ...opt("inboundTls", e.SIGIL_INBOUND_TLS_CERT_FILE !== undefined ? { certFile: e.SIGIL_INBOUND_TLS_CERT_FILE, keyFile: e.SIGIL_INBOUND_TLS_KEY_FILE! } : undefined),
    ...opt("testDnsFile", e.SIGIL_TEST_DNS_FILE),
    ...opt("testFaults", e.SIGIL_TEST_FAULTS),
    ...opt("testCrash", e.SIGIL_TEST_CRASH),
    ...opt("testClockOffsetMs", e.SIGIL_TEST_CLOCK_OFFSET_MS),
    ...opt("testOAuthHttpDocuments", e.SIGIL_TEST_OAUTH_HTTP_DOCUMENTS === "1" ? true : undefined),
  };
}

/** The options' `config`, or their `env` parsed (callers that have no parsed config: tests, benches). */
export function configFrom(opts: { config?: Config; env?: Env }): Config {
  return opts.config ?? parseConfig(opts.env ?? {});
}

/** The `Environment:` paragraph of `sigil --help`: every variable's name, one per line with its default. */
export function environmentHelp(): string {
  const width = Math.max(...VARIABLES.map((v) => v.name.length));
  const lines = VARIABLES.map((v) => `  ${v.name.padEnd(width)}  ${v.default.replace(/`/g, "")}`);
  return `\nEnvironment (default; README "Environment" says what each does):\n${lines.join("\n")}`;
}
