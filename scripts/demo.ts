/**
 * The live demo: several listener processes share a bulk insert, each notification processed
 * exactly once. `npm run demo` (options: --authors N, --processes N, --slow-ms N).
 *
 * With DATABASE_URL unset it starts an embedded PostgreSQL; with it set, it creates a scratch
 * database on that server. Either way it migrates with sequelize-cli, starts
 * `pgpubsub listen --processes N`, bulk-inserts the authors in one statement, shows the posts
 * appearing and which process made how many, verifies one post per author, and shuts down.
 */
import { type ChildProcess, execFile, spawn } from 'node:child_process';
import path from 'node:path';
import readline from 'node:readline';
import { promisify } from 'node:util';
import { Command, InvalidArgumentError } from 'commander';
import { QueryTypes } from 'sequelize';
import { openApp } from '../test/support/app';
import { createEmptyDatabase, dropDatabase, startPostgres } from '../test/support/postgres';

const ROOT = path.resolve(__dirname, '..');
const run = promisify(execFile);

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
  const name = `pgpubsub_demo_${process.pid}`;
  const url = await createEmptyDatabase(server.url, name);
  let listener: ChildProcess | undefined;
  const app = openApp(url);
  try {
    const env = { ...process.env, DATABASE_URL: url, PGPUBSUB_SLOW_MS: String(options.slowMs) };
    say(`Created database ${name}; migrating with sequelize-cli (notification table, app tables, triggers)…`);
    await run(path.join(ROOT, 'node_modules', '.bin', 'sequelize-cli'), ['db:migrate'], { cwd: ROOT, env });

    say(`Starting: pgpubsub listen --processes ${options.processes}`);
    listener = spawn(process.execPath, [path.join(ROOT, 'bin', 'pgpubsub.js'), 'listen', '--processes', String(options.processes), '--batch-size', '20', '--log-format', 'json'], {
      cwd: ROOT, env, stdio: ['ignore', 'pipe', 'inherit'],
    });
    const byWorker = new Map<number, number>();
    let listening = 0;
    const ready = new Promise<void>((resolve, reject) => {
      listener!.once('exit', (code) => reject(new Error(`the listener exited early with code ${code}`)));
      readline.createInterface({ input: listener!.stdout! }).on('line', (line) => {
        let entry: { msg?: string; worker?: number; processed?: number; level?: string };
        try {
          entry = JSON.parse(line);
        } catch {
          return;
        }
        if (entry.msg === 'listening' && ++listening === options.processes) resolve();
        if (entry.msg === 'batch' && entry.worker) byWorker.set(entry.worker, (byWorker.get(entry.worker) ?? 0) + (entry.processed ?? 0));
        if (entry.level === 'warn' || entry.level === 'error') say(`  listener ${entry.level}: ${entry.msg}`);
      });
    });
    await ready;
    say(`${options.processes} listener processes are listening.\n`);

    const started = Date.now();
    await app.Author.bulkCreate(Array.from({ length: options.authors }, (_, i) => ({ name: `Author ${i + 1}` })));
    say(`Inserted ${options.authors} authors in one statement; each gets a first post from whichever process claims it.`);

    const tty = process.stdout.isTTY;
    let posts = 0;
    let lastShown = '';
    for (;;) {
      posts = await app.Post.count();
      const shares = [...byWorker.entries()].sort(([a], [b]) => a - b).map(([worker, n]) => `worker ${worker}: ${n}`).join('  ');
      const width = 30;
      const bar = '#'.repeat(Math.round((posts / Math.max(1, options.authors)) * width)).padEnd(width, '.');
      const line = `  [${bar}] ${String(posts).padStart(String(options.authors).length)}/${options.authors} posts  ${shares}`;
      if (tty) process.stdout.write(`\r${line}`);
      else if (line !== lastShown) say(line);
      lastShown = line;
      const [{ left }] = await app.sequelize.query<{ left: number }>('SELECT count(*)::int AS left FROM pgpubsub_notification', { type: QueryTypes.SELECT });
      if (posts >= options.authors && left === 0) break;
      if (Date.now() - started > 120_000) throw new Error(`gave up after 120 s with ${posts} of ${options.authors} posts`);
      await new Promise((resolve) => setTimeout(resolve, 200));
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
    say(`\nProcessed ${check.posts} notifications in ${seconds.toFixed(1)} s over ${byWorker.size} process(es):`);
    for (const [worker, n] of [...byWorker.entries()].sort(([a], [b]) => a - b)) say(`  worker ${worker}: ${n}`);
    const ok = check.authors === options.authors && check.posts === options.authors && check.distinct_authors === options.authors
      && check.without === 0 && check.duplicated === 0;
    say(ok
      ? `\nVerified: all ${check.authors} authors have exactly one post; none missing, none duplicated, no notification left.`
      : `\nVERIFICATION FAILED: ${JSON.stringify(check)}`);

    say('Stopping the listener (SIGTERM: workers finish their batch, then exit)…');
    listener.removeAllListeners('exit');
    const exited = new Promise<number | null>((resolve) => listener!.once('exit', (code) => resolve(code)));
    listener.kill('SIGTERM');
    const code = await exited;
    say(`Listener exited with code ${code}.`);
    return ok && code === 0 ? 0 : 1;
  } finally {
    if (listener && listener.exitCode === null) listener.kill('SIGKILL');
    await app.sequelize.close();
    await dropDatabase(server.url, name).catch(() => undefined);
    await server.stop();
  }
}

main().then((code) => { process.exitCode = code; }, (error: Error) => {
  process.stderr.write(`demo failed: ${error.message}\n`);
  process.exitCode = 1;
});

