// Supertest's reporter. While the run goes: one JSON line on stdout per finished test attempt, read
// by the worker and published to the run's viewers. At the end: supertest-results.json, the
// outcome of every test with its errors, and nothing of what the tests printed (Playwright's own
// JSON report carries all of their output, so a test that prints 50 MB makes a 50 MB report).
const fs = require('fs');
const path = require('path');

const PREFIX = '@@supertest ';
const MAX_TEXT = 8000;
const emit = (event) => process.stdout.write(PREFIX + JSON.stringify(event) + '\n');
const text = (value) => (value === undefined || value === null ? null : String(value).slice(0, MAX_TEXT));
const errorOf = (error) => ({
  message: text(error.message || error.value),
  snippet: text(error.snippet),
  location: error.location || null,
});

class SupertestReporter {
  constructor() {
    this.tests = new Map(); // test id → { test, results }
    this.errors = [];
  }

  // A test's file as the worker names it: its path under the test folder ('/' between folders).
  fileOf(test) {
    return path.relative(this.testDir, test.location.file).split(path.sep).join('/');
  }

  onBegin(config, suite) {
    this.testDir = (config.projects[0] && config.projects[0].testDir) || config.rootDir;
    const files = {};
    for (const test of suite.allTests()) {
      const file = this.fileOf(test);
      files[file] = (files[file] || 0) + 1;
      this.tests.set(test.id, { test, results: [] });
    }
    emit({ event: 'begin', total: this.tests.size, files });
  }

  onTestEnd(test, result) {
    const entry = this.tests.get(test.id);
    if (entry) entry.results.push({ status: result.status, duration: result.duration, errors: result.errors.map(errorOf) });
    const error = result.error && (result.error.message || result.error.value);
    emit({
      event: 'test',
      id: test.id,
      title: test.titlePath().slice(3).join(' › '),
      file: this.fileOf(test),
      status: result.status,
      outcome: test.outcome(),
      retry: result.retry,
      durationMs: result.duration,
      error: error ? String(error).slice(0, 4000) : null,
      // Playwright runs a failed attempt again while retries are left (not after an interruption).
      willRetry: !['skipped', 'interrupted', test.expectedStatus].includes(result.status) && result.retry < test.retries,
    });
  }

  onError(error) {
    this.errors.push(errorOf(error));
  }

  onEnd() {
    const tests = [...this.tests.values()].map(({ test, results }) => ({
      title: test.titlePath().slice(3).join(' › '),
      file: this.fileOf(test),
      outcome: test.outcome(),
      results,
    }));
    fs.writeFileSync('supertest-results.json', JSON.stringify({ tests, errors: this.errors }));
  }

  printsToStdio() {
    return true;
  }
}

module.exports = SupertestReporter;
