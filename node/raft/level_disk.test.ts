import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { DataDirLockedError, LevelDisk } from './level_disk.ts';

const dirs: string[] = [];
async function tmp(): Promise<string> {
  const d = await mkdtemp(join(tmpdir(), 'pcr-level-'));
  dirs.push(d);
  return d;
}
afterEach(async () => {
  for (const d of dirs.splice(0)) await rm(d, { recursive: true, force: true });
});

const write = (disk: LevelDisk, ops: Parameters<LevelDisk['write']>[0]): Promise<void> =>
  new Promise((resolve, reject) => disk.write(ops, (err) => (err ? reject(err) : resolve())));

describe('LevelDisk (a real LevelDB on disk)', () => {
  it('batches are durable and read back in key order after reopening', async () => {
    const dir = await tmp();
    const { disk, records } = await LevelDisk.open(dir);
    expect(records.size).toBe(0);
    await write(disk, [
      { type: 'put', key: 'e/02', value: new Uint8Array([2]) },
      { type: 'put', key: 'e/01', value: new Uint8Array([1]) },
      { type: 'put', key: 'hs', value: new Uint8Array([9]) },
    ]);
    await write(disk, [{ type: 'del', key: 'e/02' }]);
    await disk.close();
    const again = await LevelDisk.open(dir);
    expect([...again.records.keys()]).toEqual(['e/01', 'hs']);
    expect(again.records.get('e/01')).toEqual(new Uint8Array([1]));
    await again.disk.close();
  });

  it('keeps batches in the order they were queued', async () => {
    const dir = await tmp();
    const { disk } = await LevelDisk.open(dir);
    const order: number[] = [];
    const all = [];
    for (let i = 0; i < 20; i++) {
      all.push(
        new Promise<void>((r) =>
          disk.write([{ type: 'put', key: 'k', value: new Uint8Array([i]) }], () => {
            order.push(i);
            r();
          }),
        ),
      );
    }
    await Promise.all(all);
    expect(order).toEqual([...Array(20).keys()]);
    await disk.close();
    const again = await LevelDisk.open(dir);
    expect(again.records.get('k')).toEqual(new Uint8Array([19]));
    await again.disk.close();
  });

  it('a second opener of the same data dir gets a clear error, not a shared database', async () => {
    const dir = await tmp();
    const first = await LevelDisk.open(dir);
    await expect(LevelDisk.open(dir)).rejects.toBeInstanceOf(DataDirLockedError);
    await expect(LevelDisk.open(dir)).rejects.toThrow(/in use by another process/);
    await first.disk.close();
    const second = await LevelDisk.open(dir);
    await second.disk.close();
  });
});
