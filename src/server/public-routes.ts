/**
 * The HTTP server's public GET routes (no token: public keys and signed checkpoints are meant for
 * parties outside sigil — merchants, mail recipients, auditors):
 *
 *   GET /.well-known/http-message-signatures-directory   Web Bot Auth key directory, signed
 *   GET /identities/<id>/keys                             the identity's JWKS (current + retired)
 *   GET /identities/<id>/checkpoint                       a signed checkpoint of its audit log
 *
 * They disclose which identity ids exist and how many entries each log has; nothing else (no
 * names, policies, addresses or entries).
 */
import type http from "node:http";
import type { Sigil } from "../sigil.js";
import { DIRECTORY_PATH } from "../provenance/http-signature.js";
import { identityJwks, signedDirectory } from "../provenance/directory.js";
import { makeCheckpoint } from "../provenance/checkpoint.js";
import { publicOrigin } from "../provenance/receipt.js";

const IDENTITY_ROUTE = /^\/identities\/([A-Za-z0-9_-]{1,64})\/(keys|checkpoint)$/;

function send(res: http.ServerResponse, status: number, type: string, body: string, extra: Record<string, string> = {}): void {
  res.writeHead(status, { "content-type": type, "x-content-type-options": "nosniff", ...extra });
  res.end(body);
}

export function publicRoutes(sigil: Sigil): (req: http.IncomingMessage, url: URL, res: http.ServerResponse) => Promise<boolean> {
  const publicUrl = publicOrigin(sigil.env);
  const publicHost = publicUrl ? new URL(publicUrl).host : undefined;
  return async (req, url, res) => {
    if (url.pathname === DIRECTORY_PATH) {
      const host = (req.headers.host ?? "").toLowerCase();
      // The response signature covers the authority the directory was fetched at; the scheme only
      // decides which default port is dropped. Host was already checked against the allow-list.
      const scheme = publicHost !== undefined && host === publicHost ? "https" : "http";
      const d = await signedDirectory(sigil, host, scheme);
      send(res, 200, d.headers["content-type"]!, d.body, d.headers);
      return true;
    }
    const m = IDENTITY_ROUTE.exec(url.pathname);
    if (!m) return false;
    const rec = await sigil.store.getIdentity(m[1]!);
    if (!rec) {
      send(res, 404, "application/json", JSON.stringify({ error: "not_found", message: "No such identity." }));
      return true;
    }
    if (m[2] === "keys") {
      send(res, 200, "application/jwk-set+json", JSON.stringify(identityJwks(rec)), { "cache-control": "max-age=60" });
    } else {
      const cp = await makeCheckpoint(sigil, rec.id);
      send(res, 200, "text/plain; charset=utf-8", cp.note, { "cache-control": "no-store" });
    }
    return true;
  };
}
