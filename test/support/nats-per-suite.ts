import { type NatsServer, natsServer, natsServerProblem } from '../../dev/nats';

/** Mocha hooks for a describe block: one JetStream server (dev/nats.ts) started before its tests, removed after. */
export function natsServerPerSuite(): { readonly server: NatsServer } {
  let server: NatsServer | undefined;
  before(async function () {
    const problem = natsServerProblem();
    if (problem) throw new Error(problem);
    server = await (await natsServer()).start();
  });
  after(async () => {
    await server?.destroy();
  });
  return { get server() { return server!; } };
}
