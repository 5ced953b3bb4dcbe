import { escapeLiteral } from 'pg';
import type { LibraryObjects } from './objects';
import { type ClaimFilter, serverTimeoutMs } from './store';

/** Where each channel's claim walk resumes, aligned with the filter's channels (null: from the start of its range). */
export interface ResumePoints {
  /** available_at, in microseconds since the epoch (int8 as text). */
  readonly us: ReadonlyArray<string | null>;
  readonly id: ReadonlyArray<string | null>;
}

/** What a claim is asked for beside its filter: its holder key, the server-side time limit, where its walks resume. */
export interface ClaimRequest {
  holder: number;
  timeoutMs: number;
  resume?: ResumePoints | null;
}

function integer(value: number, what: string): string {
  if (!Number.isSafeInteger(value)) throw new TypeError(`claim: ${what} must be an integer, got ${value}`);
  return String(value);
}

/** A bigint[] of digits (or NULLs) as a literal. */
function bigints(values: ReadonlyArray<string | null>, what: string): string {
  return `ARRAY[${values.map((value) => {
    if (value === null) return 'NULL';
    if (!/^-?[0-9]+$/.test(value)) throw new TypeError(`claim: ${what} must be digits, got ${JSON.stringify(value)}`);
    return value;
  }).join(', ')}]::bigint[]`;
}

/**
 * The statement that claims a batch (pgpubsub.claim()), its values written in as literals: so it
 * can travel in one simple-protocol message after START TRANSACTION (one round trip where a bound
 * statement needs a second). The lag comes from the created_at claim() read with each row (no
 * second look-up by id).
 */
export function claimStatement(objects: LibraryObjects, filter: ClaimFilter, limit: number, claim: ClaimRequest): string {
  const context = filter.context && Object.keys(filter.context).length > 0 ? `${escapeLiteral(JSON.stringify(filter.context))}::jsonb` : 'NULL::jsonb';
  const channels = `ARRAY[${filter.channels.map((name) => escapeLiteral(name)).join(', ')}]::text[]`;
  const resume = claim.resume ?? null;
  const args = [channels, context, integer(limit, 'the batch size'), integer(claim.holder, 'the holder key'), integer(serverTimeoutMs(claim.timeoutMs), 'the time limit'),
    resume ? bigints(resume.us, 'a resume point') : 'NULL::bigint[]', resume ? bigints(resume.id, 'a resume point') : 'NULL::bigint[]'];
  return `SELECT c.id, c.channel, c.payload, c.attempts, c.suspect, c.due_us, pg_catalog.pg_current_xact_id()::text AS xact,
           (extract(epoch FROM pg_catalog.clock_timestamp() - c.created_at) * 1000)::float8 AS lag_ms
      FROM ${objects.claimFunction}(${args.join(', ')}) AS c`;
}
