/**
 * The mechanism behind "the store is not an authority" (src/identity/record-mac.ts): record MACs
 * bound to kind, id and every field, and keyed token hashes with their in-place upgrade. The
 * end-to-end attacks on both stores are in test/store-authority.test.ts.
 */
import { describe, expect, it } from "vitest";
import { MasterKey } from "../src/crypto/master-key.js";
import { tokenHash } from "../src/crypto/tokens.js";
import { RecordMac, TokenHashes } from "../src/identity/record-mac.js";

const master = MasterKey.generate();
const macs = RecordMac.from(master);
const record = { id: "id_0123456789abcdef0123", policy: { allowedDomains: ["example.com"] }, policyVersion: 2, channels: ["email"], tokenHash: "ab".repeat(32) };

describe("record MACs", () => {
  it("a sealed record checks; the same record under another id, kind or master key does not", () => {
    const sealed = macs.seal("identity", record.id, record);
    expect(macs.check("identity", record.id, sealed)).toBe(true);
    expect(macs.check("identity", "id_ffffffffffffffffffff", sealed)).toBe(false);
    expect(macs.check("tenant", record.id, sealed)).toBe(false);
    expect(RecordMac.from(MasterKey.generate()).check("identity", record.id, sealed)).toBe(false);
  });

  it("every field is covered: a changed, added or removed member fails", () => {
    const sealed = macs.seal("identity", record.id, { ...record, revokedAt: "2026-01-01T00:00:00.000Z" });
    expect(macs.check("identity", record.id, { ...sealed, policy: { allowedDomains: ["*"] } })).toBe(false);
    expect(macs.check("identity", record.id, { ...sealed, policyVersion: 3 })).toBe(false);
    expect(macs.check("identity", record.id, { ...sealed, channels: ["email", "card"] })).toBe(false);
    expect(macs.check("identity", record.id, { ...sealed, extra: 1 })).toBe(false);
    const { revokedAt: _r, ...unrevoked } = sealed;
    expect(macs.check("identity", record.id, unrevoked)).toBe(false);
  });

  it("a missing or malformed MAC fails", () => {
    expect(macs.check("identity", record.id, record)).toBe(false);
    expect(macs.check("identity", record.id, { ...record, mac: "" })).toBe(false);
    expect(macs.check("identity", record.id, { ...record, mac: 42 })).toBe(false);
    const sealed = macs.seal("identity", record.id, record);
    expect(macs.check("identity", record.id, { ...sealed, mac: sealed.mac.slice(0, -2) })).toBe(false);
  });

  it("member order and undefined members do not matter (RFC 8785 over JSON's view)", () => {
    const sealed = macs.seal("identity", record.id, { ...record, phone: undefined });
    const reordered = Object.fromEntries(Object.entries(sealed).reverse());
    expect(macs.check("identity", record.id, reordered)).toBe(true);
    expect(macs.check("identity", record.id, JSON.parse(JSON.stringify(sealed)))).toBe(true);
  });
});

describe("keyed token hashes", () => {
  const tokens = TokenHashes.from(master);
  const token = "sigil_agent_" + "x".repeat(43);

  it("the upgrade of a stored plain hash is the keyed hash of its token, so tokens survive the upgrade", () => {
    expect(tokens.upgrade(tokenHash(token))).toBe(tokens.hash(token));
    expect(tokens.hash(token)).toMatch(/^[0-9a-f]{64}$/);
  });

  it("the keyed hash is neither the plain hash nor computable under another master key", () => {
    expect(tokens.hash(token)).not.toBe(tokenHash(token));
    expect(TokenHashes.from(MasterKey.generate()).hash(token)).not.toBe(tokens.hash(token));
  });
});
