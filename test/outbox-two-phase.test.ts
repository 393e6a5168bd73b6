/**
 * Two-phase outbox delivery (send_sms with the offline provider): the message is written to a
 * temporary file and fsync'd while the intent entry is flushed; the rename is the delivery. A
 * prepared message is not a delivered one: refused calls, calls whose intent cannot be written,
 * and processes killed before the rename leave no message in the outbox and no temporary file
 * with content behind.
 */
import { afterAll, describe, expect, it } from "vitest";
import { spawnSync } from "node:child_process";
import { mkdtempSync, readdirSync, readFileSync, statSync } from "node:fs";
import os from "node:os";
import path from "node:path";
import { ROOT, cleanupHomes, makeHome, stdioClient, text, type Home } from "./support/home.js";

afterAll(cleanupHomes);

const outbox = await import("../dist/src/providers/outbox.js");

/** Every file in the directory: delivered (visible) ones and hidden temporary ones with their sizes. */
function contents(dir: string): { delivered: string[]; tempBytes: number[] } {
  let names: string[] = [];
  try {
    names = readdirSync(dir);
  } catch {
    /* no directory: nothing */
  }
  return {
    delivered: names.filter((n) => !n.startsWith(".")).sort(),
    tempBytes: names.filter((n) => n.startsWith(".")).map((n) => statSync(path.join(dir, n)).size),
  };
}

describe("prepareOutboxFile / deliver / discard", () => {
  it("a prepared file is invisible until delivered; discarding or a failed delivery leaves nothing", async () => {
    const dir = path.join(mkdtempSync(path.join(os.tmpdir(), "sigil-outbox-")), "outbox");
    const p = await outbox.prepareOutboxFile(dir, "hello");
    expect(contents(dir).delivered).toEqual([]);
    const final = await p.deliver("m1.json");
    expect(readFileSync(final, "utf8")).toBe("hello");
    await expect(p.deliver("m2.json")).rejects.toThrow(/already delivered/);
    expect(contents(dir).delivered).toEqual(["m1.json"]);

    const q = await outbox.prepareOutboxFile(dir, "dropped");
    await q.discard();
    const r = await outbox.prepareOutboxFile(dir, "unsafe");
    await expect(r.deliver("../escape.json")).rejects.toThrow(/unsafe file name/);
    const c = contents(dir);
    expect(c.delivered).toEqual(["m1.json"]);
    expect(c.tempBytes.every((n) => n === 0)).toBe(true); // only the empty spare made ahead of time
  });

  it("a process killed between preparing and delivering leaves no message; the next writer sweeps its temporary file", () => {
    const dir = path.join(mkdtempSync(path.join(os.tmpdir(), "sigil-outbox-")), "outbox");
    const mod = JSON.stringify(path.join(ROOT, "dist/src/providers/outbox.js"));
    const killed = spawnSync(
      process.execPath,
      ["--input-type=module", "-e", `const o = await import(${mod}); await o.prepareOutboxFile(process.argv[1], "never sent"); process.kill(process.pid, "SIGKILL");`, dir],
      { encoding: "utf8" },
    );
    expect(killed.signal).toBe("SIGKILL");
    const left = contents(dir);
    expect(left.delivered).toEqual([]);
    expect(left.tempBytes.some((n) => n > 0)).toBe(true); // the prepared temp file of the dead process
    const next = spawnSync(process.execPath, ["--input-type=module", "-e", `const o = await import(${mod}); await o.writeOutboxFile(process.argv[1], "next.json", "{}");`, dir], {
      encoding: "utf8",
    });
    expect(next.status).toBe(0);
    const after = contents(dir);
    expect(after.delivered).toEqual(["next.json"]);
    expect(after.tempBytes.every((n) => n === 0)).toBe(true);
  });
});

describe("send_sms through the outbox in two phases", () => {
  const fixture = (): { home: Home; a: { id: string; token: string }; dir: string } => {
    const home = makeHome();
    const a = home.createIdentity({ channels: "sms", phone: "+14155550100", policy: { allowedPhoneCountries: ["US"] } });
    return { home, a, dir: path.join(home.env.SIGIL_HOME!, "outbox") };
  };

  it("delivers exactly the message policy allowed; a refused message leaves nothing in the outbox", async () => {
    const { home, a, dir } = fixture();
    const { client } = await stdioClient(home, a.token);
    const ok = await client.callTool({ name: "send_sms", arguments: { to: "+14155550123", body: "allowed" } });
    expect(ok.isError).toBeFalsy();
    const refused = await client.callTool({ name: "send_sms", arguments: { to: "+442071838750", body: "refused by policy" } });
    expect(text(refused)).toMatch(/^denied: /);
    const c = contents(dir); // while the server runs: nothing was left for its exit to clean up
    await client.close();
    expect(c.delivered).toHaveLength(1);
    const msg = JSON.parse(readFileSync(path.join(dir, c.delivered[0]!), "utf8"));
    expect(msg).toMatchObject({ kind: "sms", from: "+14155550100", to: "+14155550123", body: "allowed", id: (ok.structuredContent as any).sid });
    expect(c.tempBytes.every((n) => n === 0)).toBe(true);
    // The log holds the intent before the result of the delivered message, and the refusal.
    const log = home.auditLog(a.id).filter((e: any) => e.tool === "send_sms");
    expect(log.map((e: any) => [e.phase, e.decision])).toEqual([
      ["intent", "allow"],
      ["result", "ok"],
      ["call", "deny"],
    ]);
  });

  for (const fault of ["datasync@/audit/=EIO", "write@/audit/=ENOSPC"]) {
    it(`an intent entry that cannot be written (${fault}): nothing delivered, no prepared message left`, async () => {
      const { home, a, dir } = fixture();
      const { client } = await stdioClient(home, a.token, { env: { SIGIL_TEST_FAULTS: fault } });
      for (let i = 0; i < 3; i++) {
        const r = await client.callTool({ name: "send_sms", arguments: { to: "+14155550123", body: `never ${i}` } });
        expect(text(r)).toMatch(/^denied: audit_unavailable: /);
      }
      const c = contents(dir); // read while the server still runs: nothing was left for exit to clean
      await client.close();
      expect(c.delivered).toEqual([]);
      expect(c.tempBytes.every((n) => n === 0)).toBe(true);
    });
  }
});
