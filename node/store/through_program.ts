// Bytes through an external program (`xz -dc`, `zstd -dc`, `zstd -c`): the one place the store
// layer runs a compressor, since Node 20's zlib has neither xz nor zstd. The input is fed with
// back-pressure, the output read as it comes; a program that fails (corrupt input) or an input
// that throws fails the whole stream, and a consumer that stops early kills the program.

import { spawn } from 'node:child_process';

/** Stderr kept for the error message. */
const STDERR_BYTES_MAX = 2000;

/** Thrown when the program exits with a failure: `stderr` says why, in its words. */
export class ProgramFailed extends Error {
  override readonly name = 'ProgramFailed';
  readonly stderr: string;
  constructor(command: string, code: number | null, stderr: string) {
    super(`${command}: ${stderr.trim() || `exit ${code}`}`);
    this.stderr = stderr;
  }
}

/** Resolves on drain, or on close: a program killed after a failed write never drains. */
function drained(w: NodeJS.WritableStream): Promise<void> {
  return new Promise<void>((ok) => {
    const done = () => {
      w.off('drain', done);
      w.off('close', done);
      ok();
    };
    w.on('drain', done);
    w.on('close', done);
  });
}

/** `input` through `tool args`: its stdout, chunk by chunk. */
export async function* throughProgram(
  tool: string,
  args: readonly string[],
  input: AsyncIterable<Uint8Array> | Iterable<Uint8Array>,
): AsyncGenerator<Uint8Array> {
  const child = spawn(tool, args, { stdio: 'pipe' });
  let stderr = '';
  child.stderr.on('data', (d: Buffer) => {
    if (stderr.length < STDERR_BYTES_MAX) stderr += d.toString();
  });
  const exited = new Promise<number | null>((ok, fail) => {
    child.once('error', fail);
    child.once('close', (code) => ok(code));
  });
  exited.catch(() => {}); // awaited below
  child.stdin.on('error', () => {}); // EPIPE when the program quits early: its exit says why
  const feed = (async () => {
    try {
      for await (const c of input) if (!child.stdin.write(c)) await drained(child.stdin);
    } finally {
      child.stdin.end();
    }
  })();
  feed.catch(() => {}); // awaited below; a failed feed must not be an unhandled rejection first
  let finished = false;
  try {
    for await (const c of child.stdout) yield c as Uint8Array;
    await feed;
    const code = await exited;
    if (code !== 0) throw new ProgramFailed(`${tool} ${args.join(' ')}`, code, stderr);
    finished = true;
  } finally {
    if (!finished) {
      child.kill('SIGKILL');
      await feed.catch(() => {});
    }
  }
}
