/**
 * Sealing: XChaCha20-Poly1305 (libsodium) under a master-key subkey, with associated data that binds
 * each ciphertext to the place it belongs (identity, key id, secret name, version). Nonces come from
 * node:crypto (libsodium's randombytes_buf is ~100x slower here).
 */
import { randomBytes } from "node:crypto";
import { b64, fromB64 } from "./encoding.js";
import { sodium } from "./sodium.js";

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
