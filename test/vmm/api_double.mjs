// TEST DOUBLE, not the real thing: a stand-in for the cloud-hypervisor and firecracker binaries,
// which cannot be installed on these machines. It serves the published shapes of their HTTP APIs
// on the unix socket named on the command line, checks the request bodies the backends send
// against those shapes, and appends every request to the file in PCR_DOUBLE_LOG (JSON lines).
// Its guest is pretend: "booting" prints a line on stdout (the console log); a power-button
// (cloud-hypervisor) or Ctrl-Alt-Del (firecracker) makes it exit 0 soon after, as the real VMMs
// do when their guest powers off or resets.
//
//   node api_double.mjs ch --api-socket path=/run/x.sock      (cloud-hypervisor)
//   node api_double.mjs fc --api-sock /run/x.sock             (firecracker)
//   node api_double.mjs ch|fc --version

import { appendFileSync } from 'node:fs';
import { createServer } from 'node:http';

const [kind, ...args] = process.argv.slice(2);
if (args[0] === '--version') {
  console.log(
    kind === 'ch' ? 'cloud-hypervisor v38.0.0 (test double)' : 'Firecracker v1.7.0 (test double)',
  );
  process.exit(0);
}
const sock =
  kind === 'ch'
    ? args[args.indexOf('--api-socket') + 1]?.replace(/^path=/, '')
    : args[args.indexOf('--api-sock') + 1];
const log = process.env.PCR_DOUBLE_LOG;
let state = kind === 'ch' ? 'None' : 'Not started';
let config;

const bad = (res, msg) => {
  res.writeHead(400, { 'Content-Type': 'application/json' });
  res.end(JSON.stringify(kind === 'ch' ? msg : { fault_message: msg }));
};
const ok = (res, body) => {
  if (body === undefined) {
    res.writeHead(204);
    res.end();
  } else {
    res.writeHead(200, { 'Content-Type': 'application/json' });
    res.end(JSON.stringify(body));
  }
};
const powerOff = () => setTimeout(() => process.exit(0), 50);

function ch(method, url, body, res) {
  if (method === 'GET' && url === '/api/v1/vmm.ping')
    return ok(res, { build_version: 'double', version: '38.0.0', pid: process.pid });
  if (method === 'GET' && url === '/api/v1/vm.info') {
    if (config === undefined) return bad(res, 'VM is not created');
    return ok(res, { config, state });
  }
  if (method !== 'PUT') return bad(res, `unexpected ${method} ${url}`);
  switch (url) {
    case '/api/v1/vm.create':
      if (typeof body?.payload?.kernel !== 'string') return bad(res, 'payload.kernel is required');
      if (typeof body?.memory?.size !== 'number' || typeof body?.cpus?.boot_vcpus !== 'number')
        return bad(res, 'memory.size and cpus.boot_vcpus');
      config = body;
      state = 'Created';
      return ok(res);
    case '/api/v1/vm.boot':
      if (state !== 'Created') return bad(res, 'VM is not created');
      state = 'Running';
      process.stdout.write('DOUBLE-GUEST-BOOTED\n');
      return ok(res);
    case '/api/v1/vm.power-button':
      if (state !== 'Running') return bad(res, 'VM is not running');
      state = 'Shutdown';
      ok(res);
      return powerOff();
    case '/api/v1/vm.shutdown':
      state = 'Shutdown';
      return ok(res);
    case '/api/v1/vm.delete':
      config = undefined;
      return ok(res);
    case '/api/v1/vmm.shutdown':
      ok(res);
      return powerOff();
    default:
      return bad(res, `unknown endpoint ${url}`);
  }
}

function fc(method, url, body, res) {
  if (method === 'GET' && url === '/')
    return ok(res, {
      id: 'anonymous-instance',
      state,
      vmm_version: '1.7.0',
      app_name: 'Firecracker',
    });
  if (method !== 'PUT') return bad(res, `unexpected ${method} ${url}`);
  if (url === '/machine-config') {
    if (!Number.isInteger(body?.vcpu_count) || !Number.isInteger(body?.mem_size_mib))
      return bad(res, 'vcpu_count and mem_size_mib are required');
    return ok(res);
  }
  if (url === '/boot-source')
    return typeof body?.kernel_image_path === 'string'
      ? ok(res)
      : bad(res, 'kernel_image_path is required');
  if (url.startsWith('/drives/'))
    return body?.drive_id === url.slice(8) &&
      typeof body?.path_on_host === 'string' &&
      typeof body?.is_root_device === 'boolean'
      ? ok(res)
      : bad(res, 'bad drive');
  if (url.startsWith('/network-interfaces/'))
    return body?.iface_id === url.slice(20) && typeof body?.host_dev_name === 'string'
      ? ok(res)
      : bad(res, 'bad network interface');
  if (url === '/actions') {
    if (body?.action_type === 'InstanceStart') {
      if (state !== 'Not started') return bad(res, 'The microVM is already running');
      state = 'Running';
      process.stdout.write('DOUBLE-GUEST-BOOTED\n');
      return ok(res);
    }
    if (body?.action_type === 'SendCtrlAltDel') {
      ok(res);
      return powerOff();
    }
    return bad(res, `unknown action ${body?.action_type}`);
  }
  return bad(res, `unknown endpoint ${url}`);
}

const server = createServer((req, res) => {
  const chunks = [];
  req.on('data', (c) => chunks.push(c));
  req.on('end', () => {
    const text = Buffer.concat(chunks).toString();
    let body;
    try {
      body = text === '' ? undefined : JSON.parse(text);
    } catch {
      return bad(res, 'body is not JSON');
    }
    if (log) appendFileSync(log, `${JSON.stringify({ method: req.method, url: req.url, body })}\n`);
    (kind === 'ch' ? ch : fc)(req.method, req.url, body, res);
  });
});
server.listen(sock);
process.on('SIGTERM', () => process.exit(0));
