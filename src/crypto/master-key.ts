/**
 * The master key and its subkeys: HKDF-SHA256, one 32-byte subkey per job (sealing signing keys,
 * the vault, the audit HMAC, chain snapshots, token hashes, record MACs), and the check value the
 * registry keeps so a wrong master key is detected at start.
 */
import { hkdfSync, randomBytes } from "node:crypto";

export type Purpose = "signing-keys" | "audit-hmac" | "vault" | "master-check" | "chain-snapshot" | "token-hash" | "record-mac" | "oauth-consent" | "inbound-seal";

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
