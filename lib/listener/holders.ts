/**
 * The holder keys of this listener's claim loops (one per `concurrency`): advisory locks held on its
 * LISTEN connection, and the key its in-flight markers carry (lib/db/inflight.ts). A claim whose
 * marker's key is no longer held knows that the listener that claimed the row went away.
 */
import type { Client } from 'pg';
import { type ListenBackend, clearInflight, listenBackend, takeHolderKey } from '../db/inflight';
import type { LibraryObjects } from '../db/objects';
import type { HolderKeys } from './parts';

export class Holders implements HolderKeys {
  #keys: number[] = [];
  #backend: ListenBackend | null = null;

  get holders(): readonly number[] {
    return this.#keys;
  }

  get backend(): ListenBackend | null {
    return this.#backend;
  }

  /** Takes one key per claim loop on a new connection: the same ones again after a reconnect when free. */
  async take(client: Client, loops: number): Promise<void> {
    const keys: number[] = [];
    for (let slot = 0; slot < loops; slot++) keys.push(await takeHolderKey(client, this.#keys[slot] ?? null, keys));
    this.#keys = keys;
    this.#backend = await listenBackend(client);
  }

  /** As the listener stops: its in-flight markers go (its batches are done). */
  async clear(objects: LibraryObjects, client: Client): Promise<void> {
    if (this.#keys.length) await clearInflight(objects, client, this.#keys);
  }
}
