/** Base64 and base64url encoding and SHA-256: the one implementation of each (jwk.ts re-exports them under its names). */
import { createHash } from "node:crypto";

export const b64 = (b: Uint8Array): string => Buffer.from(b).toString("base64");
export const fromB64 = (s: string): Buffer => Buffer.from(s, "base64");
export const b64url = (b: Uint8Array): string => Buffer.from(b).toString("base64url");
export const sha256 = (data: Uint8Array | string): Buffer => createHash("sha256").update(data).digest();
export const sha256hex = (data: Uint8Array | string): string => createHash("sha256").update(data).digest("hex");
