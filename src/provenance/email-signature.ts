/**
 * The `Sigil-Signature` e-mail header: lets a recipient check which sigil identity sent a message
 * and that what a reader sees of it — sender (display name included), recipients, Subject, Date,
 * Message-ID and every body part — is what the identity signed. Independent of any mail library:
 * the caller extracts the fields (from a .eml with eml.ts, or from what it is about to send).
 *
 * Header value (format v2, what sigil signs since the Subject and HTML were added):
 *   v=2; id=<identity id>; kid=<RFC 7638 thumbprint>; ts=<unix seconds>;
 *   h=from:to:cc:subject:date:message-id; bh=<base64 body hash>; b=<base64 Ed25519 signature>
 *
 * Signed bytes (UTF-8): EMAIL_V2 prefix ("sigil-email-v2\n") followed by these lines joined by "\n"
 * (no trailing newline):
 *   from:<mailbox>            JSON `[display name, address]`
 *   to:<mailboxes>            JSON array of `[display name, address]`, de-duplicated, sorted
 *   cc:<mailboxes>            same; `[]` when there is no Cc
 *   subject:<subject>         JSON string: the decoded Subject (RFC 2047 words decoded), runs of
 *                             whitespace as one space, trimmed; `""` when there is none
 *   date:<unix seconds>       the Date header parsed as an RFC 5322 date (re-formatting by a mail
 *                             library does not break the signature; the instant does not change)
 *   message-id:<id>           with exactly one pair of angle brackets
 *   bh:<base64 body hash>     see `emailPartsSha256`
 *   id:<identity id>
 *   kid:<thumbprint>
 *   ts:<unix seconds when signed>
 * Display names are decoded and whitespace-collapsed like the Subject; addresses are bare
 * addr-specs, lower-cased as a whole. Each of From, To, Cc, Subject, Date and Message-ID must
 * appear at most once in the message (From, To, Date and Message-ID exactly once): a second
 * instance fails verification, whatever it says (readers differ in which one they show).
 *
 * Body hash: every leaf part of the message, in order (a single-part message is one part):
 *   SHA-256 over, for each part, `<content type>[;attachment]\n<base64 SHA-256 of its canonical
 *   content>\n`. Text parts are canonical as `canonicalEmailBody`; other parts are their decoded
 *   bytes. sigil sends a text/plain part, a text/html part, or both (in that order); an empty
 *   message is one empty text/plain part. A part added, removed, swapped or reordered fails.
 *
 * Canonical text (`canonicalEmailBody`): decoded as its charset, as UTF-8; every line ending (CRLF,
 * lone CR or lone LF) becomes CRLF; all trailing empty lines are removed; a non-empty text then
 * ends in exactly one CRLF; an empty text is zero bytes.
 *
 * Format v1 (before v2; `h=from:to:cc:date:message-id`, prefix "sigil-email-v1\n", addresses only,
 * `bh` over the first text/plain part) did not cover the Subject, display names or the HTML part.
 * A v1 header is refused (`legacy_version`) unless the verifier asks for it (`acceptV1`), and then
 * the result says what it did not check.
 */
import { createHash } from "node:crypto";
import { EMAIL, EMAIL_V2 } from "./domains.js";
import { base64, decodeBase64Strict, jwkThumbprint, signChecked, verifyEd25519, type Signer } from "../crypto/jwk.js";

export const EMAIL_SIGNATURE_HEADER = "Sigil-Signature";
const SIGNED_HEADERS_V1 = "from:to:cc:date:message-id";
const SIGNED_HEADERS = "from:to:cc:subject:date:message-id";
const IDENTITY_ID_RE = /^[A-Za-z0-9][A-Za-z0-9._:-]{0,127}$/;
const ADDRESS_RE = /^[^\s@,<>;"()\\]+@[^\s@,<>;"()\\]+$/;

/** A mailbox as a reader sees it: the display name (decoded; "" when none) and the address. */
export type Mailbox = { name: string; address: string };

/** What format v2 covers. */
export type EmailFields = {
  from: Mailbox;
  to: Mailbox[];
  cc: Mailbox[];
  /** The decoded Subject ("" when the message has none). */
  subject: string;
  /** The Date header value (RFC 5322), e.g. `Tue, 20 Apr 2021 02:07:55 +0000`. */
  date: string;
  messageId: string;
  /** `emailPartsSha256` of the message's body parts. */
  bodySha256: string;
};

/** What format v1 covered (kept to verify old messages on request). */
export type EmailFieldsV1 = {
  from: string;
  to: string[];
  cc: string[];
  date: string;
  messageId: string;
  /** base64 SHA-256 of the canonical first text/plain part (`emailBodySha256`). */
  bodySha256: string;
};

/** One leaf part of a message: its content type (lower case) and decoded content. */
export type BodyPart = { type: string; attachment?: boolean; content: string | Uint8Array };

/** The canonical text bytes defined above. */
export function canonicalEmailBody(text: string | Uint8Array): Uint8Array {
  const s = typeof text === "string" ? text : Buffer.from(text).toString("utf8");
  const normalized = s.replace(/\r\n|\r|\n/g, "\r\n").replace(/(\r\n)+$/, "");
  return new Uint8Array(Buffer.from(normalized === "" ? "" : `${normalized}\r\n`, "utf8"));
}

/** base64(SHA-256(canonical text)): format v1's body hash. */
export function emailBodySha256(text: string | Uint8Array): string {
  return createHash("sha256").update(canonicalEmailBody(text)).digest("base64");
}

/** The body hash of format v2 over every leaf part, in order. */
export function emailPartsSha256(parts: BodyPart[]): string {
  const h = createHash("sha256");
  for (const p of parts) {
    const type = p.type.toLowerCase();
    if (!/^[a-z0-9!#$&^_.+-]+\/[a-z0-9!#$&^_.+-]+$/.test(type)) throw new Error("invalid part content type");
    const content = type.startsWith("text/") ? canonicalEmailBody(p.content) : typeof p.content === "string" ? Buffer.from(p.content, "utf8") : p.content;
    h.update(`${type}${p.attachment ? ";attachment" : ""}\n${createHash("sha256").update(content).digest("base64")}\n`);
  }
  return h.digest("base64");
}

/** The parts sigil's mail composer writes for these bodies: text/plain, text/html, or both in that order. */
export function composedParts(body: { text?: string; html?: string }): BodyPart[] {
  const parts: BodyPart[] = [];
  if (body.text !== undefined && (body.text !== "" || body.html === undefined)) parts.push({ type: "text/plain", content: body.text });
  if (body.html !== undefined) parts.push({ type: "text/html", content: body.html });
  if (parts.length === 0) parts.push({ type: "text/plain", content: "" });
  return parts;
}

/** Decoded header text as compared: whitespace runs (incl. folding) as one space, trimmed. */
export function canonicalText(s: string): string {
  return s.replace(/[\s\u0085\u00a0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000]+/gu, " ").trim();
}

function canonicalAddress(a: string): string {
  const v = a.trim().toLowerCase();
  if (!ADDRESS_RE.test(v)) throw new Error("addresses must be bare addr-specs (local@domain)");
  return v;
}

function canonicalMailbox(m: Mailbox): [string, string] {
  if (typeof m?.name !== "string") throw new Error("a mailbox needs a display name (may be empty)");
  return [canonicalText(m.name), canonicalAddress(m.address)];
}

function canonicalMailboxes(list: Mailbox[]): string {
  const seen = new Map<string, [string, string]>();
  for (const m of list) {
    const c = canonicalMailbox(m);
    seen.set(JSON.stringify(c), c);
  }
  return JSON.stringify([...seen.keys()].sort().map((k) => seen.get(k)!));
}

function canonicalList(list: string[]): string {
  return [...new Set(list.map(canonicalAddress))].sort().join(",");
}

function canonicalDate(date: string): number {
  const ms = Date.parse(date.trim());
  if (!Number.isFinite(ms) || /[\r\n]/.test(date)) throw new Error("date is not a valid RFC 5322 date");
  return Math.floor(ms / 1000);
}

function canonicalMessageId(id: string): string {
  const inner = id.trim().replace(/^<(.*)>$/, "$1");
  if (inner === "" || /[\s<>]/.test(inner) || !/^[\x21-\x7E]+$/.test(inner)) {
    throw new Error("invalid Message-ID");
  }
  return `<${inner}>`;
}

function assertBodyHash(bh: string): void {
  const bytes = decodeBase64Strict(bh);
  if (!bytes || bytes.length !== 32) throw new Error("bodySha256 must be base64 of 32 bytes");
}

type Meta = { identityId: string; kid: string; ts: number };

function trailer(meta: Meta): string[] {
  if (!IDENTITY_ID_RE.test(meta.identityId)) throw new Error("invalid identity id");
  return [`id:${meta.identityId}`, `kid:${meta.kid}`, `ts:${meta.ts}`];
}

/** The exact bytes signed for a message in format v2 (exported for tests and independent verifiers). */
export function emailSignedBytes(fields: EmailFields, meta: Meta): Uint8Array {
  assertBodyHash(fields.bodySha256);
  if (typeof fields.subject !== "string") throw new Error("the subject must be text");
  const lines = [
    `from:${JSON.stringify(canonicalMailbox(fields.from))}`,
    `to:${canonicalMailboxes(fields.to)}`,
    `cc:${canonicalMailboxes(fields.cc)}`,
    `subject:${JSON.stringify(canonicalText(fields.subject))}`,
    `date:${canonicalDate(fields.date)}`,
    `message-id:${canonicalMessageId(fields.messageId)}`,
    `bh:${fields.bodySha256}`,
    ...trailer(meta),
  ];
  return new Uint8Array(Buffer.from(EMAIL_V2 + lines.join("\n"), "utf8"));
}

/** The bytes format v1 signed. */
export function emailSignedBytesV1(fields: EmailFieldsV1, meta: Meta): Uint8Array {
  assertBodyHash(fields.bodySha256);
  const lines = [
    `from:${canonicalAddress(fields.from)}`,
    `to:${canonicalList(fields.to)}`,
    `cc:${canonicalList(fields.cc)}`,
    `date:${canonicalDate(fields.date)}`,
    `message-id:${canonicalMessageId(fields.messageId)}`,
    `bh:${fields.bodySha256}`,
    ...trailer(meta),
  ];
  return new Uint8Array(Buffer.from(EMAIL + lines.join("\n"), "utf8"));
}

export type SignEmailInput = EmailFields & {
  identityId: string;
  signer: Signer;
  /** Signing time (the `ts` tag); defaults to the current time. */
  now?: Date;
};

/** Returns the value of the `Sigil-Signature` header (format v2). */
export async function signEmail(input: SignEmailInput): Promise<string> {
  const kid = jwkThumbprint(input.signer.publicKey);
  const ts = Math.floor((input.now ?? new Date()).getTime() / 1000);
  if (!Number.isSafeInteger(ts)) throw new Error("invalid signing time");
  if (input.to.length + input.cc.length === 0) throw new Error("a message needs a recipient");
  const message = emailSignedBytes(input, { identityId: input.identityId, kid, ts });
  const sig = await signChecked(input.signer, message);
  return `v=2; id=${input.identityId}; kid=${kid}; ts=${ts}; h=${SIGNED_HEADERS}; bh=${input.bodySha256}; b=${base64(sig)}`;
}

export type EmailSignatureError =
  | "malformed_header"
  | "unsupported_version"
  | "legacy_version"
  | "unsupported_header_list"
  | "body_hash_mismatch"
  | "unknown_key"
  | "key_not_valid_at_signing_time"
  | "malformed_fields"
  | "bad_signature";

export type EmailSignatureCheck =
  | { ok: true; identityId: string; kid: string; ts: number; version: 1 | 2 }
  | { ok: false; error: EmailSignatureError };

/** One sentence per failure, for people (the codes are for scripts). */
export const EMAIL_SIGNATURE_ERRORS: Record<EmailSignatureError, string> = {
  malformed_header: "the Sigil-Signature header is malformed",
  unsupported_version: "the Sigil-Signature header has a format version this sigil does not know",
  legacy_version:
    "the Sigil-Signature header is format v1, which does not cover the Subject, display names or HTML part; it is not accepted (--accept-v1 checks only what v1 covers)",
  unsupported_header_list: "the Sigil-Signature header lists other covered headers than its format defines",
  body_hash_mismatch: "the body (a text or HTML part, or their number or order) is not what was signed",
  unknown_key: "the signing key is not among the sender's keys",
  key_not_valid_at_signing_time: "the signing key was not valid when the message was signed",
  malformed_fields: "a covered header (From, To, Cc, Date or Message-ID) cannot be read",
  bad_signature: "the signature does not match the message: the sender, a recipient, the Subject, the Date or the Message-ID was changed, or the signature itself",
};

/** Parses the header value into its tags; undefined when malformed. Folding whitespace is ignored. */
function parseHeaderValue(value: string): Map<string, string> | undefined {
  const unfolded = value.replace(/\r?\n[ \t]+/g, " ").trim().replace(/;$/, "");
  const tags = new Map<string, string>();
  for (const part of unfolded.split(";")) {
    const eq = part.indexOf("=");
    if (eq < 0) return undefined;
    const name = part.slice(0, eq).trim();
    let v = part.slice(eq + 1).trim();
    if (name === "b" || name === "bh") v = v.replace(/[ \t]+/g, "");
    if (!/^[a-z]+$/.test(name) || tags.has(name)) return undefined;
    tags.set(name, v);
  }
  const expected = ["v", "id", "kid", "ts", "h", "bh", "b"];
  if (tags.size !== expected.length || !expected.every((t) => tags.has(t))) return undefined;
  return tags;
}

type PublicKeys = Array<{ publicKey: Uint8Array; notBefore?: string; notAfter?: string }>;

/**
 * Checks a `Sigil-Signature` header against the message's fields and the sending identity's
 * public keys (current and retired, with their validity windows: `ts` must fall inside). `v1`
 * carries what format v1 covered; a v1 header verifies only with `acceptV1`.
 */
export function verifyEmailSignature(
  parsed: EmailFields & { headerValue: string; v1?: EmailFieldsV1 },
  publicKeys: PublicKeys,
  opts: { acceptV1?: boolean } = {},
): EmailSignatureCheck {
  const tags = parseHeaderValue(parsed.headerValue);
  if (!tags) return { ok: false, error: "malformed_header" };
  const version = tags.get("v");
  if (version === "1" && !opts.acceptV1) return { ok: false, error: "legacy_version" };
  if (version !== "1" && version !== "2") return { ok: false, error: "unsupported_version" };
  if (tags.get("h") !== (version === "1" ? SIGNED_HEADERS_V1 : SIGNED_HEADERS)) return { ok: false, error: "unsupported_header_list" };
  const identityId = tags.get("id")!;
  const kid = tags.get("kid")!;
  const tsText = tags.get("ts")!;
  if (!/^(0|[1-9][0-9]{0,15})$/.test(tsText)) return { ok: false, error: "malformed_header" };
  const ts = Number(tsText);
  const bh = tags.get("bh")!;
  const sig = decodeBase64Strict(tags.get("b")!);
  if (!sig || sig.length !== 64) return { ok: false, error: "malformed_header" };
  const v1 = version === "1" ? parsed.v1 : undefined;
  if (version === "1" && !v1) return { ok: false, error: "malformed_fields" };
  if (bh !== (v1 ? v1.bodySha256 : parsed.bodySha256)) return { ok: false, error: "body_hash_mismatch" };

  const key = publicKeys.find((k) => jwkThumbprint(k.publicKey) === kid);
  if (!key) return { ok: false, error: "unknown_key" };
  const nbf = key.notBefore === undefined ? undefined : Date.parse(key.notBefore) / 1000;
  const exp = key.notAfter === undefined ? undefined : Date.parse(key.notAfter) / 1000;
  if ((nbf !== undefined && !(ts >= Math.floor(nbf))) || (exp !== undefined && !(ts <= exp))) {
    return { ok: false, error: "key_not_valid_at_signing_time" };
  }
  let message: Uint8Array;
  try {
    message = v1 ? emailSignedBytesV1(v1, { identityId, kid, ts }) : emailSignedBytes(parsed, { identityId, kid, ts });
  } catch {
    return { ok: false, error: "malformed_fields" };
  }
  if (!verifyEd25519(key.publicKey, message, sig)) return { ok: false, error: "bad_signature" };
  return { ok: true, identityId, kid, ts, version: v1 ? 1 : 2 };
}
