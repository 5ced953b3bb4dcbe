'use strict';
// `pgpubsub` from the compiled build (dist/), whatever bin/pgpubsub.js would pick in a checkout
// (the TypeScript source): see bench/support/compiled.ts. tsx is registered for the bench apps.
require('tsx/cjs');
require('../../dist/cli/main.js').main(process.argv).then((code) => {
  process.exitCode = code;
});
