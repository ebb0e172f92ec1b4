import { defineConfig } from 'vite';

// The platform (services/web) serves dist/: index.html for every page, the hashed bundle under
// /static/ (not /assets/, which is a page of the UI). `npm run dev` proxies the API to a
// platform on localhost:8080.
export default defineConfig({
  esbuild: { jsx: 'automatic', jsxImportSource: 'preact' },
  build: { assetsDir: 'static', sourcemap: true, target: 'es2022' },
  server: { proxy: { '/api': 'http://localhost:8080' } },
});
