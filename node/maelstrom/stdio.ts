// The process side of a Maelstrom node: lines from stdin into MaelstromNode, its messages to
// stdout (one JSON object per line, nothing else ever goes there), logs to stderr. Resolves when
// stdin ends (or on SIGTERM), after stopping the node.

import { createInterface } from 'node:readline';
import { MaelstromNode, type MaelstromNodeTimings } from './node.ts';

export async function serveStdio(timings: Partial<MaelstromNodeTimings> = {}): Promise<void> {
  let node: MaelstromNode | undefined;
  const log = (text: string): void => {
    process.stderr.write(`${new Date().toISOString()} ${node?.nodeId ?? '-'} ${text}\n`);
  };
  node = new MaelstromNode({
    ...timings,
    send: (line) => void process.stdout.write(`${line}\n`),
    log,
  });
  const input = createInterface({ input: process.stdin, crlfDelay: Number.POSITIVE_INFINITY });
  await new Promise<void>((resolve) => {
    let finished = false;
    const finish = (why: string): void => {
      if (finished) return;
      finished = true;
      log(`${why}: stopping`);
      input.close();
      node.stop();
      resolve();
    };
    input.on('line', (line) => node.handleLine(line));
    input.on('close', () => finish('stdin closed'));
    process.once('SIGTERM', () => finish('SIGTERM'));
    // Whoever reads stdout went away (EPIPE): nobody can hear this node any more.
    process.stdout.on('error', (e) => finish(`stdout failed (${e.message})`));
  });
  const s = node.stats;
  log(
    `stopped: ${s.linesIn} lines in, ${s.requests} requests, ${s.replies} replies, ` +
      `${s.raftIn} raft messages in, ${s.raftOut} out, ${s.dropped} dropped`,
  );
}
