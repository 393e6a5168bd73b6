/**
 * The providers a process acts through, chosen from the environment (README: "Environment"): the
 * outbox by default, SMTP with SIGIL_SMTP_URL, Twilio with TWILIO_ACCOUNT_SID/TWILIO_AUTH_TOKEN. Each is
 * created once per process, on first use, and its library is loaded only then (twilio and
 * nodemailer cost more to load than the rest of sigil, so a session that never sends never pays).
 */
import path from "node:path";
import type { EmailProvider, TelephonyProvider } from "./types.js";
import type { CardProcessor } from "./card/processor.js";

export interface Providers {
  email(): Promise<EmailProvider>;
  telephony(): Promise<TelephonyProvider>;
  /** The card processor: the embedded ledger in the home, or SIGIL_CARD_PROCESSOR_URL (src/providers/card/). */
  card(): Promise<CardProcessor>;
}

export function providersFromEnv(env: NodeJS.ProcessEnv, outboxDir: string): Providers {
  let email: Promise<EmailProvider> | undefined;
  let telephony: Promise<TelephonyProvider> | undefined;
  let card: Promise<CardProcessor> | undefined;
  return {
    email: () => (email ??= import("./email.js").then((m) => m.emailFromEnv(env, outboxDir))),
    telephony: () => (telephony ??= import("./telephony.js").then((m) => m.telephonyFromEnv(env, outboxDir))),
    card: () =>
      (card ??= env.SIGIL_CARD_PROCESSOR_URL
        ? import("./card/http.js").then((m) => new m.HttpCardProcessor(env.SIGIL_CARD_PROCESSOR_URL!, env))
        : import("./card/embedded.js").then((m) => new m.EmbeddedCardProcessor({ home: path.dirname(outboxDir), env }))),
  };
}
