// Supertest's live reporter: one JSON line on stdout per finished test attempt, read by the
// worker and published to the run's viewers while the run is still going.
const path = require('path');

const PREFIX = '@@supertest ';
const emit = (event) => process.stdout.write(PREFIX + JSON.stringify(event) + '\n');

class SupertestReporter {
  onBegin(config, suite) {
    const tests = suite.allTests();
    const files = {};
    for (const test of tests) {
      const file = path.basename(test.location.file);
      files[file] = (files[file] || 0) + 1;
    }
    emit({ event: 'begin', total: tests.length, files });
  }

  onTestEnd(test, result) {
    const error = result.error && (result.error.message || result.error.value);
    emit({
      event: 'test',
      id: test.id,
      title: test.titlePath().slice(3).join(' › '),
      file: path.basename(test.location.file),
      status: result.status,
      outcome: test.outcome(),
      retry: result.retry,
      durationMs: result.duration,
      error: error ? String(error).slice(0, 4000) : null,
      // Playwright runs a failed attempt again while retries are left (not after an interruption).
      willRetry: !['skipped', 'interrupted', test.expectedStatus].includes(result.status) && result.retry < test.retries,
    });
  }

  printsToStdio() {
    return true;
  }
}

module.exports = SupertestReporter;
