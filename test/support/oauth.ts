/**
 * One OAuth test server (SPEC §11): a home, `sigil serve --http` on it, its discovered
 * authorization-server metadata, an identity to grant, and the steps every OAuth test repeats —
 * a client registered with the SDK's `registerClient`, the consent a person gives (the same grant
 * operation the consent form calls, in a second process on the same home), and the exchange of its
 * code for tokens with the SDK's `exchangeAuthorization`.
 */
import { discoverAuthorizationServerMetadata, exchangeAuthorization, registerClient, startAuthorization } from "@modelcontextprotocol/sdk/client/auth.js";
import type { AuthorizationServerMetadata, OAuthClientInformationFull, OAuthTokens } from "@modelcontextprotocol/sdk/shared/auth.js";
import { makeHome, startHttpServer, withApp, type Home, type HttpServer, type Identity } from "./home.js";

/** The loopback redirect every test client registers (nothing listens there unless a test opens it). */
export const REDIRECT = "http://127.0.0.1:49152/callback";

export interface OAuthServer {
  home: Home;
  server: HttpServer;
  /** The server's origin, where discovery, /register, /authorize and /token live. */
  base: string;
  metadata: AuthorizationServerMetadata;
  agent: Identity;
  /** A client registered dynamically, with REDIRECT as its one redirect URI. */
  newClient(name?: string): Promise<OAuthClientInformationFull>;
  /** What the consent form does when the person allows `client` to act as `identityId`. */
  consent(client: OAuthClientInformationFull, identityId: string, opts?: { resource?: string; redirect?: string }): Promise<{ code: string; verifier: string; grantId: string }>;
  /** consent, then the code exchanged by the client. */
  tokensFor(client: OAuthClientInformationFull, identityId: string): Promise<OAuthTokens & { grantId: string }>;
  /** A raw MCP initialize to /mcp with `token` as the bearer. */
  initialize(token: string, headers?: Record<string, string>): Promise<Response>;
}

/** `home` defaults to a new file-store home; pass one made with another store to test that backend. */
export async function startOAuthServer(agentName: string, home: Home = makeHome()): Promise<OAuthServer> {
  const server = await startHttpServer(home);
  const base = new URL(server.url).origin;
  const metadata = (await discoverAuthorizationServerMetadata(new URL(base + "/")))!;
  const agent = home.createIdentity({ name: agentName, channels: "" });

  const newClient = (name = "Test client"): Promise<OAuthClientInformationFull> =>
    registerClient(base, { metadata, clientMetadata: { client_name: name, redirect_uris: [REDIRECT], token_endpoint_auth_method: "none", grant_types: ["authorization_code", "refresh_token"], response_types: ["code"] } });

  const consent: OAuthServer["consent"] = async (client, identityId, opts = {}) => {
    const resource = opts.resource ?? server.url;
    const redirect = opts.redirect ?? REDIRECT;
    const { authorizationUrl, codeVerifier } = await startAuthorization(base, { metadata, clientInformation: client, redirectUrl: redirect, resource: new URL(resource) });
    const challenge = authorizationUrl.searchParams.get("code_challenge")!;
    const { code, grantId } = await withApp(home, (app) =>
      app.oauth.grants.grant({ identityId, tenantId: "default", clientId: client.client_id, clientName: client.client_name ?? "", redirectUri: redirect, resource, challenge, grantedBy: "test" }),
    );
    return { code, verifier: codeVerifier, grantId };
  };

  const tokensFor: OAuthServer["tokensFor"] = async (client, identityId) => {
    const c = await consent(client, identityId);
    const t = await exchangeAuthorization(base, { metadata, clientInformation: client, authorizationCode: c.code, codeVerifier: c.verifier, redirectUri: REDIRECT, resource: new URL(server.url) });
    return { ...t, grantId: c.grantId };
  };

  const initialize = (token: string, headers: Record<string, string> = {}): Promise<Response> =>
    fetch(server.url, {
      method: "POST",
      headers: { "content-type": "application/json", accept: "application/json, text/event-stream", authorization: `Bearer ${token}`, ...headers },
      body: JSON.stringify({ jsonrpc: "2.0", id: 1, method: "initialize", params: { protocolVersion: "2025-06-18", capabilities: {}, clientInfo: { name: "raw", version: "1" } } }),
    });

  return { home, server, base, metadata, agent, newClient, consent, tokensFor, initialize };
}
