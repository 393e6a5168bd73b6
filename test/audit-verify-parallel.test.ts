/**
 * The audit verifier checks long logs on worker threads (src/audit/verify.ts). These tests build a
 * log long enough to take that path — with a key rotation in the middle — and check that, intact
 * and after each kind of tampering, the verdict, the first bad seq and the message are exactly
 * those of the single-threaded pass, and that the threads were really used.
 */
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import os from "node:os";
import path from "node:path";
import { initHome, openApp } from "../dist/src/app.js";
import { publicKeys } from "../dist/src/identity/audit-log.js";
import { verifierCounters, verifierThreads, verifyChain, type PublicKeyInfo } from "../dist/src/audit/verify.js";
import { setVerifyThreads } from "../dist/src/audit/verify-pool.js";
import { ForgedLog } from "./support/audit-forge.js";
import { entryHash } from "../dist/src/audit/entry.js";

const ENTRIES = 1600; // above the threshold (1000) where verification goes parallel
let dir: string;
let pristine: string[];
let keys: PublicKeyInfo[];
let id: string;

beforeAll(async () => {
  dir = mkdtempSync(path.join(os.tmpdir(), "sigil-verify-par-"));
  const home = path.join(dir, "home");
  await initHome({ home, env: {} });
  const sigil = await openApp({ home, env: {} });
  id = (await sigil.identities.create({ name: "long", channels: [] })).id;
  const write = (n: number): Promise<unknown> =>
    Promise.all(
      Array.from({ length: n }, (_, i) =>
        sigil.chains.commit(id, () => ({ value: null, draft: { tool: "whoami", phase: "call", decision: "allow", session: `s_${i}` } })),
      ),
    );
  await write(700);
  await sigil.identities.rotateKey(id);
  await write(ENTRIES - 703); // the creation entry, 700 calls, the rotation (intent and result), the rest
  keys = publicKeys(await sigil.identities.require(id));
  await sigil.close();
  pristine = readFileSync(path.join(home, "audit", `${id}.jsonl`), "utf8").trimEnd().split("\n");
}, 60_000);
afterAll(() => rmSync(dir, { recursive: true, force: true }));

async function both(lines: string[]): Promise<{ parallel: unknown; single: unknown }> {
  try {
    setVerifyThreads(0); // SIGIL_VERIFY_THREADS=0
    const single = await verifyChain(id, lines, keys);
    setVerifyThreads(2);
    const parallel = await verifyChain(id, lines, keys);
    return { parallel, single };
  } finally {
    setVerifyThreads(undefined);
  }
}

const edit = (seq: number, change: (e: any) => void): string[] => {
  const copy = [...pristine];
  const e = JSON.parse(copy[seq - 1]!);
  change(e);
  copy[seq - 1] = JSON.stringify(e);
  return copy;
};

describe("parallel audit verification gives the single-threaded verdict", () => {
  it("an intact log across a key rotation verifies, on worker threads", async () => {
    expect(pristine.length).toBe(ENTRIES);
    const rotation = pristine.findIndex((l) => JSON.parse(l).newKeyId !== undefined);
    expect(rotation).toBeGreaterThan(0);
    const { parallel, single } = await both(pristine);
    expect(parallel).toEqual(single);
    expect(parallel).toMatchObject({ ok: true, entries: ENTRIES });
    // The parallel path really ran (rather than silently falling back to one thread).
    expect(verifierThreads()).toBe(2);
  });

  const cases: Array<[string, () => string[], number | (() => number), RegExp]> = [
    ["an edited entry late in the log", () => edit(1500, (e) => (e.decision = "deny")), 1500, /does not match its hash/],
    ["an edited entry whose hash is recomputed (signature no longer verifies)", () => editRehash(1300), 1300, /invalid signature/],
    ["a signature copied from another entry", () => edit(1450, (e) => (e.sig = JSON.parse(pristine[1448]!).sig)), 1450, /invalid signature/],
    ["a rotation entry whose co-signature is damaged", () => editRotation(), rotationSeq, /not signed by the new key/],
    ["a line that is not JSON", () => pristine.map((l, i) => (i === 1200 ? l.slice(0, 40) : l)), 1201, /not valid JSON/],
    ["two entries swapped", () => swap(1100, 1101), 1100, /found seq/],
  ];
  for (const [name, make, seq, message] of cases) {
    it(name, async () => {
      const { parallel, single } = await both(make());
      expect(parallel).toEqual(single);
      expect(parallel).toMatchObject({ ok: false, firstBadSeq: typeof seq === "function" ? seq() : seq });
      expect((parallel as { error: string }).error).toMatch(message);
    });
  }
});

function rotationSeq(): number {
  return pristine.findIndex((l) => JSON.parse(l).newKeyId !== undefined) + 1; // the handover
}
function editRotation(): string[] {
  return edit(rotationSeq(), (e) => (e.sigNew = JSON.parse(pristine[rotationSeq() + 5]!).sig));
}
function swap(a: number, b: number): string[] {
  const copy = [...pristine];
  [copy[a - 1], copy[b - 1]] = [copy[b - 1]!, copy[a - 1]!];
  return copy;
}
/** Changes an entry and recomputes its hash (and the next entry's prev), leaving the old signature. */
function editRehash(seq: number): string[] {
  return edit(seq, (e) => {
    e.session = "s_forged";
    e.hash = entryHash(e);
  });
}

describe("long logs on worker threads", () => {
  it("after a rotation, the sequential pass uses every worker result: no signature is checked twice", async () => {
    const log = await ForgedLog.create();
    log.call(600);
    await log.rotate();
    log.call(600);
    await log.rotate();
    log.call(100);
    try {
      setVerifyThreads(2);
      const before = verifierCounters().inlineSignatureChecks;
      expect(await verifyChain(log.identity, log.lines(), log.keys)).toMatchObject({ ok: true, entries: 1303 });
      expect(verifierCounters().inlineSignatureChecks - before).toBe(0);
      setVerifyThreads(0);
      const single = verifierCounters().inlineSignatureChecks;
      await verifyChain(log.identity, log.lines(), log.keys);
      expect(verifierCounters().inlineSignatureChecks - single).toBe(1303 + 2); // one per entry, plus each co-signature
    } finally {
      setVerifyThreads(undefined);
    }
  });
});
