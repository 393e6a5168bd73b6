/**
 * Ed25519 public keys as JWKs (RFC 8037), their RFC 7638 thumbprints (the `keyid` of our HTTP
 * message signatures and the `kid` of our JWKS and e-mail signatures), and the small key helpers
 * the other provenance modules share.
 */
import { b64url } from "./encoding.js";
import { keyThumbprint, verifySignature } from "./ed25519.js";

/**
 * One implementation each: base64 and base64url encoding in encoding.ts; the public key object and
 * Ed25519 verification (false, never a throw, for a wrong-length key or signature) in ed25519.ts.
 * The names here are the ones the provenance modules use.
 */
export { b64 as base64, b64url as base64url } from "./encoding.js";
export { publicKeyObject, verifySignature as verifyEd25519 } from "./ed25519.js";

/**
 * Anything that can sign with one Ed25519 key. The private key stays behind `sign`, so a key
 * store, a KMS or a test can provide it.
 */
export type Signer = {
  /** sigil's internal id for this key (not published; the published id is the thumbprint). */
  keyId: string;
  /** The raw 32-byte Ed25519 public key. */
  publicKey: Uint8Array;
  /** A raw 64-byte Ed25519 signature over `message`. */
  sign(message: Uint8Array): Uint8Array | Promise<Uint8Array>;
};

export type Ed25519PublicJwk = { kty: "OKP"; crv: "Ed25519"; x: string };

export type JwksKey = Ed25519PublicJwk & {
  kid: string;
  use: "sig";
  alg: "EdDSA";
  /** NumericDate (seconds since the epoch) from which the key is valid. */
  nbf: number;
  /** NumericDate after which the key is no longer valid (retired keys). */
  exp?: number;
};

export type JwksInput = {
  publicKey: Uint8Array;
  /** ISO 8601 time from which the key signs. */
  notBefore: string;
  /** ISO 8601 time after which the key no longer signs. */
  notAfter?: string;
  status: "active" | "retired";
};

export const ED25519_PUBLIC_KEY_BYTES = 32;
export const ED25519_SIGNATURE_BYTES = 64;

export function assertPublicKey(publicKey: Uint8Array): void {
  if (!(publicKey instanceof Uint8Array) || publicKey.length !== ED25519_PUBLIC_KEY_BYTES) {
    throw new Error(`an Ed25519 public key is ${ED25519_PUBLIC_KEY_BYTES} bytes`);
  }
}

/** Strict standard base64 (with padding): returns undefined unless `s` is the canonical encoding. */
export function decodeBase64Strict(s: string): Uint8Array | undefined {
  if (!/^[A-Za-z0-9+/]*={0,2}$/.test(s) || s.length % 4 !== 0) return undefined;
  const bytes = Buffer.from(s, "base64");
  return bytes.toString("base64") === s ? new Uint8Array(bytes) : undefined;
}

/** Strict base64url without padding: returns undefined unless `s` is the canonical encoding. */
export function decodeBase64UrlStrict(s: string): Uint8Array | undefined {
  if (!/^[A-Za-z0-9_-]*$/.test(s)) return undefined;
  const bytes = Buffer.from(s, "base64url");
  return bytes.toString("base64url") === s ? new Uint8Array(bytes) : undefined;
}

/** The public JWK of an Ed25519 key (RFC 8037 §2): `x` is base64url without padding. */
export function publicJwk(publicKey: Uint8Array): Ed25519PublicJwk {
  assertPublicKey(publicKey);
  return { kty: "OKP", crv: "Ed25519", x: b64url(publicKey) };
}

/** RFC 7638 thumbprint of a 32-byte Ed25519 public key (ed25519.ts's keyThumbprint, length checked). */
export function jwkThumbprint(publicKey: Uint8Array): string {
  assertPublicKey(publicKey);
  return keyThumbprint(publicKey);
}

function numericDate(iso: string, what: string): number {
  const ms = Date.parse(iso);
  if (!Number.isFinite(ms)) throw new Error(`${what} is not a valid ISO 8601 time`);
  return Math.floor(ms / 1000);
}

/**
 * A JWKS (RFC 7517 §5) of an identity's keys, current and retired, with their validity windows as
 * `nbf`/`exp` NumericDates (the claims' meaning from RFC 7519, used here as key metadata).
 * Keys are listed in the order given; `kid` is the RFC 7638 thumbprint.
 */
export function jwks(keys: JwksInput[]): { keys: JwksKey[] } {
  const seen = new Set<string>();
  return {
    keys: keys.map((k) => {
      const kid = jwkThumbprint(k.publicKey);
      if (seen.has(kid)) throw new Error(`duplicate key ${kid} in JWKS`);
      seen.add(kid);
      if (k.status !== "active" && k.status !== "retired") throw new Error("unknown key status");
      const nbf = numericDate(k.notBefore, "notBefore");
      const entry: JwksKey = { ...publicJwk(k.publicKey), kid, use: "sig", alg: "EdDSA", nbf };
      if (k.notAfter !== undefined) {
        const exp = numericDate(k.notAfter, "notAfter");
        if (exp < nbf) throw new Error("notAfter is before notBefore");
        entry.exp = exp;
      }
      return entry;
    }),
  };
}

/** Calls the signer and checks that it returned a well-formed signature that verifies. */
export async function signChecked(signer: Signer, message: Uint8Array): Promise<Uint8Array> {
  assertPublicKey(signer.publicKey);
  const signature = await signer.sign(message);
  if (!(signature instanceof Uint8Array) || signature.length !== ED25519_SIGNATURE_BYTES) {
    throw new Error("signer returned a malformed Ed25519 signature");
  }
  if (!verifySignature(signer.publicKey, message, signature)) {
    throw new Error("signer's signature does not verify under its public key");
  }
  return signature;
}
