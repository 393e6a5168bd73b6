/**
 * Pieces shared by the outbound-message tools (send_email, send_sms, place_call): the
 * idempotencyKey argument, the receipt and status shapes of their results, and how a tool gets
 * hold of its provider.
 */
import * as z from "zod";
import { ProviderError } from "../src/providers/types.js";

export const idempotencyKeyField = z
  .string()
  .min(1)
  .max(255)
  .regex(/^[\x21-\x7e]+$/, { error: "must be 1-255 printable ASCII characters without spaces" })
  .optional()
  .describe(
    "Retry key: the same key and arguments within 24 h return the first result",
  );

export const ReceiptSchema = z
  .object({
    identityId: z.string(),
    seq: z.number(),
    hash: z.string(),
    keyId: z.string(),
    signature: z.string(),
  })
  .describe("The signed audit entry that records this result (published compactly: src/server/tool-listing.ts)");

/** `accepted`: the provider (SMTP server, Twilio) took it; `outbox`: written to $SIGIL_HOME/outbox (no provider configured). */
export const DeliveryStatus = z.enum(["accepted", "outbox"]).describe("accepted: handed to the provider; outbox: written to the local outbox (no provider configured)");

export function deliveryStatus(providerName: string): "accepted" | "outbox" {
  return providerName === "outbox" ? "outbox" : "accepted";
}

/**
 * The provider, or a ProviderError "unavailable" when it cannot be set up (e.g. a malformed
 * SIGIL_SMTP_URL): nothing was sent, so the attempt is audited as failed, not unknown.
 */
export async function acquire<P>(get: () => Promise<P>, what: string): Promise<P> {
  try {
    return await get();
  } catch (err) {
    throw new ProviderError("unavailable", `the ${what} provider is not configured correctly; nothing was sent`, { cause: err });
  }
}

/** Control characters (C0, DEL, C1) other than tab, LF and CR. */
export const CONTROL_EXCEPT_WHITESPACE = /[\u0000-\u0008\u000b\u000c\u000e-\u001f\u007f-\u009f]/;
