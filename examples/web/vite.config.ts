import { fileURLToPath } from "node:url";

import { defineConfig } from "vite";

export default defineConfig({
  server: {
    // The client is imported from clients/typescript/ (a `file:` dependency), outside this folder.
    fs: { allow: [fileURLToPath(new URL("../..", import.meta.url))] },
  },
});
