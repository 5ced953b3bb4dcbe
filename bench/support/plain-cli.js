'use strict';
// `pgpubsub` from the compiled build (dist/) as an installed package runs it: no tsx, for an app
// of plain JavaScript (the Status workload's whole-process figure).
const cli = require('../../dist/cli/main.js');
cli.guardOutput(process.stdout);
cli.guardOutput(process.stderr);
cli.main(process.argv).then((code) => {
  process.exitCode = code;
});
