/**
 * Ticks on one machine: a croner timer per cron expression, in its time zone. Ticks missed while
 * the server was down are not replayed (croner only ever looks forward).
 */
import { cronOf } from '../../functions/function-config';
import type { ScheduleEntry, TickHandler, Ticker } from './schedules';

export class CronTicker implements Ticker {
  readonly #tick: TickHandler;
  readonly #timers = new Map<string, ReturnType<typeof cronOf>[]>();

  constructor(tick: TickHandler) {
    this.#tick = tick;
  }

  set(fn: string, entries: ScheduleEntry[]): Promise<void> {
    for (const cron of this.#timers.get(fn) ?? []) cron.stop();
    this.#timers.delete(fn);
    if (entries.length === 0) return Promise.resolve();
    const timers = entries.map((entry) => {
      const cron = cronOf(entry.schedule, entry.timezone);
      // croner runs a callback at (or a few ms after) each tick's own time, whole seconds.
      cron.schedule((self) => {
        const at = self.currentRun()?.getTime() ?? Date.now();
        const scheduled = new Date(Math.round(at / 1000) * 1000);
        const tickId = `${entry.function}|${entry.timezone}|${entry.schedule}|${scheduled.getTime()}`;
        void this.#tick(entry, scheduled, tickId);
      });
      cron.resume();
      return cron;
    });
    this.#timers.set(fn, timers);
    return Promise.resolve();
  }

  /** Its timers live in this process: nothing to put back. */
  reconcile(): Promise<number> {
    return Promise.resolve(0);
  }

  /** Nothing is shared: nothing to prune. */
  prune(): Promise<void> {
    return Promise.resolve();
  }

  close(): Promise<void> {
    for (const timers of this.#timers.values()) for (const cron of timers) cron.stop();
    this.#timers.clear();
    return Promise.resolve();
  }
}
