/**
 * A hostile reviewer's attacks on OAuth (SPEC §11) against the built server (`sigil serve --http`),
 * with the MCP SDK's client-side OAuth functions and raw fetch. Each case is an attack that once
 * worked (or would, without the code it pins).
 */
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { startAuthorization } from "@modelcontextprotocol/sdk/client/auth.js";
import { REDIRECT, startOAuthServer, type OAuthServer } from "./support/oauth.js";
import { cleanupHomes, type Home, type Identity } from "./support/home.js";

let o: OAuthServer;
let home: Home;
let base: string;
let agent: Identity;

beforeAll(async () => {
  o = await startOAuthServer("oauth-victim");
  ({ home, base, agent } = o);
}, 60_000);
afterAll(async () => {
  await o?.server.stop();
  cleanupHomes();
});

/** A grant made as the consent form makes it, and its first access token (the code exchanged by the client). */
async function grantAndExchange(): Promise<{ access: string; grantId: string; clientId: string }> {
  const client = await o.newClient("Victim's client");
  const t = await o.tokensFor(client, agent.id);
  return { access: t.access_token, grantId: t.grantId, clientId: client.client_id };
}

describe("attacker: OAuth code-reuse detection", () => {
  it("a forged code naming a used grant (its id and client id are in every audit entry and bundle) does not revoke the grant", async () => {
    const { access, grantId, clientId } = await grantAndExchange();
    expect((await o.initialize(access)).status).toBe(200);
    // The attacker never saw the code: only the grant id (audit entries, bundles, the token's own
    // prefix) and the client id. A code of the right shape with random bits must change nothing.
    const forged = `sigil_oac_${grantId}_${"A".repeat(43)}`;
    const r = await fetch(`${base}/token`, {
      method: "POST",
      headers: { "content-type": "application/x-www-form-urlencoded" },
      body: new URLSearchParams({ grant_type: "authorization_code", code: forged, code_verifier: "x".repeat(43), client_id: clientId, redirect_uri: REDIRECT }).toString(),
    });
    expect(r.status).toBe(400);
    expect((await r.json()).error).toBe("invalid_grant");
    // The victim's grant stands.
    expect((await o.initialize(access)).status).toBe(200);
    expect(home.auditLog(agent.id).some((e) => e.tool === "oauth_revoked" && e.grant === grantId)).toBe(false);
  }, 60_000);
});

describe("attacker: an approver's console session at /authorize", () => {
  it("is told that only an administrator can allow a client (once), not bounced between /authorize and the sign-in page forever", async () => {
    const approver = home.addApprover({ name: "Approver at authorize" });
    const page = await fetch(`${base}/console/sign-in`);
    const pre = page.headers.getSetCookie().map((c) => c.split(";")[0]!).join("; ");
    const csrf = /name="csrf" value="([^"]+)"/.exec(await page.text())![1]!;
    const signIn = await fetch(`${base}/console/sign-in`, {
      method: "POST",
      redirect: "manual",
      headers: { "content-type": "application/x-www-form-urlencoded", cookie: pre },
      body: new URLSearchParams({ csrf, token: approver.token, next: "" }).toString(),
    });
    const cookie = signIn.headers.getSetCookie().find((c) => /^sigil_console=/.test(c))!.split(";")[0]!;
    const client = await o.newClient("Some client");
    const { authorizationUrl } = await startAuthorization(base, { metadata: o.metadata, clientInformation: client, redirectUrl: REDIRECT, resource: new URL(o.server.url) });
    const r = await fetch(authorizationUrl, { redirect: "manual", headers: { cookie } });
    expect(r.status).toBe(403);
    expect(r.headers.get("x-frame-options")).toBe("DENY");
    expect(await r.text()).toMatch(/administrator/);
  }, 60_000);
});

describe("attacker: redirect URIs that parse to the registered one but are not it", () => {
  it("a fragment, userinfo, dot segments, another spelling of 127.0.0.1 or an empty query are refused with 400 (never a redirect); only the port of a loopback URI may differ", async () => {
    const client = await o.newClient("Spelling client");
    const authorize = (redirect: string) =>
      fetch(`${base}/authorize?${new URLSearchParams({ response_type: "code", client_id: client.client_id, redirect_uri: redirect, code_challenge: "x".repeat(43), code_challenge_method: "S256" })}`, { redirect: "manual" });
    const port = new URL(REDIRECT).port;
    for (const bad of [
      `${REDIRECT}#x`,
      `http://evil@127.0.0.1:${port}/callback`,
      `http://127.0.0.1:${port}/./callback`,
      `http://127.0.0.1:${port}/x/../callback`,
      `http://0x7f.0.0.1:${port}/callback`,
      `http://127.1:${port}/callback`,
      `${REDIRECT}?`,
      `HTTP://127.0.0.1:${port}/callback`,
    ]) {
      const r = await authorize(bad);
      expect(r.status, bad).toBe(400);
      expect(r.headers.get("location"), bad).toBeNull();
    }
    // The registered URI itself, and on another port (RFC 8252 §7.3), go on to sign in.
    for (const good of [REDIRECT, "http://127.0.0.1:1/callback", "http://127.0.0.1/callback"]) {
      const r = await authorize(good);
      expect(r.status, good).toBe(302);
      expect(r.headers.get("location"), good).toMatch(/^\/console\/sign-in\?/);
    }
  }, 60_000);
});
