/**
 * What a store writer (no master key) gets by deleting the exfiltration guard's journal AND
 * cutting the identity's audit log back to before a vault_get (snapshots deleted too): the
 * signed log no longer says the secret was handed out, so nothing in the store can. Each claim of
 * SECURITY.md ("Known gaps") about that attack, pinned:
 *
 * - a running server that had seen the cut entries refuses every further call of the identity (its
 *   in-memory high-water mark of the log: fail closed, never rebuilt from what is left);
 * - a checkpoint kept from after the read shows the cut (`sigil audit verify --checkpoint` exits 1);
 * - a server started after the cut cannot tell: the secret leaves (the documented limit).
 *
 * The attacker is this test process writing the files or rows; both stores.
 */
import { randomBytes } from "node:crypto";
import { readFileSync, readdirSync, renameSync, rmSync, truncateSync, writeFileSync } from "node:fs";
import path from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { type Home, cleanupHomes, makeHome, stdioClient, text } from "./support/home.js";
import { backends, pgQuery } from "./support/backends.js";
import { writeJournal } from "./support/registry-forge.js";

afterAll(cleanupHomes);

/** Cuts the identity's log back to its first `keep` entries, in place, and deletes its snapshot. */
async function cutLog(home: Home, id: string, keep: number): Promise<void> {
  if (home.store === "postgres") {
    const url = home.env.SIGIL_STORE_URL!;
    const last = (await pgQuery(url, "SELECT line FROM sigil_audit_entries WHERE identity_id = $1 AND seq = $2", [id, keep]))[0].line;
    await pgQuery(url, "DELETE FROM sigil_audit_entries WHERE identity_id = $1 AND seq > $2", [id, keep]);
    await pgQuery(url, "UPDATE sigil_chain_heads SET seq = $2, hash = $3 WHERE identity_id = $1", [id, keep, JSON.parse(last).hash]);
    await pgQuery(url, "DELETE FROM sigil_chain_snapshots WHERE identity_id = $1", [id]);
    return;
  }
  const dir = path.join(home.env.SIGIL_HOME!, "audit");
  const file = path.join(dir, `${id}.jsonl`);
  const lines = readFileSync(file, "utf8").split("\n");
  truncateSync(file, Buffer.byteLength(lines.slice(0, keep).join("\n") + "\n"));
  rmSync(path.join(dir, `${id}.snapshot`), { force: true });
}

function outboxHolds(home: Home, value: string): boolean {
  const dir = path.join(home.env.SIGIL_HOME!, "outbox");
  let names: string[] = [];
  try {
    names = readdirSync(dir, { recursive: true }) as string[];
  } catch {
    return false;
  }
  return names.some((n) => {
    try {
      return readFileSync(path.join(dir, n), "utf8").includes(value);
    } catch {
      return false;
    }
  });
}

describe.each(backends)("the journal deleted and the log's tail cut back to before vault_get (%s store)", (backend) => {
  it("the running server refuses every further call; a kept checkpoint shows the cut; a server started afterwards cannot tell", { timeout: 180_000 }, async () => {
    const home = makeHome({}, { store: backend });
    const a = home.createIdentity({ channels: "vault,email", policy: { allowedSecrets: ["*"], allowedDomains: ["example.com"] }, email: "agent@example.com" });
    const value = "Sx" + randomBytes(15).toString("hex");
    expect(home.cli(["secret", "put", a.id, "api/key"], { input: value }).code).toBe(0);
    const before = home.auditLog(a.id).length;

    const { client } = await stdioClient(home, a.token);
    const send = async (c: typeof client, body: string) => text(await c.callTool({ name: "send_email", arguments: { to: ["bob@example.com"], subject: "hi", text: body } }));
    try {
      expect((await client.callTool({ name: "vault_get", arguments: { name: "api/key" } })).structuredContent).toMatchObject({ value });
      const checkpoint = path.join(home.dir, "after-read.txt");
      writeFileSync(checkpoint, home.cli(["audit", "checkpoint", a.id]).stdout);
      expect(home.cli(["audit", "verify", a.id, "--checkpoint", checkpoint]).code).toBe(0);

      await writeJournal(home, a.id, undefined);
      await cutLog(home, a.id, before);
      expect(home.auditLog(a.id)).toHaveLength(before);

      // The running server saw the vault_get entries: it will not rebuild from the shortened log.
      expect(await send(client, `the key is ${value}`)).toMatch(/^denied: audit_unavailable: /);
      expect(await send(client, "nothing secret here")).toMatch(/^denied: audit_unavailable: /);
      expect(outboxHolds(home, value)).toBe(false);

      // A checkpoint kept from after the read: the log no longer holds it.
      const v = home.cli(["audit", "verify", a.id, "--checkpoint", checkpoint]);
      expect(v.code).toBe(1);
      expect(v.stdout + v.stderr).toMatch(/FAIL checkpoint|checkpoint/);
    } finally {
      await client.close();
    }

    // The limit, as SECURITY.md states it: a process started after the cut has nothing to tell it.
    const fresh = await stdioClient(home, a.token);
    try {
      expect(await send(fresh.client, `the key is ${value}`)).toMatch(/written to the outbox/);
    } finally {
      await fresh.client.close();
    }
  });
});

describe("a log file replaced under a running server (file store)", () => {
  it("by a copy (another file at the same path): the server appends to the file the path names, never to the one it had open; by a shorter copy: every further call is refused", { timeout: 180_000 }, async () => {
    const home = makeHome();
    const a = home.createIdentity({ channels: "email", policy: { allowedDomains: ["example.com"] }, email: "agent@example.com" });
    const file = path.join(home.env.SIGIL_HOME!, "audit", `${a.id}.jsonl`);
    const { client } = await stdioClient(home, a.token);
    const send = async (subject: string) => text(await client.callTool({ name: "send_email", arguments: { to: ["bob@example.com"], subject, text: "x" } }));
    const subjects = () => home.auditLog(a.id).filter((e) => e.tool === "send_email" && e.phase === "result").length;
    try {
      expect(await send("one")).toMatch(/written to the outbox/);
      expect(subjects()).toBe(1);

      // The same bytes under a new inode (what a restore from backup, or an attacker, does).
      renameSync(file, file + ".old");
      writeFileSync(file, readFileSync(file + ".old"), { mode: 0o600 });
      expect(await send("two")).toMatch(/written to the outbox/);
      expect(subjects()).toBe(2); // in the log readers see, not in the unlinked one
      expect(home.cli(["audit", "verify", a.id]).code).toBe(0);

      // A shorter copy under a new inode: the entries this process saw are gone; it refuses.
      const lines = readFileSync(file, "utf8").split("\n");
      writeFileSync(file + ".cut", lines.slice(0, 3).join("\n") + "\n", { mode: 0o600 });
      renameSync(file + ".cut", file);
      expect(await send("three")).toMatch(/^denied: audit_unavailable: /);
      expect(home.auditLog(a.id)).toHaveLength(3);
    } finally {
      await client.close();
    }
  });
});
