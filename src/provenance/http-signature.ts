/**
 * RFC 9421 HTTP message signatures as agents use them: Web Bot Auth
 * (draft-meunier-web-bot-auth-architecture, `tag="web-bot-auth"`) and Visa's Trusted Agent
 * Protocol (`tag="agent-browser-auth"` / `"agent-payer-auth"`), plus the signed response of the
 * key directory `/.well-known/http-message-signatures-directory`
 * (draft-meunier-http-message-signatures-directory, `tag="http-message-signatures-directory"`).
 *
 * Signature bases are built exactly as RFC 9421 §2.5 says and carry no sigil prefix (domains.ts).
 * The `keyid` is the RFC 7638 JWK thumbprint of the Ed25519 key, `alg` is `ed25519`.
 */
import {
  type BareItem,
  type Dictionary,
  type InnerList,
  type Item,
  parseDictionary,
  serializeInnerList,
  serializeItem,
  serializeString,
} from "structured-headers";
import { checkSigningUrl } from "./url.js";
import { jwkThumbprint, signChecked, verifyEd25519, decodeBase64Strict, base64, type Signer } from "../crypto/jwk.js";

export type SignatureTag = "web-bot-auth" | "agent-browser-auth" | "agent-payer-auth";
export const SIGNATURE_TAGS: readonly SignatureTag[] = ["web-bot-auth", "agent-browser-auth", "agent-payer-auth"];
export const DIRECTORY_TAG = "http-message-signatures-directory";
export const DIRECTORY_PATH = "/.well-known/http-message-signatures-directory";
export const DIRECTORY_MEDIA_TYPE = "application/http-message-signatures-directory+json";

/** The signature label sigil uses on requests. */
export const REQUEST_LABEL = "sig1";
/** Default and maximum lifetime of a request signature (TAP: created/expires at most 8 min apart). */
export const DEFAULT_EXPIRES_SECONDS = 60;
export const MAX_EXPIRES_SECONDS = 480;
/** Default and maximum lifetime of a directory response signature. */
export const DEFAULT_DIRECTORY_EXPIRES_SECONDS = 300;
export const MAX_DIRECTORY_EXPIRES_SECONDS = 86_400;
/** Web Bot Auth nonces are 64 random bytes, base64. */
export const NONCE_BYTES = 64;

// ---------------------------------------------------------------------------------------------
// Structured field values (RFC 9651 / RFC 8941) through the `structured-headers` library: sigil
// builds Signature-Input members and component identifiers as library values and lets it
// serialise and parse them. Nothing of the grammar is written here.

export type SfParams = Array<[string, BareItem]>;
export type SfMember = Item | InnerList;

function isInnerList(m: SfMember): m is InnerList {
  return Array.isArray(m[0]);
}

/** An sf-string: printable ASCII only, `"` and `\\` escaped (throws otherwise). */
export function sfString(s: string): string {
  return serializeString(s);
}

/** Parses an RFC 9651 Dictionary (throws on malformed input). */
export function parseSfDictionary(input: string): Dictionary {
  return parseDictionary(input);
}

// ---------------------------------------------------------------------------------------------
// Signature bases (RFC 9421 §2).

/** A covered component: its identifier (name + parameters) and its value in this message. */
export type CoveredComponent = { name: string; params?: SfParams; value: string };

function componentIdentifier(c: { name: string; params?: SfParams }): Item {
  return [c.name, new Map(c.params ?? [])];
}

/** The `@signature-params` value / Signature-Input member: `("@authority" …);created=…;…`. */
export function serializeSignatureParams(
  components: Array<{ name: string; params?: SfParams }>,
  params: SfParams,
): string {
  return serializeInnerList([components.map(componentIdentifier), new Map(params)]);
}

/** The signature base (RFC 9421 §2.5): one line per component, then `"@signature-params"`. */
export function buildSignatureBase(components: CoveredComponent[], signatureParams: string): string {
  const seen = new Set<string>();
  const lines = components.map((c) => {
    const id = serializeItem(componentIdentifier(c));
    if (seen.has(id)) throw new Error(`component ${id} covered twice`);
    seen.add(id);
    if (/[\r\n]/.test(c.value) || !/^[\t\x20-\x7E\x80-\uFFFF]*$/.test(c.value)) {
      throw new Error(`component ${id} has a value that cannot appear in a signature base`);
    }
    return `${id}: ${c.value}`;
  });
  lines.push(`"@signature-params": ${signatureParams}`);
  return lines.join("\n");
}

function parseHttpUrl(url: string): URL {
  let u: URL;
  try {
    u = new URL(url);
  } catch {
    throw new Error("url must be an absolute URL");
  }
  if (u.protocol !== "https:" && u.protocol !== "http:") throw new Error("url must be http or https");
  if (u.username !== "" || u.password !== "") throw new Error("url must not carry credentials");
  return u;
}

/**
 * `@authority` (RFC 9421 §2.2.3): host lower-cased, default port omitted (HTTP §4.2.3). The WHATWG
 * URL parser already does both (and punycodes IDNs, as a client puts them in Host).
 */
export function deriveAuthority(url: string): string {
  return parseHttpUrl(url).host.toLowerCase();
}

/**
 * `@path` (RFC 9421 §2.2.6): the absolute path of the target URI, no query and no `?`, as sent
 * (percent-encoding kept, not decoded); an empty path is `/`.
 */
export function derivePath(url: string): string {
  return parseHttpUrl(url).pathname || "/";
}

function derive(name: string, u: URL, method: string): string {
  switch (name) {
    case "@authority":
      return u.host.toLowerCase();
    case "@path":
      return u.pathname || "/";
    case "@query":
      return u.search || "?";
    case "@method":
      return method.toUpperCase();
    case "@scheme":
      return u.protocol.slice(0, -1);
    case "@target-uri":
      return u.href.replace(/#.*$/, "");
    case "@request-target":
      return `${u.pathname || "/"}${u.search}`;
    default:
      throw new Error(`unsupported derived component ${name}`);
  }
}

function unixSeconds(d: Date): number {
  const ms = d.getTime();
  if (!Number.isFinite(ms)) throw new Error("invalid time");
  return Math.floor(ms / 1000);
}

function assertNonce(nonce: string): void {
  const bytes = decodeBase64Strict(nonce);
  if (!bytes || bytes.length !== NONCE_BYTES) {
    throw new Error(`nonce must be ${NONCE_BYTES} random bytes in padded standard base64`);
  }
}

function lowerHeaders(headers: Record<string, string> | undefined): Map<string, string> {
  const out = new Map<string, string>();
  for (const [k, v] of Object.entries(headers ?? {})) {
    const lk = k.toLowerCase();
    if (out.has(lk)) throw new Error(`header ${lk} given twice`);
    out.set(lk, String(v));
  }
  return out;
}

const CONTENT_DIGEST_RE = /^[a-z][a-z0-9_\-.*]*=:[A-Za-z0-9+/]*={0,2}:(, ?[a-z][a-z0-9_\-.*]*=:[A-Za-z0-9+/]*={0,2}:)*$/;
const METHOD_RE = /^[!#$%&'*+\-.^_`|~0-9A-Za-z]+$/;

// ---------------------------------------------------------------------------------------------
// Signing requests.

export type SignRequestInput = {
  method: string;
  url: string;
  /**
   * The request's other headers. They are not covered, but they must not already carry
   * Signature / Signature-Input / Signature-Agent, and a Content-Digest here must match
   * `bodyDigest` (and is covered when `bodyDigest` is absent).
   */
  headers?: Record<string, string>;
  /** A Content-Digest field value (RFC 9530), e.g. `sha-256=:…:`; covered when given. */
  bodyDigest?: string;
  tag: SignatureTag;
  signer: Signer;
  /** Where verifiers find the key directory, e.g. `https://sigil.example`. */
  signatureAgent?: string;
  now: Date;
  /** 64 random bytes, base64 (the caller owns randomness). */
  nonce: string;
  /** Lifetime of the signature; default 60, at most 480. */
  expiresInSeconds?: number;
  /**
   * How `Signature-Agent` (always sent as the dictionary `sig1="https://…"`) is covered:
   * `"member"` (default) covers `"signature-agent";key="sig1"` as the current Web Bot Auth drafts
   * (directory -04 / architecture -04 on) require; `"field"` covers the whole field
   * `"signature-agent"`, which is what web-bot-auth ≤ 0.1.x / http-message-sig 0.2 verify.
   */
  signatureAgentCoverage?: "member" | "field";
};

export type SignedRequest = {
  headers: { "Signature-Input": string; Signature: string; "Signature-Agent"?: string };
  /** The normalised URL signed (WHATWG serialisation, no fragment). */
  url: string;
  /** RFC 7638 thumbprint of the signing key. */
  keyid: string;
  label: string;
  tag: SignatureTag;
  created: number;
  expires: number;
  nonce: string;
  /** Serialized identifiers of the covered components, in order. */
  components: string[];
  signatureBase: string;
};

export async function signRequest(input: SignRequestInput): Promise<SignedRequest> {
  const { tag, signer, now, nonce } = input;
  if (!SIGNATURE_TAGS.includes(tag)) throw new Error("unknown signature tag");
  if (!METHOD_RE.test(input.method)) throw new Error("invalid HTTP method");
  const checked = checkSigningUrl(input.url);
  if (!checked.ok) throw new Error(checked.problem);
  const u = parseHttpUrl(checked.normalized);
  assertNonce(nonce);
  const lifetime = input.expiresInSeconds ?? DEFAULT_EXPIRES_SECONDS;
  if (!Number.isInteger(lifetime) || lifetime <= 0 || lifetime > MAX_EXPIRES_SECONDS) {
    throw new Error(`expiresInSeconds must be an integer between 1 and ${MAX_EXPIRES_SECONDS}`);
  }
  const headers = lowerHeaders(input.headers);
  for (const h of ["signature", "signature-input", "signature-agent"]) {
    if (headers.has(h)) throw new Error(`the request already carries ${h}`);
  }
  let digest = input.bodyDigest;
  const digestHeader = headers.get("content-digest");
  if (digest !== undefined && digestHeader !== undefined && digestHeader.trim() !== digest.trim()) {
    throw new Error("bodyDigest does not match the request's Content-Digest header");
  }
  digest = (digest ?? digestHeader)?.trim();
  if (digest !== undefined && !CONTENT_DIGEST_RE.test(digest)) {
    throw new Error("bodyDigest must be a Content-Digest value such as sha-256=:…:");
  }

  const components: CoveredComponent[] = [
    { name: "@authority", value: derive("@authority", u, input.method) },
    { name: "@path", value: derive("@path", u, input.method) },
  ];
  let signatureAgentHeader: string | undefined;
  if (input.signatureAgent !== undefined) {
    const agent = parseHttpUrl(input.signatureAgent);
    if (agent.protocol !== "https:") throw new Error("signatureAgent must be an https URL");
    const member = sfString(input.signatureAgent);
    signatureAgentHeader = `${REQUEST_LABEL}=${member}`;
    if ((input.signatureAgentCoverage ?? "member") === "member") {
      components.push({ name: "signature-agent", params: [["key", REQUEST_LABEL]], value: member });
    } else {
      components.push({ name: "signature-agent", value: signatureAgentHeader });
    }
  }
  if (digest !== undefined) components.push({ name: "content-digest", value: digest });

  const keyid = jwkThumbprint(signer.publicKey);
  const created = unixSeconds(now);
  const expires = created + lifetime;
  const params: SfParams = [
    ["created", created],
    ["expires", expires],
    ["keyid", keyid],
    ["alg", "ed25519"],
    ["nonce", nonce],
    ["tag", tag],
  ];
  const signatureParams = serializeSignatureParams(components, params);
  const signatureBase = buildSignatureBase(components, signatureParams);
  const sig = await signChecked(signer, new Uint8Array(Buffer.from(signatureBase, "utf8")));
  const out: SignedRequest["headers"] = {
    "Signature-Input": `${REQUEST_LABEL}=${signatureParams}`,
    Signature: `${REQUEST_LABEL}=:${base64(sig)}:`,
  };
  if (signatureAgentHeader !== undefined) out["Signature-Agent"] = signatureAgentHeader;
  return {
    headers: out,
    url: checked.normalized,
    keyid,
    label: REQUEST_LABEL,
    tag,
    created,
    expires,
    nonce,
    components: components.map((c) => serializeItem(componentIdentifier(c))),
    signatureBase,
  };
}

// ---------------------------------------------------------------------------------------------
// Signing the key directory response.

export type SignDirectoryInput = {
  /** One signature per key, in this order (labels binding0, binding1, …). */
  signers: Signer[];
  /** The authority the directory was requested at (Host), e.g. `sigil.example` or `localhost:8080`. */
  authority: string;
  /** The scheme it was requested with, to drop the right default port. Default https. */
  scheme?: "https" | "http";
  now: Date;
  nonce: string;
  expiresInSeconds?: number;
};

export type SignedDirectory = {
  headers: { "Signature-Input": string; Signature: string };
  signatures: Array<{ label: string; keyid: string; signatureBase: string }>;
  created: number;
  expires: number;
};

/**
 * Signs the directory response once per key, as the directory draft and web-bot-auth's
 * `directoryResponseHeaders` do: label `binding<i>`, covering `"@authority";req` (the authority
 * of the request that fetched the directory), `tag="http-message-signatures-directory"`.
 */
export async function signDirectoryResponse(input: SignDirectoryInput): Promise<SignedDirectory> {
  if (input.signers.length === 0) throw new Error("the directory needs at least one key");
  assertNonce(input.nonce);
  const lifetime = input.expiresInSeconds ?? DEFAULT_DIRECTORY_EXPIRES_SECONDS;
  if (!Number.isInteger(lifetime) || lifetime <= 0 || lifetime > MAX_DIRECTORY_EXPIRES_SECONDS) {
    throw new Error(`expiresInSeconds must be an integer between 1 and ${MAX_DIRECTORY_EXPIRES_SECONDS}`);
  }
  if (/[/?#@\s]/.test(input.authority) || input.authority === "") throw new Error("invalid authority");
  const authority = deriveAuthority(`${input.scheme ?? "https"}://${input.authority}/`);
  const created = unixSeconds(input.now);
  const expires = created + lifetime;
  const components: CoveredComponent[] = [{ name: "@authority", params: [["req", true]], value: authority }];
  const seen = new Set<string>();
  const signatures: SignedDirectory["signatures"] = [];
  const inputs: string[] = [];
  const sigs: string[] = [];
  for (const [i, signer] of input.signers.entries()) {
    const keyid = jwkThumbprint(signer.publicKey);
    if (seen.has(keyid)) throw new Error(`duplicate directory key ${keyid}`);
    seen.add(keyid);
    const label = `binding${i}`;
    const signatureParams = serializeSignatureParams(components, [
      ["created", created],
      ["expires", expires],
      ["keyid", keyid],
      ["alg", "ed25519"],
      ["nonce", input.nonce],
      ["tag", DIRECTORY_TAG],
    ]);
    const signatureBase = buildSignatureBase(components, signatureParams);
    const sig = await signChecked(signer, new Uint8Array(Buffer.from(signatureBase, "utf8")));
    inputs.push(`${label}=${signatureParams}`);
    sigs.push(`${label}=:${base64(sig)}:`);
    signatures.push({ label, keyid, signatureBase });
  }
  return {
    headers: { "Signature-Input": inputs.join(", "), Signature: sigs.join(", ") },
    signatures,
    created,
    expires,
  };
}

// ---------------------------------------------------------------------------------------------
// Verifying (for our own tests and CLI; third parties use their own RFC 9421 verifiers).

export type VerifyRequestInput = {
  method: string;
  url: string;
  /** All request headers, including Signature, Signature-Input and any Signature-Agent. */
  headers: Record<string, string>;
  now: Date;
  /** Candidate keys; the one whose thumbprint equals `keyid` is used. */
  keys: Array<{ publicKey: Uint8Array; notBefore?: string; notAfter?: string }>;
  /** Which signature to check; default: the only one, else `sig1`. */
  label?: string;
  /** Accepted tags; default all three agent tags. */
  tags?: readonly string[];
  /** Allowed clock skew for `created` in the future, seconds. Default 0. */
  skewSeconds?: number;
};

export type VerifyRequestResult =
  | { ok: true; label: string; keyid: string; tag: string; created: number; expires: number; nonce?: string; components: string[] }
  | { ok: false; error: string };


export async function verifyRequest(input: VerifyRequestInput): Promise<VerifyRequestResult> {
  const fail = (error: string): VerifyRequestResult => ({ ok: false, error });
  let headers: Map<string, string>;
  let u: URL;
  let inputs: Map<string, SfMember>;
  let signatures: Map<string, SfMember>;
  try {
    headers = lowerHeaders(input.headers);
    u = parseHttpUrl(input.url);
    inputs = parseSfDictionary(headers.get("signature-input") ?? "");
    signatures = parseSfDictionary(headers.get("signature") ?? "");
  } catch (e) {
    return fail(`malformed: ${(e as Error).message}`);
  }
  if (inputs.size === 0) return fail("no signature");
  const label = input.label ?? (inputs.size === 1 ? [...inputs.keys()][0]! : REQUEST_LABEL);
  const member = inputs.get(label);
  const sigMember = signatures.get(label);
  if (!member || !isInnerList(member)) return fail(`no signature input ${label}`);
  if (!sigMember || isInnerList(sigMember) || !(sigMember[0] instanceof ArrayBuffer)) {
    return fail(`no signature ${label}`);
  }
  const p = member[1];
  const created = p.get("created");
  const expires = p.get("expires");
  const keyid = p.get("keyid");
  const alg = p.get("alg");
  const tag = p.get("tag");
  const nonce = p.get("nonce");
  if (typeof created !== "number" || typeof expires !== "number" || !Number.isSafeInteger(created) || !Number.isSafeInteger(expires)) {
    return fail("created and expires are required integers");
  }
  if (typeof keyid !== "string") return fail("keyid is required");
  if (alg !== undefined && alg !== "ed25519") return fail("unsupported alg");
  if (typeof tag !== "string" || !(input.tags ?? SIGNATURE_TAGS).includes(tag)) return fail("unacceptable tag");
  if (nonce !== undefined && typeof nonce !== "string") return fail("malformed nonce");
  // A verifier answers, it does not throw: an invalid clock is a failed verification.
  if (!(input.now instanceof Date) || !Number.isFinite(input.now.getTime())) return fail("invalid time");
  const now = unixSeconds(input.now);
  if (created > now + (input.skewSeconds ?? 0)) return fail("created in the future");
  if (expires < now) return fail("signature expired");
  if (expires < created || expires - created > MAX_EXPIRES_SECONDS) return fail("validity window too long");

  const ids = member[0].map(([name, params]) => ({ name, params: [...params] as SfParams }));
  const names = ids.map((i) => i.name);
  if (ids.some((i) => typeof i.name !== "string")) return fail("malformed component");
  if (!names.includes("@authority")) return fail("@authority not covered");
  if (tag !== "web-bot-auth" && !names.includes("@path")) return fail("@path not covered");
  if (headers.has("signature-agent") && !names.includes("signature-agent")) {
    return fail("Signature-Agent present but not covered");
  }

  const components: CoveredComponent[] = [];
  for (const id of ids) {
    const name = id.name as string;
    try {
      if (name.startsWith("@")) {
        if (id.params.length > 0) return fail(`unsupported parameters on ${name}`);
        components.push({ name, value: derive(name, u, input.method) });
        continue;
      }
      const raw = headers.get(name);
      if (raw === undefined) return fail(`covered header ${name} missing`);
      const value = raw.trim();
      if (id.params.length === 0) {
        components.push({ name, value });
      } else if (id.params.length === 1 && id.params[0]![0] === "key" && typeof id.params[0]![1] === "string") {
        const dict = parseSfDictionary(value);
        const m = dict.get(id.params[0]![1]);
        if (!m) return fail(`${name} has no member ${id.params[0]![1]}`);
        components.push({ name, params: id.params, value: isInnerList(m) ? serializeInnerList(m) : serializeItem(m) });
      } else {
        return fail(`unsupported parameters on ${name}`);
      }
    } catch (e) {
      return fail(`malformed component ${name}: ${(e as Error).message}`);
    }
  }

  const key = input.keys.find((k) => jwkThumbprint(k.publicKey) === keyid);
  if (!key) return fail("unknown key");
  // Written so that an unparseable window (NaN) fails closed.
  if (key.notBefore !== undefined && !(created >= Math.floor(Date.parse(key.notBefore) / 1000))) {
    return fail("key not valid at created");
  }
  if (key.notAfter !== undefined && !(created <= Date.parse(key.notAfter) / 1000)) {
    return fail("key not valid at created");
  }
  let base: string;
  try {
    base = buildSignatureBase(components, serializeInnerList(member));
  } catch (e) {
    return fail(`malformed: ${(e as Error).message}`);
  }
  if (!verifyEd25519(key.publicKey, new Uint8Array(Buffer.from(base, "utf8")), new Uint8Array(sigMember[0]))) {
    return fail("bad signature");
  }
  return {
    ok: true,
    label,
    keyid,
    tag,
    created,
    expires,
    ...(nonce !== undefined ? { nonce } : {}),
    components: ids.map((i) => serializeItem(i.name as BareItem, new Map(i.params))),
  };
}
