/**
 * How /authorize signs a person in: through the web console (src/console). The console decides who
 * is signed in (its session cookie, the credential behind it still current); the consent form is
 * bound to that console session and carries its CSRF token. Only administrators (root, or a
 * tenant's) consent: an approver decides approvals, it does not hand out identities.
 */
import type { App } from "../app.js";
import { consoleFor, readConsoleSession, signInPath } from "../console/index.js";
import type { ConsoleGate } from "./consent.js";

export function consoleGate(app: App): ConsoleGate {
  return {
    human: async (req) => {
      // Looked up per request: the HTTP server creates the console (with its hooks) first.
      const principal = await readConsoleSession(app, req);
      const sessions = consoleFor(app).sessions;
      const session = sessions.get(req);
      if (!principal || principal.kind !== "admin" || !session) return undefined;
      return {
        tokenHash: principal.tokenHash,
        ...(principal.tenantId !== undefined ? { tenantId: principal.tenantId } : {}),
        sessionId: session.id,
        csrf: sessions.csrf(session),
        checkCsrf: (token) => sessions.checkCsrf(session, token),
      };
    },
    signedIn: async (req) => (await readConsoleSession(app, req)) !== undefined,
    signInPath: (next) => signInPath(next),
  };
}
