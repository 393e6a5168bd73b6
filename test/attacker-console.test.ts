/**
 * A hostile reviewer's attacks on the web console (SPEC §10) against the built server (`sigil
 * serve --http`), with raw requests (what a browser would send after a crafted link). Each case is
 * an attack that once worked, or would without the code it pins.
 */
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { type HttpServer, type Home, cleanupHomes, makeHome, startHttpServer } from "./support/home.js";

let home: Home;
let server: HttpServer;
let origin: string;

beforeAll(async () => {
  home = makeHome();
  server = await startHttpServer(home);
  origin = new URL(server.url).origin;
}, 60_000);
afterAll(async () => {
  await server?.stop();
  cleanupHomes();
});

/** The sign-in page as a crafted link opens it, then the person's sign-in from that page (its hidden `next` as rendered). */
async function signInFromLink(search: string, token: string): Promise<{ location: string | null; cookie: string }> {
  const page = await fetch(`${origin}/console/sign-in${search}`);
  const pre = page.headers.getSetCookie().map((c) => c.split(";")[0]!).join("; ");
  const text = await page.text();
  const csrf = /name="csrf" value="([^"]+)"/.exec(text)![1]!;
  const next = /name="next" value="([^"]*)"/.exec(text)![1]!.replace(/&#x2F;|&#47;/g, "/").replace(/&amp;/g, "&");
  const r = await fetch(`${origin}/console/sign-in`, {
    method: "POST",
    redirect: "manual",
    headers: { "content-type": "application/x-www-form-urlencoded", cookie: pre },
    body: new URLSearchParams({ csrf, token, next }).toString(),
  });
  const cookie = r.headers.getSetCookie().find((c) => /^(__Host-)?sigil_console=/.test(c))!.split(";")[0]!;
  return { location: r.headers.get("location"), cookie };
}

/** Whether a Location header would take a browser to another origin. */
const leavesOrigin = (location: string | null): boolean => location !== null && new URL(location, origin).origin !== origin;

describe("attacker: console open redirect through next", () => {
  const tricks = ["/.//evil.example/", "/..//evil.example/", "/console/..//evil.example/", "/%2e//evil.example/", "/%2e%2e//evil.example/"];

  it("dot segments that normalise to //host never send the signed-in person to another origin", async () => {
    for (const next of tricks) {
      const { location, cookie } = await signInFromLink(`?next=${encodeURIComponent(next)}`, home.adminToken);
      expect(leavesOrigin(location), `${next} → ${location}`).toBe(false);
      // Already signed in: the sign-in page redirects at once; same rule.
      const again = await fetch(`${origin}/console/sign-in?next=${encodeURIComponent(next)}`, { redirect: "manual", headers: { cookie } });
      expect(again.status).toBe(303);
      expect(leavesOrigin(again.headers.get("location")), `${next} → ${again.headers.get("location")}`).toBe(false);
    }
  }, 120_000);
});
