// Mutation testing of the modules that decide (npm run test:mutation; not part of npm test or CI).
// Stryker 9.6 (10.x needs Node 22); no TypeScript checker (TypeScript 7 has no JS API). The
// in-process unit tests of these modules run against each mutant (vitest.mutation.config.ts).
// Scores and every survivor's explanation: MUTATION.md.
const mutate = (process.env.SIGIL_MUTATE ?? [
  "src/policy/evaluate.ts",
  "src/policy/email-address.ts",
  "src/policy/exfiltration.ts",
  "src/audit/verify.ts",
  "src/audit/verify-entry.ts",
  "src/provenance/receipt.ts",
  "src/provenance/http-signature.ts",
  "src/approval/evidence.ts",
  "src/identity/record-mac.ts",
].join(",")).split(",");
// One module's run gets its own report and sandbox directory, so runs of different modules can
// proceed side by side (SIGIL_MUTATE=src/policy/evaluate.ts → reports/mutation/evaluate.json).
const single = new Set(mutate.map((m) => m.replace(/:[\d:-]+$/, ""))).size === 1;
const slug = single ? mutate[0].replace(/:[\d:-]+$/, "").replace(/^.*\//, "").replace(/\.ts$/, "") : "mutation";

export default {
  packageManager: "npm",
  plugins: ["@stryker-mutator/vitest-runner"],
  testRunner: "vitest",
  vitest: { configFile: "vitest.mutation.config.ts", related: false },
  coverageAnalysis: "perTest",
  mutate,
  ignoreStatic: true,
  // Stryker rewrites tsconfig.json through the TypeScript API, which TypeScript 7 no longer has;
  // vitest compiles the sources itself, so point the rewriter at a file that does not exist.
  tsconfigFile: "tsconfig.stryker-none.json",
  concurrency: Number(process.env.SIGIL_MUTATION_CONCURRENCY ?? 2),
  timeoutMS: 30_000,
  reporters: ["clear-text", "progress", "json"],
  jsonReporter: { fileName: `reports/mutation/${slug}.json` },
  tempDirName: `.stryker-tmp/${slug}`,
  // Not copied into a sandbox: the other runs' sandboxes and reports.
  ignorePatterns: ["/.stryker-tmp", "/reports"],
  cleanTempDir: "always",
  thresholds: { high: 90, low: 80, break: null },
};
