/** Chooses the store backend: the embedded home by default. */
import { realpathSync } from "node:fs";
import { type FileLayer, realFiles } from "../src/util/fsx.js";
import { createLocks } from "../src/util/lock.js";
import { FileStore } from "./file/index.js";
import type { Store } from "./types.js";

export interface StoreOptions {
  home: string;
  files?: FileLayer;
}

export function lockNamespace(home: string): string {
  try {
    return realpathSync(home);
  } catch {
    return home;
  }
}

export function openFileStore(opts: StoreOptions): Store {
  return new FileStore(opts.home, opts.files ?? realFiles, createLocks(lockNamespace(opts.home)));
}

export type { Store } from "./types.js";
