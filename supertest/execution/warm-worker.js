// A warm runner's spare test worker process (warm.js forks it ahead of the run): the heaviest
// modules a Playwright worker process needs are loaded, Chromium is launched (with CPU to spare),
// and it waits. When the run's runner forks its first worker, warm.js hands this one over instead,
// with the environment the fork was given: it takes that environment as its own, then runs
// Playwright's worker entry, as a fresh fork would. Nothing that reads the environment as it loads
// is loaded before that, bar what a run setting STARTING_VARIABLES (warm.py) never uses.
// Usage: node warm-worker.js <playwright's lib/> [<launch options, JSON>]
const path = require('path');
const { installTransform, markRun } = require('./warm-shared.js');
const childProcess = require('child_process');
const fs = require('fs');
const { isDeepStrictEqual } = require('util');

const lib = process.argv[2]; // playwright's lib/
require(require.resolve('playwright-core/lib/coreBundle', { paths: [lib] }));
installTransform(lib);

// Variables Chromium and the libraries it loads read as it starts (time zone, locale, proxies and
// the desktop whose proxy settings apply, the resolver, fonts, display, libraries...), and those
// Playwright's launch reads (SELENIUM_REMOTE_URL: a browser of a Selenium Grid instead): a run whose
// environment differs from the one Chromium was launched with in any of them, by its own variables
// or by what its spec or config set in process.env, gets a browser launched then.
const BROWSER_VARIABLES = new RegExp('^(TZ|TZDIR|LANG|LANGUAGE|LC_.*|LOCPATH|GCONV_PATH|NLSPATH' +
  '|.*_PROXY|SOCKS_.*|DESKTOP_SESSION|KDE_.*|GNOME_.*|HOSTALIASES|RES_OPTIONS|LOCALDOMAIN' +
  '|CHROM.*|GOOGLE_.*|BREAKPAD_.*|SELENIUM_.*|FONTCONFIG_.*|FC_.*|FREETYPE_.*' +
  '|XDG_.*|DISPLAY|WAYLAND_.*|XAUTHORITY|DBUS_.*|GTK_.*|GDK_.*|ACCESSIBILITY_ENABLED|NO_AT_BRIDGE' +
  '|SSL.*|NSS_.*|LD_.*|MALLOC_.*|GLIBC_.*|MESA_.*|LIBGL_.*|GALLIUM_.*|ANGLE_.*|VK_.*|__GL.*|EGL_.*' +
  '|PULSE_.*|ALSA_.*|HOME|TMPDIR|TMP|TEMP|PATH)$', 'i');

// Chromium, launched ahead with the options the run's `browser` fixture will ask for: the generated
// config's launchOptions (given on the command line) and the first worker's artifacts folders under
// the run's directory (this process's cwd). Launched once warm.js has loaded ({launch: true}) and
// the CPU is free (whenIdle): on a busy machine the runner a run needs comes first.
// Playwright's `browser` fixture launches through chromium.launch(); its first call gets this
// browser if it asks for exactly these options and the environment is the same in
// BROWSER_VARIABLES; otherwise it is closed and a browser launched as always. A test that launches
// no browser leaves it to die with this process.
function launchAhead(launchOptions) {
  const chromium = require(require.resolve('playwright-core', { paths: [lib] })).chromium;
  const artifactsDir = path.join(process.cwd(), 'test-results', '.playwright-artifacts-0');
  const planned = { handleSIGINT: false, ...JSON.parse(launchOptions), tracesDir: path.join(artifactsDir, 'traces'),
    artifactsDir, headless: true };
  const launchedWith = { ...process.env };
  // Playwright starts the browser in a session of its own: it is given this one's priority, low
  // while the runner loads (warm.py gives both the normal one back when a run takes it).
  const spawn = childProcess.spawn;
  childProcess.spawn = function (command, args, options) {
    const child = spawn.apply(this, arguments);
    if (child.pid && ((Array.isArray(args) ? options : args) || {}).detached) sameNice(child.pid, 5);
    return child;
  };
  const early = chromium.launch({ ...planned }).catch(() => null).finally(() => { childProcess.spawn = spawn; });
  const launch = chromium.launch;
  chromium.launch = async function (options = {}) {
    chromium.launch = launch;
    const browser = await early;
    const wanted = { ...this._playwright._defaultLaunchOptions, ...options };
    const names = new Set([...Object.keys(launchedWith), ...Object.keys(process.env)]);
    const same = [...names].every((name) => !BROWSER_VARIABLES.test(name) || launchedWith[name] === process.env[name]);
    if (browser && browser.isConnected() && same && isDeepStrictEqual(wanted, planned))
      return browser;
    if (browser)
      await browser.close().catch(() => {});
    return launch.apply(this, arguments);
  };
}

// Our session's nice value for `pid`'s (processes.set_session_nice): its autogroup's. Linux takes one
// change in 0.1 s from us, machine wide: `tries` times, 0.1 s apart.
function sameNice(pid, tries) {
  try {
    const nice = /nice (-?\d+)/.exec(fs.readFileSync('/proc/self/autogroup', 'utf8'))[1];
    fs.writeFileSync(`/proc/${pid}/autogroup`, nice);
  } catch (error) {
    if (error.code === 'EAGAIN' && tries > 1) setTimeout(sameNice, 110, pid, tries - 1).unref();
  } // else no autogroups here, or the browser is gone
}

// The launch ahead waits for CPU to spare: most of the machine idle (IDLE_SHARE over a SAMPLE_MS
// window of /proc/stat), or WAIT_MS at most. A browser is a guess at what the run needs (a test may
// use none): on a busy machine it must not slow the runs going on, nor the runners still loading,
// which runs wait for. Once the run has taken this process, nothing is launched ahead: a run that
// waited for its runner launches what it needs itself, as a cold run does.
const IDLE_SHARE = 0.75;
const SAMPLE_MS = 200;
const WAIT_MS = 5000;
let waiting = null;

function whenIdle(then) {
  const until = Date.now() + WAIT_MS;
  let last = cpuTimes();
  waiting = setInterval(() => {
    const now = cpuTimes();
    if (!now || !last || now.idle - last.idle >= IDLE_SHARE * (now.total - last.total) || Date.now() >= until) {
      clearInterval(waiting);
      then();
    }
    last = now;
  }, SAMPLE_MS);
}

// The machine's idle and total CPU time so far (clock ticks), or null if /proc/stat can't say.
function cpuTimes() {
  try {
    const ticks = fs.readFileSync('/proc/stat', 'utf8').split('\n', 1)[0].trim().split(/\s+/).slice(1).map(Number);
    return { idle: ticks[3] + ticks[4], total: ticks.reduce((sum, n) => sum + n, 0) }; // idle, iowait
  } catch (error) {
    return null;
  }
}

process.on('message', function ahead(message) {
  if (message.launch && process.argv[3])
    whenIdle(() => launchAhead(process.argv[3]));
  if (message.env) {
    process.off('message', ahead); // the channel is Playwright's from here
    process.off('disconnect', orphaned); // and so is its end: Playwright's worker entry closes gracefully
    clearInterval(waiting);
    run(message);
  }
});

// A spare whose runner is gone (killed, or ended when the worker's end closed its stdin) has no run
// to wait for: it ends, rather than live on with a browser it launched ahead. Nothing else may: a
// worker killed as its runner loaded has left one, browser and all, in a sandbox that outlived it.
function orphaned() {
  process.exit(0);
}
process.on('disconnect', orphaned);

function run({ env, entry }) {
  for (const name of Object.keys(process.env)) delete process.env[name];
  Object.assign(process.env, env);
  markRun('warm-worker.js');
  process.argv = [process.argv[0], entry];
  require(entry);
}
