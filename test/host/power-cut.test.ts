// A handful of power cuts (the long run: `npm run power-cut`): the test kernel is hard-stopped
// at seeded random moments during a stream of creates, snapshots, mounts with writes, puts and
// removes on a home kept on the host, and every next boot must recover it (see test/power-cut/).
import test from 'ava';
import { formatPowerCuts, runPowerCuts } from '../power-cut/run.js';

test('power cuts during a stream of layer operations: every boot after a cut finds a consistent home with every acknowledged layer and file', async (t) => {
  t.timeout(600_000);
  const seed = Number(process.env.DEVMAPPER_POWER_CUT_SEED ?? Math.floor(Math.random() * 1e6));
  t.log(`seed ${seed} (DEVMAPPER_POWER_CUT_SEED=${seed} replays the stream)`);
  const result = await runPowerCuts({
    cuts: Number(process.env.DEVMAPPER_POWER_CUTS ?? 4),
    seed,
    log: (line) => t.log(line),
  });
  t.log(formatPowerCuts(result));
  t.is(result.cuts.length, Number(process.env.DEVMAPPER_POWER_CUTS ?? 4));
  t.true(result.acked.create > 0, 'the stream did work before the cuts');
});
