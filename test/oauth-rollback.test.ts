/**
 * The store is not an authority over OAuth grants either (SPEC §8): a store writer without the
 * master key keeps copies of a grant's record (each validly MAC'd when it was written) and puts an
 * older one back — a revoked grant un-revoked, or a generation whose tokens were rotated out. The
 * identity's signed log records every revocation and issuance, and every call and every issuance
 * is checked against it: the revived tokens are refused (audited) and nothing new is issued.
 * Against the built server over Streamable HTTP, the attacker writing the files or rows directly,
 * both stores.
 */
import { readFileSync, writeFileSync } from "node:fs";
import path from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { discoverAuthorizationServerMetadata, exchangeAuthorization, refreshAuthorization, registerClient, startAuthorization } from "@modelcontextprotocol/sdk/client/auth.js";
import type { AuthorizationServerMetadata, OAuthClientInformationFull } from "@modelcontextprotocol/sdk/shared/auth.js";
import { backends, pgQuery } from "./support/backends.js";
import { type Home, type HttpServer, cleanupHomes, httpClient, makeHome, startHttpServer, text, withApp } from "./support/home.js";

afterAll(cleanupHomes);

const REDIRECT = "http://127.0.0.1:49152/callback";

/** The grant record's bytes as the store holds them (what an attacker with store access copies). */
async function grantBytes(home: Home, id: string): Promise<string> {
  if (home.store === "postgres") return (await pgQuery(home.env.SIGIL_STORE_URL!, "SELECT record::text AS r FROM sigil_oauth_grants WHERE id = $1", [id]))[0].r;
  return readFileSync(path.join(home.env.SIGIL_HOME!, "oauth-grants", `${id}.json`), "utf8");
}

/** Puts the copy back, straight into the file or the row. */
async function restoreGrant(home: Home, id: string, bytes: string): Promise<void> {
  if (home.store === "postgres") await pgQuery(home.env.SIGIL_STORE_URL!, "UPDATE sigil_oauth_grants SET record = $2::jsonb WHERE id = $1", [id, bytes]);
  else writeFileSync(path.join(home.env.SIGIL_HOME!, "oauth-grants", `${id}.json`), bytes);
}

async function whoami(server: HttpServer, token: string): Promise<any> {
  const { client } = await httpClient(server.url, token);
  try {
    return await client.callTool({ name: "whoami", arguments: {} });
  } finally {
    await client.close().catch(() => {});
  }
}

describe.each(backends)("OAuth grant rollback (%s store)", (store) => {
  async function setup(): Promise<{ home: Home; server: HttpServer; base: string; metadata: AuthorizationServerMetadata; client: OAuthClientInformationFull; agent: { id: string } }> {
    const home = makeHome({}, { store });
    const agent = home.createIdentity({ name: "oauth-agent", channels: "" });
    const server = await startHttpServer(home);
    const base = new URL(server.url).origin;
    const metadata = (await discoverAuthorizationServerMetadata(new URL(base + "/")))!;
    const client = await registerClient(base, { metadata, clientMetadata: { client_name: "Rollback client", redirect_uris: [REDIRECT], token_endpoint_auth_method: "none", grant_types: ["authorization_code", "refresh_token"], response_types: ["code"] } });
    return { home, server, base, metadata, client, agent };
  }

  async function grantAndExchange(s: Awaited<ReturnType<typeof setup>>): Promise<{ access: string; refresh: string; grantId: string }> {
    const { authorizationUrl, codeVerifier } = await startAuthorization(s.base, { metadata: s.metadata, clientInformation: s.client, redirectUrl: REDIRECT, resource: new URL(s.server.url) });
    const challenge = authorizationUrl.searchParams.get("code_challenge")!;
    const { code, grantId } = await withApp(s.home, (app) =>
      app.oauth.grants.grant({ identityId: s.agent.id, tenantId: "default", clientId: s.client.client_id, clientName: "Rollback client", redirectUri: REDIRECT, resource: s.server.url, challenge, grantedBy: "test" }),
    );
    const t = await exchangeAuthorization(s.base, { metadata: s.metadata, clientInformation: s.client, authorizationCode: code, codeVerifier, redirectUri: REDIRECT, resource: new URL(s.server.url) });
    return { access: t.access_token, refresh: t.refresh_token!, grantId };
  }

  it("a revoked grant put back from an older copy: its access token's calls are refused `revoked` (audited), its refresh token issues nothing", async () => {
    const s = await setup();
    try {
      const g = await grantAndExchange(s);
      expect((await whoami(s.server, g.access)).isError).toBeFalsy();
      const before = await grantBytes(s.home, g.grantId); // the attacker's copy, validly MAC'd

      await withApp(s.home, (app) => app.oauth.grants.revoke(g.grantId, "admin"));
      expect((await whoami(s.server, g.access).catch((e: Error) => ({ isError: true, error: e.message }))).isError).toBe(true);

      await restoreGrant(s.home, g.grantId, before);
      // The record alone would let the token through again (its MAC checks): the log says otherwise.
      expect(await withApp(s.home, (app) => app.oauth.grants.live(g.grantId))).toBe(true);
      const r = await whoami(s.server, g.access);
      expect(r.isError).toBe(true);
      expect(text(r)).toMatch(/^denied: revoked: .*OAuth grant has been revoked/);
      const log = s.home.auditLog(s.agent.id);
      expect(log.at(-1)).toMatchObject({ tool: "whoami", decision: "deny", reason: "revoked" });

      await expect(refreshAuthorization(s.base, { metadata: s.metadata, clientInformation: s.client, refreshToken: g.refresh, resource: new URL(s.server.url) })).rejects.toThrow();
      const after = s.home.auditLog(s.agent.id);
      const issued = after.filter((e) => e.tool === "oauth_tokens_issued" && e.phase === "result");
      expect(issued.map((e) => [e.decision, e.reason])).toEqual([["ok", undefined], ["failed", "record_stale"]]);
      expect(s.server.output()).toMatch(/record_stale: OAuth grant og_[0-9a-f]{20} is older than its identity's audit log/);
    } finally {
      await s.server.stop();
    }
  });

  it("a grant put back to an earlier token generation: the rotated-out access token is refused `record_stale`, its refresh token issues nothing", async () => {
    const s = await setup();
    try {
      const g = await grantAndExchange(s);
      const gen1 = await grantBytes(s.home, g.grantId);
      const next = await refreshAuthorization(s.base, { metadata: s.metadata, clientInformation: s.client, refreshToken: g.refresh, resource: new URL(s.server.url) });
      expect((await whoami(s.server, next.access_token)).isError).toBeFalsy();

      await restoreGrant(s.home, g.grantId, gen1);
      const r = await whoami(s.server, g.access);
      expect(r.isError).toBe(true);
      expect(text(r)).toMatch(/^denied: record_stale: /);
      expect(s.home.auditLog(s.agent.id).at(-1)).toMatchObject({ tool: "whoami", decision: "deny", reason: "record_stale" });
      // The old refresh token matches the restored record, but the log has moved past it.
      await expect(refreshAuthorization(s.base, { metadata: s.metadata, clientInformation: s.client, refreshToken: g.refresh, resource: new URL(s.server.url) })).rejects.toThrow();
      const issued = s.home.auditLog(s.agent.id).filter((e) => e.tool === "oauth_tokens_issued" && e.phase === "result");
      expect(issued.map((e) => [e.decision, e.reason])).toEqual([["ok", undefined], ["ok", undefined], ["failed", "record_stale"]]);
    } finally {
      await s.server.stop();
    }
  });
});
