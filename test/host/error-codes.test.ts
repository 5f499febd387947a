// The error codes are a closed set: LibraryErrorCode in src/errors.ts lists them, and
// docs/errors.md says when each one is thrown. Read as text from the sources (the type exists
// only at compile time), so a code added on one side and not the other fails here.
import test from 'ava';
import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = fileURLToPath(new URL('../../../', import.meta.url));
const errorsTs = readFileSync(join(root, 'src/errors.ts'), 'utf8');
const errorsMd = readFileSync(join(root, 'docs/errors.md'), 'utf8');

function unionCodes(): string[] {
  const union = /export type LibraryErrorCode =([\s\S]*?);\n/.exec(errorsTs);
  if (!union) throw new Error('LibraryErrorCode not found in src/errors.ts');
  const codes = [...union[1]!.matchAll(/'(ERR_[A-Z_]+)'/g)].map((m) => m[1]!);
  // `ERR_SNAPSHOT_${'NOT_FOUND' | ...}`: the containerd kinds spelled out.
  const snapshot = /`ERR_SNAPSHOT_\$\{([^}]*)\}`/.exec(union[1]!);
  if (snapshot) for (const m of snapshot[1]!.matchAll(/'([A-Z_]+)'/g)) codes.push(`ERR_SNAPSHOT_${m[1]}`);
  return codes;
}

function sourceFiles(dir: string): string[] {
  return readdirSync(dir, { withFileTypes: true }).flatMap((e) =>
    e.isDirectory() ? sourceFiles(join(dir, e.name)) : e.name.endsWith('.ts') ? [join(dir, e.name)] : [],
  );
}

const codes = unionCodes();

test('LibraryErrorCode lists the library codes once each', (t) => {
  t.true(codes.length >= 30, `${codes.length} codes`);
  t.deepEqual(
    codes.filter((c, i) => codes.indexOf(c) !== i),
    [],
    'no code twice',
  );
});

test('docs/errors.md has a row for every library code, and documents no code that does not exist', (t) => {
  const undocumented = codes
    .filter((c) => !c.startsWith('ERR_SNAPSHOT_'))
    .filter((c) => !new RegExp(`^\\| \`${c}\` \\|`, 'm').test(errorsMd));
  t.deepEqual(undocumented, [], 'codes without a row of their own');
  t.true(errorsMd.includes('ERR_SNAPSHOT_'), 'the containerd codes are described');
  const documented = [...errorsMd.matchAll(/`'?(ERR_DM_[A-Z_]+)'?`/g)].map((m) => m[1]!);
  t.deepEqual([...new Set(documented.filter((c) => !codes.includes(c)))], [], 'docs name only codes the library has');
});

test('every ERR_ code the sources spell out is in LibraryErrorCode', (t) => {
  const used = new Set<string>();
  for (const file of sourceFiles(join(root, 'src'))) {
    for (const m of readFileSync(file, 'utf8').matchAll(/'(ERR_DM_[A-Z_]+)'/g)) used.add(m[1]!);
  }
  t.true(used.size >= 20, `${used.size} codes used in src/`);
  t.deepEqual(
    [...used].filter((c) => !codes.includes(c)),
    [],
  );
});
