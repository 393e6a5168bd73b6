/**
 * Other local users and other database roles cannot block or fake sigil's locks.
 *
 * File store: a squatter running as `nobody` (who cannot enter the 0700 home) binds the abstract
 * socket names sigil's locks used to have — derived from the home's path and the public identity
 * id — and tries to reach the home's lock directory. PostgreSQL: a role without sigil's table
 * privileges holds the advisory locks sigil used to take, and tries row and table locks.
 * Either way, revoke, rotate-token and the other admin operations complete, and agent calls go on.
 */
import { afterAll, describe, expect, it } from "vitest";
import { type ChildProcess, spawn, spawnSync } from "node:child_process";
import { randomBytes } from "node:crypto";
import { realpathSync } from "node:fs";
import { pgConnect, pgQuery, pgSkipNote, pgUrl, freshDatabaseUrl } from "./support/backends.js";
import { CLI, cleanupHomes, makeHome, stdioClient, text } from "./support/home.js";

afterAll(cleanupHomes);

const asRoot = process.getuid?.() === 0;
const rootNote = asRoot ? "" : " — SKIPPED: needs root to run a squatter as another user";

/** Runs as `nobody`: binds the old abstract lock names, reports what it could reach, then stays. */
const SQUATTER = `
import net from "node:net";
import fs from "node:fs";
import { createHash } from "node:crypto";
const [ns, ...names] = process.argv.slice(1);
let bound = 0;
for (const n of names) {
  const addr = "\\0sigil-" + createHash("sha256").update(ns).update("\\0").update(n).digest("hex").slice(0, 40);
  await new Promise((resolve) => {
    const s = net.createServer();
    s.once("error", () => resolve());
    s.listen(addr, () => { bound++; resolve(); });
  });
}
const code = (f) => { try { f(); return "ok"; } catch (e) { return e.code; } };
const locksDir = code(() => fs.readdirSync(ns + "/locks"));
const create = code(() => fs.mkdirSync(ns + "/locks/x"));
const connect = await new Promise((resolve) => {
  const c = net.connect(ns + "/locks/l.0");
  c.on("connect", () => resolve("ok"));
  c.on("error", (e) => resolve(e.code));
});
process.stdout.write(JSON.stringify({ uid: process.getuid(), bound, locksDir, create, connect }) + "\\n");
setInterval(() => {}, 60000);
`;

function startSquatter(home: string, names: string[]): Promise<{ proc: ChildProcess; report: any }> {
  const proc = spawn("runuser", ["-u", "nobody", "--", process.execPath, "--input-type=module", "-e", SQUATTER, home, ...names], {
    cwd: "/",
    stdio: ["ignore", "pipe", "pipe"],
  });
  return new Promise((resolve, reject) => {
    let out = "";
    let err = "";
    const t = setTimeout(() => reject(new Error(`the squatter did not report: ${err}`)), 20_000);
    proc.stderr!.on("data", (d: Buffer) => (err += d.toString()));
    proc.stdout!.on("data", (d: Buffer) => {
      out += d.toString();
      if (out.includes("\n")) {
        clearTimeout(t);
        resolve({ proc, report: JSON.parse(out.split("\n")[0]!) });
      }
    });
    proc.once("exit", (code) => reject(new Error(`the squatter exited ${code}: ${err}`)));
  });
}

/** A CLI command that must finish well within sigil's 30 s lock timeout. */
function cliBounded(env: NodeJS.ProcessEnv, args: string[], input = ""): { code: number | null; stdout: string; stderr: string } {
  const r = spawnSync(process.execPath, [CLI, ...args, "--json"], { env, input, encoding: "utf8", timeout: 25_000 });
  return { code: r.status, stdout: r.stdout, stderr: r.stderr };
}

describe.skipIf(!asRoot)(`another local user squatting sigil's lock names (embedded home)${rootNote}`, () => {
  it("cannot reach the home's locks; binding the old abstract names blocks nothing: calls, rotate-token and revoke complete", async () => {
    const home = makeHome();
    const a = home.createIdentity({ channels: "vault", policy: { allowedSecrets: ["k"] } });
    const ns = realpathSync(home.env.SIGIL_HOME!);
    const names = ["registry", "admin", "audit", "secrets", "card"].map((p) => `${p}:${a.id}`);
    const { proc, report } = await startSquatter(ns, names);
    try {
      expect(report).toEqual({ uid: 65534, bound: names.length, locksDir: "EACCES", create: "EACCES", connect: "EACCES" });

      const agent = await stdioClient(home, a.token);
      const who = await agent.client.callTool({ name: "whoami", arguments: {} });
      expect(who.isError, text(who)).toBeFalsy();

      expect(cliBounded(home.env, ["secret", "put", a.id, "k"], "v1")).toMatchObject({ code: 0 });
      expect(cliBounded(home.env, ["identity", "rotate-key", a.id])).toMatchObject({ code: 0 });
      const rotated = cliBounded(home.env, ["identity", "rotate-token", a.id]);
      expect(rotated.code, rotated.stderr).toBe(0);
      const after = await agent.client.callTool({ name: "whoami", arguments: {} });
      expect(after.isError).toBe(true); // the old token stopped working at once
      await agent.client.close();

      const fresh = await stdioClient(home, JSON.parse(rotated.stdout).token);
      expect((await fresh.client.callTool({ name: "whoami", arguments: {} })).isError).toBeFalsy();
      const revoked = cliBounded(home.env, ["identity", "revoke", a.id]);
      expect(revoked.code, revoked.stderr).toBe(0);
      expect((await fresh.client.callTool({ name: "whoami", arguments: {} })).isError).toBe(true);
      await fresh.client.close();
      expect(home.json(["audit", "verify", a.id]).ok).toBe(true);
    } finally {
      proc.kill("SIGKILL");
    }
  });
});

describe.skipIf(!pgUrl)(`another database role squatting sigil's locks (PostgreSQL store)${pgSkipNote}`, () => {
  async function squatterRole(url: string): Promise<string> {
    const role = "squatter_" + randomBytes(4).toString("hex");
    await pgQuery(url, `CREATE ROLE ${role} LOGIN`);
    const u = new URL(url);
    u.username = role;
    u.password = "";
    return u.toString();
  }

  it("holding the old advisory keys and trying row and table locks, it blocks no admin operation and no call", async () => {
    const home = makeHome({}, { store: "postgres" });
    const url = home.env.SIGIL_STORE_URL!;
    const a = home.createIdentity({ channels: "vault", policy: { allowedSecrets: ["k"] } });
    const sq = await pgConnect(await squatterRole(url));
    try {
      for (const key of [`sigil:admin:${a.id}`, `sigil:secrets:${a.id}`, "sigil:migrate"]) {
        expect((await sq.query("SELECT pg_try_advisory_lock(hashtextextended($1, 0)) AS got", [key])).rows[0].got).toBe(true);
      }
      const agent = await stdioClient(home, a.token);
      expect((await agent.client.callTool({ name: "whoami", arguments: {} })).isError).toBeFalsy();
      expect(cliBounded(home.env, ["secret", "put", a.id, "k"], "v1")).toMatchObject({ code: 0 });
      expect(cliBounded(home.env, ["identity", "rotate-key", a.id])).toMatchObject({ code: 0 });
      const rotated = cliBounded(home.env, ["identity", "rotate-token", a.id]);
      expect(rotated.code, rotated.stderr).toBe(0);
      expect((await agent.client.callTool({ name: "whoami", arguments: {} })).isError).toBe(true);
      await agent.client.close();
      const revoked = cliBounded(home.env, ["identity", "revoke", a.id]);
      expect(revoked.code, revoked.stderr).toBe(0);
      // What it would need instead: sigil's table privileges.
      for (const sql of [
        "SELECT * FROM sigil_locks FOR UPDATE",
        "SELECT * FROM sigil_chain_heads FOR UPDATE",
        "LOCK TABLE sigil_identities IN ACCESS EXCLUSIVE MODE",
        "LOCK TABLE sigil_schema IN SHARE ROW EXCLUSIVE MODE",
      ]) {
        await sq.query("BEGIN");
        await expect(sq.query(sql), sql).rejects.toThrow(/permission denied/);
        await sq.query("ROLLBACK");
      }
    } finally {
      await sq.end();
    }
  });

  it("holding the old migration key on an empty database, it cannot stop sigil init", async () => {
    const empty = await freshDatabaseUrl();
    const sq = await pgConnect(await squatterRole(empty));
    try {
      expect((await sq.query("SELECT pg_try_advisory_lock(hashtextextended('sigil:migrate', 0)) AS got")).rows[0].got).toBe(true);
      const home = makeHome({ SIGIL_STORE_URL: empty }); // runs `sigil init`
      expect((await pgQuery(empty, "SELECT count(*)::int AS n FROM sigil_schema"))[0].n).toBeGreaterThan(0);
      expect(home.store).toBe("postgres");
    } finally {
      await sq.end();
    }
  });

  it("holding a dead instance's old liveness key, it cannot keep that instance's orphaned intent open", async () => {
    const home = makeHome({}, { store: "postgres" });
    const url = home.env.SIGIL_STORE_URL!;
    const a = home.createIdentity({ channels: "" });
    const sq = await pgConnect(await squatterRole(url));
    try {
      const dead = "inst_00000000dead";
      expect((await sq.query("SELECT pg_try_advisory_lock(hashtextextended($1, 0)) AS got", [`sigil:instance:${dead}`])).rows[0].got).toBe(true);
      const { openApp } = await import("../dist/src/app.js");
      const crashed = await openApp({ home: home.env.SIGIL_HOME!, env: home.env });
      await crashed.chains.commit(a.id, () => ({
        value: null,
        draft: { tool: "send_sms", phase: "intent", decision: "allow", instance: dead, session: "s_gone", args: { to: "+14155550100" } },
      }));
      await crashed.close();
      const { client } = await stdioClient(home, a.token);
      await client.callTool({ name: "whoami", arguments: {} });
      await client.close();
      const log = home.auditLog(a.id);
      expect(log[2]).toMatchObject({ tool: "send_sms", phase: "result", intent: 2, decision: "unknown", reason: "orphaned_intent" });
    } finally {
      await sq.end();
    }
  });
});
