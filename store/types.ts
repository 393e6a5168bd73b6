/**
 * The persistence interface. Callers speak in operations (create an identity, update one under a
 * lock, append to a chain); each backend decides how to make them atomic and durable:
 * `store/file` (the embedded home: lowdb documents + append-only JSONL) and, later, PostgreSQL.
 */
import type { Sealed } from "../src/crypto/seal.js";

export const CHANNELS = ["email", "sms", "voice", "vault", "card", "sign"] as const;

/** The shape of identity ids and token hashes: anything else is refused before it reaches a backend. */
export const ID_RE = /^id_[0-9a-f]{20}$/;
export const HASH_RE = /^[0-9a-f]{64}$/;
/** Tenant ids: `default` (made by `sigil init`, or on the first open of an older home) or `tn_` + 20 hex. */
export const TENANT_ID_RE = /^(?:default|tn_[0-9a-f]{20})$/;
export const DEFAULT_TENANT = "default";
export type Channel = (typeof CHANNELS)[number];

export interface KeyRecord {
  keyId: string; // RFC 7638 thumbprint of the public key
  publicKey: string; // base64, 32 bytes
  sealed: Sealed; // the 64-byte libsodium secret key, sealed under the master key
  createdAt: string;
  /** When the key became the active signer (the time of the audit entry that activated it). */
  notBefore?: string;
  /** When the key stopped signing (the time of the rotation entry that retired it). */
  notAfter?: string;
  status: "pending" | "active" | "retired";
}

export interface IdentityRecord {
  id: string;
  name: string;
  channels: Channel[];
  email: string;
  phone?: string;
  policy: Record<string, unknown>;
  policyVersion: number;
  tokenHash: string;
  createdAt: string;
  updatedAt: string;
  revokedAt?: string;
  keys: KeyRecord[];
  /**
   * The tenant the identity belongs to. Records written before tenants existed have none and
   * belong to `default` (see `tenantOf` in src/tenant/tenants.ts).
   */
  tenantId?: string;
  /** The tenant key's signed delegation statements for the identity's keys (src/provenance/delegation.ts), oldest first. */
  delegations?: DelegationRecord[];
  /**
   * Identities with the `card` channel: P-256 (ES256) payments keys that sign closed payment
   * mandates (src/mandates/keys.ts), oldest first, each with its validity window. Covered by `mac`.
   */
  paymentKeys?: PaymentKeyRecord[];
  /** From schema 2: the record MAC over every other member, bound to `id` (src/identity/record-mac.ts). */
  mac?: string;
}

/**
 * A P-256 (ES256) key: an identity's payments key or a tenant's mandate provider key
 * (src/mandates/keys.ts). The private key (PKCS#8 DER) is sealed under the master key, bound by the
 * associated data to its owner and key id; `keyId` is the RFC 7638 thumbprint of `jwk`.
 */
export interface PaymentKeyRecord {
  keyId: string;
  jwk: { kty: "EC"; crv: "P-256"; x: string; y: string };
  sealed: Sealed;
  createdAt: string;
  notBefore: string;
  notAfter?: string;
  status: "active" | "retired";
}

/** Payment mandate ids (`mnd_…`): anything else is refused before a backend sees it. */
export const MANDATE_ID_RE = /^mnd_[0-9a-f]{20}$/;

/**
 * An issued AP2 open mandate pair (src/mandates/): written once. The issuance entry in the
 * identity's log records the hashes of both tokens, so a record changed in the store is refused.
 */
export interface MandateRecord {
  id: string;
  identityId: string;
  tenantId: string;
  createdAt: string;
  /** The open checkout mandate (`mandate.checkout.open.1`), compact SD-JWT as issued. */
  checkout: string;
  /** The open payment mandate (`mandate.payment.open.1`), compact SD-JWT as issued. */
  payment: string;
}

/** A delegation statement as signed by the tenant key (its fields are described in src/provenance/delegation.ts). */
export interface DelegationRecord {
  tenant: string;
  tenantKeyId: string;
  identity: string;
  keyId: string;
  channels: string[];
  policyHash: string;
  notBefore: string;
  notAfter?: string;
  signature: string;
}

/** A tenant: a set of identities with its own admin token and signing key. */
export interface TenantRecord {
  id: string;
  name: string;
  /** The hash of the tenant's admin token; `default` has none (its admin is the root admin). */
  adminTokenHash?: string;
  /** The tenant's Ed25519 key (it signs delegation statements), sealed like identity keys. */
  key: KeyRecord;
  createdAt: string;
  updatedAt: string;
  /** From schema 3: the record MAC over every other member, bound to `id` (kind `tenant`, src/identity/record-mac.ts). */
  mac?: string;
}

export interface RegistryMeta {
  format: "sigil-home";
  schemaVersion: number;
  createdAt: string;
  adminTokenHash: string;
  masterKeyCheck: string;
  /**
   * When tenants' own audit logs began (src/tenant/log.ts): set by `sigil init`, or when a home
   * older than them is first opened, once every tenant's log is open. Until then a tenant log's
   * creation entry adopts the approvers and passkeys the home holds; after, never. Covered by `mac`.
   */
  tenantLogsSince?: string;
  /** From schema 2: the record MAC over every other member (src/identity/record-mac.ts). */
  mac?: string;
}

export interface SecretRecord {
  name: string;
  version: number;
  sealed: Sealed;
  updatedAt: string;
}

/** Approver ids (`apr_…`) and approval ids (`apv_…`): anything else is refused before a backend sees it. */
export const APPROVER_ID_RE = /^apr_[0-9a-f]{20}$/;
export const APPROVAL_ID_RE = /^apv_[0-9a-f]{20}$/;

/** A person who decides approvals for one tenant (src/approval/approvers.ts). */
export interface ApproverRecord {
  id: string;
  tenantId: string;
  name: string;
  email?: string;
  tokenHash: string;
  /** The approver's Ed25519 key: it signs each decision (sealed like identity keys). */
  keyId: string;
  publicKey: string;
  sealed: Sealed;
  createdAt: string;
  removedAt?: string;
  /** Record MAC under the master key (src/identity/record-mac.ts, kind `approver`). */
  mac?: string;
}

/**
 * A pending approval's request as it was asked (src/approval/approvals.ts): what approvers list and
 * look up. Written once; its status is never read from here but from the identity's log, which is
 * the authority on decisions and use.
 */
export interface ApprovalRecord {
  id: string;
  identityId: string;
  tenantId: string;
  tool: string;
  /** The arguments as the audit log records them (sensitive values as keyed hashes). */
  action: Record<string, unknown>;
  actionHash: string;
  policyVersion: number;
  approvers: string[];
  quorum: number;
  via: string[];
  requestedAt: string;
  expiresAt: string;
}

/** OAuth client ids registered here (`oc_…`; a Client ID Metadata Document's id is its https URL and is not stored) and grant ids (`og_…`). */
export const OAUTH_CLIENT_ID_RE = /^oc_[0-9a-f]{20}$/;
export const OAUTH_GRANT_ID_RE = /^og_[0-9a-f]{20}$/;

/** An OAuth client registered dynamically (RFC 7591; src/oauth/clients.ts). Public clients only: no secret is ever issued. */
export interface OAuthClientRecord {
  id: string;
  /** The client's metadata as registered (name, redirect URIs, …), after sigil's checks. */
  metadata: Record<string, unknown>;
  createdAt: string;
  /** Record MAC under the master key (src/identity/record-mac.ts, kind `oauth_client`). */
  mac?: string;
}

/**
 * What a person allowed an OAuth client to do: act as one identity at one resource
 * (src/oauth/grants.ts). Its authorization code, access token and refresh token are stored only
 * as keyed hashes; each carries the grant id, so a token is looked up by grant.
 */
export interface OAuthGrantRecord {
  id: string;
  identityId: string;
  tenantId: string;
  clientId: string;
  clientName: string;
  redirectUri: string;
  resource: string;
  /** The admin (token hash) who consented, as the console session named them. */
  grantedBy: string;
  createdAt: string;
  /** The authorization code: its keyed hash, PKCE challenge and expiry (kept once exchanged, to recognise it presented again). */
  code?: { hash: string; challenge: string; expiresAt: string };
  /** Whether the code was exchanged (a second exchange revokes the grant). */
  codeUsed?: boolean;
  /** Token generation: 0 before the code is exchanged, +1 on every issuance. */
  generation: number;
  access?: { hash: string; expiresAt: string };
  refresh?: { hash: string; expiresAt: string };
  /** Keyed hashes of refresh tokens already rotated out (the most recent ones): presenting one revokes the grant. */
  usedRefresh: string[];
  revokedAt?: string;
  revokedReason?: string;
  /** Record MAC under the master key (kind `oauth_grant`). */
  mac?: string;
}

/** Inbound message ids (`msg_…`): anything else is refused before a backend sees it. */
export const INBOUND_ID_RE = /^msg_[0-9a-f]{20}$/;

/**
 * One message received for an identity (SPEC §12, src/inbound/): everything it says (sender,
 * recipients, subject, text, authentication results) is sealed under the master key, bound to the
 * identity, its id, channel and time of receipt; only those four and whether it was read are clear.
 */
export interface InboundRecord {
  id: string;
  identityId: string;
  channel: "email" | "sms";
  receivedAt: string;
  sealed: Sealed;
  readAt?: string;
}

/**
 * A passkey (WebAuthn credential) an approver registered in the console (src/approval/passkeys.ts):
 * the credential's public key and signature counter, MAC'd under the master key (kind `passkey`,
 * bound to the approver) so that a store writer cannot add one of their own.
 */
export interface PasskeyRecord {
  /** The credential id (base64url). */
  id: string;
  approverId: string;
  tenantId: string;
  /** The COSE public key (base64url). */
  publicKey: string;
  counter: number;
  transports?: string[];
  name: string;
  createdAt: string;
  lastUsedAt?: string;
  mac?: string;
}

/** What a chain transaction sees: lines appended (by anyone) after the caller's cursor. */
export interface ChainView {
  lines: string[];
  /** A final line without its newline: a write torn by a crash. Appending replaces it. */
  torn?: Buffer;
}

export interface ChainCursor {
  /** Opaque position after the last line the caller has seen (a byte offset, a sequence number). */
  position: number;
}

export interface AuditBackend {
  /**
   * Runs `fn` with exclusive access to one identity's chain (across every process and instance).
   * `fn` receives what was appended after `cursor` and returns the lines to append; they are
   * durable (fsync'd or committed) when this resolves. If anything fails, nothing is appended.
   */
  withChain<T>(
    identityId: string,
    cursor: ChainCursor,
    fn: (view: ChainView) => Promise<{ lines: string[]; value: T }>,
  ): Promise<{ value: T; cursor: ChainCursor }>;
  /** Every line of the identity's log, in order (a torn last line included as it is). */
  readLines(identityId: string): AsyncIterable<string>;
  /**
   * State snapshots (see src/audit/chain.ts): opaque text the chain authenticates itself, so a
   * backend only stores it. Reading returns the last one written (undefined when there is none);
   * a write replaces it atomically (a crash leaves the old one or the new one, never a mix) and
   * may be lost in a crash — it is an optimisation, the log stays the source of truth.
   */
  readSnapshot?(identityId: string): Promise<string | undefined>;
  writeSnapshot?(identityId: string, seq: number, text: string): Promise<void>;
  /** The complete line that ends exactly at `cursor` (the entry just before it), if there is one. */
  lineBefore?(identityId: string, cursor: ChainCursor): Promise<string | undefined>;
  /** The cursor just before `line`, the line `lineBefore` read at `cursor`: with it a log reads backwards, newest first. */
  cursorBefore?(cursor: ChainCursor, line: string): ChainCursor;
  /**
   * Up to `max` complete lines ending at `before` (absent: the log's end, a torn final line left
   * out), newest first, in one read (one open reading backwards / one query), each with the cursor
   * just before it — pass the last one back for the next older page (position 0: nothing older).
   * The console's timeline reads only the page it shows with it, whatever the log's length.
   */
  linesBefore?(identityId: string, before: ChainCursor | undefined, max: number): Promise<Array<{ line: string; before: ChainCursor }>>;
}

export class StoreError extends Error {
  constructor(
    message: string,
    readonly code: "not_initialised" | "already_initialised" | "unreadable" | "not_found" | "conflict" | "unavailable" | "schema_too_new",
    options?: { cause?: unknown },
  ) {
    super(message, options);
  }
}

export interface Store {
  readonly kind: "file" | "postgres";
  /** Creates the registry. Refuses (already_initialised) if one exists, changing nothing. */
  initialise(meta: RegistryMeta): Promise<void>;
  /** The registry's metadata; not_initialised / unreadable when it is missing or damaged. */
  meta(): Promise<RegistryMeta>;
  /** Atomic read-modify-write of the registry's metadata (the schema upgrade). */
  updateMeta(update: (current: RegistryMeta) => RegistryMeta): Promise<RegistryMeta>;
  createIdentity(record: IdentityRecord): Promise<void>;
  getIdentity(id: string): Promise<IdentityRecord | undefined>;
  identityByTokenHash(tokenHash: string): Promise<IdentityRecord | undefined>;
  listIdentities(): Promise<IdentityRecord[]>;
  /** Atomic read-modify-write of one identity; concurrent updates from any process never get lost. */
  updateIdentity(id: string, update: (current: IdentityRecord) => IdentityRecord | Promise<IdentityRecord>): Promise<IdentityRecord>;
  /** Runs `fn` holding the identity's admin lock: serialises multi-step admin operations (key rotation). */
  withIdentityLock<T>(id: string, fn: () => Promise<T>): Promise<T>;

  /** Creates a tenant; refuses (conflict) when its id or admin token hash is taken. */
  createTenant(record: TenantRecord): Promise<void>;
  getTenant(id: string): Promise<TenantRecord | undefined>;
  tenantByTokenHash(tokenHash: string): Promise<TenantRecord | undefined>;
  listTenants(): Promise<TenantRecord[]>;
  /** Atomic read-modify-write of one tenant (its id and admin token hash cannot change: the in-place upgrade seals records). */
  updateTenant(id: string, update: (current: TenantRecord) => TenantRecord): Promise<TenantRecord>;

  putSecret(identityId: string, name: string, make: (previousVersion: number) => SecretRecord): Promise<SecretRecord>;
  getSecret(identityId: string, name: string): Promise<SecretRecord | undefined>;
  deleteSecret(identityId: string, name: string): Promise<boolean>;
  listSecretNames(identityId: string): Promise<string[]>;

  /** Approvers (people who decide approvals); their token hashes are unique. */
  createApprover(record: ApproverRecord): Promise<void>;
  getApprover(id: string): Promise<ApproverRecord | undefined>;
  approverByTokenHash(tokenHash: string): Promise<ApproverRecord | undefined>;
  listApprovers(): Promise<ApproverRecord[]>;
  /** Atomic read-modify-write of one approver (removal). */
  updateApprover(id: string, update: (current: ApproverRecord) => ApproverRecord): Promise<ApproverRecord>;
  /** Approval requests (written once; see ApprovalRecord). */
  createApproval(record: ApprovalRecord): Promise<void>;
  getApproval(id: string): Promise<ApprovalRecord | undefined>;
  /** Requests made at or after `sinceIso` (all when absent), oldest first. */
  listApprovals(opts?: { sinceIso?: string }): Promise<ApprovalRecord[]>;
  /** An approver's passkeys (none: empty). */
  listPasskeys(approverId: string): Promise<PasskeyRecord[]>;
  /** Atomic read-modify-write of an approver's passkeys (registration, a signature counter moving on). */
  updatePasskeys(approverId: string, update: (current: PasskeyRecord[]) => PasskeyRecord[]): Promise<PasskeyRecord[]>;

  /**
   * A tenant's mandate provider key (src/mandates/keys.ts). `putProviderKey` keeps the first one
   * written: it resolves with the key the store holds afterwards (the caller's, or an earlier one).
   */
  putProviderKey(tenantId: string, record: PaymentKeyRecord): Promise<PaymentKeyRecord>;
  getProviderKey(tenantId: string): Promise<PaymentKeyRecord | undefined>;
  /** Issued payment mandates (written once; conflict when the id is taken). */
  createMandate(record: MandateRecord): Promise<void>;
  getMandate(id: string): Promise<MandateRecord | undefined>;
  /** Every issued mandate, by id (for `sigil store migrate`). */
  listMandates(): Promise<MandateRecord[]>;
  /** OAuth clients registered dynamically, and grants (src/oauth/). */
  createOAuthClient(record: OAuthClientRecord): Promise<void>;
  getOAuthClient(id: string): Promise<OAuthClientRecord | undefined>;
  /** Every registered client, oldest first (`sigil store migrate`). */
  listOAuthClients(): Promise<OAuthClientRecord[]>;
  createOAuthGrant(record: OAuthGrantRecord): Promise<void>;
  getOAuthGrant(id: string): Promise<OAuthGrantRecord | undefined>;
  /** Atomic read-modify-write of one grant (token issuance, rotation, revocation). */
  updateOAuthGrant(id: string, update: (current: OAuthGrantRecord) => OAuthGrantRecord): Promise<OAuthGrantRecord>;
  /** One identity's grants, oldest first. */
  listOAuthGrants(identityId: string): Promise<OAuthGrantRecord[]>;

  /** Inbound messages (src/inbound/messages.ts): one identity's, oldest first. */
  putInbound(record: InboundRecord): Promise<void>;
  getInbound(identityId: string, id: string): Promise<InboundRecord | undefined>;
  listInbound(identityId: string): Promise<InboundRecord[]>;
  /** Sets `readAt` (if unset); false when there is no such message. */
  markInboundRead(identityId: string, id: string, at: string): Promise<boolean>;
  /** Removes these messages of the identity; how many were there. */
  deleteInbound(identityId: string, ids: string[]): Promise<number>;

  readonly audit: AuditBackend;
  /** Marks this process (instance) alive for as long as it runs, where the backend can tell. */
  registerInstance(instanceId: string): Promise<void>;
  /** Whether an instance is still running: true, false, or undefined when the backend cannot tell. */
  instanceAlive(instanceId: string): Promise<boolean | undefined>;
  close(): Promise<void>;
}
