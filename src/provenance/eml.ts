/**
 * Reads a received message (.eml) into what its `Sigil-Signature` covers (email-signature.ts):
 * header fields (unfolded), mailboxes through nodemailer's address parser, RFC 2047 words decoded
 * with libmime, and every leaf body part in order (quoted-printable, base64, 7bit/8bit/binary; text
 * parts decoded as their charset). Anything it cannot read, or reads two ways, makes the check
 * fail, never pass: a second From, To, Cc, Subject, Date or Message-ID, a second Content-Type or
 * Content-Transfer-Encoding in any part, an address group, a multipart without its boundary.
 */
import addressparser from "nodemailer/lib/addressparser/index.js";
import libmime from "libmime";
import {
  EMAIL_SIGNATURE_HEADER,
  emailBodySha256,
  emailPartsSha256,
  type BodyPart,
  type EmailFields,
  type EmailFieldsV1,
  type Mailbox,
} from "./email-signature.js";

type Headers = Array<[string, string]>;

/** The covered headers: each at most once. */
const SINGLE = ["from", "to", "cc", "subject", "date", "message-id"] as const;
const DISPLAY: Record<string, string> = { from: "From", to: "To", cc: "Cc", subject: "Subject", date: "Date", "message-id": "Message-ID" };
/** Headers that decide how a part is read: a second one would let readers disagree. */
const STRUCTURAL = ["content-type", "content-transfer-encoding", "content-disposition", "mime-version"];

function splitMessage(raw: string): { headers: Headers; body: string } {
  const m = /\r?\n\r?\n/.exec(raw);
  const head = m ? raw.slice(0, m.index) : raw;
  const body = m ? raw.slice(m.index + m[0].length) : "";
  const headers: Headers = [];
  for (const line of head.split(/\r?\n/)) {
    if (/^[ \t]/.test(line) && headers.length > 0) {
      headers[headers.length - 1]![1] += line; // unfold: the CRLF goes, the whitespace stays
      continue;
    }
    const colon = line.indexOf(":");
    if (colon <= 0) continue;
    headers.push([line.slice(0, colon).trim().toLowerCase(), line.slice(colon + 1).trim()]);
  }
  for (const name of STRUCTURAL) {
    if (headers.filter(([k]) => k === name).length > 1) throw new Error(`a part has more than one ${name} header`);
  }
  return { headers, body };
}

const get = (h: Headers, name: string): string | undefined => h.find(([k]) => k === name)?.[1];
const getAll = (h: Headers, name: string): string[] => h.filter(([k]) => k === name).map(([, v]) => v);

/** Parses `type/subtype; a=b; c="d"` into its lower-cased type and parameters. */
function contentType(value: string | undefined): { type: string; params: Map<string, string> } {
  const params = new Map<string, string>();
  if (!value) return { type: "text/plain", params };
  const [type, ...rest] = value.split(";");
  for (const p of rest) {
    const eq = p.indexOf("=");
    if (eq < 0) continue;
    const k = p.slice(0, eq).trim().toLowerCase();
    if (params.has(k)) throw new Error(`a Content-Type names its ${k} twice`);
    params.set(k, p.slice(eq + 1).trim().replace(/^"(.*)"$/, "$1"));
  }
  return { type: type!.trim().toLowerCase(), params };
}

function decodeQuotedPrintable(s: string): Buffer {
  const soft = s.replace(/=\r?\n/g, "");
  const bytes: number[] = [];
  for (let i = 0; i < soft.length; i++) {
    const c = soft[i]!;
    if (c === "=" && /^[0-9A-Fa-f]{2}$/.test(soft.slice(i + 1, i + 3))) {
      bytes.push(parseInt(soft.slice(i + 1, i + 3), 16));
      i += 2;
    } else {
      bytes.push(...Buffer.from(c, "latin1"));
    }
  }
  return Buffer.from(bytes);
}

function decodeBytes(headers: Headers, body: string): Buffer {
  const cte = (get(headers, "content-transfer-encoding") ?? "7bit").toLowerCase();
  if (cte === "base64") return Buffer.from(body.replace(/[^A-Za-z0-9+/=]/g, ""), "base64");
  if (cte === "quoted-printable") return decodeQuotedPrintable(body);
  if (cte === "7bit" || cte === "8bit" || cte === "binary") return Buffer.from(body, "latin1");
  throw new Error(`unsupported transfer encoding ${cte}`);
}

function decodeText(headers: Headers, bytes: Buffer): string {
  const charset = (contentType(get(headers, "content-type")).params.get("charset") ?? "us-ascii").toLowerCase();
  return new TextDecoder(charset === "us-ascii" ? "utf-8" : charset, { fatal: true }).decode(bytes);
}

type Leaf = BodyPart & { headers: Headers };

/** Every leaf part, in order (a single-part message is one leaf). */
function leaves(headers: Headers, body: string, depth = 0, out: Leaf[] = []): Leaf[] {
  if (depth > 10) throw new Error("MIME nesting too deep");
  const ct = contentType(get(headers, "content-type"));
  if (ct.type.startsWith("multipart/")) {
    const boundary = ct.params.get("boundary");
    if (!boundary) throw new Error("multipart without a boundary");
    const delimiter = `--${boundary}`;
    const parts: string[][] = [];
    let current: string[] | undefined;
    let closed = false;
    for (const line of body.split(/\r?\n/)) {
      if (line.trimEnd() === `${delimiter}--`) {
        closed = true;
        break;
      }
      if (line.trimEnd() === delimiter) {
        current = [];
        parts.push(current);
      } else if (current) current.push(line);
    }
    if (!closed) throw new Error("a multipart part is not closed");
    // The line break before a delimiter belongs to the delimiter (RFC 2046 §5.1.1).
    for (const p of parts) {
      const { headers: ph, body: pb } = splitMessage(p.join("\r\n"));
      leaves(ph, pb, depth + 1, out);
    }
    return out;
  }
  const attachment = /^\s*attachment/i.test(get(headers, "content-disposition") ?? "");
  const bytes = decodeBytes(headers, body);
  const content = ct.type.startsWith("text/") ? decodeText(headers, bytes) : new Uint8Array(bytes);
  out.push({ type: ct.type, ...(attachment ? { attachment } : {}), content, headers });
  return out;
}

/** Decoded header text (RFC 2047 encoded words). */
function decodeWords(s: string): string {
  return libmime.decodeWords(s);
}

/** The mailboxes of an address-list header (`a@x, "B" <b@y>, =?utf-8?q?C?= <c@z>`); groups are refused. */
export function mailboxes(value: string | undefined): Mailbox[] {
  if (value === undefined) return [];
  return addressparser(value).map((a) => {
    if ("group" in a) throw new Error("an address group, which sigil never sends");
    return { name: decodeWords(a.name ?? ""), address: a.address ?? "" };
  });
}

/** The addr-specs of an address list. */
export function addressList(value: string | undefined): string[] {
  return mailboxes(value).map((m) => m.address);
}

export type ParsedEmail = EmailFields & { v1: EmailFieldsV1; headerValues: string[] };

/** The signed fields of a raw message and its `Sigil-Signature` header values. */
export function parseEml(raw: string): ParsedEmail {
  const { headers, body } = splitMessage(raw);
  for (const name of SINGLE) {
    const n = getAll(headers, name).length;
    if (n > 1) throw new Error(`it has ${n} ${DISPLAY[name]} headers; a signed message has one`);
  }
  const from = mailboxes(get(headers, "from"));
  if (from.length !== 1) throw new Error("the message needs exactly one From address");
  const to = mailboxes(get(headers, "to"));
  const cc = mailboxes(get(headers, "cc"));
  const parts = leaves(headers, body);
  const date = get(headers, "date") ?? "";
  const messageId = get(headers, "message-id") ?? "";
  const firstText = parts.find((p) => p.type === "text/plain" && !p.attachment)?.content;
  return {
    from: from[0]!,
    to,
    cc,
    subject: decodeWords(get(headers, "subject") ?? ""),
    date,
    messageId,
    bodySha256: emailPartsSha256(parts.map(({ type, attachment, content }) => ({ type, ...(attachment ? { attachment } : {}), content }))),
    v1: {
      from: from[0]!.address,
      to: to.map((m) => m.address),
      cc: cc.map((m) => m.address),
      date,
      messageId,
      bodySha256: emailBodySha256(typeof firstText === "string" ? firstText : ""),
    },
    headerValues: getAll(headers, EMAIL_SIGNATURE_HEADER.toLowerCase()),
  };
}
