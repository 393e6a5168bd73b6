/**
 * The mechanism behind "the store is not an authority" (src/identity/record-mac.ts): record MACs
 * bound to kind, id and every field, and keyed token hashes with their in-place upgrade. The
 * end-to-end attacks on both stores are in test/store-authority.test.ts.
 */
import { describe, expect, it } from "vitest";
import { MasterKey } from "../src/crypto/master-key.js";
import { tokenHash } from "../src/crypto/tokens.js";
import { tokenRef } from "../src/identity/identities.js";
import { RECORD_MAC_FORMAT, RecordMac, RecordTampered, TokenHashes, behindLog, macFields } from "../src/identity/record-mac.js";
import { createHmac } from "node:crypto";
import { jcs } from "../src/util/jcs.js";

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

describe("the edges of the mechanism (issue 20: each pinned by what it changes)", () => {
  it("a key that is not 32 bytes is refused, for either use", () => {
    for (const n of [0, 31, 33]) {
      expect(() => new RecordMac(Buffer.alloc(n))).toThrow(/32 bytes/);
      expect(() => new TokenHashes(Buffer.alloc(n))).toThrow(/32 bytes/);
    }
    expect(() => new RecordMac(Buffer.alloc(32))).not.toThrow();
    expect(() => new TokenHashes(Buffer.alloc(32))).not.toThrow();
  });

  it("each key is the master key's subkey of its own purpose (every stored MAC and token hash depends on it)", () => {
    const fields = { a: 1 };
    expect(RecordMac.from(master).mac("identity", "id_x", fields)).toBe(new RecordMac(master.subkey("record-mac")).mac("identity", "id_x", fields));
    expect(TokenHashes.from(master).upgrade("ab")).toBe(new TokenHashes(master.subkey("token-hash")).upgrade("ab"));
    expect(master.subkey("record-mac").equals(master.subkey("token-hash"))).toBe(false);
  });

  it("the MAC is HMAC-SHA256 over the label, kind, id and canonical fields, prefixed rmac1:", () => {
    const key = Buffer.alloc(32, 7);
    const fields = { b: 1, a: [true, null] };
    const expected = createHmac("sha256", key).update(`${RECORD_MAC_FORMAT}\nidentity\nid_x\n`).update(jcs(fields)).digest("base64url");
    expect(new RecordMac(key).mac("identity", "id_x", fields)).toBe(`rmac1:${expected}`);
    expect(RECORD_MAC_FORMAT).toBe("sigil-record-mac-v1");
  });

  it("a kind or id with a newline cannot be MACed (it could shift the label's fields)", () => {
    expect(() => macs.mac("identity\nx", "id", {})).toThrow(/newline/);
    expect(() => macs.mac("identity", "id\nx", {})).toThrow(/newline/);
    expect(() => macs.check("identity", "id\nx", { mac: "rmac1:x" })).toThrow(/newline/);
  });

  it("a MAC without its prefix fails even when the rest is right", () => {
    const sealed = macs.seal("identity", record.id, record);
    expect(sealed.mac.startsWith("rmac1:")).toBe(true);
    expect(macs.check("identity", record.id, { ...sealed, mac: sealed.mac.slice("rmac1:".length) })).toBe(false);
    expect(macs.verify("identity", record.id, macFields(sealed), sealed.mac)).toBe(true);
    expect(macs.verify("identity", record.id, macFields(sealed), "xmac1:" + sealed.mac.slice(6))).toBe(false);
  });

  it("sealing replaces a MAC the record already carries, and covers everything else", () => {
    const sealed = macs.seal("identity", record.id, { ...record, mac: "rmac1:old" });
    expect(sealed.mac).not.toBe("rmac1:old");
    expect(sealed.mac).toBe(macs.seal("identity", record.id, record).mac);
    expect(macFields(sealed)).toEqual(record);
    expect(macFields({ a: 1, b: undefined, mac: "m" })).toEqual({ a: 1 });
  });

  it("a tampered record's refusal names what it is", () => {
    const e = new RecordTampered("identity", "id_1");
    expect(e).toMatchObject({ code: "record_tampered", kind: "identity", recordId: "id_1" });
    expect(e.publicMessage).toMatch(/^the registry record of this identity fails its integrity check/);
    expect(new RecordTampered("tenant", "t_1").publicMessage).toMatch(/^the registry record of tenant t_1 fails/);
    expect(new RecordTampered("meta", "registry").publicMessage).toMatch(/^the registry record of meta fails/);
  });

  it("token refs: the value identities.ts records in the log", () => {
    const stored = tokens0.hash("sigil_agent_" + "y".repeat(43));
    expect(tokens0.ref(stored)).toBe(tokenRef(stored));
    expect(tokens0.ref(stored)).toMatch(/^[0-9a-f]{32}$/);
  });
});

const tokens0 = TokenHashes.from(master);

describe("behindLog: a record behind the identity's signed log is refused", () => {
  const stored = tokens0.hash("sigil_agent_" + "z".repeat(43));
  const rec = { tokenHash: stored, policyVersion: 3 };
  const current = { revoked: false, tokenRef: tokenRef(stored), policyDone: 3 };

  it("a record that agrees with the log passes; a log with no rotation or policy update has nothing to compare", () => {
    expect(behindLog(rec, current, tokens0)).toBeUndefined();
    expect(behindLog(rec, { revoked: false, policyDone: 0 }, tokens0)).toBeUndefined();
  });

  it("revoked in the log: revoked, whatever the record says", () => {
    expect(behindLog(rec, { ...current, revoked: true }, tokens0)).toEqual({ reason: "revoked", message: "this identity has been revoked." });
  });

  it("a token other than the one the last rotation installed: record_stale", () => {
    const other = tokens0.hash("sigil_agent_" + "w".repeat(43));
    expect(behindLog({ ...rec, tokenHash: other }, current, tokens0)).toMatchObject({ reason: "record_stale", message: expect.stringMatching(/older than its audit log/) });
    expect(behindLog(rec, { ...current, tokenRef: current.tokenRef.slice(0, -1) }, tokens0)).toMatchObject({ reason: "record_stale" });
  });

  it("a policy version below the last completed update's: record_stale; equal or above (an update in flight) passes", () => {
    expect(behindLog({ ...rec, policyVersion: 2 }, current, tokens0)).toMatchObject({ reason: "record_stale", message: expect.stringMatching(/older policy than its audit log/) });
    expect(behindLog({ ...rec, policyVersion: 3 }, current, tokens0)).toBeUndefined();
    expect(behindLog({ ...rec, policyVersion: 4 }, current, tokens0)).toBeUndefined();
  });
});
