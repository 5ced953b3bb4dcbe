/**
 * The channels one listener processes, resolved once at its start: which they are (checked to have
 * a callback), their time limits, and what the claims and the warnings at start need to know of them.
 */
import type { AnyChannel } from '../channels/channel';
import { ListenOptionsError } from '../errors';
import type { Logger } from '../ops/logger';
import type { TimeLimits } from './callbacks';
import { decodeMessage } from '../channels/message';
import type { ClaimedRow } from '../db/store';
import type { ListenerHost, RawMessage } from './types';

export class ListenerChannels implements TimeLimits {
  readonly all: readonly AnyChannel[];
  /** The durable channels' names: what its claims take. */
  readonly durable: readonly string[];
  /** The longest time limit of its durable channels: what the claim sets on the server. */
  readonly claimTimeoutMs: number;
  /** Its channels ordered by row, and those of them that coalesce. */
  readonly ordered: ReadonlySet<string>;
  readonly coalescing: ReadonlySet<string>;
  /** Batch callbacks take the stored rows as they are (ListenerHost.rawBatches). */
  readonly raw: boolean;
  readonly #host: ListenerHost;
  readonly #defaultTimeoutMs: number;
  /** listen({ channels }) named its channels: the others are not its business. */
  readonly #given: boolean;

  /** `names`: listen()'s `channels` option; without it, every channel with a callback. */
  constructor(host: ListenerHost, names: readonly string[] | undefined, defaultTimeoutMs: number) {
    this.#host = host;
    this.raw = host.rawBatches === true;
    this.#defaultTimeoutMs = defaultTimeoutMs;
    this.#given = names !== undefined;
    const chosen = names ?? host.channels().filter((c) => this.#handled(c.name)).map((c) => c.name);
    if (chosen.length === 0) {
      throw new ListenOptionsError('PGPUBSUB_NO_CALLBACKS', 'listen: no channel has a callback. Register one first, e.g. sequelize.pgpubsub.on(Author, \'author_created\', callback)');
    }
    this.all = chosen.map((name) => {
      const channel = host.channel(name);
      if (!this.#handled(name)) {
        // Claiming a durable notification with nothing to run would delete it unprocessed.
        throw new ListenOptionsError('PGPUBSUB_NO_CALLBACKS', `listen: channel '${name}' has no callback. Register one with sequelize.pgpubsub.on(…) before listening, or leave it out of channels`);
      }
      return channel;
    });
    this.durable = this.all.filter((c) => c.durable).map((c) => c.name);
    this.claimTimeoutMs = Math.max(...this.all.map((c) => this.timeoutOf(c)));
    const model = this.all.flatMap((c) => (c.kind === 'model' && c.ordering ? [c] : []));
    this.ordered = new Set(model.map((c) => c.name));
    this.coalescing = new Set(model.filter((c) => c.coalesce).map((c) => c.name));
  }

  get names(): string[] {
    return this.all.map((c) => c.name);
  }

  /** One of this listener's channels (a claimed row's: claims take only these). */
  get(name: string): AnyChannel {
    const channel = this.all.find((c) => c.name === name);
    if (!channel) throw new Error(`listener: channel '${name}' is not one of this listener's (${this.names.join(', ')})`);
    return channel;
  }

  find(name: string): AnyChannel | undefined {
    return this.all.find((c) => c.name === name);
  }

  timeoutOf(channel: AnyChannel): number {
    return channel.timeoutMs ?? this.#defaultTimeoutMs;
  }

  /** A claimed row's message for its callbacks: decoded against its channel, or as it is stored for a relay (`raw`). */
  messageOf(channel: AnyChannel, row: ClaimedRow, attempt: number): unknown {
    if (this.raw) return { id: row.id, channel: row.channel, payload: row.payload, attempt } satisfies RawMessage;
    return decodeMessage(channel, row.payload, row.id);
  }

  /** The channel's messages go to its batch callbacks (onBatch), not one at a time. */
  takesBatches(name: string): boolean {
    return this.#host.batchCallbacks(name).length > 0;
  }

  #handled(name: string): boolean {
    return this.#host.callbacks(name).length + this.#host.batchCallbacks(name).length > 0;
  }

  /** A durable channel nobody here handles stores notifications that only a listener elsewhere can take. */
  warnUnhandled(log: Logger): void {
    if (this.#given) return;
    for (const channel of this.#host.channels()) {
      if (!channel.durable || this.#handled(channel.name)) continue;
      log.warn(`durable channel '${channel.name}' has no callback in this process: its notifications are stored and wait for a listener that has one (register one with sequelize.pgpubsub.on(…), or leave the channel out of the definitions)`, {
        event: 'no-callback', channel: channel.name,
      });
    }
  }

  /** Why stored rows on `channel`, not one of this listener's, wait for another listener. */
  strayReason(channel: string): string {
    const known = this.#host.channels().find((c) => c.name === channel);
    if (!known) return 'no channel of that name is defined in this app (renamed or removed?)';
    if (!known.durable) return 'it is a broadcast channel now, so nothing claims stored rows';
    return this.#handled(channel) ? 'this listener was started without it (channels option)' : 'it has no callback here';
  }
}
