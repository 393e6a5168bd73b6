/**
 * Lets the event loop run what is waiting (I/O callbacks, other requests) before going on: long
 * loops over a registry or a log call it every few hundred items, so that no request waits behind
 * the whole loop (the console's lists, reading a log, verifying without a thread).
 */
export function nextTurn(): Promise<void> {
  return new Promise((resolve) => setImmediate(resolve));
}

/** Orders identity records by creation time, then id (ISO 8601 times and hex ids compare as plain strings). */
export function byCreation(a: { createdAt: string; id: string }, b: { createdAt: string; id: string }): number {
  return a.createdAt < b.createdAt ? -1 : a.createdAt > b.createdAt ? 1 : a.id < b.id ? -1 : a.id > b.id ? 1 : 0;
}
