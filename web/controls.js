// controls.js - the per-session settings controls. The server's settings are the truth: a control
// sends update_settings, the server answers settings_updated (the control flashes "applied") or
// error invalid_setting. A number or text the user typed that is out of range is not sent: the
// field says the allowed range and keeps what was typed until it is corrected (the server's refusal
// is shown the same way); a choice the server refuses goes back to the server's value and says why.
// Changes made while disconnected are sent once the session is back.

import { $, byteLength, pulse } from './util.js';

const FIELDS = ['prompt', 'max_tokens', 'temperature', 'interval_ms', 'backend', 'model',
  'frame_max_side', 'jpeg_quality', 'stats_interval_ms', 'debug'];

function fmtSeconds(ms) {
  return String(+(ms / 1000).toFixed(3));
}

// Typed numbers: the allowed range is the input's own min/max (index.html; applyConfig narrows
// frame_max_side to the server's cap); scale turns what is typed into the protocol's unit.
const NUMBERS = {
  max_tokens: { int: true, unit: 'tokens' },
  interval_ms: { int: false, unit: 'seconds', scale: 1000 },
  frame_max_side: { int: true, unit: 'pixels' },
};

const AUTO_MODEL_LABEL = 'Automatic (first vision model)';

const LABELS = {
  prompt: 'prompt', max_tokens: 'max tokens', temperature: 'temperature', interval_ms: 'interval',
  backend: 'backend', model: 'model', frame_max_side: 'frame size', jpeg_quality: 'JPEG quality',
  stats_interval_ms: 'stats update interval', debug: 'debug setting',
};

export class Controls {
  /** send(partialSettings) → bool; onApplied(settings, changedFields) after each server state. */
  constructor({ send, onApplied }) {
    this.send = send;
    this.onApplied = onApplied;
    this.settings = null;
    this.pending = [];
    this.deferred = {};
    this.presets = [];
    this.models = [];
    this.backends = [];
    this.maxPromptBytes = 4000;

    this.el = {
      preset: $('promptPreset'), prompt: $('promptText'), promptBytes: $('promptBytes'),
      maxTokens: $('maxTokens'), temperature: $('temperature'), temperatureOut: $('temperatureValue'),
      interval: $('interval'), backend: $('backendSelect'), model: $('modelSelect'),
      frameMaxSide: $('frameMaxSide'), jpegQuality: $('jpegQuality'), jpegQualityOut: $('jpegQualityValue'),
      statsInterval: $('statsInterval'), debug: $('debugToggle'), modelHint: $('modelHint'),
    };
    // field name → control, how to read it, how to show a value
    const e = this.el;
    this.map = {
      prompt: { input: e.prompt, write: (v) => this._writePrompt(v) },
      max_tokens: { input: e.maxTokens, write: (v) => { e.maxTokens.value = String(v); } },
      temperature: {
        input: e.temperature,
        write: (v) => { e.temperature.value = String(v); this._showTemperature(); },
      },
      interval_ms: { input: e.interval, write: (v) => { e.interval.value = fmtSeconds(v); } },
      backend: { input: e.backend, write: (v) => this._writeBackend(v) },
      model: { input: e.model, write: (v) => this._writeModel(v) },
      frame_max_side: { input: e.frameMaxSide, write: (v) => { e.frameMaxSide.value = String(v); } },
      jpeg_quality: {
        input: e.jpegQuality,
        write: (v) => { e.jpegQuality.value = String(v); this._showQuality(); },
      },
      stats_interval_ms: { input: e.statsInterval, write: (v) => this._writeStatsInterval(v) },
      debug: { input: e.debug, write: (v) => { e.debug.checked = !!v; } },
    };
    this._bind();
  }

  _bind() {
    const e = this.el;
    e.preset.addEventListener('change', () => {
      const p = this.presets.find((x) => x.id === e.preset.value);
      if (!p) return;
      e.prompt.value = p.prompt;
      this._promptBytes();
      this.apply({ prompt: p.prompt }, 'prompt');
    });
    e.prompt.addEventListener('input', () => {
      this._promptBytes();
      this._syncPreset(e.prompt.value);
      this._clearInvalid('prompt');
    });
    e.prompt.addEventListener('blur', () => this._applyPrompt());
    e.prompt.addEventListener('keydown', (ev) => {
      if (ev.key === 'Enter' && (ev.ctrlKey || ev.metaKey)) {
        ev.preventDefault();
        this._applyPrompt();
      }
    });

    for (const field of Object.keys(NUMBERS)) {
      const input = this.map[field].input;
      input.addEventListener('change', () => this._applyTyped(field));
      // Corrected while typing: the complaint goes as soon as the value is allowed.
      input.addEventListener('input', () => {
        if (this._isInvalid(field) && this._check(field).ok) this._clearInvalid(field);
      });
    }
    e.temperature.addEventListener('input', () => this._showTemperature());
    e.temperature.addEventListener('change', () => this._applyNumber('temperature', e.temperature, parseFloat));
    e.jpegQuality.addEventListener('input', () => this._showQuality());
    e.jpegQuality.addEventListener('change', () => this._applyNumber('jpeg_quality', e.jpegQuality, parseInt));
    e.statsInterval.addEventListener('change', () => this.apply({ stats_interval_ms: parseInt(e.statsInterval.value, 10) }, 'stats_interval_ms'));
    e.debug.addEventListener('change', () => this.apply({ debug: e.debug.checked }, 'debug'));

    e.backend.addEventListener('change', () => {
      const b = e.backend.value;
      const cur = this.settings ? this.settings.model : '';
      const served = this._modelsFor(b);
      const change = { backend: b };
      // Keep the model when the new backend serves it; otherwise take that backend's first one.
      if (b && served.length && !served.some((m) => m.id === cur)) change.model = served[0].id;
      this._fillModels(b, change.model ?? cur);
      this.apply(change, 'backend');
    });
    e.model.addEventListener('change', () => {
      const id = e.model.value;
      const change = { model: id };
      const b = e.backend.value;
      if (b && id) {
        // A model listed under "any backend" may live on a backend other than the chosen one.
        const m = this.models.find((x) => x.id === id && x.backend === b);
        if (!m) change.backend = '';
      }
      this.apply(change, 'model');
    });
  }

  _applyPrompt() {
    const e = this.el;
    const text = e.prompt.value;
    if (!this.settings || text === this.settings.prompt) return;
    if (!text.trim()) {
      this._markInvalid('prompt', 'The prompt cannot be empty: write a question about the picture, or pick a preset.');
      return;
    }
    const n = byteLength(text);
    if (n > this.maxPromptBytes) {
      this._markInvalid('prompt', `The prompt is ${n} bytes long; the most allowed is ${this.maxPromptBytes} bytes. Shorten it.`);
      return;
    }
    this.apply({ prompt: text }, 'prompt');
  }

  /** Is the typed number allowed? {ok, value (protocol unit)} or {ok: false, why}. */
  _check(field) {
    const spec = NUMBERS[field];
    const input = this.map[field].input;
    const min = Number(input.min);
    const max = Number(input.max);
    const raw = input.value.trim();
    const range = this._rangeText(field);
    if (input.validity.badInput || raw === '') return { ok: false, why: `Enter ${range}.` };
    const v = Number(raw);
    if (!Number.isFinite(v) || (spec.int && !Number.isInteger(v)) || v < min || v > max) {
      return { ok: false, why: `Enter ${range} (you typed ${raw}).` };
    }
    return { ok: true, value: spec.scale ? Math.round(v * spec.scale) : v };
  }

  _rangeText(field) {
    const spec = NUMBERS[field];
    const input = this.map[field].input;
    return `${spec.int ? 'a whole number' : 'a number'} of ${spec.unit} from ${input.min} to ${input.max}`;
  }

  _applyTyped(field) {
    const r = this._check(field);
    if (!r.ok) {
      this._markInvalid(field, r.why);
      return;
    }
    if (this.settings && this.settings[field] === r.value) {
      this._clearInvalid(field); // typed back to what the session already has
      return;
    }
    this.apply({ [field]: r.value }, field);
  }

  _applyNumber(field, input, parse) {
    const v = parse(input.value, 10);
    if (!Number.isFinite(v)) {
      this._markInvalid(field, 'Enter a number.');
      this._revert([field], true);
      return;
    }
    this.apply({ [field]: v }, field);
  }

  /** Send a change; the control shows the server's answer when it comes. */
  apply(change) {
    for (const f of Object.keys(change)) this._clearInvalid(f);
    if (this.send(change)) {
      this.pending.push(Object.keys(change));
      for (const f of Object.keys(change)) this._fieldEl(f)?.classList.add('applying');
    } else {
      Object.assign(this.deferred, change);
      for (const f of Object.keys(change)) this._message(f, 'Not connected: will apply when the connection is back.', 'info');
    }
  }

  /** Changes made while offline, to send after the session is (re)established. */
  takeDeferred() {
    const d = this.deferred;
    this.deferred = {};
    return d;
  }

  /** The session message: the server's settings, no flash. */
  setSession(settings) {
    this.pending = [];
    this._show(settings, new Set());
  }

  /** settings_updated: show, and flash what changed (and what this page asked for). */
  updated(settings) {
    const asked = this.pending.shift() || [];
    const changed = new Set(asked);
    if (this.settings) for (const f of FIELDS) if (JSON.stringify(settings[f]) !== JSON.stringify(this.settings[f])) changed.add(f);
    this._show(settings, changed);
  }

  /**
   * error invalid_setting: nothing changed. A typed value stays (with the allowed range) until
   * the user corrects it; a choice goes back to the server's value. Returns false when the field
   * is not one of these controls (the caller then says it elsewhere).
   */
  invalid(msg) {
    const asked = this.pending.shift() || [];
    const field = typeof msg.field === 'string' ? msg.field : asked[0];
    const typed = (f) => f in NUMBERS || f === 'prompt';
    this._revert((asked.length ? asked : [field]).filter((f) => !typed(f)));
    for (const f of asked) this._fieldEl(f)?.classList.remove('applying');
    if (!field || !this.map[field]) return false;
    this._markInvalid(field, this.explain(field, msg.message));
    return true;
  }

  /** A sentence for a refused setting (the server says e.g. "out of range"). */
  explain(field, serverMessage) {
    const said = typeof serverMessage === 'string' && serverMessage ? serverMessage : 'not accepted';
    if (field in NUMBERS) return `The server did not accept this value (${said}). Enter ${this._rangeText(field)}.`;
    if (field === 'prompt') return `The server did not accept this prompt (${said}). It must be 1 to ${this.maxPromptBytes} bytes.`;
    if (field === 'model') return `This model cannot be used (${said}). Pick one from the list, or Automatic.`;
    if (field === 'backend') return `This backend cannot be used (${said}). Pick another one, or Any backend.`;
    return `The server did not accept this ${LABELS[field] || field} (${said}).`;
  }

  _isInvalid(field) {
    const fe = this._fieldEl(field);
    return !!fe && fe.classList.contains('invalid');
  }

  _show(settings, flash) {
    if (!settings || typeof settings !== 'object') return;
    this.settings = { ...(this.settings || {}), ...settings };
    for (const f of FIELDS) {
      if (!(f in settings)) continue;
      const m = this.map[f];
      if (f === 'prompt' && document.activeElement === m.input && m.input.value !== this.settings.prompt && !flash.has('prompt')) {
        continue; // do not clobber text being typed (another tab changed the prompt)
      }
      if ((f in NUMBERS || f === 'prompt') && this._isInvalid(f)) {
        continue; // what the user typed stays, with the range, until they correct it
      }
      m.write(settings[f]);
      const fe = this._fieldEl(f);
      fe?.classList.remove('applying');
      if (flash.has(f)) {
        this._clearInvalid(f);
        this._message(f, '', '');
        pulse(fe, 'applied', 1200);
      }
    }
    this.onApplied(this.settings, flash);
  }

  _revert(fields, keepMessage = false) {
    if (!this.settings) return;
    for (const f of fields) {
      const m = this.map[f];
      if (!m) continue;
      if (f in this.settings) m.write(this.settings[f]);
      this._fieldEl(f)?.classList.remove('applying');
      if (f === 'backend' || f === 'model') this._fillModels(this.settings.backend, this.settings.model);
    }
  }

  _fieldEl(field) {
    const m = this.map[field];
    return m ? m.input.closest('.field') : null;
  }

  _message(field, text, kind) {
    const fe = this._fieldEl(field);
    const msg = fe && fe.querySelector('.field-msg');
    if (!msg) return;
    msg.textContent = text;
    msg.dataset.kind = kind || '';
  }

  _markInvalid(field, why) {
    const m = this.map[field];
    if (!m) return;
    const fe = this._fieldEl(field);
    fe?.classList.add('invalid');
    m.input.setAttribute('aria-invalid', 'true');
    this._message(field, why, 'error');
    // Settings that live in the settings dialog or the closed "Advanced" group must still be seen.
    const det = m.input.closest('details');
    if (det && !det.open) det.open = true;
  }

  _clearInvalid(field) {
    const m = this.map[field];
    if (!m) return;
    const fe = this._fieldEl(field);
    if (fe && fe.classList.contains('invalid')) {
      fe.classList.remove('invalid');
      this._message(field, '', '');
    }
    m.input.removeAttribute('aria-invalid');
  }

  // ---- prompt -------------------------------------------------------------------------------

  setPresets(presets, maxPromptBytes) {
    this.presets = Array.isArray(presets) ? presets.filter((p) => p && typeof p.prompt === 'string') : [];
    if (Number.isFinite(maxPromptBytes)) this.maxPromptBytes = maxPromptBytes;
    const sel = this.el.preset;
    const opts = [new Option('Custom prompt', '')];
    for (const p of this.presets) opts.push(new Option(p.label || p.id, p.id));
    sel.replaceChildren(...opts);
    this._syncPreset(this.el.prompt.value);
  }

  _writePrompt(v) {
    this.el.prompt.value = v;
    this._promptBytes();
    this._syncPreset(v);
  }

  _syncPreset(text) {
    const p = this.presets.find((x) => x.prompt === text);
    this.el.preset.value = p ? p.id : '';
  }

  _promptBytes() {
    const n = byteLength(this.el.prompt.value);
    this.el.promptBytes.textContent = `${n} / ${this.maxPromptBytes} bytes`;
    this.el.promptBytes.dataset.over = n > this.maxPromptBytes ? 'true' : 'false';
  }

  _showTemperature() {
    this.el.temperatureOut.textContent = Number(this.el.temperature.value).toFixed(2);
  }

  _showQuality() {
    this.el.jpegQualityOut.textContent = String(this.el.jpegQuality.value);
  }

  _writeStatsInterval(v) {
    const sel = this.el.statsInterval;
    const val = String(v);
    if (![...sel.options].some((o) => o.value === val)) {
      const o = new Option(`${+(v / 1000).toFixed(3)} s`, val);
      const after = [...sel.options].find((x) => parseInt(x.value, 10) > v);
      sel.add(o, after || null);
    }
    sel.value = val;
  }

  // ---- backends and models ---------------------------------------------------------------------

  /** Models list from GET /api/v1/models. */
  setModels(models, backends) {
    const key = JSON.stringify([models, backends]);
    if (key === this.modelsKey) return; // unchanged: leave an open list alone
    this.modelsKey = key;
    this.models = Array.isArray(models) ? models.filter((m) => m && typeof m.id === 'string') : [];
    this.backends = Array.isArray(backends) ? backends.map((b) => (typeof b === 'string' ? { id: b } : b)).filter((b) => b && typeof b.id === 'string') : [];
    const sel = this.el.backend;
    const opts = [new Option('Any backend', '')];
    for (const b of this.backends) {
      const label = b.healthy === false ? `${b.id} (unreachable)` : b.id;
      opts.push(new Option(label, b.id));
    }
    sel.replaceChildren(...opts);
    this._writeBackend(this.settings ? this.settings.backend : '');
  }

  _modelsFor(backend) {
    if (!backend) {
      const seen = new Set();
      return this.models.filter((m) => (seen.has(m.id) ? false : seen.add(m.id)));
    }
    return this.models.filter((m) => m.backend === backend);
  }

  _writeBackend(v) {
    const sel = this.el.backend;
    const val = v || '';
    if (![...sel.options].some((o) => o.value === val)) sel.add(new Option(val, val));
    sel.value = val;
    this._fillModels(val, this.settings ? this.settings.model : '');
  }

  _writeModel(v) {
    this._fillModels(this.el.backend.value, v);
  }

  _fillModels(backend, selected) {
    const sel = this.el.model;
    const list = this._modelsFor(backend);
    const opts = list.map((m) => {
      const label = m.name && m.name !== m.id ? `${m.name} (${m.id})` : m.id;
      return new Option(!backend && this.backends.length > 1 && m.backend ? `${label} — ${m.backend}` : label, m.id);
    });
    if (selected && !list.some((m) => m.id === selected)) opts.unshift(new Option(`${selected} (not listed)`, selected));
    // "Automatic" is always a choice once the session is known, whatever the backends listed.
    if (this.settings) opts.unshift(new Option(AUTO_MODEL_LABEL, ''));
    if (!opts.length) {
      const o = new Option(this.models.length ? 'No model on this backend' : 'No models available', '');
      o.disabled = true;
      opts.push(o);
    }
    sel.replaceChildren(...opts);
    sel.value = this.settings ? selected || '' : selected || (opts[0] ? opts[0].value : '');
    const m = this.models.find((x) => x.id === selected && (!backend || x.backend === backend));
    let hint = '';
    if (m && m.backend) hint = `Served by ${m.backend}`;
    else if (!selected) {
      hint = list.length ? 'The server picks the first vision model it finds.'
        : 'No backend has listed a model yet: the server uses the first vision model once one does.';
    }
    this.el.modelHint.textContent = hint;
  }
}
