/**
 * Outbound SMS and voice calls: the offline outbox provider and the Twilio provider.
 *
 * Guarantees (defence in depth; callers validate numbers and policy before this):
 * - `from` and `to` must be E.164 (`+` then 2–15 digits), the SMS body non-empty text of at
 *   most 1600 characters, the spoken message non-empty text whose TwiML fits Twilio's
 *   4000-character limit; otherwise ProviderError "rejected" and nothing is sent.
 * - A call's TwiML is always built here: `<Response><Say>ESCAPED</Say></Response>` with
 *   the message XML-escaped (& < > " ') and control characters stripped. A caller can
 *   never supply a URL, TwiML or digits to play.
 * - Outbox mode writes one `.json` file per SMS/call (durably, 0600, see outbox.ts):
 *   `{kind:"sms", from, to, body, createdAt, id}` / `{kind:"call", from, to, twiml, message,
 *   createdAt, id}`; ids look like Twilio's (`SM…` / `CA…` + 32 random hex digits).
 * - Twilio mode uses the `twilio` library (Basic auth, form fields From/To/Body or
 *   From/To/Twiml), never retries by itself (no autoRetry, no keep-alive reuse), never
 *   logs to stdout, and bounds every request by `timeoutMs` (default 15000) of idleness
 *   and 2 × `timeoutMs` in all. When `apiUrl` is set, the request's origin
 *   (https://api.twilio.com) is replaced by it and the path kept, for Twilio-compatible
 *   providers and tests.
 *
 * Error mapping (Twilio):
 * - HTTP 401 → "unavailable" (sigil's credentials are refused: an operator problem,
 *   nothing was sent);
 * - other HTTP 4xx → "rejected", with Twilio's numeric error code when present
 *   (never the raw body);
 * - HTTP 429, and HTTP 503 with Twilio's JSON error body → "unavailable" (Twilio did not act);
 * - any other HTTP 5xx, or 503 without Twilio's JSON → "unknown" (Twilio may have acted);
 * - connection refused, DNS failure, unreachable host, TLS handshake failure →
 *   "unavailable" (the request never left);
 * - a timeout, a reset or dropped connection → "unknown";
 * - a 2xx whose body is not JSON or carries no usable `sid`, a 3xx, anything else → "unknown".
 */
import { randomBytes } from "node:crypto";
import type TwilioLib from "twilio";
import { outboxFileName, prepareOutboxFile, writeOutboxFile } from "./outbox.js";
import type { Config } from "../config.js";
import {
  DEFAULT_PROVIDER_TIMEOUT_MS,
  ProviderError,
  type CallRequest,
  type SmsRequest,
  type TelephonyProvider,
} from "./types.js";

export interface TwilioConfig {
  accountSid: string;
  authToken: string;
  /** Replaces the origin `https://api.twilio.com`, e.g. `http://127.0.0.1:PORT`. */
  apiUrl?: string;
}

export interface TelephonyProviderOptions {
  outboxDir: string;
  twilio?: TwilioConfig;
  timeoutMs?: number;
}

// ---------------------------------------------------------------------------
// Defensive checks and TwiML

const E164 = /^\+[1-9][0-9]{1,14}$/;
export const MAX_SMS_BODY = 1600;
export const MAX_TWIML = 4000;

// C0/C1 controls except tab, LF, CR (which XML allows), and code points XML forbids.
const XML_FORBIDDEN = /[\u0000-\u0008\u000b\u000c\u000e-\u001f\u007f-\u009f\ufffe\uffff]|[\ud800-\udbff](?![\udc00-\udfff])|(?<![\ud800-\udbff])[\udc00-\udfff]/g;

/** XML text escaping for the message to be spoken; control characters are dropped. */
export function escapeXmlText(text: string): string {
  return text
    .replace(XML_FORBIDDEN, "")
    .replace(/&/g, "&amp;")
    .replace(/</g, "&lt;")
    .replace(/>/g, "&gt;")
    .replace(/"/g, "&quot;")
    .replace(/'/g, "&apos;");
}

/** The only TwiML sigil ever sends: say the message. */
export function buildSayTwiml(message: string): string {
  return `<?xml version="1.0" encoding="UTF-8"?><Response><Say>${escapeXmlText(message)}</Say></Response>`;
}

function reject(what: string): never {
  throw new ProviderError("rejected", `nothing was sent: ${what}`);
}

function checkNumbers(r: { from: unknown; to: unknown }): void {
  if (typeof r.from !== "string" || !E164.test(r.from)) reject("the sender number is not an E.164 number");
  if (typeof r.to !== "string" || !E164.test(r.to)) reject("the destination number is not an E.164 number");
}

function checkSms(r: SmsRequest): void {
  checkNumbers(r);
  if (typeof r.body !== "string" || r.body.length === 0) reject("the message body is empty");
  if (r.body.length > MAX_SMS_BODY) reject(`the message body is longer than ${MAX_SMS_BODY} characters`);
}

function callTwiml(r: CallRequest): string {
  checkNumbers(r);
  if (typeof r.message !== "string" || r.message.trim().length === 0) reject("the message to speak is empty");
  const twiml = buildSayTwiml(r.message);
  if (twiml.length > MAX_TWIML) reject("the message to speak is too long");
  return twiml;
}

function fakeSid(prefix: "SM" | "CA"): string {
  return prefix + randomBytes(16).toString("hex");
}

// ---------------------------------------------------------------------------
// Twilio error mapping

type Channel = "sms" | "call";
const NOUN: Record<Channel, string> = { sms: "the SMS", call: "the call" };

const UNSENT_NETWORK_CODES = new Set([
  "ECONNREFUSED", "ENOTFOUND", "EAI_AGAIN", "EAI_FAIL", "EAI_NONAME", "EHOSTUNREACH",
  "ENETUNREACH", "EHOSTDOWN", "ENETDOWN", "EADDRNOTAVAIL", "ERR_INVALID_URL",
]);
const TLS_CODE = /^(ERR_TLS_|ERR_SSL_|CERT_|DEPTH_ZERO_SELF_SIGNED_CERT$|SELF_SIGNED_CERT_IN_CHAIN$|UNABLE_TO_(GET|VERIFY)_|HOSTNAME_MISMATCH$)/;

interface HttpFailure {
  status: number;
  code?: unknown;
  moreInfo?: unknown;
  type?: unknown;
}

/** Twilio's RestException / TwilioServiceException: an HTTP status was received. */
function httpFailure(err: unknown): HttpFailure | undefined {
  if (!err || typeof err !== "object" || (err as { isAxiosError?: unknown }).isAxiosError) return undefined;
  const status = (err as { status?: unknown }).status;
  return typeof status === "number" && Number.isInteger(status) && status >= 100 && status < 600
    ? (err as HttpFailure)
    : undefined;
}

/** Maps an error from the twilio library (or our response checks) to a ProviderError. */
export function classifyTwilioError(err: unknown, channel: Channel): ProviderError {
  if (err instanceof ProviderError) return err;
  const noun = NOUN[channel];
  const http = httpFailure(err);
  if (http) {
    const { status } = http;
    const twilioCode = typeof http.code === "number" && Number.isInteger(http.code) ? http.code : undefined;
    // A RestException carries a code/more_info only when the body was Twilio's JSON error;
    // a TwilioServiceException (RFC 9457) always comes from a JSON body.
    const twilioJson = twilioCode !== undefined || typeof http.moreInfo === "string" || typeof http.type === "string";
    const detail = twilioCode !== undefined ? `Twilio error ${twilioCode}` : `HTTP ${status}`;
    if (status === 401) {
      return new ProviderError("unavailable", `the telephony provider refused sigil's credentials (${detail}); ${noun} was not sent`, { cause: err });
    }
    if (status === 429 || (status === 503 && twilioJson)) {
      return new ProviderError("unavailable", `the telephony provider is busy (${detail}); ${noun} was not sent`, { cause: err });
    }
    if (status >= 400 && status < 500) {
      return new ProviderError("rejected", `the telephony provider refused ${noun} (${detail}); nothing was sent`, { cause: err });
    }
    if (status >= 500) {
      return new ProviderError("unknown", `the telephony provider failed (${detail}); ${noun} may or may not have been sent`, { cause: err });
    }
    return new ProviderError("unknown", `the telephony provider gave an unexpected answer (HTTP ${status}); ${noun} may or may not have been sent`, { cause: err });
  }
  const code = err && typeof err === "object" ? (err as { code?: unknown }).code : undefined;
  if (typeof code === "string") {
    if (UNSENT_NETWORK_CODES.has(code)) {
      return new ProviderError("unavailable", `the telephony provider could not be reached; ${noun} was not sent`, { cause: err });
    }
    if (TLS_CODE.test(code)) {
      return new ProviderError("unavailable", `a secure connection to the telephony provider could not be set up; ${noun} was not sent`, { cause: err });
    }
    if (code === "ECONNABORTED" || code === "ETIMEDOUT" || code === "ESOCKETTIMEDOUT") {
      return new ProviderError("unknown", `the telephony provider did not answer in time; ${noun} may or may not have been sent`, { cause: err });
    }
  }
  if (err instanceof SyntaxError || err instanceof MalformedAnswer) {
    return new ProviderError("unknown", `the telephony provider's answer could not be read; ${noun} may or may not have been sent`, { cause: err });
  }
  return new ProviderError("unknown", `the connection to the telephony provider failed; ${noun} may or may not have been sent`, { cause: err });
}

class MalformedAnswer extends Error {}

const SID = /^[A-Za-z]{2}[A-Za-z0-9]{1,62}$/;

function sidOf(answer: unknown): string {
  const sid = answer && typeof answer === "object" ? (answer as { sid?: unknown }).sid : undefined;
  if (typeof sid !== "string" || !SID.test(sid)) throw new MalformedAnswer("no usable sid in the provider's answer");
  return sid;
}

// ---------------------------------------------------------------------------
// Twilio client with an overridable origin

type RequestOptions = Parameters<InstanceType<typeof TwilioLib.RequestClient>["request"]>[0];

let twilioLib: Promise<typeof TwilioLib> | undefined;
/**
 * The twilio library (~7 MB of source, its own chunk of the bundle), imported by the first Twilio
 * provider made: a process that delivers to the outbox never loads it (it was most of `sigil
 * serve`'s heap growth on the first send_sms: its source and objects stayed resident).
 */
function loadTwilio(): Promise<typeof TwilioLib> {
  return (twilioLib ??= import("twilio").then((m) => ((m as unknown as { default?: typeof TwilioLib }).default ?? (m as unknown as typeof TwilioLib))));
}

/** Rewrites `scheme://host[:port]` of every request to `apiUrl` (plus its path prefix), keeping the path. */
export function rewriteOrigin(uri: string, apiUrl: string): string {
  const target = new URL(uri);
  const base = new URL(apiUrl);
  const prefix = base.pathname.replace(/\/+$/, "");
  return `${base.origin}${prefix}${target.pathname}${target.search}`;
}

function checkApiUrl(apiUrl: string): void {
  let url: URL;
  try {
    url = new URL(apiUrl);
  } catch {
    throw new Error("the Twilio API URL is not a valid URL");
  }
  if (url.protocol !== "https:" && url.protocol !== "http:") throw new Error("the Twilio API URL must be http:// or https://");
  if (url.username || url.password || url.search || url.hash) {
    throw new Error("the Twilio API URL must be an origin (and optional path) without credentials, query or fragment");
  }
}

function makeHttpClient(twilio: typeof TwilioLib, timeoutMs: number, apiUrl: string | undefined): InstanceType<typeof TwilioLib.RequestClient> {
  const clientOpts = { timeout: timeoutMs, keepAlive: false, autoRetry: false };
  if (apiUrl === undefined) return new twilio.RequestClient(clientOpts);
  class OriginRewritingClient extends twilio.RequestClient {
    override request<TData>(opts: RequestOptions & { data?: TData }) {
      return super.request<TData>({ ...opts, uri: rewriteOrigin(opts.uri, apiUrl as string) });
    }
  }
  return new OriginRewritingClient(clientOpts);
}

// ---------------------------------------------------------------------------
// Providers

export function createTelephonyProvider(opts: TelephonyProviderOptions): TelephonyProvider {
  const timeoutMs = opts.timeoutMs ?? DEFAULT_PROVIDER_TIMEOUT_MS;
  if (!Number.isInteger(timeoutMs) || timeoutMs <= 0) throw new Error("timeoutMs must be a positive integer");

  if (!opts.twilio) {
    const write = async (record: Record<string, string>) => {
      try {
        await writeOutboxFile(opts.outboxDir, outboxFileName("json"), JSON.stringify(record, null, 2) + "\n");
      } catch (err) {
        throw new ProviderError("unavailable", "the outbox could not be written; nothing was sent", { cause: err });
      }
    };
    const unavailable = (err: unknown) => new ProviderError("unavailable", "the outbox could not be written; nothing was sent", { cause: err });
    return {
      name: "outbox",
      async sendSms(r) {
        checkSms(r);
        const id = fakeSid("SM");
        await write({ kind: "sms", from: r.from, to: r.to, body: r.body, createdAt: new Date().toISOString(), id });
        return { providerId: id };
      },
      // Two phases: the record is written to a temporary file and fsync'd (while the intent entry
      // is flushed); the rename to its final name, made durable, is the delivery.
      async prepareSms(r) {
        checkSms(r);
        const id = fakeSid("SM");
        const record = { kind: "sms", from: r.from, to: r.to, body: r.body, createdAt: new Date().toISOString(), id };
        let file: Awaited<ReturnType<typeof prepareOutboxFile>>;
        try {
          file = await prepareOutboxFile(opts.outboxDir, JSON.stringify(record, null, 2) + "\n");
        } catch (err) {
          throw unavailable(err);
        }
        return {
          request: r,
          async send() {
            try {
              await file.deliver(outboxFileName("json"));
            } catch (err) {
              throw unavailable(err);
            }
            return { providerId: id };
          },
          discard: () => file.discard(),
        };
      },
      async placeCall(r) {
        const twiml = callTwiml(r);
        const id = fakeSid("CA");
        await write({ kind: "call", from: r.from, to: r.to, twiml, message: r.message, createdAt: new Date().toISOString(), id });
        return { providerId: id };
      },
    };
  }

  const { accountSid, authToken, apiUrl } = opts.twilio;
  if (typeof accountSid !== "string" || !/^AC[A-Za-z0-9]{1,62}$/.test(accountSid)) {
    throw new Error("the Twilio account SID must start with AC");
  }
  if (typeof authToken !== "string" || authToken.length === 0) throw new Error("the Twilio auth token is empty");
  if (apiUrl !== undefined) checkApiUrl(apiUrl);
  // Imported now (in the background), used by the first message or call.
  const lib = loadTwilio();
  lib.catch(() => undefined); // a failed import is reported by the call that needs it
  let client: ReturnType<typeof TwilioLib> | undefined;
  const twilioClient = async (): Promise<ReturnType<typeof TwilioLib>> => {
    if (client) return client;
    let twilio: typeof TwilioLib;
    try {
      twilio = await lib;
    } catch (err) {
      throw new ProviderError("unavailable", "the telephony provider's library cannot be loaded; nothing was sent", { cause: err });
    }
    return (client ??= twilio(accountSid, authToken, {
      httpClient: makeHttpClient(twilio, timeoutMs, apiUrl),
      autoRetry: false,
      logLevel: "warn", // never "debug": that prints requests to stdout, which stdio MCP owns
      env: {},
    }));
  };

  // The request timeout is an idle timeout; this bounds a whole request (e.g. a server
  // that trickles bytes). The request cannot be cancelled, so its outcome is unknown.
  const withDeadline = async <T>(work: Promise<T>): Promise<T> => {
    let timer: NodeJS.Timeout | undefined;
    const deadline = new Promise<never>((_, reject) => {
      timer = setTimeout(() => reject(Object.assign(new Error("request deadline exceeded"), { code: "ETIMEDOUT" })), timeoutMs * 2);
      timer.unref();
    });
    try {
      return await Promise.race([work, deadline]);
    } finally {
      clearTimeout(timer);
      work.catch(() => undefined); // a late failure after the deadline is not unhandled
    }
  };

  return {
    name: "twilio",
    async sendSms(r) {
      checkSms(r);
      const client = await twilioClient();
      try {
        const answer: unknown = await withDeadline(client.messages.create({ from: r.from, to: r.to, body: r.body }));
        return { providerId: sidOf(answer) };
      } catch (err) {
        throw classifyTwilioError(err, "sms");
      }
    },
    async placeCall(r) {
      const twiml = callTwiml(r);
      const client = await twilioClient();
      try {
        const answer: unknown = await withDeadline(client.calls.create({ from: r.from, to: r.to, twiml }));
        return { providerId: sidOf(answer) };
      } catch (err) {
        throw classifyTwilioError(err, "call");
      }
    },
  };
}

// ---------------------------------------------------------------------------
// Configuration (src/config.ts)

/**
 * The telephony provider the configuration selects: Twilio when `TWILIO_ACCOUNT_SID` and
 * `TWILIO_AUTH_TOKEN` are set (origin overridable by `SIGIL_TWILIO_API_URL`), the outbox when
 * neither is (one without the other is refused by src/config.ts).
 */
export function telephonyFrom(config: Pick<Config, "twilio" | "twilioApiUrl" | "providerTimeoutMs">, outboxDir: string): TelephonyProvider {
  const timeoutMs = config.providerTimeoutMs;
  if (!config.twilio) return createTelephonyProvider({ outboxDir, timeoutMs });
  const apiUrl = config.twilioApiUrl;
  return createTelephonyProvider({ outboxDir, timeoutMs, twilio: { ...config.twilio, ...(apiUrl ? { apiUrl } : {}) } });
}
