// Builds web/dist: the pages the demo embeds (crates/cli include_bytes!). Deterministic:
// minified, no source maps, no timestamps, so a rebuild of the same sources gives the same
// bytes (the test command rebuilds and compares with the committed dist).
//
//   dist/index.html          the fleet dashboard (served at /)
//   dist/notes.html          the notes app (served at /notes)
//   dist/assets/dashboard.js
//   dist/assets/notes.js
//   dist/assets/style.css    the pages' style with uPlot's bundled in

import { copyFileSync, mkdirSync, readdirSync, rmSync, statSync } from "node:fs";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import * as esbuild from "esbuild";

const web = dirname(fileURLToPath(import.meta.url));
const dist = join(web, "dist");

rmSync(dist, { recursive: true, force: true });
mkdirSync(join(dist, "assets"), { recursive: true });

const common = {
  bundle: true,
  minify: true,
  sourcemap: false,
  legalComments: "eof",
  charset: "utf8",
  logLevel: "warning",
  absWorkingDir: web,
};

await esbuild.build({
  ...common,
  entryPoints: { dashboard: "src/dashboard.ts", notes: "src/notes.ts" },
  outdir: join(dist, "assets"),
  format: "esm",
  platform: "browser",
  target: ["es2022", "chrome110", "firefox110", "safari16"],
});

await esbuild.build({
  ...common,
  entryPoints: { style: "src/style.css" },
  outdir: join(dist, "assets"),
});

copyFileSync(join(web, "src/pages/index.html"), join(dist, "index.html"));
copyFileSync(join(web, "src/pages/notes.html"), join(dist, "notes.html"));

const list = (d, p = "") =>
  readdirSync(d)
    .sort()
    .flatMap((f) => (statSync(join(d, f)).isDirectory() ? list(join(d, f), `${p}${f}/`) : [`${p}${f}`]));
for (const f of list(dist)) console.log(`  dist/${f}  ${statSync(join(dist, f)).size} B`);
