/**
 * The admin site (/admin, SQLAdmin) in a real browser: a superuser signs in with their Supabase
 * email and password, finds a user by email, deactivates them; that user's API token answers 401
 * at once; the audit view shows the change with the superuser as its actor; a user who is not a
 * superuser cannot sign in. A screenshot of each step goes to e2e/screenshots/admin-*.png.
 */
import { expect, test, type APIRequestContext } from "@playwright/test";

import { newEmail, screenshot, servers, signUp, SUPERUSER } from "../support";

/** An API token for a Supabase user: the password grant, then the API's exchange (which also
 * links the account to that Supabase user, as the admin's sign-in requires). */
async function apiToken(request: APIRequestContext, email: string, password: string): Promise<string> {
  const { apiUrl, supabaseUrl, supabaseKey } = servers();
  const session = await request.post(`${supabaseUrl}/auth/v1/token?grant_type=password`, {
    headers: { apikey: supabaseKey },
    data: { email, password },
  });
  expect(session.ok(), await session.text()).toBeTruthy();
  const { access_token: accessToken } = (await session.json()) as { access_token: string };
  const exchange = await request.get(`${apiUrl}/auth/verify_supabase_token`, {
    headers: { Authorization: `Bearer ${accessToken}` },
  });
  expect(exchange.status(), await exchange.text()).toBe(200);
  return ((await exchange.json()) as { token: string }).token;
}

async function me(request: APIRequestContext, token: string): Promise<number> {
  const response = await request.get(`${servers().apiUrl}/auth/me`, {
    headers: { Authorization: `Bearer ${token}` },
  });
  return response.status();
}

test("a superuser deactivates a user in /admin; the user's token dies; the audit log shows it", async ({
  page,
  request,
}) => {
  const { apiUrl } = servers();
  const victim = { email: newEmail("victim"), password: "victim-password" };
  await signUp(request, victim.email, victim.password);
  const victimToken = await apiToken(request, victim.email, victim.password);
  expect(await me(request, victimToken)).toBe(200);
  const title = `Post of ${victim.email}`;
  const post = await request.post(`${apiUrl}/api/v1/posts/`, {
    headers: { Authorization: `Bearer ${victimToken}` },
    data: { title, body: "to be removed by a superuser" },
  });
  expect(post.status()).toBe(201);
  await apiToken(request, SUPERUSER.email, SUPERUSER.password); // links the superuser's account

  // Someone who is not a superuser stays on the sign-in page.
  await page.goto(`${apiUrl}/admin/login`);
  await page.fill("#username", victim.email);
  await page.fill("#password", victim.password);
  await page.click("button[type=submit]");
  await expect(page.locator("#login-error")).toContainText("only an active superuser");
  await expect(page).toHaveURL(/\/admin\/login$/);
  await screenshot(page, "admin-1-not-a-superuser");

  // The superuser signs in.
  await page.fill("#username", SUPERUSER.email);
  await page.fill("#password", SUPERUSER.password);
  await page.click("button[type=submit]");
  await expect(page).toHaveURL(/\/admin\/$/);
  await screenshot(page, "admin-2-signed-in");

  // Finds the user by email.
  await page.goto(`${apiUrl}/admin/user/list`);
  await page.fill("#search-input", victim.email);
  await page.click("#search-button");
  const row = page.locator("tbody tr", { hasText: victim.email });
  await expect(row).toHaveCount(1);
  await expect(page.locator("tbody tr")).toHaveCount(1);
  await screenshot(page, "admin-3-user-found");

  // Deactivates them.
  await row.locator(`a[href*="/admin/user/edit/"]`).click();
  await expect(page.locator("#is_active")).toBeChecked();
  await page.locator("#is_active").uncheck();
  await page.click("input[type=submit][value=Save]");
  await expect(page).toHaveURL(/\/admin\/user\/list/);
  await screenshot(page, "admin-4-deactivated");

  // Their API token answers 401 from now on.
  expect(await me(request, victimToken)).toBe(401);

  // The audit view shows the change, made by the superuser.
  await page.goto(`${apiUrl}/admin/audit-event/list`);
  const event = page.locator("tbody tr", { hasText: "user.deactivate" }).first();
  await expect(event).toContainText("superuser");
  await screenshot(page, "admin-5-audit-log");

  // Deletes the user's post: SQLAdmin's AJAX delete carries the CSRF token too.
  await page.goto(`${apiUrl}/admin/post/list`);
  const postRow = page.locator("tbody tr", { hasText: title });
  await postRow.locator('a[data-bs-target="#modal-delete"]').click();
  await page.click("#modal-delete-button");
  await expect(page.locator("tbody tr", { hasText: title })).toHaveCount(0);
  await page.goto(`${apiUrl}/admin/audit-event/list`);
  await expect(page.locator("tbody tr", { hasText: "post.delete" }).first()).toContainText("superuser");
  await screenshot(page, "admin-6-post-deleted");
});
