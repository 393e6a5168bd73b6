// Bundles the CLI (dist/cli.js) so `sigil serve` loads a handful of files instead of hundreds:
// module resolution and loading were most of its cold start. Libraries loaded only on demand
// (twilio, nodemailer, pg, the HTTP server) stay in lazily imported chunks. The tsc output in
// dist/src stays for the in-process tests.
//
// `npm run build` runs this file with node (`node rolldown.config.mjs [outDir]`): rolldown's API
// builds quietly, where its CLI prints every chunk (and has no quiet option). `rolldown -c` still
// reads the default export.
import { chmodSync } from "node:fs";
import { builtinModules } from "node:module";
import path from "node:path";
import { fileURLToPath } from "node:url";

const config = {
  input: { cli: "dist/src/cli/main.js", "verify-worker": "dist/src/audit/verify-worker.js" },
  platform: "node",
  external: [...builtinModules, ...builtinModules.map((m) => `node:${m}`)],
  output: { dir: "dist", format: "esm", entryFileNames: "[name].js", chunkFileNames: "chunks/[name]-[hash].js", banner: (chunk) => (chunk.name === "cli" ? "#!/usr/bin/env node" : "") },
};
export default config;

if (process.argv[1] && path.resolve(process.argv[1]) === fileURLToPath(import.meta.url)) {
  const { build } = await import("rolldown");
  const dir = process.argv[2] ?? config.output.dir;
  await build({ ...config, output: { ...config.output, dir } });
  chmodSync(path.join(dir, "cli.js"), 0o755);
}
