/**
 * Imported first by the bench apps: their imports of the library's source (lib/*.ts, also those
 * of models/) resolve to the compiled build (dist/*.js) instead, the copy the compiled CLI runs
 * (bench/support/compiled.ts). Nothing else is redirected.
 */
import Module from 'node:module';
import path from 'node:path';

const ROOT = path.join(__dirname, '..', '..');
const LIB = path.join(ROOT, 'lib') + path.sep;
const DIST = path.join(ROOT, 'dist');

type Resolve = (request: string, parent: unknown, ...rest: unknown[]) => string;
const internals = Module as unknown as { _resolveFilename: Resolve };
const resolve = internals._resolveFilename;
internals._resolveFilename = function (this: unknown, request, parent, ...rest) {
  const found = resolve.call(this, request, parent, ...rest);
  return found.startsWith(LIB) && found.endsWith('.ts') ? path.join(DIST, found.slice(LIB.length).replace(/\.ts$/, '.js')) : found;
};
