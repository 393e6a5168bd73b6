/**
 * What a verification is anchored to. A log proves only that it is self-consistent; whether its
 * keys are the identity's keys has to come from somewhere the log's holder does not control:
 *
 * - `keys`: a key source the verifier chose (`--keys`: a JWKS or key-directory document, from a
 *   file or fetched from an http(s) URL such as the server's `/identities/<id>/keys`). Only those
 *   keys are trusted, with their validity windows; the keys a bundle lists are ignored.
 * - `checkpoint`: a signed checkpoint the verifier kept (`--checkpoint`): the log's first entries,
 *   the creation entry with the first key included, must be exactly the ones it commits to.
 * - `home`: the home's own registry (`sigil audit verify [ID]` on the machine that serves it).
 *
 * A bundle verified with none of these is `unanchored`: the CLI says so and exits 3.
 */
import { readFileSync } from "node:fs";
import { b64 } from "../crypto/encoding.js";
import { SigilError } from "../errors.js";
import { keysFromJwks } from "../provenance/directory.js";
import type { PublicKeyInfo, VerifyResult } from "./verify.js";
import { verifyChain } from "./verify.js";

export type Anchor = "keys" | "checkpoint" | "home";

export interface VerifyReport {
  /** True only when every log verified AND the verification is anchored. */
  ok: boolean;
  /** `ok`; `failed` (some entry does not verify); `unanchored` (self-consistent, but nothing says whose keys these are). */
  verdict: "ok" | "failed" | "unanchored";
  anchored: boolean;
  anchor?: Anchor;
  identities: VerifyResult[];
  /** Tenants' own logs (approvers, passkeys; src/tenant/log.ts), when they were verified too. */
  tenants?: VerifyResult[];
}

export function report(identities: VerifyResult[], anchor: Anchor | undefined, tenants?: VerifyResult[]): VerifyReport {
  const intact = identities.every((r) => r.ok) && (tenants ?? []).every((r) => r.ok);
  const verdict = !intact ? "failed" : anchor ? "ok" : "unanchored";
  return { ok: verdict === "ok", verdict, anchored: anchor !== undefined, ...(anchor ? { anchor } : {}), identities, ...(tenants ? { tenants } : {}) };
}

export interface KeySource {
  /** Where the keys came from (a file name or URL), for messages. */
  source: string;
  /** The identity the document says the keys belong to (an identity JWKS names it), if it does. */
  identity?: string;
  keys: PublicKeyInfo[];
}

const MAX_KEY_DOCUMENT = 4 * 1024 * 1024;

/** Reads `--keys SOURCE`: a JWKS or key-directory JSON file, or an http(s) URL serving one. */
export async function loadKeySource(source: string): Promise<KeySource> {
  let text: string;
  if (/^https?:\/\//i.test(source)) {
    let res: Response;
    try {
      res = await fetch(source, { signal: AbortSignal.timeout(15_000), headers: { accept: "application/json, application/jwk-set+json" } });
    } catch (err) {
      throw new SigilError("keys_unavailable", `The keys at ${source} cannot be fetched (${(err as Error).name === "TimeoutError" ? "timed out" : "no connection"}).`);
    }
    if (!res.ok) throw new SigilError("keys_unavailable", `The keys at ${source} cannot be fetched (HTTP ${res.status}).`);
    const body = Buffer.from(await res.arrayBuffer());
    if (body.length > MAX_KEY_DOCUMENT) throw new SigilError("invalid_keys", `The document at ${source} is too large to be a key set.`);
    text = body.toString("utf8");
  } else {
    try {
      text = readFileSync(source, "utf8");
    } catch {
      throw new SigilError("unreadable", `${source} cannot be read.`);
    }
  }
  let doc: unknown;
  try {
    doc = JSON.parse(text);
  } catch {
    throw new SigilError("invalid_keys", `${source} is not a JWKS (not valid JSON).`);
  }
  let found: ReturnType<typeof keysFromJwks>;
  try {
    found = keysFromJwks(doc);
  } catch {
    throw new SigilError("invalid_keys", `${source} is not a JWKS or key directory (no "keys" array).`);
  }
  if (found.length === 0) throw new SigilError("invalid_keys", `${source} holds no Ed25519 keys.`);
  const named = (doc as { identity?: unknown }).identity;
  return {
    source,
    ...(typeof named === "string" ? { identity: named } : {}),
    keys: found.map((k) => ({
      keyId: k.kid,
      publicKey: b64(k.publicKey),
      ...(k.notBefore ? { notBefore: k.notBefore } : {}),
      ...(k.notAfter ? { notAfter: k.notAfter } : {}),
    })),
  };
}

export interface AuditBundle {
  format: "sigil-audit-bundle/v1";
  exportedAt: string;
  identity: { id: string; name: string; createdAt: string };
  keys: PublicKeyInfo[];
  entries: unknown[];
  /** The identity's tenant and its public key (JWKS), and the tenant's delegation statements (src/provenance/delegation.ts). */
  tenant?: { id: string; keys: unknown[] };
  delegations?: unknown[];
  /** The tenant's own log (approvers added and removed, passkeys registered; src/tenant/log.ts), signed by the tenant key above. */
  tenantLog?: unknown[];
}

/** The tenant key(s) a bundle carries, as a verifier trusts keys. */
export function bundleTenantKeys(bundle: AuditBundle): PublicKeyInfo[] {
  try {
    return keysFromJwks({ keys: bundle.tenant?.keys }).map((k) => ({ keyId: k.kid, publicKey: b64(k.publicKey), ...(k.notBefore ? { notBefore: k.notBefore } : {}), ...(k.notAfter ? { notAfter: k.notAfter } : {}) }));
  } catch {
    return [];
  }
}

export function assertBundle(bundle: unknown): asserts bundle is AuditBundle {
  const b = bundle as Partial<AuditBundle>;
  if (!b || typeof b !== "object" || b.format !== "sigil-audit-bundle/v1" || !b.identity || typeof b.identity.id !== "string" || !Array.isArray(b.keys) || !Array.isArray(b.entries)) {
    throw new SigilError("invalid_bundle", "The file is not a sigil audit bundle.");
  }
}

/** A key source given for one identity must not be another identity's key set. */
export function keysFor(identityId: string, trusted: KeySource): PublicKeyInfo[] {
  if (trusted.identity !== undefined && trusted.identity !== identityId) {
    throw new SigilError("invalid_keys", `The keys in ${trusted.source} are those of ${trusted.identity}, not of ${identityId}.`);
  }
  return trusted.keys;
}

/**
 * Verifies an exported bundle. With `trusted` keys, only those are trusted (the bundle's own list
 * is ignored) and the result is anchored to them; without, the bundle's own keys are used and the
 * result can say no more than `unanchored`.
 */
export async function verifyBundle(bundle: unknown, trusted?: KeySource): Promise<VerifyReport> {
  assertBundle(bundle);
  const keys = trusted ? keysFor(bundle.identity.id, trusted) : bundle.keys;
  const r = await verifyChain(bundle.identity.id, bundle.entries as Iterable<string>, keys);
  // The tenant's own log, when the bundle carries it: under the tenant key the bundle carries
  // (the one that signs its delegation statements; the key directory lists it).
  const tenants = bundle.tenant && Array.isArray(bundle.tenantLog) ? [await verifyChain(bundle.tenant.id, bundle.tenantLog as Iterable<string>, bundleTenantKeys(bundle))] : undefined;
  return report([r], trusted ? "keys" : undefined, tenants);
}
