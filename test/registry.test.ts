import { afterAll, describe, expect, it } from "vitest";
import { readFileSync, readdirSync, rmSync, statSync, writeFileSync } from "node:fs";
import path from "node:path";
import { cleanupHomes, makeHome } from "./support/home.js";

afterAll(cleanupHomes);

function walk(dir: string): string[] {
  return readdirSync(dir, { withFileTypes: true }).flatMap((d) => (d.isDirectory() ? [path.join(dir, d.name), ...walk(path.join(dir, d.name))] : [path.join(dir, d.name)]));
}

describe("the home and its registry", () => {
  it("is created 0700 with files 0600; tokens are stored only as hashes; private keys only sealed", () => {
    const home = makeHome();
    const a = home.createIdentity({ channels: "email", policy: { allowedDomains: ["example.com"] } });
    const dir = home.env.SIGIL_HOME!;
    expect(statSync(dir).mode & 0o777).toBe(0o700);
    for (const p of walk(dir)) {
      const mode = statSync(p).mode & 0o777;
      expect([p, mode]).toEqual([p, statSync(p).isDirectory() ? 0o700 : 0o600]);
    }
    const everything = walk(dir).filter((p) => statSync(p).isFile()).map((p) => readFileSync(p, "utf8")).join("\n");
    expect(everything).not.toContain(a.token);
    expect(everything).not.toContain(a.token.slice("sigil_agent_".length));
    expect(everything).not.toContain(home.adminToken.slice("sigil_admin_".length));
    const rec = JSON.parse(readFileSync(path.join(dir, "identities", `${a.id}.json`), "utf8"));
    expect(rec.keys[0].sealed).toMatchObject({ n: expect.any(String), c: expect.any(String) });
    expect(Buffer.from(rec.keys[0].sealed.c, "base64")).toHaveLength(64 + 16); // 64-byte secret key + Poly1305 tag
    expect(JSON.stringify(rec)).not.toMatch(/secretKey|privateKey/);
  });

  it("a sealed private key moved to another identity does not open (identity and key id are associated data)", async () => {
    const { MasterKey } = await import("../dist/src/crypto/master-key.js");
    const { cryptoReady } = await import("../dist/src/crypto/sodium.js");
    const { seal, open } = await import("../dist/src/crypto/seal.js");
    const { generateSigningKey } = await import("../dist/src/crypto/ed25519.js");
    await cryptoReady();
    const mk = MasterKey.generate().subkey("signing-keys");
    const kp = generateSigningKey();
    const sealed = seal(mk, kp.secretKey, "sigil-signing-key-v1\nid_a\nk1");
    expect(Buffer.from(open(mk, sealed, "sigil-signing-key-v1\nid_a\nk1"))).toEqual(Buffer.from(kp.secretKey));
    expect(() => open(mk, sealed, "sigil-signing-key-v1\nid_b\nk1")).toThrow();
    expect(() => open(mk, sealed, "sigil-signing-key-v1\nid_a\nk2")).toThrow();
  });

  it("init on an initialised home refuses (exit 1) and changes nothing", () => {
    const home = makeHome();
    const dir = home.env.SIGIL_HOME!;
    const before = walk(dir).filter((p) => statSync(p).isFile()).map((p) => [p, readFileSync(p, "utf8")]);
    const r = home.cli(["init", "--json"]);
    expect(r.code).toBe(1);
    expect(r.stdout).toBe("");
    expect(r.stderr.trim().split("\n")).toHaveLength(1);
    const after = walk(dir).filter((p) => statSync(p).isFile()).map((p) => [p, readFileSync(p, "utf8")]);
    expect(after).toEqual(before);
  });

  it("a missing or unreadable registry is an error, never a silent reset", () => {
    const home = makeHome();
    const a = home.createIdentity({ channels: "" });
    const dir = home.env.SIGIL_HOME!;
    const meta = path.join(dir, "sigil.json");
    const saved = readFileSync(meta);
    writeFileSync(meta, "{ torn");
    for (const args of [["identity", "list"], ["serve"]]) {
      const r = home.cli(args, { env: { SIGIL_TOKEN: a.token } });
      expect(r.code).toBe(1);
      expect(r.stderr).toMatch(/cannot be read/);
    }
    expect(readFileSync(meta, "utf8")).toBe("{ torn");
    rmSync(meta);
    const r = home.cli(["serve"], { env: { SIGIL_TOKEN: a.token } });
    expect(r.code).toBe(1);
    expect(r.stderr).toMatch(/sigil init/);
    expect(() => statSync(meta)).toThrow();
    writeFileSync(meta, saved, { mode: 0o600 });
    const ident = path.join(dir, "identities", `${a.id}.json`);
    writeFileSync(ident, "not json");
    const show = home.cli(["identity", "show", a.id]);
    expect(show.code).toBe(1);
    expect(readFileSync(ident, "utf8")).toBe("not json");
  });
});
