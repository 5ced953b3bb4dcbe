/**
 * docs/cli.md's exit-code table, row by row: each (command, case) is run as a process and must
 * exit as the table says. A row without a scenario here, or a scenario without its row, fails,
 * so the table and the command cannot part.
 */
import { expect } from 'chai';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { ROOT, pgpubsubCli, shown } from '../dev/processes';
import { type TestDatabase, emptyDatabase, testDatabase } from './support/hooks';

const EXAMPLE_APP = path.join(ROOT, 'test', 'fixtures', 'example-app.ts');
const SEQUELIZE = JSON.stringify(path.join(ROOT, 'node_modules', 'sequelize'));

interface Row { command: string; case: string; exit: number }

/** The rows of docs/cli.md's table: `| \`command\` | case | exit |`. */
function tableRows(): Row[] {
  const text = fs.readFileSync(path.join(ROOT, 'docs', 'cli.md'), 'utf8');
  return [...text.matchAll(/^\| (`[^`]+`|\(any\)) \| ([^|]+?) \| (\d) \|$/gm)]
    .map(([, command, what, exit]) => ({ command: command.replace(/`/g, ''), case: what, exit: Number(exit) }));
}

describe('pgpubsub exit codes (docs/cli.md)', function () {
  this.timeout(180_000);
  let db: TestDatabase;
  let empty: TestDatabase;
  let dir: string;

  before(async () => {
    db = await testDatabase('cli exit table');
    empty = await emptyDatabase('cli exit table empty');
    dir = fs.mkdtempSync(path.join(os.tmpdir(), 'pgpubsub-exit-table-'));
    // Only the authors channel: the example app's other installed triggers are orphans (drift).
    fs.writeFileSync(path.join(dir, 'authors-only.js'), `const { Sequelize, DataTypes } = require(${SEQUELIZE});
const sequelize = new Sequelize(process.env.DATABASE_URL, { logging: false });
sequelize.define('Author', { name: DataTypes.TEXT }, { tableName: 'authors', pgpubsub: { channels: { author_created: { events: ['insert'] } } } });
module.exports = { sequelize };\n`);
    fs.writeFileSync(path.join(dir, 'bad-channel.js'), `const { Sequelize, DataTypes } = require(${SEQUELIZE});
const sequelize = new Sequelize(process.env.DATABASE_URL, { logging: false });
sequelize.define('Gadget', { id: { type: DataTypes.INTEGER, primaryKey: true } }, { tableName: 'gadgets', pgpubsub: { channels: { gadget_wiped: { events: ['upsert'] } } } });
module.exports = { sequelize };\n`);
  });

  after(async () => {
    fs.rmSync(dir, { recursive: true, force: true });
    await db?.drop();
    await empty?.drop();
  });

  it('exits as the table says, for every row', async () => {
    const unreachable = new URL(db.url);
    unreachable.port = '1';
    const app = ['--app', EXAMPLE_APP];
    const [ok, noLibrary, down] = [db.url, empty.url, unreachable.toString()];
    /** Each row's run: its arguments, and the database it is pointed at. */
    const scenarios: Record<string, { args: string[]; url: string }> = {
      'status|done': { args: ['status', ...app], url: ok },
      'status|bad arguments (`--watch 0`)': { args: ['status', '--watch', '0', ...app], url: ok },
      'status|the database cannot be reached': { args: ['status', ...app], url: down },
      'status|the library is missing': { args: ['status', ...app], url: noLibrary },
      'status --url|done': { args: ['status', '--url', ok], url: ok },
      'status --url|the library is missing': { args: ['status', '--url', noLibrary], url: ok },
      'channels pause|done': { args: ['channels', 'pause', 'media_changed', ...app], url: ok },
      'channels pause|a channel nobody knows (without `--force`)': { args: ['channels', 'pause', 'nobody_knows', ...app], url: ok },
      'channels pause|the library is missing': { args: ['channels', 'pause', 'media_changed', ...app], url: noLibrary },
      'failed ls|done': { args: ['failed', 'ls', ...app], url: ok },
      'failed show|no such failed notification': { args: ['failed', 'show', '123456', ...app], url: ok },
      'failed show|bad arguments (not an id)': { args: ['failed', 'show', 'abc', ...app], url: ok },
      'failed retry|bad arguments (no selection)': { args: ['failed', 'retry', ...app], url: ok },
      'triggers ls|done': { args: ['triggers', 'ls', ...app], url: ok },
      'triggers ls|the app cannot be loaded': { args: ['triggers', 'ls', '--app', path.join(dir, 'nowhere.js')], url: ok },
      'triggers ls|a channel definition is wrong': { args: ['triggers', 'ls', '--app', path.join(dir, 'bad-channel.js')], url: ok },
      'triggers check|done': { args: ['triggers', 'check', ...app], url: ok },
      'triggers check|drift': { args: ['triggers', 'check', '--app', path.join(dir, 'authors-only.js')], url: ok },
      'triggers check|the library is missing': { args: ['triggers', 'check', ...app], url: noLibrary },
      'triggers check|the database cannot be reached': { args: ['triggers', 'check', ...app], url: down },
      'triggers sync|done': { args: ['triggers', 'sync', ...app], url: ok },
      'triggers sync|the database cannot be reached': { args: ['triggers', 'sync', ...app], url: down },
      'triggers sync|the library is missing (its triggers would fail every write)': { args: ['triggers', 'sync', ...app], url: noLibrary },
      'triggers prune|done': { args: ['triggers', 'prune', ...app], url: ok },
      'recover|done': { args: ['recover', ...app], url: ok },
      'recover|the library is missing': { args: ['recover', ...app], url: noLibrary },
      'migration:generate|done': { args: ['migration:generate', '--migrations-path', path.join(dir, 'migrations'), ...app], url: ok },
      'listen|bad arguments (`--batch-size 0`)': { args: ['listen', '--batch-size', '0', ...app], url: ok },
      'listen|the library is missing': { args: ['listen', '--worker', ...app], url: noLibrary },
      'relay|bad arguments (no `--nats`)': { args: ['relay', '--worker', ...app], url: ok },
      'relay|the library is missing': { args: ['relay', '--worker', '--nats', 'nats://127.0.0.1:1', ...app], url: noLibrary },
      'dashboard|bad arguments (a token under 8 characters)': { args: ['dashboard', '--token', 'short', ...app], url: ok },
      '(any)|an unknown command': { args: ['frobnicate'], url: ok },
    };
    const rows = tableRows();
    const keys = rows.map((row) => `${row.command}|${row.case}`);
    expect(keys.filter((key) => !(key in scenarios)), 'rows of docs/cli.md without a scenario here').to.deep.equal([]);
    expect(Object.keys(scenarios).filter((key) => !keys.includes(key)), 'scenarios without their row in docs/cli.md').to.deep.equal([]);
    for (const row of rows) {
      const { args, url } = scenarios[`${row.command}|${row.case}`];
      const result = await pgpubsubCli(args, { url, timeout: 60_000 });
      expect(result.code, `${row.command}, ${row.case}: pgpubsub ${args.join(' ')}\n${shown(result)}`).to.equal(row.exit);
    }
  });
});
