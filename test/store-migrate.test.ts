/**
 * `sigil store migrate --to postgres://…`: an embedded home copied into PostgreSQL keeps every
 * audit chain intact (verified there), its tokens, keys, sealed secrets and payment mandates; the chains continue
 * where they left off; a damaged home or a non-empty target is refused with nothing copied.
 */
import { afterAll, describe, expect, it, vi } from "vitest";
import { readFileSync, writeFileSync } from "node:fs";
import path from "node:path";
import { createHash } from "node:crypto";
import { cleanupHomes, makeHome, stdioClient, text, withApp } from "./support/home.js";
import { verifyChain } from "./support/ap2.js";
import { freshDatabaseUrl, pgQuery, pgSkipNote, pgUrl } from "./support/backends.js";
// Each case runs a dozen CLI processes against two stores; alone it takes ~50 s on a loaded machine.
vi.setConfig({ testTimeout: 240_000 });

afterAll(cleanupHomes);

const PAYEE = { id: "merchant_1", name: "Demo Merchant", website: "https://demo-merchant.example" };

describe.skipIf(!pgUrl)(`sigil store migrate${pgSkipNote}`, () => {
  it("copies a home into PostgreSQL: audit verify passes there with the same entries; tokens, rotated keys and secrets work; chains continue", async () => {
    const home = makeHome(); // the embedded home
    const a = home.createIdentity({ name: "reader", channels: "vault", policy: { allowedSecrets: ["crm/*"] } });
    const b = home.createIdentity({ name: "other", channels: "" });
    expect(home.cli(["secret", "put", a.id, "crm/key"], { input: "value-1" }).code).toBe(0);
    expect(home.cli(["secret", "put", a.id, "crm/key"], { input: "value-2" }).code).toBe(0);
    const s = await stdioClient(home, a.token);
    expect((await s.client.callTool({ name: "whoami", arguments: {} })).isError).toBeFalsy();
    await s.client.close();
    home.json(["identity", "rotate-key", b.id]);
    const fileEntries = { a: home.auditLog(a.id), b: home.auditLog(b.id) };

    const url = await freshDatabaseUrl();
    const r = home.json(["store", "migrate", "--to", url]);
    expect(r).toMatchObject({ identities: 2, secrets: 1, entries: fileEntries.a.length + fileEntries.b.length, verified: true });

    const pg = { env: { SIGIL_STORE_URL: url } };
    const v = home.json(["audit", "verify"], pg);
    expect(v.ok).toBe(true);
    expect(Object.fromEntries(v.identities.map((i: any) => [i.id, i.entries]))).toEqual({ [a.id]: fileEntries.a.length, [b.id]: fileEntries.b.length });
    // byte for byte the same entries, and the same public key history
    expect(home.json(["audit", "export", a.id], pg)).toMatchObject({ entries: fileEntries.a });
    expect(home.json(["audit", "export", b.id], pg).keys).toEqual(home.json(["audit", "export", b.id]).keys);
    expect(home.json(["identity", "list"], pg)).toEqual(home.json(["identity", "list"]));

    // Served from PostgreSQL: the old token works, the sealed secret opens, the chain continues.
    const p = await stdioClient(home, a.token, pg);
    const got = await p.client.callTool({ name: "vault_get", arguments: { name: "crm/key" } });
    expect(got.structuredContent).toMatchObject({ value: "value-2", version: 2 });
    await p.client.close();
    const after = home.json(["audit", "export", a.id], pg).entries;
    expect(after.slice(0, fileEntries.a.length)).toEqual(fileEntries.a);
    expect(after[fileEntries.a.length]).toMatchObject({ seq: fileEntries.a.length + 1, prev: fileEntries.a.at(-1).hash, tool: "vault_get" });
    expect((got.structuredContent as any).receipt.seq).toBe(after.at(-1).seq);
    expect(home.json(["audit", "verify"], pg).ok).toBe(true);
    expect(await pgQuery(url, "SELECT seq::int AS seq FROM sigil_chain_heads WHERE identity_id = $1", [b.id])).toEqual([{ seq: fileEntries.b.length }]);

    // Never merged into a store that has data.
    const again = home.cli(["store", "migrate", "--to", url]);
    expect(again.code).toBe(1);
    expect(again.stderr).toMatch(/already holds sigil data; migrate only into an empty database; nothing was copied/);
  });

  it("copies OAuth clients and grants: access and refresh tokens issued by the home work from PostgreSQL, a revoked grant stays revoked", async () => {
    const home = makeHome();
    const a = home.createIdentity({ name: "oauth-user", channels: "" });
    const resource = "http://127.0.0.1:7410/mcp";
    const redirect = "http://127.0.0.1:49152/callback";
    const made = await withApp(home, async (app) => {
      const client = await app.oauth.clients.register({ client_name: "Copied client", redirect_uris: [redirect], token_endpoint_auth_method: "none", grant_types: ["authorization_code", "refresh_token"], response_types: ["code"] });
      const grant = (challenge: string) => app.oauth.grants.grant({ identityId: a.id, tenantId: "default", clientId: client.client_id, clientName: "Copied client", redirectUri: redirect, resource, challenge, grantedBy: "test" });
      const live = await grant("c".repeat(43));
      const first = await app.oauth.grants.exchange(client.client_id, live.code, redirect, resource);
      const second = await app.oauth.grants.refresh(client.client_id, first.refresh_token, resource); // generation 2, one refresh token spent
      const gone = await grant("d".repeat(43));
      const goneTokens = await app.oauth.grants.exchange(client.client_id, gone.code, redirect, resource);
      await app.oauth.grants.revoke(gone.grantId, "admin");
      return { clientId: client.client_id, live: live.grantId, tokens: second, spent: first.refresh_token, gone: gone.grantId, goneAccess: goneTokens.access_token };
    });

    const url = await freshDatabaseUrl();
    const r = home.json(["store", "migrate", "--to", url]);
    expect(r).toMatchObject({ oauthClients: 1, oauthGrants: 2, verified: true });

    const { openApp } = await import("../src/app.js");
    const pg = await openApp({ home: home.env.SIGIL_HOME!, env: { ...home.env, SIGIL_STORE_URL: url } });
    try {
      expect(pg.store.kind).toBe("postgres");
      expect((await pg.oauth.clients.get(made.clientId))?.client_name).toBe("Copied client");
      const access = await pg.oauth.grants.verifyAccess(made.tokens.access_token);
      expect(access).toMatchObject({ grant: { id: made.live, generation: 2 }, identity: { id: a.id } });
      await expect(pg.oauth.grants.verifyAccess(made.goneAccess)).rejects.toThrow(/not valid/);
      expect((await pg.oauth.grants.read(made.gone))?.revokedAt).toBeDefined();
      expect(await pg.oauth.grants.live(made.gone)).toBe(false);
      // The refresh token rotates in PostgreSQL, recorded in the copied chain.
      const next = await pg.oauth.grants.refresh(made.clientId, made.tokens.refresh_token, resource);
      expect((await pg.oauth.grants.verifyAccess(next.access_token)).grant.generation).toBe(3);
      // A refresh token the home had already rotated out is still recognised: presenting it revokes the grant.
      await expect(pg.oauth.grants.refresh(made.clientId, made.spent, resource)).rejects.toThrow(/not valid/);
      await expect(pg.oauth.grants.verifyAccess(next.access_token)).rejects.toThrow(/not valid/);
      expect((await pg.oauth.grants.read(made.live))?.revokedReason).toBe("refresh_reuse");
    } finally {
      await pg.close();
    }
    expect(home.json(["audit", "verify"], { env: { SIGIL_STORE_URL: url } }).ok).toBe(true);
  });

  it("carries payment mandates: the payments key, the tenant's provider key and the issued mandates; a mandate issued in the file home is presented from PostgreSQL", async () => {
    const home = makeHome();
    const a = home.createIdentity({ name: "buyer", channels: "card", policy: { cardSpendingLimitCents: 50_000, cardPerChargeLimitCents: 20_000 } });
    const s = await stdioClient(home, a.token);
    const issued = await s.client.callTool({ name: "create_payment_mandate", arguments: { payee: PAYEE, currency: "USD", maxAmountCents: 5000 } });
    await s.client.close();
    expect(issued.isError, text(issued)).toBeFalsy();
    const m = issued.structuredContent as any;
    const providerKeys = (h: { env?: NodeJS.ProcessEnv }) => home.json<any>(["keys", "directory"], h).tenants.find((t: any) => t.tenant === "default").providerKeys;
    const paymentsKeys = (h: { env?: NodeJS.ProcessEnv }) => home.json<{ keys: any[] }>(["keys", "export", a.id], h).keys.filter((k) => k.kty === "EC");

    const url = await freshDatabaseUrl();
    expect(home.cli(["store", "migrate", "--to", url]).code).toBe(0);
    const pg = { env: { SIGIL_STORE_URL: url } };
    expect(await pgQuery(url, "SELECT id FROM sigil_payment_mandates")).toEqual([{ id: m.mandateId }]);
    expect(providerKeys(pg)).toEqual(providerKeys({}));
    expect(paymentsKeys(pg)).toEqual(paymentsKeys({}));

    // Served from PostgreSQL: the mandate the file home issued is presented, signed by the same payments key.
    const p = await stdioClient(home, a.token, pg);
    const presented = await p.client.callTool({ name: "present_payment_mandate", arguments: { mandateId: m.mandateId, aud: "cp", nonce: "n-1", amountCents: 4000, payee: PAYEE } });
    await p.client.close();
    expect(presented.isError, text(presented)).toBeFalsy();
    const v = await verifyChain((presented.structuredContent as any).closed.payment, { rootKey: providerKeys(pg)[0], aud: "cp", nonce: "n-1", nowSeconds: Math.floor(Date.now() / 1000) });
    expect(v.hashes[0]).toBe(createHash("sha256").update(m.mandate.payment, "ascii").digest("base64url"));
    expect((v.hops[0]!.mandate.cnf as any).jwk).toMatchObject({ x: paymentsKeys(pg)[0].x, y: paymentsKeys(pg)[0].y });
    expect(home.json(["audit", "verify"], pg).ok).toBe(true);
  });

  it("refuses a home whose audit log does not verify, and copies nothing", async () => {
    const home = makeHome();
    const a = home.createIdentity({ channels: "" });
    home.json(["identity", "rotate-token", a.id]);
    const file = path.join(home.env.SIGIL_HOME!, "audit", `${a.id}.jsonl`);
    const lines = readFileSync(file, "utf8").split("\n");
    const tampered = lines[1]!.replace('"tool":"token_rotated"', '"tool":"token_rotatex"');
    expect(tampered).not.toBe(lines[1]);
    lines[1] = tampered;
    writeFileSync(file, lines.join("\n"));
    const url = await freshDatabaseUrl();
    const r = home.cli(["store", "migrate", "--to", url]);
    expect(r.code).toBe(1);
    expect(r.stderr).toMatch(new RegExp(`The audit log of ${a.id} does not verify \\(seq 2: .*\\); nothing was copied`));
    expect(await pgQuery(url, "SELECT to_regclass('sigil_meta')::text AS t")).toEqual([{ t: null }]);
    expect(home.cli(["store", "migrate", "--to", "mysql://x"]).stderr).toMatch(/--to must be a postgres:\/\//);
  });
});
