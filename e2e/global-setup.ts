/**
 * Starts, once per run and for every spec: the fake Supabase and the API (scripts/e2e_stack.py:
 * `manage.py run` on a free port, a new SQLite database, CORS for the web app's origin, the
 * SUPERUSER of support.ts), then examples/web/ built against them and served by `vite preview`.
 * The specs find them in the E2E_* variables (support.ts `servers()`); everything stops at the
 * end of the run (the function returned here is Playwright's global teardown).
 */
import { spawn, type ChildProcess } from "node:child_process";
import { existsSync, mkdirSync } from "node:fs";
import { createServer } from "node:net";
import { createInterface } from "node:readline";
import { fileURLToPath } from "node:url";

import { PROJECT_ROOT, SUPERUSER } from "./support";

const WEB = `${PROJECT_ROOT}examples/web`;
const OUTPUT = fileURLToPath(new URL("./test-results/", import.meta.url));
const STARTUP_MS = 120_000;

export default async function globalSetup(): Promise<() => Promise<void>> {
  mkdirSync(OUTPUT, { recursive: true });
  // The web app's port is held until vite preview takes it, so that the API (which picks its
  // own free port meanwhile) cannot get the same one.
  const webPort = await reservePort();
  const webUrl = `http://127.0.0.1:${webPort.port}`;
  const stack = spawn(
    python(),
    [
      "scripts/e2e_stack.py",
      "--cors-origin", webUrl,
      "--superuser", `${SUPERUSER.email}:${SUPERUSER.password}`,
      "--api-log", `${OUTPUT}api.log`,
    ],
    { cwd: PROJECT_ROOT, stdio: ["pipe", "pipe", "inherit"] }, // the stack ends when stdin closes
  );
  const children: ChildProcess[] = [stack];
  const teardown = async () => {
    for (const child of children.reverse()) await stop(child);
  };
  try {
    const ready = JSON.parse(await firstLine(stack, "scripts/e2e_stack.py")) as {
      apiUrl: string;
      supabaseUrl: string;
      supabaseKey: string;
    };
    const env = {
      ...process.env,
      VITE_API_URL: ready.apiUrl,
      VITE_SUPABASE_URL: ready.supabaseUrl,
      VITE_SUPABASE_PUBLISHABLE_KEY: ready.supabaseKey,
    };
    const dist = `${OUTPUT}web-dist`;
    await run(vite(), ["build", "--outDir", dist, "--emptyOutDir", "--logLevel", "warn"], WEB, env);
    await webPort.release();
    const preview = spawn(
      vite(),
      ["preview", "--outDir", dist, "--host", "127.0.0.1", "--port", String(webPort.port), "--strictPort"],
      { cwd: WEB, env, stdio: ["ignore", "ignore", "inherit"] },
    );
    children.push(preview);
    await waitForHttp(webUrl, preview);
    Object.assign(process.env, {
      E2E_WEB_URL: webUrl,
      E2E_API_URL: ready.apiUrl,
      E2E_SUPABASE_URL: ready.supabaseUrl,
      E2E_SUPABASE_KEY: ready.supabaseKey,
    });
  } catch (error) {
    await webPort.release();
    await teardown();
    throw error;
  }
  return teardown;
}

function python(): string {
  const venv = `${PROJECT_ROOT}.venv/bin/python`;
  return process.env.MEGAPOLIS_PYTHON ?? (existsSync(venv) ? venv : "python3");
}

function vite(): string {
  const bin = `${WEB}/node_modules/.bin/vite`;
  if (!existsSync(bin)) throw new Error(`${bin} is missing: run \`make e2e\` (it runs npm ci there)`);
  return bin;
}

/** A free port of 127.0.0.1, listened on (so taken) until `release()`. */
function reservePort(): Promise<{ port: number; release: () => Promise<void> }> {
  return new Promise((resolve, reject) => {
    const server = createServer();
    server.once("error", reject);
    server.listen(0, "127.0.0.1", () => {
      const address = server.address();
      const port = typeof address === "object" && address ? address.port : 0;
      const release = () =>
        new Promise<void>((done) => (server.listening ? server.close(() => done()) : done()));
      resolve({ port, release });
    });
  });
}

function firstLine(child: ChildProcess, name: string): Promise<string> {
  return new Promise((resolve, reject) => {
    const lines = createInterface({ input: child.stdout! });
    const timer = setTimeout(() => reject(new Error(`${name} was not ready in time`)), STARTUP_MS);
    lines.once("line", (line) => {
      clearTimeout(timer);
      resolve(line);
    });
    child.once("exit", (code) => {
      clearTimeout(timer);
      reject(new Error(`${name} exited (${code}) before it was ready`));
    });
    child.once("error", (error) => {
      clearTimeout(timer);
      reject(new Error(`${name} did not start: ${error.message}`));
    });
  });
}

function run(command: string, args: string[], cwd: string, env: NodeJS.ProcessEnv): Promise<void> {
  return new Promise((resolve, reject) => {
    const child = spawn(command, args, { cwd, env, stdio: ["ignore", "inherit", "inherit"] });
    child.once("error", reject);
    child.once("exit", (code) =>
      code === 0 ? resolve() : reject(new Error(`${command} ${args.join(" ")} exited ${code}`)),
    );
  });
}

async function waitForHttp(url: string, server: ChildProcess): Promise<void> {
  const deadline = Date.now() + STARTUP_MS;
  while (Date.now() < deadline) {
    if (server.exitCode !== null) throw new Error(`the server for ${url} exited (${server.exitCode})`);
    try {
      if ((await fetch(url)).ok) return;
    } catch {
      // not listening yet
    }
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
  throw new Error(`${url} did not answer in time`);
}

function stop(child: ChildProcess): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return Promise.resolve();
  return new Promise((resolve) => {
    const force = setTimeout(() => child.kill("SIGKILL"), 10_000);
    child.once("exit", () => {
      clearTimeout(force);
      resolve();
    });
    if (child.stdin) child.stdin.end(); // scripts/e2e_stack.py: stops the API, removes its database
    else child.kill("SIGTERM");
  });
}
