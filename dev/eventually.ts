import { setTimeout as sleep } from 'node:timers/promises';

/** Thrown from an `eventually` check to stop waiting at once (e.g. the process watched has exited). */
export class GiveUp extends Error {
  override name = 'GiveUp';
}

/**
 * Polls `check` until it returns a truthy value, and returns it; fails with `what` (a string, or a
 * function that describes the state, e.g. counts and a child's output) after `timeoutMs`. A check
 * that throws is tried again (the last error is reported), unless it throws GiveUp.
 */
export async function eventually<T>(
  check: () => Promise<T> | T,
  what: string | (() => Promise<string> | string),
  timeoutMs = 10_000,
  everyMs = 25,
): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  let last: unknown;
  for (;;) {
    try {
      const value = await check();
      if (value) return value;
      last = undefined;
    } catch (error) {
      if (error instanceof GiveUp) throw error;
      last = error;
    }
    if (Date.now() > deadline) {
      const described = typeof what === 'string' ? what : await what();
      throw new Error(`timed out after ${timeoutMs} ms waiting for ${described}${last ? `: ${String(last)}` : ''}`);
    }
    await sleep(everyMs);
  }
}
