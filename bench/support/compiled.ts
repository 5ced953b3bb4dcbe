/**
 * The benchmark runs the library as users run it: compiled (dist/, what `npm run build` and the
 * published package hold), not the TypeScript source through tsx, whose output differs (every
 * function wrapped to keep its name, whitespace minified so that a CPU profile's lines say
 * nothing). `ensureBuilt()` rebuilds dist/ when a lib/ file is newer; `COMPILED_CLI` is
 * `pgpubsub` from dist/; the bench apps import `./use-dist` first, which sends their imports of
 * lib/ to dist/, so that the CLI and the app share one compiled copy of the library.
 */
import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { ROOT } from '../../dev/processes';

export const COMPILED_CLI = path.join(ROOT, 'bench', 'support', 'compiled-cli.js');
const LIB = path.join(ROOT, 'lib');
const DIST = path.join(ROOT, 'dist');

function newest(dir: string, suffix: string): number {
  let latest = 0;
  for (const entry of fs.readdirSync(dir, { withFileTypes: true, recursive: true })) {
    if (entry.isFile() && entry.name.endsWith(suffix)) latest = Math.max(latest, fs.statSync(path.join(entry.parentPath, entry.name)).mtimeMs);
  }
  return latest;
}

/** Builds dist/ (npm run build) unless it is newer than every lib/ file (the migrations' SQL included). */
export function ensureBuilt(log: (line: string) => void): void {
  const source = Math.max(newest(LIB, '.ts'), newest(LIB, '.sql'));
  if (fs.existsSync(path.join(DIST, 'cli', 'main.js')) && newest(DIST, '.js') >= source) return;
  log('bench: building dist/ (npm run build): the benchmark runs the compiled library');
  execFileSync('npm', ['run', 'build', '--silent'], { cwd: ROOT, stdio: ['ignore', 'ignore', 'inherit'] });
}
