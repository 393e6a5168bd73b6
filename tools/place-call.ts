/**
 * place_call: a voice call from the identity's own phone number that speaks `message`.
 *
 * The destination is validated and normalised by policy exactly as for send_sms; `run` calls only
 * that normalised number. The call's TwiML is built by the provider (`<Say>` with the message
 * XML-escaped): a caller can never supply TwiML, a URL or digits to dial. An identity without a
 * phone number is refused before policy (`no_phone_number`). The message reaches the audit log
 * only as a keyed hash.
 */
import * as z from "zod";
import { defineTool } from "../src/pipeline/tool.js";
import { DeliveryStatus, ReceiptSchema, acquire, deliveryStatus, idempotencyKeyField } from "./outbound.js";
import { NO_PHONE } from "./send-sms.js";

export const MAX_CALL_MESSAGE = 3000;
/**
 * Room for the escaped message inside Twilio's 4000-character TwiML limit (the provider's
 * `<?xml …?><Response><Say>…</Say></Response>` wrapper takes 82).
 */
const MAX_ESCAPED = 3900;

/** Length of the message once XML-escaped as the provider does (& → &amp;, quotes → 6, <> → 4). */
function escapedLength(s: string): number {
  let n = 0;
  for (const ch of s) {
    n += ch === "&" ? 5 : ch === "<" || ch === ">" ? 4 : ch === '"' || ch === "'" ? 6 : ch.length;
  }
  return n;
}

const input = z.strictObject({
  to: z.string().min(1).max(64).describe("E.164, e.g. +14155550123"),
  message: z
    .string()
    .min(1)
    .max(MAX_CALL_MESSAGE)
    .refine((s) => s.trim().length > 0, { error: "must not be blank" })
    .refine((s) => escapedLength(s) <= MAX_ESCAPED, { error: "is too long to be spoken in one call" })
    .describe("Plain text to speak (markup and URLs are read out, never followed)"),
  idempotencyKey: idempotencyKeyField,
});

const output = z.object({
  sid: z.string().describe("The provider's call id (CA…)"),
  status: DeliveryStatus,
  from: z.string().describe("The identity's own number the call was placed from"),
  to: z.string().describe("The normalised E.164 number called"),
  receipt: ReceiptSchema,
});

export const placeCall = defineTool({
  name: "place_call",
  title: "Place a voice call",
  description:
    "Calls a number the policy allows (premium-rate never) from this identity's own number and speaks the message. Refusal: `denied: <code>: <why>`.",
  channel: "voice",
  annotations: { readOnlyHint: false, destructiveHint: false, idempotentHint: false, openWorldHint: true },
  input,
  output,
  effect: "act",
  action: (a) => ({ kind: "call", tool: "place_call", to: a.to }),
  redact: (a, hash) => ({
    to: a.to,
    message: hash(a.message),
    ...(a.idempotencyKey !== undefined ? { idempotencyKey: a.idempotencyKey } : {}),
  }),
  idempotencyKey: (a) => a.idempotencyKey,
  guard(ctx, a) {
    if (!ctx.identity.phone) return { ...NO_PHONE };
    return undefined;
  },
  async run(ctx, a, normalized) {
    if (normalized.kind !== "call") throw new Error("place_call needs a call decision");
    const from = ctx.identity.phone;
    if (!from) throw new Error("place_call: the identity has no phone number"); // the guard refuses this first
    const provider = await acquire(() => ctx.providers.telephony(), "telephony");
    const placed = await provider.placeCall({ from, to: normalized.to, message: a.message });
    const structured = { sid: placed.providerId, status: deliveryStatus(provider.name), from, to: normalized.to };
    return {
      structured,
      text: `Call ${placed.providerId} ${structured.status === "outbox" ? "written to the outbox" : "placed"} from ${from} to ${normalized.to}.`,
      providerId: placed.providerId,
      audit: { ...structured },
    };
  },
});
