/**
 * `npm start`: the two-command quick start. Initialises a home if there is none (printing the
 * admin token once), creates a demo identity on first run (printing its token once and the
 * mcp.json snippet), then serves Streamable HTTP. Providers are the offline outbox unless the
 * environment configures SMTP or Twilio.
 */
import { Sigil } from "../sigil.js";
import { SigilError } from "../errors.js";

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

export async function quickStart(
  home: string,
  env: NodeJS.ProcessEnv,
  host: string,
  port: number,
  serve: (sigil: Sigil, host: string, port: number) => Promise<string>,
): Promise<void> {
  const lines: string[] = [];
  try {
    const { adminToken } = await Sigil.init({ home, env });
    lines.push(`Initialised a new sigil home at ${home}.`, `Admin token (shown once; keep it safe): ${adminToken}`);
  } catch (err) {
    if (!(err instanceof SigilError && err.code === "already_initialised")) throw err;
    lines.push(`Using the sigil home at ${home}.`);
  }
  const sigil = await Sigil.open({ home, env });
  let demoToken: string | undefined;
  const existing = (await sigil.listIdentities()).find((i) => i.name === "demo-agent" && !i.revokedAt);
  let demoId = existing?.id;
  if (!existing) {
    const created = await sigil.createIdentity({
      name: "demo-agent",
      channels: ["email", "sms", "voice", "vault", "card", "sign"],
      policy: DEMO_POLICY,
      email: "demo-agent@example.com",
      phone: "+14155550100",
    });
    demoId = created.id;
    demoToken = created.token;
  }
  const url = await serve(sigil, host, port);
  lines.push(`Serving MCP (Streamable HTTP) at ${url}`);
  if (demoToken) {
    lines.push(`Demo identity ${demoId} (demo-agent); its token (shown once): ${demoToken}`);
  } else {
    lines.push(`Demo identity ${demoId} exists; get a fresh token with: npx sigil identity rotate-token ${demoId}`);
  }
  const snippet = {
    mcpServers: {
      sigil: { type: "http", url, headers: { Authorization: `Bearer ${demoToken ?? "<agent token>"}` } },
    },
  };
  lines.push("Add this to your client's mcp.json:", JSON.stringify(snippet, null, 2));
  lines.push("Sends go to the offline outbox at " + sigil.outboxDir + " unless SIGIL_SMTP_URL / TWILIO_* are set. Ctrl-C stops.");
  process.stdout.write(lines.join("\n") + "\n");
}
