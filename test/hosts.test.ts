/**
 * Listeners on two hosts against one PostgreSQL: each host a network namespace (`ip netns`) joined
 * to this one by a veth pair, reaching the server through a TCP forwarder on its own link's address.
 * A bulk insert is processed exactly once with both hosts sharing the work; one host cut off (its
 * link down, so its packets vanish without a reset) mid-drain leaves its rows to the other, and
 * comes back when the link does.
 */
import { expect } from 'chai';
import { execFileSync } from 'node:child_process';
import path from 'node:path';
import { eventually } from '../dev/eventually';
import { openApp } from '../dev/example-app';
import { type ListenProcess, ROOT, startListen } from '../dev/processes';
import { type Proxy, startProxy } from '../dev/proxy';
import { sql } from '../dev/postgres';
import type { App } from '../models/app';
import { type TestDatabase, testDatabase } from './support/hooks';

const EXAMPLE_APP = path.join(ROOT, 'test', 'fixtures', 'example-app.ts');

interface Host {
  name: string;
  /** This side's end of the host's link (what `ip link set … down` cuts). */
  link: string;
  /** This side's address on the link: where the host reaches the server. */
  gateway: string;
}

const ip = (...args: string[]) => execFileSync('ip', args, { stdio: ['ignore', 'pipe', 'pipe'] }).toString();

/** The namespaces a run of this test file made (named by its pid), and any a killed run left. */
function removeHosts(all: boolean): void {
  let names: string[] = [];
  try {
    names = ip('netns', 'list').split('\n').map((line) => line.split(' ')[0]!).filter((name) => /^pgps-\d+-[ab]$/.test(name));
  } catch { return; }
  for (const name of names) {
    const pid = Number(name.split('-')[1]);
    let alive = false;
    try { process.kill(pid, 0); alive = true; } catch { /* gone */ }
    if (all ? pid === process.pid : !alive) {
      try { ip('netns', 'del', name); } catch { /* already gone */ }
    }
  }
}

/**
 * Host `index` (0 or 1): a namespace with a veth pair, 10.<n>.<index+1>.2 inside, .1 here, where
 * n comes from this process's pid so that two runs on one machine keep to their own subnets.
 */
function addHost(index: number): Host {
  const letter = 'ab'[index]!;
  const name = `pgps-${process.pid}-${letter}`;
  const link = `pgps${process.pid % 100000}${letter}`;
  const subnet = `10.${200 + (process.pid % 50)}.${index + 1}`;
  ip('netns', 'add', name);
  ip('link', 'add', link, 'type', 'veth', 'peer', 'name', `${link}h`);
  ip('link', 'set', `${link}h`, 'netns', name);
  ip('addr', 'add', `${subnet}.1/24`, 'dev', link);
  ip('link', 'set', link, 'up');
  ip('-n', name, 'addr', 'add', `${subnet}.2/24`, 'dev', `${link}h`);
  ip('-n', name, 'link', 'set', `${link}h`, 'up');
  ip('-n', name, 'link', 'set', 'lo', 'up');
  return { name, link, gateway: `${subnet}.1` };
}

/** Why two hosts cannot be made here, or null (made and removed again). */
function namespaceProblem(): string | null {
  if (process.getuid?.() !== 0) return 'network namespaces need root (ip netns add)';
  try {
    removeHosts(false);
    const probe = addHost(0);
    ip('link', 'del', probe.link);
    ip('netns', 'del', probe.name);
    return null;
  } catch (error) {
    return `ip netns/veth cannot be used here: ${(error as { stderr?: Buffer }).stderr?.toString().trim() || (error as Error).message}`;
  }
}

const countOf = async (url: string, query: string) => Number((await sql<{ n: string }>(url, query))[0]!.n);

describe('listeners on two hosts', function () {
  this.timeout(180_000);
  let problem: string | null = null;
  let db: TestDatabase;
  let app: App;
  let hosts: Host[] = [];
  let forwarders: Proxy[] = [];
  let listeners: ListenProcess[] = [];

  before(function () {
    problem = namespaceProblem();
  });
  beforeEach(async function () {
    if (problem) {
      console.log(`      skipped: ${problem}`);
      this.skip();
    }
    db = await testDatabase(this.currentTest!.title.slice(0, 20));
    app = openApp(db.url);
    // One at a time into `hosts`, so that afterEach removes what was made if the second fails.
    for (const index of [0, 1]) hosts.push(addHost(index));
    // The server listens on loopback only: a forwarder on each link's address stands in for the network path.
    for (const host of hosts) forwarders.push(await startProxy(db.url, { host: host.gateway }));
  });
  afterEach(async function () {
    await Promise.all(listeners.splice(0).map((listener) => listener.stop(15_000)));
    await Promise.all(forwarders.splice(0).map((forwarder) => forwarder.close()));
    for (const host of hosts.splice(0)) {
      try { ip('link', 'del', host.link); } catch { /* went with its namespace */ }
      try { ip('netns', 'del', host.name); } catch { /* already gone */ }
    }
    await app?.sequelize.close();
    if (this.currentTest?.state === 'passed') await db.drop();
  });
  after(() => removeHosts(true));

  const listenOn = (index: number, args: string[], env: Record<string, string> = {}) => {
    const listener = startListen(forwarders[index]!.via(db.url), ['--app', EXAMPLE_APP, ...args], env, { prefix: ['ip', 'netns', 'exec', hosts[index]!.name] });
    listeners.push(listener);
    return listener;
  };
  const exactlyOnce = async (authors: number) => {
    await eventually(async () => (await app.Post.count()) === authors, async () => `${authors} posts, got ${await app.Post.count()}\n${listeners.map((l) => l.describe()).join('\n')}`, 120_000, 200);
    expect(await countOf(db.url, 'SELECT count(*) AS n FROM (SELECT author_id FROM posts GROUP BY 1 HAVING count(*) > 1) AS d'), 'authors with more than one post').to.equal(0);
    expect(await countOf(db.url, 'SELECT count(*) AS n FROM pgpubsub.notification'), 'notifications left').to.equal(0);
  };

  it('shares a bulk insert between the two hosts, each notification processed once', async () => {
    const [a, b] = [listenOn(0, ['--processes', '2']), listenOn(1, ['--processes', '2'])];
    await Promise.all([a, b].map((listener) => eventually(() => listener.listeningWorkers().length === 2, () => `2 listening workers: ${listener.describe()}`, 60_000)));
    expect(forwarders.every((forwarder) => forwarder.connections.length > 0), 'both hosts connected').to.equal(true);

    await app.Author.bulkCreate(Array.from({ length: 3000 }, (_, i) => ({ name: `author ${i}` })));
    await exactlyOnce(3000);
    const shares = [a, b].map((listener) => [...listener.processedBy('pid').values()].reduce((sum, n) => sum + n, 0));
    expect(shares[0]! + shares[1]!, `processed by host a and b: ${shares.join(', ')}`).to.equal(3000);
    expect(Math.min(...shares), `each host did part of the work: ${shares.join(', ')}`).to.be.above(0);
  });

  it('lets the other host take over the rows of one cut off mid-drain, and takes the cut-off one back when its link returns', async () => {
    // Slow callbacks keep the drain going for a while; a short callback timeout bounds how long the
    // server keeps a cut-off host's transaction (and its rows) open: timeoutMs + 5 s.
    const options = ['--worker', '--batch-size', '10', '--timeout-ms', '2000', '--heartbeat-ms', '500', '--reconnect-min-ms', '100', '--reconnect-max-ms', '1000'];
    const [a, b] = [listenOn(0, options, { SLOW_MS: '20' }), listenOn(1, options, { SLOW_MS: '20' })];
    await Promise.all([a.event('listening'), b.event('listening')]);
    await app.Author.bulkCreate(Array.from({ length: 600 }, (_, i) => ({ name: `author ${i}` })));
    await eventually(() => a.all('batch').length >= 2, () => `host a to process some batches: ${a.describe()}`, 30_000);
    // Cut host a while it holds a claim transaction open: the server sees its sessions by the
    // forwarder's ports.
    const inTransaction = async () => {
      const ports = forwarders[0]!.connections.filter((c) => !c.upstream.destroyed).map((c) => c.upstream.localPort!);
      const rows = await sql<{ pid: number }>(db.url, 'SELECT pid FROM pg_stat_activity WHERE client_port = ANY($1::int[]) AND xact_start IS NOT NULL AND backend_xid IS NOT NULL', [ports]);
      return rows.map((row) => row.pid);
    };
    let held: number[] = [];
    await eventually(async () => (held = await inTransaction()).length > 0, 'host a to hold a claim transaction', 30_000, 5);
    ip('link', 'set', hosts[0]!.link, 'down');
    const beforeCut = a.all('batch').length;

    await exactlyOnce(600);
    const fromB = [...b.processedBy('pid').values()].reduce((sum, n) => sum + n, 0);
    const fromA = [...a.processedBy('pid').values()].reduce((sum, n) => sum + n, 0);
    // The rows of host a's batch (the server ended its claim; its holder key still looked held):
    // host b runs them alone, charged, as a frozen process's.
    const aloneByB = b.all('running-alone').length;
    expect(fromA + fromB + aloneByB, `a reported ${fromA}, b ${fromB} and ${aloneByB} alone`).to.be.at.least(600);
    expect(a.all('batch').length - beforeCut, 'batches host a committed once cut off (it cannot reach the server)').to.be.at.most(1);
    // The server ended the cut-off host's transaction (idle_in_transaction_session_timeout), and its rows went to host b.
    const still = await sql<{ pid: number }>(db.url, 'SELECT pid FROM pg_stat_activity WHERE pid = ANY($1::int[]) AND backend_xid IS NOT NULL', [held]);
    expect(still, 'host a\'s transactions left open on the server').to.deep.equal([]);

    ip('link', 'set', hosts[0]!.link, 'up');
    await a.event('reconnected', 60_000);
    // Back: host a takes a share of new work again.
    const before = a.all('batch').length;
    await app.Author.bulkCreate(Array.from({ length: 600 }, (_, i) => ({ name: `later ${i}` })));
    await exactlyOnce(1200);
    expect(a.all('batch').length, `host a processed batches after its link returned: ${a.describe()}`).to.be.above(before);
  });
});
