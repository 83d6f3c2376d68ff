// The QMP client's protocol handling against a scripted peer on a unix socket (the real QEMU is in
// supervisor.test.ts): greeting and capabilities, replies matched by id, errors, events, pending
// commands rejected when the socket closes, and the line-size bound.

import { mkdtempSync } from 'node:fs';
import { createServer, type Server, type Socket } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { QMP_LINE_BYTES_MAX, QmpClient, type QmpEvent } from './qmp.ts';

const GREETING = {
  QMP: { version: { qemu: { major: 7, minor: 2, micro: 22 }, package: '' }, capabilities: [] },
};

let server: Server | undefined;
afterEach(() => server?.close());

/** A peer that greets, answers qmp_capabilities, and hands every later command to `onCommand`. */
async function peer(
  onCommand: (cmd: { execute: string; id: number }, s: Socket) => void,
): Promise<string> {
  const path = join(mkdtempSync(join(tmpdir(), 'pcr-qmp-')), 'qmp.sock');
  server = createServer((s) => {
    s.write(`${JSON.stringify(GREETING)}\n`);
    let buf = '';
    s.on('data', (d) => {
      buf += d.toString();
      let nl: number;
      while ((nl = buf.indexOf('\n')) >= 0) {
        const cmd = JSON.parse(buf.slice(0, nl)) as { execute: string; id: number };
        buf = buf.slice(nl + 1);
        if (cmd.execute === 'qmp_capabilities')
          s.write(`${JSON.stringify({ return: {}, id: cmd.id })}\n`);
        else onCommand(cmd, s);
      }
    });
  });
  await new Promise<void>((r) => server!.listen(path, r));
  return path;
}

describe('QmpClient', () => {
  it('negotiates, matches replies to commands by id even out of order, and delivers events', async () => {
    const held: { execute: string; id: number }[] = [];
    const path = await peer((cmd, s) => {
      held.push(cmd);
      if (held.length === 2) {
        s.write(
          `${JSON.stringify({ event: 'POWERDOWN', timestamp: { seconds: 1, microseconds: 0 } })}\n`,
        );
        // Reply to the second command first, in one write with the first reply split across two.
        const r2 = JSON.stringify({ return: { status: 'running' }, id: held[1]!.id });
        const r1 = JSON.stringify({ return: {}, id: held[0]!.id });
        s.write(`${r2}\n${r1.slice(0, 5)}`);
        setTimeout(() => s.write(`${r1.slice(5)}\n`), 10);
      }
    });
    const qmp = await QmpClient.connect(path);
    expect(qmp.version).toBe('7.2.22');
    const events: QmpEvent[] = [];
    qmp.onEvent((e) => events.push(e));
    const [a, b] = await Promise.all([
      qmp.execute('system_powerdown'),
      qmp.execute('query-status'),
    ]);
    expect(a).toEqual({});
    expect(b).toEqual({ status: 'running' });
    expect(events.map((e) => e.event)).toEqual(['POWERDOWN']);
    qmp.close();
  });

  it('turns a QMP error into a VMM_API_ERROR with its class and description', async () => {
    const path = await peer((cmd, s) =>
      s.write(
        `${JSON.stringify({ error: { class: 'CommandNotFound', desc: 'nope' }, id: cmd.id })}\n`,
      ),
    );
    const qmp = await QmpClient.connect(path);
    await expect(qmp.execute('bogus')).rejects.toMatchObject({
      code: 'VMM_API_ERROR',
      message: 'QMP error CommandNotFound: nope',
    });
    qmp.close();
  });

  it('rejects every pending command when the socket closes, and later ones at once', async () => {
    const path = await peer((_cmd, s) => setTimeout(() => s.destroy(), 20));
    const qmp = await QmpClient.connect(path);
    const pending = [qmp.execute('query-status'), qmp.execute('quit')];
    for (const p of pending) await expect(p).rejects.toMatchObject({ code: 'VMM_CLOSED' });
    await expect(qmp.execute('query-status')).rejects.toMatchObject({ code: 'VMM_CLOSED' });
  });

  it(`closes a peer that sends a line above QMP_LINE_BYTES_MAX (${QMP_LINE_BYTES_MAX} bytes)`, async () => {
    const path = await peer((_cmd, s) => s.write('x'.repeat(QMP_LINE_BYTES_MAX + 1)));
    const qmp = await QmpClient.connect(path);
    await expect(qmp.execute('query-status')).rejects.toMatchObject({
      code: 'VMM_API_ERROR',
      message: expect.stringContaining('QMP_LINE_BYTES_MAX'),
    });
    await qmp.closed;
  });

  it('fails to connect when no greeting comes in time', async () => {
    const path = join(mkdtempSync(join(tmpdir(), 'pcr-qmp-')), 'qmp.sock');
    server = createServer(() => undefined);
    await new Promise<void>((r) => server!.listen(path, r));
    await expect(QmpClient.connect(path, 100)).rejects.toMatchObject({
      code: 'VMM_API_ERROR',
      message: expect.stringContaining('no QMP greeting'),
    });
  });
});
