/**
 * Every error this library raises on purpose, one class per kind of problem, each with a fixed
 * code or a small set of codes. The message names the thing at fault and the fix; `code` is
 * stable for programmatic handling.
 */

/** Every code a PgPubSubError can carry. */
export type PgPubSubErrorCode =
  | ChannelDefinitionError['code']
  | ChannelUsageError['code']
  | ContextError['code']
  | NotifyPayloadError['code']
  | MalformedPayloadError['code']
  | ListenOptionsError['code']
  | CallbackTimeoutError['code']
  | NonRetryableError['code']
  | MissingTableError['code']
  | LibraryVersionError['code']
  | SetupError['code']
  | AppLoadError['code']
  | TriggerMigrationError['code']
  | AdminUsageError['code']
  | RelayError['code'];

export class PgPubSubError extends Error {
  readonly code: PgPubSubErrorCode;

  constructor(code: PgPubSubErrorCode, message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = 'PgPubSubError';
    this.code = code;
  }
}

/** The base of the classes below: a PgPubSubError whose `code` is one of `C`. Not exported from the package. */
export class CodedError<C extends PgPubSubErrorCode> extends PgPubSubError {
  declare readonly code: C;

  constructor(code: C, message: string, options?: { cause?: unknown }) {
    super(code, message, options);
  }
}

/** One or more channel definitions (model or custom) are invalid. Lists every problem found. */
export class ChannelDefinitionError extends CodedError<'PGPUBSUB_INVALID_CHANNEL'> {
  override readonly name = 'ChannelDefinitionError';
  readonly problems: string[];

  /** `message` defaults to the problems, one per line after a count when there are several. */
  constructor(problems: string[], message?: string) {
    super(
      'PGPUBSUB_INVALID_CHANNEL',
      message ?? (problems.length === 1
        ? problems[0]
        : `${problems.length} invalid channel definitions:\n  - ${problems.join('\n  - ')}`),
    );
    this.problems = problems;
  }
}

/**
 * A valid channel used wrongly: an unknown name, notify() on a model channel, on() with the wrong
 * model or no function, a callback's `context.query()` after its transaction ended.
 */
export class ChannelUsageError extends CodedError<'PGPUBSUB_UNKNOWN_CHANNEL' | 'PGPUBSUB_NOTIFY_MODEL_CHANNEL' | 'PGPUBSUB_CHANNEL_MODEL' | 'PGPUBSUB_CALLBACK' | 'PGPUBSUB_QUERY_AFTER_END'> {
  override readonly name = 'ChannelUsageError';
}

/** setContext() or withContext() called wrongly: a bad scope, a context that is not a plain object, no transaction to hold it. */
export class ContextError extends CodedError<'PGPUBSUB_CONTEXT_SCOPE' | 'PGPUBSUB_CONTEXT_TYPE' | 'PGPUBSUB_CONTEXT_NO_TRANSACTION'> {
  override readonly name = 'ContextError';
}

/** A payload notify() cannot send: not an object, too large for a broadcast channel's NOTIFY, or a delay it cannot take. */
export class NotifyPayloadError extends CodedError<'PGPUBSUB_PAYLOAD_TYPE' | 'PGPUBSUB_PAYLOAD_TOO_LARGE' | 'PGPUBSUB_DELAY'> {
  override readonly name = 'NotifyPayloadError';
}

/** A received payload that cannot be turned into a message; the notification is kept and marked, never dropped. */
export class MalformedPayloadError extends CodedError<'PGPUBSUB_MALFORMED_PAYLOAD'> {
  override readonly name = 'MalformedPayloadError';

  constructor(channel: string, problem: string) {
    super('PGPUBSUB_MALFORMED_PAYLOAD', `notification on channel '${channel}': ${problem}`);
  }
}

/**
 * listen() called with bad options (`problems` lists each), for channels that have no callback,
 * with its LISTEN connection through a transaction pooler (PGPUBSUB_TRANSACTION_POOLER), or on
 * connections that cannot write (PGPUBSUB_READ_ONLY).
 */
export class ListenOptionsError extends CodedError<'PGPUBSUB_LISTEN_OPTIONS' | 'PGPUBSUB_NO_CALLBACKS' | 'PGPUBSUB_TRANSACTION_POOLER' | 'PGPUBSUB_READ_ONLY'> {
  override readonly name = 'ListenOptionsError';
  readonly problems: string[];

  constructor(code: 'PGPUBSUB_LISTEN_OPTIONS' | 'PGPUBSUB_NO_CALLBACKS' | 'PGPUBSUB_TRANSACTION_POOLER' | 'PGPUBSUB_READ_ONLY', message: string, options?: { cause?: unknown; problems?: string[] }) {
    super(code, message, options);
    this.problems = options?.problems ?? [message];
  }
}

/**
 * Where a relay sends its messages (NATS JetStream) could not take them: no message's fault. Its
 * batch is rolled back without charging an attempt, and the drain is retried with backoff, so the
 * rows wait in PostgreSQL. Internal: thrown by the relay's batch callback only.
 */
export class SinkUnavailableError extends Error {
  override readonly name = 'SinkUnavailableError';

  constructor(message: string, options?: { cause?: unknown }) {
    super(message, options);
  }
}

/** A callback that did not settle within its channel's `timeoutMs`. */
export class CallbackTimeoutError extends CodedError<'PGPUBSUB_CALLBACK_TIMEOUT'> {
  override readonly name = 'CallbackTimeoutError';

  constructor(channel: string, id: string | null, timeoutMs: number) {
    super('PGPUBSUB_CALLBACK_TIMEOUT', `callback on '${channel}'${id ? ` for notification ${id}` : ''} did not settle within ${timeoutMs} ms (timeoutMs); its work was rolled back`);
  }
}

/**
 * Throw it from a callback to fail the notification for good at once: no retry, whatever attempts
 * are left (an address that will never be valid, a record that is gone). Its message is kept as
 * the notification's error, like any other.
 *
 * @example
 * if (!user.email) throw new NonRetryableError(`user ${user.id} has no e-mail address`);
 */
export class NonRetryableError extends CodedError<'PGPUBSUB_NON_RETRYABLE'> {
  override readonly name = 'NonRetryableError';

  constructor(message: string, options?: { cause?: unknown }) {
    super('PGPUBSUB_NON_RETRYABLE', message, options);
  }
}

/**
 * A table this needs is not in the database: the library's own (its migrations were not run,
 * PGPUBSUB_NOT_INSTALLED) or a channel's model table (PGPUBSUB_TABLE_MISSING, when syncing triggers).
 */
export class MissingTableError extends CodedError<'PGPUBSUB_NOT_INSTALLED' | 'PGPUBSUB_TABLE_MISSING'> {
  override readonly name = 'MissingTableError';
}

/** The database has the library's objects at another version than this code runs on (`found` and `expected`). */
export class LibraryVersionError extends CodedError<'PGPUBSUB_LIBRARY_VERSION'> {
  override readonly name = 'LibraryVersionError';

  constructor(readonly found: number, readonly expected: number, message: string) {
    super('PGPUBSUB_LIBRARY_VERSION', message);
  }
}

/** pgpubsub set up wrongly: a Sequelize that is not PostgreSQL, a bad plugin for use(), a migration run without a Sequelize, a bad schema name. */
export class SetupError extends CodedError<'PGPUBSUB_DIALECT' | 'PGPUBSUB_PLUGIN' | 'PGPUBSUB_NOT_USED' | 'PGPUBSUB_MIGRATION_ARGS' | 'PGPUBSUB_MIGRATION_SQL' | 'PGPUBSUB_SCHEMA'> {
  override readonly name = 'SetupError';
}

/** The CLI could not load the app: no module, no Sequelize exported, TypeScript without tsx, or a bad DATABASE_URL. */
export class AppLoadError extends CodedError<'PGPUBSUB_APP_NOT_FOUND' | 'PGPUBSUB_APP_NO_SEQUELIZE' | 'PGPUBSUB_APP_TS' | 'PGPUBSUB_BAD_DATABASE_URL'> {
  override readonly name = 'AppLoadError';
}

/** `migration:generate` found a previous trigger migration it cannot start from (one it did not generate, or edited). */
export class TriggerMigrationError extends CodedError<'PGPUBSUB_TRIGGER_MIGRATION'> {
  override readonly name = 'TriggerMigrationError';

  constructor(message: string) {
    super('PGPUBSUB_TRIGGER_MIGRATION', message);
  }
}

/** An admin call (retry, purge) that does not say which failed notifications it means. */
export class AdminUsageError extends CodedError<'PGPUBSUB_BAD_SELECTION'> {
  override readonly name = 'AdminUsageError';
}

/** A relay cannot start: the NATS clients are not installed, the stream does not fit, bad options, no identity for its message ids. */
export class RelayError extends CodedError<'PGPUBSUB_RELAY_CLIENTS' | 'PGPUBSUB_RELAY_STREAM' | 'PGPUBSUB_RELAY_OPTIONS' | 'PGPUBSUB_RELAY_IDENTITY'> {
  override readonly name = 'RelayError';
}
