/**
 * examples/web/ in headless Chromium: the seed's "Frontend Authentication Flow" end to end —
 * Supabase sign-in with email and password, the exchange, the kept API token, the user, posts
 * listed and created, sign-out (API logout, then Supabase). A screenshot of each step goes to
 * e2e/screenshots/.
 */
import { expect, test, type Page } from "@playwright/test";

import { newEmail, screenshot, servers, signUp } from "../support";

const TOKEN_KEY = "megapolis.api_token";
const PASSWORD = "correct horse battery staple";

async function signIn(page: Page, email: string, password = PASSWORD): Promise<void> {
  await page.getByLabel("Email").fill(email);
  await page.getByLabel("Password").fill(password);
  await page.getByRole("button", { name: "Sign in" }).click();
}

function storedToken(page: Page): Promise<string | null> {
  return page.evaluate((key) => localStorage.getItem(key), TOKEN_KEY);
}

test("sign in, see the user, list and create posts, sign out", async ({ page, request }) => {
  const { webUrl, apiUrl } = servers();
  const email = "ada@example.com"; // each run has its own databases; the other tests use newEmail
  await signUp(request, email, PASSWORD);

  await page.goto(webUrl);
  await expect(page.getByRole("heading", { name: "Sign in" })).toBeVisible();
  await screenshot(page, "1-sign-in");

  await signIn(page, email);
  await expect(page.locator("#user-email")).toHaveText(email);
  const token = await storedToken(page);
  expect(token, "the API token is kept").toBeTruthy();
  const me = await request.get(`${apiUrl}/auth/me`, { headers: { Authorization: `Bearer ${token}` } });
  expect(await me.json()).toEqual({ user: { id: expect.any(Number), email } });
  await expect(page.locator("#user-id")).toHaveText(String((await me.json()).user.id));
  await screenshot(page, "2-signed-in");

  await page.getByLabel("Title").fill("Hello from the browser");
  await page.getByLabel("Body").fill("Signed in with Supabase, written with the API's token.");
  await page.getByRole("button", { name: "Publish" }).click();
  const posts = page.locator("#posts li");
  await expect(posts.filter({ hasText: "Hello from the browser" })).toHaveCount(1);
  await expect(page.getByLabel("Title")).toHaveValue("");
  await screenshot(page, "3-post-created");

  // The API's 422, shown as the client's errorMessage gives it.
  await page.getByLabel("Title").fill("   ");
  await page.getByRole("button", { name: "Publish" }).click();
  await expect(page.getByRole("alert")).toContainText("body.title:");
  await screenshot(page, "4-invalid-post");

  // A reload keeps the session: the token comes from localStorage.
  await page.reload();
  await expect(page.locator("#user-email")).toHaveText(email);
  await expect(posts.filter({ hasText: "Hello from the browser" })).toHaveCount(1);

  await page.getByRole("button", { name: "Sign out" }).click();
  await expect(page.getByRole("heading", { name: "Sign in" })).toBeVisible();
  expect(await storedToken(page)).toBeNull();
  const supabaseSession = await page.evaluate(() =>
    Object.keys(localStorage).filter((key) => key.startsWith("sb-")),
  );
  expect(supabaseSession, "supabase-js signed out too").toEqual([]);
  const after = await request.get(`${apiUrl}/auth/me`, { headers: { Authorization: `Bearer ${token}` } });
  expect(after.status(), "POST /auth/logout revoked the API token").toBe(401);
  await screenshot(page, "5-signed-out");
});

test("posts of other users are listed too, newest first", async ({ page, request }) => {
  const { webUrl } = servers();
  const [first, second] = [newEmail("first"), newEmail("second")];
  await signUp(request, first, PASSWORD);
  await signUp(request, second, PASSWORD);

  await page.goto(webUrl);
  await signIn(page, first);
  await page.getByLabel("Title").fill(`From ${first}`);
  await page.getByRole("button", { name: "Publish" }).click();
  await expect(page.locator("#posts li").first()).toContainText(`From ${first}`);
  await page.getByRole("button", { name: "Sign out" }).click();

  await signIn(page, second);
  await expect(page.locator("#user-email")).toHaveText(second);
  await page.getByLabel("Title").fill(`From ${second}`);
  await page.getByRole("button", { name: "Publish" }).click();
  await expect(page.locator("#posts li").first()).toContainText(`From ${second}`);
  await expect(page.locator("#posts li").nth(1)).toContainText(`From ${first}`);
});

test("a wrong password is refused by Supabase, and nothing is kept", async ({ page, request }) => {
  const { webUrl } = servers();
  const email = newEmail("mallory");
  await signUp(request, email, PASSWORD);

  await page.goto(webUrl);
  await signIn(page, email, "not the password");
  await expect(page.getByRole("alert")).toContainText("Supabase: Invalid login credentials");
  await expect(page.getByRole("heading", { name: "Sign in" })).toBeVisible();
  expect(await storedToken(page)).toBeNull();
});

test("a revoked API token sends the user back to sign in", async ({ page, request }) => {
  const { webUrl, apiUrl } = servers();
  const email = newEmail("revoked");
  await signUp(request, email, PASSWORD);

  await page.goto(webUrl);
  await signIn(page, email);
  await expect(page.locator("#user-email")).toHaveText(email);
  const token = await storedToken(page);
  // Signed out elsewhere: every API token of the user is revoked.
  const logout = await request.post(`${apiUrl}/auth/logout`, {
    headers: { Authorization: `Bearer ${token}` },
  });
  expect(logout.status()).toBe(204);

  await page.reload();
  await expect(page.getByRole("alert")).toContainText("Your session has ended");
  await expect(page.getByRole("heading", { name: "Sign in" })).toBeVisible();
  expect(await storedToken(page)).toBeNull();
});
