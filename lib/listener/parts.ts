/**
 * The small interfaces the listener's parts are given instead of the listener itself (internal:
 * lib/index.ts exports none of them).
 */
import type { Client } from 'pg';
import type { ClaimFilter } from '../db/store';
import type { ListenerEvents } from './types';
import type { ListenBackend } from '../db/inflight';
import type { CleanupStatus } from '../db/cleanup';

/** The LISTEN connection as the listener's parts see it: null while it reconnects (or once closed). */
export interface ClientSource {
  readonly client: Client | null;
}

/** Whether the listener is stopping: nothing new starts then (no claim, no retry, no reconnect). */
export interface Lifetime {
  readonly stopping: boolean;
}

/** The holder keys of the claim loops (one per `concurrency`), held on the LISTEN connection, and that connection. */
export interface HolderKeys {
  readonly holders: readonly number[];
  /** The backend of the LISTEN connection that holds the keys (what in-flight markers name); null before the first. */
  readonly backend: ListenBackend | null;
}

/** What claims take now: the listener's durable channels, without the paused ones, and its context filter. */
export interface ClaimScope {
  readonly claimable: ClaimFilter;
}

/** Where the listener's parts send its events. */
export interface EventSink {
  /** Emits an event; a handler that throws is logged, and never taken for the message's own failure. */
  tell<K extends keyof ListenerEvents & string>(event: K, ...args: ListenerEvents[K]): void;
  /** Whether anyone listens for this event (per-message events are built only then). */
  listens(event: keyof ListenerEvents & string): boolean;
  /** Emits 'error' when someone listens for it (the failure is already logged). */
  reportError(error: unknown): void;
}

/** The cleanup watch as the heartbeat sees it: the heartbeat's statement reads cleanup too when `wanted()`. */
export interface CleanupWatch {
  wanted(): boolean;
  saw(status: CleanupStatus): void;
  /** The heartbeat's read of cleanup failed with a server error: the watch reads it apart from now on. */
  unreadable(error: unknown): void;
}
