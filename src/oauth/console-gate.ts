/**
 * How /authorize signs a person in: through the web console (src/console). The console decides who
 * is signed in (its session cookie, the credential behind it still current); the consent form uses
 * the console session's id and CSRF token.
 */
import type { App } from "../app.js";
import type { ConsoleGate } from "./consent.js";

export function consoleGate(_app: Pick<App, "auth">): ConsoleGate {
  // Until the console is served, nobody is signed in and the sign-in page is the console's.
  return {
    human: async () => undefined,
    signInPath: (next) => `/console/sign-in?next=${encodeURIComponent(next)}`,
  };
}
