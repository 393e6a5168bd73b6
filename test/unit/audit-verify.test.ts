/**
 * The audit verifier, attacked the way a careful forger would: every log below is validly hashed,
 * linked and signed everywhere except in the one property under test, so each case reaches the
 * check meant for it (and fails if that check is removed). Keys are anchored: the creation entry
 * fixes the first key, only a rotation signed by the outgoing key and co-signed by the incoming one
 * hands signing over, and an entry verifies only under a trusted key whose validity window holds
 * its time. In-process against src/ (so `npm run test:mutation` runs it); the CLI is tested in
 * test/audit-verify-cli.test.ts, the worker threads in test/audit-verify-parallel.test.ts.
 */
import { beforeAll, describe, expect, it } from "vitest";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import os from "node:os";
import path from "node:path";
import { verifierCounters, verifyChain, type PublicKeyInfo } from "../../src/audit/verify.js";
import { examineEntry, strictPublicKey, strictSignature } from "../../src/audit/verify-entry.js";
import { loadKeySource, verifyBundle } from "../../src/audit/anchor.js";
import { canonicalLine } from "../../src/audit/entry.js";
import { ForgedLog, newKey, seal, type Entry, type ForgeKey } from "../support/audit-forge.js";

let base: ForgedLog; // 4 entries, a rotation (seq 5), 3 more: 8 entries
let beforeRotation: ForgedLog; // the same log as it stood at seq 4
let oldKey: ForgeKey;
let rotationTs: number;

beforeAll(async () => {
  base = await ForgedLog.create();
  base.call(3);
  beforeRotation = base.fork();
  oldKey = base.active;
  await base.rotate();
  rotationTs = Date.parse(base.entries[4]!.ts);
  base.call(3);
});

const verify = (lines: Array<string | Entry>, keys: PublicKeyInfo[] = base.keys) => verifyChain(base.identity, lines as string[], keys);
/** Replaces entry `seq` by `change(copy)`, re-sealed with `key` (the key active there by default). */
function resealed(log: ForgedLog, seq: number, change: (e: Entry) => void, key?: ForgeKey): string[] {
  const lines = log.lines();
  const e = { ...log.entries[seq - 1]! };
  change(e);
  lines[seq - 1] = canonicalLine(seal(e, key ?? keyAt(log, seq)));
  return lines;
}
function keyAt(log: ForgedLog, seq: number): ForgeKey {
  return log.entries[seq - 1]!.keyId === oldKey.keyId ? oldKey : log.active;
}
const B64 = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
const bad = (seq: number, why: RegExp) => ({ ok: false, firstBadSeq: seq, error: expect.stringMatching(why) });

describe("an intact log", () => {
  it("verifies across a rotation, against the registry's keys and against the published JWKS", async () => {
    expect(await verify(base.lines())).toMatchObject({ ok: true, entries: 8 });
    const dir = mkdtempSync(path.join(os.tmpdir(), "sigil-anchor-"));
    try {
      const file = path.join(dir, "keys.json");
      writeFileSync(file, JSON.stringify(base.jwks()));
      const source = await loadKeySource(file);
      expect(source.identity).toBe(base.identity);
      expect(await verify(base.lines(), source.keys)).toMatchObject({ ok: true, entries: 8 });
      // As a bundle: anchored to those keys, or — with only the bundle's own list — unanchored.
      expect(await verifyBundle(base.bundle(), source)).toMatchObject({ ok: true, verdict: "ok", anchored: true, anchor: "keys" });
      expect(await verifyBundle(base.bundle())).toMatchObject({ ok: false, verdict: "unanchored", anchored: false, identities: [{ ok: true }] });
      // A key set that names another identity is refused rather than used.
      await expect(verifyBundle({ ...base.bundle(), identity: { id: "id_ffffffffffffffffffff", name: "x", createdAt: "" } }, source)).rejects.toThrow(/are those of/);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});

describe("keys are anchored", () => {
  it("a log re-signed with a foreign key (one entry removed) is self-consistent, fails against the real keys, and is only unanchored as a bundle", async () => {
    const foreign = await ForgedLog.create(base.identity);
    // The forger replays the real log's content minus entry 3, under its own key from the start.
    for (const e of base.entries.slice(1)) {
      if (e.seq === 3 || e.tool === "key_rotated") continue;
      foreign.push({ tool: e.tool, phase: e.phase, decision: e.decision, session: e.session });
    }
    expect(await verify(foreign.lines(), foreign.keys)).toMatchObject({ ok: true });
    expect(await verify(foreign.lines(), base.keys)).toMatchObject(bad(1, /not among the trusted keys/));
    expect(await verifyBundle(foreign.bundle())).toMatchObject({ verdict: "unanchored" });
    expect(await verifyBundle(foreign.bundle(), { source: "published", keys: base.keys })).toMatchObject({ verdict: "failed", identities: [bad(1, /not among the trusted keys/)] });
  });

  it("a retired key cannot sign history dated after its retirement, even against the real published keys", async () => {
    const fork = beforeRotation.fork(); // the old key's holder continues the log as if never rotated
    fork.push({ tool: "whoami", phase: "call", decision: "allow" }, { ts: rotationTs }); // same second as the rotation: still in its window
    fork.push({ tool: "card_charge", phase: "intent", decision: "allow", amountCents: 100 }, { ts: rotationTs + 1000 });
    expect(await verify(fork.lines(), fork.keys)).toMatchObject({ ok: true }); // its own key list (no retirement) accepts it
    expect(await verify(fork.lines(), base.keys)).toMatchObject(bad(6, /dated .* outside the validity of key/));
  });

  it("an entry is valid only under the key active at its position: the outgoing key signing after the rotation fails, even inside its window", async () => {
    const log = base.fork();
    log.push({ tool: "whoami", phase: "call", decision: "allow" }, { ts: rotationTs, key: oldKey }); // same second: the window alone allows it
    expect(await verify(log.lines())).toMatchObject(bad(9, /signed by key .* but key .* was active/));
  });

  it("an entry dated before its key's window fails", async () => {
    const lines = resealed(base, 2, (e) => (e.ts = new Date(Date.parse(base.keys[0]!.notBefore!) - 1000).toISOString()));
    expect(await verify(lines)).toMatchObject(bad(2, /outside the validity of key/));
  });

  it("the first key is fixed by the creation entry: a log that does not start with one fails", async () => {
    const lines = resealed(base, 1, (e) => {
      e.tool = "whoami";
      delete e.publicKey;
    });
    expect(await verify(lines)).toMatchObject(bad(1, /not the identity's creation entry/));
  });

  it("a creation entry that carries one key but is signed by another fails", async () => {
    const other = await newKey();
    const lines = resealed(base, 1, (e) => (e.publicKey = other.publicKey));
    expect(await verify(lines, [...base.keys, { keyId: other.keyId, publicKey: other.publicKey }])).toMatchObject(bad(1, /carries the first key/));
  });

  it("a trusted key whose id is not its thumbprint is refused (a key list cannot rename a foreign key as the real one)", async () => {
    const attacker = await newKey();
    const real = base.keys[0]!;
    const log = new ForgedLog(base.identity);
    log.active = { ...attacker, keyId: real.keyId }; // entries name the real key id, signed by the attacker
    log.push({ tool: "identity_created", phase: "event", decision: "ok", publicKey: real.publicKey });
    log.call(2);
    const claimed = [{ keyId: real.keyId, publicKey: attacker.publicKey, notBefore: real.notBefore }];
    expect(await verify(log.lines(), claimed)).toMatchObject(bad(1, /does not match its public key/));
  });

  it("a rotation must be signed by the outgoing key and name it", async () => {
    const lines = base.lines();
    lines[4] = canonicalLine(seal({ ...base.entries[4]!, previousKeyId: base.active.keyId }, oldKey, base.active));
    expect(await verify(lines)).toMatchObject(bad(5, /does not name the outgoing key/));
  });

  it("a rotation must name a key that matches its public key", async () => {
    const stranger = await newKey();
    const e = { ...base.entries[4]!, newPublicKey: stranger.publicKey }; // names the real new key id, carries another key
    const lines = base.lines().slice(0, 4);
    lines.push(canonicalLine(seal(e, oldKey, stranger)));
    expect(await verify(lines)).toMatchObject(bad(5, /names a key that does not match its public key/));
  });

  it("a rotation must carry the incoming key's co-signature", async () => {
    const e = { ...base.entries[4]! };
    const lines = base.lines();
    lines[4] = canonicalLine({ ...e, sigNew: base.entries[5]!.sig });
    expect(await verify(lines)).toMatchObject(bad(5, /not signed by the new key/));
    delete e.sigNew;
    lines[4] = canonicalLine(e);
    expect(await verify(lines)).toMatchObject(bad(5, /not signed by the new key/));
  });

  it("a rotation to a key the verifier does not trust fails (keys published before the rotation)", async () => {
    const old = [{ ...base.keys[0]!, status: "active", notAfter: undefined }];
    expect(await verify(base.lines(), old)).toMatchObject(bad(5, /hands signing to key .* not among the trusted keys/));
  });

  it("a rotation to the key already active fails", async () => {
    const e = { ...base.entries[4]!, newKeyId: oldKey.keyId, newPublicKey: oldKey.publicKey };
    const lines = base.lines().slice(0, 4);
    lines.push(canonicalLine(seal(e, oldKey, oldKey)));
    expect(await verify(lines)).toMatchObject(bad(5, /already active/));
  });

  it("a pending key (never handed signing) is not trusted", async () => {
    const keys = base.keys.map((k) => (k.keyId === base.active.keyId ? { ...k, status: "pending" } : k));
    expect(await verify(base.lines(), keys)).toMatchObject(bad(5, /not among the trusted keys/));
  });
});

describe("each tamper reaches the check meant for it", () => {
  it("splicing two validly signed forks of one log fails at the splice (the prev link)", async () => {
    const a = base.fork();
    a.call(3);
    const b = base.fork();
    b.push({ tool: "send_sms", phase: "call", decision: "allow" });
    b.call(2);
    const spliced = [...a.lines().slice(0, 10), ...b.lines().slice(10)];
    expect(await verify(a.lines())).toMatchObject({ ok: true, entries: 11 });
    expect(await verify(b.lines())).toMatchObject({ ok: true, entries: 11 });
    expect(await verify(spliced)).toMatchObject(bad(11, /does not link to the previous entry/));
  });

  it("a gap in seq, otherwise linked and signed, fails at the gap", async () => {
    const lines = resealed(base, 6, (e) => (e.seq = 7));
    expect(await verify(lines.slice(0, 6))).toMatchObject(bad(6, /found seq 7 where 6 was expected/));
  });

  it("an entry repeated (or moved back) fails as a duplicate", async () => {
    const lines = base.lines();
    expect(await verify([...lines.slice(0, 4), lines[2]!, ...lines.slice(4)])).toMatchObject(bad(5, /found seq 3 where 5 was expected \(a duplicated or reordered entry\)/));
  });

  it("an entry of another identity's log, validly signed, fails", async () => {
    expect(await verify(resealed(base, 3, (e) => (e.identity = "id_ffffffffffffffffffff")))).toMatchObject(bad(3, /another identity/));
  });

  it("an unknown format version fails", async () => {
    expect(await verify(resealed(base, 3, (e) => (e.v = 2)))).toMatchObject(bad(3, /format version 2/));
  });

  it("a time that is not a canonical ISO 8601 instant fails", async () => {
    expect(await verify(resealed(base, 3, (e) => (e.ts = e.ts.replace(".000Z", "Z"))))).toMatchObject(bad(3, /no valid time/));
  });

  it("content changed under the old hash fails the hash check; with a recomputed hash, the signature check", async () => {
    const lines = base.lines();
    lines[2] = canonicalLine({ ...base.entries[2]!, decision: "deny" });
    expect(await verify(lines)).toMatchObject(bad(3, /does not match its hash/));
    const rehashed = seal({ ...base.entries[2]!, decision: "deny" }, oldKey);
    lines[2] = canonicalLine({ ...rehashed, sig: base.entries[2]!.sig });
    expect(await verify(lines.slice(0, 3))).toMatchObject(bad(3, /invalid signature/));
  });
});

describe("every byte of a line is authenticated, except the signature, whose encoding is strict", () => {
  const lineCases: Array<[string, (line: string) => string]> = [
    ["a repeated member (the signed value last)", (l) => l.replace('"decision":"allow"', '"decision":"deny","decision":"allow"')],
    ["whitespace between members", (l) => l.replace(/,"/g, ', "')],
    ["pretty-printed", (l) => JSON.stringify(JSON.parse(l), null, 1).replace(/\n/g, "")],
    ["members in another order", (l) => JSON.stringify(Object.fromEntries(Object.entries(JSON.parse(l)).reverse()))],
    ["an escaped character where the canonical form has the character", (l) => l.replace('"whoami"', '"\\u0077hoami"')],
    ["a number written another way", (l) => l.replace('"seq":3', '"seq":3.0')],
    ["a trailing space", (l) => l + " "],
  ];
  it.each(lineCases)("%s: the line is not its canonical form", async (_name, change) => {
    const lines = base.lines();
    const changed = change(lines[2]!);
    expect(changed).not.toBe(lines[2]);
    expect(JSON.parse(changed).sig).toBe(base.entries[2]!.sig); // still the same signed content to a lenient reader
    lines[2] = changed;
    expect(await verify(lines)).toMatchObject(bad(3, /canonical form/));
  });

  const sigCases: Array<[string, (sig: string) => string]> = [
    ["without its padding", (s) => s.replace(/=+$/, "")],
    ["with a space inside", (s) => s.slice(0, 40) + " " + s.slice(40)],
    ["non-zero bits after the last byte", (s) => s.slice(0, 85) + B64[B64.indexOf(s[85]!) | 1] + "=="],
    ["with a line break inside", (s) => s.slice(0, 40) + "\n" + s.slice(40)],
    ["with an extra byte", (s) => Buffer.concat([Buffer.from(s, "base64"), Buffer.from([0])]).toString("base64")],
  ];
  it.each(sigCases)("a signature %s fails", async (_name, change) => {
    const lines = base.lines();
    const sig = change(base.entries[2]!.sig);
    expect(sig).not.toBe(base.entries[2]!.sig);
    lines[2] = canonicalLine({ ...base.entries[2]!, sig });
    expect(await verify(lines)).toMatchObject(bad(3, /invalid signature/));
  });

  it("a co-signature (the one member outside the hash besides sig) on an entry that is not a rotation fails", async () => {
    const lines = base.lines();
    lines[2] = canonicalLine({ ...base.entries[2]!, sigNew: base.entries[2]!.sig });
    expect(await verify(lines)).toMatchObject(bad(3, /second signature but is not a key rotation/));
  });

  it("a rotation's co-signature is strict too", async () => {
    const lines = base.lines();
    lines[4] = canonicalLine({ ...base.entries[4]!, sigNew: base.entries[4]!.sigNew.replace(/=+$/, "") });
    expect(await verify(lines)).toMatchObject(bad(5, /not signed by the new key/));
  });
});

describe("edges the verdict depends on", () => {
  it("an entry whose seq is not a number is reported as missing entries, not as a duplicate", async () => {
    const lines = resealed(base, 5, (e) => (e.seq = "3"), oldKey);
    expect(await verify(lines)).toMatchObject({ ...bad(5, /found seq 3 where 5 was expected \(entries missing/), entries: 4 });
  });

  it("a first entry that carries a key but is not the creation entry fails", async () => {
    expect(await verify(resealed(base, 1, (e) => (e.tool = "whoami")))).toMatchObject({ ...bad(1, /not the identity's creation entry/), entries: 0 });
  });

  it("an entry dated exactly at its key's notBefore second verifies (the window is inclusive)", async () => {
    const lines = resealed(base, 2, (e) => (e.ts = base.keys[0]!.notBefore));
    expect(await verify(lines.slice(0, 2))).toMatchObject({ ok: true, entries: 2 });
  });

  it("keys without a window are valid throughout; an unreadable or inverted window is refused", async () => {
    const bare = base.keys.map((k) => ({ keyId: k.keyId, publicKey: k.publicKey }));
    expect(await verify(base.lines(), bare)).toMatchObject({ ok: true });
    const k0 = base.keys[0]!;
    expect(await verify(base.lines(), [{ ...k0, notBefore: "soon" }])).toMatchObject(bad(1, /unreadable validity window/));
    expect(await verify(base.lines(), [{ ...k0, notAfter: "2000-01-01T00:00:00.000Z" }])).toMatchObject(bad(1, /unreadable validity window/));
  });

  const rotationLike: Array<[string, (e: Entry) => void]> = [
    ["only a newPublicKey", (e) => (e.newPublicKey = base.active.publicKey)],
    ["only a newKeyId", (e) => (e.newKeyId = base.active.keyId)],
    ["the rotation's tool and nothing else", (e) => (e.tool = "key_rotated")],
    [
      "every rotation member but another tool",
      (e) => Object.assign(e, { previousKeyId: oldKey.keyId, newKeyId: base.active.keyId, newPublicKey: base.active.publicKey }),
    ],
  ];
  it.each(rotationLike)("an entry with %s is held to the rules of a rotation", async (_name, change) => {
    const copy = { ...base.entries[2]! };
    change(copy);
    const lines = base.lines();
    lines[2] = canonicalLine(seal(copy, oldKey, base.active));
    expect(await verify(lines)).toMatchObject({ ok: false, firstBadSeq: 3, error: expect.stringMatching(/key rotation entry 3/) });
  });

  it("unresolved intents: an allowed intent without a result is listed, one with a result or a refusal is not", async () => {
    const log = base.fork();
    log.push({ tool: "send_sms", phase: "intent", decision: "allow" }); // 9: resolved below
    log.push({ tool: "send_sms", phase: "intent", decision: "deny" }); // 10: a refusal has no result
    log.push({ tool: "send_sms", phase: "result", decision: "ok", intent: 9 });
    log.push({ tool: "card_charge", phase: "intent", decision: "allow" }); // 12: open
    log.push({ tool: "send_sms", phase: "call", decision: "allow", intent: 12 }); // not a result
    const r = await verify(log.lines());
    expect(r).toMatchObject({ ok: true, entries: 13, unresolvedIntents: [12] });
    expect(await verify(base.lines())).not.toHaveProperty("unresolvedIntents");
  });
});

describe("a key rotation recorded as an intent and its result (issue 20)", () => {
  /** A log of 3 entries, then a rotation as intent (seq 4) and `result` (seq 5), then one call. */
  async function rotated(result: "ok" | "failed" | "unknown"): Promise<{ log: ForgedLog; outgoing: ForgeKey; incoming: ForgeKey }> {
    const log = await ForgedLog.create();
    log.call(2);
    const outgoing = log.active;
    const incoming = await log.rotateAsIntent(result);
    log.call(1);
    return { log, outgoing, incoming };
  }
  const ok = (log: ForgedLog) => verifyChain(log.identity, log.lines(), log.keys);
  /** The log with entry `seq` replaced by `change(copy)`, sealed by `key` and co-signed by `cosign`. */
  function replaced(log: ForgedLog, seq: number, change: (e: Entry) => void, key: ForgeKey, cosign?: ForgeKey): string[] {
    const lines = log.lines();
    const e = { ...log.entries[seq - 1]! };
    change(e);
    lines[seq - 1] = canonicalLine(seal(e, key, cosign));
    return lines;
  }

  it("the ok result hands signing over: the entries after it verify under the incoming key, and the intent is resolved", async () => {
    const { log, incoming } = await rotated("ok");
    expect(log.entries[5]!.keyId).toBe(incoming.keyId);
    expect(await ok(log)).toEqual({ id: log.identity, entries: 6, ok: true, head: log.head });
  });

  it.each(["failed", "unknown"] as const)("a %s result hands nothing over: signing stays with the outgoing key", async (result) => {
    const { log, outgoing, incoming } = await rotated(result);
    expect(log.entries[5]!.keyId).toBe(outgoing.keyId);
    expect(await ok(log)).toMatchObject({ ok: true, entries: 6 });
    // The incoming key was never handed signing, even if the verifier trusts it.
    const keys = [...log.keys, { keyId: incoming.keyId, publicKey: incoming.publicKey }];
    const lines = replaced(log, 6, (e) => (e.keyId = incoming.keyId), incoming);
    expect(await verifyChain(log.identity, lines, keys)).toMatchObject(bad(6, new RegExp(`signed by key ${incoming.keyId} but key ${outgoing.keyId} was active`)));
  });

  const handover = (outgoing: ForgeKey, incoming: ForgeKey) => (e: Entry) => Object.assign(e, { previousKeyId: outgoing.keyId, newKeyId: incoming.keyId, newPublicKey: incoming.publicKey });

  it("an intent that hands signing over (validly co-signed) fails", async () => {
    const { log, outgoing, incoming } = await rotated("ok");
    const lines = replaced(log, 4, handover(outgoing, incoming), outgoing, incoming);
    expect(await verifyChain(log.identity, lines, log.keys)).toMatchObject(bad(4, /key rotation entry 4 is an intent or an unsuccessful result but hands signing over/));
  });

  it.each(["failed", "unknown"] as const)("a %s result that hands signing over (validly co-signed) fails", async (result) => {
    const { log, outgoing, incoming } = await rotated(result);
    const keys = [...log.keys, { keyId: incoming.keyId, publicKey: incoming.publicKey }];
    const lines = replaced(log, 5, handover(outgoing, incoming), outgoing, incoming);
    expect(await verifyChain(log.identity, lines, keys)).toMatchObject(bad(5, /key rotation entry 5 is an intent or an unsuccessful result but hands signing over/));
  });

  it("an ok result that names no incoming key fails as a rotation that names no valid key", async () => {
    const { log, outgoing } = await rotated("ok");
    const lines = replaced(log, 5, (e) => { delete e.newKeyId; delete e.newPublicKey; }, outgoing);
    expect(await verifyChain(log.identity, lines, log.keys)).toMatchObject(bad(5, /key rotation entry 5 names a key that does not match its public key/));
  });

  it("an intent of another tool carrying a handover is refused as a rotation it is not (not as a rotation intent)", async () => {
    const { log, outgoing, incoming } = await rotated("ok");
    const lines = replaced(log, 4, (e) => { handover(outgoing, incoming)(e); e.tool = "card_charge"; }, outgoing, incoming);
    expect(await verifyChain(log.identity, lines, log.keys)).toMatchObject(bad(4, /key rotation entry 4 does not name the outgoing key/));
  });

  it("a rotation intent or failed result carrying a co-signature fails as not a rotation", async () => {
    for (const result of ["ok", "failed"] as const) {
      const { log, outgoing, incoming } = await rotated(result);
      for (const seq of result === "ok" ? [4] : [4, 5]) {
        const lines = replaced(log, seq, () => {}, outgoing, incoming);
        expect(await verifyChain(log.identity, lines, log.keys)).toMatchObject(bad(seq, /carries a second signature but is not a key rotation/));
      }
    }
  });
});

describe("a line that is JSON but not an object", () => {
  it.each(["null", "[1]", '"entry"', "7", "true"])("%s is not an entry", async (line) => {
    const lines = base.lines();
    lines[2] = line;
    expect(await verify(lines)).toMatchObject(bad(3, /is not a JSON object/));
  });
});

describe("mutation survivors (issue 20): each one pinned by what it changes", () => {
  const z = (iso: string) => iso.replace(".000Z", "Z");
  it("an entry outside its key's window names the window; an open end is shown as …", async () => {
    const k0 = base.keys[0]!;
    const fork = beforeRotation.fork();
    fork.push({ tool: "whoami", phase: "call", decision: "allow" }, { ts: rotationTs + 1000 });
    const r = await verify(fork.lines(), base.keys);
    expect(r.error).toBe(`entry 5 is dated ${fork.entries[4]!.ts}, outside the validity of key ${k0.keyId} (${z(k0.notBefore!)} to ${z(base.keys[0]!.notAfter!)})`);
    const early = new Date(Date.parse(k0.notBefore!) - 1000).toISOString();
    const lines = resealed(base, 2, (e) => (e.ts = early));
    const open = await verify(lines.slice(0, 2), [{ keyId: k0.keyId, publicKey: k0.publicKey, notBefore: k0.notBefore }]);
    expect(open.error).toBe(`entry 2 is dated ${early}, outside the validity of key ${k0.keyId} (${z(k0.notBefore!)} to …)`);
  });

  it("a window of a single second is readable (notBefore equal to notAfter)", async () => {
    const k0 = base.keys[0]!;
    const r = await verify(base.lines(), [{ ...k0, notAfter: k0.notBefore }, base.keys[1]!]);
    expect(r.error).not.toMatch(/unreadable/);
    expect(r).toMatchObject({ ok: false, error: expect.stringMatching(/outside the validity of key/) });
  });

  it("a creation entry signed by another key names the key it carries", async () => {
    const other = await newKey();
    const lines = resealed(base, 1, (e) => (e.publicKey = other.publicKey));
    const r = await verify(lines, [...base.keys, { keyId: other.keyId, publicKey: other.publicKey }]);
    expect(r.error).toBe(`entry 1 is signed by key ${base.keys[0]!.keyId} but carries the first key ${other.keyId}`);
  });

  it("a seq beyond the expected one is reported as entries missing, not as a duplicate", async () => {
    const lines = resealed(base, 6, (e) => (e.seq = 7));
    expect((await verify(lines.slice(0, 6))).error).toBe("found seq 7 where 6 was expected (entries missing, inserted or reordered)");
  });

  it("a torn line is reported as such", async () => {
    const lines = base.lines();
    lines[2] = lines[2]!.slice(0, 40);
    expect(await verify(lines)).toMatchObject(bad(3, /^entry 3 is not valid JSON \(a torn or edited line\)$/));
  });

  it("an entry object (not a line) that cannot be canonicalised is reported as such", async () => {
    const entries: Array<string | Entry> = base.lines();
    entries[2] = { ...base.entries[2]!, amountCents: 10n };
    expect(await verify(entries)).toMatchObject(bad(3, /^entry 3 cannot be canonicalised$/));
  });

  it("a trusted key or an entry key that is 44 characters but not canonical base64 is refused, not thrown on", async () => {
    const k0 = base.keys[0]!;
    const B = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    const loose = k0.publicKey.slice(0, 42) + B[B.indexOf(k0.publicKey[42]!) | 1] + "=";
    expect(loose).not.toBe(k0.publicKey);
    expect(loose).toHaveLength(44);
    expect(strictPublicKey(loose)).toBeUndefined();
    expect(await verify(base.lines(), [{ ...k0, publicKey: loose }])).toMatchObject(bad(1, /does not match its public key/));
    expect(await verify(resealed(base, 1, (e) => (e.publicKey = loose)))).toMatchObject(bad(1, /not the identity's creation entry/));
    // The right length unpadded decodes to one byte too many: 33 and 66 bytes are not keys or signatures.
    expect(strictSignature("A".repeat(88))).toBeUndefined();
    expect(strictPublicKey("A".repeat(44))).toBeUndefined();
    expect(strictPublicKey(base.keys[0]!.publicKey)).toHaveLength(32);
  });

  it("examineEntry: a signature is checked only under a known key; a second one only on an entry carrying one", () => {
    const keyFor = (id: string) => (id === oldKey.keyId ? new Uint8Array(Buffer.from(oldKey.publicKey, "base64")) : undefined);
    const plain = base.entries[2]!;
    expect(examineEntry(canonicalLine(plain), keyFor)).toMatchObject({ sig: 1, sigNew: -1, hash: plain.hash });
    expect(examineEntry(canonicalLine(plain), () => undefined)).toMatchObject({ sig: -1, sigNew: -1 });
    expect(examineEntry(canonicalLine({ ...plain, sig: base.entries[1]!.sig }), keyFor)).toMatchObject({ sig: 0, sigNew: -1 });
    expect(examineEntry(canonicalLine({ ...plain, sigNew: plain.sig }), keyFor)).toMatchObject({ sig: 1, sigNew: 0 });
    expect(examineEntry(canonicalLine({ ...plain, newPublicKey: base.active.publicKey }), keyFor)).toMatchObject({ sigNew: 0 });
    expect(examineEntry(canonicalLine(base.entries[4]!), keyFor)).toMatchObject({ sig: 1, sigNew: 1 });
    for (const [raw, defect] of [["{", "json"], ["[1]", "object"], [canonicalLine(plain) + " ", "canonical"], [{ ...plain, n: 1n }, "uncanonicalisable"]] as const) {
      expect(examineEntry(raw, keyFor), defect).toMatchObject({ defect, sig: -1, sigNew: -1 });
    }
  });

  it("the sequential pass counts the signatures it checks itself: one per entry under a known key, plus each co-signature", async () => {
    const count = async (lines: Array<string | Entry>, keys?: PublicKeyInfo[]) => {
      const before = verifierCounters().inlineSignatureChecks;
      await verify(lines, keys);
      return verifierCounters().inlineSignatureChecks - before;
    };
    expect(await count(base.lines())).toBe(8 + 1);
    const foreign = await ForgedLog.create(base.identity);
    expect(await count(foreign.lines(), base.keys)).toBe(0); // entry 1's key is unknown: nothing checked
    const lines = base.lines();
    lines[2] = "null";
    expect(await count(lines)).toBe(2);
  });
});
