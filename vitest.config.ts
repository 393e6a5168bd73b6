import { defineConfig } from "vitest/config";

export default defineConfig({
  test: {
    include: ["test/**/*.test.ts"],
    // Generous: CI runs on 2 cores that may be busy; many cases spawn several processes.
    testTimeout: 180_000,
    hookTimeout: 180_000,
    pool: "forks",
    // Two test files at a time on CI's 2 cores (vitest's default there is one: cores − 1). Most cases
    // wait on child processes and fsyncs, so a second file roughly halves the wall time; one file at a
    // time took 1,716 s, too near the 30-minute budget.
    maxWorkers: 2,
    // Starts a throwaway PostgreSQL (when installed) for the PostgreSQL store variants.
    globalSetup: ["test/support/pg-global.ts"],
  },
});
