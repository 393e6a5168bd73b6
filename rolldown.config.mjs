// Bundles the CLI (dist/cli.js) so `sigil serve` loads a handful of files instead of hundreds:
// module resolution and loading were most of its cold start. Libraries loaded only on demand
// (twilio, nodemailer, pg, the HTTP server) stay in lazily imported chunks. The tsc output in
// dist/src stays for the in-process tests.
import { builtinModules } from "node:module";

export default {
  input: { cli: "dist/src/cli/main.js", "verify-worker": "dist/src/audit/verify-worker.js" },
  platform: "node",
  external: [...builtinModules, ...builtinModules.map((m) => `node:${m}`)],
  output: { dir: "dist", format: "esm", entryFileNames: "[name].js", chunkFileNames: "chunks/[name]-[hash].js", banner: (chunk) => (chunk.name === "cli" ? "#!/usr/bin/env node" : "") },
};
