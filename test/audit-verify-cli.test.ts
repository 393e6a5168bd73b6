/**
 * `sigil audit verify` as users run it: anchored to the keys a verifier chose (`--keys` with a
 * JWKS file or the server's `/identities/<id>/keys` URL), `unanchored` (exit 3) for a bundle that
 * is merely self-consistent, canonical lines in a home's log, and verification that needs public
 * data only — an auditor with read access and no master key verifies a home.
 */
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { chmodSync, readFileSync, readdirSync, renameSync, statSync, writeFileSync } from "node:fs";
import path from "node:path";
import { spawnSync } from "node:child_process";
import { CLI, cleanupHomes, makeHome, startHttpServer, stdioClient, type Home, type Identity } from "./support/home.js";
import { backends, type Backend } from "./support/backends.js";
import { ForgedLog } from "./support/audit-forge.js";
import { canonicalLine } from "../dist/src/audit/entry.js";

afterAll(cleanupHomes);

async function busyIdentity(home: Home): Promise<Identity> {
  const a = home.createIdentity({ channels: "" });
  const { client } = await stdioClient(home, a.token);
  for (let i = 0; i < 3; i++) await client.callTool({ name: "whoami", arguments: {} });
  await client.close();
  home.json(["identity", "rotate-key", a.id]);
  return a;
}

describe("bundles are verified against keys the verifier chose", () => {
  let home: Home;
  let a: Identity;
  let bundleFile: string;
  let keysFile: string;
  const noHome = (h: Home) => ({ env: { SIGIL_HOME: path.join(h.dir, "nowhere"), SIGIL_MASTER_KEY: "" } });

  beforeAll(async () => {
    home = makeHome();
    a = await busyIdentity(home);
    bundleFile = path.join(home.dir, "bundle.json");
    keysFile = path.join(home.dir, "keys.json");
    writeFileSync(bundleFile, home.cli(["audit", "export", a.id]).stdout);
    writeFileSync(keysFile, home.cli(["keys", "export", a.id]).stdout);
  });

  it("without --keys or --checkpoint a self-consistent bundle is `unanchored` and exits 3, in text and JSON", () => {
    const text = home.cli(["audit", "verify", "--bundle", bundleFile], noHome(home));
    expect(text.code).toBe(3);
    expect(text.stdout).toMatch(new RegExp(`^unanchored ${a.id}: 6 entries are self-consistent`));
    const json = home.cli(["audit", "verify", "--bundle", bundleFile, "--json"], noHome(home));
    expect(json.code).toBe(3);
    expect(JSON.parse(json.stdout)).toMatchObject({ ok: false, verdict: "unanchored", anchored: false, identities: [{ id: a.id, ok: true, entries: 6 }] });
    expect(json.stderr).toMatch(/unanchored/);
  });

  it("with --keys FILE (the identity's JWKS) it is anchored and exits 0", () => {
    const r = home.cli(["audit", "verify", "--bundle", bundleFile, "--keys", keysFile, "--json"], noHome(home));
    expect(r.code).toBe(0);
    expect(JSON.parse(r.stdout)).toMatchObject({ ok: true, verdict: "ok", anchored: true, anchor: "keys" });
  });

  it("with --keys URL it fetches the server's /identities/<id>/keys, and the key directory works too", async () => {
    const server = await startHttpServer(home);
    try {
      const origin = new URL(server.url).origin;
      const r = home.cli(["audit", "verify", "--bundle", bundleFile, "--keys", `${origin}/identities/${a.id}/keys`, "--json"], noHome(home));
      expect(r.stderr).toBe("");
      expect(r.code).toBe(0);
      expect(JSON.parse(r.stdout)).toMatchObject({ verdict: "ok", anchor: "keys" });
      // The directory lists only current keys (and keys retired in the last minutes): the log verifies while its retired key is listed.
      const dir = home.cli(["audit", "verify", "--bundle", bundleFile, "--keys", `${origin}/.well-known/http-message-signatures-directory`, "--json"], noHome(home));
      expect(JSON.parse(dir.stdout)).toMatchObject({ verdict: "ok" });
      const missing = home.cli(["audit", "verify", "--bundle", bundleFile, "--keys", `${origin}/identities/id_00000000000000000000/keys`], noHome(home));
      expect(missing.code).toBe(1);
      expect(missing.stderr).toMatch(/cannot be fetched \(HTTP 404\)/);
    } finally {
      await server.stop();
    }
  });

  it("a bundle re-signed with a foreign key (an entry removed) fails against the real keys; without them it is only unanchored", async () => {
    const real = JSON.parse(readFileSync(bundleFile, "utf8"));
    const forged = await ForgedLog.create(a.id);
    for (const e of real.entries.slice(1)) if (e.seq !== 3 && e.tool !== "key_rotated") forged.push({ tool: e.tool, phase: e.phase, decision: e.decision, session: e.session });
    const file = path.join(home.dir, "forged.json");
    writeFileSync(file, JSON.stringify(forged.bundle()));
    const anchored = home.cli(["audit", "verify", "--bundle", file, "--keys", keysFile, "--json"], noHome(home));
    expect(anchored.code).toBe(1);
    expect(JSON.parse(anchored.stdout)).toMatchObject({ ok: false, verdict: "failed", identities: [{ firstBadSeq: 1, error: expect.stringMatching(/not among the trusted keys/) }] });
    expect(home.cli(["audit", "verify", "--bundle", file], noHome(home)).code).toBe(3);
  });

  it("keys of another identity, or a file that holds no keys, are refused with a clear error", () => {
    const b = home.createIdentity({ channels: "" });
    const other = path.join(home.dir, "other-keys.json");
    writeFileSync(other, home.cli(["keys", "export", b.id]).stdout);
    const r = home.cli(["audit", "verify", "--bundle", bundleFile, "--keys", other], noHome(home));
    expect(r.code).toBe(1);
    expect(r.stderr).toMatch(new RegExp(`are those of ${b.id}, not of ${a.id}`));
    writeFileSync(other, JSON.stringify({ keys: [] }));
    expect(home.cli(["audit", "verify", "--bundle", bundleFile, "--keys", other], noHome(home)).stderr).toMatch(/holds no Ed25519 keys/);
  });
});

describe.each(backends)("verifying a home needs public data only (%s store)", (backend: Backend) => {
  let home: Home;
  let a: Identity;
  beforeAll(async () => {
    home = makeHome({}, { store: backend });
    a = await busyIdentity(home);
  });

  it("with the master key file absent, or holding the wrong key, and no SIGIL_MASTER_KEY, every log verifies", () => {
    const keyFile = path.join(home.env.SIGIL_HOME!, "master.key");
    const good = readFileSync(keyFile);
    const env = { env: { SIGIL_MASTER_KEY: "" } };
    try {
      renameSync(keyFile, keyFile + ".away");
      expect(home.cli(["identity", "list"], env).code).toBe(1); // the rest of the CLI does need it
      const r = home.cli(["audit", "verify", a.id, "--json"], env);
      expect(r.stderr).toBe("");
      expect(JSON.parse(r.stdout)).toMatchObject({ ok: true, verdict: "ok", anchor: "home", identities: [{ id: a.id, ok: true, entries: 6 }] });
      writeFileSync(keyFile, Buffer.alloc(32, 7).toString("base64") + "\n", { mode: 0o600 });
      expect(home.cli(["audit", "verify"], env)).toMatchObject({ code: 0, stdout: expect.stringMatching(/ok {3}id_\w+: 6 entries verify/) });
    } finally {
      writeFileSync(keyFile, good, { mode: 0o600 });
    }
  });
});

describe("an auditor (another local user) who can read the registry and logs but not the master key", () => {
  it("verifies the home's logs", async () => {
    const home = makeHome({}, { store: "file" });
    const a = await busyIdentity(home);
    const open = (p: string): void => {
      const st = statSync(p);
      if (st.isDirectory()) {
        chmodSync(p, 0o755);
        for (const n of readdirSync(p)) open(path.join(p, n));
      } else if (path.basename(p) !== "master.key") chmodSync(p, 0o644);
    };
    chmodSync(home.dir, 0o755);
    open(home.env.SIGIL_HOME!);
    expect(statSync(path.join(home.env.SIGIL_HOME!, "master.key")).mode & 0o077).toBe(0);
    const asNobody = (args: string[]) =>
      spawnSync("setpriv", ["--reuid=65534", "--regid=65534", "--clear-groups", process.execPath, CLI, ...args], {
        env: { PATH: process.env.PATH, SIGIL_HOME: home.env.SIGIL_HOME },
        encoding: "utf8",
      });
    const probe = asNobody(["identity", "list"]);
    expect(probe.stderr).toMatch(/master key/i); // this user really cannot read the key
    const r = asNobody(["audit", "verify", a.id, "--json"]);
    expect(r.stderr).toBe("");
    expect(r.status).toBe(0);
    expect(JSON.parse(r.stdout)).toMatchObject({ ok: true, identities: [{ id: a.id, ok: true, entries: 6 }] });
  });
});

describe("a home's log lines must be their canonical form", () => {
  it("a repeated member or reformatted whitespace in a line fails `audit verify` at that line", async () => {
    const home = makeHome({}, { store: "file" });
    const a = await busyIdentity(home);
    const file = path.join(home.env.SIGIL_HOME!, "audit", `${a.id}.jsonl`);
    const pristine = readFileSync(file, "utf8");
    const lines = pristine.trimEnd().split("\n");
    expect(lines.every((l) => l === canonicalLine(JSON.parse(l)))).toBe(true); // the writer writes canonical lines
    for (const edit of [(l: string) => l.replace('"decision":"allow"', '"decision":"deny","decision":"allow"'), (l: string) => l.replace(/":/g, '": ')]) {
      const copy = [...lines];
      copy[2] = edit(copy[2]!);
      writeFileSync(file, copy.join("\n") + "\n");
      const r = home.cli(["audit", "verify", a.id, "--json"]);
      expect(r.code).toBe(1);
      expect(JSON.parse(r.stdout).identities[0]).toMatchObject({ firstBadSeq: 3, error: expect.stringMatching(/canonical form/) });
    }
    writeFileSync(file, pristine);
    expect(home.cli(["audit", "verify", a.id]).code).toBe(0);
  });
});
