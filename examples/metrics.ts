/** docs/operations.md, "Metrics and probes": the listener's and the database's figures, for an app that calls listen() itself. */
import assert from 'node:assert/strict';
import http from 'node:http';
import pgpubsub, { channel } from 'sequelize-pgpubsub';
import { migrate, sequelize } from './app.js';

const Invoice = channel<{ number: number }>('invoice_metrics');
sequelize.use(pgpubsub, { channels: [Invoice] });
await migrate();
sequelize.pgpubsub.on(Invoice, () => undefined);

const metrics = sequelize.pgpubsub.metrics();
const listener = await sequelize.pgpubsub.listen();
metrics.observe(listener);
// GET /metrics (Prometheus text), /healthz, /readyz: or serve `await metrics.text()` from your own route.
const server = http.createServer(metrics.handler()).listen(9464);

await sequelize.pgpubsub.notify(Invoice, { number: 1 });
while (listener.stats.processed < 1) await new Promise((resolve) => setTimeout(resolve, 25));
const text = await (await fetch('http://127.0.0.1:9464/metrics')).text();
assert.match(text, /^pgpubsub_processed_total\{channel="invoice_metrics"\} 1$/m);
assert.match(text, /^pgpubsub_lag_seconds_count\{channel="invoice_metrics"\} 1$/m);
assert.match(text, /^pgpubsub_listeners_up 1$/m);
assert.equal((await fetch('http://127.0.0.1:9464/readyz')).status, 200);
server.close();
await listener.stop();
await sequelize.close();
console.log('metrics example ok');
