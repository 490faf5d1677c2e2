// Supertest's warm runner (warm.py): started in a run's sandbox before the run exists, it loads
// Playwright's test runner (the half second of a cold `playwright test` spent in require), forks a
// spare of Playwright's first test worker process (warm-worker.js), installs Playwright's transform,
// runs babel once, and waits.
// When the worker has written the run's files it sends one line on stdin, {"env": {...}}: the run's
// own variables. The runner adds them to its environment (the test processes it forks inherit
// it) and runs `playwright test` in this process, exactly as cli.js would. Closing stdin without a
// line ends it. Usage: node warm.js <path of @playwright/test/cli.js>
const path = require('path');

const cli = process.argv[2];
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
let spare = fork(path.join(__dirname, 'warm-worker.js'), [lib], { stdio: STDIO });
// Unused, it must not keep this process alive (a run with no test forks no worker).
spare.unref();
spare.channel.unref();
childProcess.fork = function (modulePath, args, options) {
  // fork(modulePath[, args][, options]): Playwright passes no args.
  if (!Array.isArray(args)) options = args;
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

// What every run's start does first, done ahead while the spare loads: Playwright's transform
// installed (for ES modules a loader thread of its own, the longest part) and babel run once on a
// spec, a config and our reporter (the run's copy of it is transformed too), in memory: babel's
// first transforms load its plugins and cost many times a later one. Nothing of the run's is read,
// and nothing is written to the transform cache.
require(path.join(lib, 'common')).transform.installTransformIfNeeded();
const { babelTransform } = require(path.join(lib, 'transform', 'babelBundle.js'));
const SPEC = "import { test, expect } from '@playwright/test';\n\n" +
  "test('warm-up', async ({ page }) => {\n  await expect(page).toHaveTitle(/x/);\n});\n";
const REPORTER = require('fs').readFileSync(path.join(__dirname, 'reporter.js'), 'utf8');
for (const [name, code] of [['warm-up.spec.ts', SPEC], ['warm-up.config.js', SPEC], ['warm-up-reporter.js', REPORTER]])
  babelTransform(code, path.join(process.cwd(), name), false, [], true);

process.stdout.write('@@supertest-warm ready\n');

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
  process.argv = [process.argv[0], cli, 'test', '--config', 'playwright.config.js'];
  program.parse(process.argv);
});
process.stdin.on('end', () => {
  if (!started) process.exit(0);
});
