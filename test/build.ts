// vitest's global setup: builds dist/ once before any test file runs, so that the many bin/pcr
// processes the tests start find it current (bin/pcr would otherwise rebuild it on the first
// call, with a message on stderr that tests reading stderr would see).

import { execFileSync } from 'node:child_process';
import { fileURLToPath } from 'node:url';

export default function setup(): void {
  const root = fileURLToPath(new URL('..', import.meta.url));
  execFileSync('npm', ['run', '--silent', 'build'], { cwd: root, stdio: 'inherit' });
}
