/**
 * A hostile reviewer's attacks on OAuth (SPEC §11) against the built server (`sigil serve --http`),
 * with the MCP SDK's client-side OAuth functions and raw fetch. Each case is an attack that once
 * worked (or would, without the code it pins).
 */
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { discoverAuthorizationServerMetadata, exchangeAuthorization, registerClient, startAuthorization } from "@modelcontextprotocol/sdk/client/auth.js";
import type { AuthorizationServerMetadata, OAuthClientInformationFull } from "@modelcontextprotocol/sdk/shared/auth.js";
import { cleanupHomes, makeHome, startHttpServer, withApp, type Home, type HttpServer, type Identity } from "./support/home.js";

let home: Home;
let server: HttpServer;
let base: string;
let metadata: AuthorizationServerMetadata;
let agent: Identity;

const REDIRECT = "http://127.0.0.1:49152/callback";

beforeAll(async () => {
  home = makeHome();
  server = await startHttpServer(home);
  base = new URL(server.url).origin;
  metadata = (await discoverAuthorizationServerMetadata(new URL(base + "/")))!;
  agent = home.createIdentity({ name: "oauth-victim", channels: "" });
}, 60_000);
afterAll(async () => {
  await server?.stop();
  cleanupHomes();
});

const initialize = (token: string): Promise<Response> =>
  fetch(server.url, {
    method: "POST",
    headers: { "content-type": "application/json", accept: "application/json, text/event-stream", authorization: `Bearer ${token}` },
    body: JSON.stringify({ jsonrpc: "2.0", id: 1, method: "initialize", params: { protocolVersion: "2025-06-18", capabilities: {}, clientInfo: { name: "raw", version: "1" } } }),
  });

async function newClient(): Promise<OAuthClientInformationFull> {
  return registerClient(base, { metadata, clientMetadata: { client_name: "Victim's client", redirect_uris: [REDIRECT], token_endpoint_auth_method: "none", grant_types: ["authorization_code", "refresh_token"], response_types: ["code"] } });
}

/** A grant made as the consent form makes it, and its first tokens (the code exchanged by the client). */
async function grantAndExchange(client: OAuthClientInformationFull): Promise<{ access: string; grantId: string }> {
  const { authorizationUrl, codeVerifier } = await startAuthorization(base, { metadata, clientInformation: client, redirectUrl: REDIRECT, resource: new URL(server.url) });
  const challenge = authorizationUrl.searchParams.get("code_challenge")!;
  const { code, grantId } = await withApp(home, (app) =>
    app.oauth.grants.grant({ identityId: agent.id, tenantId: "default", clientId: client.client_id, clientName: "Victim's client", redirectUri: REDIRECT, resource: server.url, challenge, grantedBy: "test" }),
  );
  const t = await exchangeAuthorization(base, { metadata, clientInformation: client, authorizationCode: code, codeVerifier, redirectUri: REDIRECT, resource: new URL(server.url) });
  return { access: t.access_token, grantId };
}

describe("attacker: OAuth code-reuse detection", () => {
  it("a forged code naming a used grant (its id and client id are in every audit entry and bundle) does not revoke the grant", async () => {
    const client = await newClient();
    const { access, grantId } = await grantAndExchange(client);
    expect((await initialize(access)).status).toBe(200);
    // The attacker never saw the code: only the grant id (audit entries, bundles, the token's own
    // prefix) and the client id. A code of the right shape with random bits must change nothing.
    const forged = `sigil_oac_${grantId}_${"A".repeat(43)}`;
    const r = await fetch(`${base}/token`, {
      method: "POST",
      headers: { "content-type": "application/x-www-form-urlencoded" },
      body: new URLSearchParams({ grant_type: "authorization_code", code: forged, code_verifier: "x".repeat(43), client_id: client.client_id, redirect_uri: REDIRECT }).toString(),
    });
    expect(r.status).toBe(400);
    expect((await r.json()).error).toBe("invalid_grant");
    // The victim's grant stands.
    expect((await initialize(access)).status).toBe(200);
    expect(home.auditLog(agent.id).some((e) => e.tool === "oauth_revoked" && e.grant === grantId)).toBe(false);
  }, 60_000);
});
