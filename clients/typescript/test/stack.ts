/**
 * The fake Supabase and a real API process (scripts/e2e_stack.py: `manage.py run` on a free
 * port, a new SQLite database), for these tests. The Python is the project's `.venv` (`make
 * install`), or MEGAPOLIS_PYTHON.
 */
import { spawn, type ChildProcess } from "node:child_process";
import { existsSync } from "node:fs";
import { createInterface } from "node:readline";
import { fileURLToPath } from "node:url";

export const PROJECT_ROOT = fileURLToPath(new URL("../../..", import.meta.url));

export interface Stack {
  apiUrl: string;
  supabaseUrl: string;
  supabaseKey: string;
  stop(): Promise<void>;
}

export function projectPython(): string {
  const venv = `${PROJECT_ROOT}.venv/bin/python`;
  return process.env.MEGAPOLIS_PYTHON ?? (existsSync(venv) ? venv : "python3");
}

export async function startStack(): Promise<Stack> {
  const child = spawn(projectPython(), ["scripts/e2e_stack.py"], {
    cwd: PROJECT_ROOT,
    stdio: ["pipe", "pipe", "inherit"], // stdin open: the stack ends when it closes
  });
  const first = await firstLine(child);
  const ready = JSON.parse(first) as Omit<Stack, "stop">;
  return {
    ...ready,
    stop: () =>
      new Promise<void>((resolve) => {
        child.once("exit", () => resolve());
        child.stdin?.end();
      }),
  };
}

function firstLine(child: ChildProcess): Promise<string> {
  return new Promise((resolve, reject) => {
    const lines = createInterface({ input: child.stdout! });
    lines.once("line", (line) => {
      lines.close();
      resolve(line);
    });
    child.once("exit", (code) => reject(new Error(`scripts/e2e_stack.py exited (${code}) before it was ready`)));
    child.once("error", reject);
  });
}
