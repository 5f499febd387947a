// Import of a 10-layer image (≈ 100 MB of incompressible layer content on a busybox base) side
// by side in one guest: `devmapper image import` (this project, through its CLI), `ctr images
// import` into containerd's built-in devmapper snapshotter (on a pool of the same data block
// size and base size), and `umoci unpack` onto a plain ext4 directory. Seconds, and bytes
// written (pool data mapped for the two thin pools, bytes of the unpacked tree for umoci).
// Runs in the test kernel: npm run build && npm run vm -- --timeout 1200 -- node dist/bench/image-import.js
import { execFileSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { DeviceMapper } from '../src/ioctl/device-mapper.js';
import { parsePoolStatus } from '../src/thin/status.js';
import { dataBlocksToSectors, sectors, sectorsToBytes } from '../src/thin/units.js';
import { runCli } from '../test/cli-process.js';
import { startContainerd } from '../test/kernel/containerd-helpers.js';
import { bulkyImage } from '../test/kernel/oci-test-images.js';
import { run } from '../test/kernel/reference-tools.js';
import { GiB, MiB, sparseFile } from './common.js';
import { createBarePool } from './pools.js';

const LAYERS = 10;
const LAYER_BYTES = 10 * MiB;
const BASE = '512M';
const log = (line: string): void => {
  process.stderr.write(`${line}\n`);
};
const secondsSince = (t0: bigint): number => Math.round(Number(process.hrtime.bigint() - t0) / 1e6) / 1000;

/** Data bytes a pool maps now. */
function poolUsedBytes(dm: DeviceMapper, pool: string): number {
  const status = parsePoolStatus(dm.status(pool, { noFlush: true })[0]?.params ?? 'Fail');
  if (status.kind !== 'ok') throw new Error(`${pool}: ${status.kind}`);
  return Number(sectorsToBytes(dataBlocksToSectors(status.data.usedBlocks, sectors(128)))); // 64 KiB blocks on both pools
}

interface Row {
  tool: string;
  seconds: number;
  bytesWritten: number;
}

async function main(): Promise<void> {
  const tmp = mkdtempSync(join(tmpdir(), 'image-bench-'));
  // Everything on one ext4 filesystem (loop files, containerd's content store, umoci's tree), not on the guest's tmpfs.
  const fsImage = join(tmp, 'fs.img');
  const root = join(tmp, 'fs');
  sparseFile(fsImage, 12 * GiB);
  run('mkfs.ext4', ['-q', '-F', fsImage]);
  mkdirSync(root);
  run('mount', ['-o', 'loop', fsImage, root]);
  const dm = DeviceMapper.open();
  const rows: Row[] = [];
  let stop: (() => Promise<void>) | undefined;
  try {
    const image = await bulkyImage('example.com/bench/ten-layers:1', LAYERS, LAYER_BYTES);
    const tarball = join(root, 'image.tar');
    writeFileSync(tarball, image.tarball);
    log(`image: ${image.layers.length} layers, ${(image.tarball.length / MiB).toFixed(1)} MiB archive`);

    // 1. this project
    const home = join(root, 'devmapper-home');
    const init = await runCli(
      [
        '--home',
        home,
        'init',
        '--base-size',
        BASE,
        '--block-size',
        '64K',
        '--loop-data-size',
        '4G',
        '--loop-metadata-size',
        '64M',
      ],
      600_000,
    );
    if (init.code !== 0) throw new Error(`devmapper init: ${init.stderr}`);
    const ourPool = (JSON.parse((await runCli(['--home', home, '--json', 'status'])).stdout) as { poolName: string })
      .poolName;
    let used = poolUsedBytes(dm, ourPool);
    let t0 = process.hrtime.bigint();
    const ours = await runCli(['--home', home, 'image', 'import', tarball], 1_200_000);
    if (ours.code !== 0) throw new Error(`devmapper image import: ${ours.stderr}`);
    rows.push({
      tool: 'devmapper image import',
      seconds: secondsSince(t0),
      bytesWritten: poolUsedBytes(dm, ourPool) - used,
    });
    log(`devmapper: ${rows.at(-1)!.seconds} s`);
    await runCli(['--home', home, 'cleanup']);

    // 2. containerd's devmapper snapshotter
    const poolName = 'image-bench-ctrd-pool';
    const pool = createBarePool(dm, join(root, 'ctrd-pool'), poolName, { metadata: 64 * MiB, data: 4 * GiB });
    run('dmsetup', ['mknodes', poolName]); // containerd's devmapper opens /dev/mapper/<pool>; no udev makes it
    const containerd = await startContainerd({
      parentDir: root,
      devmapper: { poolName, rootPath: join(root, 'ctrd-devmapper'), baseImageSize: '512MB' },
    });
    stop = async () => {
      await containerd.stop();
      for (const line of run('dmsetup', ['ls']).split('\n')) {
        const name = line.split(/\s+/)[0] ?? '';
        if (name.startsWith(`${poolName}-snap-`)) run('dmsetup', ['--noudevsync', 'remove', name]);
      }
      pool.remove();
    };
    used = poolUsedBytes(dm, poolName);
    t0 = process.hrtime.bigint();
    await containerd.ctr(['images', 'import', '--snapshotter', 'devmapper', tarball], 1_200_000);
    rows.push({
      tool: 'ctr images import (devmapper)',
      seconds: secondsSince(t0),
      bytesWritten: poolUsedBytes(dm, poolName) - used,
    });
    log(`containerd devmapper: ${rows.at(-1)!.seconds} s`);
    await stop();
    stop = undefined;

    // 3. umoci onto a plain directory (the layout is extracted first, not timed)
    const layout = join(root, 'layout');
    mkdirSync(layout);
    execFileSync('tar', ['-xf', tarball, '-C', layout]);
    t0 = process.hrtime.bigint();
    execFileSync('umoci', ['unpack', '--image', `${layout}:1`, join(root, 'bundle')], { stdio: 'ignore' });
    execFileSync('sync');
    const seconds = secondsSince(t0);
    const bytes = Number(
      execFileSync('du', ['-sb', join(root, 'bundle', 'rootfs')], { encoding: 'utf8' }).split('\t')[0],
    );
    rows.push({ tool: 'umoci unpack (ext4 dir)', seconds, bytesWritten: bytes });
    log(`umoci: ${seconds} s`);

    const result = {
      layers: image.layers.length,
      archiveBytes: image.tarball.length,
      rows,
      kernel: execFileSync('uname', ['-r'], { encoding: 'utf8' }).trim(),
    };
    process.stdout.write(`${JSON.stringify(result, null, 2)}\n`);
    process.stdout.write(
      `\n| tool | seconds | bytes written |\n|---|---|---|\n${rows.map((r) => `| ${r.tool} | ${r.seconds.toFixed(2)} | ${(r.bytesWritten / MiB).toFixed(1)} MiB |`).join('\n')}\n`,
    );
  } finally {
    await stop?.().catch((error: unknown) => log(`teardown: ${(error as Error).message}`));
    dm.close();
    run('umount', ['-l', root]);
    rmSync(tmp, { recursive: true, force: true });
  }
}

await main();
