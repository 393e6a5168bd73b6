/**
 * The pure parts of "key rotation survives a crash" (end to end with killed processes:
 * test/admin-crash.test.ts):
 *
 * - `reconcileKeyRecords` makes the registry's key states and windows what the log's key history
 *   says, whichever side a crash left behind;
 * - the verifier accepts a rotation recorded as an intent and its `ok` result (the handover), a
 *   rotation that failed (no handover), and refuses an intent or an unsuccessful result that
 *   carries a handover.
 *
 * In-process against src/.
 */
import { beforeAll, describe, expect, it } from "vitest";
import { verifyChain } from "../src/audit/verify.js";
import { reconcileKeyRecords } from "../src/identity/keyring.js";
import type { KeyRecord } from "../store/types.js";
import { ForgedLog, newKey, seal, type ForgeKey } from "./support/audit-forge.js";

const sealed = { v: 1, nonce: "", ct: "" } as unknown as KeyRecord["sealed"];
const key = (keyId: string, status: KeyRecord["status"], notBefore?: string, notAfter?: string): KeyRecord => ({
  keyId,
  publicKey: "",
  sealed,
  createdAt: "2026-01-01T00:00:00.000Z",
  status,
  ...(notBefore !== undefined ? { notBefore } : {}),
  ...(notAfter !== undefined ? { notAfter } : {}),
});
const T0 = "2026-01-01T00:00:00.100Z"; // the creation entry
const T1 = "2026-01-01T00:05:00.000Z"; // the rotation's handover entry

describe("reconcileKeyRecords: the registry's key windows made to agree with the log", () => {
  const history = [
    { keyId: "k1", from: T0, to: T1 },
    { keyId: "k2", from: T1 },
  ];

  it("agreeing records are left alone (the first key may predate its creation entry)", () => {
    expect(reconcileKeyRecords([key("k1", "retired", "2026-01-01T00:00:00.000Z", T1), key("k2", "active", T1)], history)).toBeUndefined();
    expect(reconcileKeyRecords([key("k1", "active", "2026-01-01T00:00:00.000Z")], [{ keyId: "k1", from: T0 }])).toBeUndefined();
  });

  it("a registry behind the log (killed after the handover, before the registry write) is moved forward", () => {
    const fixed = reconcileKeyRecords([key("k1", "active", T0), key("k2", "pending")], history)!;
    expect(fixed.map((k) => [k.keyId, k.status, k.notBefore, k.notAfter])).toEqual([
      ["k1", "retired", T0, T1],
      ["k2", "active", T1, undefined],
    ]);
  });

  it("a registry ahead of the log (a key the log never handed signing to) is moved back: the key is pending, unpublished", () => {
    const fixed = reconcileKeyRecords([key("k1", "retired", T0, T1), key("k2", "active", T1)], [{ keyId: "k1", from: T0 }])!;
    expect(fixed.map((k) => [k.keyId, k.status, k.notBefore, k.notAfter])).toEqual([
      ["k1", "active", T0, undefined],
      ["k2", "pending", undefined, undefined],
    ]);
  });

  it("wrong windows are corrected to the log's times; a first key dated after its creation entry is moved back to it", () => {
    const fixed = reconcileKeyRecords([key("k1", "retired", "2026-01-01T00:01:00.000Z", "2026-01-01T00:04:00.000Z"), key("k2", "active", "2026-01-01T00:04:00.000Z")], history)!;
    expect(fixed.map((k) => [k.keyId, k.status, k.notBefore, k.notAfter])).toEqual([
      ["k1", "retired", T0, T1],
      ["k2", "active", T1, undefined],
    ]);
  });
});

describe("the verifier and a key rotation recorded as intent + result", () => {
  let log: ForgedLog;
  let k1: ForgeKey;
  let k2: ForgeKey;

  beforeAll(async () => {
    log = await ForgedLog.create();
    log.call(1);
    k1 = log.active;
    k2 = await newKey();
  });

  /** The log so far plus: an intent naming k2, and its result (`extra` members on either). */
  function rotation(result: Record<string, unknown>, opts: { intentExtra?: Record<string, unknown>; cosignIntent?: boolean; cosignResult?: boolean } = {}): ForgedLog {
    const f = log.fork();
    const intent = f.body({ tool: "key_rotated", session: "admin", phase: "intent", decision: "allow", incomingKeyId: k2.keyId, ...opts.intentExtra });
    f.entries.push(seal(intent, k1, opts.cosignIntent ? k2 : undefined));
    const res = f.body({ tool: "key_rotated", session: "admin", phase: "result", intent: intent.seq, ...result });
    f.entries.push(seal(res, k1, opts.cosignResult ? k2 : undefined));
    return f;
  }
  const handover = () => ({ decision: "ok", previousKeyId: k1.keyId, newKeyId: k2.keyId, newPublicKey: k2.publicKey });
  const keysAfter = (f: ForgedLog) => {
    const at = f.entries[f.entries.length - 1]!.ts as string;
    return [
      { keyId: k1.keyId, publicKey: k1.publicKey, notBefore: log.keys[0]!.notBefore, notAfter: at },
      { keyId: k2.keyId, publicKey: k2.publicKey, notBefore: at },
    ];
  };

  it("intent, then the ok result handing over (signed by the outgoing key, co-signed by the incoming): the next entry verifies only under the incoming key", async () => {
    const f = rotation(handover(), { cosignResult: true });
    f.active = k2;
    f.call(1);
    expect(await verifyChain(f.identity, f.lines(), keysAfter(f))).toMatchObject({ ok: true, entries: f.entries.length });
    const stale = rotation(handover(), { cosignResult: true });
    stale.call(1); // still signed by k1 after the handover
    expect(await verifyChain(stale.identity, stale.lines(), keysAfter(stale))).toMatchObject({ ok: false, firstBadSeq: stale.entries.length, error: expect.stringMatching(/was active/) });
  });

  it("a failed rotation (intent, then `failed` without a handover) changes no key", async () => {
    const f = rotation({ decision: "failed", reason: "interrupted" });
    f.call(1);
    expect(await verifyChain(f.identity, f.lines(), log.keys)).toMatchObject({ ok: true, entries: f.entries.length });
  });

  it("an intent that hands signing over is refused", async () => {
    const f = rotation({ decision: "failed", reason: "interrupted" }, { intentExtra: { previousKeyId: k1.keyId, newKeyId: k2.keyId, newPublicKey: k2.publicKey }, cosignIntent: true });
    expect(await verifyChain(f.identity, f.lines(), keysAfter(f))).toMatchObject({ ok: false, firstBadSeq: 3, error: expect.stringMatching(/key rotation entry 3 is an intent or an unsuccessful result/) });
  });

  it("a `failed` or `unknown` result that hands signing over is refused", async () => {
    for (const decision of ["failed", "unknown"]) {
      const f = rotation({ ...handover(), decision }, { cosignResult: true });
      expect(await verifyChain(f.identity, f.lines(), keysAfter(f))).toMatchObject({ ok: false, firstBadSeq: 4, error: expect.stringMatching(/key rotation entry 4 is an intent or an unsuccessful result/) });
    }
  });

  it("an `ok` rotation result without a handover is refused", async () => {
    const f = rotation({ decision: "ok" });
    expect(await verifyChain(f.identity, f.lines(), log.keys)).toMatchObject({ ok: false, firstBadSeq: 4, error: expect.stringMatching(/key rotation entry 4/) });
  });
});
