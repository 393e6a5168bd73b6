/**
 * The console's sign-in and session (SPEC §10): a real Chromium against the built server
 * (`dist/cli.js serve --http`), plus raw requests for what a browser will not send (forged forms,
 * other-origin `next`, a replayed cookie after sign-out) — and `readConsoleSession`, the API other
 * parts of the server (the OAuth consent page) use to know who is signed in.
 */
import http from "node:http";
import type { AddressInfo } from "node:net";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { Browser } from "playwright-core";
import { type HttpServer, type Home, cleanupHomes, makeHome, startHttpServer, withApp } from "./support/home.js";
import { browserSkipNote, haveBrowser, launchBrowser, newPage, screenshot } from "./support/browser.js";

/** The console's origin for a server whose MCP URL is `mcpUrl`. */
const originOf = (mcpUrl: string): string => new URL(mcpUrl).origin;

/** Signs in with raw requests (GET the form for its pre-session cookie and CSRF token, then POST). */
export async function rawSignIn(origin: string, token: string, next = ""): Promise<{ status: number; location?: string; setCookie: string[]; cookie?: string }> {
  const form = await fetch(`${origin}/console/sign-in`);
  const pre = form.headers.getSetCookie().map((c) => c.split(";")[0]!).join("; ");
  const csrf = /name="csrf" value="([^"]+)"/.exec(await form.text())![1]!;
  const r = await fetch(`${origin}/console/sign-in`, {
    method: "POST",
    redirect: "manual",
    headers: { "content-type": "application/x-www-form-urlencoded", cookie: pre },
    body: new URLSearchParams({ csrf, token, next }).toString(),
  });
  const setCookie = r.headers.getSetCookie();
  const session = setCookie.find((c) => /^(__Host-)?sigil_console=/.test(c));
  return { status: r.status, location: r.headers.get("location") ?? undefined, setCookie, cookie: session?.split(";")[0] };
}

describe("console: sign-in and session", () => {
  let home: Home;
  let server: HttpServer;
  let origin: string;

  beforeAll(async () => {
    home = makeHome();
    server = await startHttpServer(home);
    origin = originOf(server.url);
  });
  afterAll(async () => {
    await server?.stop();
    cleanupHomes();
  });

  it("every console response carries the strict Content-Security-Policy (no inline script) and the framing/sniffing headers", async () => {
    for (const path of ["/console/sign-in", "/console/assets/console.js", "/console/identities"]) {
      const r = await fetch(origin + path, { redirect: "manual" });
      const csp = r.headers.get("content-security-policy") ?? "";
      expect(csp, path).toContain("default-src 'none'");
      expect(csp, path).toContain("script-src 'self'");
      expect(csp, path).not.toMatch(/unsafe-inline|unsafe-eval/);
      expect(csp, path).toContain("frame-ancestors 'none'");
      expect(r.headers.get("x-content-type-options"), path).toBe("nosniff");
      expect(r.headers.get("x-frame-options"), path).toBe("DENY");
    }
    // No page has an inline script or style to need one.
    const page = await (await fetch(origin + "/console/sign-in")).text();
    expect(page).not.toMatch(/<script(?![^>]*\bsrc=)[^>]*>/);
    expect(page).not.toMatch(/\sstyle=|<style/);
  });

  it("signs in with the admin token: the session cookie is HttpOnly, SameSite=Strict, 12 h, not Secure over plain http", async () => {
    const r = await rawSignIn(origin, home.adminToken);
    expect(r.status).toBe(303);
    expect(r.location).toBe("/console/identities");
    const c = r.setCookie.find((x) => x.startsWith("sigil_console="))!;
    expect(c).toMatch(/; HttpOnly/);
    expect(c).toMatch(/; SameSite=Strict/);
    expect(c).toMatch(/; Max-Age=43200/);
    expect(c).toMatch(/; Path=\//);
    expect(c).not.toMatch(/Secure/);
    // The cookie is a random handle: the token appears nowhere in it.
    expect(c).not.toContain(home.adminToken.slice(12));
    const page = await fetch(origin + "/console/identities", { headers: { cookie: r.cookie! } });
    expect(page.status).not.toBe(303);
    expect(await page.text()).toContain("root admin");
  });

  it("wrong, agent, and empty tokens are refused with a clear sentence and no session", async () => {
    const agent = home.createIdentity({ name: "signin-agent", channels: "email" });
    const cases: Array<[string, RegExp]> = [
      ["sigil_admin_wrongwrongwrongwrongwrongwrongwrongwrong123", /not a current admin or approver token/],
      [agent.token, /Agent tokens do not sign in/],
      ["", /not a current admin or approver token/],
    ];
    for (const [token, why] of cases) {
      const r = await rawSignIn(origin, token);
      expect(r.status).toBe(401);
      expect(r.cookie).toBeUndefined();
      const form = await fetch(`${origin}/console/sign-in`);
      const pre = form.headers.getSetCookie().map((c) => c.split(";")[0]!).join("; ");
      const csrf = /name="csrf" value="([^"]+)"/.exec(await form.text())![1]!;
      const again = await fetch(`${origin}/console/sign-in`, { method: "POST", headers: { "content-type": "application/x-www-form-urlencoded", cookie: pre }, body: new URLSearchParams({ csrf, token }).toString() });
      const text = await again.text();
      expect(text).toMatch(why);
      if (token) expect(text).not.toContain(token); // never echoed back
    }
  });

  it("the sign-in form refuses a post without its CSRF token or with another browser's (login CSRF)", async () => {
    const noToken = await fetch(`${origin}/console/sign-in`, { method: "POST", redirect: "manual", headers: { "content-type": "application/x-www-form-urlencoded" }, body: new URLSearchParams({ token: home.adminToken }).toString() });
    expect(noToken.status).toBe(403);
    expect(noToken.headers.getSetCookie().some((c) => c.startsWith("sigil_console="))).toBe(false);
    // A token minted for one pre-session cookie does not work with another.
    const a = await fetch(`${origin}/console/sign-in`);
    const csrfA = /name="csrf" value="([^"]+)"/.exec(await a.text())![1]!;
    const b = await fetch(`${origin}/console/sign-in`);
    const preB = b.headers.getSetCookie().map((c) => c.split(";")[0]!).join("; ");
    const mixed = await fetch(`${origin}/console/sign-in`, { method: "POST", redirect: "manual", headers: { "content-type": "application/x-www-form-urlencoded", cookie: preB }, body: new URLSearchParams({ csrf: csrfA, token: home.adminToken }).toString() });
    expect(mixed.status).toBe(403);
    expect(mixed.headers.getSetCookie().some((c) => c.startsWith("sigil_console="))).toBe(false);
  });

  it("`next` returns to a path of this origin only: absolute, protocol-relative and backslash forms go home instead", async () => {
    expect((await rawSignIn(origin, home.adminToken, "/console/approvals/apv_00000000000000000000")).location).toBe("/console/approvals/apv_00000000000000000000");
    expect((await rawSignIn(origin, home.adminToken, "/authorize?client_id=x&state=y")).location).toBe("/authorize?client_id=x&state=y");
    for (const evil of ["https://evil.example/", "//evil.example/x", "/\\evil.example", "\\\\evil.example", "javascript:alert(1)", "/\t/evil.example", "http:/evil.example"]) {
      const r = await rawSignIn(origin, home.adminToken, evil);
      expect(r.status, evil).toBe(303);
      expect(r.location, evil).toBe("/console/identities");
    }
    // An unauthenticated GET is sent to sign in with its own path as next.
    const g = await fetch(`${origin}/console/approvals/apv_00000000000000000000`, { redirect: "manual" });
    expect(g.status).toBe(303);
    expect(g.headers.get("location")).toBe("/console/sign-in?next=%2Fconsole%2Fapprovals%2Fapv_00000000000000000000");
  });

  it("signing out ends the session: the old cookie no longer works, and a post needs the session's CSRF token", async () => {
    const r = await rawSignIn(origin, home.adminToken);
    const page = await (await fetch(origin + "/console/identities", { headers: { cookie: r.cookie! } })).text();
    const csrf = /name="csrf" value="([^"]+)"/.exec(page)![1]!;
    const forged = await fetch(`${origin}/console/sign-out`, { method: "POST", redirect: "manual", headers: { cookie: r.cookie!, "content-type": "application/x-www-form-urlencoded" }, body: "csrf=nope" });
    expect(forged.status).toBe(403);
    expect((await fetch(origin + "/console/identities", { redirect: "manual", headers: { cookie: r.cookie! } })).status).not.toBe(303); // still signed in
    const out = await fetch(`${origin}/console/sign-out`, { method: "POST", redirect: "manual", headers: { cookie: r.cookie!, "content-type": "application/x-www-form-urlencoded" }, body: new URLSearchParams({ csrf }).toString() });
    expect(out.status).toBe(303);
    expect(out.headers.getSetCookie().some((c) => /^sigil_console=;.*Max-Age=0/.test(c))).toBe(true);
    const after = await fetch(origin + "/console/identities", { redirect: "manual", headers: { cookie: r.cookie! } });
    expect(after.status).toBe(303);
    expect(after.headers.get("location")).toMatch(/^\/console\/sign-in/);
  });

  it("a post a browser marks cross-site (Sec-Fetch-Site) is refused before anything else", async () => {
    const r = await rawSignIn(origin, home.adminToken);
    const page = await (await fetch(origin + "/console/identities", { headers: { cookie: r.cookie! } })).text();
    const csrf = /name="csrf" value="([^"]+)"/.exec(page)![1]!;
    const x = await fetch(`${origin}/console/sign-out`, { method: "POST", redirect: "manual", headers: { cookie: r.cookie!, "sec-fetch-site": "cross-site", "content-type": "application/x-www-form-urlencoded" }, body: new URLSearchParams({ csrf }).toString() });
    expect(x.status).toBe(403);
    expect((await fetch(origin + "/console/identities", { redirect: "manual", headers: { cookie: r.cookie! } })).status).not.toBe(303); // still signed in
    // And another Origin is refused by the server's Origin check, as on /mcp.
    const o = await fetch(`${origin}/console/sign-out`, { method: "POST", redirect: "manual", headers: { cookie: r.cookie!, origin: "https://evil.example", "content-type": "application/x-www-form-urlencoded" }, body: new URLSearchParams({ csrf }).toString() });
    expect(o.status).toBe(403);
  });

  it("a tenant admin and an approver sign in too; removing the approver ends its session at its next request", async () => {
    const tenant = home.createTenant("acme");
    const t = await rawSignIn(origin, tenant.adminToken);
    expect(t.location).toBe("/console/identities");
    expect(await (await fetch(origin + "/console/identities", { headers: { cookie: t.cookie! } })).text()).toContain(`admin of tenant ${tenant.id}`);
    const apr = home.addApprover({ name: "Ann", tenant: tenant.id });
    const a = await rawSignIn(origin, apr.token);
    expect(a.location).toBe("/console/approvals");
    expect((await fetch(origin + "/console/approvals", { redirect: "manual", headers: { cookie: a.cookie! } })).status).not.toBe(303);
    home.json(["approver", "remove", apr.id]);
    const gone = await fetch(origin + "/console/approvals", { redirect: "manual", headers: { cookie: a.cookie! } });
    expect(gone.status).toBe(303);
    expect(gone.headers.get("location")).toMatch(/^\/console\/sign-in/);
  });

  it.skipIf(!haveBrowser)(`in Chromium: sign in by pasting the token, land on the console, sign out${browserSkipNote}`, async () => {
    const browser: Browser = await launchBrowser();
    try {
      const { context, page } = await newPage(browser);
      await page.goto(origin + "/console");
      expect(new URL(page.url()).pathname).toBe("/console/sign-in");
      await screenshot(page, "sign-in");
      await page.fill("#token", home.adminToken);
      await page.click("form.signin button[type=submit]");
      await page.waitForURL(/\/console\/identities/);
      expect(await page.textContent("header")).toContain("root admin");
      const cookie = (await context.cookies()).find((c) => c.name === "sigil_console")!;
      expect(cookie.httpOnly).toBe(true);
      expect(cookie.sameSite).toBe("Strict");
      expect(cookie.secure).toBe(false);
      // The token is nowhere in the page the browser holds.
      expect(await page.content()).not.toContain(home.adminToken);
      await page.click("header button[type=submit]");
      await page.waitForURL(/\/console\/sign-in/);
      expect((await context.cookies()).some((c) => c.name === "sigil_console")).toBe(false);
    } finally {
      await browser.close();
    }
  });
});

describe("console: behind https (SIGIL_PUBLIC_URL)", () => {
  it("the session cookie is Secure and __Host- prefixed", async () => {
    const home = makeHome({ SIGIL_PUBLIC_URL: "https://sigil.example" });
    const server = await startHttpServer(home);
    try {
      const r = await rawSignIn(originOf(server.url), home.adminToken);
      const c = r.setCookie.find((x) => x.startsWith("__Host-sigil_console="))!;
      expect(c).toMatch(/; Secure/);
      expect(c).toMatch(/; HttpOnly/);
      expect(c).toMatch(/; SameSite=Strict/);
      expect(c).toMatch(/; Path=\//);
    } finally {
      await server.stop();
    }
  });
});

describe("readConsoleSession (for other pages of the server, e.g. OAuth consent)", () => {
  it("names the signed-in principal for a request carrying the session cookie, and no one otherwise", async () => {
    const home = makeHome();
    const tenant = home.createTenant("t1");
    await withApp(home, async (app) => {
      const { serveHttp } = await import("../src/server/http.js");
      const { readConsoleSession, signInPath } = await import("../src/console/index.js");
      const served = await serveHttp(app, { host: "127.0.0.1", port: 0 });
      const probe = http.createServer((req, res) => {
        void readConsoleSession(app, req).then((p) => res.end(JSON.stringify(p ?? null)));
      });
      await new Promise<void>((r) => probe.listen(0, "127.0.0.1", r));
      const probeUrl = `http://127.0.0.1:${(probe.address() as AddressInfo).port}/`;
      try {
        const origin = new URL(served.url).origin;
        const root = await rawSignIn(origin, home.adminToken);
        const ten = await rawSignIn(origin, tenant.adminToken);
        expect(await (await fetch(probeUrl, { headers: { cookie: root.cookie! } })).json()).toMatchObject({ kind: "admin" });
        expect((await (await fetch(probeUrl, { headers: { cookie: root.cookie! } })).json()).tenantId).toBeUndefined();
        expect(await (await fetch(probeUrl, { headers: { cookie: ten.cookie! } })).json()).toMatchObject({ kind: "admin", tenantId: tenant.id });
        expect(await (await fetch(probeUrl)).json()).toBeNull();
        expect(await (await fetch(probeUrl, { headers: { cookie: "sigil_console=" + "A".repeat(43) } })).json()).toBeNull();
        expect(signInPath("/authorize?x=1")).toBe("/console/sign-in?next=%2Fauthorize%3Fx%3D1");
        expect(signInPath("https://evil.example/")).toBe("/console/sign-in?next=%2Fconsole");
      } finally {
        probe.close();
        await served.close();
      }
    });
  });
});
