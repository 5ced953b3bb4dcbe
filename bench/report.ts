import { type Results, type Row, failedRuns, medianOf } from './results';

/** A target (BENCHMARKS.md), judged on medians of this run; `met` is null when it could not be judged. */
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

function groupOf(results: Results, row: Row): Row[] {
  return results.rows.filter((r) => r.workload === row.workload && r.case === row.case);
}

function oursOf(results: Results, row: Row): Row | undefined {
  return groupOf(results, row).find((r) => r.key === OURS);
}

/** Ours ÷ this row on the row's main figure (so > 1 means ours is higher: better for rates, worse for times). */
function oursOverThis(results: Results, row: Row): number {
  const ours = oursOf(results, row);
  if (!ours || ours === row) return Number.NaN;
  return medianOf(ours, row.metric) / medianOf(row, row.metric);
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

  // W1, at every process count: ≥ 3× graphile default, ≥ 2× graphile localQueue (each against the
  // faster of 0.17 and 0.18), ≥ 2× pg-boss 12 transactional, ≥ 85% of the ceiling loop through
  // sequelize.query and ≥ 70% of the plain-pg one, exactly once. The warm rows (diagnostic) are
  // judged against the ceilings' warm rows, like with like.
  for (const ours of results.rows.filter((r) => r.workload === 'W1' && (r.key === OURS || r.key === `${OURS}-warm`))) {
    const warm = ours.key.endsWith('-warm') ? '-warm' : '';
    const peer = (key: string) => results.find('W1', ours.case, key);
    const best = (...keys: string[]) => keys.map(peer).filter((row): row is Row => !!row && allVerified(row))
      .sort((a, b) => measuredIn(b, 'rate') - measuredIn(a, 'rate'))[0] ?? peer(keys[0]!);
    const rate = measuredIn(ours, 'rate');
    const checks: Array<[string[], string, number]> = warm
      ? [[['ceiling-sequelize-warm'], '≥ 85% of', 0.85], [['ceiling-warm'], '≥ 70% of', 0.7]]
      : [[['graphile', 'graphile-018'], '≥ 3×', 3], [['graphile-localqueue', 'graphile-localqueue-018'], '≥ 2×', 2], [['pgboss12'], '≥ 2×', 2],
        [['ceiling-sequelize'], '≥ 85% of', 0.85], [['ceiling'], '≥ 70% of', 0.7]];
    for (const [keys, text, min] of checks) {
      const row = best(...keys);
      if (!row) continue;
      const r = rate / measuredIn(row, 'rate');
      add(row, `ours${warm ? ', warmed up,' : ''} ${text} this`, judge(r >= min, min < 1 ? percent(r) : ratio(r), ours, row));
    }
    if (warm) continue;
    add(ours, 'exactly once (n posts, n distinct)', {
      met: allVerified(ours), measured: `${ours.runs.length - failedRuns(ours).length}/${ours.runs.length} runs verified`,
    });
  }

  // W1 batch callback: ≥ 2× the per-message plain-pg ceiling loop, exactly once (every process count).
  for (const batch of results.rows.filter((r) => r.workload === 'W1' && r.key === 'ours-batch')) {
    const ceiling = results.find('W1', batch.case, 'ceiling');
    if (ceiling) {
      const r = measuredIn(batch, 'rate') / measuredIn(ceiling, 'rate');
      add(ceiling, 'ours onBatch ≥ 2× this', judge(r >= 2, ratio(r), batch, ceiling));
    }
    add(batch, 'exactly once (n posts, n distinct)', {
      met: allVerified(batch), measured: `${batch.runs.length - failedRuns(batch).length}/${batch.runs.length} runs verified`,
    });
  }

  // W6: ≥ 1.5× graphile-worker's best setting (concurrency 10 or 50), exactly once.
  for (const ours of results.rows.filter((r) => r.workload === 'W6' && r.key === OURS)) {
    const peers = ['graphile-c10', 'graphile-c50'].map((key) => results.find('W6', ours.case, key)).filter((row): row is Row => !!row);
    const best = peers.sort((a, b) => measuredIn(b, 'rate') - measuredIn(a, 'rate'))[0];
    if (best) {
      const r = measuredIn(ours, 'rate') / measuredIn(best, 'rate');
      add(best, "ours ≥ 1.5× graphile-worker's best", judge(r >= 1.5, ratio(r), ours, best));
    }
    add(ours, 'exactly once (n posts, n distinct)', {
      met: allVerified(ours), measured: `${ours.runs.length - failedRuns(ours).length}/${ours.runs.length} runs verified`,
    });
  }

  // W2: p50 ≤ 0.5 ms, p99 ≤ 2 ms, and no worse than the best peer (the one with the lowest p50).
  for (const ours of results.rows.filter((r) => r.workload === 'W2' && r.key === OURS)) {
    const p50 = measuredIn(ours, 'p50');
    const p99 = measuredIn(ours, 'p99');
    add(ours, 'p50 ≤ 0.5 ms', judge(p50 <= 0.5, `${fmt(p50)} ms`, ours));
    add(ours, 'p99 ≤ 2 ms', judge(p99 <= 2, `${fmt(p99)} ms`, ours));
    // Diagnostic rows are never the peer; a peer with a failed run is taken only when every one has
    // one, and then judge() says so (the target is shown NOT MET, never left out).
    const byP50 = (a: Row, b: Row) => measuredIn(a, 'p50') - measuredIn(b, 'p50');
    const peers = groupOf(results, ours).filter((r) => r !== ours && !r.note);
    const peer = peers.filter(allVerified).sort(byP50)[0] ?? peers.sort(byP50)[0];
    if (peer) {
      const ok = p50 <= measuredIn(peer, 'p50') && p99 <= measuredIn(peer, 'p99');
      add(peer, 'ours p50 and p99 ≤ the best peer\'s', judge(ok, `p50 ${fmt(p50)} vs ${fmt(measuredIn(peer, 'p50'))}, p99 ${fmt(p99)} vs ${fmt(measuredIn(peer, 'p99'))} ms`, ours, peer));
    }
  }

  // W3a: with the channel ≤ 1.25× without; ≥ 50× faster than the add_job row trigger.
  for (const ours of results.rows.filter((r) => r.workload === 'W3a' && r.key === OURS)) {
    const ms = measuredIn(ours, 'ms');
    const plain = results.find('W3a', ours.case, 'plain');
    if (plain) {
      const r = ms / measuredIn(plain, 'ms');
      add(plain, 'ours ≤ 1.25× this (time)', judge(r <= 1.25, ratio(r), ours, plain));
    }
    const addJob = results.find('W3a', ours.case, 'graphile-add-job');
    if (addJob) {
      const r = measuredIn(addJob, 'ms') / ms;
      add(addJob, 'ours ≥ 50× faster', judge(r >= 50, `${ratio(r)} faster`, ours, addJob));
    }
  }

  // W3b: ≥ 80% of the commit rate without the channel with no listener running (producers skip
  // the NOTIFY: nobody would hear it); ≥ 60% while listeners drain on the same cores (the drain
  // lock spares producers the NOTIFY, but the listeners also take CPU from them).
  const W3B_MIN: Record<string, number> = { [OURS]: 0.8, 'ours-listening': 0.6 };
  for (const row of results.rows.filter((r) => r.workload === 'W3b' && Object.hasOwn(W3B_MIN, r.key))) {
    const plain = results.find('W3b', row.case, 'plain');
    if (!plain) continue;
    const min = W3B_MIN[row.key]!;
    const r = measuredIn(row, 'commitsPerSec') / measuredIn(plain, 'commitsPerSec');
    add(row, `≥ ${percent(min)} of no channel`, judge(r >= min, percent(r), row, plain));
  }

  // W4: ≤ 1 statement per minute per process; CPU ≈ 0 (taken as under 1% of one core over the window).
  for (const ours of results.rows.filter((r) => r.workload === 'W4' && r.key === OURS)) {
    const perMinute = measuredIn(ours, 'statementsPerMinPerProc');
    add(ours, '≤ 1 statement/min/proc', judge(perMinute <= 1, fmt(perMinute), ours));
    const windowSeconds = Number(/(\d+(?:\.\d+)?) s$/.exec(ours.case)?.[1]);
    const cpu = measuredIn(ours, 'cpuSeconds');
    add(ours, 'CPU ≈ 0 (< 1% of a core)', judge(cpu / windowSeconds < 0.01, `${fmt(cpu)} s = ${fmt((cpu / windowSeconds) * 100)}% of a core`, ours));
  }

  // W5: peak RSS ≤ 150 MB per process and flat; throughput within 20% of W1 with 4 processes.
  for (const ours of results.rows.filter((r) => r.workload === 'W5' && r.key === OURS)) {
    const rss = measuredIn(ours, 'peakRssMb');
    add(ours, 'peak RSS ≤ 150 MB/proc', judge(rss <= 150, `${fmt(rss, 0)} MB`, ours));
    const growth = Math.max(...ours.runs.filter((run) => run.ok).map(rssGrowth));
    add(ours, 'RSS flat (second half ≤ 1.2× first half)', judge(growth <= 1.2, ratio(growth), ours));
    const w1 = results.rows.find((r) => r.workload === 'W1' && r.key === OURS && / 4 proc$/.test(r.case));
    if (w1) {
      const r = measuredIn(ours, 'rate') / measuredIn(w1, 'rate');
      add(ours, 'throughput ≥ 80% of W1 4 proc', judge(r >= 0.8, percent(r), ours, w1));
    } else {
      add(ours, 'throughput ≥ 80% of W1 4 proc', { met: null, measured: 'W1 with 4 processes not run' });
    }
  }
  // W7: ordered by row, every row's history in order, at ≥ 60% of the same workload unordered.
  for (const ours of results.rows.filter((r) => r.workload === 'W7' && r.key === OURS)) {
    const unordered = results.find('W7', ours.case, 'ours-unordered');
    add(ours, 'every row in order', judge(measuredIn(ours, 'outOfOrder') === 0, `${fmt(measuredIn(ours, 'outOfOrder'), 0)} out of order`, ours));
    if (unordered) {
      const r = measuredIn(ours, 'rate') / measuredIn(unordered, 'rate');
      add(ours, '≥ 60% of unordered', judge(r >= 0.6, percent(r), ours, unordered));
    }
  }
  // W9: the relay ≥ 80% of our onBatch drain; the whole path through JetStream (relay + inbox) at
  // ≥ our per-message listener's throughput, and its p99 ≤ 3× the listener's (same run).
  for (const relay of results.rows.filter((r) => r.workload === 'W9' && r.key.startsWith('relay-'))) {
    const batch = results.find('W9', relay.case, 'ours-batch');
    if (!batch) continue;
    const r = measuredIn(relay, 'rate') / measuredIn(batch, 'rate');
    add(relay, '≥ 80% of ours onBatch', judge(r >= 0.8, percent(r), relay, batch));
  }
  for (const path of results.rows.filter((r) => r.workload === 'W9' && r.key.startsWith('inbox-'))) {
    const listener = results.find('W9', path.case, OURS);
    if (!listener) continue;
    if (path.metric === 'rate') {
      const r = measuredIn(path, 'rate') / measuredIn(listener, 'rate');
      add(path, '≥ ours (listener, per message)', judge(r >= 1, ratio(r), path, listener));
      add(path, 'exactly once (n posts, n distinct)', { met: allVerified(path), measured: `${path.runs.length - failedRuns(path).length}/${path.runs.length} runs verified` });
    } else {
      const r = measuredIn(path, 'p99') / measuredIn(listener, 'p99');
      add(path, 'p99 ≤ 3× ours (listener)', judge(r <= 3, `${r.toFixed(2)}× (${fmt(measuredIn(path, 'p99'))} ms)`, path, listener));
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
    const r = measuredIn(shaped, 'rate') / measuredIn(empty, 'rate');
    add(shaped, '≥ 85% of the rate with nothing else stored, exactly once', judge(r >= 0.85, percent(r), shaped, empty));
    // And each claim as quick: its p99 within twice the empty table's (runs before claim timing: n/a).
    const p99 = measuredIn(shaped, 'claimP99Ms') / measuredIn(empty, 'claimP99Ms');
    if (Number.isFinite(p99)) add(shaped, 'claim p99 ≤ 2× with nothing else stored', judge(p99 <= 2, `${p99.toFixed(2)}× (${fmt(measuredIn(shaped, 'claimP99Ms'))} ms)`, shaped, empty));
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
