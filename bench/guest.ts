// The guest part of `npm run bench`: runs inside the test kernel (or on any host with
// device-mapper, as root). Per-ioctl latency, layer lifecycle, scale and the containerd
// snapshotters, written as one JSON file.
//   node dist/bench/guest.js [--quick] [--out FILE] [--only latency,lifecycle,scale,snapshotter] [--sizes 1000,10000,100000]
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { cpus, loadavg, release, tmpdir } from 'node:os';
import { join } from 'node:path';
import { DeviceMapper } from '../src/ioctl/device-mapper.js';
import { buildCPrograms } from './c-build.js';
import { machineInfo, phase, progress } from './common.js';
import { measureLatency } from './latency.js';
import { measureLifecycle } from './lifecycle.js';
import type { GuestResult } from './report.js';
import { measureScale } from './scale.js';
import { measureSnapshotter } from './snapshotter.js';

export const GUEST_PARTS = ['latency', 'lifecycle', 'scale', 'snapshotter'] as const;
export type GuestPart = (typeof GUEST_PARTS)[number];

export interface GuestOptions {
  quick: boolean;
  only?: GuestPart[];
  sizes?: number[];
}

export async function runGuest(options: GuestOptions): Promise<GuestResult> {
  const started = Date.now();
  const dm = DeviceMapper.open(); // fails early, with the reason, where there is no device-mapper
  const kernelDm = dm.version().join('.');
  dm.close();
  const parts = options.only ?? [...GUEST_PARTS];
  const programs = await phase('building the C programs', () => buildCPrograms(['dmFloor', 'dmLibdm']));
  const tmp = mkdtempSync(join(tmpdir(), 'devmapper-bench-'));
  const prefix = `bench${process.pid}`;
  progress(
    `guest: kernel ${release()} (dm ${kernelDm}), ${cpus().length} CPU(s), ${options.quick ? 'quick' : 'full'} run: ${parts.join(', ')}`,
  );
  const result: GuestResult = {
    info: machineInfo(),
  };
  try {
    if (parts.includes('latency'))
      result.latency = await phase('latency', () => measureLatency({ quick: options.quick, tmp, programs, prefix }));
    if (parts.includes('lifecycle'))
      result.lifecycle = await phase('lifecycle', () =>
        measureLifecycle({ quick: options.quick, tmp, programs, prefix }),
      );
    if (parts.includes('snapshotter'))
      result.snapshotter = await phase('snapshotter', () => measureSnapshotter({ quick: options.quick, tmp, prefix }));
    if (parts.includes('scale'))
      result.scale = await phase('scale', () =>
        measureScale({ quick: options.quick, tmp, prefix, sizes: options.sizes }),
      );
  } finally {
    rmSync(tmp, { recursive: true, force: true });
  }
  result.info.durationS = Math.round((Date.now() - started) / 100) / 10;
  result.info.loadavg = loadavg();
  return result;
}

export function parseGuestArgs(argv: string[]): GuestOptions & { out?: string } {
  const options: GuestOptions & { out?: string } = { quick: false };
  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i]!;
    if (arg === '--quick') options.quick = true;
    else if (arg === '--out') options.out = argv[++i];
    else if (arg === '--only') {
      const parts = (argv[++i] ?? '').split(',').filter(Boolean);
      for (const p of parts)
        if (!(GUEST_PARTS as readonly string[]).includes(p))
          throw new Error(`--only: unknown part ${p} (${GUEST_PARTS.join(', ')})`);
      options.only = parts as GuestPart[];
    } else if (arg === '--sizes') options.sizes = (argv[++i] ?? '').split(',').map(Number);
    else throw new Error(`unknown argument ${arg}`);
  }
  return options;
}

const isMain = process.argv[1] !== undefined && import.meta.url === new URL(`file://${process.argv[1]}`).href;
if (isMain) {
  const options = parseGuestArgs(process.argv.slice(2));
  const result = await runGuest(options);
  const text = `${JSON.stringify(result, null, 1)}\n`;
  if (options.out) writeFileSync(options.out, text);
  else process.stdout.write(text);
  process.exit(0); // koffi's idle worker threads and the like must not keep the guest waiting
}
