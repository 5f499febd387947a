// Run by kernel-handle.test.ts in a process of its own, with DEVMAPPER_FFI=ffi-rs, so that any
// call that does not go through the handle the Driver made from `ffi: 'koffi'` (or the CLI from
// the home's recorded --ffi koffi) loads ffi-rs. Prints which FFI packages the process loaded.
import { writeFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { join } from 'node:path';
import { Readable } from 'node:stream';
import { main } from '../../src/cli/main.js';
import { Driver } from '../../src/driver/driver.js';
import { importImage } from '../../src/image/images.js';
import { SMALL } from './driver-helpers.js';
import { layerPack, type PackHeader } from '../../src/driver/diff/tar-format.js';
import { buildOciImage } from './oci-image.js';

const require = createRequire(import.meta.url);

function loadedFfiPackages(): string[] {
  const names = Object.keys(require.cache)
    .map((path) => /node_modules\/(ffi-rs|ref-napi|koffi)\//.exec(path)?.[1])
    .filter((name): name is string => name !== undefined);
  return [...new Set(names)].sort();
}

/** A layer tar whose apply needs the libc binding: xattrs (lsetxattr), a device node and a fifo (mknod), then syncfs. */
async function specialTar(): Promise<Buffer> {
  const entries: Array<[PackHeader, Buffer?]> = [
    [{ name: 'x/', type: 'directory', mode: 0o755, xattrs: new Map([['user.dir', Buffer.from('d')]]) }],
    [{ name: 'x/null', type: 'character-device', mode: 0o666, devmajor: 1, devminor: 3 }],
    [{ name: 'x/fifo', type: 'fifo', mode: 0o600 }],
    [{ name: 'x/file', type: 'file', mode: 0o644, xattrs: new Map([['user.f', Buffer.from('v')]]) }, Buffer.from('f')],
  ];
  const pack = layerPack();
  const chunks: Buffer[] = [];
  const done = (async () => {
    for await (const chunk of pack) chunks.push(chunk as Buffer);
  })();
  for (const [header, data] of entries)
    await new Promise<void>((resolve, reject) =>
      pack.entry(header, data ?? Buffer.alloc(0), (e) => (e ? reject(e) : resolve())),
    );
  pack.finalize();
  await done;
  return Buffer.concat(chunks);
}

async function image(dir: string): Promise<string> {
  const built = await buildOciImage({
    name: 'example.com/devmapper/kernel-handle:1',
    layers: [[{ kind: 'file', path: 'hello', content: 'hello\n' }]],
  });
  const file = join(dir, 'image.tar');
  writeFileSync(file, built.tarball);
  return file;
}

async function driverScenario(home: string, scratch: string): Promise<Record<string, unknown>> {
  const driver = await Driver.init({ home, ...SMALL, ffi: 'koffi', discardOnDelete: true });
  const watcher = driver.watch();
  const seen: Record<string, unknown> = { kernel: driver.kernel.ffi };
  try {
    await driver.create('a', null, { size: '96M' }); // grows the filesystem on a private mount
    const root = await driver.get('a');
    writeFileSync(join(root, 'written'), 'x');
    await driver.put('a');
    await driver.applyDiff('b', 'a', Readable.from([await specialTar()]));
    seen.changes = (await driver.changes('b', 'a')).map((c) => `${c.kind} ${c.path}`);
    const stream = await driver.diff('b', 'a');
    let tarBytes = 0;
    for await (const chunk of stream) tarBytes += (chunk as Buffer).length;
    seen.diffBytes = tarBytes;
    await driver.activate('a');
    seen.mapped = String(await driver.mappedBytes('a'));
    await driver.deactivate('a');
    seen.checkClean = (await driver.check({ thinCheck: true })).clean;
    await driver.growPool('640M');
    seen.mode = (await driver.status()).poolMode;
    seen.images = (await importImage(driver, await image(scratch))).length;
    await driver.remove('b'); // discardOnDelete: BLKDISCARD first
  } finally {
    watcher.stop();
    await driver.cleanup();
  }
  return seen;
}

async function cliScenario(home: string, scratch: string): Promise<Record<string, unknown>> {
  const file = await image(scratch);
  const codes: Record<string, number> = {};
  const run = async (name: string, args: string[]): Promise<void> => {
    codes[name] = await main(['--home', home, ...args], () => undefined);
  };
  const sizes = ['--base-size', SMALL.baseSize, '--loop-data-size', SMALL.loopDataSize];
  await run('init', ['init', ...sizes, '--loop-metadata-size', SMALL.loopMetadataSize, '--ffi', 'koffi']);
  await run('create', ['create', 'c']);
  await run('mount', ['mount', 'c']);
  await run('ls', ['ls']);
  await run('umount', ['umount', 'c']);
  await run('status', ['status']);
  await run('dm ls', ['dm', 'ls']);
  await run('dm version', ['dm', 'version']);
  await run('image import', ['image', 'import', file]);
  await run('check', ['check']);
  await run('rm', ['rm', 'c']);
  await run('cleanup', ['cleanup']);
  return { codes };
}

const [scenario, home, scratch] = process.argv.slice(2);
const before = loadedFfiPackages();
const seen = scenario === 'cli' ? await cliScenario(home!, scratch!) : await driverScenario(home!, scratch!);
process.stdout.write(`${JSON.stringify({ before, ...seen, loaded: loadedFfiPackages() })}\n`);
