/**
 * Each audit chain's verification status (src/audit/verification.ts), kept by the chains and
 * updated by verifications on a verifier thread (the built code: dist/, whose worker script
 * exists), on both stores:
 *
 * - entries appended after a verification show as "verified up to N; pending" — never "verified" —
 *   until a pass has checked them; a log being watched gets its new entries verified from where
 *   the last pass stopped (no full pass);
 * - an old entry edited in the store is found by the next full pass ("Verify again") and the
 *   timeline page then shows the log failing, served over HTTP by the console;
 * - an entry appended by someone else with a forged signature is found by the tail pass.
 *
 * Polls are bounded (60 s); nothing here measures time.
 */
import { readFileSync, writeFileSync, appendFileSync } from "node:fs";
import path from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { openApp } from "../dist/src/app.js";
import { serveHttp } from "../dist/src/server/http.js";
import { consoleFor } from "../dist/src/console/index.js";
import { entryHash, canonicalLine } from "../dist/src/audit/entry.js";
import type { VerificationStatus } from "../dist/src/audit/verification.js";
import { verifierThreads } from "../dist/src/audit/verify.js";
import { cleanupHomes, makeHome, until, type Home } from "./support/home.js";
import { backends, pgQuery } from "./support/backends.js";
import { newKey, seal } from "./support/audit-forge.js";

afterAll(() => cleanupHomes());

const LONG = { timeout: 240_000 };
const MIN = 60_000;

type App = Awaited<ReturnType<typeof openApp>>;

async function open(home: Home, clock: { t: number }): Promise<App> {
  return openApp({ home: home.env.SIGIL_HOME!, env: home.env, now: () => clock.t });
}

async function calls(app: App, id: string, n: number): Promise<void> {
  for (let i = 0; i < n; i++) await app.chains.commit(id, () => ({ value: null, draft: { tool: "whoami", phase: "call", decision: "allow", session: `s_${i}` } }));
}

function settled(app: App, id: string, pred: (s: VerificationStatus) => boolean, what: string): Promise<VerificationStatus> {
  return until(() => {
    const s = app.chains.verification.status(id);
    return pred(s) ? s : undefined;
  }, 60_000, what);
}

/** Replaces entry `seq` of the log with a copy whose time moved by a second (canonical, its signature no longer matches). */
async function editEntry(home: Home, id: string, seq: number): Promise<void> {
  const move = (line: string): string => {
    const e = JSON.parse(line);
    e.ts = new Date(Date.parse(e.ts) + 1000).toISOString();
    return canonicalLine(e);
  };
  if (home.store === "file") {
    const file = path.join(home.env.SIGIL_HOME!, "audit", `${id}.jsonl`);
    const lines = readFileSync(file, "utf8").split("\n");
    lines[seq - 1] = move(lines[seq - 1]!);
    writeFileSync(file, lines.join("\n"));
  } else {
    const url = home.env.SIGIL_STORE_URL!;
    const [row] = await pgQuery<{ line: string }>(url, "SELECT line FROM sigil_audit_entries WHERE identity_id = $1 AND seq = $2", [id, seq]);
    await pgQuery(url, "UPDATE sigil_audit_entries SET line = $3 WHERE identity_id = $1 AND seq = $2", [id, seq, move(row!.line)]);
  }
}

/** Appends, as another writer of the store, an entry placed and linked correctly but signed by a key that is not the identity's. */
async function appendForged(home: Home, id: string, last: { seq: number; hash: string; keyId: string }): Promise<void> {
  const foreign = await newKey();
  const body = { v: 1, seq: last.seq + 1, ts: new Date().toISOString(), identity: id, tool: "whoami", phase: "call", decision: "allow", session: "s_forged", keyId: last.keyId, prev: last.hash };
  const e = seal(body, foreign);
  const line = canonicalLine(e);
  expect(e.hash).toBe(entryHash(body));
  if (home.store === "file") appendFileSync(path.join(home.env.SIGIL_HOME!, "audit", `${id}.jsonl`), line + "\n");
  else {
    const url = home.env.SIGIL_STORE_URL!;
    await pgQuery(url, "INSERT INTO sigil_audit_entries (identity_id, seq, line) VALUES ($1, $2, $3)", [id, e.seq, line]);
    await pgQuery(url, "UPDATE sigil_chain_heads SET seq = $2, hash = $3 WHERE identity_id = $1", [id, e.seq, e.hash]);
  }
}

describe.each(backends)("chain verification status (%s store)", (backend) => {
  it("entries appended after a verification are 'pending', never 'verified', until a pass checks them; a watched log is verified on from where it stopped", LONG, async () => {
    const home = makeHome({}, { store: backend });
    const clock = { t: Date.now() };
    const app = await open(home, clock);
    try {
      const id = (await app.identities.create({ name: "status", channels: [] })).id;
      await calls(app, id, 3);
      const n = (await app.chains.state(id)).seq;
      const first = app.chains.verification.status(id);
      expect(first.state).toBe("unverified"); // nothing has been verified yet
      const v1 = await settled(app, id, (s) => s.state === "verified", "the first verification");
      expect(v1.verifiedSeq).toBe(n);
      expect(v1.entries).toBe(n);

      // Nobody has looked for 11 minutes: appends are counted, not verified.
      clock.t += 11 * MIN;
      await calls(app, id, 2);
      const pending = app.chains.verification.status(id);
      expect(pending).toMatchObject({ state: "pending", verifiedSeq: n, entries: n + 2 });
      // Looking at it again queued a pass (a full one: the last is older than 5 minutes).
      const v2 = await settled(app, id, (s) => s.state === "verified", "the pending entries verified");
      expect(v2.verifiedSeq).toBe(n + 2);
      const fullAt = v2.fullAt;

      // Watched now: new entries are verified as they come, from where the last pass stopped.
      clock.t += MIN;
      await calls(app, id, 2);
      const v3 = await settled(app, id, (s) => s.state === "verified" && s.verifiedSeq === n + 4, "the appended entries verified");
      expect(v3.fullAt).toBe(fullAt); // a tail pass, not the whole log again
      expect(v3.verifiedAt).toBeGreaterThan(fullAt!);
      expect(verifierThreads()).toBeGreaterThan(0); // verified on a thread, not on this event loop
    } finally {
      await app.close();
    }
  });

  it("an old entry edited in the store: 'Verify again' runs a full pass on the thread and the next page load shows the log failing; an intact log stays verified", LONG, async () => {
    const home = makeHome({}, { store: backend });
    const clock = { t: Date.now() };
    const app = await open(home, clock);
    const served = await serveHttp(app, { host: "127.0.0.1", port: 0 });
    try {
      const bad = (await app.identities.create({ name: "to be edited", channels: [] })).id;
      const good = (await app.identities.create({ name: "intact", channels: [] })).id;
      await calls(app, bad, 3);
      await calls(app, good, 3);
      const meta = await app.store.meta();
      const { setCookie } = consoleFor(app).sessions.create({ kind: "admin", tokenHash: meta.adminTokenHash }, "token");
      const cookie = [setCookie].flat()[0]!.split(";")[0]!;
      const origin = new URL(served.url).origin;
      const chip = async (id: string, query = ""): Promise<{ state: string; text: string }> => {
        const r = await fetch(`${origin}/console/audit/${id}${query}`, { headers: { cookie } });
        expect(r.status).toBe(200);
        const m = new RegExp(`data-chain-status="${id}" data-state="([a-z]+)"[^>]*>([^<]*)<`).exec(await r.text());
        expect(m).not.toBeNull();
        return { state: m![1]!, text: m![2]! };
      };
      for (const id of [bad, good]) await until(async () => ((await chip(id)).state === "ok" ? true : undefined), 60_000, "verified");

      await editEntry(home, bad, 2);
      // The verified result stands until a pass has looked again: it was true when it was made.
      await chip(bad, "?verify=1"); // what the "Verify again" button's POST redirects to
      const failing = await until(async () => {
        const c = await chip(bad);
        return c.state === "failed" ? c : undefined;
      }, 60_000, "the edited log shown failing");
      expect(failing.text).toMatch(/FAILS verification at seq 2/);
      expect(app.chains.verification.status(bad)).toMatchObject({ state: "failed", firstBadSeq: 2, verifiedSeq: 1 });
      // It stays failing: appends after it do not make it "verified" again.
      await calls(app, bad, 1);
      clock.t += MIN;
      expect((await chip(bad)).state).toBe("failed");
      expect((await chip(good)).state).toBe("ok");
    } finally {
      await served.close();
      await app.close();
    }
  });

  it("an entry another writer appended with a forged signature is found by the tail pass, which shows it failing at that seq", LONG, async () => {
    const home = makeHome({}, { store: backend });
    const clock = { t: Date.now() };
    const app = await open(home, clock);
    try {
      const id = (await app.identities.create({ name: "forged tail", channels: [] })).id;
      await calls(app, id, 3);
      const v = await settled(app, id, (s) => s.state === "verified", "the first verification");
      clock.t += MIN; // (a full pass now would record this time)
      const live = await app.chains.state(id); // the chain's live state: copy what is needed before it moves
      const n = live.seq;
      await appendForged(home, id, { seq: n, hash: live.head, keyId: live.activeKeyId! });
      await app.chains.state(id); // the chain reads the new entry (it does not check signatures): the log is at n + 1
      const s = await settled(app, id, (x) => x.state !== "pending", "the tail pass");
      expect(live.seq).toBe(n + 1);
      expect(s).toMatchObject({ state: "failed", firstBadSeq: n + 1, verifiedSeq: n });
      expect(s.error).toMatch(/invalid signature/);
      expect(s.fullAt).toBe(v.fullAt); // found by the tail pass
    } finally {
      await app.close();
    }
  });
});
