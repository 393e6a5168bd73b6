/**
 * Cryptographic primitives, in one place.
 *
 * - Ed25519 signing keys come from libsodium; random bytes and nonces from node:crypto (libsodium's
 *   randombytes_buf is ~100x slower here).
 * - Private keys and vault secrets are sealed with XChaCha20-Poly1305 under subkeys derived from the
 *   master key (HKDF-SHA256, one subkey per job), with associated data that binds each ciphertext to
 *   the place it belongs (identity, key id, secret name, version).
 * - Tokens are 256-bit random values with a scannable prefix; only their SHA-256 is stored, and
 *   comparisons are constant-time.
 */
import { createHash, createHmac, hkdfSync, randomBytes, timingSafeEqual, createPrivateKey, createPublicKey, sign as nodeSign, verify as nodeVerify, KeyObject } from "node:crypto";
import sodium from "libsodium-wrappers";

let ready = false;
export async function cryptoReady(): Promise<void> {
  if (ready) return;
  await sodium.ready;
  ready = true;
}

export const b64 = (b: Uint8Array): string => Buffer.from(b).toString("base64");
export const fromB64 = (s: string): Buffer => Buffer.from(s, "base64");
export const b64url = (b: Uint8Array): string => Buffer.from(b).toString("base64url");
export const sha256 = (data: Uint8Array | string): Buffer => createHash("sha256").update(data).digest();
export const sha256hex = (data: Uint8Array | string): string => createHash("sha256").update(data).digest("hex");

// ---- master key and subkeys -------------------------------------------------------------------

export type Purpose = "signing-keys" | "audit-hmac" | "vault" | "master-check" | "chain-snapshot" | "token-hash" | "record-mac";

export class MasterKey {
  private readonly subkeys = new Map<Purpose, Buffer>();
  constructor(private readonly key: Buffer) {
    if (key.length !== 32) throw new Error("the master key must be 32 bytes");
  }
  static generate(): MasterKey {
    return new MasterKey(randomBytes(32));
  }
  static fromBase64(text: string): MasterKey {
    const buf = Buffer.from(text.trim(), "base64");
    if (buf.length !== 32) throw new Error("the master key must be base64 of exactly 32 bytes");
    return new MasterKey(buf);
  }
  toBase64(): string {
    return this.key.toString("base64");
  }
  subkey(purpose: Purpose): Buffer {
    let k = this.subkeys.get(purpose);
    if (!k) {
      k = Buffer.from(hkdfSync("sha256", this.key, Buffer.alloc(0), `sigil/${purpose}/v1`, 32));
      this.subkeys.set(purpose, k);
    }
    return k;
  }
  /** A value stored in the registry so that a wrong master key is detected at start. */
  checkValue(): string {
    return this.subkey("master-check").toString("base64url").slice(0, 22);
  }
}

// ---- sealing ----------------------------------------------------------------------------------

export interface Sealed {
  n: string; // nonce, base64
  c: string; // ciphertext, base64
}

export function seal(key: Buffer, plaintext: Uint8Array, ad: string): Sealed {
  const nonce = randomBytes(sodium.crypto_aead_xchacha20poly1305_ietf_NPUBBYTES);
  const c = sodium.crypto_aead_xchacha20poly1305_ietf_encrypt(plaintext, ad, null, nonce, key);
  return { n: b64(nonce), c: b64(c) };
}

/** Opens a sealed value; throws if the key, nonce, ciphertext or associated data do not match. */
export function open(key: Buffer, sealed: Sealed, ad: string): Uint8Array {
  return sodium.crypto_aead_xchacha20poly1305_ietf_decrypt(null, fromB64(sealed.c), ad, fromB64(sealed.n), key);
}

// ---- Ed25519 ----------------------------------------------------------------------------------

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

// ---- tokens, ids, keyed hashes -----------------------------------------------------------------

export type TokenKind = "agent" | "admin";
export const TOKEN_PREFIX: Record<TokenKind, string> = { agent: "sigil_agent_", admin: "sigil_admin_" };

export function newToken(kind: TokenKind): string {
  return TOKEN_PREFIX[kind] + randomBytes(32).toString("base64url");
}

export function tokenHash(token: string): string {
  return sha256hex("sigil-token-v1\n" + token);
}

export function hashesEqual(a: string, b: string): boolean {
  const x = Buffer.from(a, "utf8");
  const y = Buffer.from(b, "utf8");
  return x.length === y.length && timingSafeEqual(x, y);
}

export function randomId(prefix: string, bytes = 10): string {
  return prefix + randomBytes(bytes).toString("hex");
}

/** Keyed hash of a sensitive value for the audit log (HMAC-SHA256 with the audit subkey). */
export function keyedHash(key: Buffer, value: string): string {
  return "hmac-sha256:" + createHmac("sha256", key).update(value).digest("base64url");
}
