/**
 * OAuth clients, two ways (the MCP authorization spec's order):
 *
 * - **Client ID Metadata Documents** (first choice): the client_id is an https URL whose JSON
 *   document names the client and its redirect URIs. sigil fetches it (src/oauth/fetch-document.ts:
 *   public addresses only, no redirects, 5 s, 16 KiB) and keeps it for five minutes. Nothing is
 *   stored: the document is the client's registration.
 * - **Dynamic registration** (RFC 7591, fallback): the SDK's /register handler hands the metadata
 *   to `register`, which checks it and stores the client (MAC'd, kind `oauth_client`) as `oc_…`.
 *
 * Every client is public (token_endpoint_auth_method `none`): PKCE is what binds a code to the
 * client that asked for it, and no client secret is ever issued or stored. Redirect URIs: https,
 * http only on a loopback host, or a private-use scheme (RFC 8252 §7.1: `cursor://…`,
 * `vscode://…`); never javascript:, data:, file: and the like. They are matched exactly, except
 * that a loopback redirect may use any port (RFC 8252 §7.3) — that matching is the SDK's.
 */
import type { OAuthClientInformationFull } from "@modelcontextprotocol/sdk/shared/auth.js";
import { OAuthClientMetadataSchema } from "@modelcontextprotocol/sdk/shared/auth.js";
import { InvalidClientMetadataError } from "@modelcontextprotocol/sdk/server/auth/errors.js";
import { randomId } from "../crypto/tokens.js";
import { type RecordMac, RecordTampered } from "../identity/record-mac.js";
import { refId } from "../errors.js";
import { OAUTH_CLIENT_ID_RE, type OAuthClientRecord, type Store } from "../../store/types.js";
import { type FetchPolicy, fetchClientDocument } from "./fetch-document.js";
import { SESSION_COOKIE_PATHS } from "../console/session.js";

const LOOPBACK_HOSTS = new Set(["localhost", "127.0.0.1", "[::1]"]);
const FORBIDDEN_SCHEMES = new Set(["javascript:", "data:", "file:", "vbscript:", "blob:", "about:", "ftp:", "ws:", "wss:", "mailto:", "filesystem:"]);
const MAX_REDIRECT_URIS = 10;
const MAX_URI = 2000;
const DOCUMENT_TTL_MS = 5 * 60_000;
const MAX_CACHED_DOCUMENTS = 500;

/** Why a redirect URI is refused, or undefined when it is acceptable. */
export function redirectUriProblem(uri: string): string | undefined {
  if (uri.length > MAX_URI) return "a redirect URI is too long";
  let u: URL;
  try {
    u = new URL(uri);
  } catch {
    return "a redirect URI is not a URL";
  }
  if (u.hash || uri.includes("#")) return "a redirect URI cannot have a fragment";
  if (u.username || u.password) return "a redirect URI cannot carry credentials";
  if (FORBIDDEN_SCHEMES.has(u.protocol)) return `redirect URIs with ${u.protocol} are not allowed`;
  if (u.protocol === "http:" && !LOOPBACK_HOSTS.has(u.hostname)) return "an http redirect URI must be on a loopback host (127.0.0.1, [::1] or localhost); use https";
  // The console's session cookie is sent to these paths on every port of a loopback host (cookies
  // are not isolated by port): a listener there would receive the consenting admin's session.
  if (LOOPBACK_HOSTS.has(u.hostname) && SESSION_COOKIE_PATHS.some((p) => u.pathname === p || u.pathname.startsWith(`${p}/`))) return `a loopback redirect URI cannot be under ${SESSION_COOKIE_PATHS.join(", ")} (sigil's console session cookie is sent there)`;
  return undefined;
}

const LOOPBACK_REDIRECT = /^(http:\/\/(?:localhost|127\.0\.0\.1|\[::1\]))(?::\d{1,5})?(\/[^#]*)?$/;

/**
 * Whether a requested redirect URI is the registered one, exactly as written, or differs from a
 * loopback one only in its port (RFC 8252 §7.3). The SDK's matcher compares parsed parts, so it
 * also lets through a fragment, userinfo, dot segments or another spelling of 127.0.0.1 — all of
 * which land on the same page, but "exact" should mean exact.
 */
export function sameRedirectUri(requested: string, registered: string): boolean {
  if (requested === registered) return true;
  const a = LOOPBACK_REDIRECT.exec(requested);
  const b = LOOPBACK_REDIRECT.exec(registered);
  return a !== null && b !== null && a[1] === b[1] && (a[2] ?? "") === (b[2] ?? "");
}

/** A client's name as shown to the person asked to consent: printable, bounded. */
export function displayName(name: unknown): string | undefined {
  if (typeof name !== "string") return undefined;
  const clean = name.replace(/[\p{Cc}\p{Cf}\u2028\u2029]/gu, "").trim().slice(0, 80);
  return clean.length ? clean : undefined;
}

/** The checks every client's metadata passes (registered or fetched); returns the metadata to keep. */
function checkMetadata(raw: unknown, from: "registration" | "document"): Omit<OAuthClientInformationFull, "client_id"> {
  const parsed = OAuthClientMetadataSchema.safeParse(raw);
  if (!parsed.success) throw new InvalidClientMetadataError("The client metadata is not valid (redirect_uris, a list of URLs, is required).");
  const m = parsed.data;
  if (m.redirect_uris.length === 0 || m.redirect_uris.length > MAX_REDIRECT_URIS) throw new InvalidClientMetadataError(`A client needs 1 to ${MAX_REDIRECT_URIS} redirect URIs.`);
  for (const uri of m.redirect_uris) {
    const problem = redirectUriProblem(uri);
    if (problem) throw new InvalidClientMetadataError(`${problem}.`);
  }
  // Registration turns any client into a public one (below); a metadata document must say so itself.
  if (from === "document" && m.token_endpoint_auth_method !== undefined && m.token_endpoint_auth_method !== "none") {
    throw new InvalidClientMetadataError("Only public clients (token_endpoint_auth_method none) are supported.");
  }
  const name = displayName(m.client_name);
  return {
    redirect_uris: m.redirect_uris,
    ...(name ? { client_name: name } : {}),
    ...(typeof m.client_uri === "string" && m.client_uri.startsWith("https://") ? { client_uri: m.client_uri } : {}),
    token_endpoint_auth_method: "none",
    grant_types: ["authorization_code", "refresh_token"],
    response_types: ["code"],
  };
}

/** Whether a client_id is (shaped like) a Client ID Metadata Document URL. */
export function isDocumentClientId(id: string): boolean {
  return id.startsWith("https://") || id.startsWith("http://");
}

/** Why a Client ID Metadata Document URL is refused, or undefined. */
export function documentUrlProblem(id: string, policy: FetchPolicy): string | undefined {
  if (id.length > MAX_URI) return "too long";
  let u: URL;
  try {
    u = new URL(id);
  } catch {
    return "not a URL";
  }
  if (u.protocol !== "https:" && !(policy.allowLoopbackHttp && u.protocol === "http:")) return "not https";
  if (u.href !== id) return "not in normal form";
  if (u.hash || u.username || u.password) return "has a fragment or credentials";
  if (u.pathname === "/" || u.pathname.split("/").some((s) => s === "." || s === "..")) return "needs a path without dot segments";
  return undefined;
}

interface Cached {
  at: number;
  client: OAuthClientInformationFull;
}

export class OAuthClients {
  private readonly documents = new Map<string, Cached>();

  constructor(
    private readonly store: Pick<Store, "createOAuthClient" | "getOAuthClient">,
    private readonly macs: RecordMac,
    private readonly now: () => number,
    private readonly fetchPolicy: FetchPolicy,
  ) {}

  /** The client, or undefined when the id names none (a document that cannot be fetched or is invalid names none). */
  async get(clientId: string): Promise<OAuthClientInformationFull | undefined> {
    if (typeof clientId !== "string") return undefined;
    if (isDocumentClientId(clientId)) return this.document(clientId);
    if (!OAUTH_CLIENT_ID_RE.test(clientId)) return undefined;
    const rec = await this.store.getOAuthClient(clientId);
    if (!rec) return undefined;
    if (rec.id !== clientId || !this.macs.check("oauth_client", clientId, rec)) {
      process.stderr.write(`sigil: record_tampered: OAuth client ${clientId} fails its integrity check (changed without the master key); it is refused (${refId()})\n`);
      throw new RecordTampered("oauth_client", clientId);
    }
    return { ...(rec.metadata as Omit<OAuthClientInformationFull, "client_id">), client_id: rec.id, client_id_issued_at: Math.floor(Date.parse(rec.createdAt) / 1000) };
  }

  /** RFC 7591 registration (called by the SDK's /register handler): a public client, stored. */
  async register(metadata: unknown): Promise<OAuthClientInformationFull> {
    const m = checkMetadata(metadata, "registration");
    const id = randomId("oc_");
    const createdAt = new Date(this.now()).toISOString();
    await this.store.createOAuthClient(this.macs.seal("oauth_client", id, { id, metadata: m as Record<string, unknown>, createdAt } satisfies OAuthClientRecord));
    return { ...m, client_id: id, client_id_issued_at: Math.floor(Date.parse(createdAt) / 1000) };
  }

  private async document(url: string): Promise<OAuthClientInformationFull | undefined> {
    if (documentUrlProblem(url, this.fetchPolicy)) return undefined;
    const now = this.now();
    const hit = this.documents.get(url);
    if (hit && now - hit.at < DOCUMENT_TTL_MS && now >= hit.at) return hit.client;
    let raw: unknown;
    try {
      raw = await fetchClientDocument(url, this.fetchPolicy);
    } catch (err) {
      process.stderr.write(`sigil: oauth: the client metadata document ${JSON.stringify(url.slice(0, 200))} was not used: ${err instanceof Error ? err.message : String(err)}\n`);
      return undefined;
    }
    if (typeof raw !== "object" || raw === null || (raw as { client_id?: unknown }).client_id !== url) return undefined;
    if ("client_secret" in raw) return undefined;
    let m: Omit<OAuthClientInformationFull, "client_id">;
    try {
      m = checkMetadata(raw, "document");
    } catch {
      return undefined;
    }
    const client = { ...m, client_id: url };
    if (this.documents.size >= MAX_CACHED_DOCUMENTS) this.documents.delete(this.documents.keys().next().value!);
    this.documents.set(url, { at: now, client });
    return client;
  }
}
