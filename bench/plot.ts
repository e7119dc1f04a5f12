/**
 * The scaling plot of `npm run bench`: an SVG written by the bench itself (no plotting library),
 * three columns (distinct functions, POST body size, connections) and two rows (req/s, p99 ms),
 * one line per measured build, x on a log scale.
 */
import fs from 'node:fs/promises';
import type { Point, ScalingResult } from './scaling';

const W = 300;
const H = 180;
const PAD = { left: 56, right: 14, top: 28, bottom: 38 };
const COLOURS = ['#1f77b4', '#d62728', '#2ca02c', '#9467bd'];
const SWEEPS: { sweep: Point['sweep']; title: string; unit: (x: number) => string }[] = [
  { sweep: 'functions', title: 'distinct functions (round-robin)', unit: (x) => String(x) },
  {
    sweep: 'body',
    title: 'POST echo body',
    unit: (x) => (x >= 1024 ? `${x / 1024} MB` : `${x} KB`),
  },
  { sweep: 'connections', title: 'connections', unit: (x) => String(x) },
];
const ROWS: { key: 'rps' | 'p99'; label: string }[] = [
  { key: 'rps', label: 'req/s' },
  { key: 'p99', label: 'p99 ms' },
];

const esc = (text: string) =>
  text.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;');

/** A "nice" upper bound for an axis: 1, 2 or 5 × a power of ten, at least `value`. */
function niceMax(value: number): number {
  if (!(value > 0)) return 1;
  const power = 10 ** Math.floor(Math.log10(value));
  for (const step of [1, 2, 5, 10]) if (step * power >= value) return step * power;
  return 10 * power;
}

function panel(
  results: ScalingResult[],
  sweep: (typeof SWEEPS)[number],
  row: (typeof ROWS)[number],
  ox: number,
  oy: number,
): string {
  const series = results.map((r) => r.points.filter((p) => p.sweep === sweep.sweep));
  const xs = [...new Set(series.flat().map((p) => p.x))].sort((a, b) => a - b);
  if (xs.length === 0) return '';
  const top = niceMax(Math.max(...series.flat().map((p) => p[row.key])));
  const [lo, hi] = [Math.log10(xs[0]), Math.log10(xs[xs.length - 1])];
  const iw = W - PAD.left - PAD.right;
  const ih = H - PAD.top - PAD.bottom;
  const px = (x: number) =>
    ox + PAD.left + (hi === lo ? iw / 2 : ((Math.log10(x) - lo) / (hi - lo)) * iw);
  const py = (y: number) => oy + PAD.top + ih - (y / top) * ih;
  const out: string[] = [];
  out.push(
    `<text x="${ox + PAD.left}" y="${oy + 16}" font-weight="bold">${esc(row.label)} vs ${esc(sweep.title)}</text>`,
  );
  for (let i = 0; i <= 4; i++) {
    const y = (top * i) / 4;
    out.push(
      `<line x1="${ox + PAD.left}" x2="${ox + W - PAD.right}" y1="${py(y)}" y2="${py(y)}" stroke="#ddd"/>`,
      `<text x="${ox + PAD.left - 4}" y="${py(y) + 4}" text-anchor="end">${y >= 1000 ? `${y / 1000}k` : y}</text>`,
    );
  }
  for (const x of xs) {
    out.push(
      `<text x="${px(x)}" y="${oy + H - PAD.bottom + 16}" text-anchor="middle">${esc(sweep.unit(x))}</text>`,
    );
  }
  series.forEach((points, i) => {
    if (points.length === 0) return;
    const colour = COLOURS[i % COLOURS.length];
    const d = points.map((p, j) => `${j === 0 ? 'M' : 'L'}${px(p.x)},${py(p[row.key])}`).join(' ');
    out.push(`<path d="${d}" fill="none" stroke="${colour}" stroke-width="2"/>`);
    for (const p of points) {
      out.push(
        `<circle cx="${px(p.x)}" cy="${py(p[row.key])}" r="3" fill="${colour}"><title>${esc(
          `${sweep.unit(p.x)}: ${p.rps.toFixed(0)} req/s, p99 ${p.p99.toFixed(0)} ms`,
        )}</title></circle>`,
      );
    }
  });
  return out.join('\n');
}

/** The plot as SVG text; `labels` names each result's line (e.g. `this build`, `baseline`). */
export function plotSvg(results: ScalingResult[], labels: string[], caption: string): string {
  const width = W * SWEEPS.length;
  const height = H * ROWS.length + 50;
  const parts: string[] = [
    `<svg xmlns="http://www.w3.org/2000/svg" width="${width}" height="${height}" font-family="sans-serif" font-size="11">`,
    `<rect width="100%" height="100%" fill="white"/>`,
  ];
  ROWS.forEach((row, r) =>
    SWEEPS.forEach((sweep, c) => parts.push(panel(results, sweep, row, c * W, r * H))),
  );
  const legendY = H * ROWS.length + 18;
  labels.forEach((label, i) => {
    const x = 20 + i * 200;
    parts.push(
      `<rect x="${x}" y="${legendY - 9}" width="12" height="12" fill="${COLOURS[i % COLOURS.length]}"/>`,
      `<text x="${x + 18}" y="${legendY + 1}">${esc(label)}</text>`,
    );
  });
  parts.push(`<text x="20" y="${legendY + 22}" fill="#555">${esc(caption)}</text>`, '</svg>');
  return parts.join('\n') + '\n';
}

/** Writes the plot to `file`. */
export async function writePlot(
  file: string,
  results: ScalingResult[],
  labels: string[],
  caption: string,
): Promise<void> {
  await fs.writeFile(file, plotSvg(results, labels, caption));
}
