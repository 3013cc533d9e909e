/**
 * The seed README's "Frontend Authentication Flow", with the generated client:
 * 1. sign in to Supabase with email and password (supabase-js);
 * 2. exchange the Supabase access token for the API's own token (GET /auth/verify_supabase_token);
 * 3. keep the API token (localStorage) and send it on every call;
 * 4. use the API: the user (GET /auth/me), the posts (list, create);
 * 5. sign out: the API first (POST /auth/logout revokes every API token of the user), then Supabase.
 */
import { createClient } from "@supabase/supabase-js";
import {
  createApiClient,
  errorMessage,
  exchangeSupabaseToken,
  type Post,
  type UserSummary,
} from "megapolis-api-client";

import { API_URL, SUPABASE_PUBLISHABLE_KEY, SUPABASE_URL } from "./config";

const TOKEN_KEY = "megapolis.api_token";

const supabase = createClient(SUPABASE_URL, SUPABASE_PUBLISHABLE_KEY);
let apiToken: string | null = localStorage.getItem(TOKEN_KEY);
const api = createApiClient({ baseUrl: API_URL, token: () => apiToken });

function byId<T extends HTMLElement = HTMLElement>(id: string): T {
  const found = document.getElementById(id);
  if (!found) throw new Error(`#${id} is missing from index.html`);
  return found as T;
}

const view = {
  error: byId<HTMLParagraphElement>("error"),
  signIn: byId<HTMLFormElement>("sign-in"),
  signedIn: byId("signed-in"),
  userEmail: byId("user-email"),
  userId: byId("user-id"),
  signOut: byId<HTMLButtonElement>("sign-out"),
  newPost: byId<HTMLFormElement>("new-post"),
  postCount: byId("post-count"),
  posts: byId<HTMLUListElement>("posts"),
};

function showError(message: string): void {
  view.error.textContent = message;
  view.error.hidden = message === "";
}

function keepToken(token: string | null): void {
  apiToken = token;
  if (token) localStorage.setItem(TOKEN_KEY, token);
  else localStorage.removeItem(TOKEN_KEY);
}

function showSignedOut(): void {
  view.signedIn.hidden = true;
  view.signIn.hidden = false;
}

function showUser(user: UserSummary): void {
  view.userEmail.textContent = user.email;
  view.userId.textContent = String(user.id);
  view.signIn.hidden = true;
  view.signedIn.hidden = false;
}

/** `total` is null past the count the API makes (10,000): "more than" is all it says then. */
function renderPosts(posts: Post[], total: number | null): void {
  view.postCount.textContent = total === null ? "(more than 10,000)" : `(${total})`;
  view.posts.replaceChildren(
    ...posts.map((post) => {
      const item = document.createElement("li");
      const title = document.createElement("strong");
      title.textContent = post.title;
      const meta = document.createElement("small");
      meta.textContent = ` by user ${post.author_id}, ${new Date(post.created_at).toLocaleString()}`;
      const body = document.createElement("div");
      body.textContent = post.body;
      item.append(title, meta, body);
      return item;
    }),
  );
}

/** A 401 means the API token expired or was revoked: sign in again. */
function signedOutByTheApi(status: number): boolean {
  if (status !== 401) return false;
  keepToken(null);
  showSignedOut();
  showError("Your session has ended: sign in again.");
  return true;
}

async function loadPosts(): Promise<void> {
  const { data, error, response } = await api.GET("/api/v1/posts/", {
    params: { query: { limit: 20 } },
  });
  if (data) renderPosts(data.items, data.total);
  else if (!signedOutByTheApi(response.status)) showError(errorMessage(error));
}

/** With a kept API token: who it belongs to, and the posts. */
async function showSession(): Promise<void> {
  const { data, error, response } = await api.GET("/auth/me");
  if (!data) {
    if (!signedOutByTheApi(response.status)) showError(errorMessage(error));
    return;
  }
  showUser(data.user);
  await loadPosts();
}

async function signIn(email: string, password: string): Promise<void> {
  const { data, error } = await supabase.auth.signInWithPassword({ email, password });
  if (error || !data.session) {
    showError(`Supabase: ${error?.message ?? "no session"}`);
    return;
  }
  const exchange = await exchangeSupabaseToken(api, data.session.access_token);
  if (!exchange.data) {
    showError(`The API refused the sign-in: ${errorMessage(exchange.error)}`);
    return;
  }
  keepToken(exchange.data.token);
  showError("");
  await showSession();
}

async function createPost(title: string, body: string): Promise<boolean> {
  const { data, error, response } = await api.POST("/api/v1/posts/", { body: { title, body } });
  if (!data) {
    if (!signedOutByTheApi(response.status)) showError(errorMessage(error));
    return false;
  }
  showError("");
  await loadPosts();
  return true;
}

async function signOut(): Promise<void> {
  await api.POST("/auth/logout"); // every API token of this user answers 401 from now on
  keepToken(null);
  await supabase.auth.signOut();
  showError("");
  showSignedOut();
}

view.signIn.addEventListener("submit", (event) => {
  event.preventDefault();
  const form = new FormData(view.signIn);
  void signIn(String(form.get("email")), String(form.get("password")));
});

view.newPost.addEventListener("submit", (event) => {
  event.preventDefault();
  const form = new FormData(view.newPost);
  void createPost(String(form.get("title")), String(form.get("body"))).then((created) => {
    if (created) view.newPost.reset();
  });
});

view.signOut.addEventListener("click", () => void signOut());

if (apiToken) void showSession();
else showSignedOut();
