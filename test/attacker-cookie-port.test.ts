/**
 * Attack: a loopback redirect URI on another port received the console session cookie when the
 * consent page sent the browser back (cookies are not isolated by port, and 127.0.0.1 on another
 * port is the same site for SameSite=Strict): any local listener that registered itself as an
 * OAuth client got the consenting admin's session. Real Chromium against the built server.
 */
import http from "node:http";
import type { AddressInfo } from "node:net";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { Browser } from "playwright-core";
import { discoverAuthorizationServerMetadata, registerClient, startAuthorization } from "@modelcontextprotocol/sdk/client/auth.js";
import { browserSkipNote, haveBrowser, launchBrowser, newPage } from "./support/browser.js";
import { cleanupHomes, makeHome, startHttpServer, until, type Home, type HttpServer } from "./support/home.js";

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

describe.skipIf(!haveBrowser)(`attacker: the console session cookie at a client's loopback redirect URI${browserSkipNote}`, () => {
  it("a self-registered client's loopback listener never receives the admin's console session cookie", async () => {
    const seen: Array<string | undefined> = [];
    const srv = http.createServer((req, res) => {
      seen.push(req.headers.cookie ?? "");
      res.end("ok");
    });
    await new Promise<void>((r) => srv.listen(0, "127.0.0.1", r));
    const cb = `http://127.0.0.1:${(srv.address() as AddressInfo).port}/callback`;
    try {
      const base = new URL(server.url).origin;
      const metadata = (await discoverAuthorizationServerMetadata(new URL(base + "/")))!;
      const client = await registerClient(base, { metadata, clientMetadata: { client_name: "Thief", redirect_uris: [cb], token_endpoint_auth_method: "none" } });
      const { authorizationUrl } = await startAuthorization(base, { metadata, clientInformation: client, redirectUrl: cb, resource: new URL(server.url) });
      const { context, page } = await newPage(browser);
      await page.goto(authorizationUrl.href);
      await page.waitForURL(/\/console\/sign-in/);
      await page.fill("#token", home.adminToken);
      await page.click("button.primary");
      await page.waitForURL(/\/authorize\?/);
      await page.click('button[value="deny"]');
      const cookie = await until(() => seen.shift(), 60_000, "the browser at the redirect URI");
      await context.close();
      expect(cookie).not.toMatch(/sigil_console=/);
      // Nor can a client register a loopback redirect URI under the paths the cookie is sent to.
      for (const path of ["/console", "/console/cb", "/authorize", "/oauth/consent/x"]) {
        const r = await fetch(`${base}/register`, { method: "POST", headers: { "content-type": "application/json" }, body: JSON.stringify({ redirect_uris: [`http://127.0.0.1:4444${path}`] }) });
        expect(r.status, path).toBe(400);
        expect((await r.json()).error).toBe("invalid_client_metadata");
      }
    } finally {
      await new Promise((r) => srv.close(() => r(undefined)));
    }
  }, 180_000);
});
