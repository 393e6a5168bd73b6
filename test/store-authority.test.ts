/**
 * The store is not an authority (README "Guarantees", SECURITY.md): whoever can write the store —
 * the home's files or the PostgreSQL tables — but lacks the master key can deny service, never
 * grant authority. Each attack below writes a forged record straight into the files or tables
 * (test/support/registry-forge.ts), never through sigil, then tries to use it; each is refused and
 * the refusal is in the identity's own log (the registry metadata has no log: stderr). Rollback to
 * an older, validly MAC'd record is caught against the identity's signed log (revocation, token
 * rotation, an older policy version). Also: a home in the
 * previous format (plain SHA-256 token hashes, no MACs) upgrades in place and its tokens still work.
 */
import { readFileSync } from "node:fs";
import path from "node:path";
import { afterAll, afterEach, describe, expect, it, vi } from "vitest";
import { cleanupHomes, makeHome, stdioClient, text, withApp, type Home } from "./support/home.js";
import { backends, pgQuery } from "./support/backends.js";
import { masterOf, plainTokenHash, readMeta, readRecord, readTenant, storedTokenHash, toPreviousFormat, writeMeta, writeRecord, writeTenant } from "./support/registry-forge.js";
import { RecordMac } from "../src/identity/record-mac.js";
import { SCHEMA_VERSION, sealMeta } from "../src/identity/home.js";
import type { App } from "../src/app.js";
import { callAgentTool, type AgentSession } from "../src/pipeline/agent-call.js";
import { sendEmail } from "../tools/send-email.js";

afterAll(cleanupHomes);
afterEach(() => vi.restoreAllMocks());

const ATTACKER = "sigil_agent_" + "A".repeat(43);
const ATTACKER_ADMIN = "sigil_admin_" + "A".repeat(43);
const NARROW = { allowedDomains: ["example.com"] };
const WIDE = { allowedDomains: ["*"] };


/** The identity's log as the store holds it (read directly: `audit export` needs a sound record). */
async function log(home: Home, id: string): Promise<any[]> {
  const lines =
    home.store === "file"
      ? readFileSync(path.join(home.env.SIGIL_HOME!, "audit", `${id}.jsonl`), "utf8").trim().split("\n")
      : (await pgQuery(home.env.SIGIL_STORE_URL!, "SELECT line FROM sigil_audit_entries WHERE identity_id = $1 ORDER BY seq", [id])).map((r) => r.line);
  return lines.map((l) => JSON.parse(l));
}

const tamperEntries = async (home: Home, id: string) => (await log(home, id)).filter((e) => e.tool === "record_check" && e.decision === "deny" && e.reason === "record_tampered");

/** One send_email through the agent pipeline, for a session opened with `token` (as the transports do). */
async function sendAs(app: App, id: string, token: string, to = "someone@evil.example"): Promise<string> {
  const session: AgentSession = { deps: app.agent, identityId: id, tokenHash: app.auth.hash(token), sessionId: "s_forge", memory: { secretsRead: new Set() } };
  return text(await callAgentTool(session, sendEmail, "send_email", { to: [to], subject: "hi", text: "hello" }, undefined));
}

describe.each(backends)("the store is not an authority (%s store)", (backend) => {
  it("a token hash replaced by the hash of an attacker's token names no one; the record is refused and audited", async () => {
    const home = makeHome({}, { store: backend });
    const a = home.createIdentity({ channels: "email", policy: NARROW });
    const rec = await readRecord(home, a.id);
    await writeRecord(home, a.id, { ...rec, tokenHash: plainTokenHash(ATTACKER) });
    await withApp(home, async (app) => {
      expect(await app.auth.principal(ATTACKER)).toBeUndefined();
      expect(await app.auth.principal(a.token)).toBeUndefined(); // denial of service only
      await expect(app.identities.show(a.id)).rejects.toMatchObject({ code: "record_tampered" });
    });
    expect(await tamperEntries(home, a.id)).toHaveLength(1);
    expect(home.cli(["audit", "verify", a.id]).code).toBe(0); // the log itself is sound
  });

  it("a widened policy is refused mid-session: the running server answers denied: record_tampered, sends nothing, and logs it", async () => {
    const home = makeHome({}, { store: backend });
    const a = home.createIdentity({ channels: "email", policy: NARROW });
    const { client } = await stdioClient(home, a.token);
    try {
      const rec = await readRecord(home, a.id);
      await writeRecord(home, a.id, { ...rec, policy: WIDE });
      const r = await client.callTool({ name: "send_email", arguments: { to: ["x@evil.example"], subject: "s", text: "t" } });
      expect(text(r)).toMatch(/^denied: record_tampered: /);
    } finally {
      await client.close();
    }
    const entries = await log(home, a.id);
    expect(entries.filter((e) => e.tool === "send_email" && e.decision === "deny" && e.reason === "record_tampered")).toHaveLength(1);
    expect(entries.some((e) => e.tool === "send_email" && e.decision === "allow")).toBe(false);
    expect(await tamperEntries(home, a.id)).toHaveLength(1);
  });

  it("un-revocation (revokedAt removed), an added channel, a flipped key status, a deleted MAC: each record is refused and audited", async () => {
    const home = makeHome({}, { store: backend });
    const forgeries: Record<string, (r: any) => any> = {
      unrevoked: ({ revokedAt: _r, ...r }) => r,
      channel: (r) => ({ ...r, channels: [...r.channels, "vault"] }),
      keyStatus: (r) => ({ ...r, keys: r.keys.map((k: any) => ({ ...k, status: k.status === "active" ? "retired" : "active" })) }),
      macDeleted: ({ mac: _m, ...r }) => ({ ...r, policy: WIDE }),
    };
    const ids: Record<string, { id: string; token: string }> = {};
    for (const name of Object.keys(forgeries)) ids[name] = home.createIdentity({ name, channels: "email", policy: NARROW });
    home.json(["identity", "revoke", ids.unrevoked!.id]);
    home.json(["identity", "rotate-key", ids.keyStatus!.id]);
    for (const [name, forge] of Object.entries(forgeries)) {
      const id = ids[name]!.id;
      await writeRecord(home, id, forge(await readRecord(home, id)));
    }
    await withApp(home, async (app) => {
      for (const [name, { id, token }] of Object.entries(ids)) {
        expect(await app.auth.principal(token), name).toBeUndefined();
        await expect(app.identities.show(id), name).rejects.toMatchObject({ code: "record_tampered" });
        expect((await app.identities.list()).map((v) => v.id), name).not.toContain(id);
      }
    });
    for (const [name, { id }] of Object.entries(ids)) expect((await tamperEntries(home, id)).length, name).toBeGreaterThanOrEqual(1);
  });

  it("a MAC copied from another identity's record does not carry over: the record is bound to its id", async () => {
    const home = makeHome({}, { store: backend });
    const a = home.createIdentity({ name: "narrow", channels: "email", policy: NARROW });
    const b = home.createIdentity({ name: "wide", channels: "email,vault", policy: WIDE });
    const recA = await readRecord(home, a.id);
    const recB = await readRecord(home, b.id);
    // b's authority (policy, channels) and b's MAC on a's record. (Taking b's keys too would only
    // deny service: a's log names a's key, so nothing could be signed for a — not even the refusal.)
    await writeRecord(home, a.id, { ...recA, policy: recB.policy, channels: recB.channels, mac: recB.mac });
    await withApp(home, async (app) => {
      expect(await app.auth.principal(a.token)).toBeUndefined();
      expect(await sendAs(app, a.id, a.token)).toMatch(/^denied: record_tampered: /);
      expect((await app.auth.principal(b.token))?.kind).toBe("agent"); // b is untouched
    });
    expect((await tamperEntries(home, a.id)).length).toBeGreaterThanOrEqual(1);
  });

  it("a swapped admin token hash is refused (stderr, since the registry has no log), and so is a downgrade to the old format", async () => {
    const home = makeHome({}, { store: backend });
    const meta = await readMeta(home);
    await writeMeta(home, { ...meta, adminTokenHash: plainTokenHash(ATTACKER_ADMIN) });
    const stderr = vi.spyOn(process.stderr, "write").mockImplementation(() => true);
    await withApp(home, async (app) => {
      expect(await app.auth.principal(ATTACKER_ADMIN)).toBeUndefined();
      expect(await app.auth.principal(home.adminToken)).toBeUndefined();
    });
    expect(stderr.mock.calls.map((c) => String(c[0])).join("")).toMatch(/record_tampered: the registry metadata/);
    stderr.mockRestore();
    // The whole metadata as the previous format had it (schema 1, no MAC, a plain hash of the
    // attacker's admin token): sigil refuses to start rather than "upgrade" it into authority.
    await writeMeta(home, { format: "sigil-home", schemaVersion: 1, createdAt: meta.createdAt, adminTokenHash: plainTokenHash(ATTACKER_ADMIN), masterKeyCheck: meta.masterKeyCheck });
    const r = home.cli(["identity", "list", "--json"]);
    expect(r.code).not.toBe(0);
    expect(r.stderr).toMatch(/master key does not belong/);
    expect((await readMeta(home)).schemaVersion).toBe(1); // not upgraded
  });

  it("rollback to an older, validly MAC'd record is caught against the signed log: un-revocation, an older token, an older policy", async () => {
    const home = makeHome({}, { store: backend });
    const revoked = home.createIdentity({ name: "revoked", channels: "email", policy: WIDE });
    const rotated = home.createIdentity({ name: "rotated", channels: "email", policy: WIDE });
    const narrowed = home.createIdentity({ name: "narrowed", channels: "email", policy: WIDE });
    const before = {
      revoked: await readRecord(home, revoked.id),
      rotated: await readRecord(home, rotated.id),
      narrowed: await readRecord(home, narrowed.id),
    };
    home.json(["identity", "revoke", revoked.id]);
    home.json(["identity", "rotate-token", rotated.id]);
    await withApp(home, (app) => app.identities.updatePolicy(narrowed.id, NARROW));
    await writeRecord(home, revoked.id, before.revoked);
    await writeRecord(home, rotated.id, before.rotated);
    await writeRecord(home, narrowed.id, before.narrowed); // the wide policy, version 1, validly MAC'd
    await withApp(home, async (app) => {
      // Each MAC checks: only the log can tell these records are not the latest.
      for (const who of [revoked, rotated, narrowed]) expect(await app.auth.principal(who.token)).toMatchObject({ identityId: who.id });
      expect.soft(await sendAs(app, revoked.id, revoked.token)).toMatch(/^denied: revoked: /);
      expect.soft(await sendAs(app, rotated.id, rotated.token)).toMatch(/^denied: record_stale: /);
      expect.soft(await sendAs(app, narrowed.id, narrowed.token)).toMatch(/^denied: record_stale: .*older policy/);
    });
    for (const [who, reason] of [[revoked, "revoked"], [rotated, "record_stale"], [narrowed, "record_stale"]] as const) {
      const entries = (await log(home, who.id)).filter((e) => e.tool === "send_email");
      expect(entries.map((e) => [e.decision, e.reason])).toEqual([["deny", reason]]);
    }
  });

  it("a home of the previous format (plain SHA-256 token hashes, no MACs) upgrades in place; its agent and admin tokens still work", async () => {
    const home = makeHome({}, { store: backend });
    const a = home.createIdentity({ channels: "email", policy: NARROW });
    const b = home.createIdentity({ channels: "email", policy: NARROW });
    home.json(["identity", "revoke", b.id]);
    await toPreviousFormat(home, [a, b]);
    const master = masterOf(home);

    expect(home.json<any[]>(["identity", "list"]).map((v) => v.id).sort()).toEqual([a.id, b.id].sort()); // opens and upgrades
    const upgraded = await readMeta(home);
    expect(upgraded.schemaVersion).toBe(SCHEMA_VERSION);
    expect(upgraded.mac).toMatch(/^rmac1:/);
    expect(upgraded.masterKeyCheck).not.toBe(master.checkValue()); // the old format's check value is gone
    expect(upgraded.adminTokenHash).toBe(storedTokenHash(home, home.adminToken));
    for (const who of [a, b]) {
      const rec = await readRecord(home, who.id);
      expect(rec.tokenHash).toBe(storedTokenHash(home, who.token));
      expect(rec.mac).toMatch(/^rmac1:/);
    }
    await withApp(home, async (app) => {
      expect(await app.auth.principal(home.adminToken)).toMatchObject({ kind: "admin" });
      expect(await app.auth.principal(a.token)).toMatchObject({ kind: "agent", identityId: a.id });
      expect(await app.auth.principal(b.token)).toBeUndefined(); // still revoked
      expect(await sendAs(app, a.id, a.token, "someone@example.com")).toMatch(/written to the outbox/);
    });
    expect(await tamperEntries(home, a.id)).toHaveLength(0);
  });

  it("a tenant admin token hash copied into another tenant's record names no one: tenant records are MAC'd, a forgery is refused and reported", async () => {
    const home = makeHome({}, { store: backend });
    const a = home.createTenant("alpha");
    const b = home.createTenant("beta");
    const b1 = home.createIdentity({ name: "b1", channels: "email", tenant: b.id });
    const recA = await readTenant(home, a.id);
    const recB = await readTenant(home, b.id);
    expect(recA.mac).toMatch(/^rmac1:/);
    // The attacker holds alpha's admin token and writes its stored hash into beta's record (and index).
    await writeTenant(home, b.id, { ...recB, adminTokenHash: recA.adminTokenHash });
    // Or strips a record's MAC, as if it were from before tenant MACs.
    const c = home.createTenant("gamma");
    const { mac: _m, ...recC } = await readTenant(home, c.id);
    await writeTenant(home, c.id, { ...recC, name: "renamed" });
    const stderr = vi.spyOn(process.stderr, "write").mockImplementation(() => true);
    await withApp(home, async (app) => {
      expect(await app.auth.principal(a.adminToken)).toBeUndefined(); // never beta's admin
      expect(await app.auth.principal(b.adminToken)).toBeUndefined(); // denial of service only
      expect(await app.auth.principal(c.adminToken)).toBeUndefined();
      expect((await app.tenants.list()).map((t) => t.id).sort()).toEqual(["default", a.id].sort());
      await expect(app.identities.create({ name: "x", channels: ["email"], tenantId: b.id })).rejects.toMatchObject({ code: "record_tampered" });
    });
    expect(stderr.mock.calls.map((call) => String(call[0])).join("")).toMatch(new RegExp(`record_tampered: the registry record of tenant ${b.id}`));
    stderr.mockRestore();
    // Another process (the CLI) refuses it too, and beta's identity stays beta's.
    expect(home.json(["identity", "show", b1.id]).tenantId).toBe(b.id);
  });

  it("a home whose tenant records carry no MAC (schema 2) upgrades in place: each is sealed as found and its admin token still works", async () => {
    const home = makeHome({}, { store: backend });
    const a = home.createTenant("alpha");
    const master = masterOf(home);
    for (const id of ["default", a.id]) {
      const { mac: _m, ...rec } = await readTenant(home, id);
      await writeTenant(home, id, rec);
    }
    const { mac: _mm, ...meta } = await readMeta(home);
    await writeMeta(home, sealMeta(RecordMac.from(master), { ...meta, schemaVersion: 2 }));
    expect(home.json<any[]>(["tenant", "list"]).map((t) => t.id).sort()).toEqual(["default", a.id].sort()); // opens and upgrades
    expect((await readMeta(home)).schemaVersion).toBe(SCHEMA_VERSION);
    for (const id of ["default", a.id]) expect((await readTenant(home, id)).mac).toMatch(/^rmac1:/);
    await withApp(home, async (app) => {
      expect(await app.auth.principal(a.adminToken)).toMatchObject({ kind: "admin", tenantId: a.id });
    });
  });
});
