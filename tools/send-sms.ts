/**
 * send_sms: a text message from the identity's own phone number.
 *
 * The destination is validated and normalised by policy (exactly E.164, in an allowed country or
 * listed, never premium-rate or shared-cost); `run` sends only to that normalised number. An
 * identity without a phone number of its own is refused before policy (`no_phone_number`). The
 * body reaches the audit log only as a keyed hash.
 */
import * as z from "zod";
import { defineTool } from "../src/pipeline/tool.js";
import { parsePhone } from "../src/policy/phone.js";
import type { PreparedSms } from "../src/providers/types.js";
import { DeliveryStatus, ReceiptSchema, acquire, deliveryStatus, idempotencyKeyField } from "./outbound.js";

/** Twilio's limit for one message body (it is split into segments by the carrier). */
export const MAX_SMS_BODY = 1600;

export const NO_PHONE = {
  reason: "no_phone_number",
  message: "this identity has no phone number of its own to send from; an administrator must issue it one (--phone).",
} as const;

const input = z.strictObject({
  to: z.string().min(1).max(64).describe("E.164, e.g. +14155550123"),
  body: z
    .string()
    .min(1)
    .max(MAX_SMS_BODY)
    .refine((s) => s.trim().length > 0, { error: "must not be blank" })
    .describe("The text"),
  idempotencyKey: idempotencyKeyField,
});

const output = z.object({
  sid: z.string().describe("The provider's message id (SM…)"),
  status: DeliveryStatus,
  from: z.string().describe("The identity's own number the SMS was sent from"),
  to: z.string().describe("The normalised E.164 destination"),
  receipt: ReceiptSchema,
});

export const sendSms = defineTool({
  name: "send_sms",
  title: "Send SMS",
  description:
    "Sends an SMS from this identity's own number to a number the policy allows (premium-rate never). Refusal: `denied: <code>: <why>`.",
  channel: "sms",
  annotations: { readOnlyHint: false, destructiveHint: false, idempotentHint: false, openWorldHint: true },
  input,
  output,
  effect: "act",
  action: (a) => ({ kind: "sms", tool: "send_sms", to: a.to }),
  redact: (a, hash) => ({
    to: a.to,
    body: hash(a.body),
    ...(a.idempotencyKey !== undefined ? { idempotencyKey: a.idempotencyKey } : {}),
  }),
  idempotencyKey: (a) => a.idempotencyKey,
  guard(ctx, a) {
    if (!ctx.identity.phone) return { ...NO_PHONE };
    return undefined;
  },
  // With the outbox provider: the message is written to a temporary file and fsync'd while the
  // intent entry is flushed; run's rename is the delivery (see providers/outbox.ts).
  async prepare(ctx, a) {
    const from = ctx.identity.phone;
    const to = parsePhone(a.to);
    if (!from || !to.ok) return undefined;
    const provider = await ctx.providers.telephony().catch(() => undefined);
    return provider?.prepareSms?.({ from, to: to.e164, body: a.body });
  },
  async run(ctx, a, normalized, prepared) {
    if (normalized.kind !== "sms") throw new Error("send_sms needs an sms decision");
    const from = ctx.identity.phone;
    if (!from) throw new Error("send_sms: the identity has no phone number"); // the guard refuses this first
    const provider = await acquire(() => ctx.providers.telephony(), "telephony");
    const p = prepared as PreparedSms | undefined;
    // Only what policy decided is sent: the prepared message is used if it is exactly that one.
    const ready = p && p.request.from === from && p.request.to === normalized.to && p.request.body === a.body ? p : undefined;
    if (p && !ready) await p.discard();
    const sent = ready ? await ready.send() : await provider.sendSms({ from, to: normalized.to, body: a.body });
    const structured = { sid: sent.providerId, status: deliveryStatus(provider.name), from, to: normalized.to };
    return {
      structured,
      text: `SMS ${sent.providerId} ${structured.status === "outbox" ? "written to the outbox" : "sent"} from ${from} to ${normalized.to}.`,
      providerId: sent.providerId,
      audit: { ...structured },
    };
  },
});
