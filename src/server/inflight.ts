/** Tracks tool calls in progress, so a shutdown can let them record their results first. */
const inflight = new Set<Promise<unknown>>();

export function track<T>(p: Promise<T>): Promise<T> {
  inflight.add(p);
  void p.finally(() => inflight.delete(p)).catch(() => {});
  return p;
}

export async function drainInFlight(maxMs: number): Promise<void> {
  if (inflight.size === 0) return;
  await Promise.race([Promise.allSettled([...inflight]), new Promise((r) => setTimeout(r, maxMs))]);
}
