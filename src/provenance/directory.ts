/**
 * The public key material sigil publishes for parties outside it:
 *
 * - one identity's JWKS (`GET /identities/<id>/keys`, `sigil keys export ID`): every key the
 *   identity ever signed with, current and retired, each with its validity window as `nbf`/`exp`
 *   and identified by its RFC 7638 thumbprint (`kid`). The set carries extra members (RFC 7517 §5
 *   lets a JWK Set carry members a reader ignores): `identity`, so a verifier can check it holds the
 *   keys of the identity a signature names, and `revokedAt` for a revoked identity. Revocation does
 *   not shorten a key's window: the audit log goes on recording (refusals, the revocation itself)
 *   with that key, while every agent tool — so every request or e-mail signature — is refused.
 * - the Web Bot Auth key directory (`GET /.well-known/http-message-signatures-directory`,
 *   draft-meunier-http-message-signatures-directory): the current keys of every identity that is
 *   not revoked, plus keys retired less than 8 minutes ago (a request signature lives at most that
 *   long, so one made just before a rotation still finds its key). The response is signed once per
 *   current key (labels `binding0…`, `tag="http-message-signatures-directory"`).
 * - payment mandates (src/mandates/keys.ts): an identity's JWKS also lists its P-256 payments keys
 *   (`kty: "EC"`, `alg: "ES256"`, with their windows); the directory lists, beside `keys`,
 *   `paymentKeys` (each identity's current payments key, and keys retired within the longest life
 *   of a mandate) and each tenant's `providerKeys` — the ES256 key that signs the roots of its
 *   identities' mandates, which is what a merchant or network trusts.
 */
import { randomBytes } from "node:crypto";
import type { IdentityRecord, PaymentKeyRecord, TenantRecord } from "../../store/types.js";
import type { App } from "../app.js";
import { decodeBase64Strict, decodeBase64UrlStrict, jwkThumbprint, jwks, type JwksInput, type JwksKey } from "../crypto/jwk.js";
import { MANDATE_MAX_LIFETIME_MS } from "../mandates/keys.js";
import { DIRECTORY_MEDIA_TYPE, MAX_EXPIRES_SECONDS, NONCE_BYTES, signDirectoryResponse } from "./http-signature.js";

/** A P-256 key as published: its public JWK, thumbprint, ES256 and its validity window. */
export type PaymentJwk = PaymentKeyRecord["jwk"] & { kid: string; use: "sig"; alg: "ES256"; nbf: number; exp?: number };

export type IdentityJwks = { identity: string; revokedAt?: string; keys: Array<JwksKey | PaymentJwk> };
/**
 * `tenants`: each tenant's public key (it signs the delegation statements of its identities' keys,
 * src/provenance/delegation.ts) — a member directory readers that do not know it ignore; the
 * tenant keys are not in `keys`, which holds only keys that sign requests.
 */
export type DirectoryDocument = {
  keys: JwksKey[];
  tenants?: Array<{ tenant: string; keys: JwksKey[]; providerKeys?: PaymentJwk[] }>;
  paymentKeys?: Array<{ identity: string; keys: PaymentJwk[] }>;
};

const seconds = (iso: string): number => Math.floor(Date.parse(iso) / 1000);

/** A P-256 key record as a published JWK (see PaymentJwk). */
export function paymentJwk(k: PaymentKeyRecord): PaymentJwk {
  return { kty: "EC", crv: "P-256", x: k.jwk.x, y: k.jwk.y, kid: k.keyId, use: "sig", alg: "ES256", nbf: seconds(k.notBefore), ...(k.notAfter !== undefined ? { exp: seconds(k.notAfter) } : {}) };
}

/** The payments keys a directory lists for a record: the active one and those retired within a mandate's longest life. */
function currentPaymentJwks(rec: IdentityRecord, nowMs: number): PaymentJwk[] {
  return (rec.paymentKeys ?? []).filter((k) => k.status === "active" || (k.notAfter !== undefined && Date.parse(k.notAfter) >= nowMs - MANDATE_MAX_LIFETIME_MS)).map(paymentJwk);
}

function keyInputs(rec: IdentityRecord): JwksInput[] {
  const out: JwksInput[] = [];
  for (const k of rec.keys) {
    if (k.status === "pending") continue; // not yet handed signing by the chain
    const publicKey = decodeBase64Strict(k.publicKey);
    if (!publicKey) continue;
    out.push({
      publicKey,
      notBefore: k.notBefore ?? k.createdAt,
      ...(k.notAfter !== undefined ? { notAfter: k.notAfter } : {}),
      status: k.status,
    });
  }
  return out;
}

/** A tenant's public key as a JWKS (it signs delegation statements, src/provenance/delegation.ts). */
export function tenantJwks(t: TenantRecord): JwksKey[] {
  const publicKey = decodeBase64Strict(t.key.publicKey);
  if (!publicKey) return [];
  return jwks([{ publicKey, notBefore: t.key.notBefore ?? t.key.createdAt, status: "active" }]).keys;
}

/** One identity's JWKS: current and retired keys with their validity. */
export function identityJwks(rec: IdentityRecord): IdentityJwks {
  const keys: Array<JwksKey | PaymentJwk> = [...jwks(keyInputs(rec)).keys, ...(rec.paymentKeys ?? []).map(paymentJwk)];
  return { identity: rec.id, ...(rec.revokedAt ? { revokedAt: rec.revokedAt } : {}), keys };
}

/** The directory document: current keys of the identities that are not revoked (see above). */
export function directoryDocument(
  records: IdentityRecord[],
  nowMs: number,
  tenants: TenantRecord[] = [],
  providerKeys: ReadonlyMap<string, PaymentKeyRecord> = new Map(),
): DirectoryDocument {
  const keys: JwksKey[] = [];
  const paymentKeys: Array<{ identity: string; keys: PaymentJwk[] }> = [];
  for (const rec of records) {
    if (rec.revokedAt) continue;
    const inputs = keyInputs(rec).filter(
      (k) => k.status === "active" || (k.notAfter !== undefined && Date.parse(k.notAfter) >= nowMs - MAX_EXPIRES_SECONDS * 1000),
    );
    keys.push(...jwks(inputs).keys);
    const pay = currentPaymentJwks(rec, nowMs);
    if (pay.length > 0) paymentKeys.push({ identity: rec.id, keys: pay });
  }
  const tenantEntry = (t: TenantRecord): NonNullable<DirectoryDocument["tenants"]>[number] => {
    const pk = providerKeys.get(t.id);
    return { tenant: t.id, keys: tenantJwks(t), ...(pk ? { providerKeys: [paymentJwk(pk)] } : {}) };
  };
  return {
    keys,
    ...(tenants.length > 0 ? { tenants: tenants.map(tenantEntry) } : {}),
    ...(paymentKeys.length > 0 ? { paymentKeys } : {}),
  };
}

/** Keys a verifier can use, from a JWKS (ours or anyone's): raw public key plus validity window. */
export function keysFromJwks(doc: unknown): Array<{ kid: string; publicKey: Uint8Array; notBefore?: string; notAfter?: string }> {
  const list = (doc as { keys?: unknown })?.keys;
  if (!Array.isArray(list)) throw new Error("not a JWKS: no keys array");
  const out: Array<{ kid: string; publicKey: Uint8Array; notBefore?: string; notAfter?: string }> = [];
  for (const k of list as Array<Record<string, unknown>>) {
    if (!k || k.kty !== "OKP" || k.crv !== "Ed25519" || typeof k.x !== "string") continue;
    const publicKey = decodeBase64UrlStrict(k.x);
    if (!publicKey || publicKey.length !== 32) continue;
    const kid = jwkThumbprint(publicKey);
    if (k.kid !== undefined && k.kid !== kid) continue; // a kid that is not the key's thumbprint: ignored
    const at = (v: unknown): string | undefined =>
      typeof v === "number" && Number.isSafeInteger(v) ? new Date(v * 1000).toISOString() : undefined;
    const notBefore = at(k.nbf);
    const notAfter = at(k.exp);
    out.push({ kid, publicKey, ...(notBefore ? { notBefore } : {}), ...(notAfter ? { notAfter } : {}) });
  }
  return out;
}

/**
 * What the directory lists: the identities that are not revoked (one with the `card` channel but
 * no payments key — issued before mandates existed — gets one now), the tenants and their
 * provider keys (made now for a tenant that has none).
 */
export async function directoryInputs(app: Pick<App, "store" | "payments">): Promise<{ records: IdentityRecord[]; tenants: TenantRecord[]; providerKeys: Map<string, PaymentKeyRecord> }> {
  const records: IdentityRecord[] = [];
  for (const r of await app.store.listIdentities()) if (!r.revokedAt) records.push(await app.payments.ensureIdentityKey(r));
  const tenants = await app.store.listTenants();
  const providerKeys = new Map<string, PaymentKeyRecord>();
  for (const t of tenants) providerKeys.set(t.id, await app.payments.providerKey(t.id));
  return { records, tenants, providerKeys };
}

export type SignedDirectoryResponse = {
  body: string;
  headers: Record<string, string>;
};

/** Signed responses are reused for this long (the route is public: signing takes every identity's chain lock). */
const DIRECTORY_CACHE_MS = 30_000;
const directoryCache = new Map<string, { at: number; response: SignedDirectoryResponse }>();

/**
 * The directory response for a request made to `authority` (its Host) over `scheme`: the JSON body
 * and the headers, Signature-Input/Signature included, signed with every listed identity's active
 * key. With no identity to list, the body is an empty JWKS and the response is unsigned. The same
 * signed response is served for up to 30 seconds while the key set does not change (its
 * signatures live 300 seconds).
 */
export async function signedDirectory(app: Pick<App, "store" | "now" | "signers" | "payments">, authority: string, scheme: "http" | "https"): Promise<SignedDirectoryResponse> {
  const { records: listed, tenants, providerKeys } = await directoryInputs(app);
  let records = listed;
  const now = app.now();
  let doc = directoryDocument(records, now, tenants, providerKeys);
  let cacheKey = `${scheme}://${authority}\n${JSON.stringify(doc)}`;
  const hit = directoryCache.get(cacheKey);
  if (hit && now - hit.at >= 0 && now - hit.at < DIRECTORY_CACHE_MS) return hit.response;
  const headers: Record<string, string> = {
    "content-type": DIRECTORY_MEDIA_TYPE,
    "cache-control": "max-age=60",
  };
  if (records.length > 0) {
    const signers = [];
    for (const r of records) signers.push(await app.signers.active(r.id));
    // Opening a log brings the registry's key windows in line with it (a rotation a crash cut
    // short): if a log's active key is not the one the records said, list what they say now.
    if (signers.some((s, i) => !records[i]!.keys.some((k) => k.keyId === s.keyId && k.status === "active"))) {
      const ids = new Set(records.map((r) => r.id));
      records = (await app.store.listIdentities()).filter((r) => ids.has(r.id));
      doc = directoryDocument(records, now, tenants, providerKeys);
      cacheKey = `${scheme}://${authority}\n${JSON.stringify(doc)}`;
    }
    const signed = await signDirectoryResponse({
      signers,
      authority,
      scheme,
      now: new Date(now),
      nonce: randomBytes(NONCE_BYTES).toString("base64"),
    });
    headers["signature-input"] = signed.headers["Signature-Input"];
    headers.signature = signed.headers.Signature;
  }
  const response = { body: JSON.stringify(doc), headers };
  if (directoryCache.size > 64) directoryCache.clear();
  directoryCache.set(cacheKey, { at: now, response });
  return response;
}
