/**
 * The store contract, proven on every backend (the embedded home, and PostgreSQL when available):
 * the same tests, parametrised, against the real stores — several OS processes where the
 * guarantee is about processes.
 */
import { afterAll, describe, expect, it } from "vitest";
import { spawn } from "node:child_process";
import path from "node:path";
import { type Home, ROOT, cleanupHomes, makeHome } from "./support/home.js";
import { type Backend, backends } from "./support/backends.js";
// The built store, exactly what the CLI runs.
import { openStore } from "../dist/store/index.js";
import { storedTokenHash } from "./support/registry-forge.js";

afterAll(cleanupHomes);

const WORKER = path.join(ROOT, "test/support/store-worker.mjs");

/** Runs `workers` processes of store-worker.mjs at once; rejects if any fails. */
async function runWorkers(home: Home, mode: "update" | "append", id: string, workers: number, n: number): Promise<void> {
  const startAt = Date.now() + 1500; // all of them load first, then start together
  await Promise.all(
    Array.from({ length: workers }, (_, w) => {
      const p = spawn(process.execPath, [WORKER, mode, id, `w${w}`, String(n), String(startAt)], { env: home.env, stdio: ["ignore", "ignore", "pipe"] });
      let err = "";
      p.stderr!.on("data", (d: Buffer) => (err += d.toString()));
      return new Promise<void>((resolve, reject) => {
        const t = setTimeout(() => p.kill("SIGKILL"), 45_000);
        p.on("exit", (code) => {
          clearTimeout(t);
          code === 0 ? resolve() : reject(new Error(`worker ${w} exited ${code}: ${err}`));
        });
      });
    }),
  );
}

function storeOf(home: Home) {
  return openStore({ home: home.env.SIGIL_HOME!, storeUrl: home.env.SIGIL_STORE_URL });
}

const sealedStub = { v: 1, nonce: "AAAA", ct: "BBBB" } as any;

describe.each(backends)("store contract (%s store)", (backend: Backend) => {
  it("concurrent read-modify-write updates of one identity from 4 processes lose nothing", async () => {
    const home = makeHome({}, { store: backend });
    const a = home.createIdentity({ channels: "" });
    await runWorkers(home, "update", a.id, 4, 15);
    const store = storeOf(home);
    try {
      const marks = ((await store.getIdentity(a.id))!.policy as any).marks as string[];
      expect(marks).toHaveLength(60);
      expect(new Set(marks).size).toBe(60);
      for (let w = 0; w < 4; w++) {
        // each process's own updates landed in its own order
        const mine = marks.filter((m) => m.startsWith(`w${w}:`));
        expect(mine).toEqual(Array.from({ length: 15 }, (_, i) => `w${w}:${i}`));
      }
    } finally {
      await store.close();
    }
  });

  it("audit chain appends from 4 processes never fork: one gap-free chain holding every entry once, and it verifies", async () => {
    const home = makeHome({}, { store: backend });
    const a = home.createIdentity({ channels: "" });
    await runWorkers(home, "append", a.id, 4, 15);
    const log = home.auditLog(a.id);
    expect(log.map((e) => e.seq)).toEqual(Array.from({ length: 61 }, (_, i) => i + 1));
    for (let i = 1; i < log.length; i++) expect(log[i].prev).toBe(log[i - 1].hash);
    const events = log.filter((e) => e.tool === "contract_event").map((e) => `${e.worker}:${e.i}`);
    expect(events).toHaveLength(60);
    expect(new Set(events).size).toBe(60);
    const v = home.json(["audit", "verify", a.id]);
    expect(v.ok).toBe(true);
    expect(v.identities[0].entries).toBe(61);
  });

  it("token lookup follows rotation at once; the registry refuses duplicates and unknown ids", async () => {
    const home = makeHome({}, { store: backend });
    const a = home.createIdentity({ channels: "sms" });
    const store = storeOf(home);
    try {
      expect((await store.identityByTokenHash(storedTokenHash(home, a.token)))?.id).toBe(a.id);
      expect(await store.identityByTokenHash("0".repeat(64))).toBeUndefined();
      expect(await store.identityByTokenHash("not-a-hash")).toBeUndefined();
      const { token } = home.json(["identity", "rotate-token", a.id]); // another process
      expect(await store.identityByTokenHash(storedTokenHash(home, a.token))).toBeUndefined();
      expect((await store.identityByTokenHash(storedTokenHash(home, token)))?.id).toBe(a.id);

      const rec = (await store.getIdentity(a.id))!;
      await expect(store.createIdentity({ ...rec, tokenHash: "1".repeat(64) })).rejects.toMatchObject({ code: "conflict" });
      await expect(store.updateIdentity("id_00000000000000000000", (r: any) => r)).rejects.toMatchObject({ code: "not_found" });
      expect(await store.getIdentity("id_00000000000000000000")).toBeUndefined();
      expect(await store.getIdentity("../../etc/passwd")).toBeUndefined();
      await expect(
        store.initialise({ format: "sigil-home", schemaVersion: 1, createdAt: "", adminTokenHash: "x", masterKeyCheck: "y" }),
      ).rejects.toMatchObject({ code: "already_initialised" });
      expect((await store.listIdentities()).map((r: any) => r.id)).toEqual([a.id]);
    } finally {
      await store.close();
    }
  });

  it("secrets: versions count up, reads see the latest, names list sorted, delete is exact, identities are separate", async () => {
    const home = makeHome({}, { store: backend });
    const a = home.createIdentity({ channels: "vault" });
    const b = home.createIdentity({ channels: "vault" });
    const store = storeOf(home);
    try {
      const put = (id: string, name: string) =>
        store.putSecret(id, name, (prev: number) => ({ name, version: prev + 1, sealed: { ...sealedStub, ct: `${name}-${prev + 1}` }, updatedAt: new Date().toISOString() }));
      expect((await put(a.id, "stripe/key")).version).toBe(1);
      expect((await put(a.id, "stripe/key")).version).toBe(2);
      expect((await put(a.id, "crm")).version).toBe(1);
      expect((await store.getSecret(a.id, "stripe/key"))?.sealed.ct).toBe("stripe/key-2");
      expect(await store.listSecretNames(a.id)).toEqual(["crm", "stripe/key"]);
      expect(await store.getSecret(b.id, "stripe/key")).toBeUndefined();
      expect(await store.listSecretNames(b.id)).toEqual([]);
      // concurrent puts of one name: every version distinct
      const versions = await Promise.all(Array.from({ length: 8 }, () => put(a.id, "race")));
      expect(versions.map((v: any) => v.version).sort((x: number, y: number) => x - y)).toEqual([1, 2, 3, 4, 5, 6, 7, 8]);
      expect(await store.deleteSecret(a.id, "crm")).toBe(true);
      expect(await store.deleteSecret(a.id, "crm")).toBe(false);
      expect(await store.getSecret(a.id, "crm")).toBeUndefined();
      expect(await store.listSecretNames(a.id)).toEqual(["race", "stripe/key"]);
    } finally {
      await store.close();
    }
  });

  it("withChain: a failing transaction appends nothing, and the next one sees exactly what is there", async () => {
    const home = makeHome({}, { store: backend });
    const store = storeOf(home);
    const id = "id_" + "ab".repeat(10);
    const line = (seq: number, prev: string) => JSON.stringify({ seq, prev, hash: `h${seq}`.padEnd(64, "0") });
    try {
      const first = await store.audit.withChain(id, { position: 0 }, async (view: any) => {
        expect(view.lines).toEqual([]);
        return { lines: [line(1, "0".repeat(64)), line(2, "h1".padEnd(64, "0"))], value: "ok" };
      });
      expect(first.value).toBe("ok");
      await expect(
        store.audit.withChain(id, first.cursor, async () => {
          throw new Error("builder failed");
        }),
      ).rejects.toThrow("builder failed");
      const again = await store.audit.withChain(id, { position: 0 }, async (view: any) => {
        expect(view.lines.map((l: string) => JSON.parse(l).seq)).toEqual([1, 2]);
        return { lines: [], value: null };
      });
      expect(again.cursor).toEqual(first.cursor);
      const all: string[] = [];
      for await (const l of store.audit.readLines(id)) all.push(l);
      expect(all.map((l) => JSON.parse(l).seq)).toEqual([1, 2]);
    } finally {
      await store.close();
    }
  });
});
