#!/usr/bin/env node
// Renders Adaptive Card JSON files to PNG as a person would see them in a
// Teams channel: the real Adaptive Cards JS renderer (npm "adaptivecards",
// with markdown-it for the Markdown subset, links off as in Teams) and a
// Teams-like light host config, in headless Chromium. No network: the page
// is a local HTML file loading the bundles from node_modules.
//
//   node render.mjs [--width 760] card.json out.png [card2.json out2.png ...]
//
// Chromium runs twice per card: once to measure the rendered height
// (--dump-dom, the page writes it into its title), once to take a
// screenshot of exactly that size. CHROMIUM overrides the browser binary.
import { execFileSync } from "node:child_process";
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { dirname, join, resolve } from "node:path";
import { fileURLToPath, pathToFileURL } from "node:url";

const here = dirname(fileURLToPath(import.meta.url));
const modules = join(here, "node_modules");

// Teams' light theme, after the host config Microsoft publishes for Teams
// (samples/HostConfig/microsoft-teams-light.json in microsoft/AdaptiveCards),
// with Teams' current font stack.
const fg = {
  default: { default: "#242424", subtle: "#616161" },
  dark: { default: "#242424", subtle: "#616161" },
  light: { default: "#ffffff", subtle: "#f3f2f1" },
  accent: { default: "#5b5fc7", subtle: "#8b8cc7" },
  good: { default: "#237b4b", subtle: "#92c353" },
  warning: { default: "#f8d22a", subtle: "#f8d22a" },
  attention: { default: "#c4314b", subtle: "#e5c4314b" },
};
const style = (backgroundColor) => ({ backgroundColor, foregroundColors: fg });
const font = (fontFamily) => ({
  fontFamily,
  fontSizes: { small: 12, default: 14, medium: 14, large: 18, extraLarge: 24 },
  fontWeights: { lighter: 200, default: 400, bolder: 600 },
});
const hostConfig = {
  supportsInteractivity: true,
  spacing: { small: 8, default: 12, medium: 16, large: 20, extraLarge: 24, padding: 16 },
  separator: { lineThickness: 1, lineColor: "#EEEEEE" },
  fontStyles: {
    default: font("'Segoe UI', 'Liberation Sans', 'DejaVu Sans', sans-serif"),
    monospace: font("Consolas, 'Liberation Mono', 'DejaVu Sans Mono', monospace"),
  },
  containerStyles: {
    default: style("#ffffff"),
    emphasis: style("#f9f8f7"),
    accent: style("#c7def9"),
    good: style("#ccffcc"),
    attention: style("#ffc5b2"),
    warning: style("#ffe2b2"),
  },
  actions: {
    maxActions: 6, spacing: "Default", buttonSpacing: 8, actionsOrientation: "Horizontal",
    actionAlignment: "Left", showCard: { actionMode: "Inline", inlineTopMargin: 16, style: "emphasis" },
  },
  adaptiveCard: { allowCustomStyle: false },
  factSet: {
    title: { size: "Default", color: "Default", isSubtle: false, weight: "Bolder", wrap: true, maxWidth: 150 },
    value: { size: "Default", color: "Default", isSubtle: false, weight: "Default", wrap: true },
    spacing: 16,
  },
};

function page(card, width) {
  const json = (v) => JSON.stringify(v).replace(/</g, "\\u003c");
  return `<!doctype html>
<html><head><meta charset="utf-8"><title>rendering</title>
<link rel="stylesheet" href="${pathToFileURL(join(modules, "adaptivecards/dist/adaptivecards.css"))}">
<script src="${pathToFileURL(join(modules, "markdown-it/dist/markdown-it.min.js"))}"></script>
<script src="${pathToFileURL(join(modules, "adaptivecards/dist/adaptivecards.min.js"))}"></script>
<style>
  html, body { margin: 0; background: #f5f5f5; font-family: 'Segoe UI', 'Liberation Sans', sans-serif; }
  #post { margin: 16px; width: ${width}px; }
  #who { font-size: 12px; color: #616161; margin: 0 0 6px 2px; }
  #who b { color: #242424; font-weight: 600; margin-right: 8px; }
  #card { background: #fff; border-radius: 6px; box-shadow: 0 1px 2px rgba(0,0,0,.14), 0 0 2px rgba(0,0,0,.12); overflow: hidden; }
  .ac-adaptiveCard { border-radius: 6px; }
  .ac-pushButton { font-family: inherit; font-size: 14px; font-weight: 600; color: #242424; background: #fff;
    border: 1px solid #d1d1d1; border-radius: 4px; padding: 5px 12px; }
  .ac-textBlock p { margin: 0; }
  #error { color: #c4314b; white-space: pre-wrap; }
</style></head>
<body><div id="post"><div id="who"><b>Workflows</b>kvwatch alert</div><div id="card"></div><div id="error"></div></div>
<script>
try {
  const md = window.markdownit({ html: false, linkify: false, breaks: false });
  AdaptiveCards.AdaptiveCard.onProcessMarkdown = (text, result) => {
    result.outputHtml = md.render(text);
    result.didProcess = true;
  };
  const card = new AdaptiveCards.AdaptiveCard();
  card.hostConfig = new AdaptiveCards.HostConfig(${json(hostConfig)});
  const errors = [];
  const ctx = new AdaptiveCards.SerializationContext();
  card.parse(${json(card)}, ctx);
  for (let i = 0; i < ctx.eventCount; i++) errors.push("parse: " + ctx.getEventAt(i).message);
  for (const e of card.validateProperties().validationEvents) errors.push(e.message);
  document.getElementById("card").appendChild(card.render());
  if (errors.length) document.getElementById("error").textContent = "validation: " + errors.join("; ");
} catch (e) {
  document.getElementById("error").textContent = String(e && e.stack || e);
}
document.title = "height=" + Math.ceil(document.getElementById("post").getBoundingClientRect().bottom + 16) +
  (document.getElementById("error").textContent ? " error" : "");
</script></body></html>`;
}

function chromium(args) {
  const bin = process.env.CHROMIUM || "chromium";
  return execFileSync(bin, [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
    "--hide-scrollbars", "--allow-file-access-from-files", "--virtual-time-budget=5000",
    ...args,
  ], { encoding: "utf8", stdio: ["ignore", "pipe", "pipe"], maxBuffer: 64 << 20 });
}

function render(cardPath, outPath, width) {
  const card = JSON.parse(readFileSync(cardPath, "utf8"));
  const tmp = mkdtempSync(join(tmpdir(), "kvwatch-cards-"));
  try {
    const html = join(tmp, "card.html");
    writeFileSync(html, page(card, width));
    const profile = (n) => `--user-data-dir=${join(tmp, "profile" + n)}`;
    const dom = chromium([profile(1), "--dump-dom", pathToFileURL(html).href]);
    const m = /<title>height=(\d+)( error)?<\/title>/.exec(dom);
    if (!m) throw new Error(`${cardPath}: the page did not render (no height in its title)`);
    if (m[2]) {
      const err = /<div id="error">([\s\S]*?)<\/div>/.exec(dom);
      throw new Error(`${cardPath}: ${err ? err[1] : "render error"}`);
    }
    const height = Number(m[1]);
    chromium([profile(2), `--screenshot=${resolve(outPath)}`, `--window-size=${width + 32},${height}`, pathToFileURL(html).href]);
    console.log(`${outPath}: ${width + 32}x${height} from ${cardPath}`);
  } finally {
    rmSync(tmp, { recursive: true, force: true });
  }
}

const args = process.argv.slice(2);
let width = 760;
const files = [];
for (let i = 0; i < args.length; i++) {
  if (args[i] === "--width") width = Number(args[++i]);
  else files.push(args[i]);
}
if (files.length === 0 || files.length % 2 !== 0 || !(width > 0)) {
  console.error("usage: node render.mjs [--width 760] card.json out.png [card.json out.png ...]");
  process.exit(2);
}
for (let i = 0; i < files.length; i += 2) render(files[i], files[i + 1], width);
