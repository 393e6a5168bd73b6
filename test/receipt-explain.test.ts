/**
 * Receipts carry tenant, policy version and hash, and key; `sigil receipt explain` checks each
 * answer against the log, the keys and the tenant's delegation statements. Receipts come from real
 * agent calls (the SDK client over stdio against the built server); explain runs as the built CLI,
 * against the home (both stores) and against an exported bundle with no home.
 */
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { createHash } from "node:crypto";
import { mkdtempSync, writeFileSync } from "node:fs";
import os from "node:os";
import path from "node:path";
import { type Home, type Identity, type Tenant, cleanupHomes, makeHome, stdioClient } from "./support/home.js";
import { backends } from "./support/backends.js";
import { openApp } from "../src/app.js";
import { signDelegation } from "../src/provenance/delegation.js";

afterAll(cleanupHomes);

function canonical(v: unknown): string {
  if (Array.isArray(v)) return `[${v.map(canonical).join(",")}]`;
  if (v !== null && typeof v === "object") return `{${Object.keys(v).sort().map((k) => `${JSON.stringify(k)}:${canonical((v as any)[k])}`).join(",")}}`;
  return JSON.stringify(v);
}
const policyHash = (p: unknown): string => createHash("sha256").update(canonical(p)).digest("hex");

const dir = mkdtempSync(path.join(os.tmpdir(), "sigil-explain-"));
let n = 0;
function file(doc: unknown): string {
  const f = path.join(dir, `f${n++}.json`);
  writeFileSync(f, JSON.stringify(doc));
  return f;
}

const POLICY = { allowedDomains: ["example.com"] };

describe.each(backends)("receipts and receipt explain (%s store)", (backend) => {
  let home: Home;
  let t: Tenant;
  let agent: Identity;
  let first: any;
  let second: any;

  const send = async (): Promise<any> => {
    const { client } = await stdioClient(home, agent.token);
    try {
      const r = await client.callTool({ name: "send_email", arguments: { to: ["a@example.com"], subject: "hi", text: "hello" } });
      expect(r.isError).toBeFalsy();
      return (r.structuredContent as any).receipt;
    } finally {
      await client.close();
    }
  };
  const explain = (args: string[], env: NodeJS.ProcessEnv = {}): { code: number; doc: any; stdout: string; stderr: string } => {
    const r = home.cli(["receipt", "explain", ...args, "--json"], { env });
    return { code: r.code, doc: r.stdout ? JSON.parse(r.stdout) : undefined, stdout: r.stdout, stderr: r.stderr };
  };
  const byQ = (doc: any): Record<string, any> => Object.fromEntries(doc.answers.map((a: any) => [a.question, a]));

  beforeAll(async () => {
    home = makeHome({}, { store: backend });
    t = home.createTenant("acme");
    agent = home.createIdentity({ name: "mailer", channels: "email", tenant: t.id, policy: POLICY });
    first = await send();
    home.json(["identity", "rotate-key", agent.id]);
    const { client } = await stdioClient(home, home.adminToken);
    await client.callTool({ name: "update_policy", arguments: { identityId: agent.id, policy: { allowedDomains: ["example.com", "example.org"] } } });
    await client.close();
    second = await send();
  });

  it("an agent's receipt carries its tenant, the policy version and hash, and the key that signed it", () => {
    expect(first).toMatchObject({ identityId: agent.id, tenantId: t.id, policyVersion: 1, policyHash: policyHash(POLICY), keyId: agent.keyId });
    const shown = home.json(["identity", "show", agent.id]);
    expect(second).toMatchObject({ identityId: agent.id, tenantId: t.id, policyVersion: 2, policyHash: policyHash(shown.policy), keyId: shown.keyId });
    expect(second.keyId).not.toBe(first.keyId);
    expect(second.approvalId).toBeUndefined();
  });

  it("explain answers each question, checked, for receipts before and after a key rotation and a policy change", () => {
    for (const [receipt, version, policy] of [
      [first, 1, POLICY],
      [second, 2, { allowedDomains: ["example.com", "example.org"] }],
    ] as const) {
      // As the agent got it: the whole structuredContent works as well as the receipt alone.
      for (const input of [receipt, { structuredContent: { messageId: "x", receipt } }]) {
        const r = explain([file(input)]);
        expect(r.code, r.stderr).toBe(0);
        expect(r.doc.ok).toBe(true);
        const a = byQ(r.doc);
        expect(Object.keys(a).sort()).toEqual(["agent", "approval", "delegation", "key", "policy", "receipt", "tenant"]);
        for (const q of Object.values(a)) expect([q.question, q.status]).toEqual([q.question, "ok"]);
        expect(a.agent.answer).toBe(`${agent.id} (mailer)`);
        expect(a.tenant.answer).toBe(t.id);
        expect(a.key.answer).toBe(receipt.keyId);
        expect(a.policy.answer).toBe(`version ${version}, hash ${policyHash(policy)}`);
        expect(a.approval.answer).toBe("none");
        expect(a.approval.detail).toMatch(/no approval applied/);
        expect(a.delegation.answer).toContain(`tenant ${t.id} (key ${t.keyId}) delegates key ${receipt.keyId}`);
      }
    }
    // The human form says the same, one line per answer.
    const human = home.cli(["receipt", "explain", file(second)]);
    expect(human.code).toBe(0);
    expect(human.stdout).toMatch(/^ok +tenant: tn_/m);
    expect(human.stdout).toMatch(/^ok +approval: none — no approval applied/m);
  });

  it("a tampered receipt fails, naming what does not hold (exit 1)", () => {
    const cases: Array<[string, Record<string, unknown>, string]> = [
      ["tenantId", { ...second, tenantId: "default" }, "tenant"],
      ["policyVersion", { ...second, policyVersion: 1 }, "policy"],
      ["policyHash", { ...second, policyHash: policyHash(POLICY) }, "policy"],
      ["hash", { ...second, hash: first.hash }, "receipt"],
      ["signature", { ...second, signature: first.signature }, "receipt"],
      ["keyId", { ...second, keyId: first.keyId }, "receipt"],
      ["seq", { ...second, seq: first.seq }, "receipt"],
      ["seq beyond the log", { ...second, seq: 10_000 }, "receipt"],
    ];
    for (const [what, forged, question] of cases) {
      const r = explain([file(forged)]);
      expect([what, r.code]).toEqual([what, 1]);
      const failed = r.doc.answers.filter((a: any) => a.status === "failed").map((a: any) => a.question);
      expect([what, failed]).toEqual([what, [question]]);
      expect(r.stderr.trim().split("\n")).toHaveLength(1);
    }
    // Not a receipt at all: one sentence, exit 1.
    const bad = home.cli(["receipt", "explain", file({ hello: 1 })]);
    expect(bad.code).toBe(1);
    expect(bad.stderr).toMatch(/does not hold a receipt/);
  });

  it("--bundle without a home: unanchored keys are said to be unchecked; --keys anchors them; a tampered delegation statement, or one not delegating the channel used, fails", async () => {
    const bundle = home.json(["audit", "export", agent.id]);
    const keys = home.json(["keys", "export", agent.id]);
    const nowhere = { SIGIL_HOME: path.join(dir, "no-home"), SIGIL_STORE_URL: "" };
    const r = explain([file(second), "--bundle", file(bundle)], nowhere);
    expect(r.code, r.stderr).toBe(0);
    const a = byQ(r.doc);
    expect(a.receipt.status).toBe("unchecked");
    expect(a.receipt.detail).toMatch(/nothing anchors/);
    expect(a.delegation.status).toBe("ok");
    const anchored = explain([file(second), "--bundle", file(bundle), "--keys", file(keys)], nowhere);
    expect(anchored.code).toBe(0);
    for (const q of anchored.doc.answers) expect([q.question, q.status]).toEqual([q.question, "ok"]);

    const last = bundle.delegations.length - 1;
    const forged = structuredClone(bundle);
    forged.delegations[last].policyHash = policyHash(POLICY);
    const f = explain([file(second), "--bundle", file(forged), "--keys", file(keys)], nowhere);
    expect(f.code).toBe(1);
    expect(byQ(f.doc).delegation).toMatchObject({ status: "failed", detail: expect.stringMatching(/signature does not verify/) });
    // Another tenant's key in place of the tenant's: the statement does not verify with it.
    const swapped = structuredClone(bundle);
    swapped.tenant.keys = [{ kty: "OKP", crv: "Ed25519", x: Buffer.from(home.createTenant("other").publicKey, "base64").toString("base64url") }];
    expect(byQ(explain([file(second), "--bundle", file(swapped), "--keys", file(keys)], nowhere).doc).delegation.status).toBe("failed");
    // Validly signed by the tenant's own key, but not for the channel the entry used: fails.
    const sigil = await openApp({ home: home.env.SIGIL_HOME!, env: home.env });
    let narrowed: any;
    try {
      const tenantRecord = (await sigil.store.getTenant(t.id))!;
      const sk = await sigil.tenants.secretKey(tenantRecord);
      const { signature: _s, ...open } = bundle.delegations[last];
      narrowed = structuredClone(bundle);
      narrowed.delegations[last] = signDelegation(sk, { ...open, channels: ["sign"] });
    } finally {
      await sigil.close();
    }
    const n = explain([file(second), "--bundle", file(narrowed), "--keys", file(keys)], nowhere);
    expect(n.code).toBe(1);
    expect(byQ(n.doc).delegation).toMatchObject({ status: "failed", detail: "it does not delegate the email channel, which send_email uses" });
        // A receipt of another identity against this bundle: refused, nothing claimed.
    const wrong = explain([file({ ...second, identityId: "id_" + "0".repeat(20) }), "--bundle", file(bundle)], nowhere);
    expect(wrong.code).toBe(1);
  });

  it("what it prints from the receipt is escaped", () => {
    const r = home.cli(["receipt", "explain", file({ ...second, tenantId: "evil\u001b[2J\u202e" })]);
    expect(r.code).toBe(1);
    expect(r.stdout).not.toMatch(/[\u001b\u202e]/);
    expect(r.stdout).toContain("\\x1B[2J");
  });
});
