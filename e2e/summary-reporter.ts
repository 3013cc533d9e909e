/** The run's last line: `e2e: N passed, M failed` (`, K skipped` when any were). */
import type { FullResult, Reporter, Suite } from "@playwright/test/reporter";

export default class SummaryReporter implements Reporter {
  private suite: Suite | undefined;

  onBegin(_config: unknown, suite: Suite): void {
    this.suite = suite;
  }

  printsToStdio(): boolean {
    return true;
  }

  onEnd(result: FullResult): void {
    const outcomes = (this.suite?.allTests() ?? []).map((test) => test.outcome());
    const passed = outcomes.filter((outcome) => outcome === "expected").length;
    const skipped = outcomes.filter((outcome) => outcome === "skipped").length;
    let failed = outcomes.length - passed - skipped;
    // A run that failed outside any test (global setup, a timeout) is not "0 failed".
    if (result.status !== "passed" && failed === 0) failed = 1;
    const tail = skipped ? `, ${skipped} skipped` : "";
    process.stdout.write(`e2e: ${passed} passed, ${failed} failed${tail}\n`);
  }
}
