/**
 * `npm start`: the two-command quick start. Checks that the port is free before it creates
 * anything, initialises a home if there is none (printing the admin token once), creates a demo
 * identity on first run (printing its token once, what its policy lets it do, and the mcp.json
 * snippet that launches this installation — an absolute `node …/dist/cli.js serve`, never npx),
 * then serves Streamable HTTP. Providers are the offline outbox unless the environment configures
 * SMTP or Twilio.
 */
import { realpathSync } from "node:fs";
import path from "node:path";
import { type App, initHome, openApp } from "../app.js";
import { SigilError } from "../errors.js";
import type { Config } from "../config.js";
import { checkPortFree } from "./listen.js";

const DEMO_POLICY = {
  allowedDomains: ["example.com"],
  maxRecipients: 5,
  allowedPhoneCountries: ["US", "CA"],
  allowedSecrets: ["demo/*"],
  cardSpendingLimitCents: 10000,
  cardPerChargeLimitCents: 5000,
  approvalAboveCents: 2500,
  allowedSigningOrigins: ["https://shop.example"],
  rateLimits: { send_sms: { perMinute: 5, perDay: 100 }, send_email: { perMinute: 10, perDay: 500 } },
};

/** How this installation's CLI is launched: this node binary and the real path of dist/cli.js. */
export function cliLaunch(argv1 = process.argv[1] ?? ""): { command: string; cli: string } {
  let cli = path.resolve(argv1);
  try {
    cli = realpathSync(cli); // through npm's bin symlink, if any
  } catch {
    /* as given */
  }
  return { command: process.execPath, cli };
}

const money = (cents: number, currency: string): string => `${(cents / 100).toFixed(2)} ${currency}`;
const list = (xs: unknown): string => (Array.isArray(xs) ? xs.map(String).join(", ") : "");

/** What a policy lets an identity do, one line per channel (a reading of the policy, not a second policy). */
export function describePolicy(policy: Record<string, unknown>, channels: string[], own: { email?: string; phone?: string }): string[] {
  const p = policy as Record<string, any>;
  const has = (c: string): boolean => channels.includes(c);
  const out: string[] = [];
  if (has("email")) {
    out.push(
      p.allowedDomains
        ? `email from ${own.email}: to ${list(p.allowedDomains) === "*" ? "any domain" : `${list(p.allowedDomains)} (and subdomains)`}, at most ${p.maxRecipients ?? 10} recipients per message`
        : "email: none (the policy allows no domain)",
    );
  }
  if (has("sms") || has("voice")) {
    const to = [p.allowedPhoneCountries ? `numbers in ${list(p.allowedPhoneCountries)}` : "", p.allowedPhoneNumbers ? list(p.allowedPhoneNumbers) : ""].filter(Boolean).join(" and ");
    const what = [has("sms") && "SMS", has("voice") && "calls"].filter(Boolean).join(" and ");
    out.push(to ? `${what} from ${own.phone ?? "(no number)"}: to ${to} (premium-rate numbers never)` : `${what}: none (the policy allows no destination)`);
  }
  if (has("vault")) out.push(p.allowedSecrets ? `vault: read secrets named ${list(p.allowedSecrets)}` : "vault: no secret");
  if (has("card")) {
    const cur = typeof p.cardCurrency === "string" ? p.cardCurrency : "USD";
    if (typeof p.cardSpendingLimitCents !== "number") out.push("card: no charge (no spending limit set)");
    else {
      const parts = [`up to ${money(p.cardSpendingLimitCents, cur)} in any 24 hours`];
      if (typeof p.cardPerChargeLimitCents === "number") parts.push(`at most ${money(p.cardPerChargeLimitCents, cur)} per charge`);
      if (typeof p.approvalAboveCents === "number") parts.push(`a human approves each charge above ${money(p.approvalAboveCents, cur)}`);
      if (p.allowedMerchantCategories) parts.push(`merchant categories ${list(p.allowedMerchantCategories)} only`);
      if (p.blockedMerchantCategories) parts.push(`never categories ${list(p.blockedMerchantCategories)}`);
      out.push(`card: ${parts.join("; ")}`);
    }
  }
  if (has("sign")) out.push(p.allowedSigningOrigins ? `sign HTTP requests for ${list(p.allowedSigningOrigins)}` : "sign: nothing (no origin allowed)");
  const limits = Object.entries((p.rateLimits ?? {}) as Record<string, { perMinute?: number; perDay?: number }>).map(
    ([tool, l]) => `${tool} ${[l.perMinute !== undefined && `${l.perMinute}/minute`, l.perDay !== undefined && `${l.perDay}/day`].filter(Boolean).join(", ")}`,
  );
  if (limits.length > 0) out.push(`rate limits: ${limits.join("; ")}`);
  return out;
}

export async function quickStart(
  home: string,
  config: Config,
  host: string,
  port: number,
  serve: (app: App, host: string, port: number) => Promise<string>,
): Promise<void> {
  // A busy port fails here, before a home or an identity (and tokens shown only once) exist.
  await checkPortFree(host, port);
  const lines: string[] = [];
  try {
    const { adminToken } = await initHome({ home, config });
    lines.push(`Initialised a new sigil home at ${home}.`, `Admin token (shown once; keep it safe): ${adminToken}`);
  } catch (err) {
    if (!(err instanceof SigilError && err.code === "already_initialised")) throw err;
    lines.push(`Using the sigil home at ${home}.`);
  }
  const app = await openApp({ home, config });
  const { command, cli } = cliLaunch();
  const q = (s: string): string => (/[^\w@%+=:,./-]/.test(s) ? `'${s.replace(/'/g, `'\\''`)}'` : s);
  const sigilCmd = `SIGIL_HOME=${q(home)} ${q(command)} ${q(cli)}`;
  let demoToken: string | undefined;
  let demo = (await app.identities.list()).find((i) => i.name === "demo-agent" && !i.revokedAt);
  if (!demo) {
    const created = await app.identities.create({
      name: "demo-agent",
      channels: ["email", "sms", "voice", "vault", "card", "sign"],
      policy: DEMO_POLICY,
      email: "demo-agent@example.com",
      phone: "+14155550100",
    });
    demoToken = created.token;
    demo = await app.identities.show(created.id);
  }
  if (demoToken) {
    lines.push(`Demo identity ${demo.id} (demo-agent); its token (shown once): ${demoToken}`);
  } else {
    lines.push(`Demo identity ${demo.id} exists; get a fresh token with: ${sigilCmd} identity rotate-token ${demo.id}`);
  }
  lines.push(`The demo agent may (policy v${demo.policyVersion}; everything else is refused):`);
  for (const l of describePolicy(demo.policy, demo.channels, { email: demo.email, phone: demo.phone })) lines.push(`  - ${l}`);
  let url: string;
  try {
    url = await serve(app, host, port);
  } catch (err) {
    // Whatever went wrong, the tokens above were shown only once: print them before failing.
    process.stdout.write(lines.join("\n") + "\nNot serving (see the error below).\n");
    throw err;
  }
  lines.push(`Serving MCP (Streamable HTTP) at ${url}`);
  lines.push(`Web console: ${url.replace(/\/mcp$/, "/console")} (sign in with the admin token)`);
  const token = demoToken ?? "<agent token>";
  const snippet = {
    mcpServers: {
      // stdio: the client starts this installation itself (no registry lookup, works without npm start running).
      sigil: { command, args: [cli, "serve"], env: { SIGIL_TOKEN: token, SIGIL_HOME: home } },
      // Streamable HTTP: this server, while npm start runs.
      "sigil-http": { type: "http", url, headers: { Authorization: `Bearer ${token}` } },
    },
  };
  lines.push("Add this to your client's mcp.json (either entry):", JSON.stringify(snippet, null, 2));
  lines.push("Sends go to the offline outbox at " + app.outboxDir + " unless SIGIL_SMTP_URL / TWILIO_* are set. Ctrl-C stops.");
  process.stdout.write(lines.join("\n") + "\n");
}
