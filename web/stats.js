// stats.js - the System card: host line, four tiles (CPU %, RAM, GPU %, VRAM) each with value, bar
// and a sparkline drawn on a <canvas> from stats.history. Missing readings (null) show a greyed
// "N/A". Every server string is set with textContent.

import { $, num } from './util.js';

const TILES = [
  { key: 'cpu', id: 'statCpu', hist: 'cpu_util', color: '--c-cpu' },
  { key: 'ram', id: 'statRam', hist: 'ram_used', color: '--c-ram' },
  { key: 'gpu', id: 'statGpu', hist: 'gpu_util', color: '--c-gpu' },
  { key: 'vram', id: 'statVram', hist: 'vram_used', color: '--c-vram' },
];

function pct(v) {
  return `${Math.round(v)}%`;
}

function gb(used, total) {
  const u = used >= 100 ? used.toFixed(0) : used.toFixed(1);
  return total !== null ? `${u} / ${total >= 100 ? total.toFixed(0) : total.toFixed(1)} GB` : `${u} GB`;
}

export class StatsView {
  constructor() {
    this.tiles = {};
    for (const t of TILES) {
      const value = $(t.id);
      const tile = value.closest('.tile');
      this.tiles[t.key] = {
        ...t,
        tile,
        value,
        bar: tile.querySelector('.bar-fill'),
        barTrack: tile.querySelector('.bar'),
        sub: tile.querySelector('.tile-sub'),
        canvas: tile.querySelector('canvas'),
        series: [],
        max: 100,
      };
    }
    this.hostname = $('statHostname');
    this.cpuModel = $('statCpuModel');
    this.gpuName = $('statGpuName');
    this.card = $('statsCard');
    this.updated = $('statsUpdated');
    this.last = null;
    this.raf = 0;
    if (typeof ResizeObserver === 'function') {
      const ro = new ResizeObserver(() => this.redraw());
      for (const t of Object.values(this.tiles)) ro.observe(t.canvas);
    }
    window.addEventListener('resize', () => this.redraw());
  }

  /** Show that the server sends no stats (stats_interval_ms = 0). */
  setPaused(paused) {
    this.card.dataset.paused = paused ? 'true' : 'false';
  }

  update(s) {
    if (!s || typeof s !== 'object') return;
    this.last = s;
    this.hostname.textContent = typeof s.hostname === 'string' && s.hostname ? s.hostname : 'unknown host';
    const cpuModel = typeof s.cpu_model === 'string' ? s.cpu_model.replace(/\s*@\s*[\d.]+\s*GHz/i, '') : '';
    this.cpuModel.textContent = cpuModel || 'CPU';
    const gpuName = typeof s.gpu_name === 'string' && s.gpu_name ? s.gpu_name : '';
    this.gpuName.textContent = gpuName || 'no GPU readable';
    this.gpuName.dataset.na = gpuName ? 'false' : 'true';

    const h = s.history && typeof s.history === 'object' ? s.history : {};
    const cpu = num(s.cpu_percent);
    const ramUsed = num(s.ram_used_gb);
    const ramTotal = num(s.ram_total_gb);
    const ramPct = num(s.ram_percent) ?? (ramUsed !== null && ramTotal ? (100 * ramUsed) / ramTotal : null);
    const gpu = num(s.gpu_percent);
    const vramUsed = num(s.vram_used_gb);
    const vramTotal = num(s.vram_total_gb);
    const vramPct = num(s.vram_percent) ?? (vramUsed !== null && vramTotal ? (100 * vramUsed) / vramTotal : null);

    this._tile('cpu', cpu !== null ? pct(cpu) : null, cpu, h.cpu_util, 100, null);
    this._tile('ram', ramUsed !== null ? gb(ramUsed, ramTotal) : null, ramPct, h.ram_used, ramTotal || null, null);
    const extra = [];
    const temp = num(s.temp_c);
    const power = num(s.power_w);
    if (temp !== null) extra.push(`${Math.round(temp)} °C`);
    if (power !== null) extra.push(`${power >= 100 ? Math.round(power) : power.toFixed(1)} W`);
    this._tile('gpu', gpu !== null ? pct(gpu) : null, gpu, h.gpu_util, 100, extra.join(' · ') || null);
    this._tile('vram', vramUsed !== null ? gb(vramUsed, vramTotal) : null, vramPct, h.vram_used, vramTotal || null, null);
    this.updated.textContent = new Date().toLocaleTimeString([], { hour: '2-digit', minute: '2-digit', second: '2-digit' });
    this.redraw();
  }

  _tile(key, text, percent, history, max, sub) {
    const t = this.tiles[key];
    const na = text === null;
    t.value.textContent = na ? 'N/A' : text;
    t.value.dataset.na = na ? 'true' : 'false';
    t.tile.dataset.na = na ? 'true' : 'false';
    const p = percent === null ? 0 : Math.max(0, Math.min(100, percent));
    t.bar.style.transform = `scaleX(${p / 100})`;
    t.barTrack.setAttribute('aria-valuenow', String(Math.round(p)));
    t.barTrack.setAttribute('aria-valuetext', na ? 'not available' : text);
    t.series = Array.isArray(history) ? history.slice(-60).map((v) => num(v)) : [];
    t.max = max;
    if (t.sub) {
      t.sub.textContent = sub || '';
      t.sub.hidden = !sub;
    }
  }

  /** Redraw the sparklines (after data, resize or a theme change). */
  redraw() {
    cancelAnimationFrame(this.raf);
    this.raf = requestAnimationFrame(() => {
      for (const t of Object.values(this.tiles)) drawSparkline(t.canvas, t.series, t.max, cssColor(t.color));
    });
  }
}

function cssColor(varName) {
  return getComputedStyle(document.body).getPropertyValue(varName).trim() || '#76b900';
}

/** Line + light fill of the series; gaps where values are null; scaled to max (or the data). */
export function drawSparkline(canvas, series, max, color) {
  const dpr = Math.min(3, window.devicePixelRatio || 1);
  const w = Math.max(1, Math.round(canvas.clientWidth * dpr));
  const h = Math.max(1, Math.round(canvas.clientHeight * dpr));
  if (canvas.width !== w) canvas.width = w;
  if (canvas.height !== h) canvas.height = h;
  const ctx = canvas.getContext('2d');
  ctx.clearRect(0, 0, w, h);
  const values = series.filter((v) => v !== null);
  if (!values.length) return;
  const top = Math.max(max || 0, ...values, 1);
  const n = Math.max(series.length, 2);
  const step = w / (n - 1);
  const pad = 2 * dpr;
  const y = (v) => h - pad - (v / top) * (h - 2 * pad);
  // Runs of consecutive readings, drawn separately so missing samples leave gaps.
  const runs = [];
  let run = [];
  series.forEach((v, i) => {
    if (v === null) {
      if (run.length) runs.push(run);
      run = [];
    } else {
      run.push([i * step + (n - series.length) * step, y(v)]);
    }
  });
  if (run.length) runs.push(run);
  ctx.lineWidth = 1.6 * dpr;
  ctx.lineJoin = 'round';
  ctx.lineCap = 'round';
  for (const r of runs) {
    if (r.length === 1) r.push([r[0][0] + 0.01, r[0][1]]);
    ctx.beginPath();
    ctx.moveTo(r[0][0], h);
    for (const [px, py] of r) ctx.lineTo(px, py);
    ctx.lineTo(r[r.length - 1][0], h);
    ctx.closePath();
    ctx.globalAlpha = 0.16;
    ctx.fillStyle = color;
    ctx.fill();
    ctx.globalAlpha = 1;
    ctx.beginPath();
    r.forEach(([px, py], k) => (k ? ctx.lineTo(px, py) : ctx.moveTo(px, py)));
    ctx.strokeStyle = color;
    ctx.stroke();
  }
}
