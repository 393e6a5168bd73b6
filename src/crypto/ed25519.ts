/**
 * Ed25519: key generation (libsodium, from a node:crypto seed), signing and verification (node:crypto
 * / OpenSSL), and the RFC 7638 thumbprint that is sigil's key id everywhere.
 */
import { createPrivateKey, createPublicKey, sign as nodeSign, verify as nodeVerify, type KeyObject, randomBytes } from "node:crypto";
import { b64url, sha256 } from "./encoding.js";
import { sodium } from "./sodium.js";

export interface KeyPair {
  publicKey: Uint8Array; // 32 bytes
  secretKey: Uint8Array; // 64 bytes (libsodium form: seed || public)
}

export function generateSigningKey(): KeyPair {
  const kp = sodium.crypto_sign_seed_keypair(randomBytes(32));
  return { publicKey: kp.publicKey, secretKey: kp.privateKey };
}

/** PKCS#8 DER prefix of an Ed25519 private key (RFC 8410); the 32-byte seed follows it. */
const ED25519_PKCS8_PREFIX = Buffer.from("302e020100300506032b657004220420", "hex");
const privateKeyObjects = new WeakMap<Uint8Array, KeyObject>();

/**
 * Ed25519 signature with a libsodium-form secret key (seed || public key). The signing itself is
 * done by node:crypto (OpenSSL) with a KeyObject made once per key from the seed: it is ~15%
 * faster than libsodium's WASM build here and needs no WASM call per entry. Ed25519 signatures are
 * deterministic (RFC 8032), so the bytes are exactly those crypto_sign_detached produces — the
 * test suite checks that against libsodium.
 */
export function sign(secretKey: Uint8Array, message: Uint8Array | string): Uint8Array {
  let key = privateKeyObjects.get(secretKey);
  if (!key) {
    if (secretKey.length !== 64) throw new Error("an Ed25519 secret key is 64 bytes (seed || public key)");
    key = createPrivateKey({ key: Buffer.concat([ED25519_PKCS8_PREFIX, secretKey.subarray(0, 32)]), format: "der", type: "pkcs8" });
    privateKeyObjects.set(secretKey, key);
  }
  return nodeSign(null, typeof message === "string" ? Buffer.from(message) : message, key);
}

/** libsodium's own signature, kept to check `sign` against (see test/crypto-sign.test.ts). */
export function signWithSodium(secretKey: Uint8Array, message: Uint8Array | string): Uint8Array {
  return sodium.crypto_sign_detached(message, secretKey);
}

const keyObjects = new Map<string, KeyObject>();
/** A node:crypto public key object from a raw 32-byte Ed25519 public key (cached per key). */
export function publicKeyObject(publicKey: Uint8Array): KeyObject {
  const x = b64url(publicKey);
  let k = keyObjects.get(x);
  if (!k) {
    k = createPublicKey({ key: { kty: "OKP", crv: "Ed25519", x }, format: "jwk" });
    if (keyObjects.size > 10_000) keyObjects.clear();
    keyObjects.set(x, k);
  }
  return k;
}

/**
 * Ed25519 verification with node:crypto (OpenSSL), which needs no libsodium initialisation: the one
 * implementation (crypto/jwk.ts's verifyEd25519 is this). False, never a throw, for a wrong-length
 * key or signature or a key OpenSSL will not load.
 */
export function verifySignature(publicKey: Uint8Array, message: Uint8Array | string, signature: Uint8Array): boolean {
  if (publicKey.length !== 32 || signature.length !== 64) return false;
  try {
    return nodeVerify(null, typeof message === "string" ? Buffer.from(message) : message, publicKeyObject(publicKey), signature);
  } catch {
    return false;
  }
}

/**
 * RFC 7638 JWK thumbprint of an Ed25519 public key: sigil's key id everywhere. The required members
 * in lexicographic order, no whitespace — for OKP keys exactly `{"crv":"Ed25519","kty":"OKP","x":"…"}`
 * (RFC 8037 §A.3); x is base64url, so it needs no JSON escaping, and the string is built by hand so
 * the member order can never depend on an object's key order.
 */
export function keyThumbprint(publicKey: Uint8Array): string {
  return sha256(`{"crv":"Ed25519","kty":"OKP","x":"${b64url(publicKey)}"}`).toString("base64url");
}
