// A handful of power cuts (the long run: `npm run power-cut`): the test kernel is hard-stopped
// at seeded random moments during a stream of creates, snapshots, mounts with writes, puts and
// removes on a home kept on the host, and every next boot must recover it; then the same during
// containerd snapshotter calls through the real `devmapper serve containerd` (see test/power-cut/).
// Serial: each boots a test kernel, and two at once would only slow both on a shared machine.
import test from 'ava';
import { formatPowerCuts, runPowerCuts, type Workload } from '../power-cut/run.js';

const seed = Number(process.env.DEVMAPPER_POWER_CUT_SEED ?? Math.floor(Math.random() * 1e6));

function cutsTest(
  workload: Workload,
  defaultCuts: number,
  title: string,
  didWork: (a: Record<string, number>) => number,
) {
  test.serial(title, async (t) => {
    t.timeout(600_000);
    t.log(`seed ${seed} (DEVMAPPER_POWER_CUT_SEED=${seed} replays the stream)`);
    const cuts = Number(process.env.DEVMAPPER_POWER_CUTS ?? defaultCuts);
    const result = await runPowerCuts({ workload, cuts, seed, log: (line) => t.log(line) });
    t.log(formatPowerCuts(result));
    t.is(result.failure, undefined, result.failure);
    t.is(result.cuts.length, cuts);
    t.true(didWork(result.acked) > 0, 'the stream did work before the cuts');
  });
}

cutsTest(
  'layers',
  4,
  'power cuts during a stream of layer operations: every boot after a cut finds a consistent home with every acknowledged layer and file',
  (a) => a.create ?? 0,
);
cutsTest(
  'snapshots',
  2,
  'power cuts during containerd snapshotter calls through devmapper serve containerd: every boot after a cut lists every acknowledged snapshot with its files, check and thin_check clean',
  (a) => a.prepare ?? 0,
);
