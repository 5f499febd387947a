// `npm run power-cut`: many power cuts in a row (default 50), figures at the end.
// DEVMAPPER_POWER_CUTS=N sets the count, DEVMAPPER_POWER_CUT_SEED the seed (printed, to replay
// the same stream; only the instants of the cuts depend on the machine).
import { formatPowerCuts, runPowerCuts } from './run.js';

const cuts = Number(process.env.DEVMAPPER_POWER_CUTS ?? 50);
const seed = Number(process.env.DEVMAPPER_POWER_CUT_SEED ?? Math.floor(Math.random() * 1e6));
process.stdout.write(`power-cut: ${cuts} cuts, seed ${seed}\n`);
try {
  const result = await runPowerCuts({
    cuts,
    seed,
    onOutput: process.env.DEVMAPPER_POWER_CUT_VERBOSE ? (c) => process.stdout.write(c) : undefined,
  });
  process.stdout.write(`${formatPowerCuts(result)}\n`);
} catch (error) {
  process.stderr.write(`${(error as Error).message}\n`);
  process.exit(1);
}
