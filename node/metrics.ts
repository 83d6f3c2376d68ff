// Prometheus metrics in the text exposition format (version 0.0.4), served on a loopback HTTP
// port. The values are read from the live components at scrape time; only the apply latency is
// recorded as it happens (a histogram).

import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';

/** Buckets of the apply-latency histogram, in seconds. */
export const LATENCY_BUCKETS_S = [
  0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5,
] as const;

export class Histogram {
  readonly counts = new Array<number>(LATENCY_BUCKETS_S.length).fill(0);
  sum = 0;
  count = 0;

  observe(seconds: number): void {
    this.sum += seconds;
    this.count++;
    for (let i = 0; i < LATENCY_BUCKETS_S.length; i++)
      if (seconds <= LATENCY_BUCKETS_S[i]!) this.counts[i]!++;
  }

  render(name: string, help: string): string {
    const lines = [`# HELP ${name} ${help}`, `# TYPE ${name} histogram`];
    LATENCY_BUCKETS_S.forEach((b, i) => {
      lines.push(`${name}_bucket{le="${b}"} ${this.counts[i]}`);
    });
    lines.push(
      `${name}_bucket{le="+Inf"} ${this.count}`,
      `${name}_sum ${this.sum}`,
      `${name}_count ${this.count}`,
    );
    return lines.join('\n');
  }
}

export type Sample = {
  readonly name: string;
  readonly help: string;
  readonly type: 'counter' | 'gauge';
  readonly value: number;
  readonly labels?: Record<string, string>;
};

export function renderSamples(samples: readonly Sample[]): string {
  const out: string[] = [];
  const seen = new Set<string>();
  for (const s of samples) {
    if (!seen.has(s.name)) {
      seen.add(s.name);
      out.push(`# HELP ${s.name} ${s.help}`, `# TYPE ${s.name} ${s.type}`);
    }
    const labels =
      s.labels === undefined
        ? ''
        : `{${Object.entries(s.labels)
            .map(([k, v]) => `${k}="${v.replace(/["\\\n]/g, '_')}"`)
            .join(',')}}`;
    out.push(`${s.name}${labels} ${s.value}`);
  }
  return out.join('\n');
}

/** Serves GET /metrics with whatever `render` returns; anything else is 404. */
export async function serveMetrics(
  host: string,
  port: number,
  render: () => string,
): Promise<{ server: Server; url: string }> {
  const server = createServer((req, res) => {
    if (req.method === 'GET' && req.url === '/metrics') {
      res.writeHead(200, { 'content-type': 'text/plain; version=0.0.4' });
      res.end(`${render()}\n`);
    } else {
      res.writeHead(404).end();
    }
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(port, host, () => resolve());
  });
  const a = server.address() as AddressInfo;
  return { server, url: `http://${host}:${a.port}/metrics` };
}
