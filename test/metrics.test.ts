/**
 * Metrics and probes on real ports: `pgpubsub listen --metrics-port` serving the sum of its
 * workers' figures (over IPC) with the database's gauges, /healthz and /readyz; `--worker` serving
 * its own; and sequelize.pgpubsub.metrics() for apps that call listen() themselves.
 */
import { expect } from 'chai';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { Registry } from 'prom-client';
import { ListenOptionsError } from '../lib';
import { openApp } from '../dev/example-app';
import { eventually } from '../dev/eventually';
import { sample } from '../dev/prometheus';
import { type ListenProcess, startListen } from '../dev/processes';
import { exampleAppPerTest } from './support/example-app-per-test';

async function get(port: number, path: string): Promise<{ status: number; body: string; type: string }> {
  const response = await fetch(`http://127.0.0.1:${port}${path}`);
  return { status: response.status, body: await response.text(), type: response.headers.get('content-type') ?? '' };
}

const portOf = async (listener: ListenProcess) => Number((await listener.event('http-listening', 60_000)).port);

describe('metrics and probes', function () {
  this.timeout(120_000);
  const running: ListenProcess[] = [];
  const listen = (args: string[], url = t.db.url) => {
    const started = startListen(url, args);
    running.push(started);
    return started;
  };

  const t = exampleAppPerTest({
    async cleanup() {
      for (const process of running.splice(0)) {
        process.kill('SIGKILL');
        await process.exited;
      }
    },
  });

  it('serves the workers\' figures summed, the database\'s gauges and the probes from the cluster primary', async () => {
    const listener = listen(['--processes', '2', '--metrics-port', '0', '--metrics-host', '127.0.0.1']);
    const port = await portOf(listener);
    expect((await get(port, '/healthz')).status).to.equal(200);
    await eventually(() => listener.listeningWorkers().length === 2, 'two workers to listen', 60_000);
    await eventually(async () => (await get(port, '/readyz')).status === 200, '/readyz to say ready');

    await t.app.Author.bulkCreate(Array.from({ length: 120 }, (_, i) => ({ name: `m${i}` })));
    await eventually(async () => sample((await get(port, '/metrics')).body, 'pgpubsub_processed_total', { channel: 'author_created' }) === 120, 'the 120 to count');
    const { body, type, status } = await get(port, '/metrics');
    expect(status).to.equal(200);
    expect(type).to.match(/^text\/plain; version=0\.0\.4/);
    // Summed over both workers: every message's lag and duration observed once.
    expect(sample(body, 'pgpubsub_lag_seconds_count', { channel: 'author_created' })).to.equal(120);
    expect(sample(body, 'pgpubsub_callback_duration_seconds_count', { channel: 'author_created', ok: 'true' })).to.equal(120);
    expect(sample(body, 'pgpubsub_workers', { state: 'listening' })).to.equal(2);
    expect(sample(body, 'pgpubsub_worker_restarts_total')).to.equal(0);
    // Read from the database: nothing left, both listeners alive.
    expect(sample(body, 'pgpubsub_database_up')).to.equal(1);
    expect(sample(body, 'pgpubsub_notifications', { channel: 'author_created', state: 'due' })).to.equal(0);
    expect(sample(body, 'pgpubsub_listeners_up')).to.equal(2);
    expect(sample(body, 'pgpubsub_channel_listeners', { channel: 'author_created' })).to.equal(2);

    // A worker killed: replaced and counted; its counts go with it (counters reset, as Prometheus expects of a restart).
    process.kill(listener.listeningWorkers()[0], 'SIGKILL');
    await eventually(async () => sample((await get(port, '/metrics')).body, 'pgpubsub_worker_restarts_total') === 1, 'the restart to count', 30_000);
    expect((await get(port, '/nope')).status).to.equal(404);
    expect((await fetch(`http://127.0.0.1:${port}/metrics`, { method: 'POST' })).status).to.equal(405);
    listener.kill('SIGTERM');
    expect((await listener.exited).code).to.equal(0);
  });

  it('says not ready while no worker can listen, with the database unreachable', async () => {
    const listener = listen(['--metrics-port', '0', '--metrics-host', '127.0.0.1'], 'postgres://postgres@127.0.0.1:1/nowhere');
    const port = await portOf(listener);
    await eventually(() => listener.all('unreachable').length > 0, 'the worker to retry its connection', 30_000);
    expect(await get(port, '/healthz')).to.include({ status: 200 });
    const ready = await get(port, '/readyz');
    expect(ready).to.include({ status: 503 });
    expect(ready.body).to.contain('no worker is listening');
    const metrics = await get(port, '/metrics');
    expect(sample(metrics.body, 'pgpubsub_database_up')).to.equal(0);
    expect(sample(metrics.body, 'pgpubsub_workers', { state: 'listening' })).to.equal(0);
    listener.kill('SIGTERM');
    await listener.exited;
  });

  it('serves one listener\'s figures and probes with --worker', async () => {
    // Loopback by default: the endpoint has no auth.
    const listener = listen(['--worker', '--metrics-port', '0']);
    expect((await listener.event('http-listening', 60_000)).host).to.equal('127.0.0.1');
    const port = await portOf(listener);
    await listener.event('listening');
    await eventually(async () => (await get(port, '/readyz')).status === 200, '/readyz to say ready');
    await t.app.Author.create({ name: 'one' });
    await eventually(async () => sample((await get(port, '/metrics')).body, 'pgpubsub_processed_total', { channel: 'author_created' }) === 1, 'the one to count');
    expect(sample((await get(port, '/metrics')).body, 'pgpubsub_listeners_up')).to.equal(1);
    listener.kill('SIGTERM');
    expect((await listener.exited).code).to.equal(0);
  });

  it('gives apps that listen themselves the same figures, in a registry of their own or one they pass', async () => {
    t.app.sequelize.pgpubsub.on(t.app.Author, 'author_created', () => undefined);
    const registry = new Registry();
    const metrics = t.app.sequelize.pgpubsub.metrics({ registry });
    expect((await metrics.ready()).ready).to.equal(false);
    const listener = await t.app.sequelize.pgpubsub.listen();
    const stop = metrics.observe(listener);
    const server = http.createServer(metrics.handler()).listen(0, '127.0.0.1');
    await new Promise((resolve) => server.once('listening', resolve));
    const { port } = server.address() as AddressInfo;
    try {
      expect((await get(port, '/readyz')).status).to.equal(200);
      await t.app.Author.bulkCreate([{ name: 'a' }, { name: 'b' }]);
      await eventually(async () => sample(await registry.metrics(), 'pgpubsub_processed_total') === 2, 'the two to count');
      expect(sample((await get(port, '/metrics')).body, 'pgpubsub_lag_seconds_count', { channel: 'author_created' })).to.equal(2);
      // Stopped observing: the listener's work no longer counts, and /readyz has nothing to wait for.
      stop();
      await t.app.Author.create({ name: 'c' });
      await eventually(async () => (await t.app.sequelize.pgpubsub.admin.status()).channels.every((c) => c.due === 0), 'the third to be processed');
      expect(sample(await metrics.text(), 'pgpubsub_processed_total')).to.equal(2);
      expect((await get(port, '/readyz')).status).to.equal(503);
    } finally {
      server.close();
      await listener.stop();
    }
  });

  describe('a listener that cannot write', () => {
    // Every delete of a processed notification fails, as on a role whose writes are refused.
    const refuseDeletes = () => t.app.sequelize.query(`
      CREATE OR REPLACE FUNCTION refuse_writes() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN RAISE EXCEPTION 'cannot execute DELETE in a read-only transaction'; END $$;
      CREATE TRIGGER refuse_writes BEFORE DELETE ON pgpubsub.notification FOR EACH STATEMENT EXECUTE FUNCTION refuse_writes()`);
    const allowDeletes = () => t.app.sequelize.query('DROP TRIGGER refuse_writes ON pgpubsub.notification');

    it('is refused at start on read-only connections, naming the setting', async () => {
      t.app.sequelize.pgpubsub.on(t.app.Author, 'author_created', () => undefined);
      const { database } = t.app.sequelize.config;
      await t.app.sequelize.query(`ALTER DATABASE "${database}" SET default_transaction_read_only = on`);
      const readOnly = openApp(t.db.url);
      try {
        readOnly.sequelize.pgpubsub.on(readOnly.Author, 'author_created', () => undefined);
        const error = await readOnly.sequelize.pgpubsub.listen().then(() => null, (e: unknown) => e);
        expect(error).to.be.instanceOf(ListenOptionsError).and.to.have.property('code', 'PGPUBSUB_READ_ONLY');
        expect((error as Error).message).to.contain('default_transaction_read_only is on for this role or database');
      } finally {
        await t.app.sequelize.query(`ALTER DATABASE "${database}" RESET default_transaction_read_only`);
        await readOnly.sequelize.close();
      }
    });

    it('says not ready once its drains fail in a row, in the process and from the cluster primary, and ready again after', async () => {
      t.app.sequelize.pgpubsub.on(t.app.Author, 'author_created', () => undefined);
      const metrics = t.app.sequelize.pgpubsub.metrics();
      const errors: string[] = [];
      const own = await t.app.sequelize.pgpubsub.listen({ logger: { debug() {}, info() {}, warn() {}, error: (message) => { errors.push(message); } } });
      const stop = metrics.observe(own);
      try {
        expect((await metrics.ready()).ready).to.equal(true);
        await refuseDeletes();
        await t.app.Author.create({ name: 'never deleted' });
        await eventually(async () => !(await metrics.ready()).ready, 'the listener to say it is not ready', 20_000);
        expect((await metrics.ready()).reason).to.match(/^a listener's last \d+ drains failed/);
        expect(errors).to.include('3 drains in a row failed: this listener processes nothing until that is fixed, and says it is not ready (/readyz)');
        await allowDeletes();
        await eventually(async () => (await metrics.ready()).ready, 'ready again', 20_000);
      } finally {
        stop();
        await own.stop();
      }
      const cluster = listen(['--processes', '1', '--metrics-port', '0']);
      try {
        const port = await portOf(cluster);
        await eventually(async () => (await get(port, '/readyz')).status === 200, '/readyz to say ready', 60_000);
        await refuseDeletes();
        await t.app.Author.create({ name: 'never deleted either' });
        await eventually(async () => (await get(port, '/readyz')).status === 503, "the primary's /readyz to say 503", 30_000);
        expect((await get(port, '/readyz')).body).to.contain('no worker is listening (or each one fails its drains');
        await allowDeletes();
        await eventually(async () => (await get(port, '/readyz')).status === 200, "the primary's /readyz to say 200 again", 30_000);
      } finally {
        cluster.kill('SIGTERM');
        await cluster.exited;
      }
    });
  });

  it('sums the channels no code here defines into one series: a send() caller cannot grow the series', async () => {
    const metrics = t.app.sequelize.pgpubsub.metrics();
    for (let i = 0; i < 50; i++) await t.app.sequelize.query(`SELECT pgpubsub.send('invented_${i}', '{}', true)`);
    await t.app.Author.create({ name: 'due' });
    const text = await metrics.text();
    expect(text).not.to.contain('invented_');
    expect(sample(text, 'pgpubsub_notifications', { channel: '(undefined)', state: 'due' })).to.equal(50);
    expect(sample(text, 'pgpubsub_notifications', { channel: 'author_created', state: 'due' })).to.equal(1);
    expect(text.split('\n').filter((line) => line.startsWith('pgpubsub_oldest_due_age_seconds{'))).to.have.length.below(10);
  });
});
