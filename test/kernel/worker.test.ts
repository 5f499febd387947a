// The package in a worker_threads Worker, with device-mapper: a worker imports the package,
// drives DeviceMapper and LoopDevices through koffi (synchronous and async calls: koffi's
// blocking calls run on worker threads of the binding's own), and exits; the process must
// survive (exit status 0, no signal). No FFI package is loaded at import, so nothing of
// ffi-rs (which SIGSEGVs a process when a worker that loaded it exits) is ever in the worker.
// The host half (parsers and flock through koffi) is test/host/home-lock.test.ts.
import test from 'ava';
import { spawnSync } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { assertKernelTestBed, dmsetup } from './reference-tools.js';
import { PREFIX } from './helpers.js';

test.before(() => assertKernelTestBed());

const indexJs = fileURLToPath(new URL('../../src/index.js', import.meta.url));

test('a worker that uses DeviceMapper and LoopDevices on koffi and exits leaves the process alive', (t) => {
  const name = `${PREFIX}-worker`;
  const script = `
import { Worker } from 'node:worker_threads';
const worker = new Worker(\`
  import { parentPort } from 'node:worker_threads';
  import { createRequire } from 'node:module';
  const { DeviceMapper, LoopDevices } = await import(process.env.INDEX_JS);
  const dm = DeviceMapper.open({ ffi: 'koffi' });
  const version = dm.version();
  dm.create(process.env.DEV_NAME);
  dm.load(process.env.DEV_NAME, [{ start: 0n, length: 2048n, type: 'zero', params: '' }]);
  await dm.resumeAsync(process.env.DEV_NAME);
  const table = dm.table(process.env.DEV_NAME).map((t) => t.type + ' ' + t.length);
  await dm.removeAsync(process.env.DEV_NAME);
  const existsAfter = dm.exists(process.env.DEV_NAME);
  dm.close();
  const loops = new LoopDevices({ ffi: 'koffi' });
  const free = loops.findFree();
  const ffiRsLoaded = Object.keys(createRequire(import.meta.url).cache).some((k) => /node_modules\\\\/(ffi-rs|ref-napi)\\\\//.test(k));
  parentPort.postMessage({ version: version.join('.'), table, existsAfter, free, ffiRsLoaded });
\`, { eval: true });
// Both listeners go on before any await: a worker that posts and exits at once has its
// message and its exit emitted in one go, after which a late 'exit' listener never fires.
const exited = new Promise((resolve) => worker.once('exit', resolve));
const message = await new Promise((resolve, reject) => { worker.once('message', resolve); worker.once('error', reject); });
const code = await exited;
await new Promise((r) => setTimeout(r, 300));
process.stdout.write(JSON.stringify({ ...message, workerExit: code }));
`;
  const child = spawnSync(process.execPath, ['--input-type=module', '-e', script], {
    env: { ...process.env, INDEX_JS: indexJs, DEV_NAME: name },
    encoding: 'utf8',
    timeout: 120_000,
  });
  t.teardown(() => {
    try {
      dmsetup('remove', name);
    } catch {
      /* gone, as it should be */
    }
  });
  t.deepEqual(
    { status: child.status, signal: child.signal },
    { status: 0, signal: null },
    `the process survived the worker's exit: ${child.stderr}`,
  );
  const result = JSON.parse(child.stdout) as {
    version: string;
    table: string[];
    existsAfter: boolean;
    free: number;
    ffiRsLoaded: boolean;
    workerExit: number;
  };
  t.is(
    result.version,
    /Driver version:\s+(\S+)/.exec(dmsetup('version'))?.[1] ?? '(dmsetup printed no driver version)',
    'DM_VERSION through koffi in the worker',
  );
  t.deepEqual(result.table, ['zero 2048'], 'the table the worker loaded');
  t.false(result.existsAfter, 'removeAsync (a koffi blocking call) removed it');
  t.true(Number.isInteger(result.free) && result.free >= 0, `LOOP_CTL_GET_FREE answered ${result.free}`);
  t.false(result.ffiRsLoaded, 'ffi-rs was never loaded in the worker');
  t.is(result.workerExit, 0);
  t.false(dmsetup('ls').includes(name), 'nothing left behind');
});
