/**
 * The benchmark's judge (bench/report.ts): the project's targets, judged on one run's paired
 * ratios (run i of ours against run i of the peer, the median of those). Fed rows shaped as `npm run bench` makes them, with figures chosen either side of each
 * target, so that a target judged on an old threshold (W3b's 70%, W3a's 3×, W2's 1.5 ms) fails here.
 */
import { expect } from 'chai';
import { type TargetVerdict, evaluateTargets } from '../bench/report';
import { Results, type Row } from '../bench/results';

function addRow(results: Results, spec: Omit<Row, 'runs' | 'figures' | 'better'> & { better?: Row['better'] }, ...runs: Array<Record<string, number>>): void {
  const row = results.row({ better: 'higher', figures: [{ name: spec.metric, unit: spec.metric }], ...spec });
  for (const values of runs) row.runs.push({ ok: true, values });
}

const verdict = (verdicts: TargetVerdict[], target: string) => {
  const found = verdicts.filter((v) => v.target === target);
  expect(found, `one verdict '${target}' among ${JSON.stringify(verdicts.map((v) => v.target))}`).to.have.length(1);
  return found[0]!;
};

describe('the benchmark judge (bench/report.ts)', () => {
  it('judges W3b at 70% of the plain commit rate with no listener, and the rate while listeners drain not at all', () => {
    const results = new Results();
    const w3b = (key: string, commitsPerSec: number) => addRow(results, { workload: 'W3b', case: '8 clients, 10 s', system: key, key, metric: 'commitsPerSec' }, { commitsPerSec });
    w3b('plain', 10_000);
    w3b('ours', 7_100); // 71%: not met under the old 80%, met under 70%
    w3b('ours-listening', 3_000);
    const verdicts = evaluateTargets(results);
    expect(verdict(verdicts, '≥ 70% of no channel')).to.include({ key: 'ours', met: true, measured: '71%' });
    expect(verdicts.filter((v) => v.key === 'ours-listening')).to.deep.equal([]);
  });

  it('judges on paired ratios, run by run, and shows their range: a peer that was fast only while ours was slow is no loss', () => {
    const results = new Results();
    const w1 = (key: string, ...rates: number[]) => addRow(results, { workload: 'W1', case: '20000 msgs, 2 proc', system: key, key, metric: 'rate' }, ...rates.map((rate) => ({ rate })));
    // The machine was slow in run 2 and fast in run 3 for both. Medians: 4,000 ÷ 4,800 = 83% (NOT
    // MET); run by run: 4,000/4,400 = 91%, 2,000/2,200 = 91%, 5,000/5,500 = 91% (MET).
    w1('ours', 4_000, 2_000, 5_000);
    w1('ceiling-sequelize', 4_400, 2_200, 5_500);
    // ours-query against pg-boss 12 (1.25×), graphile-worker 0.18 localQueue (2×) and the plain ceiling (85%).
    w1('ours-query', 6_000, 3_000, 7_000);
    w1('pgboss12', 5_000, 2_000, 5_000); // 1.20×, 1.50×, 1.40× → 1.40×
    w1('graphile-localqueue-018', 3_100, 1_400, 3_600); // 1.94×, 2.14×, 1.94× → 1.94×
    w1('ceiling', 7_000, 3_400, 8_000); // 86%, 88%, 88% → 88%
    const verdicts = evaluateTargets(results);
    expect(verdict(verdicts, 'ours with sequelize.query ≥ 90% of this')).to.include({ key: 'ceiling-sequelize', met: true, measured: '91%' });
    expect(verdict(verdicts, 'ours with context.query ≥ 1.25× this')).to.include({ key: 'pgboss12', met: true, measured: '1.40× (1.20×–1.50×)' });
    expect(verdict(verdicts, 'ours with context.query ≥ 2× this')).to.include({ key: 'graphile-localqueue-018', met: false, measured: '1.94× (1.94×–2.14×)' });
    expect(verdict(verdicts, 'ours with context.query ≥ 85% of this')).to.include({ key: 'ceiling', met: true, measured: '88% (86%–88%)' });
    expect(verdicts.filter((v) => v.target === 'exactly once (n posts, n distinct)').map((v) => v.key)).to.deep.equal(['ours', 'ours-query']);
  });

  it("judges each W8 shape at 85% of the empty table's rate and a claim p99 within twice its, and no p99 where a run had none", () => {
    const results = new Results();
    const w8 = (key: string, c: string, values: Record<string, number>) => addRow(results, { workload: 'W8', case: c, system: key, key, metric: 'rate' }, values);
    w8('ours', 'beside', { rate: 1000, claimP99Ms: 4 });
    w8('ours-paused', 'beside', { rate: 900, claimP99Ms: 8.4 }); // 90%, 2.10×
    w8('ours', 'held', { rate: 1000 });
    w8('ours-held', 'held', { rate: 800 }); // a run from before claim timing: rate only
    const verdicts = evaluateTargets(results);
    const p99 = verdicts.filter((v) => v.target === 'claim p99 ≤ 2× with nothing else stored');
    expect(p99).to.have.length(1);
    expect(p99[0]).to.include({ key: 'ours-paused', met: false, measured: '2.10× (8.40 ms)' });
    const rates = verdicts.filter((v) => v.target === '≥ 85% of the rate with nothing else stored, exactly once');
    expect(rates.map((v) => [v.key, v.met, v.measured])).to.deep.equal([['ours-paused', true, '90%'], ['ours-held', false, '80%']]);
  });

  it('judges W3a at 1.25× the plain bulk insert, and 30× faster than add_job', () => {
    const results = new Results();
    const w3a = (key: string, ms: number) => addRow(results, { workload: 'W3a', case: 'bulkCreate 20000 rows', system: key, key, metric: 'ms', better: 'lower' }, { ms });
    w3a('plain', 300);
    w3a('ours', 390); // 1.3×: met under the old 3×
    w3a('graphile-add-job', 12_000); // 31×: not met under the old 50×
    const verdicts = evaluateTargets(results);
    expect(verdict(verdicts, 'ours ≤ 1.25× this (time)')).to.include({ key: 'plain', met: false, measured: '1.30×' });
    expect(verdict(verdicts, 'ours ≥ 30× faster')).to.include({ key: 'graphile-add-job', met: true });
  });

  it("judges W2 at p50 ≤ 0.8 ms, and ours' p50 and p99 against every peer's", () => {
    const results = new Results();
    const w2 = (key: string, p50: number, p99: number) => addRow(results, { workload: 'W2', case: '100 inserts/s, 30 s, 1 proc', system: key, key, metric: 'p50', better: 'lower' }, { p50, p99 });
    w2('ours', 0.7, 5.45);
    w2('graphile-localqueue', 0.9, 6);
    w2('graphile', 1.2, 5.05); // a higher p50 but the lower p99: ours must beat both
    // A diagnostic row is never a peer, however fast.
    addRow(results, { workload: 'W2', case: '100 inserts/s, 30 s, 1 proc', system: 'probe', key: 'probe', metric: 'p50', better: 'lower', note: 'diagnostic' }, { p50: 0.1, p99: 0.2 });
    const verdicts = evaluateTargets(results);
    expect(verdict(verdicts, 'p50 ≤ 0.8 ms')).to.include({ met: true, measured: '0.70 ms' });
    const against = verdicts.filter((v) => /^ours p(50|99) ≤ this$/.test(v.target)).map((v) => [v.key, v.target, v.met]);
    expect(against).to.deep.equal([
      ['graphile-localqueue', 'ours p50 ≤ this', true], ['graphile-localqueue', 'ours p99 ≤ this', true],
      ['graphile', 'ours p50 ≤ this', true], ['graphile', 'ours p99 ≤ this', false],
    ]);
  });

  it('shows W2 against its peer as NOT MET, naming the failed runs, when every peer had one', () => {
    const results = new Results();
    addRow(results, { workload: 'W2', case: '100 inserts/s, 5 s, 1 proc', system: 'ours', key: 'ours', metric: 'p50', better: 'lower' }, { p50: 0.4, p99: 1.5 });
    const peer = results.row({ workload: 'W2', case: '100 inserts/s, 5 s, 1 proc', system: 'graphile-worker localQueue 500', key: 'graphile-localqueue', metric: 'p50', better: 'lower', figures: [] });
    peer.runs.push({ ok: true, values: { p50: 0.9, p99: 3 } }, { ok: false, values: {}, error: 'expected 500 posts, found 499' });
    expect(verdict(evaluateTargets(results), 'ours p99 ≤ this')).to.include({ met: false })
      .and.to.have.property('measured').that.contains('failed runs: graphile-worker localQueue 500');
  });

  it("judges W6 against graphile-worker's best setting, and ours at each of graphile's concurrencies against graphile's best there", () => {
    const results = new Results();
    const w6 = (key: string, rate: number) => addRow(results, { workload: 'W6', case: '5000 msgs, 20 ms each, 2 proc', system: key, key, metric: 'rate' }, { rate });
    w6('ours', 3000);
    w6('ours-cc10', 800);
    w6('ours-cc50', 1900);
    w6('graphile-c10', 755);
    w6('graphile-c50', 1012);
    w6('graphile-lq-c10', 850); // localQueue is graphile's best at 10: ours-cc10 must match it
    w6('graphile-lq-c50', 1800); // and its best overall
    w6('pgboss12-io', 2500);
    const verdicts = evaluateTargets(results);
    expect(verdict(verdicts, "ours ≥ 1.5× graphile-worker's best")).to.include({ key: 'graphile-lq-c50', met: true, measured: '1.67×' });
    expect(verdict(verdicts, 'ours at concurrency 10 ≥ this')).to.include({ key: 'graphile-lq-c10', met: false, measured: '0.94×' });
    expect(verdict(verdicts, 'ours at concurrency 50 ≥ this')).to.include({ key: 'graphile-lq-c50', met: true, measured: '1.06×' });
  });

  it('credits no target resting on a run that failed its verification', () => {
    const results = new Results();
    addRow(results, { workload: 'W3b', case: '8 clients, 10 s', system: 'plain', key: 'plain', metric: 'commitsPerSec' }, { commitsPerSec: 10_000 });
    const ours = results.row({ workload: 'W3b', case: '8 clients, 10 s', system: 'ours', key: 'ours', metric: 'commitsPerSec', better: 'higher', figures: [] });
    ours.runs.push({ ok: false, values: {}, error: 'expected 10 enqueued, found 9' });
    expect(verdict(evaluateTargets(results), '≥ 70% of no channel')).to.include({ met: false, measured: 'no verified run' });
  });
});
