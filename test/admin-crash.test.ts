/**
 * The log tells the truth about administrative changes, whatever moment a crash picks. Real
 * `sigil` processes are SIGKILLed at named points of an admin operation (SIGIL_TEST_CRASH, see
 * src/util/faults.ts); then the next process opens the identity's chain, and:
 *
 * - key rotation (killed before its intent, after it, after the new key's registry write, after
 *   the handover entry): the log and the published keys agree — `sigil audit verify --bundle
 *   --keys <the published JWKS>` passes, every key that signed anything is published with the
 *   window the log gives it and no other key is — the next entry is signed by the active key, and
 *   a second rotation works;
 * - policy update, revocation, token rotation, secret put (killed after the intent, after the
 *   change): the open intent gets the result the registry's actual state says — `ok` if the change
 *   is there, `failed` if not — and the identity behaves accordingly.
 *
 * Both stores.
 */
import { writeFileSync } from "node:fs";
import path from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { backends } from "./support/backends.js";
import { type Home, cleanupHomes, makeHome, stdioClient, text, withApp } from "./support/home.js";

afterAll(cleanupHomes);

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/**
 * The next process opens the identity's chain, until no intent is left open: on PostgreSQL the
 * dead process's backend may outlive it briefly, and until it is gone the intent is rightly
 * treated as a live process's. Returns the log.
 */
async function nextProcess(home: Home, id: string): Promise<any[]> {
  const deadline = Date.now() + 30_000;
  for (;;) {
    const verdict = await withApp(home, async (sigil) => {
      await sigil.chains.state(id);
      return (await sigil.audit.verify(id)).identities[0]!;
    });
    expect(verdict.ok, verdict.error).toBe(true);
    if (verdict.unresolvedIntents === undefined) return home.auditLog(id);
    if (Date.now() > deadline) throw new Error(`an intent of ${id} is still open`);
    await sleep(250);
  }
}

/** Every key that signed the log, with the window the log gives it (seconds, as a JWKS states them). */
function logKeys(log: any[]): Array<{ kid: string; from: number; to?: number }> {
  const sec = (iso: string) => Math.floor(Date.parse(iso) / 1000);
  const out: Array<{ kid: string; from: number; to?: number }> = [{ kid: log[0].keyId, from: sec(log[0].ts) }];
  for (const e of log) {
    if (e.newKeyId === undefined) continue;
    out[out.length - 1]!.to = sec(e.ts);
    out.push({ kid: e.newKeyId, from: sec(e.ts) });
  }
  return out;
}

/**
 * What the identity publishes (its JWKS, as `GET /identities/<id>/keys` and `sigil keys export`
 * serve it) holds exactly the keys that signed the log, with the log's windows, and anchors
 * `sigil audit verify --bundle … --keys …` of the exported log.
 */
async function expectPublishedMatchesLog(home: Home, id: string): Promise<any[]> {
  const { identityJwks } = await import("../dist/src/provenance/directory.js");
  const { jwks, bundle } = await withApp(home, async (sigil) => ({ jwks: identityJwks(await sigil.identities.published(id)), bundle: await sigil.audit.exportBundle(id) }));
  const log = bundle.entries as any[];
  const want = logKeys(log);
  expect(jwks.keys.map((k: any) => k.kid)).toEqual(want.map((k) => k.kid));
  want.forEach((w, i) => {
    const k = jwks.keys[i] as any;
    if (i === 0) expect(k.nbf).toBeLessThanOrEqual(w.from); // the first key was made just before its creation entry
    else expect(k.nbf).toBe(w.from);
    expect(k.exp).toBe(w.to);
  });
  const keysFile = path.join(home.dir, "keys.json");
  const bundleFile = path.join(home.dir, "bundle.json");
  writeFileSync(keysFile, JSON.stringify(jwks));
  writeFileSync(bundleFile, JSON.stringify(bundle));
  const v = home.cli(["audit", "verify", "--bundle", bundleFile, "--keys", keysFile, "--json"]);
  expect(v.code, v.stdout + v.stderr).toBe(0);
  expect(JSON.parse(v.stdout)).toMatchObject({ ok: true, anchor: "keys", identities: [{ ok: true, entries: log.length }] });
  return log;
}

async function whoamiKey(home: Home, token: string): Promise<string> {
  const { client } = await stdioClient(home, token);
  try {
    const r = await client.callTool({ name: "whoami", arguments: {} });
    expect(r.isError, text(r)).toBeFalsy();
    return (r.structuredContent as any).receipt.keyId;
  } finally {
    await client.close();
  }
}

const ROTATION_POINTS: Array<[string, "none" | "failed" | "ok"]> = [
  ["key_rotated:before-intent", "none"],
  ["key_rotated:after-intent", "failed"],
  ["key_rotated:after-registry", "failed"],
  ["key_rotated:after-result", "ok"],
];

describe.each(backends)("a key rotation killed at each step (%s store)", (store) => {
  it.each(ROTATION_POINTS)("killed at %s: the log and the published keys agree, the active key signs, a second rotation works", async (point, outcome) => {
    const home = makeHome({}, { store });
    const a = home.createIdentity({ channels: "" });
    const killed = home.cli(["identity", "rotate-key", a.id, "--json"], { env: { SIGIL_TEST_CRASH: point } });
    expect(killed.code, killed.stderr).toBe(-1); // SIGKILLed there
    await nextProcess(home, a.id);

    const log = await expectPublishedMatchesLog(home, a.id);
    const rotation = log.filter((e) => e.tool === "key_rotated").map((e) => [e.phase, e.decision, e.reason, e.newKeyId !== undefined]);
    if (outcome === "none") expect(rotation).toEqual([]);
    if (outcome === "failed") expect(rotation).toEqual([["intent", "allow", undefined, false], ["result", "failed", "interrupted", false]]);
    if (outcome === "ok") expect(rotation).toEqual([["intent", "allow", undefined, false], ["result", "ok", undefined, true]]);
    const active = logKeys(log).pop()!.kid;
    expect(active === a.keyId).toBe(outcome !== "ok");
    expect(await whoamiKey(home, a.token)).toBe(active); // the next entry is signed by the active key

    const second = await withApp(home, (sigil) => sigil.identities.rotateKey(a.id));
    expect(second.previousKeyId).toBe(active);
    const after = await expectPublishedMatchesLog(home, a.id);
    expect(after[after.length - 1]).toMatchObject({ tool: "key_rotated", phase: "result", decision: "ok", keyId: active, newKeyId: second.keyId });
  });
});

interface Change {
  /** Runs the change with the process killed at `point`. */
  run(home: Home, id: string, point: string): Promise<void>;
  /** Checks the identity's state is the one the recorded result claims. */
  check(home: Home, a: { id: string; token: string }, applied: boolean): Promise<void>;
}

async function tokenWorks(home: Home, token: string): Promise<boolean> {
  return withApp(home, async (sigil) => (await sigil.auth.principal(token)) !== undefined);
}

const CHANGES: Record<string, Change> = {
  policy_updated: {
    async run(home, id, point) {
      const admin = await stdioClient(home, home.adminToken, { env: { SIGIL_TEST_CRASH: point } });
      await expect(admin.client.callTool({ name: "update_policy", arguments: { identityId: id, policies: { allowedDomains: ["example.org"] } } })).rejects.toThrow();
      await admin.client.close().catch(() => {});
    },
    async check(home, a, applied) {
      await withApp(home, async (sigil) => {
        const shown = await sigil.identities.show(a.id);
        expect(shown.policyVersion).toBe(applied ? 2 : 1);
        expect(shown.policy.allowedDomains).toEqual(applied ? ["example.org"] : ["example.com"]);
        // Whatever happened, version 2 is never given to another document.
        expect((await sigil.identities.updatePolicy(a.id, { allowedDomains: ["example.net"] })).policyVersion).toBe(3);
      });
    },
  },
  identity_revoked: {
    async run(home, id, point) {
      home.cli(["identity", "revoke", id], { env: { SIGIL_TEST_CRASH: point } });
    },
    async check(home, a, applied) {
      expect((await withApp(home, (sigil) => sigil.identities.show(a.id))).revokedAt !== undefined).toBe(applied);
      expect(await tokenWorks(home, a.token)).toBe(!applied);
    },
  },
  token_rotated: {
    async run(home, id, point) {
      home.cli(["identity", "rotate-token", id], { env: { SIGIL_TEST_CRASH: point } });
    },
    async check(home, a, applied) {
      expect(await tokenWorks(home, a.token)).toBe(!applied);
    },
  },
  secret_put: {
    async run(home, id, point) {
      home.cli(["secret", "put", id, "api/key"], { input: "s3cret-value-for-crash", env: { SIGIL_TEST_CRASH: point } });
    },
    async check(home, a, applied) {
      expect(await withApp(home, (sigil) => sigil.secrets.list(a.id))).toEqual(applied ? [{ name: "api/key", version: 1 }] : []);
    },
  },
};

const CHANGE_POINTS: Array<[string, "after-intent" | "after-change"]> = Object.keys(CHANGES).flatMap((tool) => [
  [tool, "after-intent"],
  [tool, "after-change"],
]) as Array<[string, "after-intent" | "after-change"]>;

describe.each(backends)("an admin change killed between its intent and its result (%s store)", (store) => {
  it.each(CHANGE_POINTS)("%s killed %s: the next process records the result the registry shows, and the identity behaves so", async (tool, when) => {
    const home = makeHome({}, { store });
    const a = home.createIdentity({ channels: "email,vault", policy: { allowedDomains: ["example.com"] } });
    await CHANGES[tool]!.run(home, a.id, `${tool}:${when}`);
    const log = await nextProcess(home, a.id);
    const entries = log.filter((e) => e.tool === tool);
    const applied = when === "after-change";
    expect(entries.map((e) => [e.phase, e.decision, e.reason])).toEqual([
      ["intent", "allow", undefined],
      ["result", applied ? "ok" : "failed", applied ? "recovered" : "interrupted"],
    ]);
    expect(entries[1].intent).toBe(entries[0].seq);
    await CHANGES[tool]!.check(home, a, applied);
  });
});

describe.each(backends)("sigil audit checkpoint after a crashed admin change (%s store)", (store) => {
  it("opens the chain first: the dead process's intent gets its result, and the checkpoint commits to it", async () => {
    const home = makeHome({}, { store });
    const a = home.createIdentity({ channels: "" });
    const killed = home.cli(["identity", "revoke", a.id], { env: { SIGIL_TEST_CRASH: "identity_revoked:after-change" } });
    expect(killed.code, killed.stderr).toBe(-1);
    // On PostgreSQL the dead process's backend may outlive it briefly: until then its intent is
    // rightly a live process's. Nothing but `audit checkpoint` runs here.
    const deadline = Date.now() + 60_000;
    let cp: any;
    for (;;) {
      cp = home.json(["audit", "checkpoint", a.id]);
      if (home.auditLog(a.id).some((e) => e.tool === "identity_revoked" && e.phase === "result")) break;
      if (Date.now() > deadline) throw new Error("audit checkpoint never resolved the open intent");
      await sleep(250);
    }
    const log = home.auditLog(a.id);
    const result = log.find((e) => e.tool === "identity_revoked" && e.phase === "result");
    expect(result).toMatchObject({ decision: "ok", reason: "recovered" });
    expect(cp.size).toBe(log.length);
    expect(cp.headHash).toBe(log.at(-1).hash);
  });
});
