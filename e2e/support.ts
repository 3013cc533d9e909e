/**
 * What every spec shares: the servers that global-setup.ts started (once per run, for all the
 * specs), a way to make a Supabase user, and step screenshots. See README.md.
 */
import { mkdirSync } from "node:fs";
import { fileURLToPath } from "node:url";

import type { APIRequestContext, Page } from "@playwright/test";

export const PROJECT_ROOT = fileURLToPath(new URL("..", import.meta.url));
export const SCREENSHOTS = fileURLToPath(new URL("./screenshots/", import.meta.url));

/** A superuser of the API that can sign in to the fake Supabase (made by global setup). */
export const SUPERUSER = { email: "admin@example.com", password: "admin-password" };

export interface Servers {
  /** examples/web/, built and served by `vite preview`. */
  webUrl: string;
  /** The API (`manage.py run`, a new SQLite database). */
  apiUrl: string;
  /** The fake Supabase Auth, and its publishable key. */
  supabaseUrl: string;
  supabaseKey: string;
}

export function servers(): Servers {
  const { E2E_WEB_URL, E2E_API_URL, E2E_SUPABASE_URL, E2E_SUPABASE_KEY } = process.env;
  if (!E2E_WEB_URL || !E2E_API_URL || !E2E_SUPABASE_URL || !E2E_SUPABASE_KEY) {
    throw new Error("the E2E_* variables are unset: run the suite with `make e2e` (global-setup.ts)");
  }
  return {
    webUrl: E2E_WEB_URL,
    apiUrl: E2E_API_URL,
    supabaseUrl: E2E_SUPABASE_URL,
    supabaseKey: E2E_SUPABASE_KEY,
  };
}

/** A new user of the fake Supabase, email confirmed at once (what supabase-js `signUp` calls). */
export async function signUp(request: APIRequestContext, email: string, password: string) {
  const { supabaseUrl, supabaseKey } = servers();
  const response = await request.post(`${supabaseUrl}/auth/v1/signup`, {
    headers: { apikey: supabaseKey },
    data: { email, password },
  });
  if (!response.ok()) throw new Error(`sign-up of ${email}: ${response.status()} ${await response.text()}`);
}

/** A unique email for this run (the database lives as long as the run). */
export function newEmail(name: string): string {
  return `${name}.${Date.now()}.${Math.floor(Math.random() * 1e6)}@example.com`;
}

/** e2e/screenshots/<name>.png (git-ignored). */
export async function screenshot(page: Page, name: string): Promise<void> {
  mkdirSync(SCREENSHOTS, { recursive: true });
  await page.screenshot({ path: `${SCREENSHOTS}${name}.png`, fullPage: true });
}
