/**
 * Delegation statements, checked the way an outside party would: fetched from the running HTTP
 * server (no token) and from `audit export`, and verified with node:crypto's Ed25519 and a
 * canonical-JSON written here — none of sigil's own verification code. Any changed field fails.
 */
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { createHash, createPublicKey, verify } from "node:crypto";
import { type Home, type HttpServer, type Identity, type Tenant, cleanupHomes, makeHome, startHttpServer } from "./support/home.js";
import { backends } from "./support/backends.js";
import { openApp } from "../src/app.js";
import { serveHttp } from "../src/server/http.js";
import { REFRESH_MS, publicRoutes } from "../src/server/public-routes.js";

afterAll(cleanupHomes);

/** RFC 8785 for what a statement holds (strings and arrays of strings): members sorted, no whitespace. */
function canonical(v: unknown): string {
  if (Array.isArray(v)) return `[${v.map(canonical).join(",")}]`;
  if (v !== null && typeof v === "object") {
    return `{${Object.keys(v)
      .sort()
      .map((k) => `${JSON.stringify(k)}:${canonical((v as Record<string, unknown>)[k])}`)
      .join(",")}}`;
  }
  return JSON.stringify(v);
}

/** The README's recipe: Ed25519 over "sigil-delegation-v1\n" + canonical JSON without `signature`. */
function independentlyVerifies(statement: Record<string, unknown>, tenantJwk: { x: string }): boolean {
  const { signature, ...body } = statement;
  const key = createPublicKey({ key: { kty: "OKP", crv: "Ed25519", x: tenantJwk.x }, format: "jwk" });
  return verify(null, Buffer.from("sigil-delegation-v1\n" + canonical(body), "utf8"), key, Buffer.from(String(signature), "base64url"));
}

const policyHash = (policy: unknown): string => createHash("sha256").update(canonical(policy)).digest("hex");

describe.each(backends)("delegation statements (%s store)", (backend) => {
  let home: Home;
  let server: HttpServer;
  let origin: string;
  let t: Tenant;
  let agent: Identity;
  const get = async (path: string): Promise<any> => {
    const r = await fetch(origin + path);
    expect(r.status, path).toBe(200);
    return r.json();
  };

  beforeAll(async () => {
    home = makeHome({}, { store: backend });
    t = home.createTenant("acme");
    agent = home.createIdentity({ name: "agent", channels: "email,sign", tenant: t.id, policy: { allowedDomains: ["example.com"] } });
    server = await startHttpServer(home);
    origin = new URL(server.url).origin;
  });
  afterAll(async () => server?.stop());

  it("GET /identities/<id>/delegation: the tenant key signs the identity's key, channels and policy hash; a plain Ed25519 library verifies it", async () => {
    const doc = await get(`/identities/${agent.id}/delegation`);
    expect(doc.identity).toBe(agent.id);
    expect(doc.tenant.id).toBe(t.id);
    expect(doc.tenant.keys).toHaveLength(1);
    const tenantKey = doc.tenant.keys[0];
    expect(tenantKey.kid).toBe(t.keyId);
    expect(Buffer.from(tenantKey.x, "base64url").toString("base64")).toBe(t.publicKey);
    // The tenant key is in the key directory too (its `tenants` member), not among the request-signing keys.
    const dir = await get("/.well-known/http-message-signatures-directory");
    expect(dir.tenants).toEqual(expect.arrayContaining([expect.objectContaining({ tenant: t.id, keys: [tenantKey] })]));
    expect(dir.keys.map((k: any) => k.kid)).not.toContain(t.keyId);

    const shown = home.json(["identity", "show", agent.id]);
    expect(doc.delegations).toHaveLength(1);
    const st = doc.delegations[0];
    expect(Object.keys(st).sort()).toEqual(["channels", "identity", "keyId", "notBefore", "policyHash", "signature", "tenant", "tenantKeyId"]);
    expect(st).toMatchObject({ tenant: t.id, tenantKeyId: t.keyId, identity: agent.id, keyId: agent.keyId, channels: ["email", "sign"], policyHash: policyHash(shown.policy) });
    expect(Date.parse(st.notBefore)).toBeLessThanOrEqual(Date.parse(shown.createdAt));
    expect(independentlyVerifies(st, tenantKey)).toBe(true);
    // The same statements travel in the audit bundle.
    const bundle = home.json(["audit", "export", agent.id]);
    expect(bundle.tenant).toEqual(doc.tenant);
    expect(bundle.delegations).toEqual(doc.delegations);
  });

  it("any tampered field, or another key, fails the independent check", async () => {
    const doc = await get(`/identities/${agent.id}/delegation`);
    const st = doc.delegations[0];
    const tenantKey = doc.tenant.keys[0];
    const other = home.createTenant("other");
    const tampered: Array<[string, Record<string, unknown>]> = [
      ["tenant", { ...st, tenant: other.id }],
      ["tenantKeyId", { ...st, tenantKeyId: other.keyId }],
      ["identity", { ...st, identity: "id_" + "0".repeat(20) }],
      ["keyId", { ...st, keyId: st.keyId.replace(/^./, (c: string) => (c === "A" ? "B" : "A")) }],
      ["channels (added)", { ...st, channels: [...st.channels, "card"] }],
      ["channels (reordered)", { ...st, channels: [...st.channels].reverse() }],
      ["policyHash", { ...st, policyHash: policyHash({ allowedDomains: ["*"] }) }],
      ["notBefore", { ...st, notBefore: "2000-01-01T00:00:00.000Z" }],
      ["notAfter (added)", { ...st, notAfter: "2100-01-01T00:00:00.000Z" }],
      ["signature", { ...st, signature: Buffer.from(Buffer.from(st.signature, "base64url").map((b, i) => (i === 0 ? b ^ 1 : b))).toString("base64url") }],
    ];
    for (const [what, forged] of tampered) expect([what, independentlyVerifies(forged, tenantKey)]).toEqual([what, false]);
    const otherKey = { x: Buffer.from(other.publicKey, "base64").toString("base64url") };
    expect(independentlyVerifies(st, otherKey)).toBe(false);
    expect(independentlyVerifies(st, tenantKey)).toBe(true);
  });

  it("a policy change, a key rotation and revocation each close the open statement (re-signed with notAfter) and the first two issue the next", async () => {
    const x = home.createIdentity({ name: "changing", channels: "email", tenant: t.id, policy: { allowedDomains: ["example.com"] } });
    home.json(["identity", "rotate-key", x.id]);
    const policy = { allowedDomains: ["example.org"], maxRecipients: 2 };
    const server2 = await startHttpServer(home); // a fresh process: no cached response of the route
    try {
      const admin = await import("./support/home.js").then((m) => m.httpClient(server2.url, t.adminToken));
      const upd = await admin.client.callTool({ name: "update_policy", arguments: { identityId: x.id, policy } });
      expect(upd.isError).toBeFalsy();
      await admin.client.close();
    } finally {
      await server2.stop();
    }
    const shown = home.json(["identity", "show", x.id]);
    let doc = home.json(["audit", "export", x.id]);
    const tenantKey = doc.tenant.keys[0];
    const ds = doc.delegations;
    expect(ds).toHaveLength(3);
    for (const d of ds) expect(independentlyVerifies(d, tenantKey)).toBe(true);
    const [first, second, third] = ds;
    expect(first.keyId).toBe(x.keyId);
    expect(second.keyId).toBe(shown.keyId);
    expect(third.keyId).toBe(shown.keyId);
    expect(first.policyHash).toBe(second.policyHash);
    expect(third.policyHash).toBe(policyHash(policy));
    // Consecutive, closed windows: each ends where the next begins; the last is open.
    expect(first.notAfter).toBe(second.notBefore);
    expect(second.notAfter).toBe(third.notBefore);
    expect(third.notAfter).toBeUndefined();
    // The retired key's statement ends at its retirement.
    expect(first.notAfter).toBe(shown.keys.find((k: any) => k.keyId === x.keyId).notAfter);

    const revoked = home.json(["identity", "revoke", x.id]);
    doc = home.json(["audit", "export", x.id]);
    expect(doc.delegations).toHaveLength(3);
    expect(doc.delegations[2].notAfter).toBe(revoked.revokedAt);
    expect(independentlyVerifies(doc.delegations[2], tenantKey)).toBe(true);
  });
});

describe.each(backends)("GET /identities/<id>/delegation answers from cached state (%s store)", (store) => {
  it("300 requests cost no registry read while the response is fresh, and one rebuild a second later", async () => {
    const home = makeHome({}, { store });
    const a = home.createIdentity({ channels: "email" });
    let clock = Date.now();
    const sigil = await openApp({ home: home.env.SIGIL_HOME!, env: home.env, now: () => clock });
    const { url, close } = await serveHttp(sigil, { host: "127.0.0.1", port: 0, publicRoutes: publicRoutes(sigil) });
    const origin = new URL(url).origin;
    const reads = { identity: 0, tenant: 0, writes: 0 };
    const s = sigil.store as any;
    for (const [name, key] of [["getIdentity", "identity"], ["getTenant", "tenant"], ["updateIdentity", "writes"]] as const) {
      const orig = s[name].bind(s);
      s[name] = (...args: unknown[]) => {
        (reads as any)[key]++;
        return orig(...args);
      };
    }
    try {
      const path = `/identities/${a.id}/delegation`;
      const first = await fetch(origin + path).then((r) => r.text());
      expect(JSON.parse(first).delegations).toHaveLength(1);
      const after = { ...reads };
      expect(after.writes).toBe(0); // issued at creation: nothing to write
      const answers = await Promise.all(Array.from({ length: 300 }, () => fetch(origin + path).then((r) => r.text())));
      expect(answers.every((b) => b === first)).toBe(true);
      expect(reads).toEqual(after);
      clock += REFRESH_MS + 1;
      expect(await fetch(origin + path).then((r) => r.text())).toBe(first);
      expect(reads.identity - after.identity).toBeGreaterThan(0);
      expect(reads.identity - after.identity).toBeLessThanOrEqual(3);
      expect(reads.writes).toBe(0);
      expect((await fetch(origin + "/identities/id_00000000000000000000/delegation")).status).toBe(404);
    } finally {
      await close();
      await sigil.close();
    }
  });
});
