/**
 * The Megapolis API client: openapi-fetch typed by the generated `schema.d.ts` (`make client`
 * writes it from the API's OpenAPI schema; do not edit it). This file is the only hand-written
 * part: the client, the API token on every request, and names for the types a front end uses.
 *
 *   const api = createApiClient({ baseUrl: "http://127.0.0.1:8000", token: () => apiToken });
 *   const { data, error, response } = await api.GET("/api/v1/posts/", { params: { query: { limit: 10 } } });
 *
 * Every call answers `{ data }` on 2xx, or `{ error, response }` with `error` typed by the
 * operation's documented error bodies: `{ detail: string }` (ErrorResponse) for 4xx/503, and
 * FastAPI's `{ detail: [{ loc, msg, type }] }` (ValidationError) for 422.
 */
import createClient, { type Client, type Middleware } from "openapi-fetch";

import type { components, operations, paths } from "./schema";

export type { components, operations, paths };

type Schemas = components["schemas"];
export type ApiClient = Client<paths>;
/** `GET /auth/me`'s user, and the user of the exchange. */
export type UserSummary = Schemas["UserSummary"];
/** A user's full record (`/api/v1/users/…`). */
export type User = Schemas["UserResponse"];
export type Post = Schemas["PostResponse"];
export type PostPage = Schemas["PostPage"];
export type PostCreate = Schemas["PostCreateRequest"];
export type PostUpdate = Schemas["PostUpdateRequest"];
/** The answer of `GET /auth/verify_supabase_token`: the API's token and its user. */
export type TokenExchange = Schemas["SupabaseTokenExchange"];
/** Every error but 422: `{ detail: string }`. */
export type ErrorResponse = Schemas["ErrorResponse"];
/** 422: what was wrong with the request, field by field. */
export type ValidationError = Schemas["HTTPValidationError"];

export interface ApiClientOptions {
  /** Where the API answers, e.g. `http://127.0.0.1:8000`. */
  baseUrl: string;
  /** The API token, read before every request; none: requests go without one. */
  token?: () => string | null | undefined;
  /** Another fetch (tests, server-side rendering). */
  fetch?: typeof globalThis.fetch;
}

export function createApiClient({ baseUrl, token, fetch }: ApiClientOptions): ApiClient {
  const client = createClient<paths>({ baseUrl, ...(fetch ? { fetch } : {}) });
  if (token) client.use(bearerToken(token));
  return client;
}

/** `Authorization: Bearer <API token>` on every request that does not set its own. */
function bearerToken(token: () => string | null | undefined): Middleware {
  return {
    onRequest({ request }) {
      const value = token();
      if (value && !request.headers.has("Authorization")) {
        request.headers.set("Authorization", `Bearer ${value}`);
      }
      return request;
    },
  };
}

/**
 * Step 2 of the sign-in flow: exchange the Supabase session's access token for the API's own
 * token (30 days by default). 401: the Supabase token is not (or no longer) valid; 403/409: the
 * account cannot be used or linked yet (`error.detail` says why); 503: Supabase is unreachable.
 */
export function exchangeSupabaseToken(api: ApiClient, supabaseAccessToken: string) {
  return api.GET("/auth/verify_supabase_token", {
    headers: { Authorization: `Bearer ${supabaseAccessToken}` },
  });
}

/** Tells a 422's body from the other errors'. */
export function isValidationError(error: unknown): error is ValidationError {
  return (
    typeof error === "object" &&
    error !== null &&
    Array.isArray((error as { detail?: unknown }).detail)
  );
}

/** One line for a person: the detail of any error body. */
export function errorMessage(error: ErrorResponse | ValidationError | undefined): string {
  if (error === undefined) return "";
  if (isValidationError(error)) {
    return (error.detail ?? []).map((item) => `${item.loc.join(".")}: ${item.msg}`).join("; ");
  }
  return error.detail;
}
