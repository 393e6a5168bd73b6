import { afterAll, describe, expect, it } from "vitest";
import { createHash, randomBytes } from "node:crypto";
import { existsSync, readFileSync, readdirSync, renameSync, rmSync, statSync } from "node:fs";
import path from "node:path";
import { CLI, type Home, cleanupHomes, makeHome, spawnSync, stdioClient } from "./support/home.js";

afterAll(cleanupHomes);

/** Every file and directory under the home with its mode, size, mtime and content hash. */
function snapshot(dir: string): Record<string, string> {
  const out: Record<string, string> = {};
  const walk = (d: string): void => {
    for (const name of readdirSync(d).sort()) {
      const p = path.join(d, name);
      const st = statSync(p);
      const rel = path.relative(dir, p);
      if (st.isDirectory()) {
        out[rel + "/"] = `dir ${st.mode.toString(8)}`;
        walk(p);
      } else {
        out[rel] = `${st.mode.toString(8)} ${st.size} ${st.mtimeMs} ${createHash("sha256").update(readFileSync(p)).digest("hex")}`;
      }
    }
  };
  walk(dir);
  return out;
}

function serve(home: Home, token: string, env: NodeJS.ProcessEnv = {}) {
  return spawnSync(process.execPath, [CLI, "serve"], { env: { ...home.env, SIGIL_TOKEN: token, ...env }, input: "", encoding: "utf8", timeout: 10_000 });
}

const oneLine = (s: string): string[] => s.trim().split("\n");

describe("the master key is never replaced, and nothing starts without the right one", () => {
  it("without the key file: serve and every command refuse with one clear line, create no key, change nothing; restoring it brings the data back", async () => {
    const home = makeHome();
    const a = home.createIdentity({ channels: "vault", policy: { allowedSecrets: ["k"] } });
    const secret = "s3cret-" + randomBytes(8).toString("hex");
    home.json(["secret", "put", a.id, "k"], { input: secret });
    const keyFile = path.join(home.env.SIGIL_HOME!, "master.key");
    const aside = path.join(home.dir, "master.key.aside");
    renameSync(keyFile, aside);
    const before = snapshot(home.env.SIGIL_HOME!);

    const r = serve(home, a.token);
    expect(r.status).not.toBe(0);
    expect(r.stdout).toBe("");
    expect(oneLine(r.stderr)).toHaveLength(1);
    expect(r.stderr).toMatch(/master key is missing: set SIGIL_MASTER_KEY or restore .*master\.key; sigil will not start without it/);
    for (const args of [["identity", "list"], ["secret", "put", a.id, "k"], ["serve", "--http", "--port", "0"]]) {
      const c = home.cli(args, { input: "new-value" });
      expect(c.code, args.join(" ")).not.toBe(0);
      expect(c.stderr, args.join(" ")).toMatch(/master key is missing/);
    }
    // Verifying needs public data only (README: what verification needs), so it still works.
    expect(home.cli(["audit", "verify"]).code).toBe(0);
    expect(existsSync(keyFile)).toBe(false);
    expect(snapshot(home.env.SIGIL_HOME!)).toEqual(before);

    renameSync(aside, keyFile);
    const { client } = await stdioClient(home, a.token);
    const got = await client.callTool({ name: "vault_get", arguments: { name: "k" } });
    expect((got.structuredContent as any).value).toBe(secret);
    await client.close();
    expect(home.json(["audit", "verify", a.id]).ok).toBe(true);
  });

  it("a wrong or malformed SIGIL_MASTER_KEY is refused before serving, and changes nothing", () => {
    const home = makeHome();
    const a = home.createIdentity({ channels: "" });
    const before = snapshot(home.env.SIGIL_HOME!);
    const wrong = serve(home, a.token, { SIGIL_MASTER_KEY: randomBytes(32).toString("base64") });
    expect(wrong.status).not.toBe(0);
    expect(wrong.stdout).toBe("");
    expect(oneLine(wrong.stderr)).toHaveLength(1);
    expect(wrong.stderr).toMatch(/The master key does not belong to the home at .*; refusing to start/);
    const malformed = serve(home, a.token, { SIGIL_MASTER_KEY: "not-a-key" });
    expect(malformed.status).not.toBe(0);
    expect(malformed.stderr).toMatch(/SIGIL_MASTER_KEY is not base64 of 32 bytes/);
    const cliWrong = home.cli(["identity", "list"], { env: { SIGIL_MASTER_KEY: randomBytes(32).toString("base64") } });
    expect(cliWrong.code).not.toBe(0);
    expect(cliWrong.stderr).toMatch(/does not belong/);
    expect(snapshot(home.env.SIGIL_HOME!)).toEqual(before);
  });

  it("a home keyed by SIGIL_MASTER_KEY has no key file, and refuses to start without the variable", async () => {
    const key = randomBytes(32).toString("base64");
    const home = makeHome({ SIGIL_MASTER_KEY: key });
    expect(existsSync(path.join(home.env.SIGIL_HOME!, "master.key"))).toBe(false);
    const a = home.createIdentity({ channels: "vault", policy: { allowedSecrets: ["k"] } });
    home.json(["secret", "put", a.id, "k"], { input: "value-1234" });
    const without = serve(home, a.token, { SIGIL_MASTER_KEY: "" });
    expect(without.status).not.toBe(0);
    expect(without.stderr).toMatch(/master key is missing/);
    expect(existsSync(path.join(home.env.SIGIL_HOME!, "master.key"))).toBe(false);
    const { client } = await stdioClient(home, a.token);
    expect(((await client.callTool({ name: "vault_get", arguments: { name: "k" } })).structuredContent as any).value).toBe("value-1234");
    await client.close();
  });

  it("sigil init on an existing home exits 1 and changes nothing, whatever key it is given", () => {
    const home = makeHome();
    const a = home.createIdentity({ channels: "vault" });
    home.json(["secret", "put", a.id, "k"], { input: "v-5678" });
    const before = snapshot(home.env.SIGIL_HOME!);
    for (const env of [{}, { SIGIL_MASTER_KEY: randomBytes(32).toString("base64") }]) {
      const r = home.cli(["init", "--json"], { env });
      expect(r.code).toBe(1);
      expect(r.stdout).toBe("");
      expect(oneLine(r.stderr)).toHaveLength(1);
      expect(r.stderr).toMatch(/already initialised; nothing was changed/);
      expect(snapshot(home.env.SIGIL_HOME!)).toEqual(before);
    }
    // A home whose registry is gone but whose key remains: init refuses to replace the key.
    const keyFile = path.join(home.env.SIGIL_HOME!, "master.key");
    const keyBefore = readFileSync(keyFile);
    rmSync(path.join(home.env.SIGIL_HOME!, "sigil.json"));
    const r = home.cli(["init"]);
    expect(r.code).toBe(1);
    expect(r.stderr).toMatch(/master\.key already exists; refusing to replace a master key/);
    expect(readFileSync(keyFile)).toEqual(keyBefore);
    expect(existsSync(path.join(home.env.SIGIL_HOME!, "sigil.json"))).toBe(false);
  });
});
