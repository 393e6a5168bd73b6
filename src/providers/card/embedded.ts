/**
 * The embedded card processor: each identity's virtual card is a ledger in the home, so card
 * charges work offline (`npm start`) and every charge can be checked afterwards.
 *
 * - Ledger: `$SIGIL_HOME/card/<identityId>.jsonl`, one JSON line per charge attempt that reached
 *   the processor — `{chargeId, ts, cardId, status: "approved" | "declined", amountCents,
 *   currency, merchant, merchantCategory?, description?, reference, declineReason?}` — appended
 *   under a cross-process lock and fdatasync'ed before the charge is acknowledged.
 * - The card id is derived from the identity id (`card_` + 16 hex digits); no card number exists.
 * - Spending limits are NOT enforced here: policy and the audit chain's reservations do that
 *   (atomically, across processes) before the processor is called. The processor only approves or
 *   declines, like an issuer would.
 * - Merchant categories: `$SIGIL_HOME/card/merchants.json` (`{"<merchant name>": "<MCC>"}`, names
 *   matched by `merchantKey`; `sigil card merchant add NAME MCC` writes it) is what this processor
 *   knows. `merchantCategory(merchant)` answers from it; `charge` reads it again and declines,
 *   by `categoryDecision`, a claim that differs or a category the request's rules refuse — so a
 *   change to the file between the lookup and the charge cannot let a charge through. The
 *   category it authorized is in the ledger line and the result. A malformed file fails closed
 *   (unavailable: nothing is charged).
 *
 * Test hooks (documented in the README; harmless in production because they only ever decline):
 *  - merchant exactly `DECLINE-TEST` → declined;
 *  - `SIGIL_CARD_DECLINE_ABOVE_CENTS=N` → any charge above N cents is declined;
 *  - `SIGIL_CARD_LATENCY_MS=N` (0-60000) → each charge takes N ms before it is decided (to widen
 *    races in tests).
 */
import path from "node:path";
import { randomBytes } from "node:crypto";
import { sha256hex } from "../../crypto/encoding.js";
import { ProviderError } from "../types.js";
import { type FileLayer, fsyncDir, realFiles, writeAll, writeFileDurable } from "../../util/fsx.js";
import { type Locks, createLocks } from "../../util/lock.js";
import { lockNamespace } from "../../../store/index.js";
import {
  type CardProcessor,
  type ChargeRequest,
  type ChargeResult,
  CardDeclined,
  DECLINE_TEST_MERCHANT,
  MCC_RE,
  categoryDecision,
  merchantKey,
} from "./processor.js";

const ID_RE = /^id_[0-9a-f]{20}$/;

/** One line of the ledger: the charge as requested, and what the processor decided. */
export interface LedgerLine extends Omit<ChargeRequest, "identityId" | "categoryRules"> {
  /** The category the processor knows the merchant by (merchants.json), when it knows one. */
  processorCategory?: string;
  chargeId: string;
  ts: string;
  cardId: string;
  status: "approved" | "declined";
  declineReason?: string;
}

export function cardIdFor(identityId: string): string {
  return "card_" + sha256hex("sigil-card-v1\n" + identityId).slice(0, 16);
}

export const ledgerFile = (home: string, identityId: string): string => path.join(home, "card", `${identityId}.jsonl`);
export const merchantsFile = (home: string): string => path.join(home, "card", "merchants.json");

export const MAX_MERCHANT_NAME = 200;

/** The merchants the embedded processor knows, by `merchantKey`. Absent file: none. Malformed: throws. */
export async function readMerchants(home: string, files: FileLayer = realFiles): Promise<Map<string, { name: string; category: string }>> {
  let text: string;
  try {
    text = (await files.readFile(merchantsFile(home))).toString("utf8");
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === "ENOENT") return new Map();
    throw err;
  }
  let doc: unknown;
  try {
    doc = JSON.parse(text);
  } catch {
    throw new Error("card/merchants.json is not valid JSON");
  }
  if (doc === null || typeof doc !== "object" || Array.isArray(doc)) throw new Error('card/merchants.json must be an object {"<merchant name>": "<MCC>"}');
  const out = new Map<string, { name: string; category: string }>();
  for (const [name, category] of Object.entries(doc)) {
    if (typeof category !== "string" || !MCC_RE.test(category)) throw new Error("card/merchants.json: every category must be a 4-digit MCC");
    const key = merchantKey(name);
    if (key === "" || name.length > MAX_MERCHANT_NAME) throw new Error("card/merchants.json: a merchant name is empty or too long");
    const prior = out.get(key);
    if (prior && prior.category !== category) throw new Error("card/merchants.json names one merchant twice with different categories");
    out.set(key, { name, category });
  }
  return out;
}

/** Adds (or changes) a merchant's category in merchants.json, under the home's lock. */
export async function addMerchant(home: string, name: string, category: string, files: FileLayer = realFiles): Promise<{ merchant: string; category: string; previous?: string }> {
  const key = merchantKey(name);
  if (key === "" || name.length > MAX_MERCHANT_NAME || /[\p{Cc}\p{Cf}\p{Zl}\p{Zp}]/u.test(name)) {
    throw new Error(`the merchant name must be 1 to ${MAX_MERCHANT_NAME} printable characters`);
  }
  if (!MCC_RE.test(category)) throw new Error("the category must be a 4-digit merchant category code (MCC)");
  const locks = createLocks(lockNamespace(home));
  return locks.withLock("card:merchants", async () => {
    const known = await readMerchants(home, files);
    const previous = known.get(key);
    const doc: Record<string, string> = {};
    for (const [k, v] of known) if (k !== key) doc[v.name] = v.category;
    doc[name] = category;
    await files.mkdir(path.dirname(merchantsFile(home)), 0o700);
    await writeFileDurable(files, merchantsFile(home), JSON.stringify(doc, null, 2) + "\n");
    return { merchant: name, category, ...(previous && previous.category !== category ? { previous: previous.category } : {}) };
  });
}

export interface EmbeddedOptions {
  home: string;
  /** SIGIL_CARD_DECLINE_ABOVE_CENTS: charges above this are declined. */
  declineAboveCents?: number;
  /** SIGIL_CARD_LATENCY_MS: how long each charge takes (default 0). */
  latencyMs?: number;
  files?: FileLayer;
  now?: () => number;
}

export class EmbeddedCardProcessor implements CardProcessor {
  readonly name = "embedded";
  private readonly files: FileLayer;
  private readonly locks: Locks;
  private readonly now: () => number;
  private readonly declineAbove?: number;
  private readonly latencyMs: number;
  private readonly synced = new Set<string>();

  constructor(private readonly opts: EmbeddedOptions) {
    this.files = opts.files ?? realFiles;
    this.locks = createLocks(lockNamespace(opts.home));
    this.now = opts.now ?? Date.now;
    if (opts.declineAboveCents !== undefined) this.declineAbove = opts.declineAboveCents;
    this.latencyMs = opts.latencyMs ?? 0;
  }

  async merchantCategory(merchant: string): Promise<string | undefined> {
    return (await this.merchants()).get(merchantKey(merchant))?.category;
  }

  private async merchants(): Promise<Map<string, { name: string; category: string }>> {
    try {
      return await readMerchants(this.opts.home, this.files);
    } catch (err) {
      throw new ProviderError("unavailable", "the card processor's merchant list cannot be read", { cause: err });
    }
  }

  async charge(req: ChargeRequest): Promise<ChargeResult> {
    if (!ID_RE.test(req.identityId)) throw new ProviderError("rejected", "the card processor does not know this card");
    if (this.latencyMs > 0) await new Promise((r) => setTimeout(r, this.latencyMs));
    const category = (await this.merchants()).get(merchantKey(req.merchant))?.category;
    const categoryProblem = categoryDecision(category, req.merchantCategory, req.categoryRules);
    const declineReason =
      categoryProblem?.reason ??
      (req.merchant === DECLINE_TEST_MERCHANT
        ? "test_merchant"
        : this.declineAbove !== undefined && req.amountCents > this.declineAbove
          ? "test_amount"
          : undefined);
    const line: LedgerLine = {
      chargeId: "ch_" + randomBytes(12).toString("hex"),
      ts: new Date(this.now()).toISOString(),
      cardId: cardIdFor(req.identityId),
      status: declineReason ? "declined" : "approved",
      amountCents: req.amountCents,
      currency: req.currency,
      merchant: req.merchant,
      ...(req.merchantCategory !== undefined ? { merchantCategory: req.merchantCategory } : {}),
      ...(category !== undefined ? { processorCategory: category } : {}),
      ...(req.description !== undefined ? { description: req.description } : {}),
      reference: req.reference,
      ...(declineReason ? { declineReason } : {}),
    };
    try {
      await this.append(req.identityId, line);
    } catch (err) {
      // Nothing is approved unless it is in the ledger; a failed append charged nothing.
      throw new ProviderError("unavailable", "the card ledger cannot be written; nothing was charged", { cause: err });
    }
    if (categoryProblem) throw new CardDeclined(categoryProblem.reason, categoryProblem.message);
    if (declineReason) throw new ProviderError("rejected", "the card issuer declined the charge");
    return { chargeId: line.chargeId, status: "approved", cardId: line.cardId, ...(category !== undefined ? { merchantCategory: category } : {}) };
  }

  private async append(identityId: string, line: LedgerLine): Promise<void> {
    const file = ledgerFile(this.opts.home, identityId);
    const dir = path.dirname(file);
    await this.locks.withLock(`card:${identityId}`, async () => {
      await this.files.mkdir(dir, 0o700);
      const fh = await this.files.open(file, "a", 0o600);
      try {
        await writeAll(fh, Buffer.from(JSON.stringify(line) + "\n"));
        await fh.datasync();
      } finally {
        await fh.close();
      }
      if (!this.synced.has(file)) {
        await fsyncDir(this.files, dir);
        this.synced.add(file);
      }
    });
  }
}

/** Reads one identity's ledger (for tests and operators). */
export async function readLedger(home: string, identityId: string, files: FileLayer = realFiles): Promise<LedgerLine[]> {
  if (!ID_RE.test(identityId)) return [];
  let text: string;
  try {
    text = (await files.readFile(ledgerFile(home, identityId))).toString("utf8");
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === "ENOENT") return [];
    throw err;
  }
  return text
    .split("\n")
    .filter((l) => l.trim() !== "")
    .map((l) => JSON.parse(l) as LedgerLine);
}
