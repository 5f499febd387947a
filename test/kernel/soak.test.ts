// Soak / model-based test of the Driver against a real kernel: a seeded random sequence of
// operations (create with a random parent, get, put, write and delete files in mounted layers,
// remove, restart the driver with close()+init or cleanup()+init, check(), and now and then a
// child process running the Driver that is SIGKILLed in the middle of a create or a remove),
// checked after every step against a small in-memory model: which layers exist, their parents,
// how many get()s each has, and the files each holds (a snapshot sees its parent's files as of
// its creation). After a crash the model is reconciled with what the crash protocol
// guarantees: the child's create either exists with its parent's files or does not exist at
// all; its remove either finished or left the layer as it was; a child that said 'done' got
// its way; nothing else changed. At the end check() must be clean, the pool's thin ids must be
// exactly the metadata's, and cleanup() must leave no dm device, loop device or mount behind.
//
// DEVMAPPER_SOAK_SEED replays a run (the seed is printed at the start and in every failure);
// DEVMAPPER_SOAK_OPS sets the number of operations (default 200: the quick mode of `npm test`;
// `npm run soak` runs a few thousand). A replay repeats the same operations; only the instant
// at which a timed SIGKILL lands depends on the machine.
import test from 'ava';
import { randomInt } from 'node:crypto';
import { existsSync, readdirSync, readFileSync, unlinkSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { Driver } from '../../src/driver/driver.js';
import { DeviceMapper } from '../../src/ioctl/device-mapper.js';
import { findThinTool } from '../../src/driver/thin-check.js';
import { poolThinIdsByIoctl, removeChildScript, runChild, writeChildScript } from './soak-helpers.js';
import { assertKernelTestBed } from './reference-tools.js';
import { prng } from '../prng.js';
import {
  SMALL,
  assertNothingLeaked,
  driverDmNames,
  loopLines,
  mountsUnder,
  newHome,
  openTransactionExists,
  removeHomes,
  savedState,
  savedThinIds,
} from './driver-helpers.js';

const OPS = Number(process.env.DEVMAPPER_SOAK_OPS ?? 200);
const SEED =
  process.env.DEVMAPPER_SOAK_SEED !== undefined ? Number(process.env.DEVMAPPER_SOAK_SEED) >>> 0 : randomInt(2 ** 31);
const REPLAY = `DEVMAPPER_SOAK_SEED=${SEED} DEVMAPPER_SOAK_OPS=${OPS} npm test -- test/kernel/soak.test.ts`;
/** The most layers alive at once (keeps the small pool far from its free-space guard). */
const MAX_LAYERS = 16;
const FILE_NAMES = ['a', 'b', 'c', 'd', 'e', 'f'];
const CRASH_POINTS = {
  create: ['create:intent', 'create:suspended', 'create:snapshot', 'create:commit', 'create:done'],
  remove: ['remove:intent', 'remove:delete', 'remove:commit'],
} as const;

let childScript = '';

test.before(() => {
  assertKernelTestBed();
  console.log(`soak: seed ${SEED}, ${OPS} operations (replay: ${REPLAY})`);
  childScript = writeChildScript();
});

test.after.always(() => {
  if (childScript) removeChildScript(childScript);
  removeHomes();
});

const jsonBigint = (_: string, v: unknown): unknown => (typeof v === 'bigint' ? String(v) : v);

interface ModelLayer {
  parent: string | null;
  files: Map<string, string>;
}

test.serial(`soak: ${OPS} random Driver operations against a model (seed ${SEED})`, async (t) => {
  t.timeout(Math.max(120_000, OPS * 2_000), 'soak');
  const rand = prng(SEED);
  const pick = <T>(items: readonly T[]): T => items[Math.floor(rand() * items.length)]!;
  const chance = (p: number): boolean => rand() < p;

  const home = newHome('soak');
  const options = { home, ...SMALL };
  const layers = new Map<string, ModelLayer>();
  const mounts = new Map<string, number>();
  const history: string[] = [];
  const counts: Record<string, number> = {};
  let nextLayer = 0;
  let step = 0;
  let childMs = 1500; // how long an uninterrupted child takes, learnt as we go
  let driver = await Driver.init(options);
  let open = true;
  const dm = DeviceMapper.open();
  t.teardown(async () => {
    dm.close();
    if (open) await driver.cleanup();
  });
  const { poolName } = await driver.status();

  const where = (): string =>
    `step ${step} (seed ${SEED}; replay: ${REPLAY})\nlast operations:\n  ${history.slice(-25).join('\n  ')}`;
  const fail = (message: string): never => {
    throw new Error(`${message}\nat ${where()}`);
  };
  const expectSame = (actual: unknown, expected: unknown, what: string): void => {
    const a = JSON.stringify(actual, jsonBigint);
    const e = JSON.stringify(expected, jsonBigint);
    if (a !== e) fail(`${what}: got ${a}, the model says ${e}`);
  };
  const expectCode = async (promise: Promise<unknown>, code: string, what: string): Promise<void> => {
    try {
      await promise;
    } catch (error) {
      if ((error as { code?: string }).code === code) return;
      fail(`${what}: expected ${code}, got ${(error as Error).stack}`);
    }
    fail(`${what}: expected ${code}, but it succeeded`);
  };
  const rootfsOf = (id: string): string => join(home, 'mnt', id, 'rootfs');
  const filesOn = (id: string): Record<string, string> => {
    const dir = rootfsOf(id);
    const out: Record<string, string> = {};
    for (const name of readdirSync(dir).sort()) out[name] = readFileSync(join(dir, name), 'utf8');
    return out;
  };
  const modelFiles = (id: string): Record<string, string> =>
    Object.fromEntries([...layers.get(id)!.files].sort(([x], [y]) => (x < y ? -1 : 1)));
  const restartModel = (keepMounts: boolean): void => {
    // A new driver adopts each leftover mount with one reference (close), or finds none (cleanup).
    for (const id of [...mounts.keys()]) {
      if (keepMounts) mounts.set(id, 1);
      else mounts.delete(id);
    }
  };

  /** The driver against the model: layers, parents, reference counts, mounts, files, devices. */
  const verify = async (deep: boolean, useDmsetup = false): Promise<void> => {
    // First, so that a device left suspended fails here instead of hanging the file reads below.
    const prefix = poolName.slice(0, -'pool'.length);
    for (const { name } of dm.list())
      if (name.startsWith(prefix) && dm.info(name).suspended) fail(`${name} was left suspended`);
    const listed = (await driver.list())
      .map((l) => ({ id: l.id, parent: l.parent, mounted: l.mounted }))
      .sort((x, y) => (x.id < y.id ? -1 : 1));
    const expected = [...layers]
      .map(([id, l]) => ({ id, parent: l.parent, mounted: mounts.has(id) }))
      .sort((x, y) => (x.id < y.id ? -1 : 1));
    expectSame(listed, expected, 'driver.list()');
    for (const id of layers.keys()) expectSame(driver.mountCount(id), mounts.get(id) ?? 0, `mountCount(${id})`);
    expectSame(
      mountsUnder(home),
      [...mounts.keys()].map((id) => join(home, 'mnt', id)).sort(),
      'mounts under the home',
    );
    for (const id of mounts.keys()) expectSame(filesOn(id), modelFiles(id), `files of mounted layer ${id}`);
    if (!deep) return;
    const expectedDevices = [poolName, ...[...mounts.keys()].map((id) => prefix + id)].sort();
    // The test's own control fd (a dmsetup process per step would dominate the run time).
    const active = (useDmsetup ? driverDmNames() : dm.list().map((d) => d.name))
      .filter((n) => n.startsWith(prefix))
      .sort();
    expectSame(active, expectedDevices, `active dm devices (${useDmsetup ? 'dmsetup ls' : 'DM_LIST_DEVICES'})`);
    if (openTransactionExists(home)) fail('an open transaction was left behind');
    expectSame(
      (await driver.status()).transactionId,
      BigInt(savedState(home).transactionId),
      'pool transaction id vs deviceset.json',
    );
  };

  const createLayer = (id: string, parent: string | null): void => {
    const files = parent === null ? new Map<string, string>() : new Map(layers.get(parent)!.files);
    layers.set(id, { parent, files });
  };

  /** `forced`: a create SIGKILLed at create:suspended (the origin, mounted, left suspended). */
  const crash = async (forced = false): Promise<void> => {
    const removable = [...layers.keys()].filter((id) => !mounts.has(id));
    const op: 'create' | 'remove' =
      forced || removable.length === 0 || (layers.size < MAX_LAYERS && chance(0.5)) ? 'create' : 'remove';
    const id = op === 'create' ? `l${nextLayer++}` : pick(removable);
    const byPoint = forced || chance(0.5);
    const point = forced ? 'create:suspended' : byPoint ? pick(CRASH_POINTS[op]) : undefined;
    // create:suspended is reached only with an active parent: take a mounted one when there is one.
    const mounted = [...mounts.keys()];
    const parents = point === 'create:suspended' && mounted.length > 0 ? mounted : [...layers.keys()];
    const parent = op === 'create' && layers.size > 0 && (forced || chance(0.8)) ? pick(parents) : null;
    const delay = byPoint ? undefined : Math.floor(rand() * childMs * 1.2);
    history.push(
      `crash: child ${op} ${id}${op === 'create' ? ` parent ${parent}` : ''} ${point ? `SIGKILL at ${point}` : `SIGKILL after ${delay} ms`}`,
    );
    await driver.close();
    open = false;
    restartModel(true);
    const before = layers.get(id);
    const result = await runChild(
      childScript,
      point ? { DEVMAPPER_TEST_CRASH_AT: point } : {},
      [home, op, id, parent ?? '-'],
      delay,
    );
    if (result.signal === null && result.code !== 0)
      fail(`the child failed on its own (status ${result.code}):\n${result.output}`);
    if (result.signal === null && result.done && !point) childMs = Math.max(200, Math.round((childMs + result.ms) / 2));
    // Every point is on the path of its operation, except create:suspended, which is reached
    // only when the parent is active (mounted) and gets suspended around the snapshot.
    const reachable = point !== 'create:suspended' || (parent !== null && mounts.has(parent));
    if (point && reachable && result.signal !== 'SIGKILL') {
      fail(`the child was to die at ${point} but ended with ${result.code}/${result.signal}:\n${result.output}`);
    }
    history.push(
      `  child: ${result.signal ?? `exit ${result.code}`}${result.done ? ', done' : result.ready ? ', after init' : ', during init'} in ${result.ms} ms`,
    );
    driver = await Driver.init(options);
    open = true;
    const exists = await driver.exists(id);
    if (result.done && exists !== (op === 'create'))
      fail(`the child finished its ${op} of ${id}, but the layer ${exists ? 'exists' : 'does not exist'}`);
    if (op === 'create') {
      if (exists) createLayer(id, parent);
    } else if (!exists) {
      layers.delete(id);
    } else if (!before) {
      fail(`${id} exists after a crashed remove but was not in the model`);
    }
    counts[`crash ${op} ${exists === (op === 'create') ? 'took effect' : 'rolled back'}`] =
      (counts[`crash ${op} ${exists === (op === 'create') ? 'took effect' : 'rolled back'}`] ?? 0) + 1;
    history.push(`  -> ${id} ${exists ? 'exists' : 'does not exist'}`);
  };

  const spent: Record<string, number> = {};
  const timed = async (label: string, body: () => Promise<void>): Promise<void> => {
    const started = Date.now();
    await body();
    spent[label] = (spent[label] ?? 0) + Date.now() - started;
  };
  let suspendedCrashDone = false;
  for (step = 1; step <= OPS; step++) {
    const started = Date.now();
    const r = rand();
    const ids = [...layers.keys()];
    const mounted = [...mounts.keys()];
    let deep = true;
    let kind: string;
    if (!suspendedCrashDone && step >= OPS / 2 && mounted.length > 0 && ids.length < MAX_LAYERS) {
      // Once per run, whatever the dice say: the crash that leaves a mounted origin suspended.
      suspendedCrashDone = true;
      kind = 'crash (create:suspended)';
      await crash(true);
    } else if (r < 0.2 || ids.length === 0) {
      kind = 'create';
      if (ids.length > 0 && chance(0.05)) {
        const existing = pick(ids);
        history.push(`create ${existing} (exists)`);
        await expectCode(
          driver.create(existing, null),
          'ERR_DM_LAYER_EXISTS',
          `create(${existing}) of an existing layer`,
        );
      } else if (chance(0.03)) {
        history.push(`create x${step} parent nosuch (unknown parent)`);
        await expectCode(driver.create(`x${step}`, 'nosuch'), 'ERR_DM_UNKNOWN_PARENT', 'create with an unknown parent');
      } else if (ids.length >= MAX_LAYERS) {
        kind = 'create skipped (full)';
        history.push(kind);
      } else {
        const id = `l${nextLayer++}`;
        const parent = ids.length > 0 && chance(0.8) ? pick(ids) : null;
        history.push(`create ${id} parent ${parent}${parent && mounts.has(parent) ? ' (mounted)' : ''}`);
        await driver.create(id, parent);
        createLayer(id, parent);
      }
    } else if (r < 0.38) {
      kind = 'get';
      const id = chance(0.03) ? 'nosuch' : pick(ids);
      history.push(`get ${id}`);
      if (id === 'nosuch') {
        await expectCode(driver.get(id), 'ERR_DM_UNKNOWN_LAYER', 'get of an unknown layer');
      } else {
        const rootfs = await driver.get(id);
        expectSame(rootfs, rootfsOf(id), `get(${id})`);
        mounts.set(id, (mounts.get(id) ?? 0) + 1);
      }
    } else if (r < 0.53) {
      kind = 'put';
      const id = mounted.length === 0 || chance(0.05) ? pick(ids) : pick(mounted);
      history.push(`put ${id}${mounts.has(id) ? '' : ' (not mounted)'}`);
      await driver.put(id);
      const n = mounts.get(id) ?? 0;
      if (n > 1) mounts.set(id, n - 1);
      else mounts.delete(id);
    } else if (r < 0.73) {
      kind = 'write';
      deep = false;
      if (mounted.length === 0) {
        history.push('write skipped (nothing mounted)');
      } else {
        const id = pick(mounted);
        const files = layers.get(id)!.files;
        const name = pick(FILE_NAMES);
        if (files.has(name) && chance(0.25)) {
          history.push(`write: rm ${id}/${name}`);
          unlinkSync(join(rootfsOf(id), name));
          files.delete(name);
        } else {
          const content = `${id}@${step}:${Math.floor(rand() * 1e9).toString(36)}`.repeat(1 + Math.floor(rand() * 50));
          history.push(`write: ${id}/${name} (${content.length} bytes)`);
          writeFileSync(join(rootfsOf(id), name), content);
          files.set(name, content);
        }
      }
    } else if (r < 0.86) {
      kind = 'remove';
      const id = chance(0.04) ? 'nosuch' : pick(ids);
      history.push(`remove ${id}${mounts.has(id) ? ' (mounted)' : ''}`);
      if (mounts.has(id)) {
        await expectCode(driver.remove(id), 'EBUSY', `remove(${id}) of a mounted layer`);
      } else {
        await driver.remove(id);
        layers.delete(id);
        if (existsSync(join(home, 'mnt', id))) fail(`remove(${id}) left ${join(home, 'mnt', id)} behind`);
      }
    } else if (r < 0.925) {
      const keep = chance(0.6);
      kind = keep ? 'restart (close)' : 'restart (cleanup)';
      history.push(kind);
      if (keep) await driver.close();
      else await driver.cleanup();
      open = false;
      if (!keep)
        expectSame(
          driverDmNames().filter((n) => n.startsWith(poolName.slice(0, -4))),
          [],
          'devices after cleanup()',
        );
      restartModel(keep);
      driver = await Driver.init(options);
      open = true;
    } else if (r < 0.94) {
      kind = 'crash';
      await crash();
    } else {
      kind = 'check';
      deep = false;
      history.push('check');
      const report = await driver.check();
      if (!report.clean) fail(`check() is not clean: ${JSON.stringify(report, jsonBigint)}`);
    }
    counts[kind] = (counts[kind] ?? 0) + 1;
    spent[kind] = (spent[kind] ?? 0) + Date.now() - started;
    try {
      // dmsetup cross-checks the device list after each restart and crash.
      const useDmsetup = kind.startsWith('restart') || kind.startsWith('crash');
      await timed(deep ? 'verify (deep)' : 'verify', () => verify(deep, useDmsetup));
    } catch (error) {
      if ((error as Error).message.includes('\nat step')) throw error;
      fail(`verification failed: ${(error as Error).stack}`);
    }
    // Every layer's files, unmounted ones included, now and then (each get compares them).
    if (step % 100 === 0 || step === OPS) {
      await timed('sweep', async () => {
        for (const id of layers.keys()) {
          await driver.get(id);
          expectSame(filesOn(id), modelFiles(id), `files of layer ${id} (full sweep)`);
          await driver.put(id);
        }
      });
    }
  }

  const report = await driver.check({ thinCheck: true });
  t.true(report.clean, `check() is clean at the end: ${JSON.stringify(report, jsonBigint)}`);
  if (findThinTool('thin_check'))
    t.true(
      report.thinCheck?.ok,
      `thin_check passes on the pool's metadata at the end: ${JSON.stringify(report.thinCheck)}`,
    );
  const owned = [...savedThinIds(home).values()].sort((x, y) => x - y);
  t.deepEqual(
    poolThinIdsByIoctl(dm, poolName, savedState(home).nextDeviceId + 2),
    owned,
    "the thin ids in the pool are exactly the metadata's",
  );
  await driver.cleanup();
  open = false;
  t.deepEqual(mountsUnder(home), [], 'no mount left');
  t.deepEqual(
    driverDmNames().filter((n) => n.startsWith(poolName.slice(0, -4))),
    [],
    'no dm device left',
  );
  t.false(
    loopLines().some((line) => line.includes(home)),
    'no loop device left',
  );
  t.log(
    `seed ${SEED}: ${OPS} operations: ${Object.entries(counts)
      .sort()
      .map(([k, v]) => `${k} ${v}`)
      .join(', ')}; ${layers.size} layers at the end; ms spent: ${Object.entries(spent)
      .sort()
      .map(([k, v]) => `${k} ${v}`)
      .join(', ')}`,
  );
});

test.serial('soak: nothing leaked (no dm device, loop device or mount of any home)', assertNothingLeaked);
