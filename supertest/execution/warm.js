// Supertest's warm runner (warm.py): started in a run's sandbox before the run exists, it loads
// Playwright's test runner (the half second of a cold `playwright test` spent in require) and waits.
// When the worker has written the run's files it sends one line on stdin, {"env": {...}}: the run's
// own variables. The runner adds them to its environment (the test processes it forks inherit
// it) and runs `playwright test` in this process, exactly as cli.js would. Closing stdin without a
// line ends it. Usage: node warm.js <path of @playwright/test/cli.js>
const path = require('path');

const cli = process.argv[2];
const from = { paths: [path.dirname(cli)] };
const { program } = require(require.resolve('playwright/lib/program', from));
require(require.resolve('@playwright/test', from)); // what the generated config requires
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
