// Requests containerd's own snapshotters answer with an error at once, sent to the real
// service in the test kernel: each must come back promptly with containerd's status code, and
// leave the snapshot it named as usable as before (its per-key lock released).
import test from 'ava';
import { join } from 'node:path';
import * as grpc from '@grpc/grpc-js';
import { Driver } from '../../src/driver/driver.js';
import { serveContainerd } from '../../src/containerd/service.js';
import { SnapshotsClient } from '../snapshots-client.js';
import { assertKernelTestBed } from './reference-tools.js';
import { SMALL, assertNothingLeaked, driverDmNames, metadataSnapshot, newHome, removeHomes } from './driver-helpers.js';

assertKernelTestBed();

test.after.always(() => removeHomes());

/** The call's outcome, or 'no answer' when it has none within `ms` (a wedged call). */
async function within<T>(promise: Promise<T>, ms = 10_000): Promise<T | 'no answer'> {
  let timer: NodeJS.Timeout | undefined;
  const late = new Promise<'no answer'>((resolve) => {
    timer = setTimeout(() => resolve('no answer'), ms);
  });
  try {
    return await Promise.race([promise, late]);
  } finally {
    clearTimeout(timer);
  }
}

const statusOf = (promise: Promise<unknown>): Promise<number | 'ok' | 'no answer'> =>
  within(
    promise.then(
      () => 'ok' as const,
      (error: grpc.ServiceError) => error.code,
    ),
  );

test.serial('Commit onto its own key is ALREADY_EXISTS at once and the key stays usable', async (t) => {
  const home = newHome('ctrd-bad');
  const driver = await Driver.init({ home, ...SMALL });
  const socket = join(home, 'ctrd.sock');
  const server = await serveContainerd({ driver, socket });
  const client = new SnapshotsClient(socket);
  try {
    await client.prepare('k', '');
    const metadata = metadataSnapshot(home);
    const devices = driverDmNames();
    t.is(await statusOf(client.commit('k', 'k')), grpc.status.ALREADY_EXISTS, 'containerd: the name exists');
    t.is(await statusOf(client.commit('gone', 'gone')), grpc.status.NOT_FOUND, 'an unknown key named twice');
    t.deepEqual(metadataSnapshot(home), metadata, 'no record changed');
    t.deepEqual(driverDmNames(), devices, 'no device appeared or went');
    t.is(await statusOf(client.mounts('k')), 'ok', 'the key is not left locked');
    t.is(await statusOf(client.commit('c', 'k')), 'ok', 'and can still be committed');
    t.is(await statusOf(client.remove('c')), 'ok');
  } finally {
    client.close();
    await server.close(1000);
    await driver.cleanup();
  }
  assertNothingLeaked(t);
});
