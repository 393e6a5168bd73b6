/**
 * Preloaded into a server under test (`NODE_OPTIONS=--import=<this file>`): records every module
 * the process loads into the file SIGIL_TEST_MODULE_LOG names, one path or URL a line — ES modules
 * through a loader hook (it runs on node's hooks thread and appends as each module loads),
 * CommonJS modules from require's cache when the process exits. For tests that pin what a process
 * does NOT load (e.g. the twilio library when SMS go to the outbox).
 */
import { appendFileSync } from "node:fs";
import { createRequire, register } from "node:module";

const log = process.env.SIGIL_TEST_MODULE_LOG;
if (log) {
  const hooks = `
    import { appendFileSync } from "node:fs";
    export async function load(url, context, next) {
      appendFileSync(${JSON.stringify(log)}, url + "\\n");
      return next(url, context);
    }`;
  register(`data:text/javascript,${encodeURIComponent(hooks)}`);
  process.on("exit", () => {
    const cjs = Object.keys(createRequire(import.meta.url).cache);
    if (cjs.length > 0) appendFileSync(log, cjs.join("\n") + "\n");
  });
}
