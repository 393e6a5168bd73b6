/**
 * The console's templates: hono's `html` tagged template (hono/html). Every interpolated value is
 * HTML-escaped (`& < > " '`) unless it is itself an `html` fragment or wrapped in `raw()`, so
 * escaping is the default and the exception is visible in the code. Chosen because it is a
 * well-kept library (hono) already installed under the MCP SDK, needs no build step (plain tagged
 * templates; no JSX), renders synchronously when no interpolated value is a Promise (none is), and
 * its escaping is the one place where a mistake would matter.
 */
import { html, raw } from "hono/html";

export { html, raw };

/** A rendered fragment (what `html` returns when nothing interpolated is a Promise). */
export type Html = ReturnType<typeof raw>;

/** An `html` result as a fragment; the console never interpolates a Promise, so it is never one. */
export function frag(x: ReturnType<typeof html>): Html {
  if (x instanceof Promise) throw new Error("console template: an interpolated value was a Promise");
  return x;
}
