/// <reference types="vitest/config" />
import react from "@vitejs/plugin-react";
import { defineConfig } from "vite";

// The console's backend serves dist/ and answers /api on the same origin; `npm run dev` proxies /api to it.
export default defineConfig({
  plugins: [react()],
  build: {
    outDir: "dist",
    emptyOutDir: true,
    chunkSizeWarningLimit: 1500,
    // The libraries change less often than the app: their own files stay cached across releases.
    rollupOptions: {
      output: {
        manualChunks: (id) =>
          id.includes("node_modules/echarts") || id.includes("node_modules/zrender")
            ? "echarts"
            : id.includes("node_modules/")
              ? "vendor"
              : undefined,
      },
    },
  },
  server: { proxy: { "/api": "http://127.0.0.1:8003" } },
  test: { environment: "jsdom", globals: true, setupFiles: ["src/setup-tests.ts"] },
});
