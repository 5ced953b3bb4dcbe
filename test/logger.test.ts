import { expect } from 'chai';
import { Writable } from 'node:stream';
import pino from 'pino';
import winston from 'winston';
import path from 'node:path';
import { eventually } from '../dev/eventually';
import { ROOT, spawnProcess } from '../dev/processes';
import { type Logger, consoleLogger } from '../lib';
import { toLogger } from '../lib/ops/logger';
import { registerCallbacks } from '../models/callbacks';
import { exampleAppPerTest } from './support/example-app-per-test';

describe('consoleLogger', () => {
  const capture = (format: 'pretty' | 'json') => {
    const lines: string[] = [];
    const logger = consoleLogger({ level: 'info', format, base: { worker: 2 }, stream: { write: (text: string) => lines.push(text) } });
    return { logger, lines };
  };

  it('writes JSON lines with time, level, msg, pid, the base fields and the event for programs', () => {
    const { logger, lines } = capture('json');
    logger.info('batch', { event: 'batch', processed: 3 });
    logger.debug('not written', { event: 'below-level' });
    expect(lines).to.have.length(1);
    const entry = JSON.parse(lines[0]);
    expect(entry).to.include({ level: 'info', msg: 'batch', pid: process.pid, worker: 2, event: 'batch', processed: 3 });
    expect(new Date(entry.time).toString()).to.not.equal('Invalid Date');
  });

  it('writes an error passed as err with its type, message and stack in JSON, and leaves it out of pretty lines', () => {
    const json = capture('json');
    const error = Object.assign(new Error('connection refused'), { code: 'ECONNREFUSED' });
    json.logger.warn('reconnect failed', { event: 'reconnect-failed', error: 'Error: connection refused', err: error });
    expect(JSON.parse(json.lines[0]).err).to.deep.equal({ type: 'Error', message: 'connection refused', stack: error.stack, code: 'ECONNREFUSED' });
    const pretty = capture('pretty');
    pretty.logger.warn('reconnect failed', { event: 'reconnect-failed', error: 'Error: connection refused', err: error });
    expect(pretty.lines[0]).to.match(/\] reconnect failed \{"error":"Error: connection refused"\}\n$/);
  });

  it('keeps the stack when the CLI hands its console logger to the listener (toLogger of it changes nothing), and derives error from err', () => {
    const json = capture('json');
    const error = new Error('the mail server said no');
    const logger = toLogger(json.logger);
    expect(logger).to.equal(json.logger);
    expect(toLogger(toLogger(json.logger))).to.equal(json.logger);
    logger.warn('callback failed', { event: 'callback-failed', err: error });
    expect(JSON.parse(json.lines[0])).to.deep.include({ error: 'Error: the mail server said no', err: { type: 'Error', message: 'the mail server said no', stack: error.stack } });
    const pretty = capture('pretty');
    pretty.logger.warn('reconnect failed', { event: 'reconnect-failed', err: error });
    expect(pretty.lines[0]).to.match(/\] reconnect failed \{"error":"Error: the mail server said no"\}\n$/);
  });

  it('writes a thrown non-Error (cyclic, a BigInt) as its one-line summary, never failing the line', () => {
    const json = capture('json');
    const cyclic: Record<string, unknown> = { reason: 'quota', amount: 10n };
    cyclic.self = cyclic;
    const logger = toLogger(json.logger);
    expect(() => logger.warn('callback failed', { event: 'callback-failed', err: cyclic })).not.to.throw();
    expect(JSON.parse(json.lines[0]).err).to.include({ type: 'object' }).and.to.have.property('message').that.contains('quota');
  });

  it('calls the logger\'s method of the moment: a pino level raised after listen() takes effect', () => {
    const lines: string[] = [];
    const instance = pino({ level: 'info' }, { write: (line: string) => { lines.push(line); } });
    const logger = toLogger(instance);
    logger.debug('hidden', { event: 'batch' });
    instance.level = 'debug';
    logger.debug('shown', { event: 'batch' });
    expect(lines.map((line) => (JSON.parse(line) as { msg: string }).msg)).to.deep.equal(['shown']);
  });

  it('leaves the event out of pretty lines, where the message says it to people', () => {
    const { logger, lines } = capture('pretty');
    logger.warn('reconnect failed', { event: 'reconnect-failed', attempt: 2 });
    logger.info('listening', { event: 'listening' });
    expect(lines[0]).to.match(/^\d\d:\d\d:\d\d\.\d{3} WARN  \[pid \d+ worker 2\] reconnect failed \{"attempt":2\}\n$/);
    expect(lines[1]).to.match(/\] listening\n$/);
  });

  it('prints a pretty line that cannot drive the terminal: escapes from a channel name show as \\uXXXX', () => {
    const { logger, lines } = capture('pretty');
    logger.warn("durable channel '\u001b]0;owned\u0007' has no callback", { channel: '\u001b[2J' });
    expect(lines[0]).to.contain("durable channel '\\u001b]0;owned\\u0007' has no callback {\"channel\":\"\\u001b[2J\"}").and.not.to.contain('\u0007');
  });
});

describe('loggers passed to listen() as they are', function () {
  this.timeout(30_000);

  const t = exampleAppPerTest({
    async setup() {
      registerCallbacks(t.app);
    },
  });

  /** Runs a listener with `logger` over one author; returns the JSON lines it wrote. */
  const linesOf = async (logger: Logger, lines: string[]) => {
    const listener = await t.app.sequelize.pgpubsub.listen({ logger });
    await t.app.Author.create({ name: 'logged' });
    await eventually(async () => (await t.app.Post.count()) === 1, 'the post');
    await listener.stop();
    return lines.map((line) => JSON.parse(line) as Record<string, unknown>);
  };
  const expectFields = (entries: Array<Record<string, unknown>>, message: string) => {
    expect(entries.find((entry) => entry.event === 'listening')?.channels, 'the listening line').to.include('author_created');
    expect(entries.find((entry) => entry.event === 'batch'), 'a batch line').to.include({ claimed: 1, processed: 1, failed: 0, [message]: 'batch' });
    expect(entries.find((entry) => entry.event === 'stopped'), 'the stopped line').to.include({ processed: 1 });
  };

  it('keeps every field with pino, which takes the fields first', async () => {
    const lines: string[] = [];
    const logger = pino({ level: 'debug' }, { write: (line: string) => { lines.push(line); } });
    expectFields(await linesOf(logger, lines), 'msg');
  });

  it('keeps every field with winston', async () => {
    const lines: string[] = [];
    const logger = winston.createLogger({
      level: 'debug',
      format: winston.format.json(),
      transports: [new winston.transports.Stream({ stream: new Writable({ write: (chunk, _encoding, done) => { lines.push(String(chunk)); done(); } }) })],
    });
    expectFields(await linesOf(logger, lines), 'message');
  });

  it('names every line with an event, passes errors with their stack (pino\'s err), and logs batches at debug only', async () => {
    const lines: string[] = [];
    const logger = pino({ level: 'debug' }, { write: (line: string) => { lines.push(line); } });
    t.app.sequelize.pgpubsub.on(t.app.Author, 'author_created', ({ new: author }) => {
      if (author?.name === 'poison') throw new Error('the mail server said no');
    });
    const listener = await t.app.sequelize.pgpubsub.listen({ logger });
    await t.app.Author.create({ name: 'poison' });
    await eventually(() => lines.some((line) => line.includes('"callback-failed"')), 'the failure logged');
    await listener.stop();
    const entries = lines.map((line) => JSON.parse(line) as { event?: string; level: number; err?: { type: string; message: string; stack: string } });
    expect(entries.filter((entry) => !entry.event), 'lines without an event').to.deep.equal([]);
    const failed = entries.find((entry) => entry.event === 'callback-failed')!;
    expect(failed).to.include({ channel: 'author_created', failedForGood: false, error: 'Error: the mail server said no' });
    expect(failed.err).to.include({ type: 'Error', message: 'the mail server said no' });
    expect(failed.err?.stack).to.match(/^Error: the mail server said no\n\s+at /);
    // pino's levels: 20 debug, 30 info.
    expect(entries.filter((entry) => entry.event === 'batch').map((entry) => entry.level)).to.include(20).and.not.to.include(30);
  });

  it('keeps every field with pino given to runCluster(), in the primary and in the worker', async function () {
    this.timeout(60_000);
    const script = spawnProcess(path.join(ROOT, 'test', 'fixtures', 'pino-cluster.ts'), [], { DATABASE_URL: t.db.url });
    try {
      const started = await script.event('worker-started', 30_000);
      expect(started).to.include({ pid: script.pid, worker: 1, msg: 'worker 1 started' });
      const listening = await script.event('listening', 30_000);
      expect(listening.pid).to.equal(started.workerPid);
      expect(listening.channels).to.be.an('array').that.is.not.empty;
    } finally {
      const stopped = await script.stop(15_000);
      expect(stopped.code, script.describe()).to.equal(0);
    }
    expect(script.all('exiting')).to.have.length(1);
  });

  it('refuses a logger that lacks a method, naming it', async () => {
    const refused = await t.app.sequelize.pgpubsub.listen({ logger: { info() {}, warn() {} } as never }).then(() => null, (error: Error) => error);
    expect(refused?.message).to.match(/listen\(\{ logger \}\): a logger needs .* this one lacks debug, error/);
  });
});
