import { describe, expect, it } from 'vitest';
import { main } from './demo.ts';

function runDemo(): { result: ReturnType<typeof main>; lines: string[] } {
  const lines: string[] = [];
  const result = main((line) => lines.push(line));
  return { result, lines };
}

describe('demo', () => {
  it('ends with one leader of a later term and every node applied the same entries', () => {
    const { result } = runDemo();
    const leaders = result.nodes.filter((n) => n.state === 'leader');
    expect(leaders.map((n) => n.id)).toEqual([result.leader]);
    expect(result.leader).not.toBe(result.firstLeader);
    expect(result.term).toBeGreaterThan(result.firstTerm);

    const [first, ...rest] = result.nodes;
    expect(first!.log).toEqual(['x=1', 'y=2', 'z=3', 'x=10', 'w=4']);
    expect(first!.data).toEqual({ x: '10', y: '2', z: '3', w: '4' });
    for (const n of rest) {
      expect(n.log).toEqual(first!.log);
      expect(n.data).toEqual(first!.data);
      expect(n.applied).toBe(first!.applied);
      expect(n.commit).toBe(first!.commit);
      expect(n.term).toBe(result.term);
    }
  });

  it('the ReadIndex read on the rejoined node returns the value committed last', () => {
    const { result } = runDemo();
    expect(result.read).toEqual({ node: result.firstLeader, key: 'x', value: '10' });
  });

  it('is deterministic: the same output every run', () => {
    expect(runDemo().lines).toEqual(runDemo().lines);
  });
});
