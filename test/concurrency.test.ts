import { afterAll, describe, expect, it } from "vitest";
import { readFileSync } from "node:fs";
import path from "node:path";
import { cleanupHomes, makeHome, stdioClient } from "./support/home.js";

afterAll(cleanupHomes);

describe("several sigil processes on one home", () => {
  it("concurrent calls from 4 server processes, with key rotations in between, never fork or break the chain", async () => {
    const home = makeHome();
    const a = home.createIdentity({ channels: "" });
    const sessions = await Promise.all([0, 1, 2, 3].map(() => stdioClient(home, a.token)));
    const PER = 25;
    const rotations = (async () => {
      for (let i = 0; i < 3; i++) {
        await new Promise((r) => setTimeout(r, 150));
        home.cli(["identity", "rotate-key", a.id, "--json"]);
      }
    })();
    const results = await Promise.all(
      sessions.flatMap(({ client }) => Array.from({ length: PER }, () => client.callTool({ name: "whoami", arguments: {} }))),
    );
    await rotations;
    await Promise.all(sessions.map((s) => s.client.close()));
    expect(results.every((r) => !r.isError)).toBe(true);
    const seqs = results.map((r) => (r.structuredContent as any).receipt.seq);
    expect(new Set(seqs).size).toBe(4 * PER); // every acknowledged call has its own entry
    const log = readFileSync(path.join(home.env.SIGIL_HOME!, "audit", `${a.id}.jsonl`), "utf8").trim().split("\n").map((l) => JSON.parse(l));
    expect(log).toHaveLength(1 + 4 * PER + 2 * 3); // each rotation: an intent and its result (the handover)
    expect(log.map((e) => e.seq)).toEqual(log.map((_, i) => i + 1));
    expect(log.filter((e) => e.tool === "key_rotated" && e.newKeyId !== undefined)).toHaveLength(3);
    const verify = home.json(["audit", "verify", a.id]);
    expect(verify).toMatchObject({ ok: true, identities: [{ entries: 1 + 4 * PER + 2 * 3, ok: true }] });
  });

  it("concurrent admin sessions in separate processes lose no registry update", async () => {
    const home = makeHome();
    const a = home.createIdentity({ channels: "email", policy: { allowedDomains: ["example.com"] } });
    const admins = await Promise.all([0, 1, 2, 3].map(() => stdioClient(home, home.adminToken)));
    const N = 8;
    await Promise.all(
      admins.flatMap(({ client }, p) => [
        ...Array.from({ length: N }, (_, i) =>
          client.callTool({ name: "update_policy", arguments: { identityId: a.id, policies: { allowedDomains: [`p${p}-${i}.example.com`] } } }),
        ),
        ...Array.from({ length: 3 }, (_, i) => client.callTool({ name: "create_identity", arguments: { name: `made-${p}-${i}`, channels: [] } })),
      ]),
    );
    await Promise.all(admins.map((s) => s.client.close()));
    const shown = home.json(["identity", "show", a.id]);
    expect(shown.policyVersion).toBe(1 + 4 * N);
    const names = home.json<any[]>(["identity", "list"]).map((i) => i.name);
    for (let p = 0; p < 4; p++) for (let i = 0; i < 3; i++) expect(names).toContain(`made-${p}-${i}`);
    const log = home.json(["audit", "verify", a.id]);
    expect(log.identities[0]).toMatchObject({ ok: true, entries: 1 + 2 * 4 * N }); // each update: intent and result
  });
});
