/**
 * sigil's cross-process locks (src/util/lock.ts): links to listening Unix sockets inside the
 * home's private `locks/` directory. Real processes, real SIGKILLs.
 */
import { afterAll, describe, expect, it } from "vitest";
import { type ChildProcess, spawn } from "node:child_process";
import { createHash } from "node:crypto";
import { existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, realpathSync, rmSync, statSync } from "node:fs";
import os from "node:os";
import path from "node:path";
import { ROOT } from "./support/home.js";

const WORKER = path.join(ROOT, "test/support/lock-worker.mjs");
const dirs: string[] = [];
afterAll(() => {
  for (const d of dirs) rmSync(d, { recursive: true, force: true });
});

function tempHome(): string {
  const d = mkdtempSync(path.join(os.tmpdir(), "sigil-locks-"));
  dirs.push(d);
  return d;
}

function worker(home: string, mode: string): ChildProcess {
  return spawn(process.execPath, [WORKER, home, mode], { stdio: ["ignore", "pipe", "inherit"] });
}

function said(p: ChildProcess, word: string): Promise<void> {
  return new Promise((resolve, reject) => {
    let out = "";
    p.stdout!.on("data", (d: Buffer) => {
      out += d.toString();
      if (out.includes(word)) resolve();
    });
    p.once("exit", (code) => reject(new Error(`worker exited ${code} before saying ${word}`)));
  });
}

function killed(p: ChildProcess): Promise<void> {
  return new Promise((resolve) => {
    if (p.exitCode !== null || p.signalCode !== null) return resolve();
    p.once("exit", () => resolve());
    p.kill("SIGKILL");
  });
}

const entries = (home: string) => readdirSync(path.join(home, "locks"));

describe("cross-process locks", () => {
  it("live in a 0700 directory of the home, not in the machine-wide abstract socket namespace", async () => {
    const home = tempHome();
    const { createLocks } = await import("../dist/src/util/lock.js");
    const locks = createLocks(home);
    // The abstract name the lock had before (any local user could bind it first).
    const legacy = "@sigil-" + createHash("sha256").update(realpathSync(home)).update("\0").update("registry:x").digest("hex").slice(0, 40);
    let inside: string[] = [];
    let unix = "";
    await locks.withLock("registry:x", async () => {
      inside = entries(home);
      unix = readFileSync("/proc/net/unix", "utf8");
    });
    expect(unix).toContain(path.join(home, "locks") + "/t."); // the socket is bound inside the home
    expect(unix).not.toContain(legacy);
    expect(statSync(path.join(home, "locks")).mode & 0o777).toBe(0o700);
    expect(inside.filter((e) => e.startsWith("l."))).toHaveLength(1);
  });

  it("a holder killed with SIGKILL leaves a stale lock that the next taker clears at once", async () => {
    const home = tempHome();
    const holder = worker(home, "hold");
    await said(holder, "held");
    await killed(holder);
    expect(entries(home).filter((e) => e.startsWith("l."))).toHaveLength(1); // stale: nobody unlinked it
    const { createLocks } = await import("../dist/src/util/lock.js");
    const t0 = Date.now();
    await createLocks(home).withLock("shared", async () => {}, 10_000);
    expect(Date.now() - t0).toBeLessThan(10_000);
    expect(entries(home).some((e) => /^k\.\d+$/.test(e))).toBe(true); // it went through the takeover lock
  });

  it("a home whose path is too long for a socket address still works (reached through /proc/self/fd); isHeld sees a live holder, not a dead one", async () => {
    const home = path.join(tempHome(), "h".repeat(60), "i".repeat(60));
    mkdirSync(home, { recursive: true, mode: 0o700 });
    const holder = worker(home, "hold");
    await said(holder, "held");
    const { createLocks } = await import("../dist/src/util/lock.js");
    const locks = createLocks(home);
    expect(await locks.isHeld("shared")).toBe(true);
    expect(await locks.isHeld("other")).toBe(false);
    await killed(holder);
    expect(await locks.isHeld("shared")).toBe(false);
    await locks.withLock("shared", async () => expect(await createLocks(home).isHeld("shared")).toBe(true), 10_000);
  });

  it("a process that exits normally leaves nothing behind (even a lock it kept idle)", async () => {
    const home = tempHome();
    const p = worker(home, "once");
    await said(p, "done");
    await new Promise((r) => p.once("exit", r));
    expect(entries(home).filter((e) => !e.startsWith("k."))).toEqual([]);
  });

  it("mutual exclusion holds across 4 processes while holders are SIGKILLed mid-section and replaced", async () => {
    const home = tempHome();
    const live = new Set<ChildProcess>();
    const start = () => {
      const p = worker(home, "loop");
      live.add(p);
      p.once("exit", () => live.delete(p));
    };
    for (let i = 0; i < 4; i++) start();
    // One holder is always killed while it holds the lock: the takeover path is exercised for sure.
    const holder = worker(home, "hold");
    await said(holder, "held");
    await killed(holder);
    for (let round = 0; round < 6; round++) {
      await new Promise((r) => setTimeout(r, 40 + Math.random() * 40));
      const victims = [...live];
      await killed(victims[Math.floor(Math.random() * victims.length)]!);
      start();
    }
    const deadline = Date.now() + 20_000;
    const countNow = () => (existsSync(path.join(home, "count")) ? readFileSync(path.join(home, "count"), "utf8").length : 0);
    const before = countNow();
    while (countNow() < before + 20 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 20)); // still making progress
    await Promise.all([...live].map(killed));
    expect(existsSync(path.join(home, "violations")) ? readFileSync(path.join(home, "violations"), "utf8") : "").toBe("");
    expect(countNow()).toBeGreaterThanOrEqual(before + 20);
    const { createLocks } = await import("../dist/src/util/lock.js");
    await createLocks(home).withLock("shared", async () => {}, 10_000); // nothing stale blocks the next taker
  });
});
