/**
 * The inbound SMTP listener (`sigil serve --http --smtp-port N`, SPEC §12), on `smtp-server`.
 *
 * - Mail is accepted only for identity addresses: RCPT TO naming anything else gets 550 at once,
 *   before any data is sent (so is an address of a revoked identity, or of one without the email
 *   channel). At most 50 recipients per message.
 * - At most 10 MiB: a SIZE= above it is refused at MAIL FROM; data past it is not kept while it
 *   streams (read and discarded to its end, then 552); and at most MAX_RECEIVING messages are taken
 *   in at once (another gets 452, which senders retry), so memory stays bounded whatever is sent.
 * - STARTTLS when a certificate is configured (SIGIL_INBOUND_TLS_CERT_FILE / _KEY_FILE); no AUTH:
 *   this is a mail exchanger, not a submission server.
 * - SPF, DKIM and DMARC are evaluated with `mailauth` (ARC and BIMI are not: BIMI fetches logos) and
 *   recorded with the message; a message that does not authenticate its From domain is refused for
 *   an identity whose policy sets `inbound.requireAuthentication` (and recorded as refused).
 * - MIME is parsed with `mailparser`; HTML is reduced to text by it (html-to-text: scripts, styles
 *   and comments dropped, entities decoded); attachments are not kept, only their names and sizes.
 */
import type { Readable } from "node:stream";
import { hostname } from "node:os";
import { domainToASCII } from "node:url";
import { SMTPServer, type SMTPServerAddress, type SMTPServerSession } from "smtp-server";
import { authenticate, type DNSResolver } from "mailauth";
import { simpleParser, type AddressObject } from "mailparser";
import { logInternal, refId } from "../errors.js";
import type { IdentityRecord } from "../../store/types.js";
import { type AuthenticationResults, type Inbox, InboundRefused, MAX_TEXT, type MessageContent } from "./messages.js";

export const MAX_MESSAGE_BYTES = 10 * 1024 * 1024;
/** Messages taken in at once, across connections (each holds up to MAX_MESSAGE_BYTES, then its parse); the next gets 452. */
export const MAX_RECEIVING = 8;
const MAX_RECIPIENTS = 50;

export interface SmtpOptions {
  host: string;
  port: number;
  tls?: { key: Buffer; cert: Buffer };
  /** DNS for SPF, DKIM and DMARC (mailauth's resolver hook); default: the system's. */
  resolver?: DNSResolver;
  maxBytes?: number;
}

interface Session extends SMTPServerSession {
  identities?: Map<string, IdentityRecord>;
}

/** An SMTP reply carrying its code (smtp-server reads `responseCode`). */
function reply(code: number, message: string): Error {
  return Object.assign(new Error(message), { responseCode: code });
}

export async function serveSmtp(inbox: Inbox, opts: SmtpOptions): Promise<{ port: number; close: () => Promise<void> }> {
  const maxBytes = opts.maxBytes ?? MAX_MESSAGE_BYTES;
  let receiving = 0;
  const server = new SMTPServer({
    name: hostname(),
    banner: "sigil inbound",
    size: maxBytes,
    authOptional: true,
    disabledCommands: opts.tls ? ["AUTH"] : ["AUTH", "STARTTLS"],
    ...(opts.tls ? { key: opts.tls.key, cert: opts.tls.cert } : {}),
    hideSTARTTLS: !opts.tls,
    logger: false,
    maxClients: 100,
    socketTimeout: 60_000,
    closeTimeout: 5_000,
    onRcptTo(address: SMTPServerAddress, session: Session, callback: (err?: Error | null) => void) {
      void (async () => {
        const ids = (session.identities ??= new Map());
        if (ids.size >= MAX_RECIPIENTS) return callback(reply(452, "4.5.3 Too many recipients"));
        const rec = await inbox.recipient("email", address.address).catch(() => undefined);
        if (!rec) return callback(reply(550, "5.1.1 No such mailbox here"));
        ids.set(rec.id, rec);
        callback();
      })();
    },
    onData(stream: Readable, session: Session, callback: (err?: Error | null, message?: string) => void) {
      // Each message being received may hold up to maxBytes in memory (then its parse): only so many at once.
      if (receiving >= MAX_RECEIVING) {
        stream.resume(); // read and discarded; the reply comes once it has ended
        return callback(reply(452, "4.3.2 Too many messages are arriving at once; try again later"));
      }
      receiving++;
      let released = false;
      const release = (): void => {
        if (released) return;
        released = true;
        receiving--;
      };
      // The slot is free before the sender hears the answer (it may send its next message at once).
      const done = (err: Error | null, message?: string): void => {
        release();
        callback(err, message);
      };
      void (async () => {
        const chunks: Buffer[] = [];
        let size = 0;
        for await (const chunk of stream) {
          size += (chunk as Buffer).length;
          if (size <= maxBytes) chunks.push(chunk as Buffer);
        }
        if (size > maxBytes || (stream as Readable & { sizeExceeded?: boolean }).sizeExceeded) {
          return done(reply(552, `5.3.4 Message too big: the limit is ${maxBytes} bytes`));
        }
        const raw = Buffer.concat(chunks);
        chunks.length = 0;
        try {
          done(null, await deliver(inbox, raw, session, opts.resolver));
        } catch (err) {
          if (err instanceof InboundRefused) {
            if (err.kind === "temporary") logInternal(refId(), "inbound mail", err);
            const r = err.smtp ?? (err.kind === "temporary" ? { code: 451, status: "4.3.0" } : { code: 550, status: "5.7.1" });
            return done(reply(r.code, `${r.status} ${err.message}`));
          }
          logInternal(refId(), "inbound mail", err);
          done(reply(451, "4.3.0 The message could not be processed; try again later"));
        }
      })().catch((err: unknown) => {
        // The connection went away mid-message (the stream failed): nothing to answer, the slot is freed.
        release();
        logInternal(refId(), "inbound mail", err);
      });
    },
  });
  server.on("error", (err) => logInternal(refId(), "smtp listener", err));
  await new Promise<void>((resolve, reject) => {
    server.server.once("error", reject);
    server.listen(opts.port, opts.host, () => resolve());
  });
  const address = server.server.address();
  const port = typeof address === "object" && address ? address.port : opts.port;
  return {
    port,
    close: () => new Promise<void>((r) => server.close(() => r())),
  };
}

/** Authenticates, parses and stores one message for each recipient identity; the reply text on success. */
async function deliver(inbox: Inbox, raw: Buffer, session: Session, resolver: DNSResolver | undefined): Promise<string> {
  const recipients = [...(session.identities?.values() ?? [])];
  if (recipients.length === 0) throw new InboundRefused("permanent", "no valid recipients");
  const mailFrom = session.envelope.mailFrom ? session.envelope.mailFrom.address : "";
  const auth = await authenticate(raw, {
    ip: session.remoteAddress,
    helo: session.hostNameAppearsAs,
    sender: mailFrom,
    mta: hostname(),
    disableArc: true,
    disableBimi: true,
    ...(resolver ? { resolver } : {}),
  });
  let parsed: Awaited<ReturnType<typeof simpleParser>>;
  try {
    // mailparser bounds what it parses (headers of one MIME node at most 1 MiB, HTML at 2 MiB).
    parsed = await simpleParser(raw, { skipImageLinks: true, skipTextToHtml: true, maxHtmlLengthToParse: 2 * 1024 * 1024 });
  } catch (err) {
    for (const rec of recipients) {
      await inbox.recordRefusal(rec, "email", "unparseable", { from: mailFrom, size: raw.length }).catch((e: unknown) => logInternal(refId(), "inbound refusal", e));
    }
    throw new InboundRefused("permanent", "the message cannot be parsed (headers too large or malformed MIME)", { cause: err, smtp: { code: 554, status: "5.6.0" } });
  }
  const fromAddr = firstAddress(parsed.from);
  const from = (fromAddr?.address ?? mailFrom ?? "").toLowerCase();
  const authentication = authResults(auth, from, sameSender(auth.dkim?.headerFrom, parsed.from, from) && !repeatsShownHeader(parsed.headerLines), parsed.subject !== undefined);
  const text = parsed.text ?? "";
  const content: MessageContent = {
    from,
    ...(fromAddr?.name ? { fromName: fromAddr.name } : {}),
    to: addresses(parsed.to),
    ...(parsed.subject !== undefined ? { subject: parsed.subject } : {}),
    text: text.length > MAX_TEXT ? text.slice(0, MAX_TEXT) : text,
    ...(text.length > MAX_TEXT ? { truncated: true } : {}),
    attachments: parsed.attachments.map((a) => ({ ...(a.filename ? { filename: a.filename } : {}), contentType: a.contentType, size: a.size })),
    authentication,
    envelope: { ...(mailFrom ? { mailFrom } : {}), remoteAddress: session.remoteAddress, helo: session.hostNameAppearsAs },
    ...(parsed.messageId ? { providerId: parsed.messageId } : {}),
  };
  let stored = 0;
  let refused = 0;
  for (const rec of recipients) {
    if (inbox.policyFor(rec).inbound?.requireAuthentication === true && !authentication.fromAuthenticated) {
      refused++;
      await inbox.recordRefusal(rec, "email", "unauthenticated", { from, size: raw.length, authentication }).catch((err: unknown) => logInternal(refId(), "inbound refusal", err));
      continue;
    }
    await inbox.receive(rec, "email", content, { size: raw.length });
    stored++;
  }
  if (stored === 0 && refused > 0) throw new InboundRefused("permanent", "the sender's domain is not authenticated (SPF/DKIM/DMARC), which this mailbox requires");
  // Who wrote is the message's content as much as its text (the log keeps it as a keyed hash): not here.
  process.stderr.write(`sigil: inbound mail (${raw.length} bytes) stored for ${stored} identit${stored === 1 ? "y" : "ies"}\n`);
  return "Message stored";
}

function firstAddress(a: AddressObject | AddressObject[] | undefined): { address?: string; name: string } | undefined {
  const list = Array.isArray(a) ? a : a ? [a] : [];
  for (const obj of list) for (const v of obj.value) if (v.address) return { address: v.address, name: v.name };
  return undefined;
}

function addresses(a: AddressObject | AddressObject[] | undefined): string[] {
  const out: string[] = [];
  for (const obj of Array.isArray(a) ? a : a ? [a] : []) {
    for (const v of obj.value) {
      if (v.address) out.push(v.address);
      for (const g of v.group ?? []) if (g.address) out.push(g.address);
    }
  }
  return out.slice(0, 100);
}

type AuthResult = Awaited<ReturnType<typeof authenticate>>;

/** An address with its domain in ASCII (mailparser shows IDN domains in Unicode, mailauth as written). */
function asciiAddress(a: string): string {
  const at = a.lastIndexOf("@");
  return at < 0 ? a.toLowerCase() : `${a.slice(0, at).toLowerCase()}@${domainToASCII(a.slice(at + 1).toLowerCase()) || a.slice(at + 1).toLowerCase()}`;
}

/**
 * Whether the sender the agent is shown is the one address mailauth judged: the From headers hold
 * exactly one address for mailauth, the first From header exactly one entry for mailparser, and they
 * are the same. Otherwise (two From headers, a list of addresses, an entry one parser drops and the
 * other keeps — e.g. an encoded word in the address) what SPF, DKIM or DMARC vouch for may be
 * another address than the one shown, so none of them authenticates it.
 */
function sameSender(headerFrom: string[] | undefined, parsedFrom: AddressObject | AddressObject[] | undefined, from: string): boolean {
  const entries = (Array.isArray(parsedFrom) ? parsedFrom : parsedFrom ? [parsedFrom] : []).flatMap((o) => o.value);
  if (!headerFrom || headerFrom.length !== 1 || entries.length !== 1 || entries[0]!.group || !entries[0]!.address) return false;
  return asciiAddress(headerFrom[0]!) === asciiAddress(from);
}

/** Header fields a message has at most once (RFC 5322 §3.6, and the top-level MIME ones). */
const SINGLE_HEADERS = new Set(["from", "sender", "reply-to", "to", "cc", "bcc", "subject", "date", "message-id", "in-reply-to", "references", "mime-version", "content-type", "content-transfer-encoding"]);

/**
 * Whether a header that may occur once occurs twice: DKIM verifies the last instance of a field,
 * mailparser shows the first, so a Subject (or Content-Type…) added above a signed message is
 * shown while the signature still passes over the one below it.
 */
function repeatsShownHeader(lines: ReadonlyArray<{ key: string }>): boolean {
  const seen = new Set<string>();
  for (const { key } of lines) {
    const k = key.toLowerCase();
    if (!SINGLE_HEADERS.has(k)) continue;
    if (seen.has(k)) return true;
    seen.add(k);
  }
  return false;
}

/**
 * The three verdicts, and whether any of them authenticates the From domain: never when the parsers
 * disagree on the sender or a shown header is repeated (`agreed` false); by DKIM only with a
 * signature that covers the whole body and signs From and, when there is one, the Subject.
 */
function authResults(auth: AuthResult, from: string, agreed: boolean, hasSubject: boolean): AuthenticationResults {
  const fromDomain = from.includes("@") ? asciiAddress(from).slice(asciiAddress(from).lastIndexOf("@") + 1) : "";
  // Strict alignment (the same domain), unless mailauth itself found a DKIM signature aligned.
  const under = (d: string | undefined): boolean => !!d && fromDomain !== "" && d.toLowerCase() === fromDomain;
  const dkimRows = auth.dkim?.results ?? [];
  const dkimPass = dkimRows.find((r) => r.status?.result === "pass");
  const dkim = dkimPass ? "pass" : (dkimRows[0]?.status?.result ?? "none");
  const spf = auth.spf ? (auth.spf.status?.result ?? "none") : "none";
  const dmarc = auth.dmarc ? (auth.dmarc.status?.result ?? "none") : "none";
  // A signature with a body length (l=) that the body outruns vouches for none of what follows that
  // length: whoever relays a signed message can append anything there (mailauth says `underSized`).
  // A signature that leaves the Subject out lets whoever relays the message rewrite what the agent is shown.
  const signs = (r: (typeof dkimRows)[number], field: string): boolean =>
    String((r as { signingHeaders?: { keys?: string } }).signingHeaders?.keys ?? "")
      .toLowerCase()
      .split(":")
      .some((k) => k.trim() === field);
  const vouches = (r: (typeof dkimRows)[number]): boolean => r.status?.result === "pass" && !r.status.underSized && signs(r, "from") && (!hasSubject || signs(r, "subject"));
  const alignedDkim = dkimRows.some((r) => vouches(r) && (r.status.aligned ? true : under(r.signingDomain)));
  const alignedSpf = spf === "pass" && auth.spf !== false && under(auth.spf.domain);
  // DMARC's pass counts through its SPF alignment (the sending host is the domain's own); through
  // DKIM only when a signature that vouches (above) is aligned, which alignedDkim already says.
  const dmarcSpf = dmarc === "pass" && auth.dmarc !== false && Boolean(auth.dmarc.alignment?.spf?.result);
  return { spf: String(spf), dkim: String(dkim), dmarc: String(dmarc), fromAuthenticated: agreed && (dmarcSpf || alignedDkim || alignedSpf) };
}
