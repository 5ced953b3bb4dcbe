import { CallbackFailed } from './failures';

/**
 * Runs `tasks`, at most `limit` at once, in order of start. After a failure it starts no more,
 * waits for those running, and throws: a failure of the connection first (it is no message's
 * fault), else the first failure.
 */
export async function runAtOnce(tasks: ReadonlyArray<() => Promise<void>>, limit: number): Promise<void> {
  let next = 0;
  const errors: unknown[] = [];
  const lane = async () => {
    while (next < tasks.length && errors.length === 0) {
      const task = tasks[next++];
      try {
        await task();
      } catch (error) {
        errors.push(error);
      }
    }
  };
  await Promise.all(Array.from({ length: Math.min(limit, tasks.length) }, lane));
  if (errors.length) throw errors.find((error) => !(error instanceof CallbackFailed)) ?? errors[0];
}
