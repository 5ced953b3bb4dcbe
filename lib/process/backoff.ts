/**
 * Exponential backoff with jitter, the one formula every retry here uses (callbacks, reconnects,
 * worker restarts, start-up): base·2^(attempt-1), capped, then scaled by a random factor in [0.5, 1).
 */
export function jitteredBackoff(attempt: number, baseMs: number, capMs: number, random = Math.random): number {
  const exponential = Math.min(capMs, baseMs * 2 ** Math.max(0, attempt - 1));
  return Math.round(exponential * (0.5 + random() / 2));
}
