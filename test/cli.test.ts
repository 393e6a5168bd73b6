import { afterAll, describe, expect, it } from "vitest";
import { spawn, spawnSync } from "node:child_process";
import { createServer, type AddressInfo } from "node:net";
import { CLI, cleanupHomes, makeHome } from "./support/home.js";

afterAll(cleanupHomes);

const run = (args: string[], env: NodeJS.ProcessEnv = process.env) => spawnSync(process.execPath, [CLI, ...args], { env, encoding: "utf8", input: "" });

/** As `run`, without blocking this process's event loop (a server of the test must keep answering). */
const runAsync = (args: string[], env: NodeJS.ProcessEnv): Promise<{ status: number | null; stdout: string; stderr: string }> =>
  new Promise((resolve) => {
    const p = spawn(process.execPath, [CLI, ...args], { env, stdio: ["ignore", "pipe", "pipe"] });
    let stdout = "";
    let stderr = "";
    p.stdout.on("data", (d: Buffer) => (stdout += d.toString()));
    p.stderr.on("data", (d: Buffer) => (stderr += d.toString()));
    p.on("close", (status) => resolve({ status, stdout, stderr }));
  });

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
  ["card"],
  ["card", "merchant"],
  ...["add", "list"].map((c) => ["card", "merchant", c]),
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
    for (const cmd of [["serve", "--http"], ["start"]]) {
      for (const port of ["99999", "-1", "7x", "1e3"]) {
        const r = run([...cmd, "--port", port]);
        expect(r.status, `${cmd.join(" ")} --port ${port}`).toBe(2);
        expect(r.stderr).toMatch(new RegExp(`argument '${port}' is invalid\\. A port is a whole number from 0 to 65535`));
      }
    }
  });

  it("a port in use is named, with what to do (not a raw EADDRINUSE)", async () => {
    const home = makeHome();
    const busy = createServer();
    await new Promise<void>((r) => busy.listen(0, "127.0.0.1", r));
    const port = (busy.address() as AddressInfo).port;
    try {
      const r = await runAsync(["serve", "--http", "--port", String(port)], home.env);
      expect(r.status).toBe(1);
      expect(r.stderr).toBe(`sigil: port ${port} on 127.0.0.1 is already in use (another sigil or another program listens there); stop it, or choose another port with --port (e.g. --port ${port + 1}).\n`);
    } finally {
      busy.close();
    }
  });
});
