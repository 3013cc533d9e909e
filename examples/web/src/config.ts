/**
 * Where the API and Supabase are. The defaults fit local development: `make run` (the API on
 * 127.0.0.1:8000) and `manage.py dev-supabase` (the fake Supabase on 127.0.0.1:54321, with its
 * fixed, not secret, publishable key). Set VITE_* variables (environment or `.env.local`) for a
 * real Supabase project.
 */
export const API_URL: string = import.meta.env.VITE_API_URL ?? "http://127.0.0.1:8000";
export const SUPABASE_URL: string = import.meta.env.VITE_SUPABASE_URL ?? "http://127.0.0.1:54321";
export const SUPABASE_PUBLISHABLE_KEY: string =
  import.meta.env.VITE_SUPABASE_PUBLISHABLE_KEY ?? "sb_publishable_dev-supabase_not-a-secret";
