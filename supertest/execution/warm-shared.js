// What a warm runner (warm.js) and its spare worker (warm-worker.js) share: Playwright's source
// transform, made ready before their run comes (Playwright's internals: a change in them only loses
// the time, never the run), and the run's mark in their titles.
const fs = require('fs');
const path = require('path');

// Its module hooks, as every Playwright process installs them (on node 20, module.register starts a
// loader thread: 0.1 to 0.3 s).
function installTransform(lib) {
  try {
    require(path.join(lib, 'common', 'index.js')).transform.installTransformIfNeeded();
  } catch (error) {}
}

// babel's first TypeScript and JavaScript transforms, as the runner's config, specs and our reporter
// would make them (its plugins set up: another 0.1 to 0.3 s; babel's first transform of a kind
// costs many times a later one). Only the runner runs babel: a test worker process finds the specs
// in the transform's cache, which the runner fills as it lists them. Nothing is read from the run
// (the transform reads only PW* variables, which start a run cold) and nothing is cached for its folder.
function primeBabel(lib, reporter) {
  try {
    process.env.BROWSERSLIST_IGNORE_OLD_DATA = 'true'; // as Playwright's transform sets before babel
    const { babelTransform } = require(path.join(lib, 'transform', 'babelBundle.js'));
    const source = "import { test } from '@playwright/test';\nconst n: number = 1;\ntest('t', async () => {});\n";
    babelTransform(source, '/prime.ts', false, [], true, undefined);
    babelTransform(source.replace(': number', ''), '/prime.js', false, [], true, undefined);
    // its class's methods: every run's copy of it is transformed
    babelTransform(fs.readFileSync(reporter, 'utf8'), '/prime-reporter.js', false, [], true, undefined);
  } catch (error) {}
}

// The run's mark (SUPERTEST_RUN, execution.RUN_MARK), which names its processes, is in the
// environment of those started for it; /proc shows a process's environment as it started, so one
// started ahead of the run (the runner, its spare worker) shows the mark in its title instead.
function markRun(script) {
  if (process.env.SUPERTEST_RUN) process.title = `node ${script} SUPERTEST_RUN=${process.env.SUPERTEST_RUN}`;
}

module.exports = { installTransform, primeBabel, markRun };
