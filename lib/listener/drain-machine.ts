/**
 * The drain, as a pure step function: what the listener does next, given what it just did and
 * what it knows now. The listener performs each action (claims, locks, waits) and feeds back what
 * came of it; nothing here touches a database or a clock, so every rule is unit-tested alone
 * (test/drain-machine.test.ts).
 *
 * A drain claims batches until there is nothing left, in named modes:
 *
 * - `claiming`: a round of claims (one claim, or one per claim loop with `concurrency`). A wake-up
 *   that came in meanwhile, a full claim, or rows found while the drain locks are held mean claim
 *   again. Two claims in a row that found rows, or a full one (a backlog), take the drain locks:
 *   producers then skip their NOTIFYs, and the drain keeps claiming without them.
 * - `releasing`: the queue looks drained; the drain locks go (producers wake listeners again).
 * - `settling`: producers that skipped a NOTIFY (or found nobody listening, before a (re)connect)
 *   may not have committed yet; the drain waits for them, backing off, then claims once more.
 *   Settling never blocks processing: past the settle bound (a producer transaction left open, or
 *   another role holding the lock) it claims at every look.
 * - `finished`: nothing left; the listener schedules a look at rows due later and sleeps.
 *
 * The wake-up protocol these locks belong to is explained in lib/db/wake-locks.ts.
 */

export type DrainMode = 'claiming' | 'releasing' | 'settling' | 'finished';

export interface DrainTiming {
  /** The first wait while settling, doubled at each look up to `settleMaxMs`. */
  settleFirstMs: number;
  settleMaxMs: number;
  /** Past this long settling, the drain claims at every look. */
  settleBoundMs: number;
}

export interface DrainState {
  readonly mode: DrainMode;
  /** Rows the last claim (or round of claims) found, and whether it came back full. */
  readonly claimed: number;
  readonly full: boolean;
  /** Claims in a row that found rows. */
  readonly streak: number;
  readonly settleDelayMs: number;
  /** When settling began (0: not settling). */
  readonly settlingSince: number;
}

/** What the listener knows at each step, outside the drain's own state. */
export interface DrainFacts {
  /** A wake-up (NOTIFY, `wake()`) came in since the last claim began. */
  readonly pending: boolean;
  /** The listener holds drain locks. */
  readonly holdingLocks: boolean;
  /** A settle is owed (after start-up, a reconnect, or releasing the drain locks). */
  readonly settleOwed: boolean;
  readonly now: number;
}

export type DrainAction =
  /**
   * A round of claims; reply what the last claims found (`claimed`, `full`) and the rows claimed in
   * all (`total`: with several claim loops, more than the last claims). `settled`: the settle owed is paid.
   */
  | { readonly do: 'claim'; readonly settled: boolean }
  /** One claim while skipped producers are still open (past the settle bound); reply `claimed` and `full`. */
  | { readonly do: 'claim-while-settling' }
  /** Take the drain locks not held yet; `backlog`: a full claim, so wake the others instead of producers. */
  | { readonly do: 'take-drain-locks'; readonly backlog: boolean }
  | { readonly do: 'release-drain-locks' }
  /** Ask whether every producer that skipped a NOTIFY has committed; reply `done`. */
  | { readonly do: 'check-skipped' }
  | { readonly do: 'wait'; readonly ms: number }
  /** The drain is over: schedule the look at rows due later. */
  | { readonly do: 'finish' };

/** What came of an action. */
export type DrainReply =
  | { readonly to: 'claim'; readonly claimed: number; readonly full: boolean; readonly total: number }
  | { readonly to: 'claim-while-settling'; readonly claimed: number; readonly full: boolean }
  | { readonly to: 'check-skipped'; readonly done: boolean }
  | { readonly to: 'take-drain-locks' | 'release-drain-locks' | 'wait' };

export interface DrainStep {
  readonly state: DrainState;
  readonly action: DrainAction;
}

/** The first step of a drain. */
export function startDrain(timing: DrainTiming, facts: DrainFacts): DrainStep {
  return look({ mode: 'claiming', claimed: 0, full: false, streak: 0, settleDelayMs: timing.settleFirstMs, settlingSince: 0 }, timing, facts);
}

/** The step after `step`'s action, given what came of it. */
export function nextDrain(step: DrainStep, reply: DrainReply, timing: DrainTiming, facts: DrainFacts): DrainStep {
  const { state, action } = step;
  if (reply.to !== action.do) throw new Error(`drain: a reply to '${reply.to}' for the action '${action.do}'`);
  switch (reply.to) {
    case 'claim': {
      const { streak, takeLocks } = afterClaim(state.streak, reply.total, reply.full);
      const claimedState: DrainState = { ...state, mode: 'claiming', claimed: reply.claimed, full: reply.full, streak };
      if (takeLocks) return { state: claimedState, action: { do: 'take-drain-locks', backlog: reply.full } };
      return look(claimedState, timing, facts);
    }
    case 'take-drain-locks':
    case 'release-drain-locks':
      return look(state, timing, facts);
    case 'check-skipped':
      if (reply.done) return { state: { ...state, mode: 'claiming' }, action: { do: 'claim', settled: true } };
      return {
        state: { ...state, mode: 'settling', settlingSince: state.settlingSince || facts.now },
        action: { do: 'wait', ms: state.settleDelayMs },
      };
    case 'wait': {
      const waited: DrainState = { ...state, settleDelayMs: Math.min(state.settleDelayMs * 2, timing.settleMaxMs) };
      if (facts.now - state.settlingSince >= timing.settleBoundMs) return { state: waited, action: { do: 'claim-while-settling' } };
      return look(waited, timing, facts);
    }
    case 'claim-while-settling':
      return look({ ...state, claimed: reply.claimed, full: reply.full }, timing, facts);
  }
}

/**
 * The drain-lock rule, for the drain and for each claim loop of a round: after a claim that found
 * `claimed` rows, the count of claims in a row that found rows, and whether to take the drain locks
 * (two such claims in a row, or a full one).
 */
export function afterClaim(streak: number, claimed: number, full: boolean): { streak: number; takeLocks: boolean } {
  const next = claimed > 0 ? streak + 1 : 0;
  return { streak: next, takeLocks: next >= 2 || full };
}

/** From `state`, with nothing in hand: claim again, or let go of the drain locks, settle, or finish. */
function look(state: DrainState, timing: DrainTiming, facts: DrainFacts): DrainStep {
  // Reasons to claim again: a wake-up came in, the last claim was full, or rows keep coming while the locks are held.
  if (facts.pending || state.full || (state.claimed > 0 && facts.holdingLocks)) {
    return { state: { ...state, mode: 'claiming' }, action: { do: 'claim', settled: false } };
  }
  if (facts.holdingLocks) return { state: { ...state, mode: 'releasing' }, action: { do: 'release-drain-locks' } };
  if (!facts.settleOwed) return { state: { ...state, mode: 'finished' }, action: { do: 'finish' } };
  return { state: { ...state, mode: state.settlingSince ? 'settling' : 'claiming' }, action: { do: 'check-skipped' } };
}

/**
 * How long after a failed drain the next is tried (before jitter): 10 × minDelayMs for a failure
 * of the database, whatever the count, since a reconnect or the next wake-up usually comes first. A
 * relay whose sink is down (NATS) doubles it per failure in a row, up to maxDelayMs, so that an
 * outage is not retried, and logged, every second; its reconnect wakes the drain at once.
 */
export function drainRetryDelayMs(failuresInARow: number, sinkDown: boolean, { minDelayMs, maxDelayMs }: { minDelayMs: number; maxDelayMs: number }): number {
  const base = minDelayMs * 10;
  if (!sinkDown) return base;
  return Math.max(base, Math.min(maxDelayMs, base * 2 ** Math.min(failuresInARow - 1, 10)));
}
