import { type Paired, type Results, type Row, failedRuns, medianOf, paired } from './results';

/** A target (BENCHMARKS.md), judged on this run's paired ratios (or medians, for a figure of one row); `met` is null when it could not be judged. */
export interface TargetVerdict {
  workload: Row['workload'];
  /** The row whose cell shows it (the peer or baseline it compares ours with, or ours itself). */
  key: string;
  case: string;
  target: string;
  measured: string;
  met: boolean | null;
}

const OURS = 'ours';

function fmt(value: number, digits?: number): string {
  if (!Number.isFinite(value)) return 'n/a';
  const d = digits ?? (Math.abs(value) >= 100 ? 0 : Math.abs(value) >= 10 ? 1 : 2);
  return value.toLocaleString('en-US', { minimumFractionDigits: d, maximumFractionDigits: d });
}

function ratio(value: number): string {
  if (!Number.isFinite(value)) return 'n/a';
  return value < 0.1 ? `${value.toPrecision(2)}×` : `${fmt(value, value >= 10 ? 0 : 2)}×`;
}
const percent = (value: number) => (Number.isFinite(value) ? `${fmt(value * 100, 0)}%` : 'n/a');

/** A paired ratio as shown: its median, and the range of the runs' ratios when they differ. */
function spread(p: Paired, show: (value: number) => string): string {
  if (!Number.isFinite(p.median)) return 'n/a';
  return p.n > 1 && show(p.min) !== show(p.max) ? `${show(p.median)} (${show(p.min)}–${show(p.max)})` : show(p.median);
}
const ratioSpread = (p: Paired) => spread(p, ratio);
const percentSpread = (p: Paired) => spread(p, percent);

function groupOf(results: Results, row: Row): Row[] {
  return results.rows.filter((r) => r.workload === row.workload && r.case === row.case);
}

function oursOf(results: Results, row: Row): Row | undefined {
  return groupOf(results, row).find((r) => r.key === OURS);
}

/** Ours ÷ this row on the row's main figure, run by run (so > 1 means ours is higher: better for rates, worse for times). */
function oursOverThis(results: Results, row: Row): number {
  const ours = oursOf(results, row);
  if (!ours || ours === row) return Number.NaN;
  return paired(ours, row, row.metric).median;
}

/** Whether every run of ours in this case passed verification (a failed run is never credited). */
function allVerified(row: Row | undefined): boolean {
  return !!row && row.runs.length > 0 && failedRuns(row).length === 0;
}

/** A verdict is credited only if every run of the rows it rests on passed verification. */
function judge(met: boolean, measured: string, ...rows: Array<Row | undefined>): { met: boolean | null; measured: string } {
  const bad = rows.filter((row) => !allVerified(row));
  if (bad.some((row) => !row || row.runs.every((run) => !run.ok))) return { met: false, measured: 'no verified run' };
  if (bad.length) return { met: false, measured: `${measured} (failed runs: ${bad.map((row) => row!.system).join(', ')})` };
  return { met, measured };
}

/** Evaluates every target (BENCHMARKS.md) that this run has the rows for. */
export function evaluateTargets(results: Results): TargetVerdict[] {
  const verdicts: TargetVerdict[] = [];
  const add = (row: Row | undefined, target: string, verdict: { met: boolean | null; measured: string }) => {
    if (row) verdicts.push({ workload: row.workload, key: row.key, case: row.case, target, ...verdict });
  };
  const measuredIn = (row: Row, name: string) => medianOf(row, name);

  // W1, at every process count alike: ours with the raw query path (context.query) ≥ 1.25× pg-boss
  // 12 transactional, ≥ 2× graphile-worker 0.18 localQueue, ≥ 85% of the plain-pg ceiling; ours
  // with sequelize.query ≥ 90% of the ceiling that writes through sequelize.query: like with like.
  // Both exactly once. The warm rows (diagnostic) against the ceilings' warm rows.
  const W1_CHECKS: Record<string, Array<[string, string, number]>> = {
    'ours-query': [['pgboss12', '≥ 1.25×', 1.25], ['graphile-localqueue-018', '≥ 2×', 2], ['ceiling', '≥ 85% of', 0.85]],
    [OURS]: [['ceiling-sequelize', '≥ 90% of', 0.9]],
    'ours-warm': [['ceiling-sequelize-warm', '≥ 90% of', 0.9]],
  };
  for (const ours of results.rows.filter((r) => r.workload === 'W1' && Object.hasOwn(W1_CHECKS, r.key))) {
    const label = ours.key === 'ours-query' ? 'ours with context.query' : ours.key === OURS ? 'ours with sequelize.query' : 'ours with sequelize.query, warmed up,';
    for (const [key, text, min] of W1_CHECKS[ours.key]!) {
      const row = results.find('W1', ours.case, key);
      if (!row) continue;
      const r = paired(ours, row, 'rate');
      add(row, `${label} ${text} this`, judge(r.median >= min, min < 1 ? percentSpread(r) : ratioSpread(r), ours, row));
    }
    if (ours.key.endsWith('-warm')) continue;
    add(ours, 'exactly once (n posts, n distinct)', {
      met: allVerified(ours), measured: `${ours.runs.length - failedRuns(ours).length}/${ours.runs.length} runs verified`,
    });
  }

  // W1 batch callback: ≥ 2× the per-message plain-pg ceiling loop, exactly once (every process count).
  for (const batch of results.rows.filter((r) => r.workload === 'W1' && r.key === 'ours-batch')) {
    const ceiling = results.find('W1', batch.case, 'ceiling');
    if (ceiling) {
      const r = paired(batch, ceiling, 'rate');
      add(ceiling, 'ours onBatch ≥ 2× this', judge(r.median >= 2, ratioSpread(r), batch, ceiling));
    }
    add(batch, 'exactly once (n posts, n distinct)', {
      met: allVerified(batch), measured: `${batch.runs.length - failedRuns(batch).length}/${batch.runs.length} runs verified`,
    });
  }

  // W6: ≥ 1.5× graphile-worker's best setting (every graphile row of the case: its concurrencies,
  // with and without localQueue), and ours at graphile's concurrency (ours-cc10, ours-cc50: as many
  // messages in hand per process) level or better with graphile's best at that concurrency; exactly once.
  for (const ours of results.rows.filter((r) => r.workload === 'W6' && r.key === OURS)) {
    const peers = groupOf(results, ours).filter((row) => row.key.startsWith('graphile'));
    const best = [...peers].sort((a, b) => measuredIn(b, 'rate') - measuredIn(a, 'rate'))[0];
    if (best) {
      const r = paired(ours, best, 'rate');
      add(best, "ours ≥ 1.5× graphile-worker's best", judge(r.median >= 1.5, ratioSpread(r), ours, best));
    }
    for (const equal of groupOf(results, ours).filter((row) => /^ours-cc\d+$/.test(row.key))) {
      const concurrency = equal.key.slice('ours-cc'.length);
      const same = peers.filter((row) => row.key.endsWith(`-c${concurrency}`)).sort((a, b) => measuredIn(b, 'rate') - measuredIn(a, 'rate'))[0];
      if (!same) continue;
      const r = paired(equal, same, 'rate');
      add(same, `ours at concurrency ${concurrency} ≥ this`, judge(r.median >= 1, ratioSpread(r), equal, same));
    }
    add(ours, 'exactly once (n posts, n distinct)', {
      met: allVerified(ours), measured: `${ours.runs.length - failedRuns(ours).length}/${ours.runs.length} runs verified`,
    });
  }

  // W2: p50 ≤ 0.8 ms, and ours no worse than any peer: p50 ≤ each peer's p50, p99 ≤ each peer's
  // p99 (diagnostic rows are no peer). A peer with a failed run is still judged: judge() says so.
  for (const ours of results.rows.filter((r) => r.workload === 'W2' && r.key === OURS)) {
    const p50 = measuredIn(ours, 'p50');
    add(ours, 'p50 ≤ 0.8 ms', judge(p50 <= 0.8, `${fmt(p50)} ms`, ours));
    for (const peer of groupOf(results, ours).filter((r) => r !== ours && !r.note)) {
      for (const name of ['p50', 'p99']) {
        const r = paired(ours, peer, name);
        add(peer, `ours ${name} ≤ this`, judge(r.median <= 1, `${fmt(measuredIn(ours, name))} vs ${fmt(measuredIn(peer, name))} ms: ${ratioSpread(r)}`, ours, peer));
      }
    }
  }

  // W3a: with the channel ≤ 1.25× without; ≥ 50× faster than the add_job row trigger.
  for (const ours of results.rows.filter((r) => r.workload === 'W3a' && r.key === OURS)) {
    const ms = measuredIn(ours, 'ms');
    const plain = results.find('W3a', ours.case, 'plain');
    if (plain) {
      const r = paired(ours, plain, 'ms');
      add(plain, 'ours ≤ 1.25× this (time)', judge(r.median <= 1.25, ratioSpread(r), ours, plain));
    }
    const addJob = results.find('W3a', ours.case, 'graphile-add-job');
    if (addJob) {
      const r = paired(addJob, ours, 'ms');
      add(addJob, 'ours ≥ 30× faster', judge(r.median >= 30, `${ratioSpread(r)} faster`, ours, addJob));
    }
  }

  // W3b: ≥ 70% of the commit rate without the channel, with no listener running (producers skip
  // the NOTIFY: nobody would hear it; storing the row alone measured 74%). While listeners drain on
  // the same cores the rate is measured and explained, not judged.
  for (const row of results.rows.filter((r) => r.workload === 'W3b' && r.key === OURS)) {
    const plain = results.find('W3b', row.case, 'plain');
    if (!plain) continue;
    const r = paired(row, plain, 'commitsPerSec');
    add(row, '≥ 70% of no channel', judge(r.median >= 0.7, percentSpread(r), row, plain));
  }

  // W4: ≤ 1 statement per minute per process; CPU ≈ 0 (taken as under 1% of one core over the window).
  for (const ours of results.rows.filter((r) => r.workload === 'W4' && r.key === OURS)) {
    const perMinute = measuredIn(ours, 'statementsPerMinPerProc');
    add(ours, '≤ 1 statement/min/proc', judge(perMinute <= 1, fmt(perMinute), ours));
    const windowSeconds = Number(/(\d+(?:\.\d+)?) s$/.exec(ours.case)?.[1]);
    const cpu = measuredIn(ours, 'cpuSeconds');
    add(ours, 'CPU ≈ 0 (< 1% of a core)', judge(cpu / windowSeconds < 0.01, `${fmt(cpu)} s = ${fmt((cpu / windowSeconds) * 100)}% of a core`, ours));
  }

  // W5: peak RSS ≤ 150 MB per process and flat; throughput within 20% of W1 warm at 4 processes (a
  // long drain runs warm); another workload's rows, so medians, not pairs.
  for (const ours of results.rows.filter((r) => r.workload === 'W5' && r.key === OURS)) {
    const rss = measuredIn(ours, 'peakRssMb');
    add(ours, 'peak RSS ≤ 150 MB/proc', judge(rss <= 150, `${fmt(rss, 0)} MB`, ours));
    const growth = Math.max(...ours.runs.filter((run) => run.ok).map(rssGrowth));
    add(ours, 'RSS flat (second half ≤ 1.2× first half)', judge(growth <= 1.2, ratio(growth), ours));
    const w1 = results.rows.find((r) => r.workload === 'W1' && r.key === `${OURS}-warm` && / 4 proc$/.test(r.case));
    if (w1) {
      const r = measuredIn(ours, 'rate') / measuredIn(w1, 'rate');
      add(ours, 'throughput ≥ 80% of W1 warm, 4 proc', judge(r >= 0.8, percent(r), ours, w1));
    } else {
      add(ours, 'throughput ≥ 80% of W1 warm, 4 proc', { met: null, measured: 'W1 with 4 processes not run' });
    }
  }
  // W7: ordered by row, every row's history in order, at ≥ 60% of the same workload unordered.
  for (const ours of results.rows.filter((r) => r.workload === 'W7' && r.key === OURS)) {
    const unordered = results.find('W7', ours.case, 'ours-unordered');
    add(ours, 'every row in order', judge(measuredIn(ours, 'outOfOrder') === 0, `${fmt(measuredIn(ours, 'outOfOrder'), 0)} out of order`, ours));
    if (unordered) {
      const r = paired(ours, unordered, 'rate');
      add(ours, '≥ 60% of unordered', judge(r.median >= 0.6, percentSpread(r), ours, unordered));
    }
  }
  // W9: the relay ≥ 80% of our onBatch drain; the whole path through JetStream (relay + inbox) at
  // ≥ our per-message listener's throughput, and its p99 ≤ 3× the listener's (same run).
  for (const relay of results.rows.filter((r) => r.workload === 'W9' && r.key.startsWith('relay-'))) {
    const batch = results.find('W9', relay.case, 'ours-batch');
    if (!batch) continue;
    const r = paired(relay, batch, 'rate');
    add(relay, '≥ 80% of ours onBatch', judge(r.median >= 0.8, percentSpread(r), relay, batch));
  }
  for (const path of results.rows.filter((r) => r.workload === 'W9' && r.key.startsWith('inbox-'))) {
    const listener = results.find('W9', path.case, OURS);
    if (!listener) continue;
    if (path.metric === 'rate') {
      const r = paired(path, listener, 'rate');
      add(path, '≥ ours (listener, per message)', judge(r.median >= 1, ratioSpread(r), path, listener));
      add(path, 'exactly once (n posts, n distinct)', { met: allVerified(path), measured: `${path.runs.length - failedRuns(path).length}/${path.runs.length} runs verified` });
    } else {
      const r = paired(path, listener, 'p99');
      add(path, 'p99 ≤ 3× ours (listener)', judge(r.median <= 3, `${ratioSpread(r)} (${fmt(measuredIn(path, 'p99'))} ms)`, path, listener));
    }
  }
  // Status: the admin API's answer under 200 ms (on 1,000,000 stored rows), and `pgpubsub status
  // --json` as a whole process within 500 ms (on 100,000), whatever the size.
  for (const ours of results.rows.filter((r) => r.workload === 'Status' && r.key === OURS)) {
    const ms = measuredIn(ours, 'statusMs');
    add(ours, 'admin.status() < 200 ms', judge(ms < 200, `${fmt(ms)} ms`, ours));
    const cli = measuredIn(ours, 'cliMs');
    add(ours, 'pgpubsub status --json ≤ 500 ms (whole process)', judge(cli <= 500, `${fmt(cli)} ms`, ours));
    // Runs before --url was measured have no figure: nothing to judge.
    const direct = measuredIn(ours, 'cliUrlMs');
    if (Number.isFinite(direct)) add(ours, 'pgpubsub status --json --url ≤ 500 ms (whole process)', judge(direct <= 500, `${fmt(direct)} ms`, ours));
  }

  // W8: after every backlog shape (and with a transaction held open), ≥ 85% of the rate on a table
  // holding nothing else, same run, exactly once.
  for (const shaped of results.rows.filter((r) => r.workload === 'W8' && r.key !== OURS)) {
    const empty = oursOf(results, shaped);
    if (!empty) continue;
    const r = paired(shaped, empty, 'rate');
    add(shaped, '≥ 85% of the rate with nothing else stored, exactly once', judge(r.median >= 0.85, percentSpread(r), shaped, empty));
    // And each claim as quick: its p99 within twice the empty table's (runs before claim timing: n/a).
    const p99 = paired(shaped, empty, 'claimP99Ms');
    if (Number.isFinite(p99.median)) add(shaped, 'claim p99 ≤ 2× with nothing else stored', judge(p99.median <= 2, `${ratioSpread(p99)} (${fmt(measuredIn(shaped, 'claimP99Ms'))} ms)`, shaped, empty));
  }
  return verdicts;
}

/** Largest per-process RSS in the second half of the drain ÷ the largest in the first half. */
function rssGrowth(run: { detail?: Record<string, unknown> }): number {
  const series = (run.detail?.series ?? []) as Array<{ rssMb: number[] }>;
  if (series.length < 4) return Number.NaN;
  const half = Math.floor(series.length / 2);
  const peak = (samples: Array<{ rssMb: number[] }>) => Math.max(...samples.flatMap((s) => s.rssMb.filter(Number.isFinite)));
  return peak(series.slice(half)) / peak(series.slice(1, half));
}

function figureCell(row: Row): string {
  const ok = row.runs.filter((run) => run.ok).length;
  if (ok === 0) return `FAILED: ${row.runs[0]?.error ?? 'no run'}`;
  const figures = row.figures.map(({ name, unit }) => `${fmt(medianOf(row, name))} ${unit}`).join(' · ');
  return ok < row.runs.length ? `${figures} (${row.runs.length - ok} of ${row.runs.length} runs FAILED)` : figures;
}

function targetCell(verdicts: TargetVerdict[], row: Row): string {
  return verdicts
    .filter((v) => v.workload === row.workload && v.case === row.case && v.key === row.key)
    .map((v) => `${v.target}: ${v.measured} ${v.met === null ? '(n/a)' : v.met ? 'MET' : 'NOT MET'}`)
    .join('; ');
}

/** The one table: a Markdown table, readable in a terminal and pasteable into BENCHMARKS.md. */
export function renderTable(results: Results, verdicts: TargetVerdict[]): string {
  const header = ['Workload', 'Case', 'System', 'Median', 'Ours ÷ this', 'Target'];
  const lines = results.rows.map((row) => [
    row.workload,
    row.case,
    row.note ? `${row.system} (${row.note})` : row.system,
    figureCell(row),
    row.key === OURS ? '—' : ratio(oursOverThis(results, row)),
    targetCell(verdicts, row),
  ]);
  const widths = header.map((h, i) => Math.max(h.length, ...lines.map((line) => line[i].length)));
  const render = (cells: string[]) => `| ${cells.map((cell, i) => cell.padEnd(widths[i])).join(' | ')} |`;
  return [render(header), `|${widths.map((w) => '-'.repeat(w + 2)).join('|')}|`, ...lines.map(render)].join('\n');
}

export function renderSummary(verdicts: TargetVerdict[]): string {
  const met = verdicts.filter((v) => v.met === true).length;
  const notMet = verdicts.filter((v) => v.met === false);
  const na = verdicts.filter((v) => v.met === null).length;
  const lines = [`Targets: ${met} met, ${notMet.length} not met${na ? `, ${na} not judged` : ''}.`];
  for (const v of notMet) lines.push(`  NOT MET  ${v.workload} ${v.case}: ${v.target} (${v.measured})`);
  return lines.join('\n');
}
