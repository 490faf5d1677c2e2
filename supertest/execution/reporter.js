// Supertest's live reporter: one JSON line on stdout per finished test attempt, read by the
// worker and published to the run's viewers while the run is still going.
const path = require('path');

const PREFIX = '@@supertest ';
const emit = (event) => process.stdout.write(PREFIX + JSON.stringify(event) + '\n');

class SupertestReporter {
  onBegin(config, suite) {
    emit({ event: 'begin', total: suite.allTests().length });
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
    });
  }

  printsToStdio() {
    return true;
  }
}

module.exports = SupertestReporter;
