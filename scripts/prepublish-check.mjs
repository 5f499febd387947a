#!/usr/bin/env node
// `npm publish` runs this (prepublishOnly): a release needs the fields a user follows from the
// npm page — where the source is, where to report a bug, the home page. The project has no
// public address yet, so they are not invented here; set them (`npm pkg set repository.url=…
// homepage=… bugs.url=…`) and publishing goes ahead.
import { readFileSync } from 'node:fs';
import { join } from 'node:path';

const dir = process.argv[2] ?? process.cwd();
const pkg = JSON.parse(readFileSync(join(dir, 'package.json'), 'utf8'));
const url = (v) => (typeof v === 'string' ? v : v?.url);
const missing = [
  ['repository', url(pkg.repository)],
  ['homepage', pkg.homepage],
  ['bugs', url(pkg.bugs) ?? pkg.bugs?.email],
]
  .filter(([, value]) => typeof value !== 'string' || value.trim() === '')
  .map(([name]) => name);
if (missing.length > 0) {
  process.stderr.write(
    `prepublish: package.json has no ${missing.join(', ')}; set ${missing.length > 1 ? 'them' : 'it'} before publishing, e.g.\n` +
      `  npm pkg set repository.type=git repository.url=git+https://example.org/devmapper.git homepage=https://example.org/devmapper bugs.url=https://example.org/devmapper/issues\n`,
  );
  process.exit(1);
}
process.stdout.write('prepublish: repository, homepage and bugs are set\n');
