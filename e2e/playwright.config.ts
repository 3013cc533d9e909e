import { defineConfig } from "@playwright/test";

// Debian's chromium (apt-get install chromium), launched by its path: nothing downloads a browser.
const CHROMIUM = process.env.CHROMIUM ?? "/usr/bin/chromium";

export default defineConfig({
  testDir: "./tests",
  globalSetup: "./global-setup.ts",
  // One worker: the specs share one API and one fake Supabase, and the machine has 2 cores.
  workers: 1,
  retries: 0,
  timeout: 60_000,
  expect: { timeout: 15_000 },
  outputDir: "./test-results/playwright",
  reporter: [["list"], ["./summary-reporter.ts"]],
  use: {
    browserName: "chromium",
    headless: true,
    launchOptions: { executablePath: CHROMIUM },
    screenshot: "only-on-failure",
  },
});
