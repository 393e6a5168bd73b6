/**
 * The providers a process acts through, chosen from the environment (SPEC §3): the outbox by
 * default, SMTP with SIGIL_SMTP_URL, Twilio with TWILIO_ACCOUNT_SID/TWILIO_AUTH_TOKEN. Each is
 * created once per process, on first use, and its library is loaded only then (twilio and
 * nodemailer cost more to load than the rest of sigil, so a session that never sends never pays).
 */
import type { EmailProvider, TelephonyProvider } from "./types.js";

export interface Providers {
  email(): Promise<EmailProvider>;
  telephony(): Promise<TelephonyProvider>;
}

export function providersFromEnv(env: NodeJS.ProcessEnv, outboxDir: string): Providers {
  let email: Promise<EmailProvider> | undefined;
  let telephony: Promise<TelephonyProvider> | undefined;
  return {
    email: () => (email ??= import("./email.js").then((m) => m.emailFromEnv(env, outboxDir))),
    telephony: () => (telephony ??= import("./telephony.js").then((m) => m.telephonyFromEnv(env, outboxDir))),
  };
}
