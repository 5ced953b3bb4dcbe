/**
 * Where each claim loop's next walk of a channel resumes: just after the last row it claimed there
 * (library migration 2's claim takes the point and walks the rows after it first, then the rows
 * before it only if the batch is not full). While a backlog drains, the rows before the point are
 * rows this loop deleted, which vacuum cannot remove while a transaction elsewhere holds back the
 * xmin horizon, and rows a context filter excludes: without the point, every claim walked them all
 * again.
 *
 * The point moves only when a claim pass commits (a careful pass claims the same rows again), and
 * every loop starts its walks over from the start of each range again after `RESTART_EVERY_MS`, or
 * after ten times what its last walk from the start took, if longer (a walk over a million rows a
 * filter excludes takes a few hundred ms: such walks then cost a tenth of the loop's time at most),
 * and not before `RESTART_AFTER_CLAIMS` claims from its points (so that at most one claim in that
 * many is such a walk, and a claim's p99 is not one: with a transaction held open, each walk from
 * the start steps over every row deleted since); and after `RESTART_AT_MOST_MS` in any case. A row
 * committed late by a transaction that began early, or a run-at in the past, sits before the
 * point, and waits at most that long while the rows after it fill every batch (when they do not,
 * the claim walks the rows before the point too). Ordered channels get
 * no point: a key's next row becomes claimable where its key's earlier rows were, before the point,
 * and must not wait.
 */
import type { ClaimFilter, ClaimedRow } from '../db/store';
import type { ResumePoints } from '../db/claim';

/** How often a claim loop walks each range from its start again, at least (see restartAfterMs). */
export const RESTART_EVERY_MS = 1000;
/** The longest a loop goes without a walk from the start, however long one takes. */
export const RESTART_AT_MOST_MS = 30_000;
/** The claims from its points a loop makes between two walks from the start, at least (until RESTART_AT_MOST_MS). */
export const RESTART_AFTER_CLAIMS = 200;

/** When a loop whose last walk from the start took `walkMs` walks from the start again. */
export function restartAfterMs(walkMs: number): number {
  return Math.min(RESTART_AT_MOST_MS, Math.max(RESTART_EVERY_MS, 10 * walkMs));
}

/** A row's place in due order: available_at (microseconds since the epoch), then id. */
interface Point {
  us: bigint;
  id: bigint;
}

interface LoopPoints {
  since: number;
  /** Its claims from its points since its last walk from the start. */
  claims: number;
  /** What its last claim from the start took, in ms. */
  walkMs: number;
  points: Map<string, Point>;
}

export class ClaimCursors {
  readonly #ordered: ReadonlySet<string>;
  readonly #loops = new Map<number, LoopPoints>();

  constructor(ordered: ReadonlySet<string>) {
    this.#ordered = ordered;
  }

  /** The points for a claim of `filter` by loop `slot`; null when it walks from the start (and its clock starts over). */
  resume(slot: number, filter: ClaimFilter, now = performance.now()): ResumePoints | null {
    const loop = this.#loops.get(slot);
    const elapsed = loop ? now - loop.since : 0;
    if (!loop || elapsed >= RESTART_AT_MOST_MS || (elapsed >= restartAfterMs(loop.walkMs) && loop.claims >= RESTART_AFTER_CLAIMS)) {
      this.#loops.set(slot, { since: now, claims: 0, walkMs: loop?.walkMs ?? 0, points: new Map() });
      return null;
    }
    const points = filter.channels.map((channel) => loop.points.get(channel) ?? null);
    if (points.every((point) => point === null)) return null;
    loop.claims += 1;
    return { us: points.map((point) => point?.us.toString() ?? null), id: points.map((point) => point?.id.toString() ?? null) };
  }

  /** What a claim of loop `slot` from the start (resume() gave null) took, in ms. */
  walked(slot: number, ms: number): void {
    const loop = this.#loops.get(slot);
    if (loop) loop.walkMs = ms;
  }

  /** After a claim pass of loop `slot` committed: each channel's point moves to the last row it claimed there. */
  advance(slot: number, rows: readonly ClaimedRow[]): void {
    const loop = this.#loops.get(slot);
    if (!loop) return;
    for (const row of rows) {
      if (row.due_us === undefined || row.due_us === null || this.#ordered.has(row.channel)) continue;
      const us = BigInt(row.due_us);
      const id = BigInt(row.id);
      const point = loop.points.get(row.channel);
      if (!point || us > point.us || (us === point.us && id > point.id)) loop.points.set(row.channel, { us, id });
    }
  }
}
