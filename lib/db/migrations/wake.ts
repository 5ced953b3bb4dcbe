import { PINNED_SEARCH_PATH } from '../objects';
import { quoteLiteral } from '../sql-text';
import { WAKE_LOCKS } from '../wake-locks';
import { type MigrationTarget, libraryStep } from './runner';
import { wakeFunctionV3 } from './schema';

/**
 * Version 7: a cheaper wake-up when nobody listens (the protocol is lib/db/wake-locks.ts's).
 *
 * wake() runs in every statement that stores notifications. With no listener on the channel,
 * version 3's probed the "listening" lock, let go, took the "skipped" lock, and probed and let go
 * again (the second look catches a listener that started in between): five lock-manager calls on
 * one lock tag that every producer of the channel shares. Version 7 takes the "skipped" lock while
 * it still holds its probe of the "listening" lock: no listener can start listening in between (its
 * shared lock waits for the probe to let go), so a listener that starts afterwards finds the
 * "skipped" lock taken and waits for this producer's commit. Three calls, no second look. While
 * listeners listen, the path is version 3's.
 *
 * Measured (BENCHMARKS.md, W3b): with no listener, the wake-up cost concurrent producers about
 * 13 points of their commit rate.
 */
export const WAKE_NAME = '00000000000007-pgpubsub-wake.js';

/** The wake-up of version 7. */
export function wakeFunctionV7({ objects }: MigrationTarget): string {
  return `CREATE OR REPLACE FUNCTION ${objects.wakeFunction}(channel text) RETURNS boolean LANGUAGE plpgsql ${PINNED_SEARCH_PATH} AS $fn$
DECLARE
  key integer := hashtext(channel);
  unlocked boolean;
BEGIN
  -- An exclusive probe fails while any listener listens (or, for an instant, another producer probes).
  IF pg_try_advisory_lock(${WAKE_LOCKS.listening}, key) THEN
    -- Nobody listens. Say so until commit, taken while the probe keeps listeners from starting: one
    -- that starts after it waits for this commit, then claims. Fails only in the instant a listener checks.
    IF pg_try_advisory_xact_lock_shared(${WAKE_LOCKS.skipped}, key) THEN
      unlocked := pg_advisory_unlock(${WAKE_LOCKS.listening}, key);
      RETURN false;
    END IF;
    unlocked := pg_advisory_unlock(${WAKE_LOCKS.listening}, key);
    PERFORM pg_notify(channel, '');
    RETURN true;
  END IF;
  FOR pass IN 1..2 LOOP
    -- Looking again after saying "skipped": a listener that stopped in between needs no wake-up either.
    IF pass = 2 AND pg_try_advisory_lock(${WAKE_LOCKS.listening}, key) THEN
      unlocked := pg_advisory_unlock(${WAKE_LOCKS.listening}, key);
      RETURN false;
    END IF;
    -- A shared probe fails only while someone holds the drain lock; a listener draining also beats.
    IF pg_try_advisory_lock_shared(${WAKE_LOCKS.draining}, key) THEN
      unlocked := pg_advisory_unlock_shared(${WAKE_LOCKS.draining}, key);
      PERFORM pg_notify(channel, '');
      RETURN true;
    ELSIF coalesce(pg_sequence_last_value(${quoteLiteral(objects.drainBeatSequence)}::regclass), 0)
          < extract(epoch FROM clock_timestamp()) * 1000 - 1000 THEN
      -- A drain lock without a fresh beat: not (or no longer) a listener draining. Wake when in doubt.
      PERFORM pg_notify(channel, '');
      RETURN true;
    END IF;
    -- A listener drains: skip, saying so until commit (it claims again once this commit is done),
    -- then look once more, since it may have let go of its drain lock meanwhile.
    IF pass = 1 AND NOT pg_try_advisory_xact_lock_shared(${WAKE_LOCKS.skipped}, key) THEN
      PERFORM pg_notify(channel, '');
      RETURN true;
    END IF;
  END LOOP;
  RETURN false;
END
$fn$`;
}

function wakeSql(target: MigrationTarget) {
  const { objects } = target;
  // CREATE OR REPLACE keeps the function's owner and grants.
  const up = [wakeFunctionV7(target), `INSERT INTO ${objects.versionTable} (version, name) VALUES (7, ${quoteLiteral(WAKE_NAME)})`];
  const down = [`DELETE FROM ${objects.versionTable} WHERE version = 7`, wakeFunctionV3(objects)];
  return { up, down };
}

export const wake = libraryStep(7, WAKE_NAME, wakeSql);
export const { name, up, down, withOptions } = wake;
