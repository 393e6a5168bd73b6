/**
 * The providers a process acts through, chosen by the configuration (src/config.ts; README "Environment"): the
 * outbox by default, SMTP with SIGIL_SMTP_URL, Twilio with TWILIO_ACCOUNT_SID/TWILIO_AUTH_TOKEN. Each is
 * created once per process, on first use, and its library is loaded only then (twilio and
 * nodemailer cost more to load than the rest of sigil, so a session that never sends never pays).
 */
import path from "node:path";
import type { EmailProvider, TelephonyProvider } from "./types.js";
import type { CardProcessor } from "./card/processor.js";
import type { Config } from "../config.js";

/** What the providers are chosen and configured by. */
export type ProviderConfig = Pick<
  Config,
  "smtpUrl" | "dkim" | "twilio" | "twilioApiUrl" | "providerTimeoutMs" | "cardProcessorUrl" | "cardProcessorToken" | "cardDeclineAboveCents" | "cardLatencyMs"
>;

export interface Providers {
  email(): Promise<EmailProvider>;
  telephony(): Promise<TelephonyProvider>;
  /** The card processor: the embedded ledger in the home, or SIGIL_CARD_PROCESSOR_URL (src/providers/card/). */
  card(): Promise<CardProcessor>;
}

export function providersFrom(config: ProviderConfig, outboxDir: string): Providers {
  let email: Promise<EmailProvider> | undefined;
  let telephony: Promise<TelephonyProvider> | undefined;
  let card: Promise<CardProcessor> | undefined;
  return {
    email: () => (email ??= import("./email.js").then((m) => m.emailFrom(config, outboxDir))),
    telephony: () => (telephony ??= import("./telephony.js").then((m) => m.telephonyFrom(config, outboxDir))),
    card: () =>
      (card ??= config.cardProcessorUrl
        ? import("./card/http.js").then(
            (m) => new m.HttpCardProcessor(config.cardProcessorUrl!, { timeoutMs: config.providerTimeoutMs, token: config.cardProcessorToken }),
          )
        : import("./card/embedded.js").then(
            (m) =>
              new m.EmbeddedCardProcessor({
                home: path.dirname(outboxDir),
                latencyMs: config.cardLatencyMs,
                ...(config.cardDeclineAboveCents !== undefined ? { declineAboveCents: config.cardDeclineAboveCents } : {}),
              }),
          )),
  };
}
