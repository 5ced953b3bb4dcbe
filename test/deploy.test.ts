/**
 * examples/deploy: the systemd unit's ExecStart and the Dockerfile's CMD, run as written (the
 * app's node_modules/.bin/pgpubsub being this checkout's bin), each signalled as its supervisor
 * does it: systemd's SIGTERM, and Docker's to PID 1 alone. Each must exit 0 within its grace
 * period and leave no process and no listener connection behind. The Kubernetes Deployment is
 * checked against the Dockerfile's command and the probes the metrics port serves.
 */
import { expect } from 'chai';
import fs from 'node:fs';
import path from 'node:path';
import { QueryTypes } from 'sequelize';
import { eventually } from '../dev/eventually';
import { BIN, ROOT, spawnProcess } from '../dev/processes';
import { exampleAppPerTest } from './support/example-app-per-test';

const DEPLOY = path.join(ROOT, 'examples', 'deploy');
const read = (file: string) => fs.readFileSync(path.join(DEPLOY, file), 'utf8');

/** The unit's ExecStart, split as systemd splits it (no quoting in ours). */
const unitCommand = () => /^ExecStart=(.+)$/m.exec(read('pgpubsub-listener.service'))![1].trim().split(/\s+/);
/** The Dockerfile's exec-form CMD. */
const dockerCommand = () => JSON.parse(/^CMD (\[.+\])$/m.exec(read('Dockerfile'))![1]) as string[];

const alive = (pid: number) => {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
};

describe('examples/deploy', function () {
  this.timeout(120_000);

  const t = exampleAppPerTest();

  const listeners = async () => (await t.app.sequelize.query<{ n: number }>(
    "SELECT count(*)::int AS n FROM pg_stat_activity WHERE datname = current_database() AND application_name = 'pgpubsub-listener'", { type: QueryTypes.SELECT },
  ))[0].n;

  for (const [what, command] of [['the systemd unit', unitCommand], ['the Dockerfile', dockerCommand]] as const) {
    it(`runs ${what}'s command as written, processes, and exits 0 on SIGTERM to its PID alone, leaving nothing behind`, async () => {
      const [executable, ...args] = command();
      expect(executable).to.match(/node_modules\/\.bin\/pgpubsub$/, 'the package bin, never npx');
      // WorkingDirectory / WORKDIR is the app: here, this checkout (its .sequelizerc, models/).
      const listener = spawnProcess(BIN, args, { DATABASE_URL: t.db.url }, ROOT);
      try {
        await eventually(() => listener.all('worker-listening').length === 2, () => `two workers: ${listener.describe()}`, 60_000);
        await t.app.Author.bulkCreate(Array.from({ length: 40 }, (_, i) => ({ name: `d${i}` })));
        await eventually(async () => (await t.app.Post.count()) === 40, 'the posts');
        const workers = listener.all('worker-started').map((e) => Number(e.workerPid));
        expect(workers).to.have.length(2);
        // Only the main PID gets the signal (Docker's PID 1; systemd's KillMode=mixed).
        listener.kill('SIGTERM');
        const exit = await listener.exited;
        expect(exit.code, listener.describe()).to.equal(0);
        await eventually(() => workers.every((pid) => !alive(pid)), 'no worker left', 10_000);
        await eventually(async () => (await listeners()) === 0, 'no listener connection left', 10_000);
      } finally {
        listener.kill('SIGKILL');
      }
    });
  }

  it("gives Kubernetes the Dockerfile's command, probes on the metrics port, and more time to stop than the grace period", () => {
    const yaml = read('kubernetes.yaml');
    const command = JSON.parse(/command: (\[.+\])$/m.exec(yaml)![1]) as string[];
    expect(command).to.deep.equal(dockerCommand());
    const port = command[command.indexOf('--metrics-port') + 1];
    // The kubelet probes and Prometheus scrapes the pod's address, not the container's loopback.
    expect(command[command.indexOf('--metrics-host') + 1], 'the metrics port bound where probes reach it').to.equal('0.0.0.0');
    expect(yaml).to.contain(`containerPort: ${port}`).and.to.contain('path: /healthz').and.to.contain('path: /readyz');
    const grace = Number(command[command.indexOf('--grace-period') + 1]) / 1000;
    expect(Number(/terminationGracePeriodSeconds: (\d+)/.exec(yaml)![1])).to.be.greaterThan(grace);
    expect(Number(/TimeoutStopSec=(\d+)/.exec(read('pgpubsub-listener.service'))![1])).to.be.greaterThan(grace);
  });
});
