#!/usr/bin/env node
// `npm run bench`: every benchmark of bench/ in one run, merged into a table on stdout, a JSON
// file and an SVG chart.
//   1. the system packages (as `npm test`, plus libdevmapper-dev for bench/c/dm-libdm.c), npm ci, tsc
//   2. the host part (node dist/bench/host.js): native loop-ioctl FFI overhead against C, no VM
//   3. the guest part (node dist/bench/guest.js): per-ioctl latency, layer lifecycle and scale,
//      inside the QEMU test kernel (--uml: the UML one), or directly on a real dm host
//   4. merge, targets (MET / MISSED), table, <out>/latest.json and <out>/latest.svg
// Options:
//   --uml | --qemu      the guest kernel (default: qemu; DEVMAPPER_VM sets the default too)
//   --quick             few iterations and small scale sizes (50 and 200 layers); writes to a
//                       scratch directory under the system's temp dir unless --out is given
//   --out DIR           where latest.json / latest.svg go (full run: bench/results)
//   --only PARTS        guest parts, comma-separated: latency,lifecycle,scale,snapshotter
//   --sizes N1,N2,...   scale sizes (default 1000,10000,100000; quick 50,200)
//   --no-host | --no-guest
import { spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { cpus, loadavg, tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import {
  APT_PACKAGES,
  build,
  canUseDeviceMapperHere,
  ensureAptPackages,
  ensureNodeModules,
  root,
  step,
} from './bootstrap.mjs';

function usage(message, status = 2) {
  (status === 0 ? process.stdout : process.stderr).write(
    `${message}\nusage: npm run bench -- [--quick] [--uml|--qemu] [--out DIR] [--only latency,lifecycle,scale,snapshotter] [--sizes N1,N2,...] [--no-host] [--no-guest]\n`,
  );
  process.exit(status);
}

const args = process.argv.slice(2);
let backend = process.env.DEVMAPPER_VM === 'uml' ? 'uml' : 'qemu';
let quick = false;
let outDir;
let only;
let sizes;
let runHostPart = true;
let runGuestPart = true;
while (args.length > 0) {
  const arg = args.shift();
  if (arg === '--uml') backend = 'uml';
  else if (arg === '--qemu') backend = 'qemu';
  else if (arg === '--quick') quick = true;
  else if (arg === '--out') outDir = args.shift() ?? usage('--out needs a directory');
  else if (arg === '--only') only = args.shift() ?? usage('--only needs a list of parts');
  else if (arg === '--sizes') sizes = args.shift() ?? usage('--sizes needs a list of sizes');
  else if (arg === '--no-host') runHostPart = false;
  else if (arg === '--no-guest') runGuestPart = false;
  else if (arg === '--help' || arg === '-h')
    usage('npm run bench: ioctl latency, layer lifecycle and scale against C, libdevmapper and dmsetup', 0);
  else usage(`unknown option ${arg}`);
}
outDir = resolve(outDir ?? (quick ? join(tmpdir(), 'devmapper-bench-quick') : join(root, 'bench/results')));

ensureAptPackages([...new Set([...APT_PACKAGES, 'libdevmapper-dev'])]);
ensureNodeModules();
build();

const started = Date.now();
const loadStart = loadavg();
const scratch = mkdtempSync(join(tmpdir(), 'devmapper-bench-run-'));
const mode = quick ? ['--quick'] : [];
let host;
let guest;
let failed = false;
try {
  if (runHostPart) {
    step(`host part: native FFI overhead on loop ioctls (node dist/bench/host.js${quick ? ' --quick' : ''})`);
    const out = join(scratch, 'host.json');
    const r = spawnSync(process.execPath, [join(root, 'dist/bench/host.js'), ...mode, '--out', out], {
      stdio: ['ignore', 'inherit', 'inherit'],
      cwd: root,
    });
    if (r.status === 0 && existsSync(out)) host = JSON.parse(readFileSync(out, 'utf8'));
    else {
      failed = true;
      process.stderr.write(`host part failed (status ${r.status})\n`);
    }
  }
  if (runGuestPart) {
    const out = join(scratch, 'guest.json');
    const guestArgs = [join(root, 'dist/bench/guest.js'), ...mode, '--out', out];
    if (only) guestArgs.push('--only', only);
    if (sizes) guestArgs.push('--sizes', sizes);
    let status;
    if (canUseDeviceMapperHere()) {
      step('guest part: device-mapper is available on this host, runs here');
      backend = 'host';
      status = spawnSync(process.execPath, guestArgs, { stdio: ['ignore', 'inherit', 'inherit'], cwd: root }).status;
    } else {
      step(`guest part: inside the ${backend} test kernel (node dist/bench/guest.js${quick ? ' --quick' : ''})`);
      const { runInVm, exitStatusOf } = await import(join(root, 'dist/test/vm/runner.js'));
      const result = await runInVm({
        command: [process.execPath, ...guestArgs],
        cwd: root,
        backend,
        keep: [scratch],
        timeoutMs: (quick ? 15 : 90) * 60_000,
        // 100,000 layers: ~0.5 GiB of pool metadata and the records on the guest's tmpfs, the heap
        memory: quick ? '2G' : '4G',
        // the snapshotter part compares with containerd's overlayfs
        modules: !only || only.split(',').includes('snapshotter') ? ['overlay'] : [],
      });
      if (result.outcome !== 'exited')
        process.stderr.write(
          `the test kernel ${result.outcome} after ${result.durationMs} ms\n${result.vmStderr.slice(-2000)}\n${result.kernelLog.slice(-3000)}\n`,
        );
      status = exitStatusOf(result);
    }
    if (status === 0 && existsSync(out)) guest = JSON.parse(readFileSync(out, 'utf8'));
    else {
      failed = true;
      process.stderr.write(`guest part failed (status ${status})\n`);
    }
  }
} finally {
  rmSync(scratch, { recursive: true, force: true });
}

if (!host && !guest) {
  process.stderr.write('nothing was measured\n');
  process.exit(1);
}
const { merge, writeResults } = await import(join(root, 'dist/bench/report.js'));
const { renderTables } = await import(join(root, 'dist/bench/report-tables.js'));
const hostCpu =
  /model name\s*:\s*(.*)/.exec(readFileSync('/proc/cpuinfo', 'utf8'))?.[1]?.trim() ?? cpus()[0]?.model ?? 'unknown CPU';
const result = merge(
  {
    date: new Date().toISOString().slice(0, 10),
    mode: quick ? 'quick' : 'full',
    backend,
    machine: `host: ${cpus().length} vCPU VM (${hostCpu})`,
    totalS: Math.round((Date.now() - started) / 1000),
    loadavg: { start: loadStart, end: loadavg() },
    note: 'a shared machine: other jobs may have been running, so latency figures are noisy',
  },
  host,
  guest,
);
mkdirSync(outDir, { recursive: true });
const files = writeResults(result, outDir);
process.stdout.write(`\n${renderTables(result)}\n\nwritten: ${files.json}\n         ${files.svg}\n`);
process.exit(failed ? 1 : 0);
