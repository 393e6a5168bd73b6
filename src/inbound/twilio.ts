/**
 * Twilio's inbound SMS webhook: `POST /webhooks/twilio/sms` (SPEC §12).
 *
 * Authentic only with a valid `X-Twilio-Signature`, checked by `twilio.validateRequest` (HMAC-SHA1
 * keyed by TWILIO_AUTH_TOKEN over the URL plus the sorted form fields). The URL is always
 * SIGIL_PUBLIC_URL + `/webhooks/twilio/sms` — never built from the request's Host header, which
 * whoever sends the request chooses. Anything else gets 403 and nothing is stored: no signature, a
 * wrong one, one made over another URL, a body that is not a form. Without SIGIL_PUBLIC_URL and
 * TWILIO_AUTH_TOKEN the route answers 404 (it does not exist). A signed message for a number that
 * is no identity's (with the sms channel) gets 404, nothing stored.
 *
 * Twilio retries a webhook that failed, and a signature carries no time: the message id is derived
 * from its MessageSid (Inbox.idFor), so a retry or a replay of a stored message stores nothing new.
 * The signature covers each field's name and value concatenated, with nothing between them, so a
 * captured request can be re-cut under the same signature (`MessageSid=SM…&NumMedia=0` as
 * `MessageSid=SM…NumMedia0`): a MessageSid must therefore be exactly Twilio's form (SM or MM and 32
 * hex digits), which no re-cut keeps, and a SmsSid beside it must be the same.
 * Unauthenticated requests are not recorded in any identity's log (they name no identity that could
 * be trusted), only counted on stderr.
 */
import type http from "node:http";
import { logInternal, refId } from "../errors.js";
import { parsePhone } from "../policy/phone.js";
import type { Inbox } from "./messages.js";

export const TWILIO_SMS_PATH = "/webhooks/twilio/sms";
const MAX_FORM_BYTES = 64 * 1024;
/** A Twilio message SID: SM (SMS) or MM (MMS) and 32 lower-case hex digits. */
const MESSAGE_SID = /^(?:SM|MM)[0-9a-f]{32}$/;
const EMPTY_TWIML = '<?xml version="1.0" encoding="UTF-8"?><Response></Response>';

export interface TwilioWebhookOptions {
  /** SIGIL_PUBLIC_URL (an https origin). */
  publicUrl?: string;
  /** TWILIO_AUTH_TOKEN. */
  authToken?: string;
}

type Validate = (authToken: string, signature: string, url: string, params: Record<string, string>) => boolean;
let validator: Promise<Validate> | undefined;
/** twilio.validateRequest, loaded on first use (the library is large). */
function twilioValidate(): Promise<Validate> {
  return (validator ??= import("twilio").then((m) => ((m as unknown as { default?: { validateRequest: Validate } }).default ?? (m as unknown as { validateRequest: Validate })).validateRequest));
}

function answer(res: http.ServerResponse, status: number, body: string, type = "text/plain; charset=utf-8"): void {
  if (res.headersSent || res.destroyed) return;
  res.writeHead(status, { "content-type": type });
  res.end(body);
}

async function readForm(req: http.IncomingMessage): Promise<string | undefined> {
  const chunks: Buffer[] = [];
  let size = 0;
  for await (const chunk of req) {
    size += (chunk as Buffer).length;
    if (size > MAX_FORM_BYTES) {
      req.socket.destroy();
      return undefined;
    }
    chunks.push(chunk as Buffer);
  }
  return Buffer.concat(chunks).toString("utf8");
}

/** The route, for the HTTP server: true when it answered the request. */
export function twilioWebhook(inbox: Inbox, opts: TwilioWebhookOptions): (req: http.IncomingMessage, url: URL, res: http.ServerResponse) => Promise<boolean> {
  return async (req, url, res) => {
    if (url.pathname !== TWILIO_SMS_PATH) return false;
    if (!opts.publicUrl || !opts.authToken) {
      req.resume();
      answer(res, 404, "Not found: inbound SMS needs SIGIL_PUBLIC_URL and TWILIO_AUTH_TOKEN.\n");
      return true;
    }
    if (req.method !== "POST") {
      req.resume();
      answer(res, 405, "Method not allowed.\n");
      return true;
    }
    const refuse = (why: string): true => {
      process.stderr.write(`sigil: inbound SMS refused (${why}); nothing stored\n`);
      answer(res, 403, "Forbidden: the request is not signed by Twilio for this server.\n");
      return true;
    };
    const type = (req.headers["content-type"] ?? "").split(";")[0]!.trim().toLowerCase();
    const signature = req.headers["x-twilio-signature"];
    const body = await readForm(req);
    if (body === undefined) return true;
    if (type !== "application/x-www-form-urlencoded") return refuse("not a form post");
    if (typeof signature !== "string" || signature.length === 0 || signature.length > 128) return refuse("no signature");
    const params: Record<string, string> = {};
    for (const [k, v] of new URLSearchParams(body)) {
      // Twilio sends each field once; a repeated one cannot be what it signed in one way only.
      if (Object.hasOwn(params, k)) return refuse("a repeated field");
      params[k] = v;
    }
    const validate = await twilioValidate();
    if (!validate(opts.authToken, signature, opts.publicUrl + TWILIO_SMS_PATH, params)) return refuse("bad signature");

    const to = parsePhone(params.To ?? "");
    const from = params.From ?? "";
    const sid = params.MessageSid ?? params.SmsSid ?? "";
    if (!to.ok || from === "" || !MESSAGE_SID.test(sid) || (params.SmsSid !== undefined && params.SmsSid !== sid)) {
      answer(res, 400, "Bad request: To, From and a MessageSid of Twilio's form are required.\n");
      return true;
    }
    const rec = await inbox.recipient("sms", to.e164);
    if (!rec) {
      answer(res, 404, "Not found: no identity has this number.\n");
      return true;
    }
    try {
      await inbox.receive(
        rec,
        "sms",
        { from, to: [to.e164], text: params.Body ?? "", providerId: sid },
        { id: inbox.idFor(rec.id, "sms", sid), size: Buffer.byteLength(body) },
      );
    } catch (err) {
      const ref = refId();
      logInternal(ref, "inbound SMS", err);
      // Twilio retries on a 5xx: the message is not lost.
      answer(res, 503, `Service unavailable: the message could not be stored (${ref}).\n`);
      return true;
    }
    answer(res, 200, EMPTY_TWIML, "text/xml");
    return true;
  };
}

