/** The console's pages: each route names its method, its path pattern and who may use it. */
import type http from "node:http";
import type { App } from "../app.js";
import type { ConsolePrincipal, ConsoleSession, ConsoleSessions } from "./session.js";

/** What a page handler receives: the request, the signed-in session (credential checked, CSRF checked for a POST). */
export interface Ctx {
  app: App;
  req: http.IncomingMessage;
  res: http.ServerResponse;
  url: URL;
  /** The path without a trailing slash. */
  path: string;
  session: ConsoleSession;
  principal: ConsolePrincipal;
  /** The session's CSRF token, for the forms the page renders. */
  csrf: string;
  sessions: ConsoleSessions;
  /** A POST's form (its CSRF token already checked). */
  form?: URLSearchParams;
  afterChange: () => void;
}

export interface Route {
  method: "GET" | "POST";
  path: RegExp;
  /** Who may use it (absent: every signed-in principal); anyone else gets "not found". */
  who?: (p: ConsolePrincipal) => boolean;
  run(ctx: Ctx, params: string[]): Promise<void>;
}

export const isAdmin = (p: ConsolePrincipal): boolean => p.kind === "admin";
export const isRoot = (p: ConsolePrincipal): boolean => p.kind === "admin" && p.tenantId === undefined;


