/**
 * What `sigil serve --http` adds for inbound messages (SPEC §12): the SMTP listener on
 * `--smtp-port` / SIGIL_INBOUND_SMTP_PORT (with STARTTLS when SIGIL_INBOUND_TLS_CERT_FILE and
 * _KEY_FILE are set), the Twilio SMS webhook route for the HTTP server, and the hourly sweep of
 * messages past their identity's `inbound.retainDays`.
 */
import { readFileSync } from "node:fs";
import type { DNSResolver } from "mailauth";
import type { App } from "../app.js";
import { SigilError, logInternal, refId } from "../errors.js";
import { serveSmtp } from "./smtp.js";
import { twilioWebhook } from "./twilio.js";

const SWEEP_MS = 60 * 60_000;

/** The webhook route (POST /webhooks/twilio/sms) for the HTTP server. */
export function inboundRoutes(app: Pick<App, "inbox" | "config">): ReturnType<typeof twilioWebhook> {
  const { publicUrl, twilio } = app.config;
  return twilioWebhook(app.inbox, { ...(publicUrl !== undefined ? { publicUrl } : {}), ...(twilio ? { authToken: twilio.authToken } : {}) });
}

/** Starts the SMTP listener on `host:port` and the retention sweep; returns the port it listens on and how to stop both. */
export async function startInbound(app: Pick<App, "inbox" | "config">, host: string, port: number): Promise<{ port: number; close: () => Promise<void> }> {
  const cfg = app.config;
  let tls: { key: Buffer; cert: Buffer } | undefined;
  if (cfg.inboundTls) {
    try {
      tls = { cert: readFileSync(cfg.inboundTls.certFile), key: readFileSync(cfg.inboundTls.keyFile) };
    } catch {
      throw new SigilError("config_invalid", "the STARTTLS certificate or key (SIGIL_INBOUND_TLS_CERT_FILE, SIGIL_INBOUND_TLS_KEY_FILE) cannot be read");
    }
  }
  const resolver = cfg.testDnsFile !== undefined ? fileResolver(cfg.testDnsFile) : undefined;
  const smtp = await serveSmtp(app.inbox, { host, port, ...(tls ? { tls } : {}), ...(resolver ? { resolver } : {}) });
  const sweep = (): void => void app.inbox.sweep().catch((err: unknown) => logInternal(refId(), "inbound retention sweep", err));
  const timer = setInterval(sweep, SWEEP_MS).unref();
  sweep();
  return {
    port: smtp.port,
    close: async () => {
      clearInterval(timer);
      await smtp.close();
    },
  };
}

/**
 * Test suite only (SIGIL_TEST_DNS_FILE): DNS answers from a JSON file `{"TXT": {"name": [["…"]]}, …}`,
 * read on each lookup; anything not in it is ENOTFOUND. Production uses the system's resolver.
 */
function fileResolver(file: string): DNSResolver {
  return async (name, rrtype) => {
    const table = JSON.parse(readFileSync(file, "utf8")) as Record<string, Record<string, string[][] | string[]>>;
    const hit = table[rrtype.toUpperCase()]?.[name.toLowerCase().replace(/\.$/, "")];
    if (hit) return hit;
    throw Object.assign(new Error(`queryTxt ENOTFOUND ${name}`), { code: "ENOTFOUND" });
  };
}
