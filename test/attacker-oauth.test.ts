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
