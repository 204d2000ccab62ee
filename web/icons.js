// icons.js - the page's icons: small stroke drawings on a 24x24 grid, built as SVG nodes (no markup
// strings), so elements written as <span data-icon="gear"></span> get their picture at start-up.

const SVG_NS = 'http://www.w3.org/2000/svg';

// Each icon is a list of [tag, attributes] drawn with the current text colour.
const ICONS = {
  logo: [
    ['rect', { x: 2.5, y: 5.5, width: 19, height: 13, rx: 3.5 }],
    ['circle', { cx: 12, cy: 12, r: 3.6 }],
    ['path', { d: 'M6 9.2h1.6' }],
    ['path', { d: 'M16.5 3.5l1.5 2M7.5 3.5L6 5.5' }],
  ],
  camera: [
    ['path', { d: 'M3 8.5A2.5 2.5 0 0 1 5.5 6h1.3l1.4-2h7.6l1.4 2h1.3A2.5 2.5 0 0 1 21 8.5v8a2.5 2.5 0 0 1-2.5 2.5h-13A2.5 2.5 0 0 1 3 16.5z' }],
    ['circle', { cx: 12, cy: 12.3, r: 3.6 }],
  ],
  cameraOff: [
    ['path', { d: 'M8.2 4h7.6l1.4 2h1.3A2.5 2.5 0 0 1 21 8.5v8c0 .5-.1.9-.4 1.3M17 19H5.5A2.5 2.5 0 0 1 3 16.5v-8A2.5 2.5 0 0 1 5 6' }],
    ['path', { d: 'M3 3l18 18' }],
    ['path', { d: 'M9.6 9.7a3.6 3.6 0 0 0 4.9 5' }],
  ],
  play: [['path', { d: 'M7.5 4.8v14.4a.8.8 0 0 0 1.2.7l11.4-7.2a.8.8 0 0 0 0-1.4L8.7 4.1a.8.8 0 0 0-1.2.7z', fill: 'currentColor', stroke: 'none' }]],
  stop: [['rect', { x: 6, y: 6, width: 12, height: 12, rx: 2, fill: 'currentColor', stroke: 'none' }]],
  mirror: [
    ['path', { d: 'M12 3v18', 'stroke-dasharray': '2 2.2' }],
    ['path', { d: 'M9 7L3.5 17H9z' }],
    ['path', { d: 'M15 7l5.5 10H15z' }],
  ],
  maximize: [['path', { d: 'M4 9V5a1 1 0 0 1 1-1h4M15 4h4a1 1 0 0 1 1 1v4M20 15v4a1 1 0 0 1-1 1h-4M9 20H5a1 1 0 0 1-1-1v-4' }]],
  minimize: [['path', { d: 'M9 4v4a1 1 0 0 1-1 1H4M20 9h-4a1 1 0 0 1-1-1V4M15 20v-4a1 1 0 0 1 1-1h4M4 15h4a1 1 0 0 1 1 1v4' }]],
  gear: [
    ['circle', { cx: 12, cy: 12, r: 3 }],
    ['path', { d: 'M19.4 13.5a7.6 7.6 0 0 0 0-3l2-1.6-2-3.4-2.4 1a7.5 7.5 0 0 0-2.6-1.5L14 2.5h-4l-.4 2.5A7.5 7.5 0 0 0 7 6.5l-2.4-1-2 3.4 2 1.6a7.6 7.6 0 0 0 0 3l-2 1.6 2 3.4 2.4-1a7.5 7.5 0 0 0 2.6 1.5l.4 2.5h4l.4-2.5a7.5 7.5 0 0 0 2.6-1.5l2.4 1 2-3.4z' }],
  ],
  sun: [
    ['circle', { cx: 12, cy: 12, r: 4 }],
    ['path', { d: 'M12 2v2M12 20v2M4.9 4.9l1.4 1.4M17.7 17.7l1.4 1.4M2 12h2M20 12h2M4.9 19.1l1.4-1.4M17.7 6.3l1.4-1.4' }],
  ],
  moon: [['path', { d: 'M20 14.5A8 8 0 0 1 9.5 4a8 8 0 1 0 10.5 10.5z' }]],
  monitor: [
    ['rect', { x: 3, y: 4, width: 18, height: 12, rx: 2 }],
    ['path', { d: 'M8 20h8M12 16v4' }],
  ],
  copy: [
    ['rect', { x: 8.5, y: 8.5, width: 12, height: 12, rx: 2 }],
    ['path', { d: 'M15.5 8.5V5.5a2 2 0 0 0-2-2h-8a2 2 0 0 0-2 2v8a2 2 0 0 0 2 2h3' }],
  ],
  check: [['path', { d: 'M4.5 12.5l5 5L19.5 7' }]],
  refresh: [
    ['path', { d: 'M20 11a8 8 0 0 0-14.3-4.6L4 8.5' }],
    ['path', { d: 'M4 4v4.5h4.5' }],
    ['path', { d: 'M4 13a8 8 0 0 0 14.3 4.6l1.7-2.1' }],
    ['path', { d: 'M20 20v-4.5h-4.5' }],
  ],
  close: [['path', { d: 'M6 6l12 12M18 6L6 18' }]],
  logout: [
    ['path', { d: 'M14 4h4a2 2 0 0 1 2 2v12a2 2 0 0 1-2 2h-4' }],
    ['path', { d: 'M9.5 16.5L5 12l4.5-4.5M5 12h10' }],
  ],
  alert: [
    ['path', { d: 'M10.3 4.2L2.6 17.5A2 2 0 0 0 4.3 20.5h15.4a2 2 0 0 0 1.7-3L13.7 4.2a2 2 0 0 0-3.4 0z' }],
    ['path', { d: 'M12 9.5v4.2M12 17v.1' }],
  ],
  info: [
    ['circle', { cx: 12, cy: 12, r: 9 }],
    ['path', { d: 'M12 11v5.5M12 7.6v.1' }],
  ],
  key: [
    ['circle', { cx: 8, cy: 15, r: 4 }],
    ['path', { d: 'M10.9 12.1L20 3M16.5 6.5l2.5 2.5M14.5 8.5l2 2' }],
  ],
  chat: [
    ['path', { d: 'M4 5.5A2.5 2.5 0 0 1 6.5 3h11A2.5 2.5 0 0 1 20 5.5v8a2.5 2.5 0 0 1-2.5 2.5H10l-4.5 4v-4A2.5 2.5 0 0 1 4 13.5z' }],
    ['path', { d: 'M8 8h8M8 11.5h5' }],
  ],
  sparkles: [
    ['path', { d: 'M12 3l1.7 5.3L19 10l-5.3 1.7L12 17l-1.7-5.3L5 10l5.3-1.7z' }],
    ['path', { d: 'M19 15.5l.7 1.8 1.8.7-1.8.7-.7 1.8-.7-1.8-1.8-.7 1.8-.7z' }],
  ],
  brain: [
    ['path', { d: 'M9 4.5a3 3 0 0 0-3 3 3 3 0 0 0-2 5 3 3 0 0 0 2 5 3 3 0 0 0 3 2.5 2.5 2.5 0 0 0 3-2.4V6.5a2.5 2.5 0 0 0-3-2z' }],
    ['path', { d: 'M15 4.5a3 3 0 0 1 3 3 3 3 0 0 1 2 5 3 3 0 0 1-2 5 3 3 0 0 1-3 2.5 2.5 2.5 0 0 1-3-2.4' }],
  ],
  sliders: [
    ['path', { d: 'M4 6h9M17 6h3M4 12h3M11 12h9M4 18h11M19 18h1' }],
    ['circle', { cx: 15, cy: 6, r: 2 }],
    ['circle', { cx: 9, cy: 12, r: 2 }],
    ['circle', { cx: 17, cy: 18, r: 2 }],
  ],
  cpu: [
    ['rect', { x: 6, y: 6, width: 12, height: 12, rx: 2 }],
    ['rect', { x: 9.5, y: 9.5, width: 5, height: 5, rx: 0.8 }],
    ['path', { d: 'M9.5 3v3M14.5 3v3M9.5 18v3M14.5 18v3M3 9.5h3M3 14.5h3M18 9.5h3M18 14.5h3' }],
  ],
  memory: [
    ['rect', { x: 3, y: 7, width: 18, height: 10, rx: 1.5 }],
    ['path', { d: 'M7 10.5v3M11 10.5v3M15 10.5v3M6 17v2.5M10 17v2.5M14 17v2.5M18 17v2.5' }],
  ],
  gpu: [
    ['rect', { x: 2.5, y: 6, width: 19, height: 11, rx: 2 }],
    ['circle', { cx: 9, cy: 11.5, r: 3 }],
    ['path', { d: 'M15 9.5h3.5M15 13.5h3.5M5 17v2.5M9 17v2.5' }],
  ],
  server: [
    ['rect', { x: 3.5, y: 4, width: 17, height: 7, rx: 1.8 }],
    ['rect', { x: 3.5, y: 13, width: 17, height: 7, rx: 1.8 }],
    ['path', { d: 'M7 7.5h.1M7 16.5h.1M11 7.5h6M11 16.5h6' }],
  ],
  history: [
    ['path', { d: 'M3.5 12a8.5 8.5 0 1 0 2.6-6.1L3.5 8.5' }],
    ['path', { d: 'M3.5 4v4.5H8' }],
    ['path', { d: 'M12 7.5V12l3 2' }],
  ],
  code: [['path', { d: 'M8.5 7L3.5 12l5 5M15.5 7l5 5-5 5' }]],
  text: [['path', { d: 'M5 6h14M5 10h14M5 14h10M5 18h7' }]],
  markdown: [
    ['rect', { x: 2.5, y: 5.5, width: 19, height: 13, rx: 2.5 }],
    ['path', { d: 'M6 15V9l2.5 3L11 9v6M16.5 9v6M14.5 13l2 2 2-2' }],
  ],
  chevron: [['path', { d: 'M9 6l6 6-6 6' }]],
  user: [
    ['circle', { cx: 12, cy: 8.5, r: 3.8 }],
    ['path', { d: 'M4.5 20a7.5 7.5 0 0 1 15 0' }],
  ],
  switchCam: [
    ['path', { d: 'M3 8.5A2.5 2.5 0 0 1 5.5 6h1.3l1.4-2h7.6l1.4 2h1.3A2.5 2.5 0 0 1 21 8.5v8a2.5 2.5 0 0 1-2.5 2.5h-13A2.5 2.5 0 0 1 3 16.5z' }],
    ['path', { d: 'M9 11.5a3 3 0 0 1 5.3-1.6M15 13a3 3 0 0 1-5.3 1.6' }],
    ['path', { d: 'M14.5 8.3v1.8h-1.8M9.5 16.2v-1.8h1.8' }],
  ],
};

/** A new <svg> element for the named icon (aria-hidden: the surrounding control carries the label). */
export function icon(name, extraClass) {
  const spec = ICONS[name] || ICONS.info;
  const svg = document.createElementNS(SVG_NS, 'svg');
  svg.setAttribute('viewBox', '0 0 24 24');
  svg.setAttribute('fill', 'none');
  svg.setAttribute('stroke', 'currentColor');
  svg.setAttribute('stroke-width', '1.8');
  svg.setAttribute('stroke-linecap', 'round');
  svg.setAttribute('stroke-linejoin', 'round');
  svg.setAttribute('aria-hidden', 'true');
  svg.setAttribute('focusable', 'false');
  svg.classList.add('icon');
  if (extraClass) svg.classList.add(extraClass);
  for (const [tag, attrs] of spec) {
    const node = document.createElementNS(SVG_NS, tag);
    for (const [k, v] of Object.entries(attrs)) node.setAttribute(k, String(v));
    svg.appendChild(node);
  }
  return svg;
}

/** Fill every [data-icon] placeholder under root (or swap its picture when called again). */
export function hydrateIcons(root = document) {
  for (const el of root.querySelectorAll('[data-icon]')) setIcon(el, el.dataset.icon);
}

/** Replace the picture inside a [data-icon] placeholder. */
export function setIcon(el, name) {
  el.dataset.icon = name;
  el.replaceChildren(icon(name));
}
