// Mutation testing of the modules that decide (npm run test:mutation; not part of npm test or CI).
// Stryker 9.6 (10.x needs Node 22); no TypeScript checker (TypeScript 7 has no JS API). The
// in-process unit tests of these modules run against each mutant (vitest.mutation.config.ts).
// Scores and every survivor's explanation: MUTATION.md.
export default {
  packageManager: "npm",
  plugins: ["@stryker-mutator/vitest-runner"],
  testRunner: "vitest",
  vitest: { configFile: "vitest.mutation.config.ts", related: false },
  coverageAnalysis: "perTest",
  mutate: (process.env.SIGIL_MUTATE ?? [
    "src/policy/evaluate.ts",
    "src/policy/email-address.ts",
    "src/policy/exfiltration.ts",
    "src/audit/verify.ts",
    "src/provenance/receipt.ts",
    "src/provenance/http-signature.ts",
  ].join(",")).split(","),
  ignoreStatic: true,
  // Stryker rewrites tsconfig.json through the TypeScript API, which TypeScript 7 no longer has;
  // vitest compiles the sources itself, so point the rewriter at a file that does not exist.
  tsconfigFile: "tsconfig.stryker-none.json",
  concurrency: Number(process.env.SIGIL_MUTATION_CONCURRENCY ?? 2),
  timeoutMS: 30_000,
  reporters: ["clear-text", "progress", "json"],
  jsonReporter: { fileName: "reports/mutation/mutation.json" },
  tempDirName: ".stryker-tmp",
  cleanTempDir: "always",
  thresholds: { high: 90, low: 80, break: null },
};
