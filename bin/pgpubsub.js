#!/usr/bin/env node
'use strict';
// In a checkout of this repository the TypeScript source runs directly (through tsx), so
// `npx pgpubsub` works right after `npm ci`; an installed package runs its compiled dist/.
const fs = require('node:fs');
const path = require('node:path');
// Node.js 22.1 and later: keep the compiled code of the CLI's modules between runs (a quicker start,
// as TypeScript's tsc does); a no-op on Node.js 20.
require('node:module').enableCompileCache?.();

const source = path.join(__dirname, '..', 'lib', 'cli', 'main.ts');
let cli;
if (fs.existsSync(source)) {
  require('tsx/cjs');
  cli = require(source);
} else {
  cli = require('../dist/cli/main.js');
}
// Text from the database (channel names, errors, row data) never drives the terminal.
cli.guardOutput(process.stdout);
cli.guardOutput(process.stderr);
cli.main(process.argv).then((code) => {
  process.exitCode = code;
});
