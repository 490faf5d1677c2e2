// Supertest's warm runner (warm.py): started in a run's sandbox before the run exists, it loads
// Playwright's test runner (the half second of a cold `playwright test` spent in require), forks a
// spare of Playwright's first test worker process (warm-worker.js, which launches Chromium ahead
// once this runner is ready), primes Playwright's source transform, and waits.
// When the worker has written the run's files it sends one line on stdin, {"env": {...}}: the run's
// own variables. The runner adds them to its environment (the test processes it forks inherit
// it) and runs `playwright test` in this process, exactly as cli.js would. Closing stdin without a
// line ends it. Usage: node warm.js <path of @playwright/test/cli.js> [<launch options, JSON>]
// (the generated config's launchOptions: warm-worker.js launches Chromium with them ahead).
const path = require('path');
const { installTransform, primeBabel, markRun } = require('./warm-shared.js');

const cli = process.argv[2];
const launchOptions = process.argv[3];
const from = { paths: [path.dirname(cli)] };
const programPath = require.resolve('playwright/lib/program', from);
const lib = path.dirname(programPath); // playwright's lib/: what its package does not export is found from here
const { program } = require(programPath);
require(require.resolve('@playwright/test', from)); // what the generated config requires

// Playwright's first test worker process, forked ahead (warm-worker.js): taken by the first fork
// of Playwright's worker entry with the same stdio; any other fork is a fresh process.
const childProcess = require('child_process');
const fork = childProcess.fork;
const workerEntry = path.join(lib, 'worker', 'workerProcessEntry.js');
const STDIO = ['ignore', 'pipe', 'pipe', 'ipc'];
let spare = fork(path.join(__dirname, 'warm-worker.js'), launchOptions ? [lib, launchOptions] : [lib], { stdio: STDIO });
// Unused, it must not keep this process alive (a run with no test forks no worker).
spare.unref();
spare.channel.unref();
childProcess.fork = function (modulePath, args, options) {
  if (!Array.isArray(args)) options = args; // fork(modulePath[, args][, options]): Playwright passes no args
  const taken = spare;
  spare = null;
  const same = options && JSON.stringify(options.stdio) === JSON.stringify(STDIO) && !options.detached;
  if (taken && modulePath === workerEntry && same && taken.exitCode === null && taken.connected) {
    taken.ref();
    taken.channel.ref();
    taken.send({ env: options.env || process.env, entry: modulePath });
    return taken;
  }
  if (taken) taken.kill('SIGKILL');
  return fork.apply(this, arguments);
};
installTransform(lib); // while the spare loads
primeBabel(lib, path.join(__dirname, 'reporter.js'));
process.stdout.write('@@supertest-warm ready\n');
spare.send({ launch: true }, () => {}); // its browser, now that this runner is ready

let input = '';
let started = false;
process.stdin.setEncoding('utf8');
process.stdin.on('data', (chunk) => {
  input += chunk;
  const end = input.indexOf('\n');
  if (end < 0 || started) return;
  started = true;
  process.stdin.destroy(); // as `playwright test` runs with stdin from /dev/null
  const { env } = JSON.parse(input.slice(0, end));
  Object.assign(process.env, env);
  markRun('warm.js');
  process.argv = [process.argv[0], cli, 'test', '--config', 'playwright.config.js'];
  program.parse(process.argv);
});
process.stdin.on('end', () => {
  if (!started) process.exit(0);
});
