/**
 * The HTTP card processor (`SIGIL_CARD_PROCESSOR_URL`): each charge is one JSON POST to that URL,
 * so a real issuer's adapter (or a test double on loopback) can stand behind sigil's card.
 *
 * Request: `POST <url>` with `Content-Type: application/json`, `Idempotency-Key: <reference>`,
 * `Authorization: Bearer $SIGIL_CARD_PROCESSOR_TOKEN` when that is set, and the body
 * `{identityId, cardId, amountCents, currency, merchant, merchantCategory?, categoryRules?, description?,
 * reference}` — `merchantCategory` is the agent's unverified claim, `categoryRules`
 * (`{allowed?, blocked?}`) the policy's category rules when it has any. The processor decides the
 * category at authorization (see processor.ts): it declines a claim that differs from the category
 * it knows, and, under rules, a category it cannot state or the rules refuse, answering
 * `declineReason` `merchant_category_mismatch` / `_unknown` / `_blocked` / `_not_allowed`.
 *
 * Response → outcome:
 *  - 2xx with `{"chargeId": "...", "status": "approved", "merchantCategory"?: "<MCC>"}` → approved;
 *    the category it authorized under is checked again by sigil: an approval that the rules (or a
 *    differing claim) should have declined, or one without a category under rules, is reported
 *    as an unknown outcome (the reservation is kept; the processor broke its contract);
 *  - a 4xx or 2xx-not-approved with `declineReason` one of the category reasons → refused with
 *    that reason (`denied: merchant_category_…`, released);
 *  - 402, or any 4xx, or 2xx with `status` other than "approved" → declined (rejected: released);
 *  - no connection was ever made (the host does not resolve, the connection is refused or
 *    unroutable, the TLS handshake fails), or 503 → unavailable (nothing charged: released);
 *  - a timeout (`SIGIL_PROVIDER_TIMEOUT_MS`, default 15 s), a connection lost after it was made,
 *    another 5xx, or an unreadable 2xx → unknown (the reservation is kept; never retried
 *    automatically).
 */
import { ProviderError } from "../types.js";
import { cardIdFor } from "./embedded.js";
import { CATEGORY_REASONS, CardDeclined, MCC_RE, categoryDecision, type CardProcessor, type CategoryReason, type ChargeRequest, type ChargeResult } from "./processor.js";

export class HttpCardProcessor implements CardProcessor {
  readonly name = "http";
  private readonly url: URL;
  private readonly timeoutMs: number;
  private readonly token?: string;

  constructor(url: string, opts: { timeoutMs: number; token?: string | undefined }) {
    let u: URL;
    try {
      u = new URL(url);
    } catch {
      throw new Error("SIGIL_CARD_PROCESSOR_URL is not a URL");
    }
    if (u.protocol !== "https:" && u.protocol !== "http:") throw new Error("SIGIL_CARD_PROCESSOR_URL must be an http(s) URL");
    this.url = u;
    this.timeoutMs = opts.timeoutMs;
    this.token = opts.token || undefined;
  }

  async charge(req: ChargeRequest): Promise<ChargeResult> {
    const cardId = cardIdFor(req.identityId);
    const body = JSON.stringify({ ...req, cardId });
    let res: Response;
    try {
      res = await fetch(this.url, {
        method: "POST",
        headers: {
          "content-type": "application/json",
          "idempotency-key": req.reference,
          ...(this.token ? { authorization: `Bearer ${this.token}` } : {}),
        },
        body,
        redirect: "error",
        signal: AbortSignal.timeout(this.timeoutMs),
      });
    } catch (err) {
      const unreached = connectionNeverMade(err);
      if (unreached) {
        // The operator's log names the cause (e.g. "getaddrinfo ENOTFOUND host"); the model sees none of it.
        const cause = new Error(`POST ${this.url.origin}: ${unreached}`, { cause: err });
        throw new ProviderError("unavailable", "the card processor could not be reached; nothing was charged", { cause });
      }
      if ((err as Error)?.name === "TimeoutError") {
        throw new ProviderError("unknown", "the card processor did not answer in time; the charge may or may not have gone through", { cause: err });
      }
      throw new ProviderError("unknown", "the connection to the card processor failed while charging; the charge may or may not have gone through", { cause: err });
    }
    let data: { chargeId?: unknown; status?: unknown; declineReason?: unknown; merchantCategory?: unknown } | undefined;
    try {
      data = (await res.json()) as typeof data;
    } catch {
      data = undefined;
    }
    if (res.status === 503) throw new ProviderError("unavailable", "the card processor is unavailable; nothing was charged");
    if (res.status >= 500) throw new ProviderError("unknown", "the card processor failed while charging; the charge may or may not have gone through");
    const declinedFor = typeof data?.declineReason === "string" && CATEGORY_REASONS.includes(data.declineReason) ? (data.declineReason as CategoryReason) : undefined;
    if (declinedFor && (res.status >= 400 || data?.status !== "approved")) {
      throw new CardDeclined(declinedFor, `the card processor declined the charge (${declinedFor.replace(/_/g, " ")}); nothing was charged.`);
    }
    if (res.status >= 400) throw new ProviderError("rejected", "the card issuer declined the charge");
    if (!data || typeof data !== "object") throw new ProviderError("unknown", "the card processor's answer could not be read; the charge may or may not have gone through");
    if (data.status !== "approved") throw new ProviderError("rejected", "the card issuer declined the charge");
    if (typeof data.chargeId !== "string" || data.chargeId.length === 0 || data.chargeId.length > 200) {
      throw new ProviderError("unknown", "the card processor's answer could not be read; the charge may or may not have gone through");
    }
    const category = data.merchantCategory;
    if (category !== undefined && (typeof category !== "string" || !MCC_RE.test(category))) {
      throw new ProviderError("unknown", `the card processor approved charge ${data.chargeId} with an unreadable merchant category; it may have gone through`);
    }
    if (categoryDecision(category, req.merchantCategory, req.categoryRules)) {
      // Approved although the category rules it was given (or the claim) refuse it: money may have moved.
      throw new ProviderError("unknown", `the card processor approved charge ${data.chargeId} although its category rules refuse it; it may have gone through`);
    }
    return { chargeId: data.chargeId, status: "approved", cardId, ...(category !== undefined ? { merchantCategory: category } : {}) };
  }
}

/**
 * Errors that happen before a connection exists, so the charge request cannot have left: DNS
 * failures, refused or unroutable connections, a connect timeout, a failed TLS handshake.
 */
const NEVER_CONNECTED = new Set([
  "ENOTFOUND", "EAI_AGAIN", "EAI_FAIL", "EAI_NONAME", "EAI_NODATA",
  "ECONNREFUSED", "EHOSTUNREACH", "ENETUNREACH", "EHOSTDOWN", "ENETDOWN", "EADDRNOTAVAIL",
  "UND_ERR_CONNECT_TIMEOUT",
  "CERT_HAS_EXPIRED", "DEPTH_ZERO_SELF_SIGNED_CERT", "SELF_SIGNED_CERT_IN_CHAIN", "UNABLE_TO_VERIFY_LEAF_SIGNATURE",
  "UNABLE_TO_GET_ISSUER_CERT_LOCALLY", "ERR_TLS_CERT_ALTNAME_INVALID", "CERT_NOT_YET_VALID",
]);

/** fetch's error when no connection was made: the cause's code and message (e.g. "ENOTFOUND: getaddrinfo ENOTFOUND host"); else undefined. */
export function connectionNeverMade(err: unknown): string | undefined {
  const cause = (err as { cause?: unknown })?.cause as { code?: unknown; message?: unknown; errors?: unknown } | undefined;
  if (!cause || typeof cause !== "object") return undefined;
  // Several addresses tried (happy eyeballs): an AggregateError of one refusal per address.
  const first = Array.isArray(cause.errors) ? (cause.errors[0] as { code?: unknown } | undefined) : undefined;
  const code = typeof cause.code === "string" ? cause.code : typeof first?.code === "string" ? first.code : undefined;
  if (code === undefined || !NEVER_CONNECTED.has(code)) return undefined;
  const message = typeof cause.message === "string" && cause.message !== "" ? cause.message : code;
  return message.includes(code) ? message : `${code}: ${message}`;
}
