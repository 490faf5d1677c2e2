// A warm runner's spare test worker process (warm.js forks it ahead of the run): the heaviest
// modules a Playwright worker process needs are loaded, and it waits. When the run's runner forks
// its first worker, warm.js hands this one over instead, with the environment the fork was given:
// it takes that environment as its own, then runs Playwright's worker entry, as a fresh fork would.
// Nothing that reads the environment as it loads is loaded before that.
const path = require('path');

const lib = process.argv[2]; // playwright's lib/
require(require.resolve('playwright-core/lib/coreBundle', { paths: [lib] }));
require(path.join(lib, 'transform', 'babelBundle.js'));
// Playwright's transform registers an ES module loader, which runs on a thread of its own; where
// node has no in-thread hooks (registerHooks), that thread is started now by a loader that does
// nothing, so that Playwright's register only adds its own to it. The thread runs no test code.
const nodeModule = require('node:module');
if (nodeModule.register && !nodeModule.registerHooks) nodeModule.register('data:text/javascript,export {}');
process.once('message', ({ env, entry }) => {
  for (const name of Object.keys(process.env)) delete process.env[name];
  Object.assign(process.env, env);
  process.argv = [process.argv[0], entry];
  require(entry);
});
