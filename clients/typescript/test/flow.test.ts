/**
 * The seed's front-end flow with this client, against a real API process and the fake Supabase
 * (test/stack.ts): sign in with supabase-js, exchange, /auth/me, posts CRUD, typed 401 and 422
 * errors, logout. `npm test` (tsc first, so the type assertions below are checked too).
 */
import assert from "node:assert/strict";
import { after, before, describe, test } from "node:test";

import { createClient, type SupabaseClient } from "@supabase/supabase-js";
import WebSocket from "ws";

import {
  createApiClient,
  errorMessage,
  exchangeSupabaseToken,
  isValidationError,
  type ApiClient,
  type ErrorResponse,
  type Post,
  type ValidationError,
} from "../src/index";
import { startStack, type Stack } from "./stack";

let stack: Stack;
let supabase: SupabaseClient;
let apiToken: string | null = null;
let api: ApiClient;
const email = `ada.${Date.now()}@example.com`;
const password = "correct horse battery staple";

before(async () => {
  stack = await startStack();
  supabase = createClient(stack.supabaseUrl, stack.supabaseKey, {
    auth: { persistSession: false, autoRefreshToken: false },
    // Unused here; supabase-js makes its realtime client at once, and Node 20 has no WebSocket.
    realtime: { transport: WebSocket as never }, // ws is WebSocket enough; its types differ
  });
  api = createApiClient({ baseUrl: stack.apiUrl, token: () => apiToken });
  const { error } = await supabase.auth.signUp({ email, password });
  assert.equal(error, null);
  await supabase.auth.signOut();
});

after(async () => {
  await stack?.stop();
});

describe("the sign-in flow", () => {
  let supabaseToken = "";

  test("signs in to Supabase with email and password", async () => {
    const { data, error } = await supabase.auth.signInWithPassword({ email, password });
    assert.equal(error, null);
    assert.ok(data.session);
    supabaseToken = data.session.access_token;
  });

  test("exchanges the Supabase token for the API's token", async () => {
    const { data, error, response } = await exchangeSupabaseToken(api, supabaseToken);
    assert.equal(response.status, 200, errorMessage(error));
    assert.ok(data);
    assert.equal(data.message, "Token verified successfully");
    assert.equal(data.user.email, email);
    assert.ok(Date.parse(data.expires_at) > Date.now() + 29 * 24 * 3600 * 1000);
    apiToken = data.token;
  });

  test("GET /auth/me answers the user behind the API token", async () => {
    const { data, response } = await api.GET("/auth/me");
    assert.equal(response.status, 200);
    assert.equal(data?.user.email, email);
  });

  test("a Supabase token that is not one answers a typed 401", async () => {
    const { data, error, response } = await exchangeSupabaseToken(api, "not-a-token");
    assert.equal(response.status, 401);
    assert.equal(data, undefined);
    const typed: ErrorResponse | undefined = error;
    assert.equal(typeof typed?.detail, "string");
  });
});

describe("posts", () => {
  let post: Post;

  test("create", async () => {
    const { data, response } = await api.POST("/api/v1/posts/", {
      body: { title: "  Hello from TypeScript ", body: "typed all the way" },
    });
    assert.equal(response.status, 201);
    assert.ok(data);
    assert.equal(data.title, "Hello from TypeScript");
    post = data;
  });

  test("list, newest first, filtered by author", async () => {
    const { data } = await api.GET("/api/v1/posts/", {
      params: { query: { author_id: post.author_id, limit: 10 } },
    });
    assert.equal(data?.total, 1);
    assert.deepEqual(data?.items, [post]);
  });

  test("read", async () => {
    const { data } = await api.GET("/api/v1/posts/{post_id}", {
      params: { path: { post_id: post.id } },
    });
    assert.deepEqual(data, post);
  });

  test("update", async () => {
    const { data, response } = await api.PATCH("/api/v1/posts/{post_id}", {
      params: { path: { post_id: post.id } },
      body: { body: "changed" },
    });
    assert.equal(response.status, 200);
    assert.equal(data?.body, "changed");
    assert.equal(data?.title, post.title);
  });

  test("an invalid post answers a typed 422", async () => {
    const { data, error, response } = await api.POST("/api/v1/posts/", {
      body: { title: "   " },
    });
    assert.equal(response.status, 422);
    assert.equal(data, undefined);
    assert.ok(isValidationError(error));
    const typed: ValidationError = error;
    assert.deepEqual(typed.detail?.[0]?.loc, ["body", "title"]);
    assert.match(errorMessage(error), /^body\.title: /);
  });

  test("delete, then read answers 404", async () => {
    const path = { params: { path: { post_id: post.id } } };
    assert.equal((await api.DELETE("/api/v1/posts/{post_id}", path)).response.status, 204);
    const { error, response } = await api.GET("/api/v1/posts/{post_id}", path);
    assert.equal(response.status, 404);
    assert.equal(errorMessage(error), error?.detail);
  });

  test("without the API token: a typed 401", async () => {
    const anonymous = createApiClient({ baseUrl: stack.apiUrl });
    const { error, response } = await anonymous.GET("/api/v1/posts/");
    assert.equal(response.status, 401);
    assert.equal(response.headers.get("WWW-Authenticate"), "Bearer");
    const typed: ErrorResponse | ValidationError | undefined = error;
    assert.ok(typed && !isValidationError(typed));
    assert.equal(typeof typed.detail, "string");
  });
});

describe("sign out", () => {
  test("API logout, then Supabase: both tokens stop working", async () => {
    const { data: session } = await supabase.auth.getSession();
    const supabaseToken = session.session?.access_token;
    assert.ok(supabaseToken);

    assert.equal((await api.POST("/auth/logout")).response.status, 204);
    const { response } = await api.GET("/auth/me");
    assert.equal(response.status, 401, "the API token is revoked");

    assert.equal((await supabase.auth.signOut()).error, null);
    const again = await exchangeSupabaseToken(api, supabaseToken);
    assert.equal(again.response.status, 401, "the Supabase session has ended");
    apiToken = null;
  });
});
