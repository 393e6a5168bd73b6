/**
 * The HTTP card processor (`SIGIL_CARD_PROCESSOR_URL`): each charge is one JSON POST to that URL,
 * so a real issuer's adapter (or a test double on loopback) can stand behind sigil's card.
 *
 * Request: `POST <url>` with `Content-Type: application/json`, `Idempotency-Key: <reference>`,
 * `Authorization: Bearer $SIGIL_CARD_PROCESSOR_TOKEN` when that is set, and the body
 * `{identityId, cardId, amountCents, currency, merchant, merchantCategory?, description?, reference}`.
 *
 * Response → outcome:
 *  - 2xx with `{"chargeId": "...", "status": "approved"}` → approved;
 *  - 402, or any 4xx, or 2xx with `status` other than "approved" → declined (rejected: released);
 *  - connection refused, or 503 → unavailable (nothing charged: released);
 *  - a timeout (`SIGIL_PROVIDER_TIMEOUT_MS`, default 15 s), another 5xx, or an unreadable 2xx →
 *    unknown (the reservation is kept; never retried automatically).
 */
import { ProviderError, providerTimeoutFromEnv } from "../types.js";
import { cardIdFor } from "./embedded.js";
import type { CardProcessor, ChargeRequest, ChargeResult } from "./processor.js";

export class HttpCardProcessor implements CardProcessor {
  readonly name = "http";
  private readonly url: URL;
  private readonly timeoutMs: number;
  private readonly token?: string;

  constructor(url: string, env: NodeJS.ProcessEnv) {
    let u: URL;
    try {
      u = new URL(url);
    } catch {
      throw new Error("SIGIL_CARD_PROCESSOR_URL is not a URL");
    }
    if (u.protocol !== "https:" && u.protocol !== "http:") throw new Error("SIGIL_CARD_PROCESSOR_URL must be an http(s) URL");
    this.url = u;
    this.timeoutMs = providerTimeoutFromEnv(env);
    this.token = env.SIGIL_CARD_PROCESSOR_TOKEN || undefined;
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
      const code = (err as { cause?: { code?: string } }).cause?.code;
      if (code === "ECONNREFUSED") throw new ProviderError("unavailable", "the card processor could not be reached", { cause: err });
      throw new ProviderError("unknown", "the card processor did not answer in time", { cause: err });
    }
    let data: { chargeId?: unknown; status?: unknown } | undefined;
    try {
      data = (await res.json()) as typeof data;
    } catch {
      data = undefined;
    }
    if (res.status === 503) throw new ProviderError("unavailable", "the card processor is unavailable");
    if (res.status >= 500) throw new ProviderError("unknown", "the card processor failed while charging");
    if (res.status >= 400) throw new ProviderError("rejected", "the card issuer declined the charge");
    if (!data || typeof data !== "object") throw new ProviderError("unknown", "the card processor's answer could not be read");
    if (data.status !== "approved") throw new ProviderError("rejected", "the card issuer declined the charge");
    if (typeof data.chargeId !== "string" || data.chargeId.length === 0 || data.chargeId.length > 200) {
      throw new ProviderError("unknown", "the card processor's answer could not be read");
    }
    return { chargeId: data.chargeId, status: "approved", cardId };
  }
}
