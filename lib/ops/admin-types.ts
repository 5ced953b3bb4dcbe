/** What the admin API (lib/ops/admin.ts) answers: the status, failed notifications, blocked keys, selections. */
import type { CleanupStatus } from '../db/cleanup';

export type { CleanupHolder, CleanupStatus } from '../db/cleanup';

/** One channel's stored notifications, and who listens on it. */
export interface ChannelStatus {
  channel: string;
  /** Defined in this app's code: false for rows on a channel no code here defines (renamed, removed, another app's). */
  defined: boolean;
  /** Pending and due now: what a listener could claim. */
  due: number;
  /** Pending, not claimable now: waiting for a retry, a delay, or an earlier notification of its key (ordered channels). */
  waiting: number;
  /** Failed for good (`failed_at` set): kept until retried or purged. */
  failed: number;
  /** Keys held by a notification that failed for good (`afterFailure: 'block'`): their later ones wait (`admin.blocked()` lists them). */
  blocked: number;
  /** Age of the oldest due notification, in ms; null when none is due. */
  oldestDueAgeMs: number | null;
  /**
   * A count passed 20,000 (COUNT_CAP) and the counts past it are estimates from a sample of about
   * 500 of the table's pages (a status reads each channel's first rows from its indexes, never the
   * whole table); a sample that found none of the channel's rows leaves it at 20,001, not
   * estimated. The oldest due age is that of the first 1,000 due rows in due order.
   */
  estimated: boolean;
  /**
   * The highest lag (from a producing transaction to its callbacks' start) of the messages that
   * live listeners started within about the last minute, in ms, as they report it; null when none did.
   */
  recentLagMs: number | null;
  /** Live listeners on the channel (each holds its listening lock). */
  listeners: number;
  /** A listener is draining its backlog (producers skip their NOTIFYs meanwhile). */
  draining: boolean;
  /** Paused (`pause()`): stored, claimed by no listener until resumed. */
  paused: boolean;
  /** Messages an inbox here (a listener fed from NATS JetStream) failed for good: rows of `pgpubsub.inbox` with `failed_at`. */
  inboxFailed: number;
}

/**
 * A key of an ordered channel with `afterFailure: 'block'` whose notification failed for good: the
 * key's later notifications wait until it is retried (`retry({ ids: [headId] })`) or purged.
 */
export interface BlockedKey {
  channel: string;
  /** The ordering key as stored: the JSON array of the key's values (the primary key, or `orderingKey`'s attributes). */
  key: string;
  /** The failed notification that holds the key. */
  headId: string;
  failedAt: Date;
  lastError: string | null;
  /** Notifications of the key waiting behind it. */
  waiting: number;
}

/** A live listener: its LISTEN connection, as the server sees it. */
export interface ListenerStatus {
  /** The server process id of its LISTEN connection (pg_terminate_backend takes it). */
  backendPid: number;
  /** Where it connects from (null over a Unix socket, or without the rights to see it). */
  clientAddress: string | null;
  /** The host name and process id of the listener, and when it started, as it reports them (null until its first report). */
  host: string | null;
  pid: number | null;
  startedAt: Date | null;
  /** When its LISTEN connection was made (null for a role that may not see other roles' sessions: pg_read_all_stats). */
  since: Date | null;
  channels: string[];
  draining: string[];
  /** Its claim loops' holder keys (see the in-flight markers). */
  holders: number[];
  /** The ids (still stored) of the batches it has in hand. */
  inHand: string[];
}

export interface Status {
  channels: ChannelStatus[];
  listeners: ListenerStatus[];
  /** The notification table's dead rows and what holds back their cleanup (see docs/performance.md, "A long transaction stops vacuum"). */
  cleanup: CleanupStatus;
  /** When the database answered. */
  at: Date;
}

/** A failed notification, as `failed ls` lists it. */
export interface FailedNotification {
  id: string;
  channel: string;
  attempts: number;
  lastError: string | null;
  createdAt: Date;
  failedAt: Date;
}

/** One failed notification in full: its payload, with a model channel's rows by attribute name. */
export interface FailedNotificationDetail extends FailedNotification {
  op: string | null;
  old: Record<string, unknown> | null;
  new: Record<string, unknown> | null;
  /** A custom channel's payload (null for model channels). */
  payload: unknown;
  context: unknown;
  /** Why the payload could not be read as a message of its channel, if it could not. */
  decodeError: string | null;
}

/** Which failed notifications: by id, every one on a channel, failed before a time, or all. */
export type FailedSelection = { ids: readonly (string | number)[] } | { channel: string } | { failedBefore: Date } | { all: true };
