import { afterAll, describe, expect, it } from "vitest";
import { spawnSync } from "node:child_process";
import { CLI, cleanupHomes, makeHome } from "./support/home.js";

afterAll(cleanupHomes);

const run = (args: string[], env: NodeJS.ProcessEnv = process.env) => spawnSync(process.execPath, [CLI, ...args], { env, encoding: "utf8", input: "" });

const COMMANDS = [
  [],
  ["init"],
  ["serve"],
  ["start"],
  ["identity"],
  ...["create", "list", "show", "rotate-key", "rotate-token", "revoke"].map((c) => ["identity", c]),
  ["audit"],
  ...["verify", "export", "checkpoint"].map((c) => ["audit", c]),
  ["secret"],
  ...["put", "delete", "list"].map((c) => ["secret", c]),
  ["keys"],
  ...["export", "directory"].map((c) => ["keys", c]),
  ["receipt"],
  ...["show", "verify", "verify-email"].map((c) => ["receipt", c]),
  ["store"],
  ["store", "migrate"],
];

describe("the command line", () => {
  it.each(COMMANDS.map((c) => [c.join(" ") || "(top)", c]))("`sigil %s --help` exits 0 with a usage and nothing on stderr", (_n, cmd) => {
    const r = run([...(cmd as string[]), "--help"]);
    expect(r.status).toBe(0);
    expect(r.stdout).toMatch(/^Usage: sigil/);
    expect(r.stderr).toBe("");
  });

  it("data commands print exactly one JSON document with --json; errors are one sentence on stderr with a non-zero exit", () => {
    const home = makeHome();
    const a = home.createIdentity({ channels: "email", policy: { allowedDomains: ["example.com"] } });
    for (const args of [["identity", "list"], ["identity", "show", a.id], ["audit", "verify"], ["keys", "export", a.id], ["secret", "list", a.id]]) {
      const r = home.cli([...args, "--json"]);
      expect(r.code, args.join(" ")).toBe(0);
      expect(() => JSON.parse(r.stdout), args.join(" ")).not.toThrow();
    }
    const missing = home.cli(["identity", "show", "id_00000000000000000000", "--json"]);
    expect(missing.code).toBe(1);
    expect(missing.stdout).toBe("");
    expect(missing.stderr.trim().split("\n")).toHaveLength(1);
    const badPolicy = home.cli(["identity", "create", "--name", "x", "--channels", "email", "--policy", "@/nonexistent/policy.json"]);
    expect(badPolicy.code).toBe(1);
    expect(badPolicy.stderr).toBe("sigil: --policy @/nonexistent/policy.json: the file cannot be read.\n");
  });

  it("usage errors exit 2", () => {
    expect(run(["frobnicate"]).status).toBe(2);
    expect(run(["identity", "create", "--name", "x"]).status).toBe(2); // --channels missing
  });
});
