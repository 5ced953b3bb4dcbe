/**
 * The dashboard: `pgpubsub dashboard` as a real process on a real port (its token, its CSRF
 * check, exit codes), and the mounted handler in a real headless browser (Debian's chromium
 * driven by playwright-core): a notification fails, the operator opens it, sees the error and
 * the old/new diff, clicks retry and sees it processed, pauses and resumes the channel. The
 * screenshots it takes are docs/operations.md's: written to docs/ with UPDATE_SCREENSHOTS=1, else to a
 * temporary folder, so that running the suite leaves the checkout as it was.
 */
import { expect } from 'chai';
import express from 'express';
import { once } from 'node:events';
import fs from 'node:fs';
import http, { type IncomingMessage } from 'node:http';
import os from 'node:os';
import type { AddressInfo } from 'node:net';
import path from 'node:path';
import { type Browser, chromium } from 'playwright-core';
import { NonRetryableError, type Listener } from '../lib';
import { debianPackageProblem } from '../dev/debian';
import { eventually } from '../dev/eventually';
import { BIN, ROOT, pgpubsubCli, shown, spawnProcess } from '../dev/processes';
import { exampleAppPerTest } from './support/example-app-per-test';

const EXAMPLE_APP = path.join(ROOT, 'test', 'fixtures', 'example-app.ts');
const CHROMIUM = '/usr/bin/chromium';
const KEEP_SCREENSHOTS = process.env.UPDATE_SCREENSHOTS === '1';
const SCREENSHOTS = KEEP_SCREENSHOTS ? path.join(ROOT, 'docs') : path.join(os.tmpdir(), `pgpubsub-screenshots-${process.pid}`);
after(() => { if (!KEEP_SCREENSHOTS) fs.rmSync(SCREENSHOTS, { recursive: true, force: true }); });
const TOKEN = 'a-dashboard-token';

const csrfOf = (html: string) => /name="csrf" value="([0-9a-f]+)"/.exec(html)?.[1];

describe('dashboard', function () {
  this.timeout(120_000);

  let problem: string | null = null;

  before(function () {
    // A clean machine installs chromium here: apt-get may take minutes.
    this.timeout(900_000);
    if (!fs.existsSync(CHROMIUM)) console.log(`      ${CHROMIUM} is missing: installing Debian's chromium with apt-get`);
    problem = debianPackageProblem(CHROMIUM, 'chromium');
  });

  const t = exampleAppPerTest();

  it('pgpubsub dashboard: asks for its token, refuses forms without its CSRF token, pauses, and exits 0 on SIGTERM', async () => {
    const refused = await pgpubsubCli(['dashboard', '--token', 'short', '--app', EXAMPLE_APP], { url: t.db.url });
    expect(refused.code, shown(refused)).to.equal(2);
    expect(refused.stderr).to.contain('--token must be at least 8 characters');

    const server = spawnProcess(BIN, ['dashboard', '--port', '0', '--token', TOKEN, '--app', EXAMPLE_APP], { DATABASE_URL: t.db.url });
    try {
      await eventually(() => server.output.some((line) => line.startsWith('Dashboard on ')), () => `the address: ${server.describe()}`, 30_000);
      const address = /^Dashboard on (http:\/\/127\.0\.0\.1:\d+\/)\?token=a-dashboard-token /.exec(server.output.find((line) => line.startsWith('Dashboard on '))!)?.[1];
      expect(address, server.output.join('\n')).to.be.a('string');
      const base = address!;
      expect((await fetch(base)).status).to.equal(401);
      expect((await fetch(`${base}?token=wrong-token`)).status).to.equal(401);
      // The link with the token sets the cookie and leaves the token out of the address.
      const link = await fetch(`${base}?token=${TOKEN}`, { redirect: 'manual' });
      expect(link.status).to.equal(303);
      expect(link.headers.get('location')).to.equal('/');
      const cookie = link.headers.get('set-cookie')!.split(';')[0];
      expect(link.headers.get('set-cookie')).to.contain('HttpOnly').and.to.contain('SameSite=Strict');
      const page = await fetch(base, { headers: { cookie } });
      expect(page.status).to.equal(200);
      expect(page.headers.get('content-security-policy')).to.contain("default-src 'none'");
      const html = await page.text();
      expect(html).to.contain('author_created').and.to.contain('No listener is running.');
      expect(html).to.match(/<section id="cleanup"><h2>Cleanup<\/h2><p>\d+ dead row\(s\) beside \d+ live in the notification table; (last vacuumed \S+|never vacuumed)\.<\/p>/);
      expect((await fetch(`${base}status.json`, { headers: { authorization: `Bearer ${TOKEN}` } })).status).to.equal(200);

      const post = (body: string, headers: Record<string, string> = {}) => fetch(`${base}pause`, {
        method: 'POST', redirect: 'manual', body, headers: { cookie, 'content-type': 'application/x-www-form-urlencoded', ...headers },
      });
      expect((await post('channel=author_created')).status).to.equal(403);
      expect((await post(`channel=author_created&csrf=${csrfOf(html)}`, { origin: 'http://evil.example' })).status).to.equal(403);
      expect((await t.app.sequelize.pgpubsub.admin.status()).channels.find((c) => c.channel === 'author_created')!.paused).to.equal(false);
      const paused = await post(`channel=author_created&csrf=${csrfOf(html)}`);
      expect(paused.status).to.equal(303);
      const banner = decodeURIComponent(paused.headers.get('location')!);
      expect(banner).to.match(/^\/\?flash=Paused author_created\.&sig=[0-9a-f]{64}$/);
      expect(await (await fetch(new URL(banner, base), { headers: { cookie } })).text()).to.contain('<p class="flash">Paused author_created.</p>');
      // A link cannot make the banner say something else.
      expect(await (await fetch(`${base}?flash=Your+session+expired%2C+log+in+at+evil.example&sig=00`, { headers: { cookie } })).text()).not.to.contain('evil.example');
      // The cookie is derived from the token, not the token; an id past a bigint names nothing.
      expect(cookie).not.to.contain(TOKEN);
      const huge = await fetch(`${base}failed/99999999999999999999999`, { headers: { cookie } });
      expect(huge.status).to.equal(404);
      expect(await huge.text()).to.contain('no failed notification has id 99999999999999999999999');
      expect((await t.app.sequelize.pgpubsub.admin.status()).channels.find((c) => c.channel === 'author_created')!.paused).to.equal(true);
    } finally {
      server.kill('SIGTERM');
    }
    expect((await server.exited).code, server.describe()).to.equal(0);
  });

  /** A request with the Host and Origin a page on a rebinding DNS name sends (fetch cannot set Host). */
  const rebound = (url: string, method: string, headers: Record<string, string>, body = '') => new Promise<{ status: number; text: string }>((resolve, reject) => {
    const request = http.request(url, { method, headers: { ...headers, 'content-length': String(Buffer.byteLength(body)) } }, (response) => {
      let text = '';
      response.setEncoding('utf8').on('data', (chunk: string) => { text += chunk; }).on('end', () => resolve({ status: response.statusCode!, text }));
    });
    request.on('error', reject).end(body);
  });

  it('pgpubsub dashboard: answers only its own host names (DNS rebinding), never prints a token from the environment, and asks for one off loopback', async () => {
    await t.app.sequelize.query(`INSERT INTO pgpubsub.notification (channel, payload, attempts, failed_at, last_error)
      SELECT 'author_created', '{}', 5, now(), 'failed' FROM generate_series(1, 3)`);
    const server = spawnProcess(BIN, ['dashboard', '--port', '0', '--app', EXAMPLE_APP], { DATABASE_URL: t.db.url });
    try {
      await eventually(() => server.output.some((line) => line.startsWith('Dashboard on ')), () => `the address: ${server.describe()}`, 30_000);
      const base = /^Dashboard on (http:\/\/127\.0\.0\.1:(\d+)\/) \(Ctrl\+C to stop\)$/.exec(server.output.find((line) => line.startsWith('Dashboard on '))!);
      expect(base, server.output.join('\n')).to.not.equal(null);
      const [, address, port] = base!;
      const page = await fetch(address);
      expect(page.status).to.equal(200);
      const csrf = csrfOf(await page.text())!;
      for (const name of ['localhost', '[::1]']) expect((await rebound(address, 'GET', { host: `${name}:${port}` })).status, name).to.equal(200);
      // The reproduction: a page on evil.example, rebound to 127.0.0.1, reads the form, then posts it.
      const evil = `evil.example:${port}`;
      const read = await rebound(address, 'GET', { host: evil });
      expect(read.status).to.equal(421);
      expect(read.text).not.to.contain(csrf);
      expect(read.text).to.contain('this dashboard answers only to localhost, 127.0.0.1, ::1, not to Host &#34;evil.example:');
      const purge = await rebound(`${address}purge`, 'POST', { host: evil, origin: `http://${evil}`, 'content-type': 'application/x-www-form-urlencoded' }, `all=1&csrf=${csrf}`);
      expect(purge.status).to.equal(421);
      expect(await t.app.sequelize.pgpubsub.admin.failed()).to.have.length(3);
    } finally {
      server.kill('SIGTERM');
    }
    expect((await server.exited).code, server.describe()).to.equal(0);

    // A token from the environment is asked for, and never printed.
    const secret = 'a-token-from-the-environment';
    const withToken = spawnProcess(BIN, ['dashboard', '--port', '0', '--app', EXAMPLE_APP], { DATABASE_URL: t.db.url, PGPUBSUB_DASHBOARD_TOKEN: secret });
    try {
      await eventually(() => withToken.output.some((line) => line.startsWith('Dashboard on ')), () => `the address: ${withToken.describe()}`, 30_000);
      const line = withToken.output.find((text) => text.startsWith('Dashboard on '))!;
      expect(line).to.match(/^Dashboard on http:\/\/127\.0\.0\.1:\d+\/ \(open it once as …\/\?token=<\$PGPUBSUB_DASHBOARD_TOKEN>\)/);
      expect(withToken.describe()).not.to.contain(secret);
      const address = /(http:\S+\/)/.exec(line)![1];
      expect((await fetch(address)).status).to.equal(401);
      expect((await fetch(address, { headers: { authorization: `Bearer ${secret}` } })).status).to.equal(200);
    } finally {
      withToken.kill('SIGTERM');
    }
    expect((await withToken.exited).code, withToken.describe()).to.equal(0);

    // Off loopback: a token, and the names it is reached by, or exit 2 saying so.
    const open = await pgpubsubCli(['dashboard', '--host', '0.0.0.0', '--port', '0', '--app', EXAMPLE_APP], { url: t.db.url });
    expect(open.code, shown(open)).to.equal(2);
    expect(open.stderr).to.contain('bound to 0.0.0.0, the dashboard needs a token').and.to.contain('$PGPUBSUB_DASHBOARD_TOKEN');
    const nameless = await pgpubsubCli(['dashboard', '--host', '0.0.0.0', '--port', '0', '--token', TOKEN, '--app', EXAMPLE_APP], { url: t.db.url });
    expect(nameless.code, shown(nameless)).to.equal(2);
    expect(nameless.stderr).to.contain('--allowed-hosts ops.example.com');
  });

  it('the mounted handler with allowedHosts: answers those names, 421 to others; a bad list is a TypeError naming the option', async () => {
    const dashboard = t.app.sequelize.pgpubsub.dashboard({ allowedHosts: ['ops.example.com', '::1'], refreshSeconds: 0 });
    const server = http.createServer(dashboard).listen(0, '127.0.0.1');
    await new Promise((resolve) => server.once('listening', resolve));
    const address = `http://127.0.0.1:${(server.address() as AddressInfo).port}/`;
    try {
      expect((await rebound(address, 'GET', { host: 'OPS.example.com' })).status).to.equal(200);
      expect((await rebound(address, 'GET', { host: '[::1]:443' })).status).to.equal(200);
      expect((await rebound(address, 'GET', { host: '127.0.0.1' })).status).to.equal(421);
      expect((await rebound(address, 'GET', { host: 'ops.example.com.evil.example' })).status).to.equal(421);
    } finally {
      dashboard.close();
      server.close();
    }
    expect(() => t.app.sequelize.pgpubsub.dashboard({ allowedHosts: ['http://x/'] })).to.throw(TypeError, "dashboard({ allowedHosts }): expected host names such as 'localhost'");
  });

  it('mounted by Express at /ops/pgpubsub or on a bare http server: its links and forms stay below the mount, with or without a trailing slash', async () => {
    const dashboard = t.app.sequelize.pgpubsub.dashboard({ refreshSeconds: 0 });
    const app = express();
    app.use('/ops/pgpubsub', dashboard);
    const mounted = app.listen(0, '127.0.0.1');
    const bare = http.createServer(dashboard).listen(0, '127.0.0.1');
    await Promise.all([once(mounted, 'listening'), once(bare, 'listening')]);
    const origin = (server: http.Server) => `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
    try {
      for (const asked of ['/ops/pgpubsub', '/ops/pgpubsub/']) {
        const page = await fetch(`${origin(mounted)}${asked}`);
        expect(page.status, asked).to.equal(200);
        const html = await page.text();
        expect(html, asked).to.contain('<base href="/ops/pgpubsub/">');
        // A form, posted where the browser sends it (its action against the base): the pause lands, and the redirect stays below the mount.
        const action = /<form method="post" action="([^"]+)">(?:(?!<\/form>).)*name="channel" value="author_created"/s.exec(html)?.[1];
        expect(action, 'the pause form of author_created').to.be.a('string');
        const target = new URL(action!.replace(/&amp;/g, '&'), `${origin(mounted)}/ops/pgpubsub/`);
        expect(target.pathname.startsWith('/ops/pgpubsub/'), target.pathname).to.equal(true);
        const posted = await fetch(target, {
          method: 'POST', redirect: 'manual', headers: { 'content-type': 'application/x-www-form-urlencoded', origin: origin(mounted) },
          body: new URLSearchParams({ channel: 'author_created', csrf: csrfOf(html)! }),
        });
        expect(posted.status, `${asked}: ${await posted.text()}`).to.equal(303);
        expect(posted.headers.get('location')).to.match(/^\/ops\/pgpubsub\/\?flash=/);
        await t.app.sequelize.pgpubsub.admin.resume('author_created');
      }
      expect(await (await fetch(`${origin(bare)}/`)).text()).to.contain('<base href="/">');
    } finally {
      dashboard.close();
      mounted.close();
      bare.close();
    }
  });

  it('shows a failure with its error and old/new diff in a real browser; retry processes it; pause and resume', async function () {
    if (problem) {
      console.log(`      skipped: ${problem}`);
      this.skip();
    }
    let broken = false;
    const seen: string[] = [];
    t.app.sequelize.pgpubsub.on(t.app.Media, 'media_changed', ({ op, new: media }) => {
      if (broken) throw new NonRetryableError(`the media store is offline: ${media?.name} not copied`);
      seen.push(`${op} ${media?.name}`);
    });
    const listener: Listener = await t.app.sequelize.pgpubsub.listen({ logger: { debug() {}, info() {}, warn() {}, error() {} } });
    const dashboard = t.app.sequelize.pgpubsub.dashboard({ sampleEveryMs: 250, refreshSeconds: 0 });
    // Mounted under /ops as Express's t.app.use('/ops', dashboard) mounts it: req.url below the mount, req.originalUrl whole.
    const server = http.createServer((request: IncomingMessage & { originalUrl?: string }, response) => {
      if (!request.url!.startsWith('/ops/') && request.url !== '/ops') return void response.writeHead(404).end();
      request.originalUrl = request.url;
      request.url = request.url!.slice('/ops'.length) || '/';
      dashboard(request, response);
    }).listen(0, '127.0.0.1');
    await new Promise((resolve) => server.once('listening', resolve));
    const { port } = server.address() as AddressInfo;
    let browser: Browser | null = null;
    try {
      await t.app.Media.bulkCreate(Array.from({ length: 300 }, (_, i) => ({ key: `m${i}`, name: `photo-${i}.jpg`, contentType: 'image/jpeg' })));
      await eventually(() => seen.length === 300, 'the 300 inserts processed');
      broken = true;
      const media = await t.app.Media.findByPk('m7');
      await media!.update({ name: 'photo-7-cropped.jpg', size: '20480' });
      await eventually(async () => (await t.app.sequelize.pgpubsub.admin.failed()).length === 1, 'the update failed for good');
      const [failed] = await t.app.sequelize.pgpubsub.admin.failed();

      browser = await chromium.launch({ executablePath: CHROMIUM, args: ['--headless', '--no-sandbox', '--disable-gpu', '--no-first-run', '--disable-background-networking'] });
      const page = await browser.newPage({ viewport: { width: 1200, height: 900 } });
      // Samples every 250 ms, and the listener reports what it processed every 5 s: let a report land so the chart shows throughput.
      // The mount point as users type it, without a trailing slash: the links below must stay under /ops.
      await page.goto(`http://127.0.0.1:${port}/ops`);
      await new Promise((resolve) => setTimeout(resolve, 6000));
      await page.reload();
      const channelRow = page.locator('#channels tr', { has: page.locator('b', { hasText: 'media_changed' }) });
      expect(await channelRow.locator('td').nth(3).innerText()).to.equal('1');
      expect(await page.locator('#listeners').innerText()).to.contain(String(process.pid));
      // The failed update is the listener's last batch, and no longer in hand.
      expect(await page.locator('#listeners tbody td').last().innerText()).to.equal('0');
      expect(await page.locator('svg polyline.rate').count()).to.equal(1);
      fs.mkdirSync(SCREENSHOTS, { recursive: true });
      await page.screenshot({ path: path.join(SCREENSHOTS, 'dashboard.png'), fullPage: true });

      await page.click(`a[href="failed/${failed.id}"]`);
      expect(page.url()).to.equal(`http://127.0.0.1:${port}/ops/failed/${failed.id}`);
      expect(await page.locator('pre.error').innerText()).to.contain('the media store is offline: photo-7-cropped.jpg not copied');
      const changed = await page.locator('table.diff tr.changed th').allInnerTexts();
      expect(changed.sort()).to.deep.equal(['name', 'size']);
      await page.screenshot({ path: path.join(SCREENSHOTS, 'dashboard-failed.png'), fullPage: true });

      broken = false;
      await page.click('button:has-text("Retry")');
      expect(await page.locator('.flash').innerText()).to.equal(`Retried 1 failed notification(s): ${failed.id}.`);
      await eventually(() => seen.includes('UPDATE photo-7-cropped.jpg'), 'the retried update processed');
      await page.goto(`http://127.0.0.1:${port}/ops/`);
      expect(await page.locator('#failed').innerText()).to.contain('None.');

      await channelRow.locator('button:has-text("Pause")').click();
      expect(await page.locator('.flash').innerText()).to.equal('Paused media_changed.');
      expect(await channelRow.innerText()).to.contain('paused');
      expect((await t.app.sequelize.pgpubsub.admin.status()).channels.find((c) => c.channel === 'media_changed')!.paused).to.equal(true);
      await channelRow.locator('button:has-text("Resume")').click();
      expect(await page.locator('.flash').innerText()).to.equal('Resumed media_changed.');
    } finally {
      await browser?.close();
      dashboard.close();
      server.close();
      await listener.stop();
    }
  });
});
