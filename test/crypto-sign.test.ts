/**
 * Audit entries are signed with node:crypto from the libsodium-form key (src/crypto/ed25519.ts `sign`).
 * Ed25519 is deterministic, so the signatures must be byte-for-byte libsodium's; this checks that
 * over random keys and messages (including the audit statement form), and that they verify.
 */
import { describe, expect, it } from "vitest";
import { randomBytes } from "node:crypto";
import { cryptoReady } from "../dist/src/crypto/sodium.js";
import { generateSigningKey, sign, signWithSodium, verifySignature } from "../dist/src/crypto/ed25519.js";

describe("Ed25519 signing through node:crypto", () => {
  it("produces exactly libsodium's signatures, which verify", async () => {
    await cryptoReady();
    for (let i = 0; i < 200; i++) {
      const kp = generateSigningKey();
      const message = i % 2 ? randomBytes(i) : `sigil-audit-entry-v1\n${randomBytes(32).toString("hex")}`;
      const ours = sign(kp.secretKey, message);
      expect(Buffer.from(ours).equals(Buffer.from(signWithSodium(kp.secretKey, message)))).toBe(true);
      expect(verifySignature(kp.publicKey, message, ours)).toBe(true);
      // The key object is cached per key: a second signature with it is the same.
      expect(Buffer.from(sign(kp.secretKey, message)).equals(Buffer.from(ours))).toBe(true);
    }
  });
});
