/**
 * Tenants: a tenant admin token sees and manages only its tenant's identities; everything else is
 * `not_found`, word for word as for an id that does not exist. Driven through the built CLI and
 * the SDK MCP Client over Streamable HTTP, on both stores; a home made before tenants existed
 * upgrades in place.
 */
import { afterAll, describe, expect, it, vi } from "vitest";
import { readFileSync, readdirSync, rmSync, writeFileSync } from "node:fs";
import path from "node:path";
import { type Home, type Identity, type Tenant, cleanupHomes, httpClient, makeHome, startHttpServer, stdioClient, text } from "./support/home.js";
import { backends, pgQuery } from "./support/backends.js";
import { toPreviousFormat } from "./support/registry-forge.js";
import { MIGRATIONS } from "../store/postgres/migrations.js";

/** The tables of migrations 4 (tenants) and later: what a schema-3 database did not have. */
const TABLES_SINCE_TENANTS = MIGRATIONS.filter((m) => m.version >= 4).flatMap((m) => [...m.sql.matchAll(/CREATE TABLE (\w+)/g)].map((x) => x[1]!));

afterAll(cleanupHomes);
// Each case runs a dozen or more CLI processes; at CI's load (average 18) one took 70 s on PostgreSQL.
vi.setConfig({ testTimeout: 240_000 });

const ID_TOOLS: Array<[string, (id: string) => Record<string, unknown>]> = [
  ["get_identity", (id) => ({ identityId: id })],
  ["update_policy", (id) => ({ identityId: id, policy: { allowedDomains: ["*"] } })],
  ["rotate_key", (id) => ({ identityId: id })],
  ["rotate_token", (id) => ({ identityId: id })],
  ["revoke_identity", (id) => ({ identityId: id })],
  ["put_secret", (id) => ({ identityId: id, name: "k", value: "v" })],
  ["delete_secret", (id) => ({ identityId: id, name: "k" })],
  ["reset_exfiltration_guard", (id) => ({ identityId: id })],
  ["query_audit", (id) => ({ identityId: id })],
  ["verify_audit", (id) => ({ identityId: id })],
];

/** A missing id of the same shape and length, so the two answers can be compared word for word. */
const MISSING = "id_" + "0".repeat(20);

describe.each(backends)("tenants (%s store)", (backend) => {
  let home: Home;
  let a: Tenant;
  let b: Tenant;
  let a1: Identity;
  let b1: Identity;
  let d1: Identity;

  it("sigil init made tenant default; tenant create / list; identity create --tenant", () => {
    home = makeHome({}, { store: backend });
    const initial = home.json<any[]>(["tenant", "list"]);
    expect(initial.map((t) => t.id)).toEqual(["default"]);
    expect(initial[0]).toEqual({ id: "default", name: "default", keyId: expect.any(String), publicKey: expect.any(String), createdAt: expect.any(String) });
    a = home.createTenant("acme");
    b = home.createTenant("bravo");
    expect(a).toEqual({ id: expect.stringMatching(/^tn_[0-9a-f]{20}$/), name: "acme", adminToken: expect.stringMatching(/^sigil_admin_/), keyId: expect.any(String), publicKey: expect.any(String) });
    expect(b.id).not.toBe(a.id);
    const listed = home.json<any[]>(["tenant", "list"]);
    expect(listed.map((t) => t.id)).toEqual(["default", a.id, b.id]);
    expect(JSON.stringify(listed)).not.toContain(a.adminToken.slice("sigil_admin_".length));
    a1 = home.createIdentity({ name: "a1", channels: "email", tenant: a.id });
    b1 = home.createIdentity({ name: "b1", channels: "email", tenant: b.id });
    d1 = home.createIdentity({ name: "d1", channels: "email" });
    expect(home.json(["identity", "show", a1.id]).tenantId).toBe(a.id);
    expect(home.json(["identity", "show", b1.id]).tenantId).toBe(b.id);
    expect(home.json(["identity", "show", d1.id]).tenantId).toBe("default");
    // An unknown tenant is refused, and nothing is created.
    const before = home.json<any[]>(["identity", "list"]).length;
    const r = home.cli(["identity", "create", "--name", "x", "--channels", "email", "--tenant", "tn_" + "1".repeat(20), "--json"]);
    expect(r.code).toBe(1);
    expect(r.stderr).toMatch(/No tenant tn_1+\./);
    expect(home.json<any[]>(["identity", "list"])).toHaveLength(before);
  });

  it("a tenant admin's every identity tool answers not_found for another tenant's identity, word for word as for a missing id, and changes nothing", async () => {
    await home.cli(["secret", "put", b1.id, "k"], { input: "b-secret" });
    const before = home.json(["identity", "show", b1.id]);
    const logBefore = home.auditLog(b1.id).length;
    const server = await startHttpServer(home);
    try {
      const { client } = await httpClient(server.url, a.adminToken);
      for (const victim of [b1.id, d1.id]) {
        for (const [tool, args] of ID_TOOLS) {
          const foreign = await client.callTool({ name: tool, arguments: args(victim) });
          const missing = await client.callTool({ name: tool, arguments: args(MISSING) });
          expect([tool, foreign.isError, text(foreign).replace(victim, MISSING)]).toEqual([tool, true, text(missing)]);
          expect(text(missing)).toBe(`denied: not_found: No identity ${MISSING}.`);
          expect(foreign.structuredContent).toBeUndefined();
        }
      }
      await client.close();
      // B's identity is exactly as it was: same key, policy, token (its agent still works), secret, log.
      expect(home.json(["identity", "show", b1.id])).toEqual(before);
      expect(home.auditLog(b1.id)).toHaveLength(logBefore);
      const agent = await httpClient(server.url, b1.token);
      expect((await agent.client.callTool({ name: "whoami", arguments: {} })).isError).toBeFalsy();
      await agent.client.close();
    } finally {
      await server.stop();
    }
  });

  it("over stdio too: a tenant admin session sees its own identity and gets not_found for another tenant's", async () => {
    const { client } = await stdioClient(home, b.adminToken);
    try {
      const listed = (await client.callTool({ name: "list_identities", arguments: {} })).structuredContent as any;
      expect(listed.identities.map((i: any) => i.id)).toEqual([b1.id]);
      expect(text(await client.callTool({ name: "revoke_identity", arguments: { identityId: a1.id } }))).toBe(`denied: not_found: No identity ${a1.id}.`);
      expect((await client.listTools()).tools.map((t) => t.name)).not.toContain("create_tenant");
    } finally {
      await client.close();
    }
    expect(home.json(["identity", "show", a1.id]).revokedAt).toBeUndefined();
  });

  it("a tenant admin lists, verifies and creates only in its tenant, and is neither shown nor allowed create_tenant", async () => {
    const server = await startHttpServer(home);
    try {
      const { client } = await httpClient(server.url, a.adminToken);
      const names = (await client.listTools()).tools.map((t) => t.name);
      expect(names).toContain("list_tenants");
      expect(names).not.toContain("create_tenant");
      const refused = await client.callTool({ name: "create_tenant", arguments: { name: "sneaky" } });
      expect(text(refused)).toBe('denied: tool_not_available: there is no admin tool "create_tenant".');

      const listed = (await client.callTool({ name: "list_identities", arguments: {} })).structuredContent as any;
      expect(listed.identities.map((i: any) => i.id)).toEqual([a1.id]);
      const tenants = (await client.callTool({ name: "list_tenants", arguments: {} })).structuredContent as any;
      expect(tenants.tenants.map((t: any) => t.id)).toEqual([a.id]);
      const verified = (await client.callTool({ name: "verify_audit", arguments: {} })).structuredContent as any;
      expect(verified.identities.map((i: any) => i.id)).toEqual([a1.id]);

      const made = (await client.callTool({ name: "create_identity", arguments: { name: "a2", channels: ["email"] } })).structuredContent as any;
      expect(home.json(["identity", "show", made.id]).tenantId).toBe(a.id);
      const elsewhere = await client.callTool({ name: "create_identity", arguments: { name: "a3", channels: ["email"], tenantId: b.id } });
      expect(text(elsewhere)).toBe(`denied: not_found: No tenant ${b.id}.`);
      // Its own identities it manages as the root admin would.
      const rotated = await client.callTool({ name: "rotate_key", arguments: { identityId: a1.id } });
      expect(rotated.isError).toBeFalsy();
      const shown = (await client.callTool({ name: "get_identity", arguments: { identityId: a1.id } })).structuredContent as any;
      expect(shown.keyId).toBe((rotated.structuredContent as any).keyId);
      await client.close();

      // The root admin sees every tenant and every identity, and may create tenants.
      const root = await httpClient(server.url, home.adminToken);
      expect((await root.client.listTools()).tools.map((t) => t.name)).toContain("create_tenant");
      const all = (await root.client.callTool({ name: "list_identities", arguments: {} })).structuredContent as any;
      expect(all.identities.map((i: any) => i.id)).toEqual(expect.arrayContaining([a1.id, b1.id, d1.id, made.id]));
      const c = (await root.client.callTool({ name: "create_tenant", arguments: { name: "charlie" } })).structuredContent as any;
      expect(c.adminToken).toMatch(/^sigil_admin_/);
      await root.client.close();
      const cAdmin = await httpClient(server.url, c.adminToken);
      expect(((await cAdmin.client.callTool({ name: "list_identities", arguments: {} })).structuredContent as any).identities).toEqual([]);
      await cAdmin.client.close();
    } finally {
      await server.stop();
    }
  });
});

describe.each(backends)("a forged tenantId in the store (%s store)", (backend) => {
  it("moves nothing: an identity whose record is edited to name tenant A (even with A's statements copied in) stays invisible to A's admin", async () => {
    const home = makeHome({}, { store: backend });
    const a = home.createTenant("acme");
    const b = home.createTenant("bravo");
    const mine = home.createIdentity({ name: "a1", channels: "email", tenant: a.id });
    const victim = home.createIdentity({ name: "b1", channels: "email", tenant: b.id });
    const legacy = home.createIdentity({ name: "d1", channels: "email" });
    const donor = home.json(["audit", "export", mine.id]).delegations;
    expect(donor).toHaveLength(1);
    const forge = async (id: string, patch: Record<string, unknown>): Promise<void> => {
      if (backend === "file") {
        const file = path.join(home.env.SIGIL_HOME!, "identities", `${id}.json`);
        writeFileSync(file, JSON.stringify({ ...JSON.parse(readFileSync(file, "utf8")), ...patch }));
      } else {
        await pgQuery(home.env.SIGIL_STORE_URL!, "UPDATE sigil_identities SET record = record || $2::jsonb WHERE id = $1", [id, JSON.stringify(patch)]);
      }
    };
    await forge(victim.id, { tenantId: a.id });
    await forge(legacy.id, { tenantId: a.id, delegations: donor });
    const server = await startHttpServer(home);
    try {
      const { client } = await httpClient(server.url, a.adminToken);
      for (const id of [victim.id, legacy.id]) {
        for (const [tool, args] of ID_TOOLS) {
          const r = await client.callTool({ name: tool, arguments: args(id) });
          expect([tool, text(r)]).toEqual([tool, `denied: not_found: No identity ${id}.`]);
        }
      }
      const listed = (await client.callTool({ name: "list_identities", arguments: {} })).structuredContent as any;
      expect(listed.identities.map((i: any) => i.id)).toEqual([mine.id]);
      // A's own identity is still A's.
      expect((await client.callTool({ name: "get_identity", arguments: { identityId: mine.id } })).isError).toBeFalsy();
      await client.close();
    } finally {
      await server.stop();
    }
  });
});

describe.each(backends)("a home made before tenants existed (%s store)", (backend) => {
  it("upgrades in place: every identity lands in tenant default, which gets a key; nothing else changes", async () => {
    const home = makeHome({}, { store: backend });
    const x = home.createIdentity({ name: "old", channels: "email" });
    const dir = home.env.SIGIL_HOME!;
    // Make it what an older sigil wrote: no tenants at all, identities naming none.
    if (backend === "file") {
      rmSync(path.join(dir, "tenants"), { recursive: true });
      rmSync(path.join(dir, "tenant-tokens"), { recursive: true });
      for (const f of readdirSync(path.join(dir, "identities"))) {
        const file = path.join(dir, "identities", f);
        const rec = JSON.parse(readFileSync(file, "utf8"));
        delete rec.tenantId;
        writeFileSync(file, JSON.stringify(rec));
      }
    } else {
      const url = home.env.SIGIL_STORE_URL!;
      // Schema version 3, as before tenants: every table a migration from 4 on creates is dropped.
      await pgQuery(url, `DROP TABLE ${TABLES_SINCE_TENANTS.join(", ")}`);
      await pgQuery(url, "DELETE FROM sigil_schema WHERE version >= 4");
      await pgQuery(url, "UPDATE sigil_identities SET record = record - 'tenantId'");
    }
    // An older sigil also kept plain token hashes and no record MACs (schema 1).
    await toPreviousFormat(home, [x]);
    const logBefore = home.auditLog(x.id);
    expect(home.json(["identity", "show", x.id]).tenantId).toBe("default");
    const tenants = home.json<any[]>(["tenant", "list"]);
    expect(tenants.map((t) => t.id)).toEqual(["default"]);
    expect(tenants[0].publicKey).toMatch(/^[A-Za-z0-9+/]{43}=$/);
    // The upgrade is made once: the key stays the same on the next open.
    expect(home.json<any[]>(["tenant", "list"])[0].keyId).toBe(tenants[0].keyId);
    // New tenants and identities work on the upgraded home; the old identity's log is untouched.
    const t = home.createTenant("new");
    expect(home.createIdentity({ name: "n", channels: "email", tenant: t.id }).id).toMatch(/^id_/);
    expect(home.auditLog(x.id)).toEqual(logBefore);
    expect(home.cli(["audit", "verify", x.id]).code).toBe(0);
  });
});
