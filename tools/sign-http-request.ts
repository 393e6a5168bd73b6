/**
 * sign_http_request: RFC 9421 signature headers that let a website recognise this identity
 * (Web Bot Auth `tag="web-bot-auth"`, Visa Trusted Agent Protocol `agent-browser-auth` /
 * `agent-payer-auth`). sigil signs; the agent sends the request itself with the returned headers.
 *
 * Covered: `@authority`, `@path`, the `Signature-Agent` member when the server has a public URL
 * (SIGIL_PUBLIC_URL, https; otherwise no Signature-Agent header is sent), and `content-digest` when a
 * body digest is given. `created` now, `expires` 60 seconds later (TAP allows at most 8 minutes), a
 * fresh nonce of 64 random bytes from node:crypto on every call, `keyid` = the RFC 7638 thumbprint
 * of the identity's active key, published at `/.well-known/http-message-signatures-directory` and
 * `/identities/<id>/keys`.
 *
 * Policy: `allowedSigningOrigins` (default deny). Every signature issued is an audit entry (intent,
 * then the result with keyid, nonce, created, expires and the Signature value); the URL itself is
 * recorded as origin + path plus a keyed hash of the whole URL (its query may carry tokens), and
 * header values not at all (only their names).
 */
import { randomBytes } from "node:crypto";
import * as z from "zod";
import { defineTool } from "../src/pipeline/tool.js";
import { Denied } from "../src/errors.js";
import { NONCE_BYTES, SIGNATURE_TAGS, signRequest, type SignatureTag } from "../src/provenance/http-signature.js";
import { ReceiptSchema } from "./outbound.js";

const MAX_URL = 8192;
const MAX_HEADERS = 100;

const input = z.strictObject({
  method: z
    .string()
    .min(1)
    .max(32)
    .regex(/^[!#$%&'*+\-.^_`|~0-9A-Za-z]+$/, { error: "must be an HTTP method token such as GET or POST" })
    .describe("e.g. GET"),
  url: z.string().min(1).max(MAX_URL).describe("Absolute https URL (plain form: no user@ or escapes in the host)"),
  headers: z
    .record(z.string().max(256), z.string().max(8192))
    .refine((h) => Object.keys(h).length <= MAX_HEADERS, { error: `at most ${MAX_HEADERS} headers` })
    .optional()
    .describe("Its headers (checked, not signed)"),
  bodyDigest: z
    .string()
    .max(1024)
    .optional()
    .describe("Content-Digest (RFC 9530) of the body, to sign; send it too"),
  tag: z
    .enum(SIGNATURE_TAGS as [SignatureTag, ...SignatureTag[]])
    .optional()
    .describe("Default web-bot-auth; Visa TAP: agent-browser-auth or agent-payer-auth"),
});

const output = z.object({
  url: z.string().describe("The normalised URL that was signed: send the request to exactly this URL"),
  headers: z
    .object({ "Signature-Input": z.string(), Signature: z.string(), "Signature-Agent": z.string().optional() })
    .describe("Add these headers to the request as they are"),
  keyid: z.string().describe("RFC 7638 JWK thumbprint of the signing key"),
  tag: z.string(),
  created: z.number().describe("Unix seconds when the signature was made"),
  expires: z.number().describe("Unix seconds after which verifiers refuse it"),
  nonce: z.string().describe("The signature's single-use nonce (64 random bytes, base64)"),
  covered: z.array(z.string()).describe("The covered components, in order"),
  receipt: ReceiptSchema,
});

function urlParts(url: string): { origin?: string; path?: string } {
  try {
    const u = new URL(url);
    return { origin: u.origin, path: u.pathname };
  } catch {
    return {};
  }
}

export const signHttpRequest = defineTool({
  name: "sign_http_request",
  title: "Sign an HTTP request",
  description:
    "Signs an HTTP request you will send (RFC 9421) so the site can verify this identity; the origin must be in allowedSigningOrigins. Send it to the returned url with the returned headers within 60 s; sign each request anew. Refusal: `denied: <code>: <why>`.",
  channel: "sign",
  // Open world: the signature is for a request the agent then sends to an outside website.
  annotations: { readOnlyHint: false, destructiveHint: false, idempotentHint: false, openWorldHint: true },
  input,
  output,
  effect: "act",
  action: (a) => ({ kind: "sign", tool: "sign_http_request", url: a.url }),
  redact: (a, hash) => ({
    method: a.method,
    ...urlParts(a.url),
    url: hash(a.url),
    tag: a.tag ?? "web-bot-auth",
    ...(a.bodyDigest !== undefined ? { bodyDigest: a.bodyDigest } : {}),
    ...(a.headers !== undefined ? { headerNames: Object.keys(a.headers).map((k) => k.toLowerCase()).slice(0, MAX_HEADERS) } : {}),
  }),
  async run(ctx, a, normalized) {
    if (normalized.kind !== "sign") throw new Error("sign_http_request needs a sign decision");
    const signer = await ctx.signer();
    const agent = ctx.publicUrl;
    let signed: Awaited<ReturnType<typeof signRequest>>;
    try {
      signed = await signRequest({
        method: a.method,
        url: normalized.url,
        ...(a.headers !== undefined ? { headers: a.headers } : {}),
        ...(a.bodyDigest !== undefined ? { bodyDigest: a.bodyDigest } : {}),
        tag: a.tag ?? "web-bot-auth",
        signer,
        ...(agent !== undefined ? { signatureAgent: agent } : {}),
        now: new Date(ctx.now()),
        nonce: randomBytes(NONCE_BYTES).toString("base64"),
      });
    } catch (err) {
      // Only our own validation messages (no secrets: they name fields, never values).
      throw new Denied("invalid_arguments", `${(err as Error).message}.`);
    }
    const structured = {
      url: signed.url,
      headers: signed.headers,
      keyid: signed.keyid,
      tag: signed.tag,
      created: signed.created,
      expires: signed.expires,
      nonce: signed.nonce,
      covered: signed.components,
    };
    return {
      structured,
      text: `Signed ${a.method.toUpperCase()} ${normalized.origin} (${signed.tag}, key ${signed.keyid}, expires in ${signed.expires - signed.created}s). Add these headers: ${JSON.stringify(signed.headers)}`,
      audit: { keyid: signed.keyid, tag: signed.tag, created: signed.created, expires: signed.expires, nonce: signed.nonce, covered: signed.components, signature: signed.headers.Signature },
    };
  },
});
