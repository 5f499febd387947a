// The lint and format gate: `biome ci` (the formatter's check plus the linter, with the rules
// in biome.json) finds nothing in src/, test/, bench/ and scripts/. `npm run format` fixes
// formatting; a lint finding needs a code change or a biome-ignore comment with its reason.
import test from 'ava';
import { spawnSync } from 'node:child_process';
import { fileURLToPath } from 'node:url';

const root = fileURLToPath(new URL('../../../', import.meta.url));

test('biome ci: the sources are formatted and lint clean', (t) => {
  const run = spawnSync(
    process.execPath,
    ['node_modules/@biomejs/biome/bin/biome', 'ci', '--colors=off', '--max-diagnostics=30'],
    {
      cwd: root,
      encoding: 'utf8',
    },
  );
  t.is(run.error, undefined, 'biome runs');
  const summary = /Checked (\d+) files?/.exec(`${run.stdout}${run.stderr}`);
  t.truthy(summary, `biome printed its summary:\n${run.stdout}${run.stderr}`);
  t.true(Number(summary?.[1]) > 100, `${summary?.[1]} files checked`);
  t.is(run.status, 0, `biome ci found problems:\n${run.stdout}${run.stderr}`);
});
