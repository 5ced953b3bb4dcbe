/**
 * The live demo: several listener processes share a bulk insert, each notification processed
 * exactly once. `npm run demo` (options: --authors N, --processes N, --slow-ms N).
 *
 * With DATABASE_URL unset it starts an embedded PostgreSQL; with it set, it creates a scratch
 * database on that server. Either way it migrates with sequelize-cli, starts
 * `pgpubsub listen --processes N`, bulk-inserts the authors in one statement, shows the posts
 * appearing and which process made how many, verifies one post per author, and shuts down.
 */
import path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { Command, InvalidArgumentError } from 'commander';
import { QueryTypes } from 'sequelize';
import { GiveUp, eventually } from '../dev/eventually';
import { openApp } from '../dev/example-app';
import { createEmptyDatabase, dropDatabase, dropStaleDatabases, scratchDatabaseName, startPostgres } from '../dev/postgres';
import { type ListenProcess, SEQUELIZE_CLI, run, shown, startListen } from '../dev/processes';

function count(name: string) {
  return (value: string) => {
    const n = Number(value);
    if (!Number.isInteger(n) || n < 0) throw new InvalidArgumentError(`${name} must be a whole number, got '${value}'.`);
    return n;
  };
}

const options = new Command('demo')
  .description('Several pgpubsub listener processes share a bulk insert, each notification processed exactly once.')
  .option('--authors <n>', 'authors to insert in one statement', count('--authors'), 1000)
  .option('--processes <n>', 'listener processes', count('--processes'), 4)
  .option('--slow-ms <n>', "how long each author's callback sleeps, to make the sharing visible", count('--slow-ms'), 10)
  .parse()
  .opts<{ authors: number; processes: number; slowMs: number }>();

const say = (line: string) => process.stdout.write(`${line}\n`);

async function main(): Promise<number> {
  const server = await startPostgres();
  say(server.embedded ? `Started an embedded PostgreSQL at ${new URL(server.url).host}.` : 'Using the PostgreSQL server of DATABASE_URL.');
  await dropStaleDatabases(server.url);
  const name = scratchDatabaseName('demo');
  const url = await createEmptyDatabase(server.url, name);
  let listener: ListenProcess | undefined;
  const app = openApp(url);
  try {
    say(`Created database ${name}; migrating with sequelize-cli (notification table, app tables, triggers)…`);
    const migrated = await run(SEQUELIZE_CLI, ['db:migrate'], { url, timeout: 120_000 });
    if (migrated.code !== 0) throw new Error(`sequelize-cli db:migrate failed: ${shown(migrated)}`);

    say(`Starting: pgpubsub listen --processes ${options.processes} --app scripts/demo-app.ts`);
    listener = startListen(url, ['--processes', String(options.processes), '--batch-size', '20', '--app', path.join(__dirname, 'demo-app.ts')], { DEMO_SLOW_MS: String(options.slowMs) });
    // What the workers did, read from their JSON log lines' `event` and fields.
    const byWorker = () => listener!.processedBy('worker');
    let warned = 0;
    const showWarnings = () => {
      const lines = listener!.events.filter((e) => e.level === 'warn' || e.level === 'error');
      for (const e of lines.slice(warned)) say(`  listener ${e.level}: ${e.msg}`);
      warned = lines.length;
    };
    await eventually(() => {
      if (listener!.exit) throw new GiveUp(`the listener exited early: ${listener!.describe()}`);
      return listener!.all('worker-listening').length >= options.processes;
    }, () => `${options.processes} workers to listen: ${listener!.describe()}`, 60_000, 50);
    say(`${options.processes} listener processes are listening.\n`);

    const started = Date.now();
    await app.Author.bulkCreate(Array.from({ length: options.authors }, (_, i) => ({ name: `Author ${i + 1}` })));
    say(`Inserted ${options.authors} authors in one statement; each gets a first post from whichever process claims it.`);

    const tty = process.stdout.isTTY;
    let posts = 0;
    let lastShown = '';
    for (;;) {
      posts = await app.Post.count();
      showWarnings();
      const shares = [...byWorker().entries()].sort(([a], [b]) => a - b).map(([worker, n]) => `worker ${worker}: ${n}`).join('  ');
      const width = 30;
      const bar = '#'.repeat(Math.round((posts / Math.max(1, options.authors)) * width)).padEnd(width, '.');
      const line = `  [${bar}] ${String(posts).padStart(String(options.authors).length)}/${options.authors} posts  ${shares}`;
      if (tty) process.stdout.write(`\r${line}`);
      else if (line !== lastShown) say(line);
      lastShown = line;
      const [{ left }] = await app.sequelize.query<{ left: number }>('SELECT count(*)::int AS left FROM pgpubsub.notification', { type: QueryTypes.SELECT });
      if (posts >= options.authors && left === 0) break;
      if (Date.now() - started > 120_000) throw new Error(`gave up after 120 s with ${posts} of ${options.authors} posts`);
      if (listener.exit) throw new Error(`the listener exited early: ${listener.describe()}`);
      await sleep(200);
    }
    if (tty) say('');
    const seconds = (Date.now() - started) / 1000;

    const [check] = await app.sequelize.query<{ authors: number; posts: number; distinct_authors: number; without: number; duplicated: number }>(
      `SELECT (SELECT count(*) FROM authors)::int AS authors,
              (SELECT count(*) FROM posts)::int AS posts,
              (SELECT count(DISTINCT author_id) FROM posts)::int AS distinct_authors,
              (SELECT count(*) FROM authors a WHERE NOT EXISTS (SELECT FROM posts p WHERE p.author_id = a.id))::int AS without,
              (SELECT count(*) FROM (SELECT author_id FROM posts GROUP BY author_id HAVING count(*) > 1) d)::int AS duplicated`,
      { type: QueryTypes.SELECT },
    );
    const shares = byWorker();
    say(`\nProcessed ${check.posts} notifications in ${seconds.toFixed(1)} s over ${shares.size} process(es):`);
    for (const [worker, n] of [...shares.entries()].sort(([a], [b]) => a - b)) say(`  worker ${worker}: ${n}`);
    const ok = check.authors === options.authors && check.posts === options.authors && check.distinct_authors === options.authors
      && check.without === 0 && check.duplicated === 0;
    say(ok
      ? `\nVerified: all ${check.authors} authors have exactly one post; none missing, none duplicated, no notification left.`
      : `\nVERIFICATION FAILED: ${JSON.stringify(check)}`);

    say('Stopping the listener (SIGTERM: workers finish their batch, then exit)…');
    const { code } = await listener.stop(30_000);
    showWarnings();
    say(`Listener exited with code ${code}.`);
    return ok && code === 0 ? 0 : 1;
  } finally {
    listener?.kill('SIGKILL');
    await app.sequelize.close();
    await dropDatabase(server.url, name).catch(() => undefined);
    await server.stop();
  }
}

main().then((code) => { process.exitCode = code; }, (error: Error) => {
  process.stderr.write(`demo failed: ${error.message}\n`);
  process.exitCode = 1;
});

