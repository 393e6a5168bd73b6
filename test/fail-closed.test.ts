import { afterAll, describe, expect, it } from "vitest";
import { readFileSync } from "node:fs";
import path from "node:path";
import { cleanupHomes, makeHome, stdioClient, text } from "./support/home.js";

afterAll(cleanupHomes);

describe("fail closed: no audit, no action", () => {
  for (const fault of ["datasync@/audit/=EIO", "write@/audit/=ENOSPC", "open@/audit/=EROFS"]) {
    it(`a tool call whose audit entry cannot be written (${fault}) is refused with audit_unavailable and leaves no entry`, async () => {
      const home = makeHome();
      const a = home.createIdentity({ channels: "" });
      const logFile = path.join(home.env.SIGIL_HOME!, "audit", `${a.id}.jsonl`);
      const before = readFileSync(logFile, "utf8");
      const { client, stderr } = await stdioClient(home, a.token, { env: { SIGIL_TEST_FAULTS: fault } });
      const r = await client.callTool({ name: "whoami", arguments: {} });
      expect(r.isError).toBe(true);
      expect(text(r)).toMatch(/^denied: audit_unavailable: the audit log cannot be written, so nothing was done \(ref_[0-9a-f]+\)\.$/);
      expect(r.structuredContent).toBeUndefined();
      await client.close();
      expect(readFileSync(logFile, "utf8")).toBe(before);
      expect(stderr()).toMatch(/ref_[0-9a-f]+ audit intent for whoami/);
      expect(home.json(["audit", "verify", a.id]).ok).toBe(true);
    });
  }

  it("the server recovers once the log can be written again (a later process appends after the untouched chain)", async () => {
    const home = makeHome();
    const a = home.createIdentity({ channels: "" });
    const bad = await stdioClient(home, a.token, { env: { SIGIL_TEST_FAULTS: "datasync@/audit/=EIO" } });
    expect((await bad.client.callTool({ name: "whoami", arguments: {} })).isError).toBe(true);
    await bad.client.close();
    const good = await stdioClient(home, a.token);
    const r = await good.client.callTool({ name: "whoami", arguments: {} });
    expect(r.isError).toBeFalsy();
    expect((r.structuredContent as any).receipt.seq).toBe(2);
    await good.client.close();
  });

  it("a registry that cannot be read stops the server from starting", () => {
    const home = makeHome();
    const a = home.createIdentity({ channels: "" });
    const r = home.cli(["serve"], { env: { SIGIL_TOKEN: a.token, SIGIL_TEST_FAULTS: "readFile@sigil.json=EIO" } });
    expect(r.code).toBe(1);
    expect(r.stdout).toBe("");
    expect(r.stderr).toMatch(/registry .* cannot be read; refusing to start/);
  });
});
