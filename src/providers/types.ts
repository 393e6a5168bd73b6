/**
 * Provider contracts for outbound email and telephony.
 *
 * Guarantees:
 * - Every provider failure surfaces as a ProviderError whose `kind` tells the caller
 *   what may have happened in the outside world:
 *     "rejected"    the provider definitively refused: nothing was sent;
 *     "unavailable" the provider could not be reached, or refused for now: nothing was sent;
 *     "unknown"     the request may have left: the outcome is unknown, never retry blindly.
 * - `publicMessage` is safe to show to an AI model: no stack, no hostnames, paths,
 *   response bodies or credentials. The underlying error (for operators' logs) is `cause`.
 *   It says both what went wrong and what that means for the outside world ("…; nothing was
 *   sent", "…; the charge may or may not have gone through"): callers show it as it is.
 * - `providerTimeoutFromEnv` is the one reading of `SIGIL_PROVIDER_TIMEOUT_MS` both
 *   providers share (kept here so neither provider module loads the other's library).
 */

export type ProviderErrorKind =
  | "rejected" /* provider definitively refused: nothing sent */
  | "unavailable" /* could not connect / definitely not sent */
  | "unknown" /* request may have left: outcome unknown, never retry blindly */;

export class ProviderError extends Error {
  override readonly name = "ProviderError";

  constructor(
    readonly kind: ProviderErrorKind,
    readonly publicMessage: string,
    options?: { cause?: unknown },
  ) {
    super(`${kind}: ${publicMessage}`, options);
  }
}

export function isProviderError(err: unknown): err is ProviderError {
  return err instanceof ProviderError;
}

export interface EmailMessage {
  /** The identity's own plain address (`local@domain`). */
  from: string;
  /** Plain addresses (`local@domain`), already validated and policy-checked. */
  to: string[];
  cc: string[];
  subject: string;
  text?: string;
  html?: string;
  /** Server-generated, e.g. `<uuid@sigil.local>`. */
  messageId: string;
  date: Date;
  /** Server-built only, e.g. "Sigil-Signature". Never user input. */
  extraHeaders?: Record<string, string>;
}

export interface EmailProvider {
  readonly name: string;
  send(msg: EmailMessage): Promise<{ providerId: string; raw?: Buffer }>;
  close?(): Promise<void>;
}

export interface SmsRequest {
  from: string;
  to: string;
  body: string;
}

export interface CallRequest {
  from: string;
  to: string;
  /** Plain text to be spoken. Never TwiML or a URL. */
  message: string;
}

/**
 * The first phase of a send, made while the audit intent entry is being flushed: nothing anyone
 * can observe (the outbox's fsync'd temporary file). `send` is the act; `discard` drops it.
 */
export interface PreparedSms {
  readonly request: SmsRequest;
  send(): Promise<{ providerId: string }>;
  discard(): Promise<void>;
}

export interface TelephonyProvider {
  readonly name: string;
  sendSms(r: SmsRequest): Promise<{ providerId: string }>;
  /** Where a send has a first phase without effect (the outbox): that phase. */
  prepareSms?(r: SmsRequest): Promise<PreparedSms>;
  placeCall(r: CallRequest): Promise<{ providerId: string }>;
}

export const DEFAULT_PROVIDER_TIMEOUT_MS = 15_000;

