/**
 * send_email: an email from the identity's own address.
 *
 * Recipients are validated and normalised by policy (one plain `local@domain` each, domain in
 * `allowedDomains`, at most `maxRecipients` distinct addresses across to + cc); `run` uses only
 * those normalised addresses, so the SMTP envelope is exactly the validated list. There is no
 * way to add Bcc, attachments, headers, a raw message or another sender: unknown arguments are
 * refused by the strict schema, and nodemailer's file and URL access are disabled by the provider.
 * Subject and bodies reach the audit log only as keyed hashes.
 */
import { randomUUID } from "node:crypto";
import * as z from "zod";
import { defineTool } from "../src/pipeline/tool.js";
import type { EmailMessage } from "../src/providers/types.js";
import { EMAIL_SIGNATURE_HEADER, composedParts, emailPartsSha256, signEmail } from "../src/provenance/email-signature.js";
import { CONTROL_EXCEPT_WHITESPACE, DeliveryStatus, ReceiptSchema, acquire, deliveryStatus, idempotencyKeyField } from "./outbound.js";

export const MAX_EMAIL_RECIPIENTS_PER_LIST = 100;
export const MAX_SUBJECT = 998;
export const MAX_BODY = 100_000;

const address = z.string().min(1).max(254);

const input = z.strictObject({
  to: z
    .array(address)
    .min(1)
    .max(MAX_EMAIL_RECIPIENTS_PER_LIST)
    .describe("Plain addresses, e.g. alice@example.com (no display names)"),
  cc: z
    .array(address)
    .max(MAX_EMAIL_RECIPIENTS_PER_LIST)
    .optional()
    .describe("Cc: plain addresses"),
  subject: z
    .string()
    .max(MAX_SUBJECT)
    .refine((s) => !/[\u0000-\u001f\u007f-\u009f\u2028\u2029]/.test(s), { error: "must be one line without control characters" })
    .describe("One line"),
  text: z
    .string()
    .max(MAX_BODY)
    .refine((s) => !CONTROL_EXCEPT_WHITESPACE.test(s), { error: "must not contain control characters other than tab and line breaks" })
    .optional()
    .describe("Plain-text body"),
  html: z
    .string()
    .max(MAX_BODY)
    .refine((s) => !CONTROL_EXCEPT_WHITESPACE.test(s), { error: "must not contain control characters other than tab and line breaks" })
    .optional()
    .describe("HTML body, sent as written"),
  idempotencyKey: idempotencyKeyField,
});

const output = z.object({
  messageId: z.string().describe("The Message-ID sigil gave the email"),
  status: DeliveryStatus,
  from: z.string().describe("The identity's own address the email was sent from"),
  to: z.array(z.string()).describe("The normalised To recipients"),
  cc: z.array(z.string()).describe("The normalised Cc recipients"),
  receipt: ReceiptSchema,
});

export const sendEmail = defineTool({
  name: "send_email",
  title: "Send email",
  description:
    "Emails plain addresses (alice@example.com) in the policy's domains from this identity's own address, at most maxRecipients across to+cc; one disallowed recipient refuses all. Refusal: `denied: <code>: <why>`.",
  channel: "email",
  annotations: { readOnlyHint: false, destructiveHint: false, idempotentHint: false, openWorldHint: true },
  input,
  output,
  effect: "act",
  action: (a) => ({ kind: "email", tool: "send_email", to: a.to, cc: a.cc ?? [] }),
  redact: (a, hash) => ({
    to: a.to,
    ...(a.cc !== undefined ? { cc: a.cc } : {}),
    subject: hash(a.subject),
    ...(a.text !== undefined ? { text: hash(a.text) } : {}),
    ...(a.html !== undefined ? { html: hash(a.html) } : {}),
    ...(a.idempotencyKey !== undefined ? { idempotencyKey: a.idempotencyKey } : {}),
  }),
  idempotencyKey: (a) => a.idempotencyKey,
  async run(ctx, a, normalized) {
    if (normalized.kind !== "email") throw new Error("send_email needs an email decision");
    const from = ctx.identity.email;
    const messageId = `<${randomUUID()}@sigil.local>`;
    // Server-built headers only, never from the arguments: the Sigil-Signature header, by the
    // identity's active key, over From, To, Cc, Subject, Date, Message-ID and every body part
    // (src/provenance/email-signature.ts; checked by `sigil receipt verify-email`).
    const date = new Date(ctx.now());
    const extraHeaders: Record<string, string> = {
      [EMAIL_SIGNATURE_HEADER]: await signEmail({
        // The composer writes bare addresses: no display names.
        from: { name: "", address: from },
        to: normalized.to.map((address) => ({ name: "", address })),
        cc: normalized.cc.map((address) => ({ name: "", address })),
        subject: a.subject,
        date: date.toUTCString(),
        messageId,
        bodySha256: emailPartsSha256(composedParts({ ...(a.text !== undefined ? { text: a.text } : {}), ...(a.html !== undefined ? { html: a.html } : {}) })),
        identityId: ctx.identity.id,
        signer: await ctx.signer(),
        now: date,
      }),
    };
    const msg: EmailMessage = {
      from,
      to: normalized.to,
      cc: normalized.cc,
      subject: a.subject,
      ...(a.text !== undefined ? { text: a.text } : {}),
      ...(a.html !== undefined ? { html: a.html } : {}),
      messageId,
      date,
      ...(Object.keys(extraHeaders).length > 0 ? { extraHeaders } : {}),
    };
    const provider = await acquire(() => ctx.providers.email(), "email");
    const sent = await provider.send(msg);
    const structured = {
      messageId: sent.providerId,
      status: deliveryStatus(provider.name),
      from,
      to: normalized.to,
      cc: normalized.cc,
    };
    const n = normalized.to.length + normalized.cc.length;
    return {
      structured,
      text: `Email ${sent.providerId} ${structured.status === "outbox" ? "written to the outbox" : "sent"} from ${from} to ${n} recipient${n === 1 ? "" : "s"}.`,
      providerId: sent.providerId,
      audit: { ...structured },
    };
  },
});
