/**
 * sigil as an OAuth 2.1 authorization server and protected resource for `/mcp` (SPEC §11), on the
 * same host and port as the MCP endpoint. The protocol is the MCP SDK's (server/auth): its
 * authorization, token, registration and revocation handlers (PKCE S256 verification, RFC 8252
 * loopback redirect matching, rate limits, error responses) and its metadata routers (RFC 8414,
 * RFC 9728), mounted in an Express app the SDK builds (`createMcpExpressApp`). sigil supplies the
 * `OAuthServerProvider` (below: clients, consent, grants) and what the SDK has no piece for:
 *
 * - the `/mcp` challenge: a static `sigil_agent_…`/`sigil_admin_…`/`sigil_approver_…` token that
 *   fails gets `error="invalid_token"` with NO `resource_metadata` (its holder is told the token
 *   is wrong, not sent to log in); no token, or a failed OAuth access token, gets the standard
 *   challenge with `resource_metadata`. (The SDK's `requireBearerAuth` cannot tell the two apart,
 *   and checks expiry against the wall clock rather than sigil's.)
 * - the consent form's POST (src/oauth/consent.ts) and the metadata at the root well-known path
 *   (`/.well-known/oauth-protected-resource`, besides the SDK's `…/mcp`);
 * - `client_id_metadata_document_supported` in the authorization server metadata, and public
 *   clients only (`token_endpoint_auth_methods_supported: ["none"]`).
 *
 * Issuer and resource come from the request's Host (already checked against the allow-list): the
 * SIGIL_PUBLIC_URL origin when the request arrived there, otherwise `http://127.0.0.1:PORT` or
 * `http://localhost:PORT` (the SDK accepts a plain-http issuer only on those). On any other host
 * (a LAN address without SIGIL_PUBLIC_URL) OAuth is not offered: 401 without `resource_metadata`.
 */
import type http from "node:http";
import type { OAuthServerProvider, AuthorizationParams } from "@modelcontextprotocol/sdk/server/auth/provider.js";
import type { OAuthClientInformationFull, OAuthTokens, OAuthTokenRevocationRequest, OAuthProtectedResourceMetadata } from "@modelcontextprotocol/sdk/shared/auth.js";
import type { AuthInfo } from "@modelcontextprotocol/sdk/server/auth/types.js";
import { createMcpExpressApp } from "@modelcontextprotocol/sdk/server/express.js";
import { createOAuthMetadata, mcpAuthMetadataRouter } from "@modelcontextprotocol/sdk/server/auth/router.js";
import { authorizationHandler } from "@modelcontextprotocol/sdk/server/auth/handlers/authorize.js";
import { tokenHandler } from "@modelcontextprotocol/sdk/server/auth/handlers/token.js";
import { clientRegistrationHandler } from "@modelcontextprotocol/sdk/server/auth/handlers/register.js";
import { revocationHandler } from "@modelcontextprotocol/sdk/server/auth/handlers/revoke.js";
import { metadataHandler } from "@modelcontextprotocol/sdk/server/auth/handlers/metadata.js";
import { InvalidGrantError, InvalidTargetError, InvalidTokenError, ServerError } from "@modelcontextprotocol/sdk/server/auth/errors.js";
import { logInternal, refId, SigilError } from "../errors.js";
import type { Principal } from "../identity/auth.js";
import type { AdminContext } from "../pipeline/tool.js";
import { scopedAdmin } from "../tenant/scope.js";
import type { Store } from "../../store/types.js";
import type { App } from "../app.js";
import type { Membership } from "../tenant/scope.js";
import { type OAuthClients, isDocumentClientId, sameRedirectUri } from "./clients.js";
import { GrantError, type Grants, isOAuthAccessToken } from "./grants.js";
import { CONSENT_PATH, type ConsentSigner, type ConsoleGate, type ConsentHuman, PAGE_HEADERS, consentPage, messagePage } from "./consent.js";
import { readForm } from "../console/http-util.js";

/** What the OAuth server needs from the rest of sigil (wired in src/cli/main.ts from the App). */
export interface OAuthDeps {
  grants: Grants;
  clients: OAuthClients;
  signer: ConsentSigner;
  gate: ConsoleGate;
  publicUrl?: string;
  /** The admin operations, as the CLI and admin tools call them. */
  admin: { ops: AdminContext; store: Pick<Store, "getIdentity">; member: Membership };
  auth: { adminStillValid(hash: string, tenantId?: string): Promise<boolean> };
}

const PATHS = new Set([
  "/.well-known/oauth-protected-resource",
  "/.well-known/oauth-protected-resource/mcp",
  "/.well-known/oauth-authorization-server",
  "/authorize",
  "/token",
  "/register",
  "/revoke",
  CONSENT_PATH,
]);

const STATIC_TOKEN = /^sigil_(?:agent|admin|approver)_/;
/** Whether a bearer value is one of sigil's static tokens (never sent into OAuth discovery). */
export const isStaticToken = (token: string): boolean => STATIC_TOKEN.test(token);

type Handler = (req: http.IncomingMessage, res: http.ServerResponse) => void;

const quoted = (s: string): string => s.replace(/["\\\r\n]/g, "");

export class OAuthServer {
  private readonly apps = new Map<string, Handler>();

  constructor(private readonly deps: OAuthDeps) {}

  /** Whether grant `id` still stands (sessions opened under it are closed when not). */
  live(grantId: string): Promise<boolean> {
    return this.deps.grants.live(grantId);
  }

  /** Whether this path is the OAuth server's. */
  handles(pathname: string): boolean {
    return PATHS.has(pathname);
  }

  /** The origin OAuth is offered at for this request, or undefined (see the module comment). */
  originOf(req: http.IncomingMessage): string | undefined {
    const host = (req.headers.host ?? "").toLowerCase();
    if (this.deps.publicUrl && new URL(this.deps.publicUrl).host === host) return new URL(this.deps.publicUrl).origin;
    const hostname = host.replace(/:\d+$/, "");
    return hostname === "127.0.0.1" || hostname === "localhost" ? `http://${host}` : undefined;
  }

  private resourceOf = (origin: string): string => `${origin}/mcp`;

  /** The `WWW-Authenticate` value for a request to /mcp that did not authenticate (`error`: a token was presented). */
  challenge(req: http.IncomingMessage, error?: string): string {
    const origin = this.originOf(req);
    const parts = ['Bearer realm="sigil"'];
    if (error) parts.push('error="invalid_token"', `error_description="${quoted(error)}"`);
    if (origin) parts.push(`resource_metadata="${origin}/.well-known/oauth-protected-resource/mcp"`);
    return parts.join(", ");
  }

  /** The principal an OAuth access token names at this resource, or why it names none. */
  async authenticate(req: http.IncomingMessage, token: string): Promise<Principal | { error: string }> {
    const origin = this.originOf(req);
    if (!origin || !isOAuthAccessToken(token)) return { error: "The access token is not valid." };
    try {
      const a = await this.deps.grants.verifyAccess(token);
      if (a.grant.resource !== this.resourceOf(origin)) return { error: "The access token was not issued for this resource." };
      return { kind: "agent", identityId: a.identity.id, tokenHash: a.identity.tokenHash, grantId: a.grant.id };
    } catch (err) {
      if (err instanceof GrantError) return { error: err.message };
      throw err;
    }
  }

  /** Answers one of the OAuth paths. */
  async handle(req: http.IncomingMessage, res: http.ServerResponse, url: URL): Promise<void> {
    const origin = this.originOf(req);
    if (!origin) {
      req.resume();
      res.writeHead(404, { "content-type": "application/json" });
      res.end(JSON.stringify({ error: "not_found", error_description: "OAuth is offered at SIGIL_PUBLIC_URL (https) or on a loopback address." }));
      return;
    }
    if (url.pathname === CONSENT_PATH) return this.consent(req, res, origin);
    let app = this.apps.get(origin);
    if (!app) this.apps.set(origin, (app = this.expressApp(origin)));
    app(req, res);
  }

  /** The SDK's handlers and metadata for one origin. */
  private expressApp(origin: string): Handler {
    const provider = new SigilProvider(this, origin);
    const issuerUrl = new URL(origin);
    const resource = new URL(this.resourceOf(origin));
    const metadata = {
      ...createOAuthMetadata({ provider, issuerUrl }),
      token_endpoint_auth_methods_supported: ["none"],
      revocation_endpoint_auth_methods_supported: ["none"],
      client_id_metadata_document_supported: true,
    };
    const prm: OAuthProtectedResourceMetadata = { resource: resource.href, authorization_servers: [issuerUrl.href], resource_name: "sigil", bearer_methods_supported: ["header"] };
    const app = createMcpExpressApp({ host: issuerUrl.hostname, allowedHosts: [issuerUrl.hostname] });
    app.disable("x-powered-by");
    app.use("/authorize", authorizationHandler({ provider }));
    app.use("/token", tokenHandler({ provider }));
    app.use("/register", clientRegistrationHandler({ clientsStore: provider.clientsStore, clientSecretExpirySeconds: 0 }));
    app.use("/revoke", revocationHandler({ provider }));
    app.use(mcpAuthMetadataRouter({ oauthMetadata: metadata, resourceServerUrl: resource, resourceName: "sigil" }));
    app.use("/.well-known/oauth-protected-resource", metadataHandler(prm));
    app.use((_req: unknown, res: { status(n: number): { json(b: unknown): void } }) => res.status(404).json({ error: "not_found" }));
    // Express's own error page would show a stack: never.
    app.use((err: unknown, _req: unknown, res: { headersSent: boolean; status(n: number): { json(b: unknown): void } }, _next: unknown) => {
      const ref = refId();
      logInternal(ref, "oauth", err);
      if (!res.headersSent) res.status(500).json({ error: "server_error", error_description: `Internal error (${ref}).` });
    });
    return app as Handler;
  }

  // ---- the provider's parts (called by SigilProvider for one origin) ----

  get clients(): OAuthClients {
    return this.deps.clients;
  }
  get grants(): Grants {
    return this.deps.grants;
  }

  /** The resource a request names, checked against this origin's (absent: this origin's). */
  resourceFor(origin: string, resource: URL | undefined): string {
    const mine = this.resourceOf(origin);
    if (resource !== undefined && resource.href !== new URL(mine).href) throw new InvalidTargetError("This authorization server issues tokens only for its own MCP endpoint.");
    return mine;
  }

  /** The signed-in administrator, if the console session is still backed by a valid admin token. */
  private async human(req: http.IncomingMessage): Promise<ConsentHuman | undefined> {
    const h = await this.deps.gate.human(req);
    if (!h) return undefined;
    return (await this.deps.auth.adminStillValid(h.tokenHash, h.tenantId)) ? h : undefined;
  }

  private adminFor(h: ConsentHuman): AdminContext {
    const a = this.deps.admin;
    return h.tenantId === undefined ? a.ops : scopedAdmin(a.ops, a.store, h.tenantId, a.member);
  }

  /** GET /authorize, after the SDK validated client, redirect URI and PKCE parameters: sign in, then consent. */
  async beginConsent(origin: string, client: OAuthClientInformationFull, params: AuthorizationParams, req: http.IncomingMessage, res: http.ServerResponse): Promise<void> {
    // The SDK matched the redirect URI by its parsed parts; sigil's rule is the text itself (clients.ts).
    if (!client.redirect_uris.some((r) => sameRedirectUri(params.redirectUri, r))) {
      res.writeHead(400, { "content-type": "application/json", "cache-control": "no-store" });
      res.end(JSON.stringify({ error: "invalid_request", error_description: "Unregistered redirect_uri" }));
      return;
    }
    const resource = this.resourceFor(origin, params.resource);
    const h = await this.human(req);
    if (!h && (await this.deps.gate.signedIn(req))) {
      // Signed in, but not as an administrator: the sign-in page would send a current session straight
      // back here, and this page back there, forever.
      res.writeHead(403, PAGE_HEADERS);
      res.end(messagePage("Administrators only", "Only an administrator (the root admin or a tenant's) can allow a client to act as an identity. Sign out of the console, sign in with an admin token, and start again from your client."));
      return;
    }
    if (!h) {
      const q = new URLSearchParams({ response_type: "code", client_id: client.client_id, redirect_uri: params.redirectUri, code_challenge: params.codeChallenge, code_challenge_method: "S256", resource });
      if (params.state !== undefined) q.set("state", params.state);
      res.writeHead(302, { location: this.deps.gate.signInPath(`/authorize?${q}`), "cache-control": "no-store" });
      res.end();
      return;
    }
    const { request, sig } = this.deps.signer.sign(
      { clientId: client.client_id, redirectUri: params.redirectUri, challenge: params.codeChallenge, ...(params.state !== undefined ? { state: params.state } : {}), resource, origin },
      h.sessionId,
    );
    await this.renderConsent(res, h, client, params.redirectUri, request, sig);
  }

  private async renderConsent(res: http.ServerResponse, h: ConsentHuman, client: OAuthClientInformationFull, redirectUri: string, request: string, sig: string, error?: string): Promise<void> {
    const identities = (await this.adminFor(h).identities.list()).filter((v) => !v.revokedAt).slice(0, 500);
    const body = consentPage({
      clientName: client.client_name ?? "An unnamed client",
      clientId: client.client_id,
      viaDocument: isDocumentClientId(client.client_id),
      redirectHost: redirectHostOf(redirectUri),
      identities: identities.map((v) => ({ id: v.id, name: v.name, tenantId: v.tenantId })),
      request,
      sig,
      csrf: h.csrf,
      ...(error ? { error } : {}),
    });
    res.writeHead(error ? 400 : 200, PAGE_HEADERS);
    res.end(body);
  }

  /** POST /oauth/consent: the person's decision. */
  private async consent(req: http.IncomingMessage, res: http.ServerResponse, origin: string): Promise<void> {
    const page = (status: number, title: string, text: string): void => {
      res.writeHead(status, PAGE_HEADERS);
      res.end(messagePage(title, text));
    };
    if (req.method !== "POST") return void (req.resume(), page(405, "Not allowed", "The consent form is sent with POST."));
    // A cross-site POST is refused before anything else (as the console does).
    const site = req.headers["sec-fetch-site"];
    if (site !== undefined && site !== "same-origin" && site !== "none") return void (req.resume(), page(403, "Refused", "This form was posted from another site; nothing was changed."));
    const form = await readForm(req, 16 * 1024);
    if (!form) return page(400, "Bad request", "The consent form could not be read.");
    const h = await this.human(req);
    if (!h) return page(403, "Signed out", "Your console session has ended; start again from your client.");
    const p = this.deps.signer.open(form.get("request"), form.get("sig"), h.sessionId);
    if (!h.checkCsrf(form.get("csrf")) || !p || p.origin !== origin) return page(403, "Form expired", "This consent form is not valid (expired, or not from this session); start again from your client.");
    const client = await this.clients.get(p.clientId).catch(() => undefined);
    if (!client || !client.redirect_uris.some((r) => sameRedirectUri(p.redirectUri, r))) return page(400, "Unknown client", "The client is no longer registered with this redirect URI.");
    const back = new URL(p.redirectUri);
    const answer = (params: Record<string, string>): void => {
      for (const [k, v] of Object.entries(params)) back.searchParams.set(k, v);
      if (p.state !== undefined) back.searchParams.set("state", p.state);
      back.searchParams.set("iss", new URL(origin).href);
      res.writeHead(303, { location: back.href, "cache-control": "no-store" });
      res.end();
    };
    if (form.get("decision") !== "approve") return answer({ error: "access_denied", error_description: "The user denied the request." });
    const ctx = this.adminFor(h);
    let identityId = form.get("identity") ?? "";
    try {
      if (identityId === "new") {
        const made = await ctx.identities.create({ name: (form.get("name") ?? "").trim(), channels: [], ...(h.tenantId !== undefined ? { tenantId: h.tenantId } : {}) });
        identityId = made.id;
      }
      const view = await ctx.identities.show(identityId);
      if (view.revokedAt) throw new SigilError("revoked", "That identity is revoked.");
      const { code } = await this.grants.grant({
        identityId: view.id,
        tenantId: view.tenantId,
        clientId: client.client_id,
        clientName: client.client_name ?? "An unnamed client",
        redirectUri: p.redirectUri,
        resource: p.resource,
        challenge: p.challenge,
        grantedBy: h.tokenHash,
      });
      return answer({ code });
    } catch (err) {
      if (!(err instanceof SigilError)) throw err;
      return this.renderConsent(res, h, client, p.redirectUri, form.get("request")!, form.get("sig")!, err.publicMessage);
    }
  }
}

function redirectHostOf(uri: string): string {
  const u = new URL(uri);
  return u.host ? `${u.protocol}//${u.host}` : u.protocol;
}

/** The SDK's provider interface for one origin, backed by sigil's clients, consent and grants. */
class SigilProvider implements OAuthServerProvider {
  constructor(
    private readonly server: OAuthServer,
    private readonly origin: string,
  ) {}

  get clientsStore() {
    const clients = this.server.clients;
    return {
      getClient: (id: string) => clients.get(id),
      registerClient: (c: Omit<OAuthClientInformationFull, "client_id" | "client_id_issued_at">) => clients.register(c),
    };
  }

  async authorize(client: OAuthClientInformationFull, params: AuthorizationParams, res: { req: http.IncomingMessage } & http.ServerResponse): Promise<void> {
    await this.server.beginConsent(this.origin, client, params, res.req, res);
  }

  async challengeForAuthorizationCode(client: OAuthClientInformationFull, code: string): Promise<string> {
    return mapped(() => this.server.grants.challenge(client.client_id, code));
  }

  async exchangeAuthorizationCode(client: OAuthClientInformationFull, code: string, _verifier?: string, redirectUri?: string, resource?: URL): Promise<OAuthTokens> {
    const r = resource === undefined ? undefined : this.server.resourceFor(this.origin, resource);
    return mapped(() => this.server.grants.exchange(client.client_id, code, redirectUri, r));
  }

  async exchangeRefreshToken(client: OAuthClientInformationFull, refreshToken: string, _scopes?: string[], resource?: URL): Promise<OAuthTokens> {
    const r = resource === undefined ? undefined : this.server.resourceFor(this.origin, resource);
    return mapped(() => this.server.grants.refresh(client.client_id, refreshToken, r));
  }

  async verifyAccessToken(token: string): Promise<AuthInfo> {
    const a = await mapped(() => this.server.grants.verifyAccess(token));
    return { token, clientId: a.grant.clientId, scopes: [], expiresAt: Math.floor(a.expiresAt / 1000), resource: new URL(a.grant.resource) };
  }

  async revokeToken(client: OAuthClientInformationFull, request: OAuthTokenRevocationRequest): Promise<void> {
    await this.server.grants.revokeToken(client.client_id, request.token);
  }
}

/** sigil's refusals as the SDK's OAuth errors (which its handlers turn into the standard responses). */
async function mapped<T>(fn: () => Promise<T>): Promise<T> {
  try {
    return await fn();
  } catch (err) {
    if (err instanceof GrantError) {
      if (err.kind === "invalid_target") throw new InvalidTargetError(err.message);
      if (err.kind === "invalid_token") throw new InvalidTokenError(err.message);
      throw new InvalidGrantError(err.message);
    }
    if (err instanceof SigilError) throw new InvalidGrantError(err.publicMessage);
    const ref = refId();
    logInternal(ref, "oauth", err);
    throw new ServerError(`Internal error (${ref}).`);
  }
}

/** The OAuth server of an App, with the console as its sign-in. */
export function oauthServer(app: Pick<App, "oauth" | "admin" | "store" | "delegations" | "auth" | "config">, gate: ConsoleGate): OAuthServer {
  return new OAuthServer({
    grants: app.oauth.grants,
    clients: app.oauth.clients,
    signer: app.oauth.signer,
    gate,
    ...(app.config.publicUrl !== undefined ? { publicUrl: app.config.publicUrl } : {}),
    admin: { ops: app.admin.ops, store: app.store, member: app.delegations.member },
    auth: app.auth,
  });
}
