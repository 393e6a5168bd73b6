/**
 * The crypto primitives by purpose, re-exported for code written before they were split (import
 * from the purpose modules instead): encoding.ts (base64, SHA-256), sodium.ts (libsodium ready),
 * master-key.ts (HKDF subkeys), seal.ts (XChaCha20-Poly1305), ed25519.ts (sign, verify, key ids),
 * tokens.ts (tokens, ids, keyed hashes). Nothing is implemented here.
 */
export * from "./encoding.js";
export * from "./sodium.js";
export * from "./master-key.js";
export * from "./seal.js";
export * from "./ed25519.js";
export * from "./tokens.js";
