// When a joining node asks its seeds again, and when it says so. Pure: the daemon's join loop
// asks `due(now)` before each attempt and reports each outcome; the delay doubles from
// JOIN_RETRY_MS_MIN up to JOIN_RETRY_MS_MAX while attempts fail, and the loop logs at warn only
// when the reason changes (a seed unreachable, then refusing, ...), not at every attempt.

/** The first retry's delay (the daemon's background loop runs every 300 ms). */
export const JOIN_RETRY_MS_MIN = 300;
/** The longest delay between two attempts. */
export const JOIN_RETRY_MS_MAX = 10_000;

export interface JoinFailure {
  /** Whether this reason differs from the last one logged (log it at warn). */
  readonly changed: boolean;
  /** How long until the next attempt. */
  readonly retryMs: number;
}

export class JoinBackoff {
  private delayMs = 0;
  private nextAtMs = 0;
  private lastReason: string | undefined;

  /** Whether an attempt is due at `nowMs`. */
  due(nowMs: number): boolean {
    return nowMs >= this.nextAtMs;
  }

  /** An attempt failed for `reason` (a stable description, not a changing message). */
  failed(reason: string, nowMs: number): JoinFailure {
    this.delayMs = Math.min(
      JOIN_RETRY_MS_MAX,
      this.delayMs === 0 ? JOIN_RETRY_MS_MIN : this.delayMs * 2,
    );
    if (this.delayMs < JOIN_RETRY_MS_MIN || this.delayMs > JOIN_RETRY_MS_MAX) {
      throw new Error('join back-off out of its bounds');
    }
    this.nextAtMs = nowMs + this.delayMs;
    const changed = reason !== this.lastReason;
    this.lastReason = reason;
    return { changed, retryMs: this.delayMs };
  }

  /** The join was accepted: the next failure starts from the shortest delay and is logged. */
  succeeded(): void {
    this.delayMs = 0;
    this.nextAtMs = 0;
    this.lastReason = undefined;
  }
}
