/**
 * Fault injection for the test suite: wraps the file layer so that chosen operations on chosen
 * paths fail with a chosen errno, in a real `sigil` process. Enabled only by SIGIL_TEST_FAULTS,
 * which production never sets; the format is `op@pathSubstring=ERRNO[;…]`, e.g.
 * `datasync@/audit/=EIO;write@/identities/=ENOSPC`. Ops: open, write, datasync, sync, rename,
 * readFile, mkdir, truncate.
 */
import type { FileHandleLike, FileLayer } from "./fsx.js";

interface Rule {
  op: string;
  path: string;
  errno: string;
}

function parse(spec: string): Rule[] {
  return spec
    .split(";")
    .map((s) => s.trim())
    .filter(Boolean)
    .map((s) => {
      const m = /^([a-zA-Z]+)@([^=]*)=([A-Z]+)$/.exec(s);
      if (!m) throw new Error(`SIGIL_TEST_FAULTS: cannot parse "${s}"`);
      return { op: m[1]!, path: m[2]!, errno: m[3]! };
    });
}

export function faultyFiles(base: FileLayer, spec: string): FileLayer {
  const rules = parse(spec);
  const check = (op: string, file: string): void => {
    const r = rules.find((x) => x.op === op && file.includes(x.path));
    if (r) throw Object.assign(new Error(`${r.errno}: injected fault, ${op} '${file}'`), { code: r.errno });
  };
  const wrapHandle = (fh: FileHandleLike, file: string): FileHandleLike => ({
    write: async (...a) => (check("write", file), fh.write(...a)),
    read: (...a) => fh.read(...a),
    datasync: async () => (check("datasync", file), fh.datasync()),
    sync: async () => (check("sync", file), fh.sync()),
    stat: () => fh.stat(),
    truncate: async (len) => (check("truncate", file), fh.truncate(len)),
    close: () => fh.close(),
  });
  return {
    open: async (file, flags, mode) => (check("open", file), wrapHandle(await base.open(file, flags, mode), file)),
    readFile: async (file) => (check("readFile", file), base.readFile(file)),
    rename: async (from, to) => (check("rename", to), base.rename(from, to)),
    unlink: (file) => base.unlink(file),
    mkdir: async (dir, mode) => (check("mkdir", dir), base.mkdir(dir, mode)),
    readdir: (dir) => base.readdir(dir),
    stat: (file) => base.stat(file),
  };
}

/** `base`, or `base` with the faults SIGIL_TEST_FAULTS names (`Config.testFaults`) injected. */
export function filesFor(base: FileLayer, faults: string | undefined): FileLayer {
  return faults ? faultyFiles(base, faults) : base;
}

let armed: string | undefined;

/** Arms the crash point SIGIL_TEST_CRASH names (`Config.testCrash`; openApp calls this). */
export function armCrashPoint(point: string | undefined): void {
  armed = point;
}

/**
 * A named point in a multi-step operation where the test suite can kill this process outright
 * (SIGKILL: no cleanup, no further write), to prove that what the next process finds is
 * reconciled. Enabled only by SIGIL_TEST_CRASH=<point>, which production never sets; the points
 * are listed where they are used (e.g. `key_rotated:after-intent` in src/identity/identities.ts;
 * `<tool>:after-intent` and `<tool>:after-act` for every agent call in src/pipeline/agent-call.ts).
 */
export function crashPoint(point: string): void {
  if (armed === point) process.kill(process.pid, "SIGKILL");
}
