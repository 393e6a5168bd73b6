/**
 * A separate process taking sigil's cross-process lock (test/locks.test.ts):
 *   node lock-worker.mjs <home> loop   take "shared" again and again; inside, check nobody else is
 *                                      inside (an `owner` file naming a live process) and record
 *                                      any overlap in `violations`
 *   node lock-worker.mjs <home> hold   take "shared", print "held", keep it until killed
 *   node lock-worker.mjs <home> once   take "shared" once, print "done", exit normally
 */
import fs from "node:fs";
import path from "node:path";
import { createLocks } from "../../dist/src/util/lock.js";

const [home, mode] = process.argv.slice(2);
const locks = createLocks(home);
const owner = path.join(home, "owner");
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

/** Alive and not a zombie (a SIGKILLed worker stays a zombie until the test reaps it). */
function alive(pid) {
  try {
    const stat = fs.readFileSync(`/proc/${pid}/stat`, "utf8");
    const state = stat.slice(stat.lastIndexOf(")") + 2, stat.lastIndexOf(")") + 3);
    return state !== "Z" && state !== "X";
  } catch {
    return false;
  }
}

function read(file) {
  try {
    return fs.readFileSync(file, "utf8");
  } catch {
    return "";
  }
}

const violation = (what) => fs.appendFileSync(path.join(home, "violations"), `${process.pid}: ${what}\n`);

if (mode === "hold") {
  setInterval(() => {}, 60_000); // the lock's socket does not keep the process alive on its own
  await locks.withLock("shared", async () => {
    process.stdout.write("held\n");
    await new Promise(() => {});
  });
} else if (mode === "once") {
  await locks.withLock("shared", async () => {});
  process.stdout.write("done\n");
} else {
  for (;;) {
    await locks.withLock("shared", async () => {
      const prev = Number(read(owner) || 0);
      if (prev && prev !== process.pid && alive(prev)) violation(`entered while ${prev} was inside`);
      fs.writeFileSync(owner, String(process.pid));
      await sleep(1);
      if (read(owner) !== String(process.pid)) violation(`someone entered while I was inside`);
      fs.writeFileSync(owner, "");
      fs.appendFileSync(path.join(home, "count"), "x");
    });
  }
}
