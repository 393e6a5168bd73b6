/**
 * OAuth for clients that only know a URL (SPEC §11), against the built server (`sigil serve
 * --http`) with the MCP SDK's own client-side OAuth functions (discovery, registration,
 * authorization URL with PKCE, code exchange, refresh). The person's consent is made here by the
 * same grant operation the consent form calls (`app.oauth.grants.grant`, in a second process on the
 * same home); test/oauth-browser.test.ts drives the real consent page in Chromium.
 */
import { readFileSync, writeFileSync } from "node:fs";
import http from "node:http";
import path from "node:path";
import type { AddressInfo } from "node:net";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import {
  discoverAuthorizationServerMetadata,
  discoverOAuthProtectedResourceMetadata,
  exchangeAuthorization,
  refreshAuthorization,
  registerClient,
  startAuthorization,
} from "@modelcontextprotocol/sdk/client/auth.js";
import type { AuthorizationServerMetadata, OAuthClientInformationFull, OAuthTokens } from "@modelcontextprotocol/sdk/shared/auth.js";
import { backends, pgQuery } from "./support/backends.js";
import { REDIRECT, startOAuthServer, type OAuthServer } from "./support/oauth.js";
import { cleanupHomes, httpClient, makeHome, startHttpServer, until, withApp, type Home, type HttpServer, type Identity } from "./support/home.js";

let o: OAuthServer;
let home: Home;
let server: HttpServer;
let base: string;
let metadata: AuthorizationServerMetadata;
let agent: Identity;

beforeAll(async () => {
  o = await startOAuthServer("oauth-agent");
  ({ home, server, base, metadata, agent } = o);
}, 60_000);
afterAll(async () => {
  await server?.stop();
  cleanupHomes();
});

async function post(url: string, headers: Record<string, string> = {}): Promise<Response> {
  return fetch(url, {
    method: "POST",
    headers: { "content-type": "application/json", accept: "application/json, text/event-stream", ...headers },
    body: JSON.stringify({ jsonrpc: "2.0", id: 1, method: "initialize", params: { protocolVersion: "2025-06-18", capabilities: {}, clientInfo: { name: "raw", version: "1" } } }),
  });
}

const newClient = (name?: string): Promise<OAuthClientInformationFull> => o.newClient(name);
const consent: OAuthServer["consent"] = (client, identityId, opts) => o.consent(client, identityId, opts);
const tokensFor: OAuthServer["tokensFor"] = (client, identityId) => o.tokensFor(client, identityId);

/** The results (`ok`, `failed`) of the admin intents `tool` for grant `grantId` in an identity's log, in order. */
function outcomes(log: any[], tool: string, grantId: string): string[] {
  const intents = log.filter((e) => e.tool === tool && e.phase === "intent" && e.grant === grantId).map((e) => e.seq);
  return intents.map((seq) => log.find((e) => e.phase === "result" && e.intent === seq)?.decision ?? "open");
}

const challengeOf = (r: Response): string => r.headers.get("www-authenticate") ?? "";

describe("discovery: a client that only knows the URL finds everything", () => {
  it("/mcp without a token answers 401 with resource_metadata; the metadata leads to sigil as authorization server", async () => {
    const r = await post(server.url);
    expect(r.status).toBe(401);
    const m = /resource_metadata="([^"]+)"/.exec(challengeOf(r));
    expect(m?.[1]).toBe(`${base}/.well-known/oauth-protected-resource/mcp`);
    const prm = await discoverOAuthProtectedResourceMetadata(server.url, { resourceMetadataUrl: m![1]! } as never);
    expect(prm.resource).toBe(server.url);
    expect(prm.authorization_servers).toEqual([`${base}/`]);
    // The root well-known path serves the same resource.
    const root = await (await fetch(`${base}/.well-known/oauth-protected-resource`)).json();
    expect(root.resource).toBe(server.url);
    expect(metadata.code_challenge_methods_supported).toEqual(["S256"]);
    expect(metadata.token_endpoint_auth_methods_supported).toEqual(["none"]);
    expect((metadata as Record<string, unknown>).client_id_metadata_document_supported).toBe(true);
    expect(metadata.registration_endpoint).toBe(`${base}/register`);
    expect(metadata.revocation_endpoint).toBe(`${base}/revoke`);
  });

  it("an unknown or revoked static token is told invalid_token and never sent into discovery", async () => {
    const gone = home.createIdentity({ channels: "" });
    home.json(["identity", "revoke", gone.id]);
    for (const token of ["sigil_agent_nope", gone.token, "sigil_admin_nope", "sigil_approver_nope"]) {
      const r = await post(server.url, { authorization: `Bearer ${token}` });
      expect(r.status).toBe(401);
      expect(challengeOf(r)).toContain('error="invalid_token"');
      expect(challengeOf(r)).not.toContain("resource_metadata");
    }
    // A static token that is valid keeps working on the same endpoint.
    const { client } = await httpClient(server.url, agent.token);
    expect(((await client.callTool({ name: "whoami", arguments: {} })).structuredContent as any).id).toBe(agent.id);
    await client.close();
  });

  it("dynamic registration issues a public client (no secret, even when one is asked for) and refuses unsafe redirect URIs", async () => {
    const c = await registerClient(base, { metadata, clientMetadata: { client_name: "Asks for a secret", redirect_uris: [REDIRECT], token_endpoint_auth_method: "client_secret_post" } });
    expect(c.client_id).toMatch(/^oc_[0-9a-f]{20}$/);
    expect(c.client_secret).toBeUndefined();
    expect(c.token_endpoint_auth_method).toBe("none");
    for (const uri of ["http://evil.example/cb", "javascript:alert(1)", "data:text/html,x", "https://x.example/cb#frag"]) {
      const r = await fetch(`${base}/register`, { method: "POST", headers: { "content-type": "application/json" }, body: JSON.stringify({ redirect_uris: [uri] }) });
      expect(r.status, uri).toBe(400);
      expect((await r.json()).error).toBe("invalid_client_metadata");
    }
  });

  it("/authorize: an unregistered redirect URI is refused without redirecting; a loopback one on another port is accepted (RFC 8252); plain PKCE is refused", async () => {
    const client = await newClient();
    const { authorizationUrl } = await startAuthorization(base, { metadata, clientInformation: client, redirectUrl: REDIRECT, resource: new URL(server.url) });
    const go = (mutate: (u: URL) => void) => {
      const u = new URL(authorizationUrl);
      mutate(u);
      return fetch(u, { redirect: "manual" });
    };
    const evil = await go((u) => u.searchParams.set("redirect_uri", "https://evil.example/callback"));
    expect(evil.status).toBe(400);
    expect(evil.headers.get("location")).toBeNull();
    const otherPath = await go((u) => u.searchParams.set("redirect_uri", "http://127.0.0.1:49152/other"));
    expect(otherPath.status).toBe(400);
    const otherPort = await go((u) => u.searchParams.set("redirect_uri", "http://127.0.0.1:50000/callback"));
    expect(otherPort.status).toBe(302);
    expect(otherPort.headers.get("location")).toMatch(/^\/console\/sign-in\?next=/);
    const plain = await go((u) => u.searchParams.set("code_challenge_method", "plain"));
    expect(plain.status).toBe(302);
    expect(new URL(plain.headers.get("location")!).searchParams.get("error")).toBe("invalid_request");
    const wrongResource = await go((u) => u.searchParams.set("resource", "https://elsewhere.example/mcp"));
    expect(new URL(wrongResource.headers.get("location")!).searchParams.get("error")).toBe("invalid_target");
  });
});

describe("tokens: bound to identity, client and resource; rotated; revocable", () => {
  it("a code exchanged with the right verifier gives an access token that acts as the identity, and the grant is audited", async () => {
    const client = await newClient();
    const t = await tokensFor(client, agent.id);
    expect(t.access_token).toMatch(/^sigil_oat_og_/);
    expect(t.expires_in).toBe(3600);
    const { client: mcp } = await httpClient(server.url, t.access_token);
    expect(((await mcp.callTool({ name: "whoami", arguments: {} })).structuredContent as any).id).toBe(agent.id);
    await mcp.close();
    const log = home.auditLog(agent.id);
    expect(outcomes(log, "oauth_granted", t.grantId)).toEqual(["ok"]);
    expect(outcomes(log, "oauth_tokens_issued", t.grantId)).toEqual(["ok"]);
    expect(JSON.stringify(log)).not.toContain(t.access_token.slice(-43));
  });

  it("a wrong PKCE verifier, a wrong redirect URI, another client or another resource cannot exchange a code; a code used twice ends the grant", async () => {
    const client = await newClient();
    const other = await newClient("Other");
    const c = await consent(client, agent.id);
    const ex = (o: Partial<{ verifier: string; redirect: string; who: OAuthClientInformationFull; resource: string }>) =>
      exchangeAuthorization(base, { metadata, clientInformation: o.who ?? client, authorizationCode: c.code, codeVerifier: o.verifier ?? c.verifier, redirectUri: o.redirect ?? REDIRECT, resource: new URL(o.resource ?? server.url) });
    await expect(ex({ verifier: "x".repeat(43) })).rejects.toThrow(/code_verifier does not match/);
    await expect(ex({ redirect: "http://127.0.0.1:49153/callback" })).rejects.toThrow(/redirect_uri/);
    await expect(ex({ who: other })).rejects.toThrow(/not valid/);
    await expect(ex({ resource: "https://elsewhere.example/mcp" })).rejects.toThrow(/only for its own MCP endpoint/);
    // None of those spent the code: the right exchange still works — once.
    const t = await ex({});
    expect((await post(server.url, { authorization: `Bearer ${t.access_token}` })).status).toBe(200);
    await expect(ex({})).rejects.toThrow(/not valid/);
    // The second exchange revoked the grant: the first exchange's token is dead too.
    const r = await post(server.url, { authorization: `Bearer ${t.access_token}` });
    expect(r.status).toBe(401);
    expect(challengeOf(r)).toContain("resource_metadata=");
    expect(home.auditLog(agent.id).some((e) => e.tool === "oauth_revoked" && e.reason === "code_reuse" && e.grant === c.grantId)).toBe(true);
  });

  it("refresh rotates both tokens; the old refresh token presented again revokes the whole grant", async () => {
    const client = await newClient();
    const t1 = await tokensFor(client, agent.id);
    const t2 = await refreshAuthorization(base, { metadata, clientInformation: client, refreshToken: t1.refresh_token!, resource: new URL(server.url) });
    expect(t2.refresh_token).not.toBe(t1.refresh_token);
    expect((await post(server.url, { authorization: `Bearer ${t1.access_token}` })).status).toBe(401);
    expect((await post(server.url, { authorization: `Bearer ${t2.access_token}` })).status).toBe(200);
    // Reuse: the thief (or the client) presents the spent token.
    await expect(refreshAuthorization(base, { metadata, clientInformation: client, refreshToken: t1.refresh_token!, resource: new URL(server.url) })).rejects.toThrow(/not valid/);
    const r = await post(server.url, { authorization: `Bearer ${t2.access_token}` });
    expect(r.status).toBe(401);
    expect(challengeOf(r)).toContain("resource_metadata=");
    await expect(refreshAuthorization(base, { metadata, clientInformation: client, refreshToken: t2.refresh_token!, resource: new URL(server.url) })).rejects.toThrow(/not valid/);
    const log = home.auditLog(agent.id);
    expect(outcomes(log, "oauth_tokens_issued", t1.grantId)).toEqual(["ok", "ok"]);
    expect(outcomes(log, "oauth_revoked", t1.grantId)).toEqual(["ok"]);
    expect(log.some((e) => e.tool === "oauth_revoked" && e.reason === "refresh_reuse" && e.grant === t1.grantId && e.phase === "intent")).toBe(true);
  });

  it("revocation at /revoke (RFC 7009) ends the grant; another client's revocation changes nothing", async () => {
    const client = await newClient();
    const other = await newClient("Other");
    const t = await tokensFor(client, agent.id);
    const { client: open } = await httpClient(server.url, t.access_token);
    const revoke = (who: OAuthClientInformationFull, token: string) =>
      fetch(`${base}/revoke`, { method: "POST", headers: { "content-type": "application/x-www-form-urlencoded" }, body: new URLSearchParams({ client_id: who.client_id, token }) });
    expect((await revoke(other, t.access_token)).status).toBe(200);
    expect((await post(server.url, { authorization: `Bearer ${t.access_token}` })).status).toBe(200);
    expect((await revoke(client, t.refresh_token!)).status).toBe(200);
    expect((await post(server.url, { authorization: `Bearer ${t.access_token}` })).status).toBe(401);
    // The session opened under the grant ends with it.
    await expect(open.callTool({ name: "whoami", arguments: {} })).rejects.toThrow();
    await open.close().catch(() => {});
    await expect(refreshAuthorization(base, { metadata, clientInformation: client, refreshToken: t.refresh_token!, resource: new URL(server.url) })).rejects.toThrow(/not valid/);
    expect(home.auditLog(agent.id).some((e) => e.tool === "oauth_revoked" && e.reason === "client" && e.grant === t.grantId)).toBe(true);
  });

  it("an administrator lists an identity's grants (no tokens) and revokes one from the CLI: its tokens and sessions end", async () => {
    const client = await newClient("CLI-revoked client");
    const t = await tokensFor(client, agent.id);
    const { client: open } = await httpClient(server.url, t.access_token);
    const listed = home.json<any[]>(["oauth", "grants", agent.id]);
    const mine = listed.find((g) => g.id === t.grantId);
    expect(mine).toMatchObject({ clientId: client.client_id, clientName: "CLI-revoked client", resource: server.url });
    expect(JSON.stringify(listed)).not.toMatch(/sigil_oat_|sigil_ort_|"hash"/);
    expect(home.cli(["oauth", "revoke", "og_00000000000000000000"]).code).not.toBe(0);
    expect(home.cli(["oauth", "revoke", t.grantId]).code).toBe(0);
    expect((await post(server.url, { authorization: `Bearer ${t.access_token}` })).status).toBe(401);
    // Another process revoked it: the server's sweep closes the open session within seconds.
    await until(async () => ((await open.callTool({ name: "whoami", arguments: {} }).then(() => false, () => true)) ? true : undefined), 30_000, "the session to close");
    await open.close().catch(() => {});
    expect(home.json<any[]>(["oauth", "grants", agent.id]).find((g) => g.id === t.grantId).revokedAt).toBeTruthy();
    expect(home.auditLog(agent.id).some((e) => e.tool === "oauth_revoked" && e.reason === "admin" && e.grant === t.grantId)).toBe(true);
  });

  it("two concurrent uses of one refresh token (or one code): at most one succeeds, and the grant ends", async () => {
    const client = await newClient();
    const c = await consent(client, agent.id);
    const exchange = () => exchangeAuthorization(base, { metadata, clientInformation: client, authorizationCode: c.code, codeVerifier: c.verifier, redirectUri: REDIRECT, resource: new URL(server.url) });
    const codes = await Promise.allSettled([exchange(), exchange(), exchange()]);
    expect(codes.filter((r) => r.status === "fulfilled").length).toBeLessThanOrEqual(1);
    const t = await tokensFor(client, agent.id);
    const refresh = () => refreshAuthorization(base, { metadata, clientInformation: client, refreshToken: t.refresh_token!, resource: new URL(server.url) });
    const results = await Promise.allSettled([refresh(), refresh(), refresh()]);
    const won = results.filter((r): r is PromiseFulfilledResult<OAuthTokens> => r.status === "fulfilled");
    expect(won.length).toBeLessThanOrEqual(1);
    // The others were reuses: the grant is revoked, so even the winner's token is dead.
    for (const w of won) expect((await post(server.url, { authorization: `Bearer ${w.value.access_token}` })).status).toBe(401);
    // Revoked once; a racing second revocation is recorded as not having taken effect.
    expect(outcomes(home.auditLog(agent.id), "oauth_revoked", t.grantId).filter((o) => o === "ok")).toEqual(["ok"]);
    expect(outcomes(home.auditLog(agent.id), "oauth_revoked", t.grantId).every((o) => o === "ok" || o === "failed")).toBe(true);
  });

  it("revoking the identity ends its OAuth tokens, and an open session's next call is refused", async () => {
    const doomed = home.createIdentity({ name: "doomed", channels: "" });
    const client = await newClient();
    const t = await tokensFor(client, doomed.id);
    const { client: mcp } = await httpClient(server.url, t.access_token);
    expect(((await mcp.callTool({ name: "whoami", arguments: {} })).structuredContent as any).id).toBe(doomed.id);
    home.json(["identity", "revoke", doomed.id]);
    const r = await post(server.url, { authorization: `Bearer ${t.access_token}` });
    expect(r.status).toBe(401);
    expect(challengeOf(r)).toContain("resource_metadata=");
    await expect(mcp.callTool({ name: "whoami", arguments: {} })).rejects.toThrow();
    await mcp.close().catch(() => {});
    await expect(refreshAuthorization(base, { metadata, clientInformation: client, refreshToken: t.refresh_token!, resource: new URL(server.url) })).rejects.toThrow(/revoked|not valid/);
  });

  it("a token is good only for the resource it was issued for (another origin of the same server is another audience)", async () => {
    const client = await newClient();
    const t = await tokensFor(client, agent.id);
    const port = new URL(server.url).port;
    const r = await new Promise<{ status: number; www: string }>((resolve, reject) => {
      const req = http.request({ host: "127.0.0.1", port, path: "/mcp", method: "POST", headers: { host: `localhost:${port}`, authorization: `Bearer ${t.access_token}`, "content-type": "application/json", accept: "application/json, text/event-stream" } }, (res) => {
        res.resume();
        resolve({ status: res.statusCode!, www: String(res.headers["www-authenticate"] ?? "") });
      });
      req.on("error", reject);
      req.end(JSON.stringify({ jsonrpc: "2.0", id: 1, method: "initialize", params: { protocolVersion: "2025-06-18", capabilities: {}, clientInfo: { name: "raw", version: "1" } } }));
    });
    expect(r.status).toBe(401);
    expect(r.www).toContain("not issued for this resource");
    expect(r.www).toContain(`resource_metadata="http://localhost:${port}/.well-known/oauth-protected-resource/mcp"`);
  });

  it("an expired access token gets the standard challenge, and its refresh token gives a fresh one (sigil's clock two hours ahead)", async () => {
    // The same origin (a server restarted on the same port) with its clock two hours ahead.
    const first = await startHttpServer(home);
    const origin = new URL(first.url).origin;
    const meta = (await discoverAuthorizationServerMetadata(new URL(origin + "/")))!;
    const client = await registerClient(origin, { metadata: meta, clientMetadata: { client_name: "Expiry", redirect_uris: [REDIRECT], token_endpoint_auth_method: "none" } });
    const { authorizationUrl, codeVerifier } = await startAuthorization(origin, { metadata: meta, clientInformation: client, redirectUrl: REDIRECT, resource: new URL(first.url) });
    const { code } = await withApp(home, (app) =>
      app.oauth.grants.grant({ identityId: agent.id, tenantId: "default", clientId: client.client_id, clientName: "Expiry", redirectUri: REDIRECT, resource: first.url, challenge: authorizationUrl.searchParams.get("code_challenge")!, grantedBy: "test" }),
    );
    const t = await exchangeAuthorization(origin, { metadata: meta, clientInformation: client, authorizationCode: code, codeVerifier, redirectUri: REDIRECT, resource: new URL(first.url) });
    expect((await post(first.url, { authorization: `Bearer ${t.access_token}` })).status).toBe(200);
    await first.stop();
    const later = await startHttpServer(home, { SIGIL_TEST_CLOCK_OFFSET_MS: String(2 * 3600_000) }, first.port);
    try {
      expect(later.url).toBe(first.url);
      const r = await post(later.url, { authorization: `Bearer ${t.access_token}` });
      expect(r.status).toBe(401);
      expect(challengeOf(r)).toContain("expired");
      expect(challengeOf(r)).toContain(`resource_metadata="${origin}/.well-known/oauth-protected-resource/mcp"`);
      const fresh = await refreshAuthorization(origin, { metadata: meta, clientInformation: client, refreshToken: t.refresh_token!, resource: new URL(later.url) });
      const { client: mcp } = await httpClient(later.url, fresh.access_token);
      expect(((await mcp.callTool({ name: "whoami", arguments: {} })).structuredContent as any).id).toBe(agent.id);
      await mcp.close();
    } finally {
      await later.stop();
    }
  }, 90_000);
});

describe("Client ID Metadata Documents", () => {
  let docs: http.Server;
  let docBase: string;
  let hits: string[];
  const documents = new Map<string, { status: number; body?: unknown; location?: string }>();

  beforeAll(async () => {
    hits = [];
    docs = http.createServer((req, res) => {
      hits.push(req.url!);
      const d = documents.get(req.url!) ?? { status: 404 };
      res.writeHead(d.status, { "content-type": "application/json", ...(d.location ? { location: d.location } : {}) });
      res.end(d.body === undefined ? "" : typeof d.body === "string" ? d.body : JSON.stringify(d.body));
    });
    await new Promise<void>((r) => docs.listen(0, "127.0.0.1", r));
    docBase = `http://127.0.0.1:${(docs.address() as AddressInfo).port}`;
  });
  afterAll(() => new Promise<void>((r) => docs.close(() => r())));

  const authorizeWith = async (srv: HttpServer, clientId: string) => {
    const u = new URL(`${new URL(srv.url).origin}/authorize`);
    u.search = new URLSearchParams({ response_type: "code", client_id: clientId, redirect_uri: REDIRECT, code_challenge: "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM", code_challenge_method: "S256" }).toString();
    return fetch(u, { redirect: "manual" });
  };

  it("a document whose client_id is its own URL names the client; a mismatching, secret-bearing or redirecting one names none", async () => {
    const srv = await startHttpServer(home, { SIGIL_TEST_OAUTH_HTTP_DOCUMENTS: "1" });
    try {
      const good = `${docBase}/clients/good.json`;
      documents.set("/clients/good.json", { status: 200, body: { client_id: good, client_name: "Doc client", redirect_uris: [REDIRECT], token_endpoint_auth_method: "none" } });
      const ok = await authorizeWith(srv, good);
      expect(ok.status).toBe(302);
      expect(ok.headers.get("location")).toMatch(/^\/console\/sign-in/);

      const liar = `${docBase}/clients/liar.json`;
      documents.set("/clients/liar.json", { status: 200, body: { client_id: `${docBase}/clients/other.json`, redirect_uris: [REDIRECT] } });
      expect((await authorizeWith(srv, liar)).status).toBe(400);

      const secret = `${docBase}/clients/secret.json`;
      documents.set("/clients/secret.json", { status: 200, body: { client_id: secret, client_secret: "x", redirect_uris: [REDIRECT] } });
      expect((await authorizeWith(srv, secret)).status).toBe(400);

      const big = `${docBase}/clients/big.json`;
      documents.set("/clients/big.json", { status: 200, body: { client_id: big, redirect_uris: [REDIRECT], client_name: "x".repeat(20_000) } });
      expect((await authorizeWith(srv, big)).status).toBe(400);

      hits.length = 0;
      const hop = `${docBase}/clients/hop.json`;
      documents.set("/clients/hop.json", { status: 302, location: `${docBase}/clients/good.json` });
      expect((await authorizeWith(srv, hop)).status).toBe(400);
      expect(hits).toEqual(["/clients/hop.json"]); // the redirect was not followed
    } finally {
      await srv.stop();
    }
  }, 60_000);

  it("without the test switch a document on a loopback or private address is never fetched (SSRF)", async () => {
    hits.length = 0;
    const good = `${docBase}/clients/good.json`;
    const httpsLoopback = good.replace("http://", "https://");
    for (const id of [good, httpsLoopback, "https://10.0.0.1/client.json", "https://169.254.169.254/latest/meta-data", "https://[::1]/client.json", "https://localhost/client.json"]) {
      expect((await authorizeWith(server, id)).status, id).toBe(400);
    }
    expect(hits).toEqual([]);
  }, 60_000);
});

describe.each(backends)("grants on the %s store", (backend) => {
  let fx: OAuthServer;
  let h: Home;
  let srv: HttpServer;
  beforeAll(async () => {
    fx = await startOAuthServer("stored", makeHome({}, { store: backend }));
    ({ home: h, server: srv } = fx);
  }, 60_000);
  afterAll(async () => {
    await srv?.stop();
  });

  async function issue(): Promise<{ client: OAuthClientInformationFull; t: OAuthTokens; grantId: string }> {
    const client = await fx.newClient("Stored");
    const { grantId, ...t } = await fx.tokensFor(client, fx.agent.id);
    return { client, t, grantId };
  }

  /** Rewrites a grant record as a store writer without the master key could. */
  async function tamper(grantId: string, change: (g: any) => void): Promise<void> {
    if (backend === "file") {
      const file = path.join(h.env.SIGIL_HOME!, "oauth-grants", `${grantId}.json`);
      const g = JSON.parse(readFileSync(file, "utf8"));
      change(g);
      writeFileSync(file, JSON.stringify(g));
    } else {
      const [row] = await pgQuery(h.env.SIGIL_STORE_URL!, "SELECT record FROM sigil_oauth_grants WHERE id = $1", [grantId]);
      change(row.record);
      await pgQuery(h.env.SIGIL_STORE_URL!, "UPDATE sigil_oauth_grants SET record = $2 WHERE id = $1", [grantId, JSON.stringify(row.record)]);
    }
  }

  it("tokens are stored only as keyed hashes; refresh and reuse detection hold across processes", async () => {
    const { client, t, grantId } = await issue();
    const stored = await withApp(h, (app) => app.store.getOAuthGrant(grantId));
    expect(JSON.stringify(stored)).not.toContain(t.access_token.slice(-43));
    expect(JSON.stringify(stored)).not.toContain(t.refresh_token!.slice(-43));
    // Refreshed by another process on the same store (a second server instance would be the same).
    const t2 = await withApp(h, (app) => app.oauth.grants.refresh(client.client_id, t.refresh_token!, srv.url));
    expect((await post(srv.url, { authorization: `Bearer ${t2.access_token}` })).status).toBe(200);
    await expect(refreshAuthorization(fx.base, { metadata: fx.metadata, clientInformation: client, refreshToken: t.refresh_token!, resource: new URL(srv.url) })).rejects.toThrow(/not valid/);
    expect((await post(srv.url, { authorization: `Bearer ${t2.access_token}` })).status).toBe(401);
  });

  it("a grant record changed without the master key authorises nothing (an expired token made current, a grant moved to another identity)", async () => {
    const other = h.createIdentity({ name: "victim", channels: "" });
    const a = await issue();
    await tamper(a.grantId, (g) => (g.identityId = other.id));
    expect((await post(srv.url, { authorization: `Bearer ${a.t.access_token}` })).status).toBe(401);
    const b = await issue();
    await tamper(b.grantId, (g) => (g.access.expiresAt = "2999-01-01T00:00:00.000Z"));
    expect((await post(srv.url, { authorization: `Bearer ${b.t.access_token}` })).status).toBe(401);
    // An untouched grant still works.
    const c = await issue();
    expect((await post(srv.url, { authorization: `Bearer ${c.t.access_token}` })).status).toBe(200);
  });
});
