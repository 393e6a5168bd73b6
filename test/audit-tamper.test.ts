import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { readFileSync, writeFileSync } from "node:fs";
import path from "node:path";
import { cleanupHomes, makeHome, stdioClient, type Home, type Identity } from "./support/home.js";

let home: Home;
let a: Identity;
let logFile: string;
let pristine: string;

beforeAll(async () => {
  home = makeHome();
  a = home.createIdentity({ channels: "" });
  const { client } = await stdioClient(home, a.token);
  for (let i = 0; i < 4; i++) await client.callTool({ name: "whoami", arguments: {} });
  await client.close();
  home.json(["identity", "rotate-key", a.id]);
  const s2 = await stdioClient(home, a.token);
  for (let i = 0; i < 3; i++) await s2.client.callTool({ name: "whoami", arguments: {} });
  await s2.client.close();
  logFile = path.join(home.env.SIGIL_HOME!, "audit", `${a.id}.jsonl`);
  pristine = readFileSync(logFile, "utf8");
});
afterAll(cleanupHomes);

const lines = (): string[] => pristine.trimEnd().split("\n");
function verifyWith(content: string): { code: number; report: any; stderr: string } {
  writeFileSync(logFile, content);
  const r = home.cli(["audit", "verify", a.id, "--json"]);
  writeFileSync(logFile, pristine);
  return { code: r.code, report: JSON.parse(r.stdout), stderr: r.stderr };
}

describe("sigil audit verify finds tampering and names the first bad seq", () => {
  it("an untouched log verifies, across a key rotation signed by both keys", () => {
    expect(lines()).toHaveLength(10);
    expect(JSON.parse(lines()[5]!)).toMatchObject({ tool: "key_rotated", phase: "intent" });
    const rotation = JSON.parse(lines()[6]!); // the rotation's result is the handover
    expect(rotation).toMatchObject({ tool: "key_rotated", phase: "result", decision: "ok", intent: 6 });
    expect(rotation.sig).toBeTruthy();
    expect(rotation.sigNew).toBeTruthy();
    const r = home.cli(["audit", "verify", a.id]);
    expect(r.code).toBe(0);
    expect(r.stdout).toMatch(/10 entries verify/);
  });

  const cases: Array<[string, (l: string[]) => string[], number, RegExp]> = [
    ["an edited entry", (l) => l.map((x, i) => (i === 2 ? x.replace('"decision":"allow"', '"decision":"deny"') : x)), 3, /content was changed/],
    ["a deleted entry", (l) => l.filter((_, i) => i !== 3), 4, /where 4 was expected/],
    ["an inserted copy (duplicate)", (l) => [...l.slice(0, 3), l[2]!, ...l.slice(3)], 4, /duplicated or reordered/],
    ["two entries swapped", (l) => [...l.slice(0, 2), l[3]!, l[2]!, ...l.slice(4)], 3, /where 3 was expected/],
    ["a line that is not JSON", (l) => [...l.slice(0, 4), l[4]!.slice(0, 40), ...l.slice(5)], 5, /not valid JSON/],
    ["an entry signed with a retired key after the rotation", (l) => {
      const e = JSON.parse(l[7]!);
      e.keyId = JSON.parse(l[0]!).keyId;
      return [...l.slice(0, 7), JSON.stringify(e), ...l.slice(8)];
    }, 8, /content was changed|was active/],
    ["an entry from another log", (l) => {
      const e = JSON.parse(l[2]!);
      e.identity = "id_00000000000000000000";
      return [...l.slice(0, 2), JSON.stringify(e), ...l.slice(3)];
    }, 3, /another identity/],
  ];
  it.each(cases)("%s", (_name, mutate, seq, why) => {
    const { code, report, stderr } = verifyWith(mutate(lines()).join("\n") + "\n");
    expect(code).toBe(1);
    expect(report.ok).toBe(false);
    expect(report.identities[0].firstBadSeq).toBe(seq);
    expect(report.identities[0].error).toMatch(why);
    expect(stderr).toMatch(new RegExp(`seq ${seq}`));
  });

  it("an edited entry whose hash is recomputed still fails: the signature does not verify", async () => {
    const { entryHash } = await import("../dist/src/audit/entry.js");
    const l = lines();
    const e = JSON.parse(l[2]!);
    e.decision = "deny";
    e.hash = entryHash(e);
    // Re-link the rest of the chain too, as a careful forger would.
    const rest = [JSON.stringify(e)];
    let prev = e.hash;
    for (const x of l.slice(3)) {
      const y = JSON.parse(x);
      y.prev = prev;
      y.hash = entryHash(y);
      prev = y.hash;
      rest.push(JSON.stringify(y));
    }
    const { report } = verifyWith([...l.slice(0, 2), ...rest].join("\n") + "\n");
    expect(report.identities[0]).toMatchObject({ ok: false, firstBadSeq: 3, error: expect.stringMatching(/invalid signature/) });
  });

  it("export produces a bundle that verifies with no home at all, and detects an edit inside it", () => {
    const bundle = home.json(["audit", "export", a.id]);
    expect(bundle.format).toBe("sigil-audit-bundle/v1");
    expect(bundle.keys).toHaveLength(2);
    expect(JSON.stringify(bundle)).not.toMatch(/sealed|tokenHash|sigil_agent_/);
    const file = path.join(home.dir, "bundle.json");
    writeFileSync(file, JSON.stringify(bundle));
    const noHome = { SIGIL_HOME: path.join(home.dir, "does-not-exist"), SIGIL_MASTER_KEY: "" };
    const keysFile = path.join(home.dir, "keys.json");
    writeFileSync(keysFile, home.cli(["keys", "export", a.id]).stdout);
    const ok = home.cli(["audit", "verify", "--bundle", file, "--keys", keysFile, "--json"], { env: noHome });
    expect(ok.code).toBe(0);
    expect(JSON.parse(ok.stdout)).toMatchObject({ ok: true, verdict: "ok", anchored: true, anchor: "keys", identities: [{ id: a.id, entries: 10, ok: true }] });
    bundle.entries[4].tool = "send_email";
    writeFileSync(file, JSON.stringify(bundle));
    const bad = home.cli(["audit", "verify", "--bundle", file, "--keys", keysFile, "--json"], { env: noHome });
    expect(bad.code).toBe(1);
    expect(JSON.parse(bad.stdout).identities[0].firstBadSeq).toBe(5);
    // A bundle whose published key was swapped for another fails too.
    const swapped = home.json(["audit", "export", a.id]);
    const other = home.createIdentity({ channels: "" });
    swapped.keys[0] = { ...swapped.keys[0], keyId: other.keyId, publicKey: other.publicKey };
    writeFileSync(file, JSON.stringify(swapped));
    expect(home.cli(["audit", "verify", "--bundle", file], { env: noHome }).code).toBe(1);
    // Given the real keys, the bundle's own key list is not even read.
    expect(home.cli(["audit", "verify", "--bundle", file, "--keys", keysFile], { env: noHome }).code).toBe(0);
  });

  it("a torn final line is reported", () => {
    const { code, report } = verifyWith(pristine + lines()[8]!.slice(0, 30));
    expect(code).toBe(1);
    expect(report.identities[0].firstBadSeq).toBe(11);
  });
});
