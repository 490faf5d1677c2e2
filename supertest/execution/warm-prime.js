// Playwright's source transform, primed in a warm runner (warm.js) and its spare worker
// (warm-worker.js) before their run comes: its module hooks installed (on node 20, module.register
// starts a loader thread: 0.1 to 0.3 s) and babel's first TypeScript and JavaScript transforms done
// (its plugins set up: another 0.1 to 0.3 s; babel's first transform of a kind costs many times a
// later one), as a run's config, its specs and our reporter would. Nothing is read from the run
// (the transform reads only PW* variables, which start a run cold) and nothing is cached for its
// folder. Playwright's internals: a change in them only loses the time, never the run.
const fs = require('fs');
const path = require('path');

module.exports = function prime(lib, reporter) {
  try {
    require(path.join(lib, 'common', 'index.js')).transform.installTransformIfNeeded();
    process.env.BROWSERSLIST_IGNORE_OLD_DATA = 'true'; // as Playwright's transform sets before babel
    const { babelTransform } = require(path.join(lib, 'transform', 'babelBundle.js'));
    const source = "import { test } from '@playwright/test';\nconst n: number = 1;\ntest('t', async () => {});\n";
    babelTransform(source, '/prime.ts', false, [], true, undefined);
    babelTransform(source.replace(': number', ''), '/prime.js', false, [], true, undefined);
    if (reporter) // its class's methods: every run's copy of it is transformed
      babelTransform(fs.readFileSync(reporter, 'utf8'), '/prime-reporter.js', false, [], true, undefined);
  } catch (error) {}
};
