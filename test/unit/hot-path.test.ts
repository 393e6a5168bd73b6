/**
 * Per-call work on the governed path made cheaper without changing a byte or an error (issue 14):
 * an audit entry's line reuses its body's canonical members (sealingForms), and small registry
 * files are read without thread-pool trips (realFiles.readFile).
 */
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import os from "node:os";
import path from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { canonicalForms, sealingForms } from "../../src/audit/entry.js";
import { realFiles } from "../../src/util/fsx.js";

const dir = mkdtempSync(path.join(os.tmpdir(), "sigil-hot-"));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

describe("sealingForms", () => {
  const bodies: Array<Record<string, unknown>> = [
    { v: 1, seq: 7, ts: "2026-12-02T14:00:00.000Z", identity: "id_x", tool: "send_sms", phase: "intent", decision: "allow", args: { to: "+14155550123", body: "hmac-sha256:ab" }, keyId: "k", prev: "0".repeat(64) },
    { z: [1, 2.5, -0, 1e21, 1e-7, "é", { b: null, a: true }], "\u00e9": "x", "\ud83d\ude00": "emoji key", a: "\u2028\u0007\"\\", n: undefined, nested: { y: { x: [] }, "": "" } },
    { seq: 1, hash: "a draft's own hash member", sig: "and signature", sigNew: "and co-signature", tool: "x" },
  ];
  for (const [i, body] of bodies.entries()) {
    it(`gives canonicalForms' body and line, byte for byte (case ${i + 1})`, () => {
      const forms = sealingForms(body);
      const entry: Record<string, unknown> = { ...body, hash: "h".repeat(64), sig: "s==" };
      if (i === 2) entry.sigNew = "n==";
      const expected = canonicalForms(entry);
      expect(forms.body).toBe(canonicalForms(body).body);
      expect(forms.body).toBe(expected.body.replace(/,?"hash":"h+"/, "").replace(/^\{,/, "{"));
      expect(forms.line(entry)).toBe(expected.line);
    });
  }
  it("a member whose value changed after the body was taken is canonicalised again, not reused", () => {
    const body = { a: { x: 1 }, b: 2 };
    const forms = sealingForms(body);
    const entry = { ...body, b: 3, hash: "h", sig: "s" };
    expect(forms.line(entry)).toBe(canonicalForms(entry).line);
  });
});

describe("realFiles.readFile", () => {
  it("reads a small file without waiting for the thread pool (it resolves before an immediate queued first)", async () => {
    const file = path.join(dir, "small.json");
    writeFileSync(file, '{"secrets":{}}\n');
    const order: string[] = [];
    setImmediate(() => order.push("immediate"));
    const text = await realFiles.readFile(file).then((b) => (order.push("read"), b.toString("utf8")));
    await new Promise((r) => setImmediate(r));
    expect(text).toBe('{"secrets":{}}\n');
    expect(order).toEqual(["read", "immediate"]);
  });
  it("a missing file rejects with ENOENT, as fs.promises does", async () => {
    await expect(realFiles.readFile(path.join(dir, "missing.json"))).rejects.toMatchObject({ code: "ENOENT" });
  });
  it("a file above the small-file bound is read whole (asynchronously)", async () => {
    const file = path.join(dir, "large.jsonl");
    const data = Buffer.alloc(600 * 1024, 0x61);
    writeFileSync(file, data);
    expect((await realFiles.readFile(file)).equals(data)).toBe(true);
  });
});
