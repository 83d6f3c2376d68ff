// One evaluation at a time, with requests coalesced: a request while a pass runs asks for exactly
// one more pass after it, however many came. The leader's placement and rollout duties run their
// evaluations this way (each pass reads the whole table, so one pass after the last change covers
// every change before it).

export class CoalescedPass {
  private running = false;
  private again = false;
  private readonly pass: () => Promise<void>;
  private readonly mayRun: () => boolean;
  private readonly onError: (e: Error) => void;

  /**
   * `pass`: one evaluation. `mayRun`: checked before each request and each further pass (the
   * duties: still the leader). `onError`: a pass that threw (the loop stops; the next request
   * starts again).
   */
  constructor(pass: () => Promise<void>, mayRun: () => boolean, onError: (e: Error) => void) {
    this.pass = pass;
    this.mayRun = mayRun;
    this.onError = onError;
  }

  /** Runs a pass now, or one more after the running one. */
  request(): void {
    if (!this.mayRun()) return;
    if (this.running) {
      this.again = true;
      return;
    }
    this.running = true;
    void (async () => {
      try {
        do {
          this.again = false;
          await this.pass();
        } while (this.again && this.mayRun());
      } catch (e) {
        this.onError(e as Error);
      } finally {
        this.running = false;
      }
    })();
  }

  /** Whether a pass runs now (tests). */
  get busy(): boolean {
    return this.running;
  }
}
