'use strict';
// `npm run bench`: installs the benchmark's own dependencies (the peers, never the library's)
// on first use, then runs bench/run.ts through the repository's tsx, passing the arguments on.
const { spawnSync } = require('node:child_process');
const fs = require('node:fs');
const path = require('node:path');

const benchDir = __dirname;
const { dependencies } = require('./package.json');
const missing = Object.keys(dependencies)
  .filter((name) => !fs.existsSync(path.join(benchDir, 'node_modules', name, 'package.json')));
if (missing.length > 0) {
  process.stderr.write(`bench: installing its dependencies (${missing.join(', ')} missing): npm ci --prefix bench\n`);
  const npm = process.platform === 'win32' ? 'npm.cmd' : 'npm';
  const install = spawnSync(npm, ['ci', '--prefix', benchDir, '--no-audit', '--no-fund'], { stdio: 'inherit' });
  if (install.status !== 0) {
    process.stderr.write('bench: npm ci --prefix bench failed; see above.\n');
    process.exit(install.status ?? 1);
  }
}

// tsx comes from the repository root (a devDependency of the library), as for the tests.
require('tsx/cjs');
// `npm run bench:profile` runs bench/profile.ts (its first argument says so) instead of the table.
if (process.argv[2] === '--profile') {
  process.argv.splice(2, 1);
  require('./profile.ts');
} else require('./run.ts');
