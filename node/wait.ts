// Polls a condition every 10 ms until it holds or `ms` passed (the daemon's waits on its own
// RaftNode: a leadership transfer, a step-down before stop).

export function waitFor(cond: () => boolean, ms: number): Promise<boolean> {
  const start = Date.now();
  return new Promise((resolve) => {
    const t = setInterval(() => {
      if (cond()) {
        clearInterval(t);
        resolve(true);
      } else if (Date.now() - start > ms) {
        clearInterval(t);
        resolve(false);
      }
    }, 10);
  });
}
