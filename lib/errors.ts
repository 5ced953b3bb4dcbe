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
  | MissingTableError['code']
  | SetupError['code']
  | AppLoadError['code']
  | TriggerMigrationError['code'];

export class PgPubSubError extends Error {
  readonly code: PgPubSubErrorCode;

  constructor(code: PgPubSubErrorCode, message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = 'PgPubSubError';
    this.code = code;
  }
}

/** One or more channel definitions (model or custom) are invalid. Lists every problem found. */
export class ChannelDefinitionError extends PgPubSubError {
  declare readonly code: 'PGPUBSUB_INVALID_CHANNEL';
  readonly problems: string[];

  /** `message` defaults to the problems, one per line after a count when there are several. */
  constructor(problems: string[], message?: string) {
    super(
      'PGPUBSUB_INVALID_CHANNEL',
      message ?? (problems.length === 1
        ? problems[0]
        : `${problems.length} invalid channel definitions:\n  - ${problems.join('\n  - ')}`),
    );
    this.name = 'ChannelDefinitionError';
    this.problems = problems;
  }
}

/** A valid channel used wrongly: an unknown name, notify() on a model channel, on() with the wrong model or no function. */
export class ChannelUsageError extends PgPubSubError {
  declare readonly code: 'PGPUBSUB_UNKNOWN_CHANNEL' | 'PGPUBSUB_NOTIFY_MODEL_CHANNEL' | 'PGPUBSUB_CHANNEL_MODEL' | 'PGPUBSUB_CALLBACK';

  constructor(code: ChannelUsageError['code'], message: string) {
    super(code, message);
    this.name = 'ChannelUsageError';
  }
}

/** setContext() or withContext() called wrongly: a bad scope, a context that is not a plain object, no transaction to hold it. */
export class ContextError extends PgPubSubError {
  declare readonly code: 'PGPUBSUB_CONTEXT_SCOPE' | 'PGPUBSUB_CONTEXT_TYPE' | 'PGPUBSUB_CONTEXT_NO_TRANSACTION';

  constructor(code: ContextError['code'], message: string) {
    super(code, message);
    this.name = 'ContextError';
  }
}

/** A payload notify() cannot send: not an object, or too large for a broadcast channel's NOTIFY. */
export class NotifyPayloadError extends PgPubSubError {
  declare readonly code: 'PGPUBSUB_PAYLOAD_TYPE' | 'PGPUBSUB_PAYLOAD_TOO_LARGE';

  constructor(code: NotifyPayloadError['code'], message: string, options?: { cause?: unknown }) {
    super(code, message, options);
    this.name = 'NotifyPayloadError';
  }
}

/** A received payload that cannot be turned into a message; the notification is kept and marked, never dropped. */
export class MalformedPayloadError extends PgPubSubError {
  declare readonly code: 'PGPUBSUB_MALFORMED_PAYLOAD';

  constructor(channel: string, problem: string) {
    super('PGPUBSUB_MALFORMED_PAYLOAD', `notification on channel '${channel}': ${problem}`);
    this.name = 'MalformedPayloadError';
  }
}

/** listen() called with bad options, or for channels that have no callback. */
export class ListenOptionsError extends PgPubSubError {
  declare readonly code: 'PGPUBSUB_LISTEN_OPTIONS' | 'PGPUBSUB_NO_CALLBACKS';

  constructor(code: ListenOptionsError['code'], message: string) {
    super(code, message);
    this.name = 'ListenOptionsError';
  }
}

/** A callback that did not settle within its channel's `timeoutMs`. */
export class CallbackTimeoutError extends PgPubSubError {
  declare readonly code: 'PGPUBSUB_CALLBACK_TIMEOUT';

  constructor(channel: string, id: string | null, timeoutMs: number) {
    super('PGPUBSUB_CALLBACK_TIMEOUT', `callback on '${channel}'${id ? ` for notification ${id}` : ''} did not settle within ${timeoutMs} ms (timeoutMs); its work was rolled back`);
    this.name = 'CallbackTimeoutError';
  }
}

/**
 * A table this needs is not in the database: the library's own (its migrations were not run,
 * PGPUBSUB_NOT_INSTALLED) or a channel's model table (PGPUBSUB_TABLE_MISSING, when syncing triggers).
 */
export class MissingTableError extends PgPubSubError {
  declare readonly code: 'PGPUBSUB_NOT_INSTALLED' | 'PGPUBSUB_TABLE_MISSING';

  constructor(code: MissingTableError['code'], message: string) {
    super(code, message);
    this.name = 'MissingTableError';
  }
}

/** pgpubsub set up wrongly: a Sequelize that is not PostgreSQL, a bad plugin for use(), a migration run without a Sequelize. */
export class SetupError extends PgPubSubError {
  declare readonly code: 'PGPUBSUB_DIALECT' | 'PGPUBSUB_PLUGIN' | 'PGPUBSUB_MIGRATION_ARGS';

  constructor(code: SetupError['code'], message: string) {
    super(code, message);
    this.name = 'SetupError';
  }
}

/** The CLI could not load the app: no module, no Sequelize exported, TypeScript without tsx, or a bad DATABASE_URL. */
export class AppLoadError extends PgPubSubError {
  declare readonly code: 'PGPUBSUB_APP_NOT_FOUND' | 'PGPUBSUB_APP_NO_SEQUELIZE' | 'PGPUBSUB_APP_TS' | 'PGPUBSUB_BAD_DATABASE_URL';

  constructor(code: AppLoadError['code'], message: string, options?: { cause?: unknown }) {
    super(code, message, options);
    this.name = 'AppLoadError';
  }
}

/** `migration:generate` found a previous trigger migration it cannot start from (one it did not generate, or edited). */
export class TriggerMigrationError extends PgPubSubError {
  declare readonly code: 'PGPUBSUB_TRIGGER_MIGRATION';

  constructor(message: string) {
    super('PGPUBSUB_TRIGGER_MIGRATION', message);
    this.name = 'TriggerMigrationError';
  }
}
