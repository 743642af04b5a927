// Bundles the front end into the Python package's static/ folder (see ../widget/room.py):
//   widget.js     the anywidget ESM module, also the standalone page's script (mountPage)
//   widget.css    its styles
//   socket.io.js  the socket.io browser client, served at /socket.io/socket.io.js for the
//                 tutorial's page (docs/protocol.md, dialect 1)
// `node build.mjs` makes a minified build; `node build.mjs --watch` rebuilds with sourcemaps.
import { copyFile, mkdir } from "node:fs/promises";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import * as esbuild from "esbuild";

const here = dirname(fileURLToPath(import.meta.url));
const outdir = join(here, "..", "widget", "static");
const watch = process.argv.includes("--watch");

await mkdir(outdir, { recursive: true });
await copyFile(
  join(here, "node_modules", "socket.io-client", "dist", "socket.io.min.js"),
  join(outdir, "socket.io.js"),
);

/** @type {import("esbuild").BuildOptions} */
const common = {
  bundle: true,
  minify: !watch,
  sourcemap: watch ? "inline" : false,
  legalComments: "none",
  logLevel: "info",
};
/** @type {import("esbuild").BuildOptions[]} */
const builds = [
  {
    ...common,
    entryPoints: [join(here, "src", "widget.ts")],
    outfile: join(outdir, "widget.js"),
    format: "esm",
    target: "es2020",
  },
  {
    ...common,
    entryPoints: [join(here, "src", "styles.css")],
    outfile: join(outdir, "widget.css"),
  },
];

if (watch) {
  for (const options of builds) {
    const context = await esbuild.context(options);
    await context.watch();
  }
} else {
  await Promise.all(builds.map((options) => esbuild.build(options)));
}
