/**
 * Just enough of RFC 5322 / MIME to check a received message's `Sigil-Signature` with no mail
 * library: header fields (unfolded), addr-specs out of address lists, and the decoded text/plain
 * body (first text/plain part that is not an attachment; quoted-printable, base64, 7bit/8bit; the
 * part's charset). Anything it cannot read makes the check fail, never pass.
 */
import { EMAIL_SIGNATURE_HEADER, emailBodySha256, type EmailFields } from "./email-signature.js";

type Headers = Array<[string, string]>;

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
    params.set(p.slice(0, eq).trim().toLowerCase(), p.slice(eq + 1).trim().replace(/^"(.*)"$/, "$1"));
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

function decodePart(headers: Headers, body: string): string {
  const cte = (get(headers, "content-transfer-encoding") ?? "7bit").toLowerCase();
  let bytes: Buffer;
  if (cte === "base64") bytes = Buffer.from(body.replace(/[^A-Za-z0-9+/=]/g, ""), "base64");
  else if (cte === "quoted-printable") bytes = decodeQuotedPrintable(body);
  else if (cte === "7bit" || cte === "8bit" || cte === "binary") bytes = Buffer.from(body, "latin1");
  else throw new Error(`unsupported transfer encoding ${cte}`);
  const charset = (contentType(get(headers, "content-type")).params.get("charset") ?? "us-ascii").toLowerCase();
  return new TextDecoder(charset === "us-ascii" ? "utf-8" : charset, { fatal: true }).decode(bytes);
}

/** The decoded first text/plain part that is not an attachment, or undefined. */
function textPart(headers: Headers, body: string, depth = 0): string | undefined {
  if (depth > 10) throw new Error("MIME nesting too deep");
  const ct = contentType(get(headers, "content-type"));
  if (ct.type.startsWith("multipart/")) {
    const boundary = ct.params.get("boundary");
    if (!boundary) throw new Error("multipart without a boundary");
    const delimiter = `--${boundary}`;
    const lines = body.split(/\r?\n/);
    const parts: string[][] = [];
    let current: string[] | undefined;
    for (const line of lines) {
      if (line.trimEnd() === `${delimiter}--`) break;
      if (line.trimEnd() === delimiter) {
        current = [];
        parts.push(current);
      } else if (current) current.push(line);
    }
    for (const p of parts) {
      const { headers: ph, body: pb } = splitMessage(p.join("\r\n"));
      const found = textPart(ph, pb, depth + 1);
      if (found !== undefined) return found;
    }
    return undefined;
  }
  if (ct.type !== "text/plain") return undefined;
  if (/^\s*attachment/i.test(get(headers, "content-disposition") ?? "")) return undefined;
  return decodePart(headers, body);
}

/** The addr-specs of an address list (`a@x, "B" <b@y>, =?utf-8?q?C?= <c@z>`). */
export function addressList(value: string | undefined): string[] {
  if (!value) return [];
  const out: string[] = [];
  let cur = "";
  let quoted = false;
  let angle = 0;
  for (const ch of value) {
    if (ch === '"' && angle === 0) quoted = !quoted;
    else if (!quoted && ch === "<") angle++;
    else if (!quoted && ch === ">") angle = Math.max(0, angle - 1);
    if (ch === "," && !quoted && angle === 0) {
      out.push(cur);
      cur = "";
    } else cur += ch;
  }
  out.push(cur);
  return out
    .map((a) => {
      const m = /<([^<>]*)>\s*$/.exec(a);
      return (m ? m[1]! : a.replace(/\([^)]*\)/g, "")).trim();
    })
    .filter((a) => a !== "");
}

export type ParsedEmail = EmailFields & { headerValues: string[] };

/** The signed fields of a raw message and its `Sigil-Signature` header values. */
export function parseEml(raw: string): ParsedEmail {
  const { headers, body } = splitMessage(raw);
  const from = addressList(get(headers, "from"));
  if (from.length !== 1) throw new Error("the message needs exactly one From address");
  const text = textPart(headers, body) ?? "";
  return {
    from: from[0]!,
    to: getAll(headers, "to").flatMap(addressList),
    cc: getAll(headers, "cc").flatMap(addressList),
    date: get(headers, "date") ?? "",
    messageId: get(headers, "message-id") ?? "",
    bodySha256: emailBodySha256(text),
    headerValues: getAll(headers, EMAIL_SIGNATURE_HEADER.toLowerCase()),
  };
}
