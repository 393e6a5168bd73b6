/**
 * The public routes (`/.well-known/…`, `/identities/<id>/…`) answer anyone, as often as they like,
 * from cached state: a request never re-reads or re-hashes a log, and anonymous traffic does not
 * hold up agents. In-process (the server, the store and a controllable clock in this process), so
 * the cost of a request is counted — store reads, chain-lock sections, Merkle node hashes — not
 * timed.
 */
import { afterAll, describe, expect, it } from "vitest";
import { type App, openApp } from "../src/app.js";
import { serveHttp } from "../src/server/http.js";
import { REFRESH_MS, publicRoutes } from "../src/server/public-routes.js";
import { MerkleFrontier, checkpointHashCount, merkleRoot } from "../src/provenance/checkpoint.js";
import { openNote, parseCheckpoint } from "../src/provenance/note.js";
import { backends } from "./support/backends.js";
import { cleanupHomes, httpClient, makeHome } from "./support/home.js";

afterAll(cleanupHomes);

/** Counts what the store's audit backend is asked to do. */
function instrument(sigil: App) {
  const audit = sigil.store.audit;
  const count = { sections: 0, linesSeen: 0, fullReads: 0 };
  const withChain = audit.withChain.bind(audit);
  const readLines = audit.readLines.bind(audit);
  audit.withChain = ((id, cursor, fn) =>
    withChain(id, cursor, async (view) => {
      count.sections++;
      count.linesSeen += view.lines.length;
      return fn(view);
    })) as typeof audit.withChain;
  audit.readLines = ((id) => {
    count.fullReads++;
    return readLines(id);
  }) as typeof audit.readLines;
  return count;
}

async function append(sigil: App, id: string, n: number): Promise<void> {
  await Promise.all(
    Array.from({ length: n }, () => sigil.chains.commit(id, () => ({ value: null, draft: { tool: "whoami", phase: "call" as const, decision: "allow", session: "s_test" } }))),
  );
}

async function logHashes(sigil: App, id: string): Promise<Buffer[]> {
  const out: Buffer[] = [];
  for await (const line of sigil.store.audit.readLines(id)) out.push(Buffer.from(JSON.parse(line).hash, "hex"));
  return out;
}

describe("the incremental Merkle tree", () => {
  it("has the RFC 9162 root of every prefix, 0 to 70 leaves", async () => {
    const { createHash } = await import("node:crypto");
    const leaves = Array.from({ length: 70 }, (_, i) => createHash("sha256").update(String(i)).digest());
    const f = new MerkleFrontier();
    expect(f.root().equals(merkleRoot([]))).toBe(true);
    for (let n = 1; n <= leaves.length; n++) {
      f.push(leaves[n - 1]!);
      expect(f.root().equals(merkleRoot(leaves.slice(0, n))), `size ${n}`).toBe(true);
    }
  });
});

describe.each(backends)("public routes answer from cached state (%s store)", (store) => {
  it("a checkpoint request costs nothing while the log is unchanged, and only the new entries after it grew — whatever the log's size", async () => {
    const home = makeHome({}, { store });
    const a = home.createIdentity({ channels: "" });
    let clock = Date.now();
    const sigil = await openApp({ home: home.env.SIGIL_HOME!, env: home.env, now: () => clock });
    const { url, close } = await serveHttp(sigil, { host: "127.0.0.1", port: 0, publicRoutes: publicRoutes(sigil) });
    const origin = new URL(url).origin;
    const get = (path: string) => fetch(origin + path).then(async (r) => ({ status: r.status, body: await r.text() }));
    try {
      const N = 400;
      await append(sigil, a.id, N);
      const count = instrument(sigil);
      const first = await get(`/identities/${a.id}/checkpoint`);
      expect(first.status).toBe(200);
      const rec = await sigil.identities.require(a.id);
      const key = { name: `sigil/${a.id}`, publicKey: new Uint8Array(Buffer.from(rec.keys[0]!.publicKey, "base64")) };
      let cp = parseCheckpoint(openNote(first.body, [key]).text);
      expect(cp.size).toBe(N + 1);
      expect(Buffer.from(cp.rootHash).equals(merkleRoot(await logHashes(sigil, a.id)))).toBe(true);
      expect(count.linesSeen).toBe(N + 1); // the first checkpoint in a process reads the log once

      // 300 anonymous requests (checkpoint, keys, directory, unknown ids) while nothing changes: no
      // store read, no chain-lock section, no hash.
      const before = { ...count, hashes: checkpointHashCount(sigil, a.id) };
      const paths = [`/identities/${a.id}/checkpoint`, `/identities/${a.id}/keys`, "/.well-known/http-message-signatures-directory"];
      await get(paths[1]!);
      await get(paths[2]!);
      const sections = count.sections;
      const answers = await Promise.all(Array.from({ length: 300 }, (_, i) => get(paths[i % 3]!)));
      expect(answers.every((r) => r.status === 200)).toBe(true);
      expect(answers.filter((_, i) => i % 3 === 0).every((r) => r.body === first.body)).toBe(true);
      expect(count.sections).toBe(sections);
      expect(count.linesSeen).toBe(before.linesSeen);
      expect(count.fullReads).toBe(before.fullReads);
      expect(checkpointHashCount(sigil, a.id)).toBe(before.hashes);
      expect((await get("/identities/id_00000000000000000000/checkpoint")).status).toBe(404);

      // The log grows by 10; a second later the next request reads those 10 entries and no others,
      // and hashes O(10 + log n) nodes.
      await append(sigil, a.id, 10);
      clock += REFRESH_MS + 1;
      const seen = count.linesSeen;
      const fullReads = count.fullReads;
      const hashes = checkpointHashCount(sigil, a.id);
      const grown = await get(`/identities/${a.id}/checkpoint`);
      cp = parseCheckpoint(openNote(grown.body, [key]).text);
      expect(cp.size).toBe(N + 11);
      expect(Buffer.from(cp.rootHash).equals(merkleRoot(await logHashes(sigil, a.id)))).toBe(true);
      expect(count.linesSeen - seen).toBe(10);
      expect(count.fullReads - fullReads).toBe(1); // logHashes above: the test's own read
      expect(checkpointHashCount(sigil, a.id) - hashes).toBeLessThanOrEqual(10 + 2 * Math.ceil(Math.log2(N + 11)));
    } finally {
      await close();
      await sigil.close();
    }
  });

  it("agent calls keep flowing while four anonymous loops hit the public routes, which never re-read the log", async () => {
    const home = makeHome({}, { store });
    const a = home.createIdentity({ channels: "" });
    const sigil = await openApp({ home: home.env.SIGIL_HOME!, env: home.env });
    const { url, close } = await serveHttp(sigil, { host: "127.0.0.1", port: 0, publicRoutes: publicRoutes(sigil) });
    const origin = new URL(url).origin;
    try {
      await append(sigil, a.id, 300);
      const count = instrument(sigil);
      const { client } = await httpClient(url, a.token);
      let stop = false;
      let anonymous = 0;
      const loops = Array.from({ length: 4 }, async (_, i) => {
        const path = [`/identities/${a.id}/checkpoint`, `/identities/${a.id}/keys`, "/.well-known/http-message-signatures-directory", `/identities/${a.id}/checkpoint`][i]!;
        while (!stop) {
          const r = await fetch(origin + path);
          await r.arrayBuffer();
          expect(r.status).toBe(200);
          anonymous++;
        }
      });
      const CALLS = 40;
      for (let i = 0; i < CALLS; i++) {
        const r = await client.callTool({ name: "whoami", arguments: {} });
        expect((r.structuredContent as any).id).toBe(a.id);
      }
      stop = true;
      await Promise.all(loops);
      await client.close();
      expect(anonymous).toBeGreaterThan(CALLS);
      // Every line the store handed out was read once: the 301 entries the first checkpoint needed
      // and the new entries (each seen by the checkpoint at most once; agents see none of their own).
      expect(count.fullReads).toBe(0);
      expect(count.linesSeen).toBeLessThanOrEqual(301 + CALLS + 1);
    } finally {
      await close();
      await sigil.close();
    }
  });
});
