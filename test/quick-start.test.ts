/**
 * The README's quick start, run as a new user runs it: its own text blocks, in order, in an empty
 * folder, with the package installed from the tarball `npm pack` writes, everything else from the
 * npm registry (sequelize, pg, sequelize-cli; npm's cache first), on a fresh database. Once as
 * written (CommonJS), once with the ESM variants. When the README and reality part, this fails.
 *
 * Each step's block is marked just before it: `<!-- step <label>[ esm]: <what> -->`, where <what> is
 * - `run`: the block's lines run in one shell, as typed into a terminal (`cd` and `export` carry
 *   over to the later blocks, as in one terminal);
 * - `write <path>`: the block is that file's text;
 * - `start`: the block runs and keeps running, as in a second terminal; at the end it gets Ctrl-C
 *   (SIGINT to its process group, as a terminal sends it) and must exit 0;
 * - `prints`: each line of the block appears, exactly once, in the started command's output lines
 *   (within a line: a log line has a time and a pid before it).
 * An `esm` step replaces the step of the same label in the ESM run (and is the only one of that label
 * when there is none). Steps run in label order (1, 1b, 2, …). Two substitutions, and only these:
 * `npm install sequelize-pgpubsub` installs the packed tarball (the package is not on the registry
 * yet, as the README says), and the README's `export DATABASE_URL=…` line names the test's database.
 */
import { expect } from 'chai';
import { type ChildProcess, spawn } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import readline from 'node:readline';
import { type TestDatabase, emptyDatabase } from './support/hooks';
import { eventually } from '../dev/eventually';
import { sql } from '../dev/postgres';
import { ROOT, run, shown } from '../dev/processes';
import { fencedBlocks } from '../dev/markdown';

export interface Step {
  label: string;
  esm: boolean;
  kind: 'run' | 'write' | 'start' | 'prints';
  path?: string;
  text: string;
  /** Where it is, for messages: `README.md:<line>`. */
  where: string;
}

const STEP = /^step\s+(\w+)(\s+esm)?:\s*(run|write\s+(\S+)|start|prints)$/;

/** The marked steps of a Markdown text, in document order. */
export function quickStartSteps(markdown: string, file = 'README.md'): Step[] {
  const steps: Step[] = [];
  for (const block of fencedBlocks(markdown, file)) {
    if (!block.marker || !('step' in block.marker)) continue;
    const found = STEP.exec(block.marker.step);
    if (!found) throw new Error(`${file}:${block.line}: a step marker reads <!-- step <label>[ esm]: run|write <path>|start|prints -->, not <!-- ${block.marker.step} -->`);
    steps.push({
      label: found[1],
      esm: Boolean(found[2]),
      kind: found[3].split(/\s/)[0] as Step['kind'],
      path: found[4],
      text: block.text,
      where: `${file}:${block.line}`,
    });
  }
  return steps;
}

/** The steps of one flavour, in label order: CommonJS takes the plain ones; ESM an esm step over a plain one of its label. */
export function flavour(steps: readonly Step[], esm: boolean): Step[] {
  const byLabel = new Map<string, Step>();
  for (const step of steps) {
    if (step.esm && !esm) continue;
    if (!step.esm && byLabel.get(step.label)?.esm) continue;
    byLabel.set(step.label, step);
  }
  return [...byLabel.values()].sort((a, b) => a.label.localeCompare(b.label, 'en', { numeric: true }));
}

const TARBALL_INSTALL = /\bnpm install sequelize-pgpubsub\b/;
const DATABASE_URL_LINE = /^export DATABASE_URL=\S+/m;

describe('the README quick start, as written, from the packed tarball', function () {
  this.timeout(240_000);
  const readme = fs.readFileSync(path.join(ROOT, 'README.md'), 'utf8');
  const steps = quickStartSteps(readme);
  let tmp: string;
  let tarball: string;
  const dbs: TestDatabase[] = [];
  const started: ChildProcess[] = [];

  before(async function () {
    this.timeout(180_000);
    tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'pgpubsub-quick-start-'));
    const packed = await run('npm', ['pack', '--json', '--pack-destination', tmp], { cwd: ROOT, timeout: 150_000 });
    expect(packed.code, shown(packed)).to.equal(0);
    tarball = path.join(tmp, (JSON.parse(packed.stdout.slice(packed.stdout.indexOf('['))) as Array<{ filename: string }>)[0].filename);
    expect(fs.existsSync(tarball), tarball).to.equal(true);
  });

  afterEach(async () => {
    for (const child of started.splice(0)) {
      if (child.exitCode === null && child.signalCode === null) process.kill(-child.pid!, 'SIGKILL');
    }
    for (const db of dbs.splice(0)) await db.drop();
  });

  after(() => {
    if (tmp) fs.rmSync(tmp, { recursive: true, force: true });
  });

  it('has the steps: install, config, model, table migration, migrate, listen, insert, the output; and their ESM variants', () => {
    const kinds = (list: Step[]) => list.map((step) => `${step.label} ${step.kind}${step.path ? ` ${step.path}` : ''}`);
    expect(kinds(flavour(steps, false))).to.deep.equal([
      '1 run', '2 write config/config.json', '3 write models/index.js', '4 write migrations/20260101000000-create-authors.js',
      '5 run', '6 start', '6b prints', '7 run', '8 prints',
    ]);
    expect(flavour(steps, true).filter((step) => step.esm).map((step) => step.label)).to.deep.equal(['1b', '3', '4', '7']);
    const all = steps.map((step) => step.text).join('\n');
    expect(all, 'the install the test maps to the tarball').to.match(TARBALL_INSTALL);
    expect(all, 'the line the test points at its database').to.match(DATABASE_URL_LINE);
  });

  for (const esm of [false, true]) {
    it(`runs as written${esm ? ' in an ESM project ("type": "module")' : ' (CommonJS)'}: the callback prints once for the inserted row`, async () => {
      const db = await emptyDatabase(`quick start ${esm ? 'esm' : 'cjs'}`);
      dbs.push(db);
      const home = fs.mkdtempSync(path.join(tmp, esm ? 'esm-' : 'cjs-'));
      const state = path.join(home, '.session');
      fs.mkdirSync(state);
      // One terminal's session: where it is and what it exported, carried from block to block.
      fs.writeFileSync(path.join(state, 'env'), '');
      fs.writeFileSync(path.join(state, 'dir'), home);
      const env = {
        PATH: `${path.dirname(process.execPath)}${path.delimiter}${process.env.PATH ?? ''}`,
        HOME: process.env.HOME ?? os.homedir(),
        // npm's cache first (npm ci filled it with these packages), no audit or fund requests.
        npm_config_prefer_offline: 'true', npm_config_audit: 'false', npm_config_fund: 'false', npm_config_update_notifier: 'false',
      };
      const script = (step: Step) => {
        const text = step.text.replace(TARBALL_INSTALL, `npm install ${tarball}`).replace(DATABASE_URL_LINE, `export DATABASE_URL=${db.url}`);
        return `set -euo pipefail\nsource ${state}/env\ncd "$(cat ${state}/dir)"\n${text}\n`;
      };
      const here = () => fs.readFileSync(path.join(state, 'dir'), 'utf8').trim();
      let listener: { child: ChildProcess; lines: string[]; step: Step } | null = null;

      for (const step of flavour(steps, esm)) {
        const where = `step ${step.label} (${step.where})`;
        if (step.kind === 'write') {
          fs.mkdirSync(path.dirname(path.join(here(), step.path!)), { recursive: true });
          fs.writeFileSync(path.join(here(), step.path!), `${step.text}\n`);
        } else if (step.kind === 'run') {
          const done = await run('bash', ['-c', `${script(step)}pwd > ${state}/dir\nexport -p > ${state}/env\n`], { cwd: home, env, timeout: 150_000 });
          expect(done.code, `${where}: ${shown(done)}`).to.equal(0);
        } else if (step.kind === 'start') {
          // Its own process group, as a terminal's foreground job: Ctrl-C reaches every process of it.
          const child = spawn('bash', ['-c', script(step)], { cwd: home, env, detached: true, stdio: ['ignore', 'pipe', 'pipe'] });
          started.push(child);
          const lines: string[] = [];
          for (const stream of [child.stdout!, child.stderr!]) readline.createInterface({ input: stream }).on('line', (line) => lines.push(line));
          listener = { child, lines, step };
        } else {
          expect(listener, `${where}: a "prints" step needs a started command before it`).to.not.equal(null);
          const { lines } = listener!;
          const wanted = step.text.split('\n').filter((line) => line.trim() !== '');
          const seen = (line: string) => lines.filter((text) => text.includes(line));
          await eventually(() => wanted.every((line) => seen(line).length > 0), () => `${where}: ${JSON.stringify(wanted)} in the output of step ${listener!.step.label}:\n${lines.join('\n')}`, 30_000);
          for (const line of wanted) expect(seen(line), `${where}: "${line}" printed once`).to.have.length(1);
        }
      }
      expect(listener, 'the quick start starts a listener').to.not.equal(null);
      const { child, lines } = listener!;
      const closed = new Promise<void>((resolve) => child.once('close', () => resolve()));
      process.kill(-child.pid!, 'SIGINT');
      const outcome = await Promise.race([closed.then(() => 'closed'), new Promise<'hung'>((resolve) => setTimeout(() => resolve('hung'), 20_000))]);
      expect(outcome, `step ${listener!.step.label} after Ctrl-C:\n${lines.join('\n')}`).to.equal('closed');
      // npm exec itself ends by the signal it forwarded; what matters is that the listener stopped cleanly, and nothing is left.
      expect(lines.filter((line) => line.includes('all workers stopped; exiting {"exitCode":0}')), lines.join('\n')).to.have.length(1);
      expect(() => process.kill(-child.pid!, 0), 'a process of the started group is still running').to.throw(/ESRCH/);
      expect(await sql(db.url, 'SELECT id, channel FROM pgpubsub.notification'), 'notifications left stored').to.deep.equal([]);
      if (esm) expect(fs.readdirSync(path.join(here(), 'migrations')).filter((file) => file.includes('-pgpubsub-')).every((file) => file.endsWith('.cjs'))).to.equal(true);
    });
  }
});
