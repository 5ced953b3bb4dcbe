/**
 * Every error this library raises on purpose. The message names the thing at
 * fault and the fix; `code` is stable for programmatic handling.
 */
export class PgPubSubError extends Error {
  readonly code: string;

  constructor(code: string, message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = 'PgPubSubError';
    this.code = code;
  }
}

/** One or more channel definitions are invalid. Lists every problem found. */
export class ChannelDefinitionError extends PgPubSubError {
  readonly problems: string[];

  constructor(problems: string[]) {
    super(
      'PGPUBSUB_INVALID_CHANNEL',
      problems.length === 1
        ? problems[0]
        : `${problems.length} invalid channel definitions:\n  - ${problems.join('\n  - ')}`,
    );
    this.name = 'ChannelDefinitionError';
    this.problems = problems;
  }
}
