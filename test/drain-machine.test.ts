/**
 * The drain's step function (lib/listener/drain-machine.ts), without a database: a scripted world answers
 * each action as the listener would (claims find what the script says, locks are taken and let go,
 * waits move the clock) and the actions taken are compared with what the rules say.
 */
import { expect } from 'chai';
import {
  type DrainAction, type DrainFacts, type DrainReply, type DrainStep, type DrainTiming, afterClaim, drainRetryDelayMs, nextDrain, startDrain,
} from '../lib/listener/drain-machine';

const TIMING: DrainTiming = { settleFirstMs: 5, settleMaxMs: 40, settleBoundMs: 100 };
const BATCH = 10;

interface World {
  /** Rows each claim finds, in order (then 0). */
  claims: number[];
  /** Answers to "have the skipped producers committed?", in order (then true). */
  skippedDone?: boolean[];
  pending?: boolean;
  settleOwed?: boolean;
  /** Called after each action is performed: a wake-up arriving mid-drain, say. */
  during?: (action: DrainAction, facts: Facts) => void;
}

type Facts = { -readonly [K in keyof DrainFacts]: DrainFacts[K] };

/** Runs a drain to its end as the listener does; returns each action, written short. */
function drain(world: World): string[] {
  const facts: Facts = { pending: world.pending ?? false, holdingLocks: false, settleOwed: world.settleOwed ?? false, now: 1_000 };
  const claims = [...world.claims];
  const skipped = [...(world.skippedDone ?? [])];
  const taken: string[] = [];
  let step: DrainStep = startDrain(TIMING, { ...facts });
  for (let guard = 0; guard < 200; guard++) {
    const { action } = step;
    let reply: DrainReply;
    switch (action.do) {
      case 'claim': {
        if (action.settled) facts.settleOwed = false;
        facts.pending = false;
        const claimed = claims.shift() ?? 0;
        taken.push(`claim${action.settled ? ' (settled)' : ''}: ${claimed}`);
        reply = { to: 'claim', claimed, full: claimed === BATCH, total: claimed };
        break;
      }
      case 'claim-while-settling': {
        const claimed = claims.shift() ?? 0;
        taken.push(`claim while settling: ${claimed}`);
        reply = { to: 'claim-while-settling', claimed, full: claimed === BATCH };
        break;
      }
      case 'take-drain-locks':
        taken.push(`take locks${action.backlog ? ' (backlog)' : ''}`);
        facts.holdingLocks = true;
        reply = { to: 'take-drain-locks' };
        break;
      case 'release-drain-locks':
        taken.push('release locks');
        // Letting go of the drain locks owes a settle: producers may have skipped their NOTIFY meanwhile.
        facts.holdingLocks = false;
        facts.settleOwed = true;
        reply = { to: 'release-drain-locks' };
        break;
      case 'check-skipped': {
        const done = skipped.shift() ?? true;
        taken.push(`check skipped: ${done ? 'done' : 'open'}`);
        reply = { to: 'check-skipped', done };
        break;
      }
      case 'wait':
        taken.push(`wait ${action.ms}`);
        facts.now += action.ms;
        reply = { to: 'wait' };
        break;
      case 'finish':
        taken.push('finish');
        expect(step.state.mode).to.equal('finished');
        return taken;
    }
    world.during?.(action, facts);
    step = nextDrain(step, reply, TIMING, { ...facts });
  }
  throw new Error(`the drain did not finish: ${taken.join(', ')}`);
}

describe('the drain (step function)', () => {
  it('after start-up, waits for skipped producers before its first claim, and finishes on an empty claim', () => {
    expect(drain({ claims: [], settleOwed: true })).to.deep.equal(['check skipped: done', 'claim (settled): 0', 'finish']);
  });

  it('on a wake-up with no settle owed, claims until a claim comes back empty, without the drain locks for a single batch', () => {
    expect(drain({ claims: [3], pending: true })).to.deep.equal(['claim: 3', 'finish']);
  });

  it('takes the drain locks after two claims in a row that found rows, claims while rows come, then lets go and settles', () => {
    let woken = false;
    const during = (action: DrainAction, facts: Facts) => {
      if (action.do === 'claim' && !woken) { woken = true; facts.pending = true; } // a NOTIFY after the first claim
    };
    expect(drain({ claims: [3, 2, 0], pending: true, during })).to.deep.equal([
      'claim: 3', 'claim: 2', 'take locks', 'claim: 0', 'release locks', 'check skipped: done', 'claim (settled): 0', 'finish',
    ]);
  });

  it('on a backlog (a full claim) takes the drain locks at once, as a backlog, and claims without waiting for a NOTIFY', () => {
    expect(drain({ claims: [10, 10, 4, 0], pending: true })).to.deep.equal([
      'claim: 10', 'take locks (backlog)',
      'claim: 10', 'take locks (backlog)',
      'claim: 4', 'take locks',
      'claim: 0', 'release locks', 'check skipped: done', 'claim (settled): 0', 'finish',
    ]);
  });

  it('while skipped producers stay open, waits with a doubling delay up to its cap, then claims at every look past the bound', () => {
    const open = Array.from({ length: 7 }, () => false);
    expect(drain({ claims: [0, 2, 0], settleOwed: true, skippedDone: open })).to.deep.equal([
      'check skipped: open', 'wait 5',
      'check skipped: open', 'wait 10',
      'check skipped: open', 'wait 20',
      'check skipped: open', 'wait 40',
      'check skipped: open', 'wait 40', // 115 ms settling: past the bound
      'claim while settling: 0',
      'check skipped: open', 'wait 40', 'claim while settling: 2',
      'check skipped: open', 'wait 40', 'claim while settling: 0',
      'check skipped: done', 'claim (settled): 0', 'finish',
    ]);
  });

  it('claims at once for a wake-up that comes while settling, and still owes the settle', () => {
    let woken = false;
    const during = (action: DrainAction, facts: Facts) => {
      if (action.do === 'wait' && !woken) { woken = true; facts.pending = true; }
    };
    expect(drain({ claims: [1], settleOwed: true, skippedDone: [false], during })).to.deep.equal([
      'check skipped: open', 'wait 5', 'claim: 1', 'check skipped: done', 'claim (settled): 0', 'finish',
    ]);
  });

  it('refuses a reply to another action than the one asked for', () => {
    const step = startDrain(TIMING, { pending: true, holdingLocks: false, settleOwed: false, now: 0 });
    expect(step.action).to.deep.equal({ do: 'claim', settled: false });
    expect(() => nextDrain(step, { to: 'wait' }, TIMING, { pending: false, holdingLocks: false, settleOwed: false, now: 0 }))
      .to.throw("drain: a reply to 'wait' for the action 'claim'");
  });

  it('counts claims in a row that found rows, and takes the locks on the second or on a full one', () => {
    expect(afterClaim(0, 3, false)).to.deep.equal({ streak: 1, takeLocks: false });
    expect(afterClaim(1, 3, false)).to.deep.equal({ streak: 2, takeLocks: true });
    expect(afterClaim(0, 10, true)).to.deep.equal({ streak: 1, takeLocks: true });
    expect(afterClaim(5, 0, false)).to.deep.equal({ streak: 0, takeLocks: false });
  });

  it("retries a failed drain after 10 × minDelayMs however often the database failed, and doubles that only while a relay's sink is down", () => {
    const options = { minDelayMs: 100, maxDelayMs: 10_000 };
    expect([1, 2, 3, 8, 50].map((n) => drainRetryDelayMs(n, false, options))).to.deep.equal([1000, 1000, 1000, 1000, 1000]);
    expect([1, 2, 3, 4, 5, 6, 50].map((n) => drainRetryDelayMs(n, true, options))).to.deep.equal([1000, 2000, 4000, 8000, 10_000, 10_000, 10_000]);
    // A maxDelayMs below the base never shortens it.
    expect(drainRetryDelayMs(3, true, { minDelayMs: 100, maxDelayMs: 500 })).to.equal(1000);
  });
});
