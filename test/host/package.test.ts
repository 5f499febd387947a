// The package as npm would publish it: `npm pack` (scripts skipped: the test run has built
// dist/ already) holds the library, its types, the CLI, the .proto files and every source a
// source map points to, and nothing of the tests or benchmarks; publint and
// @arethetypeswrong/cli find nothing wrong with the tarball.
import test from 'ava';
import { execFileSync, spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join, normalize } from 'node:path';
import { fileURLToPath } from 'node:url';
import { publint } from 'publint';

const root = fileURLToPath(new URL('../../../', import.meta.url));
const scratch = mkdtempSync(join(tmpdir(), 'devmapper-pack-'));
test.after.always(() => rmSync(scratch, { recursive: true, force: true }));

interface PackReport {
  filename: string;
  files: Array<{ path: string }>;
}

function pack(): { tarball: string; files: Set<string> } {
  const out = execFileSync('npm', ['pack', '--ignore-scripts', '--json', '--pack-destination', scratch], {
    cwd: root,
    encoding: 'utf8',
  });
  const [report] = JSON.parse(out) as PackReport[];
  return { tarball: join(scratch, report!.filename), files: new Set(report!.files.map((f) => f.path)) };
}

const packed = pack();

test('the tarball holds the library, its types, the CLI and the .proto files', (t) => {
  for (const path of [
    'package.json',
    'README.md',
    'LICENSE',
    'CHANGELOG.md',
    'dist/src/index.js',
    'dist/src/index.d.ts',
    'dist/src/cli/bin.js',
    'proto/containerd/services/snapshots/v1/snapshots.proto',
    'proto/containerd/types/mount.proto',
  ]) {
    t.true(packed.files.has(path), `${path} is packed`);
  }
  const stray = [...packed.files].filter(
    (p) => /^(dist\/)?(test|bench|scripts)\//.test(p) || p.startsWith('node_modules/'),
  );
  t.deepEqual(stray, [], 'no tests, benchmarks or scripts are packed');
});

test('every source a packed source map names is packed too', (t) => {
  const maps = [...packed.files].filter((p) => p.endsWith('.js.map'));
  t.true(maps.length > 20, `${maps.length} source maps`);
  const missing: string[] = [];
  for (const map of maps) {
    const { sources } = JSON.parse(readFileSync(join(root, map), 'utf8')) as { sources: string[] };
    for (const source of sources) {
      const path = normalize(join(dirname(map), source));
      if (!packed.files.has(path)) missing.push(`${map} -> ${path}`);
    }
  }
  t.deepEqual(missing, []);
});

test('publint (strict) finds nothing in the tarball', async (t) => {
  const tarball = readFileSync(packed.tarball);
  const { messages } = await publint({
    pack: { tarball: tarball.buffer.slice(tarball.byteOffset, tarball.byteOffset + tarball.byteLength) },
    strict: true,
    level: 'suggestion',
  });
  t.deepEqual(
    messages.map((m) => `${m.type} ${m.code} ${m.path.join('.')}`),
    [],
  );
});

test('@arethetypeswrong/cli: the types resolve for ESM importers and bundlers', (t) => {
  const attw = join(root, 'node_modules/@arethetypeswrong/cli/dist/index.js');
  let output = '';
  let status = 0;
  try {
    output = execFileSync(process.execPath, [attw, packed.tarball, '--profile', 'esm-only', '--format', 'json'], {
      encoding: 'utf8',
    });
  } catch (error) {
    const e = error as { status: number; stdout: string };
    status = e.status;
    output = e.stdout;
  }
  const report = JSON.parse(output) as { analysis?: { problems?: unknown[] }; problems?: unknown };
  t.is(status, 0, output.slice(0, 2000));
  t.truthy(report.analysis, 'attw analysed the package');
});

test('prepublishOnly refuses a release without repository, homepage and bugs, and passes one with them', (t) => {
  const pkg = JSON.parse(readFileSync(join(root, 'package.json'), 'utf8')) as Record<string, unknown>;
  t.is((pkg.scripts as Record<string, string>).prepublishOnly, 'node scripts/prepublish-check.mjs');
  const check = (fields: Record<string, unknown>) => {
    const dir = mkdtempSync(join(scratch, 'prepublish-'));
    writeFileSync(
      join(dir, 'package.json'),
      JSON.stringify({ ...pkg, repository: undefined, homepage: undefined, bugs: undefined, ...fields }),
    );
    return spawnSync(process.execPath, [join(root, 'scripts/prepublish-check.mjs'), dir], { encoding: 'utf8' });
  };
  const bare = check({});
  t.is(bare.status, 1);
  t.regex(bare.stderr, /no repository, homepage, bugs; set them before publishing/);
  const partial = check({ repository: { type: 'git', url: 'git+https://example.org/x.git' } });
  t.is(partial.status, 1);
  t.regex(partial.stderr, /no homepage, bugs;/);
  const full = check({
    repository: { type: 'git', url: 'git+https://example.org/x.git' },
    homepage: 'https://example.org/x',
    bugs: { url: 'https://example.org/x/issues' },
  });
  t.is(full.status, 0, full.stderr);
});

test('npm run docs:api builds the API reference from the TSDoc with no warning', (t) => {
  const out = join(scratch, 'api');
  const typedoc = join(root, 'node_modules/typedoc/bin/typedoc');
  const run = spawnSync(process.execPath, [typedoc, '--out', out, '--treatWarningsAsErrors', '--logLevel', 'Warn'], {
    cwd: root,
    encoding: 'utf8',
  });
  t.is(run.status, 0, `${run.stdout}\n${run.stderr}`.slice(0, 4000));
  const index = readFileSync(join(out, 'index.html'), 'utf8');
  for (const name of ['Driver', 'DeviceMapper', 'ThinPool', 'PoolWatcher']) {
    t.true(index.includes(name), `${name} is in the reference`);
  }
});
