import { defineConfig } from "vitest/config";

export default defineConfig({
  test: {
    include: ["test/**/*.test.ts"],
    testTimeout: 60_000,
    hookTimeout: 60_000,
    pool: "forks",
    // Starts a throwaway PostgreSQL (when installed) for the PostgreSQL store variants.
    globalSetup: ["test/support/pg-global.ts"],
  },
});
