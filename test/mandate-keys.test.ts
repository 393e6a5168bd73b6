/**
 * Payment mandate keys (SPEC §13, README "Payment mandates"): each `card` identity's P-256 payments
 * key and each tenant's provider key — published (JWKS, key directory) so that an outside library
 * (jose) imports and verifies them, sealed at rest, rotated with the identity's key, made for an
 * identity issued before mandates existed, and refused when the store swaps them. Both stores.
 */
import { readFileSync, readdirSync } from "node:fs";
import path from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { CompactSign, calculateJwkThumbprint, compactVerify, importJWK } from "jose";
import { backends, pgSkipNote } from "./support/backends.js";
import { cleanupHomes, cliAsync, makeHome, startHttpServer, withApp } from "./support/home.js";

afterAll(cleanupHomes);

const CARD_POLICY = { cardSpendingLimitCents: 10000 };

async function signs(jwk: Record<string, unknown>, sign: (m: Uint8Array) => Promise<string>): Promise<boolean> {
  const jws = await sign(new TextEncoder().encode("probe"));
  try {
    await compactVerify(jws, await importJWK(jwk as never, "ES256"));
    return true;
  } catch {
    return false;
  }
}

describe.each(backends)(`payment mandate keys (%s store)${pgSkipNote}`, (backend) => {
  it("a card identity's JWKS carries its ES256 payments key, which jose imports and which signs", { timeout: 120_000 }, async () => {
    const home = makeHome({}, { store: backend });
    const card = home.createIdentity({ name: "buyer", channels: "card", policy: CARD_POLICY });
    const mail = home.createIdentity({ name: "writer", channels: "email" });
    const jwks = home.json<{ keys: any[] }>(["keys", "export", card.id]);
    const ec = jwks.keys.filter((k) => k.kty === "EC");
    expect(ec).toHaveLength(1);
    const k = ec[0];
    expect(k).toMatchObject({ crv: "P-256", use: "sig", alg: "ES256" });
    expect(typeof k.nbf).toBe("number");
    expect(k.kid).toBe(await calculateJwkThumbprint({ kty: "EC", crv: "P-256", x: k.x, y: k.y }));
    expect(k.d).toBeUndefined();
    // The Ed25519 key is still there, unchanged in kind.
    expect(jwks.keys.filter((x) => x.kty === "OKP")).toHaveLength(1);
    // An identity without the card channel has no payments key.
    expect(home.json<{ keys: any[] }>(["keys", "export", mail.id]).keys.filter((x) => x.kty === "EC")).toHaveLength(0);
    // The key the JWKS names is the one sigil signs with.
    const ok = await withApp(home, async (app) => {
      const s = await app.payments.identitySigner(card.id);
      expect(s.keyId).toBe(k.kid);
      return signs(k, async (m) => new CompactSign(m).setProtectedHeader({ alg: "ES256" }).sign(s.privateKey));
    });
    expect(ok).toBe(true);
  });

  it("the key directory lists payments keys and each tenant's provider key; served over HTTP alike", { timeout: 120_000 }, async () => {
    const home = makeHome({}, { store: backend });
    const card = home.createIdentity({ name: "buyer", channels: "card", policy: CARD_POLICY });
    const t = home.createTenant("shop");
    const dir = home.json<any>(["keys", "directory"]);
    expect(dir.paymentKeys).toEqual([{ identity: card.id, keys: [expect.objectContaining({ kty: "EC", alg: "ES256" })] }]);
    expect(dir.keys.every((x: any) => x.kty === "OKP")).toBe(true); // request-signing keys only
    const tenants = new Map<string, any>(dir.tenants.map((x: any) => [x.tenant, x]));
    for (const id of ["default", t.id]) {
      const pk = tenants.get(id).providerKeys;
      expect(pk).toHaveLength(1);
      expect(pk[0]).toMatchObject({ kty: "EC", crv: "P-256", alg: "ES256", use: "sig" });
      expect(pk[0].kid).toBe(await calculateJwkThumbprint({ kty: "EC", crv: "P-256", x: pk[0].x, y: pk[0].y }));
    }
    expect(tenants.get("default").providerKeys[0].kid).not.toBe(tenants.get(t.id).providerKeys[0].kid);
    // The provider key signs; what it signs verifies under the published JWK.
    const ok = await withApp(home, async (app) => {
      const s = await app.payments.providerSigner("default");
      return signs(tenants.get("default").providerKeys[0], async (m) => new CompactSign(m).setProtectedHeader({ alg: "ES256" }).sign(s.privateKey));
    });
    expect(ok).toBe(true);
    const server = await startHttpServer(home);
    try {
      const served = (await (await fetch(new URL("/.well-known/http-message-signatures-directory", server.url))).json()) as any;
      expect(served.paymentKeys).toEqual(dir.paymentKeys);
      expect(served.tenants.find((x: any) => x.tenant === "default").providerKeys).toEqual(tenants.get("default").providerKeys);
      const jwks = (await (await fetch(new URL(`/identities/${card.id}/keys`, server.url))).json()) as any;
      expect(jwks.keys.filter((x: any) => x.kty === "EC")).toEqual(dir.paymentKeys[0].keys);
    } finally {
      await server.stop();
    }
  });

  it("rotate-key retires the payments key with its window and makes a new one", { timeout: 120_000 }, async () => {
    const home = makeHome({}, { store: backend });
    const card = home.createIdentity({ name: "buyer", channels: "card", policy: CARD_POLICY });
    const before = home.json<{ keys: any[] }>(["keys", "export", card.id]).keys.filter((k) => k.kty === "EC");
    home.json(["identity", "rotate-key", card.id]);
    const after = home.json<{ keys: any[] }>(["keys", "export", card.id]).keys.filter((k) => k.kty === "EC");
    expect(after).toHaveLength(2);
    expect(after[0].kid).toBe(before[0].kid);
    expect(typeof after[0].exp).toBe("number");
    expect(after[0].exp).toBeGreaterThanOrEqual(after[0].nbf);
    expect(after[1].exp).toBeUndefined();
    expect(after[1].kid).not.toBe(before[0].kid);
    const signer = await withApp(home, (app) => app.payments.identitySigner(card.id));
    expect(signer.keyId).toBe(after[1].kid);
  });

  it("an identity issued before mandates existed gets a payments key the first time it is published", { timeout: 120_000 }, async () => {
    const home = makeHome({}, { store: backend });
    const card = home.createIdentity({ name: "old", channels: "card", policy: CARD_POLICY });
    // What a record written before mandates looks like: no paymentKeys (MAC'd as sigil writes it).
    await withApp(home, (app) => app.store.updateIdentity(card.id, (r) => { const { paymentKeys: _p, ...rest } = r; return rest; }));
    expect(await withApp(home, async (app) => (await app.store.getIdentity(card.id))!.paymentKeys)).toBeUndefined();
    // Asynchronously: this process may still keep the lock it just used (a synchronous run would block its release).
    const exported = async (): Promise<any[]> => {
      const r = await cliAsync(home, ["keys", "export", card.id, "--json"]);
      expect(r.code, r.stderr).toBe(0);
      return (JSON.parse(r.stdout) as { keys: any[] }).keys.filter((k) => k.kty === "EC");
    };
    const ec = await exported();
    expect(ec).toHaveLength(1);
    // And it stays that key (made once).
    expect(await exported()).toEqual(ec);
  });

  it("private halves are sealed at rest, and a provider key moved to another tenant is refused", { timeout: 120_000 }, async () => {
    const home = makeHome({}, { store: backend });
    const card = home.createIdentity({ name: "buyer", channels: "card", policy: CARD_POLICY });
    const t = home.createTenant("shop");
    const { d, pd } = await withApp(home, async (app) => {
      const s = await app.payments.identitySigner(card.id);
      const p = await app.payments.providerSigner("default");
      await app.payments.providerKey(t.id);
      return { d: (s.privateKey.export({ format: "jwk" }) as any).d as string, pd: (p.privateKey.export({ format: "jwk" }) as any).d as string };
    });
    // Nothing the store holds carries the private scalar (in any common encoding).
    const dump = await withApp(home, async (app) => {
      const raw = (app.store as any).raw ?? app.store;
      return JSON.stringify([await raw.getIdentity(card.id), await raw.getProviderKey("default"), await raw.getProviderKey(t.id)]);
    });
    for (const secret of [d, pd]) {
      for (const enc of [secret, Buffer.from(secret, "base64url").toString("base64"), Buffer.from(secret, "base64url").toString("hex")]) expect(dump).not.toContain(enc);
    }
    if (backend === "file") {
      const files = (dir: string): string[] => readdirSync(dir, { withFileTypes: true }).flatMap((e) => (e.isDirectory() ? files(path.join(dir, e.name)) : e.isFile() ? [path.join(dir, e.name)] : []));
      for (const f of files(home.env.SIGIL_HOME!)) expect(readFileSync(f).toString("latin1")).not.toContain(d);
    }
    // A store writer copies tenant t's provider key record over default's: it does not open there.
    const err = await withApp(home, async (app) => {
      const raw = (app.store as any).raw;
      const other = await raw.getProviderKey(t.id);
      if (backend === "file") {
        const { writeFileSync } = await import("node:fs");
        writeFileSync(path.join(home.env.SIGIL_HOME!, "provider-keys", "default.json"), JSON.stringify(other));
      } else {
        const { pgQuery } = await import("./support/backends.js");
        await pgQuery(home.env.SIGIL_STORE_URL!, "UPDATE sigil_provider_keys SET record = $1 WHERE tenant_id = 'default'", [JSON.stringify(other)]);
      }
      return app.payments.providerSigner("default").then(() => undefined, (e: Error) => e.message);
    });
    expect(err).toMatch(/cannot be opened/);
  });
});
