/**
 * The `Sigil-Signature` e-mail header: lets a recipient check which sigil identity sent a message
 * and that its sender, recipients, date, Message-ID and text body are what the identity signed.
 * Independent of any mail library: the caller extracts the fields (from a .eml, or from what it
 * is about to send).
 *
 * Header value:
 *   v=1; id=<identity id>; kid=<RFC 7638 thumbprint>; ts=<unix seconds>;
 *   h=from:to:cc:date:message-id; bh=<base64 body hash>; b=<base64 Ed25519 signature>
 *
 * Signed bytes (UTF-8): EMAIL prefix ("sigil-email-v1\n") followed by these lines joined by "\n"
 * (no trailing newline):
 *   from:<address>
 *   to:<addresses>            lower-cased, de-duplicated, sorted (UTF-16 code unit order), joined by ","
 *   cc:<addresses>            same; empty when there are none
 *   date:<unix seconds>       the Date header parsed as an RFC 5322 date (so re-formatting by a
 *                             mail library does not break the signature; the instant does not change)
 *   message-id:<id>           with exactly one pair of angle brackets
 *   bh:<base64 SHA-256 of the canonical body>
 *   id:<identity id>
 *   kid:<thumbprint>
 *   ts:<unix seconds when signed>
 * Addresses are bare addr-specs (`local@domain`, no display name), lower-cased as a whole.
 *
 * Canonical body (see `canonicalEmailBody`): the decoded text/plain part as UTF-8; every line
 * ending (CRLF, lone CR or lone LF) becomes CRLF; all trailing empty lines are removed; a
 * non-empty body then ends in exactly one CRLF; an empty body is zero bytes.
 */
import { createHash } from "node:crypto";
import { EMAIL } from "./domains.js";
import { base64, decodeBase64Strict, jwkThumbprint, signChecked, verifyEd25519, type Signer } from "../crypto/jwk.js";

export const EMAIL_SIGNATURE_HEADER = "Sigil-Signature";
const SIGNED_HEADERS = "from:to:cc:date:message-id";
const IDENTITY_ID_RE = /^[A-Za-z0-9][A-Za-z0-9._:-]{0,127}$/;
const ADDRESS_RE = /^[^\s@,<>;"()\\]+@[^\s@,<>;"()\\]+$/;

export type EmailFields = {
  from: string;
  to: string[];
  cc: string[];
  /** The Date header value (RFC 5322), e.g. `Tue, 20 Apr 2021 02:07:55 +0000`. */
  date: string;
  messageId: string;
  /** base64 SHA-256 of the canonical body (`emailBodySha256`). */
  bodySha256: string;
};

/** The canonical body bytes defined above. */
export function canonicalEmailBody(text: string | Uint8Array): Uint8Array {
  const s = typeof text === "string" ? text : Buffer.from(text).toString("utf8");
  const normalized = s.replace(/\r\n|\r|\n/g, "\r\n").replace(/(\r\n)+$/, "");
  return new Uint8Array(Buffer.from(normalized === "" ? "" : `${normalized}\r\n`, "utf8"));
}

/** base64(SHA-256(canonical body)). */
export function emailBodySha256(text: string | Uint8Array): string {
  return createHash("sha256").update(canonicalEmailBody(text)).digest("base64");
}

function canonicalAddress(a: string): string {
  const v = a.trim().toLowerCase();
  if (!ADDRESS_RE.test(v)) throw new Error("addresses must be bare addr-specs (local@domain)");
  return v;
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

/** The exact bytes signed for a message (exported for tests and for independent verifiers). */
export function emailSignedBytes(
  fields: EmailFields,
  meta: { identityId: string; kid: string; ts: number },
): Uint8Array {
  if (!IDENTITY_ID_RE.test(meta.identityId)) throw new Error("invalid identity id");
  assertBodyHash(fields.bodySha256);
  const lines = [
    `from:${canonicalAddress(fields.from)}`,
    `to:${canonicalList(fields.to)}`,
    `cc:${canonicalList(fields.cc)}`,
    `date:${canonicalDate(fields.date)}`,
    `message-id:${canonicalMessageId(fields.messageId)}`,
    `bh:${fields.bodySha256}`,
    `id:${meta.identityId}`,
    `kid:${meta.kid}`,
    `ts:${meta.ts}`,
  ];
  return new Uint8Array(Buffer.from(EMAIL + lines.join("\n"), "utf8"));
}

export type SignEmailInput = EmailFields & {
  identityId: string;
  signer: Signer;
  /** Signing time (the `ts` tag); defaults to the current time. */
  now?: Date;
};

/** Returns the value of the `Sigil-Signature` header. */
export async function signEmail(input: SignEmailInput): Promise<string> {
  const kid = jwkThumbprint(input.signer.publicKey);
  const ts = Math.floor((input.now ?? new Date()).getTime() / 1000);
  if (!Number.isSafeInteger(ts)) throw new Error("invalid signing time");
  if (input.to.length + input.cc.length === 0) throw new Error("a message needs a recipient");
  const message = emailSignedBytes(input, { identityId: input.identityId, kid, ts });
  const sig = await signChecked(input.signer, message);
  return `v=1; id=${input.identityId}; kid=${kid}; ts=${ts}; h=${SIGNED_HEADERS}; bh=${input.bodySha256}; b=${base64(sig)}`;
}

export type EmailSignatureCheck =
  | { ok: true; identityId: string; kid: string; ts: number }
  | { ok: false; error: string };

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

/**
 * Checks a `Sigil-Signature` header against the message's fields and the sending identity's
 * public keys (current and retired, with their validity windows: `ts` must fall inside).
 */
export function verifyEmailSignature(
  parsed: EmailFields & { headerValue: string },
  publicKeys: Array<{ publicKey: Uint8Array; notBefore?: string; notAfter?: string }>,
): EmailSignatureCheck {
  const tags = parseHeaderValue(parsed.headerValue);
  if (!tags) return { ok: false, error: "malformed_header" };
  if (tags.get("v") !== "1") return { ok: false, error: "unsupported_version" };
  if (tags.get("h") !== SIGNED_HEADERS) return { ok: false, error: "unsupported_header_list" };
  const identityId = tags.get("id")!;
  const kid = tags.get("kid")!;
  const tsText = tags.get("ts")!;
  if (!/^(0|[1-9][0-9]{0,15})$/.test(tsText)) return { ok: false, error: "malformed_header" };
  const ts = Number(tsText);
  const bh = tags.get("bh")!;
  const sig = decodeBase64Strict(tags.get("b")!);
  if (!sig || sig.length !== 64) return { ok: false, error: "malformed_header" };
  if (bh !== parsed.bodySha256) return { ok: false, error: "body_hash_mismatch" };

  const key = publicKeys.find((k) => jwkThumbprint(k.publicKey) === kid);
  if (!key) return { ok: false, error: "unknown_key" };
  const nbf = key.notBefore === undefined ? undefined : Date.parse(key.notBefore) / 1000;
  const exp = key.notAfter === undefined ? undefined : Date.parse(key.notAfter) / 1000;
  if ((nbf !== undefined && !(ts >= Math.floor(nbf))) || (exp !== undefined && !(ts <= exp))) {
    return { ok: false, error: "key_not_valid_at_signing_time" };
  }
  let message: Uint8Array;
  try {
    message = emailSignedBytes(parsed, { identityId, kid, ts });
  } catch {
    return { ok: false, error: "malformed_fields" };
  }
  if (!verifyEd25519(key.publicKey, message, sig)) return { ok: false, error: "bad_signature" };
  return { ok: true, identityId, kid, ts };
}
