/**
 * Inbound messages (SPEC §12): what the SMTP listener (smtp.ts) and the Twilio webhook (twilio.ts)
 * hand over, stored per identity and sealed at rest, and what the agent tools list_messages and
 * read_message are given to read.
 *
 * - Sealed: everything a message says (sender, recipients, subject, text, authentication results)
 *   is one XChaCha20-Poly1305 ciphertext under the master key's `inbound-seal` subkey, with
 *   associated data binding it to the identity, its id, channel and time of receipt: a record
 *   moved to another identity, or re-dated, does not open. Neither the store nor the audit log ever
 *   holds its text in the clear; the log records keyed hashes (`hash`).
 * - Audited: each receipt is an entry in the identity's log (session `inbound`, phase `event`,
 *   decision `received`), written in the identity's exclusive chain section right after the message
 *   is stored; if the entry cannot be written the message is removed again and the sender is told
 *   to retry. A refused message for a known identity (requireAuthentication) is an entry too.
 * - Bounded: on each receipt the identity's messages older than `inbound.retainDays` (default 30)
 *   and, oldest first, those beyond `inbound.maxMessages` (default 1000) are removed, and the
 *   receipt's entry names them (`dropped`). Expired messages are never shown even before that.
 * - Trust: a message is `untrusted` unless its sender matches policy `allowedSenders` — for mail,
 *   only when the From domain is authenticated (DMARC pass, or an aligned DKIM or SPF pass), since
 *   anyone can write any From header. Decided when read, under the policy of that moment.
 */
import { createHmac } from "node:crypto";
import { open, seal } from "../crypto/seal.js";
import { randomId } from "../crypto/tokens.js";
import type { AuditChains } from "../audit/chain.js";
import { domainAllowed, normalizeDomain } from "../policy/email-address.js";
import { DEFAULT_MAX_MESSAGES, DEFAULT_RETAIN_DAYS, type Policy, parsePolicy } from "../policy/schema.js";
import type { IdentityRecord, InboundRecord, Store } from "../../store/types.js";
import { visibleLine, visibleText } from "./text.js";

export type InboundChannel = "email" | "sms";

/** SPF / DKIM / DMARC as mailauth found them, and whether the From domain is authenticated by any. */
export interface AuthenticationResults {
  spf: string;
  dkim: string;
  dmarc: string;
  /** DMARC pass, or a DKIM or SPF pass aligned with the From domain. */
  fromAuthenticated: boolean;
}

/** What a message says: sealed as one JSON document. */
export interface MessageContent {
  /** The sender: the From header's address for mail (lower-cased), the E.164 number for SMS. */
  from: string;
  fromName?: string;
  to: string[];
  subject?: string;
  text: string;
  /** The text was cut to MAX_TEXT characters. */
  truncated?: boolean;
  /** Attachments are not kept: only what they were. */
  attachments?: Array<{ filename?: string; contentType: string; size: number }>;
  authentication?: AuthenticationResults;
  /** The SMTP envelope: MAIL FROM, the client's address and its EHLO name. */
  envelope?: { mailFrom?: string; remoteAddress?: string; helo?: string };
  /** The provider's id (Twilio MessageSid) or the Message-ID header. */
  providerId?: string;
}

/** Longest text kept per message (characters); longer text is cut and marked `truncated`. */
export const MAX_TEXT = 256 * 1024;
const MAX_LINE = 998;
const DAY_MS = 86_400_000;

export interface MessageSummary {
  id: string;
  channel: InboundChannel;
  from: string;
  subject?: string;
  receivedAt: string;
  read: boolean;
  untrusted: boolean;
}

export interface MessageView extends MessageSummary {
  fromName?: string;
  to: string[];
  text: string;
  truncated: boolean;
  attachments: Array<{ filename?: string; contentType: string; size: number }>;
  authentication?: AuthenticationResults;
}

export interface ListOptions {
  channel?: InboundChannel;
  unreadOnly?: boolean;
  since?: string;
  limit?: number;
}

/** What a tool is given: the identity's messages, opened, under the caller's policy. */
export interface InboxReader {
  list(policy: Policy, opts: ListOptions): Promise<{ messages: MessageSummary[]; unreadable: number }>;
  /** The message, marked read; "unreadable" when it exists but does not open (altered at rest). */
  read(policy: Policy, id: string): Promise<MessageView | "unreadable" | undefined>;
}

export interface InboxDeps {
  store: Pick<Store, "putInbound" | "getInbound" | "listInbound" | "markInboundRead" | "deleteInbound" | "listIdentities" | "getIdentity">;
  chains: Pick<AuditChains, "commit">;
  /** The master key's `inbound-seal` subkey. */
  key: Buffer;
  /** Keyed hash for the log. */
  hash: (value: string) => string;
  now: () => number;
}

/** Why a message was not stored: the sender gets a temporary failure (retry) or a permanent one. */
export class InboundRefused extends Error {
  constructor(
    readonly kind: "temporary" | "permanent",
    message: string,
    options?: { cause?: unknown; smtp?: { code: number; status: string } },
  ) {
    super(message, options);
    this.smtp = options?.smtp;
  }
  /** The SMTP reply, when not the default (451 4.3.0 temporary, 550 5.7.1 permanent). */
  readonly smtp: { code: number; status: string } | undefined;
}

const adOf = (r: Pick<InboundRecord, "identityId" | "id" | "channel" | "receivedAt">): string => `sigil/inbound/v1\n${r.identityId}\n${r.id}\n${r.channel}\n${r.receivedAt}`;

/** The identity's policy, or an empty one (default deny) when it does not parse. */
function policyOf(rec: IdentityRecord): Policy {
  const p = parsePolicy(rec.policy);
  return p.ok ? p.policy : {};
}

export class Inbox {
  private directory?: { at: number; byEmail: Map<string, string>; byPhone: Map<string, string> };

  constructor(private readonly deps: InboxDeps) {}

  /**
   * The identity a recipient address or number names: a live identity with that address (email
   * channel) or number (sms channel). Read from the registry at most every 2 seconds.
   */
  async recipient(channel: InboundChannel, address: string): Promise<IdentityRecord | undefined> {
    const now = this.deps.now();
    if (!this.directory || now - this.directory.at > 2000) {
      const byEmail = new Map<string, string>();
      const byPhone = new Map<string, string>();
      // Oldest first, first claim kept: creation does not refuse an address or number another live
      // identity has (another tenant's, say), and the newer one must never get the older one's messages.
      const live = (await this.deps.store.listIdentities()).filter((r) => !r.revokedAt).sort((a, b) => a.createdAt.localeCompare(b.createdAt) || a.id.localeCompare(b.id));
      for (const rec of live) {
        const email = rec.email.toLowerCase();
        if (rec.channels.includes("email") && !byEmail.has(email)) byEmail.set(email, rec.id);
        if (rec.phone && rec.channels.includes("sms") && !byPhone.has(rec.phone)) byPhone.set(rec.phone, rec.id);
      }
      this.directory = { at: now, byEmail, byPhone };
    }
    const id = channel === "email" ? this.directory.byEmail.get(address.toLowerCase()) : this.directory.byPhone.get(address);
    if (!id) return undefined;
    // The record as it is now, MAC checked (a revoked or tampered one names no one).
    const rec = await this.deps.store.getIdentity(id).catch(() => undefined);
    if (!rec || rec.revokedAt || !rec.channels.includes(channel)) return undefined;
    return rec;
  }

  /** The identity's policy as it stands (requireAuthentication is decided on it). */
  policyFor(rec: IdentityRecord): Policy {
    return policyOf(rec);
  }

  /**
   * A deterministic message id (e.g. from Twilio's MessageSid): the same message delivered twice
   * (a retry, a replay) is stored once.
   */
  idFor(identityId: string, channel: InboundChannel, providerId: string): string {
    return "msg_" + createHmac("sha256", this.deps.key).update(`sigil/inbound-id/v1\n${identityId}\n${channel}\n${providerId}`).digest("hex").slice(0, 20);
  }

  /**
   * Stores one message for one identity and records its receipt. Returns the message id, or
   * `duplicate` when a message with this id is already there (nothing stored, nothing recorded).
   * Throws InboundRefused("temporary") when it cannot be stored and recorded.
   */
  async receive(identity: IdentityRecord, channel: InboundChannel, content: MessageContent, opts: { id?: string; size: number }): Promise<string | "duplicate"> {
    const { store, chains, hash } = this.deps;
    const id = opts.id ?? randomId("msg_", 10);
    const receivedAt = new Date(this.deps.now()).toISOString();
    const record: InboundRecord = { id, identityId: identity.id, channel, receivedAt, sealed: seal(this.deps.key, Buffer.from(JSON.stringify(content), "utf8"), adOf({ identityId: identity.id, id, channel, receivedAt })) };
    const policy = policyOf(identity);
    let stored = false;
    try {
      const { value } = await chains.commit(identity.id, async () => {
        if (await store.getInbound(identity.id, id)) return { value: "duplicate" as const };
        await store.putInbound(record);
        stored = true;
        const dropped = await this.dropOld(identity.id, policy, id);
        return {
          value: id,
          draft: {
            session: "inbound",
            tool: channel === "email" ? "inbound_email" : "inbound_sms",
            phase: "event",
            decision: "received",
            args: {
              id,
              channel,
              size: opts.size,
              // Hashes of the text as read_message shows it, so a read's entry can be matched to its receipt.
              ...contentHashes(content, hash),
              ...(content.authentication ? { authentication: { spf: content.authentication.spf, dkim: content.authentication.dkim, dmarc: content.authentication.dmarc } } : {}),
            },
            ...(dropped.length > 0 ? { dropped } : {}),
          },
        };
      });
      return value;
    } catch (err) {
      // Not recorded: not kept either (the sender is asked to try again).
      if (stored) await store.deleteInbound(identity.id, [id]).catch(() => {});
      throw new InboundRefused("temporary", "the message could not be stored and recorded; try again later", { cause: err });
    }
  }

  /** A message refused for a known identity (e.g. it does not authenticate and policy requires it): an entry, nothing stored. */
  async recordRefusal(identity: IdentityRecord, channel: InboundChannel, reason: string, facts: { from: string; size: number; authentication?: AuthenticationResults }): Promise<void> {
    await this.deps.chains.commit(identity.id, () => ({
      value: null,
      draft: {
        session: "inbound",
        tool: channel === "email" ? "inbound_email" : "inbound_sms",
        phase: "event",
        decision: "refused",
        reason,
        args: {
          channel,
          size: facts.size,
          from: this.deps.hash(facts.from),
          ...(facts.authentication ? { authentication: { spf: facts.authentication.spf, dkim: facts.authentication.dkim, dmarc: facts.authentication.dmarc } } : {}),
        },
      },
    }));
  }

  /**
   * Removes the identity's expired messages and, oldest first, those beyond the bound (never
   * `keep`, the one just stored). Runs inside the identity's chain section; the caller's entry
   * names what went.
   */
  private async dropOld(identityId: string, policy: Policy, keep: string): Promise<Array<{ id: string; reason: "expired" | "over_limit" }>> {
    const all = await this.deps.store.listInbound(identityId);
    const cutoff = this.deps.now() - (policy.inbound?.retainDays ?? DEFAULT_RETAIN_DAYS) * DAY_MS;
    const max = policy.inbound?.maxMessages ?? DEFAULT_MAX_MESSAGES;
    const drops: Array<{ id: string; reason: "expired" | "over_limit" }> = [];
    const live = [];
    for (const r of all) {
      if (r.id !== keep && Date.parse(r.receivedAt) < cutoff) drops.push({ id: r.id, reason: "expired" });
      else live.push(r);
    }
    let over = live.length - max;
    for (const r of live) {
      if (over <= 0) break;
      if (r.id === keep) continue;
      drops.push({ id: r.id, reason: "over_limit" });
      over--;
    }
    if (drops.length > 0) await this.deps.store.deleteInbound(identityId, drops.map((d) => d.id));
    return drops;
  }

  /**
   * Removes expired messages of every identity that has any (run by `sigil serve` every hour), each
   * removal recorded in the identity's log (`inbound_expired`).
   */
  async sweep(): Promise<number> {
    let n = 0;
    for (const rec of await this.deps.store.listIdentities()) {
      const policy = policyOf(rec);
      const cutoff = this.deps.now() - (policy.inbound?.retainDays ?? DEFAULT_RETAIN_DAYS) * DAY_MS;
      const old = (await this.deps.store.listInbound(rec.id)).filter((r) => Date.parse(r.receivedAt) < cutoff);
      if (old.length === 0) continue;
      await this.deps.chains.commit(rec.id, async () => {
        await this.deps.store.deleteInbound(rec.id, old.map((r) => r.id));
        return { value: null, draft: { session: "inbound", tool: "inbound_expired", phase: "event", decision: "dropped", dropped: old.map((r) => ({ id: r.id, reason: "expired" })) } };
      });
      n += old.length;
    }
    return n;
  }

  /** Opens a stored message; undefined when it does not open (altered at rest, moved, or another master key). */
  private openRecord(r: InboundRecord): MessageContent | undefined {
    try {
      return JSON.parse(Buffer.from(open(this.deps.key, r.sealed, adOf(r))).toString("utf8")) as MessageContent;
    } catch {
      return undefined;
    }
  }

  readerFor(identityId: string): InboxReader {
    const live = (policy: Policy, r: InboundRecord): boolean => Date.parse(r.receivedAt) >= this.deps.now() - (policy.inbound?.retainDays ?? DEFAULT_RETAIN_DAYS) * DAY_MS;
    return {
      list: async (policy, opts) => {
        const since = opts.since !== undefined ? Date.parse(opts.since) : undefined;
        const rows = (await this.deps.store.listInbound(identityId))
          .filter((r) => live(policy, r))
          .filter((r) => opts.channel === undefined || r.channel === opts.channel)
          .filter((r) => !opts.unreadOnly || r.readAt === undefined)
          .filter((r) => since === undefined || Date.parse(r.receivedAt) >= since)
          .reverse() // newest first
          .slice(0, opts.limit ?? 20);
        let unreadable = 0;
        const messages: MessageSummary[] = [];
        for (const r of rows) {
          const c = this.openRecord(r);
          if (!c) {
            unreadable++;
            continue;
          }
          messages.push(summaryOf(r, c, policy));
        }
        return { messages, unreadable };
      },
      read: async (policy, id) => {
        const r = await this.deps.store.getInbound(identityId, id);
        if (!r || !live(policy, r)) return undefined;
        const c = this.openRecord(r);
        if (!c) return "unreadable";
        await this.deps.store.markInboundRead(identityId, id, new Date(this.deps.now()).toISOString());
        const { text, truncated } = visibleText(c.text, MAX_TEXT);
        return {
          ...summaryOf(r, c, policy),
          read: true,
          ...(c.fromName !== undefined ? { fromName: visibleLine(c.fromName, 256) } : {}),
          to: c.to.map((t) => visibleLine(t, 320)),
          text,
          truncated: truncated || c.truncated === true,
          attachments: (c.attachments ?? []).map((a) => ({ ...(a.filename !== undefined ? { filename: visibleLine(a.filename, 256) } : {}), contentType: visibleLine(a.contentType, 128), size: a.size })),
          ...(c.authentication ? { authentication: c.authentication } : {}),
        };
      },
    };
  }
}

/** Keyed hashes of what a message says, in the form read_message shows it (its entry records the same). */
export function contentHashes(c: Pick<MessageContent, "from" | "subject" | "text">, hash: (v: string) => string): { from: string; subject?: string; text: string } {
  return {
    from: hash(visibleLine(c.from, 320)),
    ...(c.subject !== undefined ? { subject: hash(visibleLine(c.subject, MAX_LINE)) } : {}),
    text: hash(visibleText(c.text, MAX_TEXT).text),
  };
}

function summaryOf(r: InboundRecord, c: MessageContent, policy: Policy): MessageSummary {
  return {
    id: r.id,
    channel: r.channel,
    from: visibleLine(c.from, 320),
    ...(c.subject !== undefined ? { subject: visibleLine(c.subject, MAX_LINE) } : {}),
    receivedAt: r.receivedAt,
    read: r.readAt !== undefined,
    untrusted: !senderAllowed(policy, r.channel, c),
  };
}

/**
 * Whether policy `allowedSenders` vouches for this message's sender: an SMS's number listed
 * exactly; a mail's From domain equal to (or under) a listed domain, or `*`, AND authenticated
 * (anyone can write any From header).
 */
export function senderAllowed(policy: Policy, channel: InboundChannel, c: MessageContent): boolean {
  const allowed = policy.allowedSenders;
  if (!allowed || allowed.length === 0) return false;
  if (channel === "sms") return allowed.includes(c.from);
  if (c.authentication?.fromAuthenticated !== true) return false;
  const at = c.from.lastIndexOf("@");
  if (at < 0) return false;
  const d = normalizeDomain(c.from.slice(at + 1));
  if (!d.ok) return false;
  return domainAllowed(d.ascii, allowed.filter((s) => !s.startsWith("+")));
}
