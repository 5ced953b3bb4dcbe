/**
 * The listener's event sink: how its parts emit its events (ListenerEvents) without holding the
 * listener. A handler that throws is logged here, never taken for the message's own failure.
 */
import type { EventEmitter } from 'node:events';
import { errorText } from '../error-text';
import type { Logger } from '../ops/logger';
import type { EventSink } from './parts';
import type { ListenerEvents } from './types';

export class ListenerEventSink implements EventSink {
  readonly #emitter: EventEmitter<ListenerEvents>;
  readonly #log: Logger;

  constructor(emitter: EventEmitter<ListenerEvents>, log: Logger) {
    this.#emitter = emitter;
    this.#log = log;
  }

  tell<K extends keyof ListenerEvents & string>(event: K, ...args: ListenerEvents[K]): void {
    try {
      (this.#emitter.emit as (name: string, ...rest: unknown[]) => boolean).call(this.#emitter, event, ...args);
    } catch (error) {
      this.#log.error(`a '${event}' event handler threw`, { event: 'event-handler-failed', name: event, error: errorText(error), err: error });
    }
  }

  listens(event: keyof ListenerEvents & string): boolean {
    return this.#emitter.listenerCount(event) > 0;
  }

  reportError(error: unknown): void {
    if (this.listens('error')) this.#emitter.emit('error', error);
  }
}
