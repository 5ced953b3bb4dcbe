/**
 * Where a claim loop's walks resume (lib/listener/claim-cursors.ts), without a database: the points
 * each claim passes, as the rows claimed move them and the clock runs. What the claim does with a
 * point is measured on a real table in test/backlog.test.ts.
 */
import { expect } from 'chai';
import { ClaimCursors, RESTART_AFTER_CLAIMS, RESTART_AT_MOST_MS, RESTART_EVERY_MS, restartAfterMs } from '../lib/listener/claim-cursors';
import type { ClaimedRow } from '../lib/db/store';

const filter = { channels: ['a', 'b', 'ordered'] };
const row = (channel: string, id: number, dueUs: number): ClaimedRow => ({
  id: String(id), channel, payload: '{}', attempts: 0, suspect: false, due_us: String(dueUs), lag_ms: 0, claimedAt: 0,
});

describe('claim cursors', () => {
  it('walks from the start first, then resumes each channel after the last row it claimed there, in due order then id', () => {
    const cursors = new ClaimCursors(new Set(['ordered']));
    expect(cursors.resume(0, filter, 0)).to.equal(null);
    // In id order, as a batch comes back: the point is the greatest (due, id), not the last row.
    cursors.advance(0, [row('a', 5, 2000), row('a', 6, 1000), row('a', 7, 2000), row('b', 8, 500), row('ordered', 9, 3000)]);
    expect(cursors.resume(0, filter, 10)).to.deep.equal({ us: ['2000', '500', null], id: ['7', '8', null] });
    // Another loop has points of its own.
    expect(cursors.resume(1, filter, 10)).to.equal(null);
  });

  it('moves a point only forward', () => {
    const cursors = new ClaimCursors(new Set());
    cursors.resume(0, filter, 0);
    cursors.advance(0, [row('a', 10, 5000)]);
    cursors.advance(0, [row('a', 4, 4000)]);
    expect(cursors.resume(0, filter, 1)).to.deep.equal({ us: ['5000', null, null], id: ['10', null, null] });
  });

  it(`walks from the start again after ${RESTART_EVERY_MS} ms, or ten times its last walk from the start, once ${RESTART_AFTER_CLAIMS} claims resumed; after ${RESTART_AT_MOST_MS} ms in any case`, () => {
    expect([0, 50, 300, 10_000].map(restartAfterMs)).to.deep.equal([RESTART_EVERY_MS, RESTART_EVERY_MS, 3000, RESTART_AT_MOST_MS]);
    const cursors = new ClaimCursors(new Set());
    /** Claims from the points at `at`, `made` having been made since the last walk from the start, until RESTART_AFTER_CLAIMS. */
    const claimMany = (at: number, made: number) => {
      for (let i = made; i < RESTART_AFTER_CLAIMS; i++) expect(cursors.resume(0, filter, at)).to.not.equal(null);
    };
    expect(cursors.resume(0, filter, 0)).to.equal(null);
    cursors.advance(0, [row('a', 1, 100)]);
    expect(cursors.resume(0, filter, RESTART_EVERY_MS - 1)).to.not.equal(null);
    // Time enough, but too few claims since: a walk from the start would be one claim in a handful.
    expect(cursors.resume(0, filter, RESTART_EVERY_MS)).to.not.equal(null);
    claimMany(RESTART_EVERY_MS, 2);
    expect(cursors.resume(0, filter, RESTART_EVERY_MS)).to.equal(null);
    // That walk from the start took 300 ms: the next one is 3 s later (and claims enough after it).
    cursors.walked(0, 300);
    cursors.advance(0, [row('a', 2, 200)]);
    claimMany(RESTART_EVERY_MS + 1, 0);
    expect(cursors.resume(0, filter, RESTART_EVERY_MS + 2999)).to.not.equal(null);
    expect(cursors.resume(0, filter, RESTART_EVERY_MS + 3000)).to.equal(null);
    // However few the claims, a loop walks from the start after RESTART_AT_MOST_MS.
    cursors.advance(0, [row('a', 3, 300)]);
    expect(cursors.resume(0, filter, RESTART_EVERY_MS + 3000 + RESTART_AT_MOST_MS - 1)).to.not.equal(null);
    expect(cursors.resume(0, filter, RESTART_EVERY_MS + 3000 + RESTART_AT_MOST_MS)).to.equal(null);
  });

  it('passes no points while none of the channels has one, and none for rows without a due time', () => {
    const cursors = new ClaimCursors(new Set());
    cursors.resume(0, filter, 0);
    cursors.advance(0, [{ ...row('a', 1, 0), due_us: undefined }]);
    expect(cursors.resume(0, filter, 1)).to.equal(null);
  });
});
