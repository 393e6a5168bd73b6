/**
 * What a `sigil serve` process does not load. The twilio library is ~7 MB of source: loaded by a
 * process that delivers SMS to the outbox, it stayed resident (most of the server's peak-RSS gap to
 * a bare MCP server in `npm run bench`). It must be loaded only when the Twilio provider is used.
 */
import { existsSync, mkdtempSync, readFileSync, rmSync } from "node:fs";
import os from "node:os";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { afterAll, afterEach, describe, expect, it } from "vitest";
import { cleanupHomes, makeHome, stdioClient, text, type Home, type Identity } from "./support/home.js";
import { eventually } from "./support/channels.js";
import { startTwilioServer, type TestTwilioServer } from "./support/twilio.js";

const HOOK = fileURLToPath(new URL("./support/module-log.mjs", import.meta.url));
const SID = "AC" + "0123456789abcdef".repeat(2);
const TOKEN = "twilio-test-auth-token-lazy";
const OWN = "+14155550100";
/** A string of the twilio library's own code (its User-Agent format), bundled or not. */
const TWILIO_CODE = "twilio-node/%s";

const dirs: string[] = [];
const servers: TestTwilioServer[] = [];
afterEach(async () => {
  await Promise.all(servers.splice(0).map((s) => s.close()));
});
afterAll(() => {
  cleanupHomes();
  for (const d of dirs) rmSync(d, { recursive: true, force: true });
});

/** Sends one SMS through `sigil serve` (stdio, the SDK client) and returns the files that process loaded. */
async function loadedBy(home: Home, who: Identity, env: NodeJS.ProcessEnv): Promise<string[]> {
  const dir = mkdtempSync(path.join(os.tmpdir(), "sigil-modlog-"));
  dirs.push(dir);
  const logFile = path.join(dir, "modules.log");
  const { client, transport } = await stdioClient(home, who.token, { env: { ...env, NODE_OPTIONS: `--import=${HOOK}`, SIGIL_TEST_MODULE_LOG: logFile } });
  const r = await client.callTool({ name: "send_sms", arguments: { to: "+14155550123", body: "lazy loading check" } });
  expect(r.isError, text(r)).toBeFalsy();
  const pid = transport.pid!;
  await client.close();
  // The exit hook appends require's cache last: wait for the process to be gone.
  await eventually(() => {
    try {
      process.kill(pid, 0);
      return false;
    } catch {
      return true;
    }
  }, 30_000);
  expect(existsSync(logFile)).toBe(true);
  const files = readFileSync(logFile, "utf8").split("\n").filter((l) => l.startsWith("file:") || l.startsWith("/"));
  return [...new Set(files.map((f) => (f.startsWith("file:") ? fileURLToPath(f) : f)))];
}

const carriesTwilio = (files: string[]): string[] => files.filter((f) => f.includes(`${path.sep}twilio${path.sep}`) || readFileSync(f, "utf8").includes(TWILIO_CODE));

describe("sigil serve loads the twilio library only for the Twilio provider", () => {
  it("an SMS to the outbox loads none of twilio's code; an SMS through Twilio does (so the check sees it)", { timeout: 120_000 }, async () => {
    const home = makeHome();
    const a = home.createIdentity({ channels: "sms", policy: { allowedPhoneCountries: ["US"] }, phone: OWN });

    const outbox = await loadedBy(home, a, {});
    expect(outbox.some((f) => f.endsWith("cli.js")), "the module log records the server's own modules").toBe(true);
    expect(carriesTwilio(outbox)).toEqual([]);

    const server = await startTwilioServer({ accountSid: SID, authToken: TOKEN });
    servers.push(server);
    const viaTwilio = await loadedBy(home, a, { TWILIO_ACCOUNT_SID: SID, TWILIO_AUTH_TOKEN: TOKEN, SIGIL_TWILIO_API_URL: server.url });
    expect(server.requests).toHaveLength(1);
    expect(carriesTwilio(viaTwilio).length).toBeGreaterThan(0);
  });
});
