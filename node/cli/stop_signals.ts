// How `pcr node start` reacts to SIGTERM and SIGINT (Ctrl-C): the first one stops the node
// gracefully (leadership handed over, VMs stopped, the log flushed); a second one while it is
// stopping exits at once, as a person pressing Ctrl-C twice expects.
//
// The listeners stay installed for the whole run (`process.on`, never `once`). With `once`, Node
// removes our listener just before calling it; if a subprocess started through execa is running
// at that moment, execa's exit hook (signal-exit) runs next, finds itself the only SIGINT listener
// left, concludes that nobody handles the signal, and kills the process with it: the node died
// with status 130 in the middle of its graceful stop (a CI run, node_start.test.ts).

export const STOP_SIGNALS = ['SIGTERM', 'SIGINT'] as const;
export type StopSignal = (typeof STOP_SIGNALS)[number];

const SIGNAL_NUMBERS: Record<StopSignal, number> = { SIGINT: 2, SIGTERM: 15 };

export interface StopSignalHooks {
  /** The first signal: start a graceful stop. Called once. */
  stop(sig: StopSignal): void;
  /** A later signal: about to exit at once with 128 + the signal's number. */
  force?(sig: StopSignal): void;
  /** How to exit at once (tests replace it); process.exit by default. */
  exit?(code: number): void;
}

/** Installs the listeners; the returned function removes them (after the stop finished). */
export function onStopSignals(hooks: StopSignalHooks): () => void {
  let stopping = false;
  const handlers = STOP_SIGNALS.map((sig) => {
    const handler = (): void => {
      if (!stopping) {
        stopping = true;
        hooks.stop(sig);
        return;
      }
      hooks.force?.(sig);
      (hooks.exit ?? ((code: number) => process.exit(code)))(128 + SIGNAL_NUMBERS[sig]);
    };
    process.on(sig, handler);
    return [sig, handler] as const;
  });
  return () => {
    for (const [sig, handler] of handlers) process.off(sig, handler);
  };
}
