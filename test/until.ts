// Polls until a condition holds: the one waiting helper of the tests that run real time (libp2p,
// processes). Resolves with the first value that is neither undefined nor false.

export async function until<T>(
  f: () => Promise<T | undefined> | T | undefined,
  ms: number,
  what = 'a condition',
  everyMs = 50,
): Promise<T> {
  const start = Date.now();
  for (;;) {
    const v = await f();
    if (v !== undefined && v !== false) return v;
    if (Date.now() - start > ms) throw new Error(`timed out after ${ms} ms waiting for ${what}`);
    await new Promise((r) => setTimeout(r, everyMs));
  }
}
