/**
 * Who held this worker's event loop, and when (docs/spec.md §3). A block is a stretch of time
 * one invocation held the loop: a synchronous part longer than BLOCK_MS (its start, or a timer
 * callback), or a loop the watchdog stopped. A neighbour whose deadline fell inside it did not get
 * its time: its timeout names the blocker (`by`), and the pool runs it again when that cannot
 * matter. The newest few are kept.
 */

/** Who held the loop: an invocation, or the worker's own setup (shells.ts SETUP). */
export interface Holder {
  id: number;
  fn: string;
}

export interface Block extends Holder {
  /** Date.now() when it began and ended. */
  from: number;
  to: number;
}

const BLOCK_MS = 50;
const MAX_BLOCKS = 8;
const blocks: Block[] = [];

/** Records that `holder` held the loop from `from` to `to`, when that was longer than BLOCK_MS. */
export function noteBlock(holder: Holder, from: number, to = Date.now()): void {
  if (to - from <= BLOCK_MS) return;
  blocks.push({ id: holder.id, fn: holder.fn, from, to });
  if (blocks.length > MAX_BLOCKS) blocks.shift();
}

/** Another invocation's block that held the loop when `deadline` (Date.now() ms) passed. */
export function blockAt(holder: Holder, deadline: number): Block | undefined {
  for (let i = blocks.length - 1; i >= 0; i--) {
    const block = blocks[i];
    if (block.id !== holder.id && block.from <= deadline && deadline <= block.to) return block;
  }
  return undefined;
}
