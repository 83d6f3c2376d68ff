// CoalescedPass: one pass at a time; requests during a pass make exactly one more; a request
// refused by mayRun does nothing; a pass that throws ends the loop and the next request starts one.

import { describe, expect, it } from 'vitest';
import { CoalescedPass } from './coalesced.ts';

function gate() {
  let open: () => void = () => {};
  const p = new Promise<void>((r) => {
    open = r;
  });
  return { p, open };
}
const tick = () => new Promise((r) => setImmediate(r));

describe('CoalescedPass', () => {
  it('runs one pass at a time and coalesces the requests made during one into one more', async () => {
    const gates = [gate(), gate()];
    let passes = 0;
    const c = new CoalescedPass(
      async () => {
        await gates[passes++]!.p;
      },
      () => true,
      () => {},
    );
    c.request();
    c.request();
    c.request();
    await tick();
    expect(passes).toBe(1);
    gates[0]!.open();
    await tick();
    expect(passes).toBe(2); // the three requests made one more pass, not three
    gates[1]!.open();
    await tick();
    await tick();
    expect(passes).toBe(2);
    expect(c.busy).toBe(false);
  });

  it('does nothing while mayRun says no, and stops looping once it says no', async () => {
    let may = false;
    let passes = 0;
    const g = gate();
    const c = new CoalescedPass(
      async () => {
        passes++;
        await g.p;
      },
      () => may,
      () => {},
    );
    c.request();
    await tick();
    expect(passes).toBe(0);
    may = true;
    c.request();
    c.request(); // asks for one more
    may = false; // ... which is not run: no longer allowed
    g.open();
    await tick();
    await tick();
    expect(passes).toBe(1);
  });

  it('reports a pass that threw; the next request starts again', async () => {
    const errors: string[] = [];
    let fail = true;
    let passes = 0;
    const c = new CoalescedPass(
      async () => {
        passes++;
        if (fail) throw new Error('table gone');
      },
      () => true,
      (e) => errors.push(e.message),
    );
    c.request();
    await tick();
    expect(errors).toEqual(['table gone']);
    fail = false;
    c.request();
    await tick();
    expect(passes).toBe(2);
    expect(errors).toHaveLength(1);
  });
});
