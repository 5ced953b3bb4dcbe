import { median } from './support/stats';

/** One measurement of one run: its figures, or why it failed (a failed run is never credited). */
export interface RunResult {
  ok: boolean;
  values: Record<string, number>;
  error?: string;
  /** Extra data kept in the JSON only (time series, per-process figures). */
  detail?: Record<string, unknown>;
}

/** A table row: one system on one workload case, over all runs. */
export interface Row {
  workload: 'W1' | 'W2' | 'W3a' | 'W3b' | 'W4' | 'W5' | 'W6' | 'W7' | 'W8' | 'W9' | 'Status';
  /** What varies within a workload, e.g. "2 processes"; rows of the same case are compared. */
  case: string;
  system: string;
  /** Stable ids: 'ours', 'ceiling', 'graphile', 'graphile-localqueue', 'pgboss', 'plain', ... */
  key: string;
  /** The figure the ratios are taken on, e.g. 'rate'. */
  metric: string;
  /** Every figure shown, in order, with its unit (the first is `metric`). */
  figures: Array<{ name: string; unit: string }>;
  better: 'higher' | 'lower';
  /** Shown in the table but not the row ours is judged against (e.g. a diagnostic variant). */
  note?: string;
  runs: RunResult[];
}

export function medianOf(row: Row, name: string): number {
  return median(row.runs.filter((run) => run.ok).map((run) => run.values[name]));
}

/** A ratio judged run by run: its median over the pairs, and their range. */
export interface Paired {
  median: number;
  min: number;
  max: number;
  /** Pairs where both runs passed. */
  n: number;
}

/**
 * `a ÷ b` run by run: run i of each row was measured in the same round (the workloads interleave
 * their systems per run), so the pair shared the machine's moment; the ratio of medians would
 * compare one row's best moment with another's worst. Pairs with a failed run are left out.
 */
export function paired(a: Row, b: Row, name: string, nameB = name): Paired {
  const ratios: number[] = [];
  for (let i = 0; i < Math.min(a.runs.length, b.runs.length); i++) {
    const x = a.runs[i]!;
    const y = b.runs[i]!;
    if (x.ok && y.ok) ratios.push(x.values[name]! / y.values[nameB]!);
  }
  const finite = ratios.filter(Number.isFinite);
  return { median: median(finite), min: Math.min(...finite), max: Math.max(...finite), n: finite.length };
}

export function failedRuns(row: Row): RunResult[] {
  return row.runs.filter((run) => !run.ok);
}

export class Results {
  readonly rows: Row[] = [];

  /** The row for (workload, case, key), created on first use so that runs of it accumulate. */
  row(spec: Omit<Row, 'runs'>): Row {
    let row = this.rows.find((r) => r.workload === spec.workload && r.case === spec.case && r.key === spec.key);
    if (!row) {
      row = { ...spec, runs: [] };
      this.rows.push(row);
    }
    return row;
  }

  find(workload: Row['workload'], kase: string | null, key: string): Row | undefined {
    return this.rows.find((r) => r.workload === workload && (kase === null || r.case === kase) && r.key === key);
  }
}
