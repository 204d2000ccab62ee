// markdown.js - a small, safe Markdown renderer for model answers.
// It builds DOM nodes with createElement/textContent only: answer text never reaches innerHTML, no
// raw HTML is interpreted, images are not loaded, and links are kept only for http(s) URLs.
// Covers what models write: headings, paragraphs (single newlines kept as line breaks), bold,
// italic, strikethrough, inline code, fenced code, lists (nested), blockquotes, rules, tables, links.
// Unclosed syntax (the usual state while tokens stream in) is shown as the literal characters.

const MAX_DEPTH = 12;

const RE_FENCE = /^ {0,3}(`{3,}|~{3,})\s*([^`\s]*)[^`]*$/;
const RE_HEADING = /^ {0,3}(#{1,6})(?:[ \t]+(.*?))?(?:[ \t]+#+)?[ \t]*$/;
const RE_HR = /^ {0,3}([-*_])(?:[ \t]*\1){2,}[ \t]*$/;
const RE_QUOTE = /^ {0,3}>[ \t]?/;
const RE_LIST = /^( *)([-*+]|\d{1,9}[.)])(?:[ \t]+(.*)|[ \t]*$)/;
const RE_TABLE_SEP = /^ *\|? *:?-+:? *(?:\| *:?-+:? *)*\|? *$/;

/** Render Markdown text into a new DocumentFragment. */
export function renderMarkdown(src) {
  const frag = document.createDocumentFragment();
  const text = String(src ?? '').replace(/\r\n?/g, '\n').replace(/\t/g, '    ');
  for (const node of parseBlocks(text.split('\n'), 0)) frag.appendChild(node);
  return frag;
}

/** Render the text as plain text (line breaks kept by CSS white-space). */
export function renderPlain(src) {
  return document.createTextNode(String(src ?? ''));
}

function el(tag, cls) {
  const e = document.createElement(tag);
  if (cls) e.className = cls;
  return e;
}

function startsBlock(line) {
  return RE_FENCE.test(line) || RE_HEADING.test(line) || RE_HR.test(line) || RE_QUOTE.test(line) ||
    RE_LIST.test(line);
}

function isTableStart(lines, i) {
  if (i + 1 >= lines.length) return false;
  const head = lines[i];
  const sep = lines[i + 1];
  return head.includes('|') && sep.includes('-') && RE_TABLE_SEP.test(sep) &&
    (sep.includes('|') || /^\s*\|/.test(head));
}

function parseBlocks(lines, depth) {
  const out = [];
  if (depth > MAX_DEPTH) {
    const p = el('p');
    p.textContent = lines.join('\n');
    return [p];
  }
  let i = 0;
  while (i < lines.length) {
    const line = lines[i];
    if (!line.trim()) { i++; continue; }

    let m = RE_FENCE.exec(line);
    if (m) {
      const fence = m[1];
      const body = [];
      i++;
      while (i < lines.length) {
        const l = lines[i];
        const t = l.trim();
        if (t.startsWith(fence[0].repeat(fence.length)) && /^[`~]+$/.test(t) && t[0] === fence[0]) { i++; break; }
        body.push(l);
        i++;
      }
      const pre = el('pre');
      const code = el('code');
      if (m[2]) code.dataset.lang = m[2].slice(0, 32);
      code.textContent = body.join('\n');
      pre.appendChild(code);
      out.push(pre);
      continue;
    }

    m = RE_HEADING.exec(line);
    if (m && (m[2] !== undefined || /#\s*$/.test(line))) {
      // Answer headings sit inside a card titled by an h2: shift them down to keep the outline sane.
      const level = Math.min(6, m[1].length + 2);
      const h = el('h' + level, 'md-h' + m[1].length);
      inline(m[2] || '', h, 0);
      out.push(h);
      i++;
      continue;
    }

    if (RE_HR.test(line)) {
      out.push(el('hr'));
      i++;
      continue;
    }

    if (RE_QUOTE.test(line)) {
      const inner = [];
      while (i < lines.length && lines[i].trim() && (RE_QUOTE.test(lines[i]) || !startsBlock(lines[i]))) {
        inner.push(lines[i].replace(RE_QUOTE, ''));
        i++;
      }
      const bq = el('blockquote');
      for (const n of parseBlocks(inner, depth + 1)) bq.appendChild(n);
      out.push(bq);
      continue;
    }

    if (isTableStart(lines, i)) {
      const res = parseTable(lines, i);
      out.push(res.node);
      i = res.next;
      continue;
    }

    if (RE_LIST.test(line)) {
      const res = parseList(lines, i, depth);
      out.push(res.node);
      i = res.next;
      continue;
    }

    // Paragraph: up to a blank line or the start of another block.
    const para = [line.trim()];
    i++;
    while (i < lines.length && lines[i].trim() && !startsBlock(lines[i]) && !isTableStart(lines, i)) {
      para.push(lines[i].trim());
      i++;
    }
    const p = el('p');
    inline(para.join('\n'), p, 0);
    out.push(p);
  }
  return out;
}

function parseList(lines, start, depth) {
  const first = RE_LIST.exec(lines[start]);
  const baseIndent = first[1].length;
  const ordered = /\d/.test(first[2]);
  const list = el(ordered ? 'ol' : 'ul');
  if (ordered) {
    const n = parseInt(first[2], 10);
    if (n !== 1 && Number.isFinite(n)) list.start = n;
  }
  const items = [];
  let loose = false;
  let i = start;
  let current = null;
  while (i < lines.length) {
    const line = lines[i];
    const m = RE_LIST.exec(line);
    if (m && m[1].length <= baseIndent + 1 && m[1].length >= baseIndent - 1 && !RE_HR.test(line)) {
      if (/\d/.test(m[2]) !== ordered) break;
      current = { lines: [m[3] || ''], contentIndent: m[1].length + m[2].length + 1 };
      items.push(current);
      i++;
      continue;
    }
    if (m && m[1].length < baseIndent - 1) break;
    if (!line.trim()) {
      // A blank line continues the list only if the next non-blank line is indented or an item.
      let j = i + 1;
      while (j < lines.length && !lines[j].trim()) j++;
      if (j >= lines.length) break;
      const next = lines[j];
      const nm = RE_LIST.exec(next);
      const indent = next.length - next.trimStart().length;
      if ((nm && nm[1].length >= baseIndent - 1 && /\d/.test(nm[2]) === ordered) || indent > baseIndent + 1) {
        loose = loose || !(nm && nm[1].length > baseIndent + 1);
        current.lines.push('');
        i++;
        continue;
      }
      break;
    }
    const indent = line.length - line.trimStart().length;
    if (indent > baseIndent) {
      // Nested content of the current item: strip up to its content indent.
      const strip = Math.min(indent, current.contentIndent);
      current.lines.push(line.slice(strip));
      i++;
      continue;
    }
    if (startsBlock(line)) break;
    // Lazy continuation of the item's paragraph.
    current.lines.push(line.trim());
    i++;
  }
  for (const item of items) {
    const li = el('li');
    const blocks = parseBlocks(item.lines, depth + 1);
    for (const b of blocks) {
      if (!loose && b.tagName === 'P') {
        // Tight list: the item's text goes straight into the <li>.
        if (li.childNodes.length) li.appendChild(el('br'));
        while (b.firstChild) li.appendChild(b.firstChild);
      } else {
        li.appendChild(b);
      }
    }
    list.appendChild(li);
  }
  return { node: list, next: i };
}

function splitRow(line) {
  let s = line.trim();
  if (s.startsWith('|')) s = s.slice(1);
  if (s.endsWith('|') && !s.endsWith('\\|')) s = s.slice(0, -1);
  const cells = [];
  let cur = '';
  for (let k = 0; k < s.length; k++) {
    if (s[k] === '\\' && s[k + 1] === '|') { cur += '|'; k++; continue; }
    if (s[k] === '|') { cells.push(cur.trim()); cur = ''; continue; }
    cur += s[k];
  }
  cells.push(cur.trim());
  return cells;
}

function parseTable(lines, start) {
  const head = splitRow(lines[start]);
  const aligns = splitRow(lines[start + 1]).map((c) => {
    const l = c.startsWith(':');
    const r = c.endsWith(':');
    return l && r ? 'center' : r ? 'right' : l ? 'left' : '';
  });
  const wrap = el('div', 'md-table');
  const table = el('table');
  const thead = el('thead');
  const tr = el('tr');
  head.forEach((c, k) => {
    const th = el('th');
    th.scope = 'col';
    if (aligns[k]) th.style.textAlign = aligns[k];
    inline(c, th, 0);
    tr.appendChild(th);
  });
  thead.appendChild(tr);
  table.appendChild(thead);
  const tbody = el('tbody');
  let i = start + 2;
  while (i < lines.length && lines[i].trim() && lines[i].includes('|')) {
    const row = el('tr');
    const cells = splitRow(lines[i]);
    for (let k = 0; k < head.length; k++) {
      const td = el('td');
      if (aligns[k]) td.style.textAlign = aligns[k];
      inline(cells[k] || '', td, 0);
      row.appendChild(td);
    }
    tbody.appendChild(row);
    i++;
  }
  table.appendChild(tbody);
  wrap.appendChild(table);
  return { node: wrap, next: i };
}

/** A checked absolute http(s) URL string, or null. */
export function safeUrl(raw) {
  const s = String(raw || '').trim().replace(/^<|>$/g, '');
  if (!/^https?:\/\//i.test(s)) return null;
  try {
    const u = new URL(s);
    return u.protocol === 'http:' || u.protocol === 'https:' ? u.href : null;
  } catch {
    return null;
  }
}

function link(href, parent) {
  const a = el('a');
  a.href = href;
  a.target = '_blank';
  a.rel = 'noopener noreferrer nofollow';
  parent.appendChild(a);
  return a;
}

const PUNCT = /[\\`*_{}[\]()#+\-.!|~<>"'$%&,/:;=?@^]/;
const WORD = /[\p{L}\p{N}]/u;

function inline(text, parent, depth) {
  if (depth > MAX_DEPTH) {
    parent.appendChild(document.createTextNode(text));
    return;
  }
  // Searches that found no closer from position p cannot find one from any later position:
  // remember them so unbalanced input stays linear instead of quadratic.
  const noCloseFrom = new Map();
  const findClose = (delim, from, single) => {
    const key = delim + (single ? '1' : '2');
    const known = noCloseFrom.get(key);
    if (known !== undefined && from >= known) return -1;
    let k = from;
    while (k < text.length) {
      k = text.indexOf(delim, k);
      if (k < 0) break;
      if (single && text[k + 1] === delim) { k += 2; continue; }
      if (k > from && !/\s/.test(text[k - 1])) {
        if (delim !== '_' || !WORD.test(text[k + delim.length] || '')) return k;
      }
      k += delim.length;
    }
    noCloseFrom.set(key, from);
    return -1;
  };

  let buf = '';
  const flush = () => {
    if (buf) {
      parent.appendChild(document.createTextNode(buf));
      buf = '';
    }
  };
  let i = 0;
  while (i < text.length) {
    const c = text[i];
    const next = text[i + 1];

    if (c === '\\' && next !== undefined && PUNCT.test(next)) {
      buf += next;
      i += 2;
      continue;
    }
    if (c === '\n') {
      flush();
      parent.appendChild(el('br'));
      i++;
      continue;
    }
    if (c === '`') {
      let n = 1;
      while (text[i + n] === '`') n++;
      const fence = '`'.repeat(n);
      let close = text.indexOf(fence, i + n);
      while (close >= 0 && text[close + n] === '`') {
        let e = close;
        while (text[e] === '`') e++;
        close = text.indexOf(fence, e);
      }
      if (close >= 0) {
        flush();
        const code = el('code');
        let body = text.slice(i + n, close).replace(/\n/g, ' ');
        if (/^ .*[^ ].* $/.test(body)) body = body.slice(1, -1);
        code.textContent = body;
        parent.appendChild(code);
        i = close + n;
        continue;
      }
      buf += fence;
      i += n;
      continue;
    }
    if ((c === '*' || c === '_') && next !== undefined) {
      const before = i > 0 ? text[i - 1] : ' ';
      const intraword = c === '_' && WORD.test(before);
      if (!intraword) {
        if (next === c && text[i + 2] !== undefined && !/\s/.test(text[i + 2])) {
          const close = findClose(c + c, i + 2, false);
          if (close > i + 2) {
            flush();
            const strong = el('strong');
            inline(text.slice(i + 2, close), strong, depth + 1);
            parent.appendChild(strong);
            i = close + 2;
            continue;
          }
        } else if (next !== c && !/\s/.test(next)) {
          const close = findClose(c, i + 1, true);
          if (close > i + 1) {
            flush();
            const em = el('em');
            inline(text.slice(i + 1, close), em, depth + 1);
            parent.appendChild(em);
            i = close + 1;
            continue;
          }
        }
      }
    }
    if (c === '~' && next === '~' && text[i + 2] && !/\s/.test(text[i + 2])) {
      const close = findClose('~~', i + 2, false);
      if (close > i + 2) {
        flush();
        const del = el('del');
        inline(text.slice(i + 2, close), del, depth + 1);
        parent.appendChild(del);
        i = close + 2;
        continue;
      }
    }
    if (c === '[' || (c === '!' && next === '[')) {
      const res = parseLink(text, c === '!' ? i + 1 : i);
      if (res) {
        flush();
        const href = safeUrl(res.url);
        if (href) {
          const a = link(href, parent);
          if (c === '!') a.classList.add('md-image-link');
          inline(res.label || href, a, depth + 1);
        } else {
          const span = el('span');
          inline(res.label, span, depth + 1);
          parent.appendChild(span);
        }
        i = res.end;
        continue;
      }
    }
    if (c === '<') {
      const m = /^<(https?:\/\/[^\s<>]+)>/i.exec(text.slice(i, i + 2100));
      if (m && safeUrl(m[1])) {
        flush();
        link(safeUrl(m[1]), parent).textContent = m[1];
        i += m[0].length;
        continue;
      }
    }
    if ((c === 'h' || c === 'H') && (i === 0 || !WORD.test(text[i - 1]))) {
      const m = /^https?:\/\/[^\s<>"'`]+/i.exec(text.slice(i, i + 2100));
      if (m) {
        let url = m[0];
        // Trailing punctuation belongs to the sentence, and a ')' only if unbalanced.
        while (/[.,;:!?'"\]*_~]$/.test(url) || (url.endsWith(')') &&
          (url.match(/\(/g) || []).length < (url.match(/\)/g) || []).length)) url = url.slice(0, -1);
        const href = safeUrl(url);
        if (href && url.length > 8) {
          flush();
          link(href, parent).textContent = url;
          i += url.length;
          continue;
        }
      }
    }
    buf += c;
    i++;
  }
  flush();
}

// [label](url "title") starting at text[i] === '['; null when it is not a complete link. The scans
// are bounded so that a text full of brackets stays cheap to render.
const LINK_LABEL_MAX = 1000;
const LINK_URL_MAX = 2048;

function parseLink(text, i) {
  let level = 0;
  let k = i;
  const labelEnd = Math.min(text.length, i + LINK_LABEL_MAX);
  for (; k < labelEnd; k++) {
    const ch = text[k];
    if (ch === '\\') { k++; continue; }
    if (ch === '[') level++;
    else if (ch === ']') {
      level--;
      if (level === 0) break;
    } else if (ch === '\n' && text[k + 1] === '\n') return null;
  }
  if (level !== 0 || k >= labelEnd || text[k + 1] !== '(') return null;
  const label = text.slice(i + 1, k);
  // The destination may hold balanced parentheses: https://en.wikipedia.org/wiki/X_(Y)
  let j = k + 2;
  let depth = 0;
  const urlEnd = Math.min(text.length, j + LINK_URL_MAX);
  for (; j < urlEnd; j++) {
    const ch = text[j];
    if (ch === '\\') { j++; continue; }
    if (ch === '\n') return null;
    if (ch === '(') depth++;
    else if (ch === ')') {
      if (depth === 0) break;
      depth--;
    }
  }
  if (j >= urlEnd || text[j] !== ')') return null;
  const inner = text.slice(k + 2, j).trim();
  const url = inner.split(/\s+/)[0] || '';
  return { label, url, end: j + 1 };
}

const BLOCK_TAGS = new Set(['P', 'H1', 'H2', 'H3', 'H4', 'H5', 'H6', 'LI', 'PRE', 'BLOCKQUOTE', 'TR', 'HR', 'DIV', 'UL', 'OL', 'TABLE']);

/** The Markdown as readable plain text (no syntax characters): for overlays and previews. */
export function markdownToText(src) {
  const out = [];
  const walk = (node) => {
    for (const n of node.childNodes) {
      if (n.nodeType === 3) { out.push(n.nodeValue); continue; }
      if (n.nodeType !== 1) continue;
      const tag = n.tagName;
      if (tag === 'BR') { out.push('\n'); continue; }
      if (tag === 'TD' || tag === 'TH') { if (n.previousElementSibling) out.push('  ·  '); }
      if (BLOCK_TAGS.has(tag) && out.length && !/(\n|^• |^\d+\. )$/.test(out[out.length - 1])) out.push('\n');
      if (tag === 'LI') out.push(n.parentNode && n.parentNode.tagName === 'OL' ? `${[...n.parentNode.children].indexOf(n) + (n.parentNode.start || 1)}. ` : '• ');
      walk(n);
      if (BLOCK_TAGS.has(tag)) out.push('\n');
    }
  };
  walk(renderMarkdown(src));
  return out.join('').replace(/\n{2,}/g, '\n').trim();
}
