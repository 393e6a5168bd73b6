/**
 * The build itself: `npm install` / `npm run build` prints no warnings of ours (the bundler step
 * used to pass rolldown an option it does not have, warning on every install).
 */
import { spawnSync } from "node:child_process";
import { mkdirSync, mkdtempSync, readFileSync, rmSync, statSync } from "node:fs";
import path from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { ROOT } from "./support/home.js";

const dirs: string[] = [];
afterAll(() => dirs.forEach((d) => rmSync(d, { recursive: true, force: true })));

describe("the build", () => {
  it("bundles the CLI quietly: no warning, no output, an executable dist/cli.js", { timeout: 60_000 }, () => {
    const script = JSON.parse(readFileSync(path.join(ROOT, "package.json"), "utf8")).scripts.build as string;
    const steps = script.split("&&").map((s) => s.trim());
    expect(steps[0]).toBe("tsc -p tsconfig.json");
    // Every later step is the bundler step; run it into a scratch directory (never over the dist/ other tests use).
    expect(steps.slice(1)).toEqual(["node rolldown.config.mjs"]);
    // (inside the checkout, so the bundle's lazy chunks resolve their packages from node_modules)
    mkdirSync(path.join(ROOT, "node_modules", ".cache"), { recursive: true });
    const out = mkdtempSync(path.join(ROOT, "node_modules", ".cache", "sigil-build-"));
    dirs.push(out);
    const r = spawnSync(process.execPath, ["rolldown.config.mjs", out], { cwd: ROOT, encoding: "utf8" });
    expect(r.status, r.stderr).toBe(0);
    expect(r.stderr).toBe("");
    expect(r.stdout).toBe("");
    expect(statSync(path.join(out, "cli.js")).mode & 0o111).toBe(0o111);
    const v = spawnSync(path.join(out, "cli.js"), ["--version"], { encoding: "utf8" });
    expect(v.stdout.trim()).toBe("0.1.0");
  });
});
