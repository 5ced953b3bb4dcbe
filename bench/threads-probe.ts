import fs from 'node:fs';
import { startPostgres } from '../dev/postgres';
import { Results } from './results';
import { ceiling } from './systems/ceiling';
import { ours } from './systems/ours';
import { drainOnce } from './workloads/drain';

function threads(match: string): Map<string, number> {
  const out = new Map<string, number>();
  for (const pid of fs.readdirSync('/proc').filter((d) => /^\d+$/.test(d))) {
    let cmd = '';
    try { cmd = fs.readFileSync(`/proc/${pid}/cmdline`, 'utf8'); } catch { continue; }
    if (!cmd.includes(match) || cmd.includes('threads-probe')) continue;
    for (const tid of fs.readdirSync(`/proc/${pid}/task`)) {
      try {
        const name = fs.readFileSync(`/proc/${pid}/task/${tid}/comm`, 'utf8').trim();
        const stat = fs.readFileSync(`/proc/${pid}/task/${tid}/stat`, 'utf8');
        const f = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
        const key = `${pid === tid ? 'main' : name}`;
        out.set(key + ' user', (out.get(key + ' user') ?? 0) + Number(f[11]) * 10);
        out.set(key + ' sys', (out.get(key + ' sys') ?? 0) + Number(f[12]) * 10);
      } catch { /* gone */ }
    }
  }
  return out;
}

async function main() {
  const which = process.argv[2] ?? 'ours';
  const procs = Number(process.argv[3] ?? 4);
  const system = which === 'ours' ? ours() : ceiling({ savepoints: false, sequelize: true });
  const match = which === 'ours' ? 'ours-app.ts' : 'ceiling-worker.ts';
  const server = await startPostgres({ durable: true });
  const ctx = { serverUrl: server.url, quick: false, runs: 1, results: new Results(), log: () => undefined };
  const r = await drainOnce(ctx, system, 20000, procs, {
    during: () => {
      const before = threads(match);
      return async () => {
        const after = threads(match);
        const d: Record<string, number> = {};
        for (const [k, v] of after) d[k] = (v - (before.get(k) ?? 0)) / 20; // ms per 1k msgs
        return d;
      };
    },
  });
  console.log(which, procs, Math.round(r.values.rate), 'msg/s', r.values.workerCpuMsPerK.toFixed(0), 'ms/1k', JSON.stringify((r.detail as any).during));
  await server.stop();
}
main();
