/**
 * The dashboard: a plain Node http handler, server-rendered, no script and nothing fetched from
 * elsewhere. Channels with backlog and lag, a chart of throughput and backlog over the last hour
 * (sampled in this process), live listeners, failed notifications with their error and an
 * old/new diff, and forms (POST, CSRF-protected) to retry, purge, pause and resume. Mount it
 * behind the app's own auth (Express, Fastify, Koa all take such a handler), or run
 * `pgpubsub dashboard`, which binds 127.0.0.1 and takes a token.
 */
import { createHmac, randomBytes } from 'node:crypto';
import type { IncomingMessage, ServerResponse } from 'node:http';
import { QueryTypes, type Sequelize } from 'sequelize';
import type { Admin, BlockedKey, FailedNotificationDetail, Status } from './admin';
import { describeHolder } from '../db/cleanup';
import { COUNT_CAP } from './channel-counts';
import { errorSummary } from '../error-text';
import type { LibraryObjects } from '../db/objects';
import { LIBRARY_QUERY } from '../db/sql-text';
import { COOKIE, HttpError, admit, allowedHostSet, readForm, same } from './dashboard-access';

export { LOOPBACK_HOSTS, hostName } from './dashboard-access';

export interface DashboardOptions {
  /**
   * Asked of every request when set: `Authorization: Bearer <token>`, or the cookie a visit to
   * `?token=<token>` sets (HttpOnly, SameSite=Strict). Leave it out behind your own auth.
   */
  token?: string;
  /** How often throughput and backlog are sampled for the chart, in ms (default 15000); an hour is kept. */
  sampleEveryMs?: number;
  /** The overview reloads itself this often, in seconds (default 10; 0: never). */
  refreshSeconds?: number;
  /** The page title (default 'pgpubsub'). */
  title?: string;
  /**
   * The host names (no port) it answers to; a request with any other `Host` gets 421 before
   * anything is read. Set it when the handler has a port of its own (`pgpubsub dashboard` sets the
   * loopback names, or `--allowed-hosts`): a page on a DNS name rebound to this address reaches the
   * port, but only with its own name as Host. Default: any (behind your app, whose routing checks it).
   */
  allowedHosts?: readonly string[];
}


/** The handler, and close() to stop its sampling. */
export interface DashboardHandler {
  (request: IncomingMessage, response: ServerResponse): void;
  close(): void;
}

interface Sample {
  at: number;
  due: number;
  waiting: number;
  failed: number;
  /** Per live listener connection (backend pid), what it reports having processed in all. */
  processed: Map<number, number>;
}

const HOUR_MS = 3_600_000;

const escape = (value: unknown) => String(value ?? '').replace(/[&<>"']/g, (c) => `&#${c.charCodeAt(0)};`);

/** A count, `~` before it when it is an estimate (past COUNT_CAP). */
const about = (c: { estimated: boolean }, n: number) => (c.estimated && n > COUNT_CAP ? `~${n}` : String(n));

function ms(value: number | null): string {
  if (value === null) return '-';
  if (value < 1000) return `${Math.round(value)}ms`;
  if (value < 60_000) return `${(value / 1000).toFixed(1)}s`;
  if (value < 3_600_000) return `${(value / 60_000).toFixed(1)}m`;
  return `${(value / 3_600_000).toFixed(1)}h`;
}

/** Throughput between two samples: what each listener connection processed meanwhile (a new one from zero), per second. */
export function throughput(before: Sample, after: Sample): number {
  let done = 0;
  for (const [pid, total] of after.processed) done += Math.max(0, total - (before.processed.get(pid) ?? 0));
  return done / Math.max(0.001, (after.at - before.at) / 1000);
}

/**
 * The request's path below the mount point, and the mount point as a base href (from Express's
 * originalUrl when mounted). Express gives the mount point itself, asked without a trailing slash
 * (`/ops/pgpubsub`), as req.url `/`: its base is then the whole path, slash added, so that the
 * page's relative links and forms stay below it.
 */
function paths(request: IncomingMessage): { path: string; base: string; query: URLSearchParams } {
  const url = new URL(request.url ?? '/', 'http://dashboard');
  const original = new URL((request as { originalUrl?: string }).originalUrl ?? request.url ?? '/', 'http://dashboard').pathname;
  const path = url.pathname || '/';
  const mount = original.endsWith(path) ? original.slice(0, original.length - path.length) : path === '/' ? original : '';
  return { path, base: `${mount}/`.replace(/\/+$/, '/'), query: url.searchParams };
}

/** What the dashboard reads and acts through (`sequelize.pgpubsub` is one): no import of PgPubSub, which loads the dashboard. */
export interface DashboardSource { readonly sequelize: Sequelize; readonly objects: LibraryObjects; readonly admin: Admin }

/**
 * The dashboard as an http handler.
 *
 * @example
 * const dashboard = sequelize.pgpubsub.dashboard();
 * app.use('/ops/pgpubsub', requireAdmin, dashboard); // Express, behind your own auth
 */
export function dashboardHandler(pubsub: DashboardSource, options: DashboardOptions = {}): DashboardHandler {
  const { token, sampleEveryMs = 15_000, refreshSeconds = 10, title = 'pgpubsub' } = options;
  if (token !== undefined && (typeof token !== 'string' || token.length < 8)) {
    throw new TypeError('dashboard({ token }): the token must be a string of at least 8 characters');
  }
  const allowed = allowedHostSet(options.allowedHosts);
  const { admin } = pubsub;
  // Forms carry this; a page of another origin cannot read it.
  const secret = randomBytes(32);
  const csrf = createHmac('sha256', secret).update('csrf').digest('hex');
  // The banner after an action shows only what this dashboard said: a link cannot make it say more.
  const signed = (flash: string) => createHmac('sha256', secret).update(`flash\n${flash}`).digest('hex');
  const samples: Sample[] = [];
  let timer: NodeJS.Timeout | null = null;
  let sampling: Promise<void> | null = null;

  const sample = async (status?: Status) => {
    const read = status ?? await admin.status();
    const reports = await pubsub.sequelize.query<{ backend_pid: number; processed: number }>(
      `SELECT backend_pid, (SELECT coalesce(sum((c.value ->> 'processed')::bigint), 0) FROM jsonb_each(channels) AS c)::float8 AS processed
         FROM ${pubsub.objects.listenerTable} WHERE backend_pid = ANY($1::integer[])`,
      { bind: [read.listeners.map((l) => l.backendPid)], type: QueryTypes.SELECT, ...LIBRARY_QUERY },
    );
    const sum = (key: 'due' | 'waiting' | 'failed') => read.channels.reduce((total, c) => total + c[key], 0);
    samples.push({ at: Date.now(), due: sum('due'), waiting: sum('waiting'), failed: sum('failed'), processed: new Map(reports.map((r) => [r.backend_pid, r.processed])) });
    while (samples.length && samples[0].at < Date.now() - HOUR_MS) samples.shift();
  };
  const startSampling = () => {
    if (timer) return;
    timer = setInterval(() => {
      sampling ??= sample().catch(() => undefined).finally(() => { sampling = null; });
    }, sampleEveryMs);
    timer.unref();
  };

  const send = (response: ServerResponse, status: number, body: string, headers: Record<string, string> = {}) => {
    response.writeHead(status, {
      'content-type': 'text/html; charset=utf-8',
      'cache-control': 'no-store',
      'content-security-policy': "default-src 'none'; style-src 'unsafe-inline'; img-src data:; form-action 'self'; frame-ancestors 'none'; base-uri 'self'",
      'x-content-type-options': 'nosniff',
      'referrer-policy': 'same-origin',
      ...headers,
    }).end(body);
  };
  const page = (base: string, heading: string, body: string, refresh = 0) => `<!doctype html>
<html lang="en"><head><meta charset="utf-8"><base href="${escape(base)}">
<title>${escape(heading)} · ${escape(title)}</title>${refresh > 0 ? `<meta http-equiv="refresh" content="${refresh}">` : ''}
<style>${STYLE}</style></head>
<body><header><a href="./" class="home">${escape(title)}</a><span>${escape(heading)}</span></header><main>${body}</main></body></html>`;
  const form = (action: string, fields: Record<string, string>, label: string, kind = '') => `<form method="post" action="${escape(action)}">${
    Object.entries({ ...fields, csrf }).map(([name, value]) => `<input type="hidden" name="${escape(name)}" value="${escape(value)}">`).join('')
  }<button type="submit" class="${kind}">${escape(label)}</button></form>`;

  const overview = async (base: string, flash: string | null) => {
    const status = await admin.status();
    // The first visit samples at once, so the chart has a point to start from.
    if (samples.length === 0) await sample(status).catch(() => undefined);
    const failed = await admin.failed({ limit: 50 });
    const channels = status.channels.map((c) => `<tr${c.paused ? ' class="paused"' : ''}>
  <td><b>${escape(c.channel)}</b>${c.defined ? '' : ' <small>(no code here defines it)</small>'}</td>
  <td class="n">${about(c, c.due)}</td><td class="n">${about(c, c.waiting)}</td><td class="n${c.failed ? ' bad' : ''}">${about(c, c.failed)}</td><td class="n${c.blocked ? ' bad' : ''}">${about(c, c.blocked)}</td>
  <td class="n">${ms(c.oldestDueAgeMs)}</td><td class="n">${ms(c.recentLagMs)}</td><td class="n">${c.listeners}</td>
  <td>${c.paused ? 'paused' : c.draining ? 'draining' : ''}</td>
  <td class="actions">${c.paused ? form('resume', { channel: c.channel }, 'Resume') : form('pause', { channel: c.channel }, 'Pause')}${
    c.failed ? form('retry', { channel: c.channel }, `Retry ${c.failed} failed`) : ''}</td></tr>`).join('');
    const listeners = status.listeners.map((l) => `<tr><td class="n">${l.backendPid}</td><td>${escape(l.host ?? '-')}</td><td class="n">${l.pid ?? '-'}</td>
  <td>${escape(l.clientAddress ?? 'local')}</td><td>${escape((l.startedAt ?? l.since)?.toISOString() ?? '-')}</td><td>${escape(l.channels.join(', ') || '-')}</td>
  <td>${escape(l.draining.join(', '))}</td><td class="n">${l.inHand.length}</td></tr>`).join('');
    const failures = failed.map((f) => `<tr><td class="n"><a href="failed/${escape(f.id)}">${escape(f.id)}</a></td><td>${escape(f.channel)}</td>
  <td class="n">${f.attempts}</td><td>${escape(f.failedAt.toISOString())}</td><td class="error">${escape(firstLine(f.lastError))}</td>
  <td class="actions">${form('retry', { ids: f.id }, 'Retry')}${form('purge', { ids: f.id }, 'Purge', 'danger')}</td></tr>`).join('');
    const body = `${flash ? `<p class="flash">${escape(flash)}</p>` : ''}
<section id="channels"><h2>Channels</h2><table><thead><tr><th>channel</th><th>due</th><th>waiting</th><th>failed</th><th>blocked keys</th><th>oldest due</th><th>lag</th><th>listeners</th><th></th><th></th></tr></thead>
<tbody>${channels || '<tr><td colspan="10">No channel is defined or holds notifications.</td></tr>'}</tbody></table></section>
<section id="chart"><h2>Last hour</h2>${charts(samples)}</section>
<section id="listeners"><h2>Listeners</h2>${status.listeners.length ? `<table><thead><tr><th>backend pid</th><th>host</th><th>pid</th><th>from</th><th>since</th><th>channels</th><th>draining</th><th>in hand</th></tr></thead><tbody>${listeners}</tbody></table>` : '<p>No listener is running.</p>'}</section>
<section id="failed"><h2>Failed notifications</h2>${failed.length ? `<table><thead><tr><th>id</th><th>channel</th><th>attempts</th><th>failed at</th><th>error</th><th></th></tr></thead><tbody>${failures}</tbody></table>` : '<p>None.</p>'}</section>
${status.channels.some((c) => c.blocked) ? blockedSection(await admin.blocked({ limit: 50 }), form) : ''}
${cleanupSection(status.cleanup)}
<footer>Read from the database at ${escape(status.at.toISOString())}.</footer>`;
    return page(base, 'status', body, refreshSeconds);
  };

  const detail = async (base: string, id: string) => {
    // A bigint's range: a longer number names no notification (and is no error of the database's).
    const found = BigInt(id) <= 9_223_372_036_854_775_807n ? await admin.failedOne(id) : null;
    if (!found) throw new HttpError(404, `no failed notification has id ${id}`);
    return page(base, `failed notification ${id}`, `<section><h2>Failed notification ${escape(id)} on ${escape(found.channel)}</h2>
<dl><dt>op</dt><dd>${escape(found.op ?? '-')}</dd><dt>attempts</dt><dd>${found.attempts}</dd><dt>created</dt><dd>${escape(found.createdAt.toISOString())}</dd>
<dt>failed</dt><dd>${escape(found.failedAt.toISOString())}</dd><dt>context</dt><dd><code>${escape(JSON.stringify(found.context))}</code></dd></dl>
<h3>Error</h3><pre class="error">${escape(found.lastError ?? '')}</pre>
${found.decodeError ? `<p class="bad">Its payload is not a message of its channel: ${escape(found.decodeError)}</p>` : ''}
${diff(found)}
<div class="actions">${form('retry', { ids: id }, 'Retry')}${form('purge', { ids: id }, 'Purge', 'danger')}</div></section>`);
  };

  const act = async (action: string, fields: URLSearchParams): Promise<string> => {
    const ids = fields.getAll('ids').flatMap((value) => value.split(',')).map((value) => value.trim()).filter(Boolean);
    const channel = fields.get('channel');
    if (action === 'pause' || action === 'resume') {
      if (!channel) throw new HttpError(400, `${action}: say which channel`);
      const changed = await (action === 'pause' ? admin.pause(channel) : admin.resume(channel));
      return changed ? `${action === 'pause' ? 'Paused' : 'Resumed'} ${channel}.` : `${channel} was ${action === 'pause' ? 'paused' : 'not paused'} already.`;
    }
    const selection = ids.length ? { ids } : channel ? { channel } : fields.get('all') === '1' ? { all: true as const } : null;
    if (!selection) throw new HttpError(400, `${action}: say which failed notifications (ids, channel or all)`);
    const done = await (action === 'retry' ? admin.retry(selection) : admin.purge(selection));
    return `${action === 'retry' ? 'Retried' : 'Purged'} ${done.length} failed notification(s)${done.length ? `: ${done.slice(0, 20).join(', ')}${done.length > 20 ? ', …' : ''}` : ''}.`;
  };

  const handler = ((request: IncomingMessage, response: ServerResponse) => {
    const { path, base, query } = paths(request);
    void (async () => {
      try {
        const visit = admit(request, query, { token, allowed });
        if (visit) return send(response, 303, '', { location: base, 'set-cookie': `${COOKIE}=${visit.cookie}; Path=${base}; HttpOnly; SameSite=Strict` });
        startSampling();
        const method = request.method ?? 'GET';
        const failedPage = /^\/failed\/(\d+)$/.exec(path);
        if (method === 'GET' || method === 'HEAD') {
          const flash = query.get('flash');
          if (path === '/') return send(response, 200, await overview(base, flash !== null && same(query.get('sig') ?? '', signed(flash)) ? flash : null));
          if (failedPage) return send(response, 200, await detail(base, failedPage[1]));
          if (path === '/status.json') {
            return send(response, 200, JSON.stringify(await admin.status()), { 'content-type': 'application/json; charset=utf-8' });
          }
          throw new HttpError(404, `nothing at ${path}`);
        }
        const action = /^\/(retry|purge|pause|resume)$/.exec(path)?.[1];
        if (method !== 'POST' || !action) throw new HttpError(method === 'POST' ? 404 : 405, `${method} ${path} is not an action (POST retry, purge, pause, resume)`);
        // Another site's page can post a form here, but cannot know the token it must carry.
        const origin = request.headers.origin;
        if (origin && origin !== 'null' && new URL(origin).host !== request.headers.host) throw new HttpError(403, `a form from ${origin} may not act here`);
        const fields = await readForm(request);
        const sent = fields.get('csrf');
        if (!sent || !same(sent, csrf)) throw new HttpError(403, 'the form lacks this dashboard\'s CSRF token: reload the page and try again');
        const flash = await act(action, fields);
        return send(response, 303, '', { location: `${base}?flash=${encodeURIComponent(flash)}&sig=${signed(flash)}` });
      } catch (error) {
        const status = error instanceof HttpError ? error.status : 500;
        const message = error instanceof HttpError ? error.message : `could not read the database: ${errorSummary(error)}`;
        if (!response.headersSent) send(response, status, page(base, `${status}`, `<p class="bad">${escape(message)}</p><p><a href="./">Back to the status</a></p>`));
        else response.end();
      }
    })();
  }) as DashboardHandler;
  handler.close = () => {
    if (timer) clearInterval(timer);
    timer = null;
  };
  return handler;
}

/** The notification table's dead rows, and what holds back their cleanup (docs/performance.md, "A long transaction stops vacuum"). */
function cleanupSection({ deadRows, liveRows, lastVacuumAt, heldBackBy: holder }: Status['cleanup']): string {
  const held = holder ? `<p class="${holder.openMs !== null && holder.openMs > 300_000 ? 'bad' : ''}">Held back by ${escape(describeHolder(holder))}: its xmin is ${holder.xminAge} transaction(s) old${
    holder.openMs === null ? '' : `, open ${ms(holder.openMs)}`}.</p>` : '<p>Nothing holds it back.</p>';
  return `<section id="cleanup"><h2>Cleanup</h2><p>${deadRows} dead row(s) beside ${liveRows} live in the notification table; ${
    lastVacuumAt ? `last vacuumed ${escape(lastVacuumAt.toISOString())}` : 'never vacuumed'}.</p>${held}</section>`;
}

/** The keys held by a notification that failed for good (afterFailure: 'block'), each with retry and purge of that notification. */
function blockedSection(keys: readonly BlockedKey[], form: (action: string, fields: Record<string, string>, label: string, kind?: string) => string): string {
  const rows = keys.map((k) => `<tr><td>${escape(k.channel)}</td><td><code>${escape(k.key)}</code></td><td class="n"><a href="failed/${escape(k.headId)}">${escape(k.headId)}</a></td>
  <td class="n">${k.waiting}</td><td>${escape(k.failedAt.toISOString())}</td><td class="error">${escape(firstLine(k.lastError))}</td>
  <td class="actions">${form('retry', { ids: k.headId }, 'Retry')}${form('purge', { ids: k.headId }, 'Purge', 'danger')}</td></tr>`).join('');
  return `<section id="blocked"><h2>Blocked keys</h2><p class="note">Each waits for its failed notification (afterFailure: 'block'): retry it, or purge it to let the key go on.</p>
<table><thead><tr><th>channel</th><th>key</th><th>failed id</th><th>waiting</th><th>failed at</th><th>error</th><th></th></tr></thead><tbody>${rows}</tbody></table></section>`;
}

function firstLine(text: string | null): string {
  const line = (text ?? '').split('\n')[0];
  return line.length > 160 ? `${line.slice(0, 159)}…` : line;
}

/** old/new side by side by attribute name, changed ones marked; a custom channel's payload as JSON. */
function diff(found: FailedNotificationDetail): string {
  if (!found.old && !found.new) return `<h3>Payload</h3><pre>${escape(JSON.stringify(found.payload, null, 2))}</pre>`;
  const names = [...new Set([...Object.keys(found.old ?? {}), ...Object.keys(found.new ?? {})])];
  const cell = (row: Record<string, unknown> | null, name: string) => (row && name in row ? JSON.stringify(row[name]) : '');
  const rows = names.map((name) => {
    const before = cell(found.old, name);
    const after = cell(found.new, name);
    const changed = Boolean(found.old && found.new && before !== after);
    return `<tr${changed ? ' class="changed"' : ''}><th>${escape(name)}</th><td><code>${escape(before)}</code></td><td><code>${escape(after)}</code></td></tr>`;
  }).join('');
  return `<h3>Old and new</h3><table class="diff"><thead><tr><th>attribute</th><th>old</th><th>new</th></tr></thead><tbody>${rows}</tbody></table>`;
}

/** Two inline SVG charts: processed per second, and the backlog (due and waiting) with failures. */
function charts(samples: readonly Sample[]): string {
  const now = Date.now();
  const rates = samples.slice(1).map((s, i) => ({ at: s.at, value: throughput(samples[i], s) }));
  const backlog = samples.map((s) => ({ at: s.at, value: s.due + s.waiting }));
  const failedSeries = samples.map((s) => ({ at: s.at, value: s.failed }));
  // The span shown: since the first sample (at least a minute), up to the hour kept.
  const span = Math.min(HOUR_MS, Math.max(60_000, now - (samples[0]?.at ?? now)));
  const note = span < HOUR_MS ? `<p class="note">Sampled by this process while it serves the dashboard: the last ${ms(span)} so far, up to an hour.</p>` : '';
  return `<div class="charts">${chart('Processed per second', [{ points: rates, css: 'rate' }], now, span)}${chart('Backlog (due + waiting) and failed', [{ points: backlog, css: 'backlog' }, { points: failedSeries, css: 'failed' }], now, span)}</div>${note}`;
}

function chart(label: string, series: ReadonlyArray<{ points: ReadonlyArray<{ at: number; value: number }>; css: string }>, now: number, span: number): string {
  const width = 480;
  const height = 140;
  const pad = 28;
  const max = Math.max(1, ...series.flatMap((s) => s.points.map((p) => p.value)));
  const x = (at: number) => pad + ((at - (now - span)) / span) * (width - pad - 12);
  const y = (value: number) => height - 18 - (value / max) * (height - 34);
  const lines = series.map((s) => (s.points.length === 0 ? ''
    : s.points.length === 1 ? `<circle class="${s.css}" cx="${x(s.points[0].at).toFixed(1)}" cy="${y(s.points[0].value).toFixed(1)}" r="2.5"/>`
      : `<polyline class="${s.css}" points="${s.points.map((p) => `${x(p.at).toFixed(1)},${y(p.value).toFixed(1)}`).join(' ')}"/>`)).join('');
  const ticks = [4, 3, 2, 1, 0].map((quarter) => {
    const ago = (span * quarter) / 4;
    return `<text x="${x(now - ago).toFixed(1)}" y="${height - 4}" text-anchor="${quarter === 4 ? 'start' : quarter === 0 ? 'end' : 'middle'}">${quarter ? `-${ms(ago)}` : 'now'}</text>`;
  }).join('');
  const top = max >= 100 ? Math.round(max) : Math.round(max * 10) / 10;
  return `<figure><figcaption>${escape(label)}</figcaption><svg viewBox="0 0 ${width} ${height}" width="${width}" height="${height}" role="img" aria-label="${escape(label)}">
<line class="axis" x1="${pad}" y1="${height - 18}" x2="${width - 8}" y2="${height - 18}"/><line class="axis" x1="${pad}" y1="16" x2="${pad}" y2="${height - 18}"/>
<text x="${pad - 4}" y="20" text-anchor="end">${top}</text><text x="${pad - 4}" y="${height - 18}" text-anchor="end">0</text>${ticks}${lines}</svg></figure>`;
}

const STYLE = `
body{font:14px/1.4 system-ui,sans-serif;margin:0;color:#1b1f24;background:#f6f7f9}
header{background:#1b1f24;color:#fff;padding:10px 20px;display:flex;gap:16px;align-items:baseline}
header a.home{color:#fff;font-weight:700;text-decoration:none}
main{padding:12px 20px;max-width:1200px}
section{background:#fff;border:1px solid #dde1e6;border-radius:6px;padding:8px 14px;margin:12px 0}
h2{font-size:16px;margin:6px 0 10px}h3{font-size:14px;margin:14px 0 6px}
table{border-collapse:collapse;width:100%}th,td{text-align:left;padding:4px 8px;border-bottom:1px solid #eef0f2;vertical-align:top}
th{font-weight:600;color:#555;font-size:12px}td.n{text-align:right;font-variant-numeric:tabular-nums}
td.bad,.bad{color:#b42318}tr.paused td{background:#fff8e1}tr.changed td,tr.changed th{background:#fff3cd}
td.error,pre.error{color:#b42318;font-family:ui-monospace,monospace;font-size:12px}pre{white-space:pre-wrap;background:#f6f7f9;padding:8px;border-radius:4px}
.actions{display:flex;gap:6px;flex-wrap:wrap}form{display:inline;margin:0}
button{font:inherit;font-size:12px;padding:2px 10px;border:1px solid #8c959f;border-radius:4px;background:#fff;cursor:pointer}
button.danger{border-color:#b42318;color:#b42318}
.flash{background:#e6f4ea;border:1px solid #a6d8b4;padding:6px 10px;border-radius:4px}
.charts{display:flex;gap:24px;flex-wrap:wrap}figure{margin:0}figcaption{font-size:12px;color:#555}
svg text{font-size:10px;fill:#666}svg .axis{stroke:#bbb}svg polyline{fill:none!important;stroke-width:2}
svg .rate{stroke:#1f6feb;fill:#1f6feb}svg .backlog{stroke:#9a6700;fill:#9a6700}svg .failed{stroke:#b42318;fill:#b42318}
dl{display:grid;grid-template-columns:max-content 1fr;gap:2px 12px}dt{color:#555}dd{margin:0}
footer,.note{color:#777;font-size:12px;margin:8px 0}`;
