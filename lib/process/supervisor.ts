import cluster, { type Worker } from 'node:cluster';
import { jitteredBackoff } from './backoff';
import type { RunningAlone } from '../listener/types';
import type { Logger } from '../ops/logger';

export interface SuperviseOptions {
  /** Worker processes to keep running. */
  processes: number;
  /** Replace a worker that dies (default true). */
  restartOnFailure?: boolean;
  logger: Logger;
  /** Give up after this many deaths within `crashWindowMs` (default 5 in 60 s). */
  crashLimit?: number;
  crashWindowMs?: number;
  /** Restart delay bounds; the delay doubles per consecutive death of a slot, with jitter (default 500 ms to 30 s). */
  minRestartDelayMs?: number;
  maxRestartDelayMs?: number;
  /** A worker up this long counts as healthy again: its slot's delay starts over (default 30 s). */
  stableAfterMs?: number;
  /** After SIGTERM/SIGINT, how long workers get to finish their batch before they are killed (default 30 s). */
  gracePeriodMs?: number;
  /** Kept up to date with the workers that listen and the restarts (read by the metrics and /readyz). */
  state?: SupervisorState;
  /** More environment for the workers. */
  env?: Record<string, string>;
}

/** What the supervisor knows of its workers, kept up to date as they start, listen and die. */
export class SupervisorState {
  /** The workers that said they are listening and are still running, by slot. */
  readonly listening = new Map<number, Worker>();
  /** The workers running (listening or not), by slot. */
  readonly running = new Map<number, Worker>();
  /** Workers replaced after dying. */
  restarts = 0;
}

interface Slot {
  id: number;
  worker: Worker | null;
  startedAt: number;
  failures: number;
  timer: NodeJS.Timeout | null;
  /** What the worker said it runs alone (the retry of a notification a dead process held), until it says it is done. */
  alone: RunningAlone | null;
}

/** Messages a worker sends its primary. */
export type WorkerMessage =
  | { type: 'pgpubsub:listening' }
  /** Listening, but its drains fail in a row: not ready until it says it is listening again. */
  | { type: 'pgpubsub:failing' }
  | { type: 'pgpubsub:stopped'; stats: unknown }
  | ({ type: 'pgpubsub:alone' } & RunningAlone)
  | { type: 'pgpubsub:alone-done' }
  /** The worker cannot run at all (e.g. the library is not installed): restarting it would not help. */
  | { type: 'pgpubsub:fatal'; reason: string; code?: number }
  /** Its metrics (prom-client's JSON), asked for by the primary's metrics endpoint. */
  | { type: 'pgpubsub:metrics'; requestId: number; metrics: unknown };

/**
 * The cluster primary: forks one worker per slot (each runs the same command, which sees it is a
 * worker and listens), replaces a worker that dies after a backoff, gives up on a crash loop, and
 * on SIGTERM/SIGINT lets workers finish their batch. Resolves to the process's exit code.
 */
export function supervise(options: SuperviseOptions): Promise<number> {
  const {
    processes, logger: log, restartOnFailure = true, crashLimit = 5, crashWindowMs = 60_000,
    minRestartDelayMs = 500, maxRestartDelayMs = 30_000, stableAfterMs = 30_000, gracePeriodMs = 30_000,
    state = new SupervisorState(), env = {},
  } = options;
  const slots: Slot[] = Array.from({ length: processes }, (_, i) => ({ id: i + 1, worker: null, startedAt: 0, failures: 0, timer: null, alone: null }));
  const deaths: number[] = [];
  let stopping: { code: number; reason: string } | null = null;
  let resolveExit: (code: number) => void;
  const exited = new Promise<number>((resolve) => { resolveExit = resolve; });

  const fork = (slot: Slot) => {
    slot.timer = null;
    if (stopping) return;
    const worker = cluster.fork({ ...env, PGPUBSUB_WORKER_SLOT: String(slot.id) });
    slot.worker = worker;
    state.running.set(slot.id, worker);
    slot.startedAt = Date.now();
    slot.alone = null;
    log.info(`worker ${slot.id} started`, { event: 'worker-started', worker: slot.id, workerPid: worker.process.pid });
    worker.on('message', (message: WorkerMessage) => {
      if (message?.type === 'pgpubsub:listening') state.listening.set(slot.id, worker);
      if (message?.type === 'pgpubsub:failing' && state.listening.get(slot.id) === worker) state.listening.delete(slot.id);
      if (message?.type === 'pgpubsub:listening') log.info(`worker ${slot.id} listening`, { event: 'worker-listening', worker: slot.id, workerPid: worker.process.pid });
      if (message?.type === 'pgpubsub:stopped') log.info(`worker ${slot.id} stopped`, { event: 'worker-stopped', worker: slot.id, stats: message.stats });
      if (message?.type === 'pgpubsub:alone') slot.alone = { id: message.id, channel: message.channel, attempt: message.attempt, maxAttempts: message.maxAttempts };
      if (message?.type === 'pgpubsub:alone-done') slot.alone = null;
      if (message?.type === 'pgpubsub:fatal') stopAll(message.code ?? 1, `worker ${slot.id} cannot run: ${message.reason}`);
    });
    // An IPC error (a message to a worker that is dying): its 'exit' says what happened.
    worker.on('error', (error) => log.debug(`worker ${slot.id}: ${error.message}`, { event: 'worker-ipc-error', worker: slot.id, error: error.message }));
    // Read every message the worker sent before judging its exit: 'exit' can come before the last of them.
    worker.on('exit', (code, signal) => {
      if (state.listening.get(slot.id) === worker) state.listening.delete(slot.id);
      if (!worker.isConnected()) onExit(slot, worker, code, signal);
      else {
        const settle = setTimeout(() => onExit(slot, worker, code, signal), 500);
        worker.once('disconnect', () => { clearTimeout(settle); onExit(slot, worker, code, signal); });
      }
    });
  };

  const running = () => slots.filter((slot) => slot.worker !== null);

  const finish = () => {
    if (running().length > 0) return;
    for (const slot of slots) if (slot.timer) clearTimeout(slot.timer);
    process.off('SIGTERM', onSignal).off('SIGINT', onSignal);
    if (stopping!.code === 0) log.info('all workers stopped; exiting', { event: 'exiting', exitCode: 0 });
    else log.error(`exiting: ${stopping!.reason}`, { event: 'exiting', exitCode: stopping!.code, reason: stopping!.reason });
    resolveExit(stopping!.code);
  };

  const stopAll = (code: number, reason: string) => {
    stopping ??= { code, reason };
    for (const slot of slots) {
      if (slot.timer) clearTimeout(slot.timer);
      slot.timer = null;
      const worker = slot.worker;
      // A worker dying right now cannot take the order (EPIPE): a signal then, and its exit follows.
      if (worker?.isConnected()) worker.send({ type: 'pgpubsub:shutdown' }, (error) => { if (error) worker.process.kill('SIGTERM'); });
      else worker?.process.kill('SIGTERM');
    }
    const grace = setTimeout(() => {
      log.error(`workers still running after ${gracePeriodMs} ms; killing them`, { event: 'grace-period-over' });
      stopping = { code: stopping?.code || 1, reason: 'grace period expired' };
      for (const slot of running()) slot.worker!.process.kill('SIGKILL');
    }, gracePeriodMs);
    grace.unref();
    finish();
  };

  const onExit = (slot: Slot, worker: Worker, code: number | null, signal: string | null) => {
    if (slot.worker !== worker) return;
    slot.worker = null;
    state.running.delete(slot.id);
    state.listening.delete(slot.id);
    const how = signal ? `signal ${signal}` : `code ${code}`;
    if (stopping) {
      log.info(`worker ${slot.id} exited (${how})`, { event: 'worker-exited', worker: slot.id, code, signal });
      finish();
      return;
    }
    const uptime = Date.now() - slot.startedAt;
    const alone = slot.alone;
    if (alone) {
      // Charged to that notification before it ran: it fails after maxAttempts, so such deaths end by
      // themselves and do not count toward the crash loop, nor slow the slot's restart.
      const fate = alone.attempt >= alone.maxAttempts ? 'it is now failed for good' : 'it will be retried alone';
      log.error(`worker ${slot.id} died (${how}) while running notification ${alone.id} on '${alone.channel}' (attempt ${alone.attempt} of ${alone.maxAttempts}, charged; ${fate})`, {
        event: 'worker-died', worker: slot.id, workerPid: worker.process.pid, code, signal, uptimeMs: uptime,
        notification: alone.id, channel: alone.channel, attempt: alone.attempt, maxAttempts: alone.maxAttempts, failedForGood: alone.attempt >= alone.maxAttempts,
      });
    } else {
      log.error(`worker ${slot.id} died (${how}) after ${uptime} ms`, { event: 'worker-died', worker: slot.id, workerPid: worker.process.pid, code, signal, uptimeMs: uptime });
    }
    if (!restartOnFailure) {
      if (running().length === 0) stopAll(1, 'every worker died and restart on failure is off');
      return;
    }
    const now = Date.now();
    if (!alone) deaths.push(now);
    while (deaths.length && deaths[0] < now - crashWindowMs) deaths.shift();
    if (deaths.length >= crashLimit) {
      stopAll(1, `crash loop: ${deaths.length} worker deaths within ${crashWindowMs / 1000} s`);
      return;
    }
    if (!alone) slot.failures = uptime >= stableAfterMs ? 1 : slot.failures + 1;
    slot.failures = Math.max(1, slot.failures);
    const delay = jitteredBackoff(slot.failures, minRestartDelayMs, maxRestartDelayMs);
    log.warn(`replacing worker ${slot.id} in ${delay} ms`, { event: 'worker-replacing', worker: slot.id, delayMs: delay, consecutiveFailures: slot.failures });
    slot.timer = setTimeout(() => { state.restarts++; fork(slot); }, delay);
  };

  let signals = 0;
  const onSignal = (signal: NodeJS.Signals) => {
    signals++;
    if (signals === 1) {
      log.info(`${signal} received: workers finish their batch and stop (send again to force)`, { event: 'signal', signal });
      stopAll(0, signal);
    } else {
      log.warn(`${signal} received again: killing workers`, { event: 'signal-again', signal });
      stopping = { code: 1, reason: `forced by a second ${signal}` };
      for (const slot of running()) slot.worker!.process.kill('SIGKILL');
      finish();
    }
  };
  process.on('SIGTERM', onSignal).on('SIGINT', onSignal);

  log.info(`starting ${processes} worker(s)`, { event: 'starting', processes });
  slots.forEach(fork);
  return exited;
}
