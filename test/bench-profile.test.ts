/**
 * `npm run bench:profile` (bench/profile.ts; bench/results/HISTORY.md, "Where the time goes"): a
 * small drain on the test server, profiled, as its documentation shows it; and the harness's run(),
 * which the slow child processes of these tests rely on to say where they hung.
 */
import { expect } from 'chai';
import path from 'node:path';
import { server } from './support/hooks';
import { ROOT, run, shown } from '../dev/processes';

const BOOTSTRAP = path.join(ROOT, 'bench', 'bootstrap.js');
const profile = (args: string[]) => run(process.execPath, [BOOTSTRAP, '--profile', ...args], { url: server().url, timeout: 170_000 });

describe('the harness: run()', () => {
  it('fails a run its timeout killed, saying so and showing what it printed', async () => {
    const hung = run(process.execPath, ['-e', "console.log('started'); setTimeout(() => undefined, 60_000)"], { timeout: 500 });
    const error = await hung.then(() => null, (e: unknown) => e as Error);
    expect(error?.message).to.match(/did not finish within 500 ms \(killed with SIGTERM\)/).and.to.contain('--- stdout\nstarted');
  });
});

describe('bench:profile', function () {
  // The first run installs the benchmark's own dependencies (npm ci --prefix bench).
  this.timeout(180_000);

  it('says how it is used, and refuses an unknown system naming the known ones', async () => {
    const help = await profile(['--help']);
    expect(help.code, shown(help)).to.equal(0);
    expect(help.stdout).to.contain('--processes').and.to.contain('--perf').and.to.contain('--warmup').and.to.contain('ours-node22');
    const unknown = await profile(['--system', 'nope']);
    expect(unknown.code, shown(unknown)).to.equal(1);
    expect(unknown.stderr).to.contain("unknown system 'nope'").and.to.contain('ceiling-sequelize');
  });

  it('profiles a drain of the compiled library: its rate, where the workers\' CPU went, what the sessions did', async () => {
    const result = await profile(['--n', '1000', '--warmup', '200', '--top', '40']);
    expect(result.code, shown(result)).to.equal(0);
    expect(result.stdout).to.match(/^sequelize-pgpubsub, 1 process\(es\), 1000 messages: \d+ msg\/s/m);
    expect(result.stdout).to.match(/^ +[\d.]+% +\d+ ms {2}library$/m);
    // The workers run dist/, the build users run, not lib/ through tsx.
    expect(result.stdout).to.match(/ dist\/[\w/-]+\.js:\d+$/m).and.not.to.match(/ lib\/[\w/-]+\.ts:\d+$/m);
    expect(result.stdout).to.match(/pgpubsub-listener: idle/);
  });
});
