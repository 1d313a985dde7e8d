// The dashboard's files, served by the admin API: the page (dashboard/), its
// script (dashboard/app.ts, bundled with esbuild on first request and kept),
// and uPlot's build from node_modules. A fixed table of paths: nothing here
// maps a URL onto the file system. The page holds no secret: it asks its
// user for the admin token and sends it only with write calls.

import { readFile } from "node:fs/promises";
import { createRequire } from "node:module";
import type { ServerResponse } from "node:http";
import { dirname } from "node:path";
import { fileURLToPath } from "node:url";
import * as esbuild from "esbuild";
import { ErrorCode, MoltError } from "./errors.ts";

const DASHBOARD = (file: string): string => fileURLToPath(new URL(`../dashboard/${file}`, import.meta.url));
const UPLOT = (file: string): string => createRequire(import.meta.url).resolve(`uplot/dist/${file}`);

interface Asset {
  type: string;
  load: () => Promise<string>;
}

const ASSETS: Record<string, Asset> = {
  "/": { type: "text/html; charset=utf-8", load: () => readFile(DASHBOARD("index.html"), "utf8") },
  "/style.css": { type: "text/css; charset=utf-8", load: () => readFile(DASHBOARD("style.css"), "utf8") },
  "/dashboard.js": { type: "text/javascript; charset=utf-8", load: bundleApp },
  "/uplot.min.css": { type: "text/css; charset=utf-8", load: () => readFile(UPLOT("uPlot.min.css"), "utf8") },
  "/uplot.iife.min.js": { type: "text/javascript; charset=utf-8", load: () => readFile(UPLOT("uPlot.iife.min.js"), "utf8") },
};

/**
 * The page may load its own files and talk to its own origin, nothing else;
 * no other site may frame it (a framed page could be made to swap).
 */
const POLICY = [
  "default-src 'none'",
  "script-src 'self'",
  "style-src 'self'",
  "img-src 'self' data:",
  "connect-src 'self'",
  "base-uri 'none'",
  "form-action 'none'",
  "frame-ancestors 'none'",
].join("; ");

const cache = new Map<string, Promise<string>>();

export function isDashboardPath(pathname: string): boolean {
  return Object.hasOwn(ASSETS, pathname);
}

/** Answers one of the dashboard's paths; each file is read (or bundled) once. */
export async function serveDashboard(pathname: string, res: ServerResponse): Promise<void> {
  const asset = ASSETS[pathname];
  if (asset === undefined) throw new MoltError(ErrorCode.ADMIN, `no dashboard file at ${pathname}`);
  let body = cache.get(pathname);
  if (body === undefined) {
    body = asset.load();
    cache.set(pathname, body);
    // A failed load (a typo while editing app.ts) is tried again on the next request.
    body.catch(() => cache.delete(pathname));
  }
  const text = await body;
  res.writeHead(200, {
    "content-type": asset.type,
    "content-length": Buffer.byteLength(text),
    "cache-control": "no-cache",
    "x-content-type-options": "nosniff",
    "content-security-policy": POLICY,
    "referrer-policy": "no-referrer",
  });
  res.end(text);
}

async function bundleApp(): Promise<string> {
  const entry = DASHBOARD("app.ts");
  try {
    const result = await esbuild.build({
      entryPoints: [entry],
      absWorkingDir: dirname(entry),
      bundle: true,
      write: false,
      format: "iife",
      platform: "browser",
      target: "es2022",
      charset: "utf8",
      legalComments: "none",
      logLevel: "silent",
    });
    const file = result.outputFiles[0];
    if (file === undefined) throw new Error("esbuild produced no output");
    return file.text;
  } catch (err) {
    throw new MoltError(ErrorCode.BUNDLE, `cannot bundle the dashboard (${entry})`, { cause: err });
  }
}
