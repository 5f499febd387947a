// The containerd service's test bed: a Driver home served on a unix socket in this process, a
// grpc-js client on it, a work directory for mount(8) of what it returns, and the teardown.
import type { ExecutionContext } from 'ava';
import { execFileSync } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type * as grpc from '@grpc/grpc-js';
import { Driver } from '../../src/driver/driver.js';
import { serveContainerd, type ContainerdServer } from '../../src/containerd/service.js';
import { SnapshotsClient, type WireMount } from '../snapshots-client.js';
import { SMALL, mountsUnder, newHome, removeHomes } from './driver-helpers.js';

export interface Served {
  home: string;
  driver: Driver;
  server: ContainerdServer;
  client: SnapshotsClient;
  work: string;
}

export const served: Served[] = [];

export async function serve(home = newHome('ctrd')): Promise<Served> {
  const driver = await Driver.init({ home, ...SMALL });
  const socket = join(home, 'ctrd.sock');
  const server = await serveContainerd({ driver, socket });
  const s = {
    home,
    driver,
    server,
    client: new SnapshotsClient(socket),
    work: mkdtempSync(join(tmpdir(), 'ctrd-work-')),
  };
  served.push(s);
  return s;
}

/** What stopping the CLI's server does: stop serving, release the home, leave devices and mounts. */
export async function stop(s: Served): Promise<void> {
  s.client.close();
  await s.server.close();
  await s.driver.close();
  served.splice(served.indexOf(s), 1);
}

export async function teardown(s: Served): Promise<void> {
  for (const point of mountsUnder(s.work).reverse()) execFileSync('umount', [point]);
  s.client.close();
  await s.server.close();
  await s.driver.cleanup();
  rmSync(s.work, { recursive: true, force: true });
  served.splice(served.indexOf(s), 1);
}

/** mount(8) of what the service returned, as containerd's mount.All does it. */
export function mountAt(mounts: WireMount[], target: string): void {
  const [m] = mounts;
  if (!m || mounts.length !== 1) throw new Error(`expected one mount, got ${JSON.stringify(mounts)}`);
  execFileSync('mount', ['-t', m.type, ...(m.options.length ? ['-o', m.options.join(',')] : []), m.source, target]);
}

export function dir(s: Served, name: string): string {
  const path = join(s.work, name.replace(/[^A-Za-z0-9_-]/g, '_'));
  execFileSync('mkdir', ['-p', path]);
  return path;
}

/** A gRPC error with this status code whose message names `key`. */
export async function rejects(
  t: ExecutionContext,
  promise: Promise<unknown>,
  code: grpc.status,
  key: string,
  what: string,
): Promise<void> {
  const error = (await t.throwsAsync(promise, undefined, what)) as grpc.ServiceError | undefined;
  t.is(error?.code, code, `${what}: status ${error?.code} (${error?.details})`);
  t.true(error?.details.includes(key) ?? false, `${what}: message ${JSON.stringify(error?.details)} names ${key}`);
}

/** Tears down every server a test left running (a failed test's), then the homes; for test.after.always. */
export async function tearDownAll(): Promise<void> {
  for (const s of [...served]) await teardown(s).catch(() => undefined);
  removeHomes();
}

/** A wire google.protobuf.Timestamp as nanoseconds since the epoch. */
export const wireNs = (ts: { seconds: string; nanos: number }): bigint =>
  BigInt(ts.seconds) * 1_000_000_000n + BigInt(ts.nanos);
