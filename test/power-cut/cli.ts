// `npm run power-cut [-- layers|snapshots|all [count]]`: many power cuts in a row (default 50
// per workload, both workloads), figures at the end. DEVMAPPER_POWER_CUTS=N sets the count,
// DEVMAPPER_POWER_CUT_SEED the seed (printed, to replay the same stream; only the instants of
// the cuts depend on the machine). Exits 1 when a cut was not recovered.
import { formatPowerCuts, runPowerCuts, type Workload } from './run.js';

const [which = 'all', countText] = process.argv.slice(2);
if (!['layers', 'snapshots', 'all'].includes(which) || (countText !== undefined && !/^[0-9]+$/.test(countText))) {
  process.stderr.write('usage: npm run power-cut [-- layers|snapshots|all [count]]\n');
  process.exit(2);
}
const workloads: Workload[] = which === 'all' ? ['layers', 'snapshots'] : [which as Workload];
const cuts = Number(countText ?? process.env.DEVMAPPER_POWER_CUTS ?? 50);
const seed = Number(process.env.DEVMAPPER_POWER_CUT_SEED ?? Math.floor(Math.random() * 1e6));
let failed = false;
for (const workload of workloads) {
  process.stdout.write(`power-cut: ${workload}, ${cuts} cuts, seed ${seed}\n`);
  try {
    const result = await runPowerCuts({
      workload,
      cuts,
      seed,
      onOutput: process.env.DEVMAPPER_POWER_CUT_VERBOSE ? (c) => process.stdout.write(c) : undefined,
    });
    process.stdout.write(`${formatPowerCuts(result)}\n`);
    if (result.failure) failed = true;
  } catch (error) {
    process.stderr.write(`${(error as Error).message}\n`);
    failed = true;
  }
}
process.exit(failed ? 1 : 0);
