/**
 * Bounded recovery: a new process reads the identity's authenticated state snapshot plus the
 * entries after it instead of replaying the whole log — and decides exactly as a replay would.
 * A snapshot that is forged, stale, mismatched, of another identity or format, or torn by a crash
 * is never trusted: it is either provably equivalent (an older authentic one: the entries after it
 * are replayed) or ignored (the whole log is replayed). Both store backends.
 */
import { afterAll, describe, expect, it } from "vitest";
import { spawn } from "node:child_process";
import { createHmac, randomBytes } from "node:crypto";
import { existsSync, readdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import path from "node:path";
import { backends, pgQuery } from "./support/backends.js";
import { ROOT, cleanupHomes, makeHome, type Home } from "./support/home.js";

afterAll(cleanupHomes);

const { openApp } = await import("../dist/src/app.js");
const { loadMasterKey } = await import("../dist/src/identity/home.js");
const { AuditChains, encodeSnapshot, decodeSnapshot, SNAPSHOT_FORMAT } = await import("../dist/src/audit/chain.js");

type SigilT = Awaited<ReturnType<typeof open>>;
const DAY = 86_400_000;
const NOW = Date.now();
const DEAD = "inst_00000000dead";

/** A fresh AuditChains on `sigil`'s store, as a new process would have, counting the log lines it reads. */
function freshChains(sigil: SigilT, snapshots: boolean) {
  const base = sigil.store.audit as any;
  const seen = { lines: 0 };
  const backend = {
    withChain: (id: string, cursor: any, fn: any) =>
      base.withChain(id, cursor, (view: any) => {
        seen.lines += view.lines.length;
        return fn(view);
      }),
    readLines: (id: string) => base.readLines(id),
    readSnapshot: (id: string) => base.readSnapshot(id),
    writeSnapshot: (id: string, seq: number, text: string) => base.writeSnapshot(id, seq, text),
    lineBefore: (id: string, c: any) => base.lineBefore(id, c),
  };
  const chains = new AuditChains({
    backend,
    keyring: sigil.keyring,
    now: () => NOW,
    instanceId: sigil.instanceId,
    instanceAlive: (i: string) => sigil.store.instanceAlive(i),
    snapshotKey: snapshots ? sigil.master.subkey("chain-snapshot") : undefined,
  });
  return { chains, seen };
}

async function open(home: Home, clock: { t: number }, env: NodeJS.ProcessEnv = {}) {
  const e = { ...home.env, ...env };
  const app = await openApp({ home: home.env.SIGIL_HOME!, env: e, now: () => clock.t });
  return Object.assign(app, { master: await loadMasterKey(home.env.SIGIL_HOME!, app.config) });
}

/**
 * Writes a history that exercises every part of the state: rate windows (old and current),
 * card spend (kept, released by a failure, kept by an unknown outcome), idempotency records,
 * a policy version, a key rotation, and an intent of a crashed instance (an orphan).
 */
async function writeHistory(sigil: SigilT, id: string, clock: { t: number }, part: 1 | 2): Promise<{ orphanSeq?: number }> {
  const c = (draft: Record<string, unknown>) =>
    sigil.chains.commit(id, () => ({ value: null, draft: { session: "s_test", instance: sigil.instanceId, ...draft } as any })).then((r: any) => r.entry);
  const pair = async (tool: string, extra: Record<string, unknown>, decision: string, result?: Record<string, unknown>) => {
    const i = await c({ tool, phase: "intent", decision: "allow", ...extra });
    await c({ tool, phase: "result", intent: i.seq, decision, ...(result ? { result } : {}) });
    return i;
  };
  if (part === 1) {
    clock.t = NOW - 3 * DAY; // older than any window: may be left out of a snapshot
    for (let i = 0; i < 3; i++) await pair("send_sms", {}, "ok");
    await pair("card_charge", { amountCents: 700, idem: { key: "k-old", argsHash: "h0" } }, "ok", { chargeId: "ch_old" });
    clock.t = NOW - 2 * 3600_000;
    await c({ tool: "policy_updated", phase: "event", decision: "ok", session: "admin", policyVersion: 4 });
    for (let i = 0; i < 5; i++) await c({ tool: "whoami", phase: "call", decision: "allow" });
    return {};
  }
  clock.t = NOW - 3600_000;
  for (let i = 0; i < 2; i++) await pair("send_sms", {}, "ok");
  await pair("card_charge", { amountCents: 500, idem: { key: "k1", argsHash: "h1" } }, "ok", { chargeId: "ch_1" });
  await pair("card_charge", { amountCents: 300, idem: { key: "k2", argsHash: "h2" } }, "failed");
  await pair("card_charge", { amountCents: 200, idem: { key: "k3", argsHash: "h3" } }, "unknown");
  await c({ tool: "whoami", phase: "call", decision: "deny", reason: "rate_limited" });
  const orphan = await c({ tool: "card_charge", phase: "intent", decision: "allow", amountCents: 100, idem: { key: "k4", argsHash: "h4" }, instance: DEAD });
  await sigil.identities.rotateKey(id);
  return { orphanSeq: orphan.seq };
}

async function logLength(sigil: SigilT, id: string): Promise<number> {
  let n = 0;
  for await (const _ of sigil.store.audit.readLines(id)) n++;
  return n;
}

describe.each(backends)("chain state snapshots (%s store)", (backend) => {
  /** One home with a written history; each test plants what it needs over its snapshot. */
  async function setup() {
    const home = makeHome({}, { store: backend });
    const a = home.createIdentity({ channels: "" });
    const clock = { t: NOW };
    const w = await open(home, clock);
    await writeHistory(w, a.id, clock, 1);
    await w.chains.close(); // a snapshot of part 1: an older, authentic snapshot
    const stale = (await w.store.audit.readSnapshot!(a.id)) as string;
    const staleSeq = decodeSnapshot(w.master.subkey("chain-snapshot"), a.id, stale)!.seq;
    const { orphanSeq } = await writeHistory(w, a.id, clock, 2);
    await w.close(); // closing writes the current snapshot
    const plant = async (text: string) => {
      if (backend === "file") writeFileSync(path.join(home.env.SIGIL_HOME!, "audit", `${a.id}.snapshot`), text);
      else await pgQuery(home.env.SIGIL_STORE_URL!, "UPDATE sigil_chain_snapshots SET snapshot = $2 WHERE identity_id = $1", [a.id, text]);
    };
    return { home, a, clock, stale, staleSeq, orphanSeq: orphanSeq!, plant };
  }

  /** Loads the identity in two fresh "processes" (snapshot and full replay); both must agree. */
  async function loadBoth(home: Home, id: string) {
    const s = await open(home, { t: NOW });
    try {
      const before = await logLength(s, id);
      const fromSnap = freshChains(s, true);
      const snapState = await fromSnap.chains.state(id); // may record the orphan: first
      const replay = freshChains(s, false);
      const replayState = await replay.chains.state(id);
      const caughtUp = await fromSnap.chains.state(id);
      expect(caughtUp).toBe(snapState);
      return { snapState, replayState, snapLines: fromSnap.seen.lines, replayLines: replay.seen.lines, before, total: await logLength(s, id) };
    } finally {
      await s.close();
    }
  }

  it("a process started from the snapshot reads no old entries and decides exactly like one that replayed the log", async () => {
    const { home, a, orphanSeq } = await setup();
    const s = await open(home, { t: NOW });
    expect(await s.store.audit.readSnapshot!(a.id)).toMatch(new RegExp(`^${SNAPSHOT_FORMAT}\n`));
    await s.close();

    const r = await loadBoth(home, a.id);
    expect(r.snapLines).toBe(0); // nothing before the snapshot's cursor was read
    expect(r.replayLines).toBe(r.total);
    expect(r.total).toBe(r.before + 1); // the orphan's record
    // The orphaned intent was in the snapshot: its process is gone, so it was recorded as unknown.
    const log = home.auditLog(a.id);
    expect(log.at(-1)).toMatchObject({ phase: "result", intent: orphanSeq, decision: "unknown", reason: "orphaned_intent" });
    expect(log.filter((e: any) => e.reason === "orphaned_intent")).toHaveLength(1);

    const x = r.snapState;
    const y = r.replayState;
    expect(x.toSnapshot()).toEqual(y.toSnapshot());
    const since = NOW - DAY + 1;
    for (const st of [x, y]) {
      expect(st.countSince("send_sms", since)).toBe(2); // the three from three days ago are outside
      expect(st.countSince("whoami", since)).toBe(5);
      expect(st.spentSince(since)).toBe(500 + 200 + 100); // failed released, unknown and orphan kept
      expect(st.idempotency("card_charge", "k1", NOW)).toMatchObject({ argsHash: "h1", outcome: "ok", result: { chargeId: "ch_1" }, receipt: { identityId: a.id } });
      expect(st.idempotency("card_charge", "k2", NOW)).toBeUndefined();
      expect(st.idempotency("card_charge", "k3", NOW)).toMatchObject({ outcome: "unknown" });
      expect(st.idempotency("card_charge", "k4", NOW)).toMatchObject({ outcome: "unknown" });
      expect(st.idempotency("card_charge", "k-old", NOW)).toBeUndefined();
      expect(st.policyVersion).toBe(4);
      expect(st.openIntents()).toEqual([]);
    }
    expect(x.activeKeyId).toBe(home.json(["identity", "show", a.id]).keyId);
    expect([x.seq, x.head, x.cursor]).toEqual([y.seq, y.head, y.cursor]);
  });

  it("an older authentic snapshot is used with the entries after it; the result equals a replay", async () => {
    const { home, a, stale, staleSeq, plant } = await setup();
    await plant(stale);
    const r = await loadBoth(home, a.id);
    expect(r.snapLines).toBe(r.before - staleSeq); // only the entries after it
    expect(r.snapState.toSnapshot()).toEqual(r.replayState.toSnapshot());
  });

  it("a forged, mismatched, foreign, unknown-format or torn snapshot is ignored and the whole log replayed", async () => {
    const { home, a, plant } = await setup();
    const s = await open(home, { t: NOW });
    const key: Buffer = s.master.subkey("chain-snapshot");
    const good = (await s.store.audit.readSnapshot!(a.id)) as string;
    const body = decodeSnapshot(key, a.id, good)!;
    // Another identity of the same home (same master key): its own authentic snapshot.
    const b = home.createIdentity({ channels: "" });
    await s.chains.commit(b.id, () => ({ value: null, draft: { tool: "x", phase: "event", decision: "ok" } as any }));
    await s.close();
    const s2 = await open(home, { t: NOW });
    const foreign = (await s2.store.audit.readSnapshot!(b.id)) as string;
    await s2.close();
    expect(foreign).toBeTruthy();

    const [, mac] = good.split("\n");
    const emptied = { ...body, rate: [], spend: [], idem: [], idemByIntent: [], open: [] };
    const attackerMac = (json: string) => createHmac("sha256", randomBytes(32)).update(`${SNAPSHOT_FORMAT}\n${a.id}\n`).update(json).digest("base64url");
    const variants: Record<string, string> = {
      // An attacker who can write the store but lacks the master key:
      "edited body, original MAC": `${SNAPSHOT_FORMAT}\n${mac}\n${JSON.stringify(emptied)}`,
      "edited body, MAC under another key": `${SNAPSHOT_FORMAT}\n${attackerMac(JSON.stringify(emptied))}\n${JSON.stringify(emptied)}`,
      "another identity's snapshot": foreign,
      "unknown (older) format": good.replace(SNAPSHOT_FORMAT, "sigil-chain-snapshot/v0"),
      // Authentic (made with the real key) but not matching the log:
      "head not at its position": encodeSnapshot(key, { ...body, head: "f".repeat(64) }),
      "seq not at its position": encodeSnapshot(key, { ...body, seq: body.seq - 1 }),
      "cursor inside a line": encodeSnapshot(key, { ...body, cursor: body.cursor - 1 }),
      "beyond the end of the log": encodeSnapshot(key, { ...body, seq: body.seq + 5, cursor: body.cursor + 5 }),
      // What a crash (or a lost write) can leave:
      "torn": good.slice(0, Math.floor(good.length / 2)),
      empty: "",
    };
    for (const [what, text] of Object.entries(variants)) {
      await plant(text);
      const r = await loadBoth(home, a.id);
      expect({ what, lines: r.snapLines }).toEqual({ what, lines: r.before }); // the whole log
      expect({ what, state: r.snapState.toSnapshot() }).toEqual({ what, state: r.replayState.toSnapshot() });
    }
    // Still one orphan record: every load agreed on the state.
    expect(home.auditLog(a.id).filter((e: any) => e.reason === "orphaned_intent")).toHaveLength(1);
  });

  it.runIf(backend === "file")("a snapshot write that fails leaves no temporary file and costs only a replay", async () => {
    const home = makeHome({}, { store: backend });
    const a = home.createIdentity({ channels: "" });
    const audit = path.join(home.env.SIGIL_HOME!, "audit");
    rmSync(path.join(audit, `${a.id}.snapshot`)); // the one `identity create` left on closing
    const clock = { t: NOW };
    for (const fault of ["rename@.snapshot=EIO", "sync@.snapshot=EIO", "write@.snapshot=ENOSPC"]) {
      const w = await open(home, clock, { SIGIL_TEST_FAULTS: fault });
      await writeHistory(w, a.id, clock, 1);
      await w.close(); // does not throw
      expect(readdirSync(audit).filter((n) => n.includes("snapshot"))).toEqual([]);
    }
    const r = await loadBoth(home, a.id);
    expect(r.snapLines).toBe(r.before);
    expect(r.snapState.toSnapshot()).toEqual(r.replayState.toSnapshot());
  });

  it("a process killed while writing entries and snapshots leaves a store the next process reads correctly", async () => {
    const home = makeHome({}, { store: backend });
    const a = home.createIdentity({ channels: "" });
    const child = `
      const { openApp } = await import(${JSON.stringify(path.join(ROOT, "dist/src/app.js"))});
      const { loadMasterKey } = await import(${JSON.stringify(path.join(ROOT, "dist/src/identity/home.js"))});
      const { AuditChains } = await import(${JSON.stringify(path.join(ROOT, "dist/src/audit/chain.js"))});
      const sigil = await openApp({ home: process.env.SIGIL_HOME, env: process.env });
      const master = await loadMasterKey(process.env.SIGIL_HOME, sigil.config);
      const chains = new AuditChains({ backend: sigil.store.audit, keyring: sigil.keyring, instanceId: sigil.instanceId,
        snapshotKey: master.subkey("chain-snapshot"), snapshotEvery: 1 });
      for (let i = 0; ; i++) {
        const d = i % 3 === 0 ? { tool: "card_charge", phase: "intent", decision: "allow", amountCents: 1, instance: sigil.instanceId, idem: { key: "k" + i, argsHash: "h" } }
          : { tool: "whoami", phase: "call", decision: "allow" };
        await chains.commit(process.argv[1], () => ({ value: null, draft: d }));
        if (i === 20) process.stdout.write("ready\\n");
      }`;
    for (let round = 0; round < 3; round++) {
      const p = spawn(process.execPath, ["--input-type=module", "-e", child, a.id], { env: home.env, stdio: ["ignore", "pipe", "inherit"] });
      await new Promise<void>((resolve, reject) => {
        p.stdout!.on("data", (d) => String(d).includes("ready") && resolve());
        p.on("exit", (code) => reject(new Error(`the writer exited (${code}) before it was ready`)));
      });
      await new Promise((r) => setTimeout(r, 20 + Math.floor(Math.random() * 150)));
      p.kill("SIGKILL");
      await new Promise((r) => p.once("exit", r));
      const r = await loadBoth(home, a.id);
      expect(r.snapLines).toBeLessThan(r.before); // a snapshot written by the killed process was used…
      expect(r.snapState.toSnapshot()).toEqual(r.replayState.toSnapshot()); // …and agrees with the log
    }
    if (backend === "file") {
      // A temp file a kill left behind is never read as the snapshot.
      const audit = path.join(home.env.SIGIL_HOME!, "audit");
      writeFileSync(path.join(audit, `.${a.id}.snapshot.deadbeef0000.tmp`), "garbage");
      const r = await loadBoth(home, a.id);
      expect(r.snapLines).toBeLessThan(r.before);
      expect(existsSync(path.join(audit, `${a.id}.snapshot`))).toBe(true);
      expect(readFileSync(path.join(audit, `${a.id}.snapshot`), "utf8")).toMatch(new RegExp(`^${SNAPSHOT_FORMAT}\n`));
    }
  });
});
