/**
 * Real nats-server processes for the relay's tests and bench: JetStream on, each with its own store
 * folder and loopback ports, alone or as a cluster (routes between them). The Debian package is
 * installed when missing (dev/debian.ts), as CI runs on a clean machine.
 */
import { type ChildProcess, spawn } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { debianPackageProblem } from './debian';
import { freePort } from './postgres';

const NATS_SERVER = '/usr/sbin/nats-server';
const running = new Set<ChildProcess>();
process.on('exit', () => {
  for (const child of running) child.kill('SIGKILL');
});

/** Why nats-server cannot be had here, or null (installed now if it was missing). */
export function natsServerProblem(): string | null {
  return debianPackageProblem(NATS_SERVER, 'nats-server');
}

export interface NatsServerOptions {
  /** Client port; default a free one. */
  port?: number;
  /** A cluster member: its name, its route port and the route URLs of all members. */
  cluster?: { name: string; serverName: string; port: number; routes: string[] };
  storeDir?: string;
}

export class NatsServer {
  readonly port: number;
  readonly storeDir: string;
  readonly #args: string[];
  #child: ChildProcess | null = null;
  #log = '';

  constructor(port: number, storeDir: string, args: string[]) {
    this.port = port;
    this.storeDir = storeDir;
    this.#args = args;
  }

  get url(): string {
    return `nats://127.0.0.1:${this.port}`;
  }

  get log(): string {
    return this.#log;
  }

  get running(): boolean {
    return this.#child !== null && this.#child.exitCode === null && this.#child.signalCode === null;
  }

  /** Starts it; resolves once it says it is ready (`Server is ready`). */
  async start(timeoutMs = 20_000): Promise<this> {
    const child = this.#child = spawn(NATS_SERVER, this.#args, { stdio: ['ignore', 'pipe', 'pipe'] });
    running.add(child);
    child.once('exit', () => running.delete(child));
    const from = this.#log.length;
    for (const stream of [child.stdout!, child.stderr!]) stream.on('data', (chunk) => { this.#log = (this.#log + chunk).slice(-200_000); });
    const deadline = Date.now() + timeoutMs;
    while (!this.#log.slice(from).includes('Server is ready')) {
      if (child.exitCode !== null) throw new Error(`nats-server ${this.#args.join(' ')} exited ${child.exitCode}:\n${this.#log.slice(from)}`);
      if (Date.now() > deadline) throw new Error(`nats-server on ${this.port} not ready within ${timeoutMs} ms:\n${this.#log.slice(from)}`);
      await new Promise((resolve) => setTimeout(resolve, 50));
    }
    return this;
  }

  /** Stops it (SIGTERM: a clean shutdown; SIGKILL: kill -9) and waits for it to exit. */
  async stop(signal: NodeJS.Signals = 'SIGTERM'): Promise<void> {
    const child = this.#child;
    if (!child || child.exitCode !== null || child.signalCode !== null) return;
    const exited = new Promise((resolve) => child.once('exit', resolve));
    child.kill(signal);
    await exited;
  }

  /** Stops it and removes its store. */
  async destroy(): Promise<void> {
    await this.stop('SIGKILL');
    fs.rmSync(this.storeDir, { recursive: true, force: true });
  }
}

/** A JetStream server on loopback, not started yet (start() it). */
export async function natsServer(options: NatsServerOptions = {}): Promise<NatsServer> {
  const port = options.port ?? await freePort();
  const storeDir = options.storeDir ?? fs.mkdtempSync(path.join(os.tmpdir(), 'pgpubsub-nats-'));
  const args = ['-js', '-a', '127.0.0.1', '-p', String(port), '-sd', storeDir];
  if (options.cluster) {
    args.push('-n', options.cluster.serverName, '--cluster_name', options.cluster.name, '--cluster', `nats://127.0.0.1:${options.cluster.port}`, '--routes', options.cluster.routes.join(','));
  }
  return new NatsServer(port, storeDir, args);
}

/** Three JetStream servers routed into one cluster (for R3 streams), started. */
export async function natsCluster(name = 'pgpubsub'): Promise<NatsServer[]> {
  // Six distinct ports, chosen before any is bound (freePort() may give a port again until it is).
  const ports = new Set<number>();
  while (ports.size < 6) ports.add(await freePort());
  const [c1, c2, c3, ...routePorts] = [...ports];
  const routes = routePorts.map((port) => `nats://127.0.0.1:${port}`);
  const servers = await Promise.all(routePorts.map((port, i) => natsServer({ port: [c1, c2, c3][i], cluster: { name, serverName: `${name}-${i + 1}`, port, routes } })));
  await Promise.all(servers.map((server) => server.start()));
  return servers;
}
