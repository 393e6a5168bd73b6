/**
 * Tokens, ids and keyed hashes. Tokens are 256-bit random values with a scannable prefix; only a
 * hash of them is stored, and comparisons are constant-time.
 */
import { createHmac, randomBytes, timingSafeEqual } from "node:crypto";
import { sha256hex } from "./encoding.js";

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
