/**
 * The whole OAuth flow as a client that only knows the URL runs it: the MCP SDK's Client with its
 * own OAuthClientProvider support (StreamableHTTPClientTransport + auth()) against the built
 * server, the person signing in to the console and consenting in Chromium, the browser brought
 * back to the client's loopback redirect URI.
 */
import http from "node:http";
import type { AddressInfo } from "node:net";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { Browser, Page } from "playwright-core";
import { Client } from "@modelcontextprotocol/sdk/client/index.js";
import { StreamableHTTPClientTransport } from "@modelcontextprotocol/sdk/client/streamableHttp.js";
import { UnauthorizedError, type OAuthClientProvider } from "@modelcontextprotocol/sdk/client/auth.js";
import type { OAuthClientInformationMixed, OAuthClientMetadata, OAuthTokens } from "@modelcontextprotocol/sdk/shared/auth.js";
import { browserSkipNote, haveBrowser, launchBrowser, newPage } from "./support/browser.js";
import { cleanupHomes, makeHome, startHttpServer, until, type Home, type HttpServer } from "./support/home.js";

/** A loopback redirect URI that records what the browser brings back (as a native client's listener does). */
async function callbackListener(): Promise<{ url: string; next: () => Promise<URL>; close: () => Promise<void> }> {
  const seen: URL[] = [];
  const srv = http.createServer((req, res) => {
    seen.push(new URL(req.url!, "http://127.0.0.1"));
    res.writeHead(200, { "content-type": "text/plain" });
    res.end("You can close this window.");
  });
  await new Promise<void>((r) => srv.listen(0, "127.0.0.1", r));
  const url = `http://127.0.0.1:${(srv.address() as AddressInfo).port}/callback`;
  return { url, next: () => until(() => seen.shift(), 60_000, "the browser at the redirect URI"), close: () => new Promise((r) => srv.close(() => r())) };
}

/** The SDK's client-side provider interface, kept in memory (what Claude Code or VS Code keep on disk). */
class MemoryProvider implements OAuthClientProvider {
  info?: OAuthClientInformationMixed;
  saved?: OAuthTokens;
  verifier = "";
  authorizationUrl?: URL;
  constructor(
    private readonly redirect: string,
    private readonly name: string,
  ) {}
  get redirectUrl(): string {
    return this.redirect;
  }
  get clientMetadata(): OAuthClientMetadata {
    return { client_name: this.name, redirect_uris: [this.redirect], token_endpoint_auth_method: "none", grant_types: ["authorization_code", "refresh_token"], response_types: ["code"] };
  }
  clientInformation() {
    return this.info;
  }
  saveClientInformation(info: OAuthClientInformationMixed) {
    this.info = info;
  }
  tokens() {
    return this.saved;
  }
  saveTokens(t: OAuthTokens) {
    this.saved = t;
  }
  redirectToAuthorization(url: URL) {
    this.authorizationUrl = url;
  }
  saveCodeVerifier(v: string) {
    this.verifier = v;
  }
  codeVerifier() {
    return this.verifier;
  }
}

let home: Home;
let server: HttpServer;
let browser: Browser;

beforeAll(async () => {
  if (!haveBrowser) return;
  home = makeHome();
  server = await startHttpServer(home);
  browser = await launchBrowser();
}, 90_000);
afterAll(async () => {
  await browser?.close();
  await server?.stop();
  cleanupHomes();
});

/** Connects the SDK client; on 401 the SDK registers, builds the authorization URL and hands it to the provider. */
async function connect(provider: MemoryProvider): Promise<Client | "needs-authorization"> {
  const client = new Client({ name: "oauth-e2e", version: "1.0.0" });
  try {
    await client.connect(new StreamableHTTPClientTransport(new URL(server.url), { authProvider: provider }));
    return client;
  } catch (err) {
    if (err instanceof UnauthorizedError) return "needs-authorization";
    throw err;
  }
}

async function signIn(page: Page, token: string): Promise<void> {
  await page.waitForURL(/\/console\/sign-in/);
  await page.fill("#token", token);
  await page.click("button.primary");
}

describe.skipIf(!haveBrowser)(`OAuth end to end: the SDK client, the console and the consent page in Chromium${browserSkipNote}`, () => {
  it("a client that only knows the URL registers, the person signs in and consents, and the client acts as the chosen identity", async () => {
    const agent = home.createIdentity({ name: "chosen-agent", channels: "" });
    home.createIdentity({ name: "other-agent", channels: "" });
    const cb = await callbackListener();
    const provider = new MemoryProvider(cb.url, "E2E Client");
    try {
      expect(await connect(provider)).toBe("needs-authorization");
      expect(provider.info?.client_id).toMatch(/^oc_/); // registered dynamically
      const { context, page } = await newPage(browser);
      await page.goto(provider.authorizationUrl!.href);
      await signIn(page, home.adminToken);
      // The consent page: the client's name, that it is unverified, where the browser goes back to.
      await page.waitForURL(/\/authorize\?/);
      const body = await page.textContent("main");
      expect(body).toContain("E2E Client");
      expect(body).toContain("registered itself");
      expect(body).toContain(new URL(cb.url).origin);
      await page.check(`input[value="${agent.id}"]`);
      await page.click('button[value="approve"]');
      const back = await cb.next();
      expect(back.searchParams.get("error")).toBeNull();
      const code = back.searchParams.get("code")!;
      expect(code).toMatch(/^sigil_oac_/);
      expect(back.searchParams.get("state")).toBe(provider.authorizationUrl!.searchParams.get("state"));
      await context.close();

      // The SDK finishes: code + PKCE verifier → tokens; then the client connects and acts.
      const transport = new StreamableHTTPClientTransport(new URL(server.url), { authProvider: provider });
      await transport.finishAuth(code);
      expect(provider.saved?.access_token).toMatch(/^sigil_oat_/);
      const client = (await connect(provider)) as Client;
      const who = await client.callTool({ name: "whoami", arguments: {} });
      expect((who.structuredContent as any).id).toBe(agent.id);
      await client.close();
      const log = home.auditLog(agent.id);
      expect(log.some((e) => e.tool === "oauth_granted" && e.phase === "intent" && e.client === provider.info!.client_id)).toBe(true);
    } finally {
      await cb.close();
    }
  }, 180_000);

  it("a tenant admin chooses among its tenant's identities only, can create one, and a forged choice or a replayed form changes nothing", async () => {
    const tenant = home.createTenant("acme");
    const theirs = home.createIdentity({ name: "acme-agent", channels: "", tenant: tenant.id });
    const outsider = home.createIdentity({ name: "default-agent", channels: "" });
    const cb = await callbackListener();
    const provider = new MemoryProvider(cb.url, "Tenant Client");
    try {
      expect(await connect(provider)).toBe("needs-authorization");
      const { context, page } = await newPage(browser);
      await page.goto(provider.authorizationUrl!.href);
      await signIn(page, tenant.adminToken);
      await page.waitForURL(/\/authorize\?/);
      const values = await page.$$eval('input[name="identity"]', (xs) => xs.map((x) => (x as HTMLInputElement).value));
      expect(values).toContain(theirs.id);
      expect(values).not.toContain(outsider.id);
      // Forged: another tenant's identity id in the posted form.
      await page.$eval(`input[value="${theirs.id}"]`, (el, id) => ((el as HTMLInputElement).value = id), outsider.id);
      await page.check(`input[value="${outsider.id}"]`);
      await page.click('button[value="approve"]');
      await page.waitForSelector(".err");
      expect(await page.textContent(".err")).toMatch(/No identity|not_found|no such/i);
      // A form whose signed request was altered (another redirect URI) is refused.
      const cookies = await context.cookies();
      const form = await page.$$eval('form input[type="hidden"]', (xs) => Object.fromEntries(xs.map((x) => [(x as HTMLInputElement).name, (x as HTMLInputElement).value])));
      const forged = JSON.parse(Buffer.from(form.request!, "base64url").toString());
      forged.redirectUri = "http://127.0.0.1:1/steal";
      const r = await fetch(`${new URL(server.url).origin}/oauth/consent`, {
        method: "POST",
        redirect: "manual",
        headers: { "content-type": "application/x-www-form-urlencoded", cookie: cookies.map((c) => `${c.name}=${c.value}`).join("; ") },
        body: new URLSearchParams({ ...form, request: Buffer.from(JSON.stringify(forged)).toString("base64url"), identity: theirs.id, decision: "approve" }),
      });
      expect(r.status).toBe(403);
      // No session cookie (another browser) with the genuine form: refused too.
      const anon = await fetch(`${new URL(server.url).origin}/oauth/consent`, { method: "POST", redirect: "manual", headers: { "content-type": "application/x-www-form-urlencoded" }, body: new URLSearchParams({ ...form, identity: theirs.id, decision: "approve" }) });
      expect(anon.status).toBe(403);
      // A new identity, created in the tenant, is the one the client gets.
      await page.check('input[value="new"]');
      await page.fill('input[name="name"]', "made-by-consent");
      await page.click('button[value="approve"]');
      const back = await cb.next();
      await context.close();
      const transport = new StreamableHTTPClientTransport(new URL(server.url), { authProvider: provider });
      await transport.finishAuth(back.searchParams.get("code")!);
      const client = (await connect(provider)) as Client;
      const who = (await client.callTool({ name: "whoami", arguments: {} })).structuredContent as any;
      expect(who.name).toBe("made-by-consent");
      expect(who.tenantId ?? tenant.id).toBe(tenant.id);
      await client.close();
      expect(home.auditLog(outsider.id).some((e) => String(e.tool).startsWith("oauth_"))).toBe(false);
    } finally {
      await cb.close();
    }
  }, 180_000);

  it("Deny sends the browser back with access_denied and grants nothing", async () => {
    const cb = await callbackListener();
    const provider = new MemoryProvider(cb.url, "Denied Client");
    try {
      expect(await connect(provider)).toBe("needs-authorization");
      const { context, page } = await newPage(browser);
      await page.goto(provider.authorizationUrl!.href);
      await signIn(page, home.adminToken);
      await page.waitForURL(/\/authorize\?/);
      await page.click('button[value="deny"]');
      const back = await cb.next();
      await context.close();
      expect(back.searchParams.get("error")).toBe("access_denied");
      expect(back.searchParams.get("code")).toBeNull();
    } finally {
      await cb.close();
    }
  }, 180_000);
});
