import { defineConfig } from "vitest/config";

export default defineConfig({
  test: {
    include: ["test/**/*.test.ts"],
    // Generous: CI runs on 2 cores that may be busy; many cases spawn several processes.
    testTimeout: 180_000,
    hookTimeout: 180_000,
    pool: "forks",
    // Starts a throwaway PostgreSQL (when installed) for the PostgreSQL store variants.
    globalSetup: ["test/support/pg-global.ts"],
  },
});
