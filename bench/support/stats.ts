/** Median of the finite values; NaN when there are none (a workload that failed every run). */
export function median(values: readonly number[]): number {
  const sorted = values.filter(Number.isFinite).sort((a, b) => a - b);
  if (sorted.length === 0) return Number.NaN;
  const mid = Math.floor(sorted.length / 2);
  return sorted.length % 2 ? sorted[mid] : (sorted[mid - 1] + sorted[mid]) / 2;
}

/** Nearest-rank percentile (p in 0..100) of unsorted samples. */
export function percentile(samples: readonly number[], p: number): number {
  if (samples.length === 0) return Number.NaN;
  const sorted = [...samples].sort((a, b) => a - b);
  const rank = Math.min(sorted.length, Math.max(1, Math.ceil((p / 100) * sorted.length)));
  return sorted[rank - 1];
}

/**
 * Microseconds on CLOCK_MONOTONIC. Every process on the machine reads the same clock, so a time
 * taken in the producer and one taken in a worker process subtract exactly, with sub-ms
 * resolution (Date.now() is whole milliseconds, too coarse for a 1.5 ms target).
 */
export function monotonicMicros(): bigint {
  return process.hrtime.bigint() / 1000n;
}
