// Load (issue 15 "Load", issue 16's snapshotter figures): the containerd snapshotter served by
// `devmapper serve containerd` (its own process) under 16 parallel gRPC clients doing a seeded
// random mix of Prepare / Commit / View / Remove / Stat / List, and the Driver in this process
// under 16 parallel async callers doing create / get / put / remove / exists / metadata.
// Asserted: no unexpected error (every call is one the model says must succeed), no deadlock (a
// watchdog per call), RSS (VmRSS of /proc/<pid>/status: the server's, this process's for the
// Driver, sampled every 1% of the calls) flat after warm-up,
// `devmapper check` and `check --thin-check` clean at the end, nothing left behind. Printed:
// calls/s and p50/p99 per RPC. Figures only; nothing here is a timed assertion beyond the
// deadlock watchdog.
//
//   npm run load   (the slow tier: DEVMAPPER_LOAD_OPS=10000; npm test runs 1000)
//   DEVMAPPER_LOAD_SEED=1234 ...                                              (replay a mix)
import test from 'ava';
import { join } from 'node:path';
import { Driver } from '../../src/driver/driver.js';
import { runCli } from '../cli-process.js';
import { SnapshotsClient } from '../snapshots-client.js';
import { initHome, killAllServers, startServer, stopServer } from './snapshotter-server.js';
import { SMALL, assertNothingLeaked, newHome, removeHomes } from './driver-helpers.js';
import { assertKernelTestBed } from './reference-tools.js';
import { prng } from '../prng.js';
import { assertRssFlat, Recorder, report, rssGrowth, sampleRss } from './load-recorder.js';

assertKernelTestBed();

const OPS = Number(process.env.DEVMAPPER_LOAD_OPS ?? 1000);
const SEED = Number(process.env.DEVMAPPER_LOAD_SEED ?? Date.now() % 2 ** 31);
const CLIENTS = 16;
/** A call that takes longer than this is a deadlock. */
const WATCHDOG_MS = 120_000;
/** Live snapshots (or layers) one client keeps at most; beyond, it removes. */
const MAX_LIVE = 8;
/** The server's RSS may grow this much after warm-up (V8 heap and gRPC buffers settle; a leak of 1 KiB per call over 10,000 calls would show). */
const RSS_SLACK_KIB = 48 * 1024;

function pick<T>(rand: () => number, items: readonly T[]): T {
  return items[Math.floor(rand() * items.length)]!;
}

/** Calls between two RSS samples: 100 samples over the run, whatever the event loop does. */
const RSS_EVERY = Math.max(1, Math.floor(OPS / 100));
const RUN = `${CLIENTS} clients, seed ${SEED}`;

test.after.always(async () => {
  await killAllServers();
  removeHomes();
});

test.serial(
  `containerd snapshotter: ${CLIENTS} clients, ${OPS} random calls: no unexpected error, no deadlock, RSS flat, check and thin_check clean`,
  async (t) => {
    t.timeout(Math.max(600_000, OPS * 400), 'the whole run');
    t.log(`seed ${SEED} (DEVMAPPER_LOAD_SEED), ${OPS} calls (DEVMAPPER_LOAD_OPS)`);
    const home = newHome('load');
    await initHome(home, { baseSize: '64M', loopDataSize: '4G', loopMetadataSize: '128M' });
    const socket = join(home, 'dmthin.sock');
    const server = await startServer(home, socket);
    const clients = Array.from({ length: CLIENTS }, () => new SnapshotsClient(socket));
    const recorder = new Recorder(WATCHDOG_MS);
    try {
      // Two committed snapshots every client may build on (never removed until the end).
      const admin = clients[0]!;
      await admin.prepare('shared-a-active', '');
      await admin.commit('shared-a', 'shared-a-active');
      await admin.prepare('shared-b-active', 'shared-a');
      await admin.commit('shared-b', 'shared-b-active');
      const shared = ['shared-a', 'shared-b'];

      const rss = sampleRss(server.process.pid!, recorder, RSS_EVERY);
      let budget = OPS;
      const started = process.hrtime.bigint();
      await Promise.all(
        clients.map(async (client, c) => {
          const rand = prng(SEED + c * 7919);
          // The client's own snapshots; a committed one counts the snapshots made from it.
          const actives = new Map<string, string>(); // key -> parent
          const views = new Map<string, string>();
          const committed = new Map<string, { parent: string; children: number }>();
          let serial = 0;
          const parentOf = (): string => {
            const own = [...committed.keys()];
            return own.length > 0 && rand() < 0.5 ? pick(rand, own) : pick(rand, shared);
          };
          const adopt = (parent: string) => {
            const p = committed.get(parent);
            if (p) p.children++;
          };
          const release = (parent: string) => {
            const p = committed.get(parent);
            if (p) p.children--;
          };
          const removable = (): string[] => [
            ...actives.keys(),
            ...views.keys(),
            ...[...committed].filter(([, v]) => v.children === 0).map(([k]) => k),
          ];
          while (budget-- > 0) {
            const live = actives.size + views.size + committed.size;
            const r = rand();
            const op =
              live >= MAX_LIVE
                ? 'remove'
                : r < 0.22
                  ? 'prepare'
                  : r < 0.36
                    ? 'commit'
                    : r < 0.5
                      ? 'view'
                      : r < 0.7
                        ? 'remove'
                        : r < 0.9
                          ? 'stat'
                          : 'list';
            if (
              op === 'prepare' ||
              (op === 'commit' && actives.size === 0) ||
              (op === 'remove' && removable().length === 0)
            ) {
              const key = `c${c}-a${++serial}`;
              const parent = parentOf();
              const mounts = await recorder.time('Prepare', key, () =>
                client.prepare(key, parent, { 'load.test/client': String(c) }),
              );
              if (mounts.length !== 1) throw new Error(`Prepare ${key}: ${mounts.length} mounts`);
              actives.set(key, parent);
              adopt(parent);
            } else if (op === 'commit') {
              const key = pick(rand, [...actives.keys()]);
              const name = `c${c}-c${++serial}`;
              await recorder.time('Commit', key, () => client.commit(name, key));
              committed.set(name, { parent: actives.get(key)!, children: 0 });
              actives.delete(key);
            } else if (op === 'view') {
              const key = `c${c}-v${++serial}`;
              const parent = parentOf();
              await recorder.time('View', key, () => client.view(key, parent));
              views.set(key, parent);
              adopt(parent);
            } else if (op === 'remove') {
              const key = pick(rand, removable());
              await recorder.time('Remove', key, () => client.remove(key));
              const parent = actives.get(key) ?? views.get(key) ?? committed.get(key)?.parent;
              actives.delete(key);
              views.delete(key);
              committed.delete(key);
              if (parent !== undefined) release(parent);
            } else if (op === 'stat') {
              const keys = [...actives.keys(), ...views.keys(), ...committed.keys(), ...shared];
              const key = pick(rand, keys);
              const info = await recorder.time('Stat', key, () => client.stat(key));
              const want = actives.has(key) ? 'ACTIVE' : views.has(key) ? 'VIEW' : 'COMMITTED';
              if (info.name !== key || info.kind !== want)
                throw new Error(`Stat ${key}: ${info.name} ${info.kind}, expected ${want}`);
            } else {
              const all = await recorder.time('List', '', () => client.list());
              const names = new Set(all.map((i) => i.name));
              for (const key of [...actives.keys(), ...committed.keys(), ...views.keys()]) {
                if (!names.has(key)) throw new Error(`List: ${key} of client ${c} is missing (${all.length} listed)`);
              }
            }
          }
          // Tear down this client's snapshots, children first.
          for (const key of [...actives.keys(), ...views.keys()])
            await recorder.time('Remove', key, () => client.remove(key));
          while (committed.size > 0) {
            for (const name of [...committed.keys()]) {
              if ([...committed.values()].some((o) => o.parent === name)) continue;
              await recorder.time('Remove', name, () => client.remove(name));
              committed.delete(name);
            }
          }
        }),
      );
      const seconds = Number(process.hrtime.bigint() - started) / 1e9;
      rss.stop();
      const growth = rssGrowth(rss.samples, recorder.calls);
      report(t, 'snapshotter load', recorder, seconds, growth, RUN);
      assertRssFlat(t, 'server', growth, RSS_SLACK_KIB);

      const left = await clients[0]!.list();
      t.deepEqual(left.map((i) => i.name).sort(), ['shared-a', 'shared-b'], 'only the shared snapshots are left');
      await clients[0]!.remove('shared-b');
      await clients[0]!.remove('shared-a');
    } finally {
      for (const client of clients) client.close();
      await stopServer(server);
    }
    const check = await runCli(['--home', home, 'check'], 300_000);
    t.is(check.code, 0, `devmapper check: ${check.stdout}${check.stderr}`);
    t.regex(check.stdout, /^clean$/m);
    const thin = await runCli(['--home', home, 'check', '--thin-check'], 300_000);
    t.is(thin.code, 0, `devmapper check --thin-check: ${thin.stdout}${thin.stderr}`);
    t.regex(thin.stdout, /thin_check passed/);
    const cleanup = await runCli(['--home', home, 'cleanup'], 300_000);
    t.is(cleanup.code, 0, cleanup.stderr);
  },
);

test.serial(
  `Driver: ${CLIENTS} parallel callers, ${OPS} random create/get/put/remove/exists/metadata: no unexpected error, no deadlock, RSS flat, check clean`,
  async (t) => {
    t.timeout(Math.max(600_000, OPS * 400), 'the whole run');
    const home = newHome('load-driver');
    const driver = await Driver.init({ home, ...SMALL, loopDataSize: '4G', loopMetadataSize: '128M' });
    const recorder = new Recorder(WATCHDOG_MS);
    try {
      await driver.create('img');
      const rss = sampleRss('self', recorder, RSS_EVERY);
      let budget = OPS;
      const started = process.hrtime.bigint();
      await Promise.all(
        Array.from({ length: CLIENTS }, async (_, c) => {
          const rand = prng(SEED + 104729 + c * 7919);
          const layers = new Map<string, { parent: string; children: number; mounts: number }>();
          let serial = 0;
          const removable = () => [...layers].filter(([, v]) => v.children === 0 && v.mounts === 0).map(([k]) => k);
          while (budget-- > 0) {
            const r = rand();
            const op =
              layers.size >= MAX_LIVE && removable().length > 0
                ? 'remove'
                : r < 0.25
                  ? 'create'
                  : r < 0.45
                    ? 'get'
                    : r < 0.65
                      ? 'put'
                      : r < 0.85
                        ? 'remove'
                        : r < 0.93
                          ? 'exists'
                          : 'metadata';
            const mounted = [...layers].filter(([, v]) => v.mounts > 0).map(([k]) => k);
            if (op === 'create' || layers.size === 0 || (op === 'remove' && removable().length === 0)) {
              const id = `c${c}-l${++serial}`;
              const parent = layers.size > 0 && rand() < 0.5 ? pick(rand, [...layers.keys()]) : 'img';
              await recorder.time('create', id, () => driver.create(id, parent));
              layers.set(id, { parent, children: 0, mounts: 0 });
              const p = layers.get(parent);
              if (p) p.children++;
            } else if (op === 'get' || (op === 'put' && mounted.length === 0)) {
              const id = pick(rand, [...layers.keys()]);
              await recorder.time('get', id, () => driver.get(id));
              layers.get(id)!.mounts++;
            } else if (op === 'put') {
              const id = pick(rand, mounted);
              await recorder.time('put', id, () => driver.put(id));
              layers.get(id)!.mounts--;
            } else if (op === 'remove') {
              const id = pick(rand, removable());
              await recorder.time('remove', id, () => driver.remove(id));
              const p = layers.get(layers.get(id)!.parent);
              if (p) p.children--;
              layers.delete(id);
            } else if (op === 'exists') {
              const id = pick(rand, [...layers.keys()]);
              if (!(await recorder.time('exists', id, () => driver.exists(id)))) throw new Error(`exists ${id}: false`);
            } else {
              const id = pick(rand, [...layers.keys()]);
              const meta = await recorder.time('metadata', id, () => driver.metadata(id));
              if (meta.id !== id) throw new Error(`metadata ${id}: ${meta.id}`);
            }
          }
          for (const [id, v] of layers)
            for (; v.mounts > 0; v.mounts--) await recorder.time('put', id, () => driver.put(id));
          while (layers.size > 0) {
            for (const id of removable()) {
              await recorder.time('remove', id, () => driver.remove(id));
              const p = layers.get(layers.get(id)!.parent);
              if (p) p.children--;
              layers.delete(id);
            }
          }
        }),
      );
      const seconds = Number(process.hrtime.bigint() - started) / 1e9;
      rss.stop();
      const growth = rssGrowth(rss.samples, recorder.calls);
      report(t, 'Driver load', recorder, seconds, growth, RUN);
      assertRssFlat(t, 'Driver (this process)', growth, RSS_SLACK_KIB);
      t.deepEqual(
        (await driver.list()).map((l) => l.id).filter((id) => !id.startsWith('.')),
        ['img'],
        'only the image layer is left',
      );
      await driver.remove('img');
      const check = await driver.check({ thinCheck: true });
      t.true(
        check.clean,
        JSON.stringify(check, (_, v: unknown) => (typeof v === 'bigint' ? String(v) : v)),
      );
      t.true(check.thinCheck?.ran === true && check.thinCheck.ok, check.thinCheck?.summary);
    } finally {
      await driver.cleanup();
    }
    assertNothingLeaked(t);
  },
);
