#!/usr/bin/env node
'use strict';
// The build's second step: tsc compiles lib/ to dist/, and this copies the library migrations' SQL
// text (lib/**/*.sql) beside the compiled modules that read it. Usage: node scripts/copy-sql.js [outDir]
const fs = require('node:fs');
const path = require('node:path');

const root = path.join(__dirname, '..', 'lib');
const out = path.resolve(process.argv[2] ?? path.join(__dirname, '..', 'dist'));
for (const file of fs.readdirSync(root, { recursive: true })) {
  if (!file.endsWith('.sql')) continue;
  fs.mkdirSync(path.join(out, path.dirname(file)), { recursive: true });
  fs.copyFileSync(path.join(root, file), path.join(out, file));
}
