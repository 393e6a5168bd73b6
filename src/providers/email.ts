/**
 * Outbound email: the offline outbox provider and the SMTP provider, both built on
 * nodemailer.
 *
 * Guarantees (defence in depth; callers validate addresses and policy before this):
 * - Every address (from, to, cc) must be a plain `local@domain` with no whitespace,
 *   control characters or any of `<>(),;:"\[]`, else ProviderError "rejected" and
 *   nothing is composed or sent. Addresses are handed to nodemailer as address
 *   objects, never as strings it would parse as address lists.
 * - The SMTP envelope is explicit: MAIL FROM = `from`, RCPT TO = exactly `to` + `cc`.
 *   There is never a Bcc, an attachment, a user-supplied header, file or URL access
 *   (`disableFileAccess`/`disableUrlAccess`), and Message-ID and Date are the given ones.
 * - The message is composed (and DKIM-signed when configured) once, in memory, with
 *   nodemailer's stream transport; the same bytes go to the outbox `.eml` file or, as
 *   `raw`, to the SMTP server, and are returned as `raw`. `providerId` is the Message-ID.
 * - SMTP honours the URL: smtp:// (STARTTLS when the server offers it), smtps:// (TLS),
 *   user:pass auth, query options. One connection per message; connection, greeting
 *   and socket-idle timeouts are `timeoutMs` (default 15000), and a whole send is
 *   aborted after 4 × `timeoutMs`.
 *
 * Error mapping (SMTP):
 * - a 5xx reply to MAIL FROM / RCPT TO / DATA / end of data → "rejected"; a 5xx refusing
 *   the session (greeting, EHLO, STARTTLS), the login, or 530 "authentication required"
 *   → "unavailable" (an operator problem, not the message's);
 * - a 4xx reply → "unavailable" (the server deferred: it did not take the message);
 * - some recipients refused while others were accepted (nodemailer then sends to the
 *   accepted ones) → "unknown", the public message saying how many were refused;
 * - connection refused, DNS, TLS, auth, connect/greeting/STARTTLS timeouts →
 *   "unavailable" (all happen before MAIL FROM);
 * - any other failure (connection dropped, socket idle timeout, abort, protocol
 *   garbage) is classified by how far the session got. The phase is observed through
 *   nodemailer's documented `transactionLog` logger hook, which reports every command
 *   the client writes, synchronously before it is written: if the `DATA` command was
 *   written (or we cannot tell) → "unknown"; if only earlier commands were → "unavailable".
 *   With PIPELINING nodemailer writes DATA together with MAIL FROM/RCPT TO, so a drop
 *   during the envelope may be reported "unknown": this errs on the side of never
 *   retrying a message that may have gone out. A test pins the hook's behaviour.
 */
import { createPrivateKey } from "node:crypto";
import { readFileSync } from "node:fs";
import nodemailer from "nodemailer";
import type { NodemailerError, SendMailOptions } from "nodemailer";
import { outboxFileName, writeOutboxFile } from "./outbox.js";
import {
  DEFAULT_PROVIDER_TIMEOUT_MS,
  ProviderError,
  type EmailMessage,
  type EmailProvider,
} from "./types.js";

import type { Config } from "../config.js";

export { DEFAULT_PROVIDER_TIMEOUT_MS };

export interface DkimConfig {
  domainName: string;
  keySelector: string;
  privateKey: string;
}

export interface EmailProviderOptions {
  outboxDir: string;
  smtpUrl?: string;
  dkim?: DkimConfig;
  timeoutMs?: number;
}

// ---------------------------------------------------------------------------
// Defensive checks

// No whitespace (incl. Unicode spaces), controls, or address-list / quoting syntax.
const FORBIDDEN_ADDRESS_CHARS = /[\s\u0000-\u001f\u007f-\u009f\u2028\u2029<>(),;:"\\[\]]/u;

/** True when `addr` is a single plain `local@domain` nodemailer cannot read as anything else. */
export function isPlainAddress(addr: unknown): addr is string {
  if (typeof addr !== "string" || addr.length > 254 || FORBIDDEN_ADDRESS_CHARS.test(addr)) return false;
  const at = addr.indexOf("@");
  if (at < 1 || at !== addr.lastIndexOf("@")) return false;
  const domain = addr.slice(at + 1);
  return domain.length > 0 && !domain.startsWith(".") && !domain.endsWith(".") && !domain.includes("..");
}

const MESSAGE_ID = /^<[^<>\s"\\]+@[^<>\s"\\]+>$/;
const HEADER_NAME = /^[A-Za-z][A-Za-z0-9-]{0,75}$/;
// Headers nodemailer builds itself or that define the message's structure/identity.
const RESERVED_HEADERS = new Set([
  "from", "sender", "reply-to", "to", "cc", "bcc", "subject", "date", "message-id",
  "in-reply-to", "references", "mime-version", "content-type", "content-transfer-encoding",
  "content-disposition", "dkim-signature", "return-path", "received", "x-mailer",
]);

function rejectInvalid(what: string): never {
  throw new ProviderError("rejected", `the message was not sent: ${what}`);
}

function checkMessage(msg: EmailMessage): void {
  if (!isPlainAddress(msg.from)) rejectInvalid("the sender address is not a plain address");
  if (!Array.isArray(msg.to) || !Array.isArray(msg.cc)) rejectInvalid("the recipient lists are malformed");
  if (msg.to.length === 0) rejectInvalid("there is no recipient");
  for (const addr of [...msg.to, ...msg.cc]) {
    if (!isPlainAddress(addr)) rejectInvalid("a recipient address is not a plain address");
  }
  if (typeof msg.subject !== "string") rejectInvalid("the subject is not text");
  if (msg.text !== undefined && typeof msg.text !== "string") rejectInvalid("the text body is not text");
  if (msg.html !== undefined && typeof msg.html !== "string") rejectInvalid("the HTML body is not text");
  if (typeof msg.messageId !== "string" || !MESSAGE_ID.test(msg.messageId)) rejectInvalid("the message id is malformed");
  if (!(msg.date instanceof Date) || Number.isNaN(msg.date.getTime())) rejectInvalid("the date is invalid");
  for (const [name, value] of Object.entries(msg.extraHeaders ?? {})) {
    if (!HEADER_NAME.test(name) || RESERVED_HEADERS.has(name.toLowerCase())) rejectInvalid("an extra header name is not allowed");
    if (typeof value !== "string" || /[\u0000-\u001f\u007f]/.test(value)) rejectInvalid("an extra header value is malformed");
  }
}

// ---------------------------------------------------------------------------
// Composition: one code path for both modes.

const SAFETY = { disableFileAccess: true, disableUrlAccess: true } as const;

function mailOptions(msg: EmailMessage): SendMailOptions {
  const addr = (address: string) => ({ name: "", address });
  const options: SendMailOptions = {
    ...SAFETY,
    from: addr(msg.from),
    to: msg.to.map(addr),
    subject: msg.subject,
    messageId: msg.messageId,
    date: msg.date,
    envelope: { from: msg.from, to: [...msg.to, ...msg.cc] },
    attachments: [],
    headers: { ...(msg.extraHeaders ?? {}) },
  };
  if (msg.cc.length > 0) options.cc = msg.cc.map(addr);
  if (msg.text !== undefined) options.text = msg.text;
  if (msg.html !== undefined) options.html = msg.html;
  return options;
}

/** Builds the RFC 5322 bytes (DKIM-signed when configured). */
async function compose(msg: EmailMessage, dkim: DkimConfig | undefined): Promise<Buffer> {
  const composer = nodemailer.createTransport({
    streamTransport: true,
    buffer: true,
    newline: "windows",
    ...SAFETY,
    ...(dkim ? { dkim: { domainName: dkim.domainName, keySelector: dkim.keySelector, privateKey: dkim.privateKey } } : {}),
  });
  try {
    const info = await composer.sendMail(mailOptions(msg));
    const raw = info.message;
    if (!Buffer.isBuffer(raw)) throw new Error("stream transport returned no buffer");
    return raw;
  } catch (err) {
    if (err instanceof ProviderError) throw err;
    throw new ProviderError("rejected", "the message could not be composed; nothing was sent", { cause: err });
  } finally {
    composer.close();
  }
}

// ---------------------------------------------------------------------------
// SMTP phase tracking and error mapping

/** What the SMTP client had written when it failed, as seen through the transaction log. */
export interface SmtpPhase {
  commandsSent: number;
  dataCommandSent: boolean;
}

function phaseTracker(): { phase: SmtpPhase; logger: Record<string, (...args: unknown[]) => void> } {
  const phase: SmtpPhase = { commandsSent: 0, dataCommandSent: false };
  const observe = (entry: unknown, message: unknown) => {
    if (!entry || typeof entry !== "object" || (entry as { tnx?: unknown }).tnx !== "client") return;
    phase.commandsSent++;
    // Only the command verb is looked at; nothing is stored or printed.
    if (typeof message !== "string" || /^DATA\b/i.test(message) || /^BDAT\b/i.test(message)) {
      phase.dataCommandSent = true;
    }
  };
  const noop = () => undefined;
  return { phase, logger: { trace: noop, debug: observe, info: noop, warn: noop, error: noop, fatal: noop } };
}

const NETWORK_CODES = new Set([
  "ECONNREFUSED", "ENOTFOUND", "EAI_AGAIN", "EAI_FAIL", "EAI_NONAME", "EHOSTUNREACH",
  "ENETUNREACH", "EHOSTDOWN", "ENETDOWN", "EADDRNOTAVAIL",
]);
const BEFORE_ENVELOPE_CODES = new Set(["EDNS", "ETLS", "EAUTH", "ENOAUTH", "ECONFIG", "EPROXY", "EOAUTH2", "EREQUIRETLS"]);
const MESSAGE_COMMANDS = new Set(["MAIL FROM", "RCPT TO", "DATA"]);
const BEFORE_ENVELOPE_TIMEOUTS = new Set(["CONNECT_TIMEOUT", "GREETING_TIMEOUT", "UPGRADE_TIMEOUT"]);

/** Maps a nodemailer SMTP error to a ProviderError (see the file comment). */
export function classifySmtpError(err: unknown, phase: SmtpPhase): ProviderError {
  const e = (err ?? {}) as NodemailerError;
  const code = typeof e.code === "string" ? e.code : undefined;
  const responseCode = typeof e.responseCode === "number" ? e.responseCode : undefined;

  if (code === "EAUTH" || code === "ENOAUTH" || responseCode === 530) {
    // 530: "authentication required" (RFC 4954), i.e. the URL lacks credentials
    const suffix = responseCode ? ` (${responseCode})` : "";
    return new ProviderError("unavailable", `the mail server refused sigil's login${suffix}; nothing was sent`, { cause: err });
  }
  // A reply to MAIL FROM / RCPT TO / DATA / the end of data is about this message; a
  // reply refusing the session itself (greeting, EHLO, STARTTLS) is about the server.
  const aboutMessage = code === "EENVELOPE" || code === "EMESSAGE" || MESSAGE_COMMANDS.has(e.command ?? "");
  if (responseCode !== undefined && responseCode >= 500 && responseCode < 600) {
    return aboutMessage
      ? new ProviderError("rejected", `the mail server refused the message (${responseCode}); nothing was sent`, { cause: err })
      : new ProviderError("unavailable", `the mail server refused the connection (${responseCode}); nothing was sent`, { cause: err });
  }
  if (responseCode !== undefined && responseCode >= 400 && responseCode < 500) {
    return new ProviderError("unavailable", `the mail server deferred the message (${responseCode}); nothing was sent`, { cause: err });
  }
  if (code === "EMESSAGE" && !phase.dataCommandSent) {
    // refused locally against the server's advertised SIZE limit
    return new ProviderError("rejected", "the message is larger than the mail server accepts; nothing was sent", { cause: err });
  }
  const original = typeof e.originalCode === "string" ? e.originalCode : undefined;
  if ((code && NETWORK_CODES.has(code)) || (original && NETWORK_CODES.has(original))) {
    return new ProviderError("unavailable", "the mail server could not be reached; nothing was sent", { cause: err });
  }
  if (code && BEFORE_ENVELOPE_CODES.has(code)) {
    return new ProviderError("unavailable", "the connection to the mail server could not be set up; nothing was sent", { cause: err });
  }
  if (code === "ETIMEDOUT" && e.timeoutType && BEFORE_ENVELOPE_TIMEOUTS.has(e.timeoutType)) {
    return new ProviderError("unavailable", "the mail server did not answer in time; nothing was sent", { cause: err });
  }
  if (!phase.dataCommandSent) {
    return new ProviderError("unavailable", "the connection to the mail server failed before the message was sent", { cause: err });
  }
  if (code === "ETIMEDOUT" || code === "EABORT") {
    return new ProviderError("unknown", "the mail server did not answer in time while the message was being sent; it may or may not have been delivered", { cause: err });
  }
  return new ProviderError("unknown", "the connection to the mail server failed while the message was being sent; it may or may not have been delivered", { cause: err });
}

function checkSmtpUrl(smtpUrl: string): void {
  let url: URL;
  try {
    url = new URL(smtpUrl);
  } catch {
    throw new Error("the SMTP URL is not a valid URL"); // never echo it: it may hold a password
  }
  if (url.protocol !== "smtp:" && url.protocol !== "smtps:") {
    throw new Error("the SMTP URL must start with smtp:// or smtps://");
  }
  for (const key of url.searchParams.keys()) {
    // these would switch nodemailer to another transport than SMTP
    if (["pool", "sendmail", "streamTransport", "jsonTransport", "SES", "direct", "service"].includes(key)) {
      throw new Error(`the SMTP URL option "${key}" is not supported`);
    }
  }
}

// ---------------------------------------------------------------------------
// Providers

export function createEmailProvider(opts: EmailProviderOptions): EmailProvider {
  const timeoutMs = opts.timeoutMs ?? DEFAULT_PROVIDER_TIMEOUT_MS;
  if (!Number.isInteger(timeoutMs) || timeoutMs <= 0) throw new Error("timeoutMs must be a positive integer");
  const dkim = opts.dkim;
  if (dkim) {
    try {
      createPrivateKey(dkim.privateKey);
    } catch {
      throw new Error("the DKIM private key is not a PEM private key");
    }
  }
  if (opts.smtpUrl === undefined) {
    return {
      name: "outbox",
      async send(msg) {
        checkMessage(msg);
        const raw = await compose(msg, dkim);
        try {
          await writeOutboxFile(opts.outboxDir, outboxFileName("eml"), raw);
        } catch (err) {
          throw new ProviderError("unavailable", "the outbox could not be written; nothing was sent", { cause: err });
        }
        return { providerId: msg.messageId, raw };
      },
      async close() {},
    };
  }

  const smtpUrl = opts.smtpUrl;
  checkSmtpUrl(smtpUrl);
  return {
    name: "smtp",
    async send(msg) {
      checkMessage(msg);
      const raw = await compose(msg, dkim);
      const { phase, logger } = phaseTracker();
      // A transport per message: one connection, its own phase tracker, nothing shared.
      const transport = nodemailer.createTransport({
        url: smtpUrl,
        connectionTimeout: timeoutMs,
        greetingTimeout: timeoutMs,
        socketTimeout: timeoutMs,
        dnsTimeout: timeoutMs,
        logger,
        transactionLog: true,
        debug: false,
        ...SAFETY,
      });
      let info;
      try {
        info = await transport.sendMail({
          ...SAFETY,
          raw,
          envelope: { from: msg.from, to: [...msg.to, ...msg.cc] },
          signal: AbortSignal.timeout(timeoutMs * 4),
        });
      } catch (err) {
        throw classifySmtpError(err, phase);
      } finally {
        transport.close();
      }
      const refused = Array.isArray(info.rejected) ? info.rejected.length : 0;
      if (refused > 0) {
        // nodemailer goes on with the recipients the server accepted: the message left,
        // but not to everyone. Never report that as a plain success, nor as retryable.
        const codes = [...new Set((info.rejectedErrors ?? []).map((e) => e.responseCode).filter((c) => typeof c === "number"))];
        const suffix = codes.length ? ` (${codes.join(", ")})` : "";
        throw new ProviderError(
          "unknown",
          `the mail server refused ${refused} of ${msg.to.length + msg.cc.length} recipients${suffix}; the message was sent to the others`,
          { cause: Object.assign(new Error("partial delivery"), { providerId: msg.messageId }) },
        );
      }
      return { providerId: msg.messageId, raw };
    },
    async close() {},
  };
}

// ---------------------------------------------------------------------------
// Configuration (src/config.ts)

/**
 * The DKIM key the configuration names (`SIGIL_DKIM_*`, all three or none: checked by
 * src/config.ts), read from its file; the file must hold a PEM private key.
 */
export function loadDkim(dkim: Config["dkim"], readFile: (path: string) => string = (p) => readFileSync(p, "utf8")): DkimConfig | undefined {
  if (!dkim) return undefined;
  const { domainName, keySelector } = dkim;
  let privateKey: string;
  try {
    privateKey = readFile(dkim.privateKeyFile);
  } catch {
    throw new Error("SIGIL_DKIM_PRIVATE_KEY_FILE cannot be read");
  }
  try {
    createPrivateKey(privateKey);
  } catch {
    throw new Error("SIGIL_DKIM_PRIVATE_KEY_FILE does not hold a PEM private key");
  }
  return { domainName, keySelector, privateKey };
}

/** The email provider the configuration selects: SMTP when `SIGIL_SMTP_URL` is set, else the outbox. */
export function emailFrom(config: Pick<Config, "smtpUrl" | "dkim" | "providerTimeoutMs">, outboxDir: string): EmailProvider {
  const smtpUrl = config.smtpUrl;
  const dkim = loadDkim(config.dkim);
  return createEmailProvider({
    outboxDir,
    timeoutMs: config.providerTimeoutMs,
    ...(smtpUrl ? { smtpUrl } : {}),
    ...(dkim ? { dkim } : {}),
  });
}
