/**
 * The worker-thread branch of the audit verifier (src/audit/verify.ts): a log of 1,000 entries or
 * more is examined on threads and the sequential pass uses their results. A thread cannot load
 * TypeScript, so the pool and its worker script come from the build (`dist/src/audit/`, made by
 * `npm test`'s build step): verify.ts itself runs from src/, in process, which is what mutation
 * testing changes. Every case compares the verdict with the single-threaded one and checks from the
 * sequential pass's own counter whether the threads' results were really used.
 */
import { afterEach, beforeAll, describe, expect, it, vi } from "vitest";
import { canonicalLine } from "../../src/audit/entry.js";
import { verifierCounters, verifierThreads, verifyChain, type PublicKeyInfo } from "../../src/audit/verify.js";
import { PARALLEL_MIN_ENTRIES, setVerifyThreads } from "../../src/audit/verify-pool.js";
import { ForgedLog, seal, type Entry } from "../support/audit-forge.js";

vi.mock("../../src/audit/verify-pool.js", () => import("../../dist/src/audit/verify-pool.js"));

let log: ForgedLog; // PARALLEL_MIN_ENTRIES + 200 entries, a key rotation at seq 601
let keys: PublicKeyInfo[];

beforeAll(async () => {
  log = await ForgedLog.create();
  log.call(599);
  await log.rotate();
  log.call(PARALLEL_MIN_ENTRIES + 200 - 601);
  keys = log.keys;
}, 60_000);
afterEach(() => setVerifyThreads(undefined));

/** The verdict with `threads` verifier threads, and how many signatures the sequential pass checked itself. */
async function run(threads: number, lines: Iterable<string | Entry> | AsyncIterable<string>): Promise<{ result: unknown; inline: number }> {
  setVerifyThreads(threads);
  const before = verifierCounters().inlineSignatureChecks;
  const result = await verifyChain(log.identity, lines as Iterable<string>, keys);
  return { result, inline: verifierCounters().inlineSignatureChecks - before };
}

/** Same verdict with two threads as with none, the threads' results used for every entry. */
async function parallelAgrees(lines: string[]): Promise<unknown> {
  const single = await run(0, lines);
  const parallel = await run(2, lines);
  expect(parallel.result).toEqual(single.result);
  expect(parallel.inline).toBe(0);
  expect(verifierThreads()).toBe(2);
  return parallel.result;
}

function edited(seq: number, change: (lines: string[]) => void): string[] {
  const lines = log.lines();
  change(lines);
  expect(lines[seq - 1]).not.toBe(log.lines()[seq - 1]);
  return lines;
}

const bad = (seq: number, why: RegExp) => ({ ok: false, firstBadSeq: seq, error: expect.stringMatching(why) });
const N = PARALLEL_MIN_ENTRIES + 200;

describe("a long log is verified on worker threads", () => {
  it("an intact log across a key rotation verifies with every signature checked by the threads", async () => {
    expect(await parallelAgrees(log.lines())).toMatchObject({ ok: true, entries: N, head: log.head });
  }, 60_000);

  it("from 1,000 entries on (999 are checked on the calling thread)", async () => {
    const at = log.lines().slice(0, PARALLEL_MIN_ENTRIES);
    expect(await parallelAgrees(at)).toMatchObject({ ok: true, entries: PARALLEL_MIN_ENTRIES });
    const below = at.slice(0, PARALLEL_MIN_ENTRIES - 1);
    // Every entry's signature, plus the rotation's co-signature.
    expect(await run(2, below)).toEqual({ result: expect.objectContaining({ ok: true, entries: PARALLEL_MIN_ENTRIES - 1 }), inline: PARALLEL_MIN_ENTRIES - 1 + 1 });
  }, 60_000);

  it("one configured thread is the calling thread: no worker is started for it", async () => {
    expect(await run(1, log.lines())).toEqual({ result: expect.objectContaining({ ok: true, entries: N }), inline: N + 1 });
  }, 60_000);

  it("a log read as a stream is read once, then verified from the threads' results", async () => {
    async function* stream(): AsyncIterable<string> {
      yield* log.lines();
    }
    expect(await run(2, stream())).toEqual({ result: expect.objectContaining({ ok: true, entries: N, head: log.head }), inline: 0 });
  }, 60_000);

  it("entries given as objects (an exported bundle's) are verified from the threads' results too", async () => {
    const objects = log.entries.map((e) => ({ ...e }));
    expect(await run(2, objects)).toEqual({ result: expect.objectContaining({ ok: true, entries: N }), inline: 0 });
  }, 60_000);
});

describe("tampering found on the threads fails where the single-threaded pass fails, with its message", () => {
  it("a torn line (not JSON)", async () => {
    const lines = edited(1100, (l) => (l[1099] = l[1099]!.slice(0, 40)));
    expect(await parallelAgrees(lines)).toMatchObject(bad(1100, /is not valid JSON/));
  }, 60_000);

  it("a line that is not the canonical form of its content", async () => {
    const lines = edited(900, (l) => (l[899] = l[899]!.replace("{", "{ ")));
    expect(await parallelAgrees(lines)).toMatchObject(bad(900, /canonical/));
  }, 60_000);

  it("content changed under the old hash", async () => {
    const lines = edited(1150, (l) => (l[1149] = canonicalLine({ ...log.entries[1149]!, decision: "deny" })));
    expect(await parallelAgrees(lines)).toMatchObject(bad(1150, /does not match its hash/));
  }, 60_000);

  it("a signature copied from another entry, before and after the rotation", async () => {
    for (const seq of [300, 1000]) {
      const lines = edited(seq, (l) => (l[seq - 1] = canonicalLine({ ...log.entries[seq - 1]!, sig: log.entries[seq - 2]!.sig })));
      expect(await parallelAgrees(lines)).toMatchObject(bad(seq, /invalid signature/));
    }
  }, 60_000);

  it("a rotation whose co-signature is not the incoming key's", async () => {
    const rotation = log.entries[600]!;
    expect(rotation.tool).toBe("key_rotated");
    const lines = edited(601, (l) => (l[600] = canonicalLine({ ...rotation, sigNew: rotation.sig })));
    expect(await parallelAgrees(lines)).toMatchObject(bad(601, /not signed by the new key/));
  }, 60_000);

  it("an entry re-sealed by a key the verifier does not trust (its signature is not checked at all)", async () => {
    const foreign = await ForgedLog.create(log.identity);
    const lines = edited(700, (l) => (l[699] = canonicalLine(seal({ ...log.entries[699]!, keyId: foreign.active.keyId }, foreign.active))));
    expect(await parallelAgrees(lines)).toMatchObject(bad(700, /signed by key .* but key .* was active/));
  }, 60_000);
});
