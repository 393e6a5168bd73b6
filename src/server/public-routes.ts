/**
 * The HTTP server's public GET routes (no token: public keys and signed checkpoints are meant for
 * parties outside sigil — merchants, mail recipients, auditors):
 *
 *   GET /.well-known/http-message-signatures-directory   Web Bot Auth key directory, signed
 *   GET /identities/<id>/keys                             the identity's JWKS (current + retired)
 *   GET /identities/<id>/checkpoint                       a signed checkpoint of its audit log
 *   GET /identities/<id>/delegation                       its tenant's signed delegation statements
 *                                                         and the tenant's public key
 *
 * They disclose which identity ids exist, how many entries each log has, the tenant id of each,
 * its channels and the hash of its policy (in the delegation statements); nothing else (no names,
 * policies, addresses or entries).
 *
 * Anyone can call them as often as they like, so they answer from cached state: each response is
 * kept and served as is for up to a second (REFRESH_MS), then rebuilt once — by one request, while
 * the others wait for it — from what changed (a checkpoint reads only the entries appended since
 * the last one; see provenance/checkpoint.ts). A request costs a map lookup, never a read or a
 * re-hash of a log, and anonymous traffic takes an identity's chain lock at most once a second.
 * An unknown identity id costs one registry lookup and is not cached.
 */
import type http from "node:http";
import type { App } from "../app.js";
import { DIRECTORY_PATH } from "../provenance/http-signature.js";
import { identityJwks, signedDirectory } from "../provenance/directory.js";
import { makeCheckpoint } from "../provenance/checkpoint.js";
import { RecordTampered } from "../identity/record-mac.js";

const IDENTITY_ROUTE = /^\/identities\/([A-Za-z0-9_-]{1,64})\/(keys|checkpoint|delegation)$/;
/** How long a public response is reused before it is rebuilt. */
export const REFRESH_MS = 1000;

interface Response {
  status: number;
  type: string;
  body: string;
  headers: Record<string, string>;
}

interface Slot {
  value?: Response;
  at: number;
  pending?: Promise<Response>;
}

function send(res: http.ServerResponse, r: Response): void {
  res.writeHead(r.status, { "content-type": r.type, "x-content-type-options": "nosniff", ...r.headers });
  res.end(r.body);
}

export function publicRoutes(app: Pick<App, "config" | "store" | "now" | "signers" | "identities" | "keyring" | "delegations" | "payments">): (req: http.IncomingMessage, url: URL, res: http.ServerResponse) => Promise<boolean> {
  const publicUrl = app.config.publicUrl;
  const publicHost = publicUrl ? new URL(publicUrl).host : undefined;
  // One slot per directory authority (Host was checked against the allow-list, so few) and per
  // route of each existing identity.
  const slots = new Map<string, Slot>();

  /** The cached response for `key`, rebuilt by `load` when it is older than REFRESH_MS (one load at a time). */
  const cached = (key: string, load: () => Promise<Response | undefined>): Promise<Response | undefined> => {
    const now = app.now();
    const slot = slots.get(key);
    if (slot?.value && now >= slot.at && now - slot.at < REFRESH_MS) return Promise.resolve(slot.value);
    if (slot?.pending) return slot.pending;
    const s: Slot = slot ?? { at: now };
    const pending = load().then(
      (value) => {
        if (value === undefined) slots.delete(key);
        else Object.assign(s, { value, at: now, pending: undefined });
        return value;
      },
      (err: unknown) => {
        s.pending = undefined;
        if (!s.value) slots.delete(key);
        throw err;
      },
    );
    s.pending = pending as Promise<Response>;
    slots.set(key, s);
    return pending;
  };

  return async (req, url, res) => {
    if (url.pathname === DIRECTORY_PATH) {
      const host = (req.headers.host ?? "").toLowerCase();
      // The response signature covers the authority the directory was fetched at; the scheme only
      // decides which default port is dropped. Host was already checked against the allow-list.
      const scheme = publicHost !== undefined && host === publicHost ? "https" : "http";
      const r = await cached(`directory\n${scheme}://${host}`, async () => {
        const d = await signedDirectory(app, host, scheme);
        return { status: 200, type: d.headers["content-type"]!, body: d.body, headers: d.headers };
      });
      send(res, r!);
      return true;
    }
    const m = IDENTITY_ROUTE.exec(url.pathname);
    if (!m) return false;
    const id = m[1]!;
    const route = m[2]!;
    const r = await cached(`${route}\n${id}`, async () => {
      // A record that fails its MAC publishes nothing (RecordTampered: reported and audited by the store).
      const rec = await app.store.getIdentity(id).catch((err: unknown) => (err instanceof RecordTampered ? undefined : Promise.reject(err)));
      if (!rec) return undefined;
      if (route === "keys") {
        // The windows the log gives (opening the chain completes a rotation a crash cut short).
        const keys = identityJwks(await app.identities.published(id));
        return { status: 200, type: "application/jwk-set+json", body: JSON.stringify(keys), headers: { "cache-control": "max-age=60" } };
      }
      if (route === "delegation") {
        const doc = await app.delegations.document(rec.id);
        return doc && { status: 200, type: "application/json", body: JSON.stringify(doc), headers: { "cache-control": "max-age=60" } };
      }
      const cp = await makeCheckpoint(app, rec.id);
      return { status: 200, type: "text/plain; charset=utf-8", body: cp.note, headers: { "cache-control": "no-store" } };
    });
    send(res, r ?? { status: 404, type: "application/json", body: JSON.stringify({ error: "not_found", message: "No such identity." }), headers: {} });
    return true;
  };
}
