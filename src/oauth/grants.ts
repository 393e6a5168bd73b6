/**
 * OAuth grants: what a person allowed a client to do (act as one identity at one resource), and
 * the tokens issued under it. The protocol around it (metadata, PKCE, the endpoints) is the MCP
 * SDK's (src/oauth/routes.ts); this module is the state and its rules.
 *
 * - Tokens are opaque: `sigil_oac_` (authorization code, 60 s), `sigil_oat_` (access, 1 h),
 *   `sigil_ort_` (refresh, 30 days, rotated on every use), each followed by the grant id and 256
 *   random bits. Only their keyed hashes are stored (src/identity/record-mac.ts, `TokenHashes`),
 *   inside the grant record, which carries a record MAC (kind `oauth_grant`): a store writer
 *   without the master key can neither mint a token nor move a grant to another identity.
 * - A grant has one live access token and one live refresh token. Refreshing replaces both; the
 *   refresh token rotated out is remembered (the last MAX_USED_REFRESH), and presenting it again
 *   — the sign of a stolen token used by two parties — revokes the grant. So does a second
 *   exchange of an authorization code.
 * - Revoking the grant (by the client at /revoke, by reuse detection, by an administrator), or the
 *   identity, ends its tokens at once: every request re-reads the grant and the identity record.
 * - Every grant, issuance and revocation is recorded in the identity's log as an administrative
 *   change (`adminChange`: intent, then the change and its `ok` result — `failed` when it did not
 *   take effect): `oauth_granted`, `oauth_tokens_issued`, `oauth_revoked`. Entries name the grant,
 *   client and resource, never a token.
 * - The log, not the record, is the authority on revocation and on the token generation: a store
 *   writer can put back an older copy of a grant record (its MAC was valid then), so every agent
 *   call and every issuance compares the record with what the log recorded (`behindLog`, checked
 *   under the identity's chain lock): a revocation the record no longer shows, or a generation
 *   below the log's, refuses the call (audited) and issues nothing.
 */
import { randomBytes } from "node:crypto";
import { hashesEqual, randomId } from "../crypto/tokens.js";
import { adminChange } from "../identity/identities.js";
import { type RecordMac, RecordTampered, type TokenHashes } from "../identity/record-mac.js";
import { Denied, refId } from "../errors.js";
import type { AuditChains, LoggedGrant } from "../audit/chain.js";
import { type IdentityRecord, type OAuthGrantRecord, type Store, OAUTH_GRANT_ID_RE } from "../../store/types.js";

export const CODE_TTL_MS = 60_000;
export const ACCESS_TTL_MS = 60 * 60_000;
export const REFRESH_TTL_MS = 30 * 24 * 60 * 60_000;
/** Refresh tokens rotated out that are still recognised (and revoke the grant when presented). */
const MAX_USED_REFRESH = 100;

const KINDS = { code: "sigil_oac_", access: "sigil_oat_", refresh: "sigil_ort_" } as const;
type TokenKindName = keyof typeof KINDS;
const TOKEN_RE = /^sigil_(oac|oat|ort)_(og_[0-9a-f]{20})_([A-Za-z0-9_-]{43})$/;

/** Whether a bearer value has the shape of a sigil OAuth access token (it may still be wrong). */
export const isOAuthAccessToken = (token: string): boolean => token.startsWith(KINDS.access);

/** The grant id a token of `kind` names, or undefined when it is not one. */
function grantOf(token: string, kind: TokenKindName): string | undefined {
  const m = TOKEN_RE.exec(token);
  return m && `sigil_${m[1]}_` === KINDS[kind] ? m[2] : undefined;
}

const mint = (kind: TokenKindName, grantId: string): string => `${KINDS[kind]}${grantId}_${randomBytes(32).toString("base64url")}`;

/** Why a token or code was refused; the message is safe to return to the client. */
export class GrantError extends Error {
  constructor(
    readonly kind: "invalid_grant" | "invalid_token" | "invalid_target",
    message: string,
  ) {
    super(message);
  }
}

export interface NewGrant {
  identityId: string;
  tenantId: string;
  clientId: string;
  clientName: string;
  redirectUri: string;
  resource: string;
  challenge: string;
  grantedBy: string;
}

export interface IssuedTokens {
  access_token: string;
  token_type: "Bearer";
  expires_in: number;
  refresh_token: string;
}

/** An access token that authenticates: its grant and identity. */
export interface AccessGrant {
  grant: OAuthGrantRecord;
  identity: IdentityRecord;
  expiresAt: number;
}

export class Grants {
  constructor(
    private readonly store: Pick<Store, "createOAuthGrant" | "getOAuthGrant" | "updateOAuthGrant" | "listOAuthGrants" | "getIdentity">,
    private readonly chains: Pick<AuditChains, "commit">,
    private readonly tokens: Pick<TokenHashes, "hash">,
    private readonly macs: RecordMac,
    private readonly now: () => number,
    private readonly instanceId?: string,
  ) {}

  private iso = (ms: number): string => new Date(ms).toISOString();
  private seal = (g: OAuthGrantRecord): OAuthGrantRecord => this.macs.seal("oauth_grant", g.id, g);

  /** The grant if its MAC checks (undefined when there is none); a forged one is reported and refused. */
  async read(id: string): Promise<OAuthGrantRecord | undefined> {
    if (!OAUTH_GRANT_ID_RE.test(id)) return undefined;
    const g = await this.store.getOAuthGrant(id);
    if (!g) return undefined;
    if (g.id !== id || !this.macs.check("oauth_grant", id, g)) {
      process.stderr.write(`sigil: record_tampered: OAuth grant ${id} fails its integrity check (changed without the master key); its tokens are refused (${refId()})\n`);
      throw new RecordTampered("oauth_grant", id);
    }
    return g;
  }

  /** Read-modify-write of a grant that checks the MAC of what it builds on and seals what it writes. */
  private update(id: string, fn: (g: OAuthGrantRecord) => OAuthGrantRecord): Promise<OAuthGrantRecord> {
    return this.store.updateOAuthGrant(id, (cur) => {
      if (!this.macs.check("oauth_grant", id, cur)) throw new RecordTampered("oauth_grant", id);
      return this.seal(fn(cur));
    });
  }

  /** Records the consent: a new grant holding an authorization code. Returns the code. */
  async grant(input: NewGrant): Promise<{ grantId: string; code: string }> {
    const id = randomId("og_");
    const code = mint("code", id);
    const at = this.now();
    await adminChange(
      this.chains,
      this.instanceId,
      input.identityId,
      "oauth_granted",
      () => ({ value: null, fields: { grant: id, client: input.clientId, resource: input.resource } }),
      () =>
        this.store.createOAuthGrant(
          this.seal({
            id,
            identityId: input.identityId,
            tenantId: input.tenantId,
            clientId: input.clientId,
            clientName: input.clientName,
            redirectUri: input.redirectUri,
            resource: input.resource,
            grantedBy: input.grantedBy,
            createdAt: this.iso(at),
            code: { hash: this.tokens.hash(code), challenge: input.challenge, expiresAt: this.iso(at + CODE_TTL_MS) },
            generation: 0,
            usedRefresh: [],
          }),
        ),
    );
    return { grantId: id, code };
  }

  /** The PKCE challenge of a live authorization code issued to `clientId`. */
  async challenge(clientId: string, code: string): Promise<string> {
    const g = await this.codeGrant(clientId, code);
    return g.code!.challenge;
  }

  private async codeGrant(clientId: string, code: string): Promise<OAuthGrantRecord> {
    const id = grantOf(code, "code");
    const g = id ? await this.read(id).catch(() => undefined) : undefined;
    const bad = new GrantError("invalid_grant", "The authorization code is not valid.");
    if (!g || g.clientId !== clientId) throw bad;
    if (g.revokedAt) throw bad;
    // The code itself first: a code of the right shape naming a grant (its id is in audit entries
    // and bundles) proves nothing, and must not end someone else's grant.
    if (!g.code || !hashesEqual(g.code.hash, this.tokens.hash(code))) throw bad;
    if (g.codeUsed) {
      // This code, exchanged twice: whoever holds it is not (only) the client. End the grant.
      await this.revoke(g.id, "code_reuse").catch(() => {});
      throw bad;
    }
    if (Date.parse(g.code.expiresAt) <= this.now()) throw new GrantError("invalid_grant", "The authorization code has expired.");
    return g;
  }

  /** Exchanges a code (PKCE already checked by the SDK's token handler) for the first tokens. */
  async exchange(clientId: string, code: string, redirectUri: string | undefined, resource: string | undefined): Promise<IssuedTokens> {
    const g = await this.codeGrant(clientId, code);
    // RFC 6749 §4.1.3: the redirect URI given at the authorization request, exactly.
    if (redirectUri === undefined || redirectUri !== g.redirectUri) throw new GrantError("invalid_grant", "redirect_uri does not match the authorization request.");
    if (resource !== undefined && resource !== g.resource) throw new GrantError("invalid_target", "The resource does not match the one this code was issued for.");
    const codeHash = g.code!.hash;
    return this.issue(g, "code", (cur) => Boolean(cur.code && !cur.codeUsed && hashesEqual(cur.code.hash, codeHash)));
  }

  /** Rotates a refresh token: new access and refresh tokens; the old refresh token is spent. */
  async refresh(clientId: string, refreshToken: string, resource: string | undefined): Promise<IssuedTokens> {
    const id = grantOf(refreshToken, "refresh");
    const g = id ? await this.read(id).catch(() => undefined) : undefined;
    const bad = new GrantError("invalid_grant", "The refresh token is not valid.");
    if (!g || g.clientId !== clientId || g.revokedAt) throw bad;
    const h = this.tokens.hash(refreshToken);
    if (g.usedRefresh.some((u) => hashesEqual(u, h))) {
      await this.revoke(g.id, "refresh_reuse").catch(() => {});
      throw bad;
    }
    if (!g.refresh || !hashesEqual(g.refresh.hash, h)) throw bad;
    if (Date.parse(g.refresh.expiresAt) <= this.now()) throw new GrantError("invalid_grant", "The refresh token has expired.");
    if (resource !== undefined && resource !== g.resource) throw new GrantError("invalid_target", "The resource does not match the one this grant is for.");
    try {
      return await this.issue(g, "refresh", (cur) => Boolean(cur.refresh && hashesEqual(cur.refresh.hash, h)));
    } catch (err) {
      // Spent by a concurrent request with the same token in between: that is a reuse too.
      if (err instanceof Spent) {
        await this.revoke(g.id, "refresh_reuse").catch(() => {});
        throw bad;
      }
      throw err;
    }
  }

  /** Issues the next generation of tokens if `current(grant)` still holds when the grant is written. */
  private async issue(g: OAuthGrantRecord, via: "code" | "refresh", current: (g: OAuthGrantRecord) => boolean): Promise<IssuedTokens> {
    const identity = await this.liveIdentity(g.identityId);
    if (!identity) throw new GrantError("invalid_grant", "The identity of this grant has been revoked.");
    const generation = g.generation + 1;
    const access = mint("access", g.id);
    const refresh = mint("refresh", g.id);
    await adminChange(
      this.chains,
      this.instanceId,
      g.identityId,
      "oauth_tokens_issued",
      () => ({ value: null, fields: { grant: g.id, client: g.clientId, generation, via } }),
      (_v, state) =>
        this.update(g.id, (cur) => {
          // An older copy of the record put back into the store: the log knows better.
          const behind = behindLog(cur, state.oauthGrant(g.id));
          if (behind) throw new Denied(behind.reason === "revoked" ? "record_stale" : behind.reason, behind.message);
          if (cur.revokedAt || cur.generation !== g.generation || !current(cur)) throw new Spent();
          const at = this.now();
          const used = cur.refresh ? [...cur.usedRefresh, cur.refresh.hash].slice(-MAX_USED_REFRESH) : cur.usedRefresh;
          // The spent code's hash stays (with codeUsed) so that presenting it again is recognised.
          return {
            ...cur,
            codeUsed: true,
            generation,
            access: { hash: this.tokens.hash(access), expiresAt: this.iso(at + ACCESS_TTL_MS) },
            refresh: { hash: this.tokens.hash(refresh), expiresAt: this.iso(at + REFRESH_TTL_MS) },
            usedRefresh: used,
          };
        }),
    ).catch((err: unknown) => {
      if (err instanceof Spent && via === "code") throw new GrantError("invalid_grant", "The authorization code is not valid.");
      if (err instanceof Denied) {
        process.stderr.write(`sigil: record_stale: OAuth grant ${g.id} is older than its identity's audit log; no token was issued (${refId()})\n`);
        throw new GrantError("invalid_grant", via === "code" ? "The authorization code is not valid." : "The refresh token is not valid.");
      }
      throw err;
    });
    return { access_token: access, token_type: "Bearer", expires_in: ACCESS_TTL_MS / 1000, refresh_token: refresh };
  }

  /** The identity record when it exists, authenticates and is not revoked. */
  private async liveIdentity(id: string): Promise<IdentityRecord | undefined> {
    const rec = await this.store.getIdentity(id).catch((err: unknown) => (err instanceof RecordTampered ? undefined : Promise.reject(err)));
    return rec && !rec.revokedAt ? rec : undefined;
  }

  /**
   * What an access token names, or why it names nothing (`GrantError` invalid_token): unknown,
   * revoked grant, expired, revoked identity. The resource is checked by the caller.
   */
  async verifyAccess(token: string): Promise<AccessGrant> {
    const id = grantOf(token, "access");
    const g = id ? await this.read(id).catch(() => undefined) : undefined;
    if (!g || !g.access || !hashesEqual(g.access.hash, this.tokens.hash(token))) throw new GrantError("invalid_token", "The access token is not valid.");
    if (g.revokedAt) throw new GrantError("invalid_token", "The access token has been revoked.");
    const expiresAt = Date.parse(g.access.expiresAt);
    if (expiresAt <= this.now()) throw new GrantError("invalid_token", "The access token has expired.");
    const identity = await this.liveIdentity(g.identityId);
    if (!identity) throw new GrantError("invalid_token", "The identity of this access token has been revoked.");
    return { grant: g, identity, expiresAt };
  }

  /** Whether grant `id` still stands (not revoked, its identity live): for sessions opened under it. */
  async live(id: string): Promise<boolean> {
    const g = await this.read(id).catch(() => undefined);
    return Boolean(g && !g.revokedAt && (await this.liveIdentity(g.identityId)));
  }

  /**
   * Why a call under grant `id` is refused, or undefined when the grant stands: revoked (by its
   * record, or by the log — `logged`, what the identity's log recorded of it, read under the
   * chain lock), behind the log (an older copy put back), gone, or its identity revoked.
   */
  async refusal(id: string, logged: LoggedGrant | undefined): Promise<{ reason: string; message: string } | undefined> {
    const revoked = { reason: "revoked", message: "this session's OAuth grant has been revoked; sign in again from the client." };
    const g = await this.read(id).catch(() => undefined);
    if (!g || g.revokedAt || !(await this.liveIdentity(g.identityId))) return revoked;
    const behind = behindLog(g, logged);
    if (behind) process.stderr.write(`sigil: ${behind.reason === "revoked" ? "record_stale" : behind.reason}: OAuth grant ${id} is older than its identity's audit log (${logged!.revoked ? "the log records its revocation" : `the log records generation ${logged!.generation}`}); its tokens are refused (${refId()})\n`);
    return behind;
  }

  /**
   * RFC 7009: a client revokes one of its tokens; sigil ends the whole grant (both tokens). A token
   * that is not the client's, or not valid, changes nothing (and the answer is the same).
   */
  async revokeToken(clientId: string, token: string): Promise<void> {
    const id = grantOf(token, "access") ?? grantOf(token, "refresh");
    const g = id ? await this.read(id).catch(() => undefined) : undefined;
    if (!g || g.clientId !== clientId || g.revokedAt) return;
    const h = this.tokens.hash(token);
    const held = [g.access?.hash, g.refresh?.hash].some((x) => x !== undefined && hashesEqual(x, h));
    if (held) await this.revoke(g.id, "client");
  }

  /**
   * Ends a grant (audited as `oauth_revoked` with the reason); revoking a revoked grant changes
   * nothing. Two revocations racing each write an intent; the one that finds the grant already
   * revoked records `failed` (it did not take effect), never a second `ok`.
   */
  async revoke(id: string, reason: "client" | "refresh_reuse" | "code_reuse" | "admin"): Promise<void> {
    const g = await this.read(id);
    if (!g || g.revokedAt) return;
    await adminChange(
      this.chains,
      this.instanceId,
      g.identityId,
      "oauth_revoked",
      () => ({ value: null, fields: { grant: id, client: g.clientId, reason } }),
      () =>
        this.update(id, (cur) => {
          if (cur.revokedAt) throw new Spent();
          const { code: _c, access: _a, ...rest } = cur;
          return { ...rest, revokedAt: this.iso(this.now()), revokedReason: reason, usedRefresh: cur.refresh ? [...cur.usedRefresh, cur.refresh.hash].slice(-MAX_USED_REFRESH) : cur.usedRefresh };
        }),
    ).catch((err: unknown) => {
      if (!(err instanceof Spent)) throw err;
    });
  }

  /** One identity's grants as an administrator sees them (no hashes). */
  async list(identityId: string): Promise<Array<{ id: string; clientId: string; clientName: string; resource: string; createdAt: string; revokedAt?: string }>> {
    const out = [];
    for (const g of await this.store.listOAuthGrants(identityId)) {
      if (!this.macs.check("oauth_grant", g.id, g)) continue;
      out.push({ id: g.id, clientId: g.clientId, clientName: g.clientName, resource: g.resource, createdAt: g.createdAt, ...(g.revokedAt ? { revokedAt: g.revokedAt } : {}) });
    }
    return out;
  }
}

/**
 * Why a grant record is behind what the identity's log recorded of it (an older copy put back into
 * the store), or undefined when it is not.
 */
export function behindLog(g: Pick<OAuthGrantRecord, "revokedAt" | "generation">, logged: LoggedGrant | undefined): { reason: "revoked" | "record_stale"; message: string } | undefined {
  if (!logged) return undefined;
  if (logged.revoked && !g.revokedAt) return { reason: "revoked", message: "this session's OAuth grant has been revoked (the audit log records it; the grant's record was put back from an older copy); sign in again from the client." };
  if (g.generation < logged.generation) return { reason: "record_stale", message: "this session's OAuth grant record is older than the audit log says (put back from an older copy); sign in again from the client." };
  return undefined;
}

/** The grant moved on (revoked, or its code or refresh token spent) between the check and the write. */
class Spent extends Error {}
