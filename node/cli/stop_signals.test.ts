import { fileURLToPath } from 'node:url';
import { execa } from 'execa';
import { describe, expect, it } from 'vitest';

const SCRIPT = fileURLToPath(new URL('../../test/fixtures/stop_signals.ts', import.meta.url));

/**
 * A real process: installs the stop listeners, starts a subprocess through execa (as the node does
 * for QEMU and nix), then signals itself. `mode` `once` is the listener the node used to install,
 * kept here as the control that shows the scenario is the one that killed the node.
 */
async function run(mode: 'product' | 'once', signals: readonly string[]) {
  return execa('node', ['--import', 'tsx', SCRIPT, mode, ...signals], {
    reject: false,
    timeout: 60_000,
  });
}

describe('stop signals', () => {
  it('a signal while an execa subprocess runs stops the node gracefully, not by the signal', async () => {
    for (const sig of ['SIGINT', 'SIGTERM']) {
      const r = await run('product', [sig]);
      expect(r.stdout).toContain(`stopping on ${sig}`);
      expect(r.stdout).toContain('stopped');
      expect(r.exitCode, r.stderr).toBe(0);
    }
  });

  it('control: a once-listener is killed by its own signal in the same scenario', async () => {
    const r = await run('once', ['SIGINT']);
    expect(r.signal ?? r.exitCode).toMatch(/SIGINT|130/);
    expect(r.stdout).not.toContain('stopped');
  });

  it('a second signal while stopping exits at once with 128 + its number', async () => {
    const r = await run('product', ['SIGINT', 'SIGTERM']);
    expect(r.stdout).toContain('stopping on SIGINT');
    expect(r.stdout).toContain('forced by SIGTERM');
    expect(r.stdout).not.toContain('stopped');
    expect(r.exitCode).toBe(143);
  });
});
