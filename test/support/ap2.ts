/**
 * An AP2 v0.2 mandate verifier written for the tests, independently of sigil's code: `@sd-jwt/core`
 * (with `@sd-jwt/crypto-nodejs`) verifies each SD-JWT's signature and resolves its disclosures,
 * `jose` imports the keys; on top, what AP2 (docs/ap2/*.md) and RFC 9901 add: every disclosure must
 * be referenced by a digest (the library drops unreferenced ones silently), each hop after the root
 * is a `kb+sd-jwt` signed by the previous hop's `cnf.jwk` whose `sd_hash` is the SHA-256 of the
 * previous hop exactly as presented, the terminal hop's `aud`/`nonce` are the verifier's, times
 * hold, and the closed mandate meets every constraint of the open one (unknown types refused).
 */
import { createHash } from "node:crypto";
import { SDJwtInstance } from "@sd-jwt/core";
import { ES256, digest } from "@sd-jwt/crypto-nodejs";

export type Jwk = Record<string, unknown>;

const sha = (s: string): string => createHash("sha256").update(s, "ascii").digest("base64url");

/** Every digest the payload (and the disclosed values) reference: `_sd` members and `{"...": d}` array elements. */
function referenced(v: unknown, out: Set<string>): void {
  if (Array.isArray(v)) for (const x of v) referenced(x, out);
  else if (v !== null && typeof v === "object") {
    for (const [k, x] of Object.entries(v)) {
      if (k === "_sd" && Array.isArray(x)) for (const d of x) out.add(String(d));
      else if (k === "..." && typeof x === "string") out.add(x);
      else referenced(x, out);
    }
  }
}

function decodeSegment(s: string): unknown {
  return JSON.parse(Buffer.from(s, "base64url").toString("utf8"));
}

/** Checks that each disclosure of a compact SD-JWT is referenced by the signed payload or another disclosure. */
function allDisclosuresReferenced(compact: string): void {
  const parts = compact.split("~");
  const jwt = parts[0]!;
  const disclosures = parts.slice(1).filter((d) => d !== "");
  const refs = new Set<string>();
  referenced(decodeSegment(jwt.split(".")[1]!), refs);
  for (const d of disclosures) referenced(decodeSegment(d), refs);
  for (const d of disclosures) if (!refs.has(sha(d))) throw new Error(`disclosure ${d.slice(0, 12)}… is referenced by nothing`);
  if (new Set(disclosures).size !== disclosures.length) throw new Error("a disclosure is repeated");
}

async function verifySdJwt(compact: string, key: Jwk | "unchecked"): Promise<{ header: Record<string, unknown>; payload: Record<string, unknown> }> {
  allDisclosuresReferenced(compact);
  if (key === "unchecked") {
    const sd = new SDJwtInstance({ hasher: digest });
    const payload = (await sd.getClaims(compact)) as Record<string, unknown>;
    return { header: decodeSegment(compact.split(".")[0]!) as Record<string, unknown>, payload };
  }
  const sd = new SDJwtInstance({ verifier: await ES256.getVerifier(key as never), hasher: digest });
  const r = await sd.verify(compact);
  return { header: (r.header ?? {}) as Record<string, unknown>, payload: r.payload as Record<string, unknown> };
}

/** The members each AP2 mandate type requires (code/sdk/schemas/ap2/*.json), and the checkout hash. */
const REQUIRED: Record<string, string[]> = {
  "mandate.payment.open.1": ["constraints", "cnf"],
  "mandate.checkout.open.1": ["constraints", "cnf"],
  "mandate.payment.1": ["transaction_id", "payee", "payment_amount", "payment_instrument"],
  "mandate.checkout.1": ["checkout_jwt", "checkout_hash"],
};
function requiredMembers(m: Record<string, unknown>, hop: number): void {
  const need = REQUIRED[String(m.vct)];
  if (!need) throw new Error(`hop ${hop}: unknown vct ${String(m.vct)}`);
  for (const k of need) if (m[k] === undefined) throw new Error(`hop ${hop}: ${String(m.vct)} without ${k}`);
  if (m.vct === "mandate.checkout.1" && m.checkout_hash !== sha(String(m.checkout_jwt))) throw new Error(`hop ${hop}: checkout_hash is not the hash of checkout_jwt`);
}

export interface VerifiedChain {
  /** Per hop: the header and the mandate it carries (`delegate_payload[0]`, disclosures resolved). */
  hops: Array<{ header: Record<string, unknown>; claims: Record<string, unknown>; mandate: Record<string, unknown> }>;
  /** SHA-256 of each hop as presented (the next hop's sd_hash). */
  hashes: string[];
}

/**
 * Verifies a `~~`-joined chain: the root under `rootKey` ("unchecked" when the verifier has no
 * key for it — AP2's documentation examples, whose provider key was never published), each next hop
 * under the previous mandate's `cnf.jwk`.
 */
export async function verifyChain(chainText: string, opts: { rootKey: Jwk | "unchecked"; aud?: string; nonce?: string; nowSeconds: number }): Promise<VerifiedChain> {
  const segments = chainText.split("~~");
  const hops: VerifiedChain["hops"] = [];
  const hashes: string[] = [];
  let key: Jwk | "unchecked" = opts.rootKey;
  for (let i = 0; i < segments.length; i++) {
    const seg = i < segments.length - 1 && !segments[i]!.endsWith("~") ? `${segments[i]}~` : segments[i]!;
    const { header, payload } = await verifySdJwt(seg, key);
    if (header.alg !== "ES256") throw new Error(`hop ${i}: alg ${String(header.alg)}`);
    const dp = payload.delegate_payload;
    if (!Array.isArray(dp) || dp.length !== 1 || dp[0] === null || typeof dp[0] !== "object") throw new Error(`hop ${i}: delegate_payload must disclose exactly one mandate`);
    const mandate = dp[0] as Record<string, unknown>;
    if (i > 0) {
      if (header.typ !== "kb+sd-jwt") throw new Error(`hop ${i}: typ ${String(header.typ)}`);
      if (payload.sd_hash !== hashes[i - 1]) throw new Error(`hop ${i}: sd_hash does not match the previous hop`);
      if (typeof payload.iat !== "number" || payload.iat > opts.nowSeconds + 300) throw new Error(`hop ${i}: iat`);
      if (i === segments.length - 1) {
        if (opts.aud !== undefined && payload.aud !== opts.aud) throw new Error(`hop ${i}: aud`);
        if (opts.nonce !== undefined && payload.nonce !== opts.nonce) throw new Error(`hop ${i}: nonce`);
      }
    }
    for (const t of [mandate.exp, payload.exp]) if (typeof t === "number" && opts.nowSeconds > t + 300) throw new Error(`hop ${i}: expired`);
    requiredMembers(mandate, i);
    hops.push({ header, claims: payload, mandate });
    hashes.push(sha(seg));
    const cnf = (mandate.cnf as { jwk?: Jwk } | undefined)?.jwk;
    if (i < segments.length - 1) {
      if (!cnf || cnf.kty !== "EC" || cnf.crv !== "P-256") throw new Error(`hop ${i}: cnf.jwk must be a P-256 key`);
      key = cnf;
    } else if (i > 0 && cnf) throw new Error("the terminal hop must not carry cnf");
  }
  return { hops, hashes };
}

const sameMerchant = (a: Record<string, unknown>, b: Record<string, unknown>): boolean =>
  a.id !== undefined && b.id !== undefined ? a.id === b.id : a.name === b.name && a.website === b.website && !!a.website;

/** The violations of an open payment mandate's constraints by a closed one (AP2 payment_mandate.md), [] when it meets them all. */
export function paymentViolations(open: Record<string, unknown>, closed: Record<string, unknown>, ctx: { openCheckoutHash?: string; spentBefore?: number; usesBefore?: number } = {}): string[] {
  const out: string[] = [];
  if (open.vct !== "mandate.payment.open.1") out.push(`open vct ${String(open.vct)}`);
  if (closed.vct !== "mandate.payment.1") out.push(`closed vct ${String(closed.vct)}`);
  const amount = closed.payment_amount as { amount: number; currency: string };
  const payee = closed.payee as Record<string, unknown>;
  for (const c of open.constraints as Array<Record<string, any>>) {
    switch (c.type) {
      case "payment.amount_range":
        if (amount.currency !== c.currency) out.push("currency");
        if (amount.amount > c.max) out.push("amount above max");
        if (c.min !== undefined && amount.amount < c.min) out.push("amount below min");
        break;
      case "payment.allowed_payees":
        if (!Array.isArray(c.allowed) || c.allowed.length === 0 || !c.allowed.some((p: Record<string, unknown>) => sameMerchant(p, payee))) out.push("payee not allowed");
        break;
      case "payment.reference":
        if (ctx.openCheckoutHash === undefined || ctx.openCheckoutHash !== c.conditional_transaction_id) out.push("reference does not match the open checkout mandate");
        break;
      case "payment.budget":
        if (amount.currency !== c.currency) out.push("budget currency");
        if ((ctx.spentBefore ?? 0) + amount.amount > Math.round(c.max * 100)) out.push("over budget");
        break;
      case "payment.agent_recurrence":
        if (c.max_occurrences !== undefined && (ctx.usesBefore ?? 0) >= c.max_occurrences) out.push("too many occurrences");
        break;
      default:
        out.push(`unknown constraint ${String(c.type)}`);
    }
  }
  return out;
}
