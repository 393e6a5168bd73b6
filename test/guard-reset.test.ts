/**
 * Clearing `guard_tampered` after an investigation (`sigil secret reset-guard ID`, admin tool
 * `reset_exfiltration_guard`): the reads the exfiltration guard's journal lost — and the vault can
 * no longer rebuild — are acknowledged in the identity's signed log (intent `guard_reset` naming
 * each, then its `ok` result), after which outbound calls are decided again. Refused, audited and
 * changing nothing while the tamper is still there (the journal's record exists but cannot be
 * opened) or when nothing is lost; a tenant admin reaches only its own identities. The attacker
 * writes the store from this test process; calls go through the built server over stdio; both
 * stores.
 */
import { randomBytes } from "node:crypto";
import { afterAll, describe, expect, it } from "vitest";
import { type Home, cleanupHomes, makeHome, stdioClient, text } from "./support/home.js";
import { backends } from "./support/backends.js";
import { readJournal, writeJournal } from "./support/registry-forge.js";

afterAll(cleanupHomes);

const POLICY = { allowedSecrets: ["*"], allowedDomains: ["example.com"] };

function setup(backend: (typeof backends)[number], tenant?: string) {
  const home = makeHome({}, { store: backend });
  const t = tenant === undefined ? undefined : home.createTenant(tenant);
  const a = home.createIdentity({ channels: "vault,email", policy: POLICY, email: "agent@example.com", ...(t ? { tenant: t.id } : {}) });
  const secret = (name: string): string => {
    const value = "Sx" + randomBytes(15).toString("hex");
    expect(home.cli(["secret", "put", a.id, name], { input: value }).code).toBe(0);
    return value;
  };
  return { home, a, secret, tenant: t };
}

async function agent(home: Home, token: string) {
  const { client } = await stdioClient(home, token);
  return {
    get: async (name: string) => (await client.callTool({ name: "vault_get", arguments: { name } })).structuredContent as { value: string; version: number },
    send: async (body: string) => text(await client.callTool({ name: "send_email", arguments: { to: ["bob@example.com"], subject: "hello", text: body } })),
    close: () => client.close(),
  };
}

/** A read of `api/key` v1, then v1 replaced in the vault and the journal deleted: guard_tampered. */
async function tampered(s: ReturnType<typeof setup>): Promise<{ value: string; other: string }> {
  const value = s.secret("api/key");
  const other = s.secret("other");
  const ag = await agent(s.home, s.a.token);
  try {
    await ag.get("api/key");
    await ag.get("other"); // still version 1 in the vault: rebuilt, never lost
    s.secret("api/key");
    await writeJournal(s.home, s.a.id, undefined);
    expect(await ag.send("nothing secret here")).toMatch(/^denied: guard_tampered: .*an admin resets the guard\.$/);
  } finally {
    await ag.close();
  }
  return { value, other };
}

const resets = (home: Home, id: string) => home.auditLog(id).filter((e) => e.tool === "guard_reset");

describe.each(backends)("resetting the exfiltration guard after guard_tampered (%s store)", (backend) => {
  it("acknowledges exactly the lost read in the log; outbound calls resume, a read the vault could rebuild is still guarded", { timeout: 180_000 }, async () => {
    const s = setup(backend);
    const { other } = await tampered(s);
    const r = s.home.json(["secret", "reset-guard", s.a.id]);
    expect(r.identityId).toBe(s.a.id);
    expect(r.acknowledged.map((x: any) => [x.name, x.version])).toEqual([["api/key", 1]]);
    const entries = resets(s.home, s.a.id);
    expect(entries.map((e) => [e.phase, e.decision])).toEqual([["intent", "allow"], ["result", "ok"]]);
    expect(entries[0].reads.map((x: any) => [x.name, x.version])).toEqual([["api/key", 1]]);
    expect(entries[1].intent).toBe(entries[0].seq);

    const ag = await agent(s.home, s.a.token);
    try {
      expect(await ag.send("nothing secret here")).toMatch(/written to the outbox/);
      expect(await ag.send(`the other one is ${other}`)).toMatch(/^denied: secret_exfiltration: /);
    } finally {
      await ag.close();
    }
    // Nothing left to acknowledge: a second reset is refused, audited, and changes nothing.
    const again = s.home.cli(["secret", "reset-guard", s.a.id]);
    expect(again.code).toBe(1);
    expect(again.stderr).toMatch(/nothing to reset/);
    expect(resets(s.home, s.a.id).map((e) => [e.phase, e.decision, e.reason])).toEqual([["intent", "allow", undefined], ["result", "ok", undefined], ["call", "deny", "not_tampered"]]);
    expect(s.home.cli(["audit", "verify", s.a.id]).code).toBe(0);
  });

  it("refused while the tamper is still there (the journal exists but cannot be opened), audited; once the record is removed, the reset goes through", { timeout: 180_000 }, async () => {
    const s = setup(backend);
    s.secret("api/key");
    const ag = await agent(s.home, s.a.token);
    try {
      await ag.get("api/key");
    } finally {
      await ag.close();
    }
    s.secret("api/key");
    const rec = await readJournal(s.home, s.a.id);
    await writeJournal(s.home, s.a.id, { ...rec, version: rec.version + 7 }); // sealed to another version: cannot be opened
    const r = s.home.cli(["secret", "reset-guard", s.a.id]);
    expect(r.code).toBe(1);
    expect(r.stderr).toMatch(/guard_unavailable|cannot be opened .*the tamper is still there/);
    expect(resets(s.home, s.a.id).map((e) => [e.phase, e.decision, e.reason])).toEqual([["call", "deny", "guard_unavailable"]]);
    expect(await readJournal(s.home, s.a.id)).toEqual({ ...rec, version: rec.version + 7 }); // left as evidence

    await writeJournal(s.home, s.a.id, undefined);
    expect(s.home.json(["secret", "reset-guard", s.a.id]).acknowledged).toHaveLength(1);
  });

  it("an identity whose guard lacks nothing: refused (not_tampered), audited, nothing acknowledged", { timeout: 120_000 }, async () => {
    const s = setup(backend);
    const r = s.home.cli(["secret", "reset-guard", s.a.id]);
    expect(r.code).toBe(1);
    expect(r.stderr).toMatch(/nothing to reset/);
    expect(resets(s.home, s.a.id).map((e) => [e.phase, e.decision, e.reason])).toEqual([["call", "deny", "not_tampered"]]);
  });

  it("admin tool reset_exfiltration_guard: a tenant admin resets its own identity's guard; another tenant's identity is not_found and untouched", { timeout: 180_000 }, async () => {
    const s = setup(backend, "acme");
    await tampered(s);
    const other = s.home.createTenant("globex");
    const admin = await stdioClient(s.home, other.adminToken);
    try {
      const r = await admin.client.callTool({ name: "reset_exfiltration_guard", arguments: { identityId: s.a.id } });
      expect(text(r)).toMatch(/^denied: not_found: /);
    } finally {
      await admin.client.close();
    }
    expect(resets(s.home, s.a.id)).toEqual([]);
    const own = await stdioClient(s.home, s.tenant!.adminToken);
    try {
      const r = await own.client.callTool({ name: "reset_exfiltration_guard", arguments: { identityId: s.a.id } });
      expect(r.isError, text(r)).toBeFalsy();
      expect((r.structuredContent as any).acknowledged.map((x: any) => x.name)).toEqual(["api/key"]);
    } finally {
      await own.client.close();
    }
    expect(resets(s.home, s.a.id).map((e) => [e.phase, e.decision])).toEqual([["intent", "allow"], ["result", "ok"]]);
  });
});
