// The axial viewer and coronal reconstruction on <canvas>, and the
// labelling tools that paint the lesion mask.
//
// Volumes as the API sends them: x fastest, then y, then z; z = 0 is the
// first slice (feet to head).  The axial view draws x to the right and y
// down (rows as acquired: the radiological view); the coronal view is the
// plane y = const with the head at the top and its aspect from the voxel
// spacing.  Only the visible slice is turned into pixels, through a
// 64 Ki-entry lookup table of the window, once per requestAnimationFrame.

export const PRESETS = {
  lung: { ww: 1500, wl: -600 },
  mediastinum: { ww: 350, wl: 50 },
};

// Overlay colours, as 0xAABBGGRR (ImageData's byte order on little-endian
// machines, which every browser runs on).
const rgba = (r, g, b, a = 255) => ((a << 24) | (b << 16) | (g << 8) | r) >>> 0;
const LESION = [0, rgba(255, 214, 0), rgba(230, 30, 40)]; // 1 ground glass, 2 consolidation
// lungmask numbering (docs/internals/lobes.md): 1 LUL, 2 LLL, 3 RUL, 4 RML, 5 RLL
const LOBE = [0, rgba(80, 160, 255), rgba(40, 200, 200), rgba(140, 220, 90), rgba(255, 150, 60), rgba(190, 110, 255)];
const LUNG_LINE = rgba(90, 200, 255);
const R1_LINE = rgba(0, 230, 255);
const R2_LINE = rgba(255, 60, 255);
const UNDO_MAX = 64;

export class Viewer {
  constructor(axial, coronal, side) {
    this.axial = axial;
    this.coronal = coronal;
    this.side = side;
    this.vol = null;
    this.dims = [0, 0, 0];
    this.spacing = [1, 1, 1];
    this.masks = { lungs: null, lobes: null, lesions: null, r1: null, r2: null };
    this.show = { lungs: false, lobes: false, ggo: true, cons: true, r1: true, r2: true };
    this.opacity = 0.45;
    this.k = 0;
    this.coronalY = 0;
    this.ww = PRESETS.lung.ww;
    this.wl = PRESETS.lung.wl;
    this.zoom = 1;
    this.panX = 0;
    this.panY = 0;
    this.panTool = false;
    this.labelling = false;
    this.tool = 'brush';
    this.cls = 1;
    this.radius = 6;
    this.fillMode = 'hu';
    this.huMin = -750;
    this.huMax = -300;
    this.sideBySide = false;
    this.undo = [];
    this.listeners = { slice: [], hover: [], edit: [], window: [] };
    this.lut = new Uint8Array(65536);
    this.frame = 0;
    this.coronalDirty = true;
    this.rev = 0; // bumped by every change of what the overlays show
    this.imgKey = '';
    this.ovlKey = '';
    this.mouse = null; // last pointer position over the axial view, canvas px
    this.drag = null;
    this.buildLut();
    this.bind();
  }

  on(ev, fn) { this.listeners[ev].push(fn); }
  emit(ev, ...a) { for (const fn of this.listeners[ev]) fn(...a); }

  // ---- data -------------------------------------------------------------
  setVolume(vol, dims, spacing) {
    this.vol = vol;
    this.dims = dims;
    this.spacing = spacing;
    const [nx, ny, nz] = dims;
    this.img = new OffscreenOrCanvas(nx, ny);
    this.ovl = new OffscreenOrCanvas(nx, ny);
    this.lines = new OffscreenOrCanvas(nx, ny);
    this.cor = new OffscreenOrCanvas(nx, nz);
    this.corOvl = new OffscreenOrCanvas(nx, nz);
    this.sideImg = new OffscreenOrCanvas(nx, ny);
    this.sideOvl = new OffscreenOrCanvas(nx, ny);
    this.sideLines = new OffscreenOrCanvas(nx, ny);
    this.imgKey = '';
    this.rev++;
    this.k = Math.floor(nz / 2);
    this.coronalY = Math.floor(ny / 2);
    this.undo = [];
    this.fit();
    this.coronalDirty = true;
    this.emit('slice', this.k);
    this.render();
  }

  setMask(name, data) {
    if (data && this.vol && data.length !== this.vol.length) throw new Error(`${name} mask size ${data.length} != volume ${this.vol.length}`);
    this.masks[name] = data;
    if (name === 'lesions') this.undo = [];
    this.rev++;
    this.coronalDirty = true;
    this.render();
  }

  // ---- window, slice, zoom ------------------------------------------------
  buildLut() {
    const lo = this.wl - this.ww / 2;
    const scale = 255 / Math.max(1, this.ww);
    for (let i = 0; i < 65536; i++) {
      const v = (i - 32768 - lo) * scale;
      this.lut[i] = v <= 0 ? 0 : v >= 255 ? 255 : v;
    }
  }

  setWindow(ww, wl) {
    if (!(ww > 0) || !Number.isFinite(wl)) return;
    this.ww = ww;
    this.wl = wl;
    this.buildLut();
    this.coronalDirty = true;
    this.emit('window', ww, wl);
    this.render();
  }

  setSlice(k) {
    const nz = this.dims[2];
    if (!nz) return;
    k = Math.max(0, Math.min(nz - 1, Math.round(k)));
    if (k === this.k) return;
    this.k = k;
    this.emit('slice', k);
    this.render();
  }

  // the axial view's pixels per mm at zoom 1: the whole slice fits
  baseScale() {
    const [nx, ny] = this.dims;
    const [sx, sy] = this.spacing;
    return Math.min(this.axial.width / (nx * sx), this.axial.height / (ny * sy));
  }

  fit() { this.zoom = 1; this.panX = 0; this.panY = 0; this.render(); }

  // zoom by f about the canvas point (cx, cy) (the centre by default)
  zoomBy(f, cx = this.axial.width / 2, cy = this.axial.height / 2) {
    const z = Math.max(0.5, Math.min(16, this.zoom * f));
    f = z / this.zoom;
    const { ox, oy } = this.origin();
    // keep the point under the cursor where it is
    this.panX += (cx - ox) * (1 - f);
    this.panY += (cy - oy) * (1 - f);
    this.zoom = z;
    this.render();
  }

  // top-left corner of the slice on the canvas, and voxel size in px
  origin() {
    const [nx, ny] = this.dims;
    const [sx, sy] = this.spacing;
    const s = this.baseScale() * this.zoom;
    const w = nx * sx * s;
    const hgt = ny * sy * s;
    return {
      ox: (this.axial.width - w) / 2 + this.panX,
      oy: (this.axial.height - hgt) / 2 + this.panY,
      px: sx * s,
      py: sy * s,
    };
  }

  toVoxel(cx, cy) {
    const { ox, oy, px, py } = this.origin();
    return { x: Math.floor((cx - ox) / px), y: Math.floor((cy - oy) / py) };
  }

  inside(x, y) { return x >= 0 && y >= 0 && x < this.dims[0] && y < this.dims[1]; }

  hu(x, y, k = this.k) {
    const [nx, ny] = this.dims;
    return this.vol[k * nx * ny + y * nx + x];
  }

  // ---- rendering ----------------------------------------------------------
  // something the overlays show changed (a toggle, the opacity, an edit)
  changed() {
    this.rev++;
    this.coronalDirty = true;
    this.render();
  }

  render() {
    if (this.frame) return;
    this.frame = requestAnimationFrame(() => {
      this.frame = 0;
      this.draw();
    });
  }

  sliceImage(target, k) {
    const [nx, ny] = this.dims;
    const id = target.ctx.createImageData(nx, ny);
    const px = new Uint32Array(id.data.buffer);
    const off = k * nx * ny;
    const vol = this.vol;
    const lut = this.lut;
    for (let i = 0, n = nx * ny; i < n; i++) {
      const g = lut[vol[off + i] + 32768];
      px[i] = 0xff000000 | (g << 16) | (g << 8) | g;
    }
    target.ctx.putImageData(id, 0, 0);
  }

  // fills (drawn with the opacity) and outlines (drawn opaque) of slice k
  sliceOverlay(k, fillT, lineT, { lesions = this.masks.lesions, readers = true } = {}) {
    const [nx, ny] = this.dims;
    const n = nx * ny;
    const off = k * n;
    const fill = fillT.ctx.createImageData(nx, ny);
    const line = lineT.ctx.createImageData(nx, ny);
    const fp = new Uint32Array(fill.data.buffer);
    const lp = new Uint32Array(line.data.buffer);
    const { lungs, lobes, r1, r2 } = this.masks;
    const sh = this.show;
    if (sh.lobes && lobes) for (let i = 0; i < n; i++) { const v = lobes[off + i]; if (v) fp[i] = LOBE[v] || 0; }
    if (lesions && (sh.ggo || sh.cons)) {
      for (let i = 0; i < n; i++) {
        const v = lesions[off + i];
        if ((v === 1 && sh.ggo) || (v === 2 && sh.cons)) fp[i] = LESION[v];
      }
    }
    const outline = (m, colour) => {
      for (let y = 0; y < ny; y++) {
        for (let x = 0; x < nx; x++) {
          const i = y * nx + x;
          const v = m[off + i];
          if (!v) continue;
          if (x === 0 || y === 0 || x === nx - 1 || y === ny - 1 ||
              m[off + i - 1] !== v || m[off + i + 1] !== v || m[off + i - nx] !== v || m[off + i + nx] !== v)
            lp[i] = colour;
        }
      }
    };
    if (sh.lungs && lungs) outline(lungs, LUNG_LINE);
    if (readers && sh.r1 && r1) outline(r1, R1_LINE);
    if (readers && sh.r2 && r2 && !this.sideBySide) outline(r2, R2_LINE);
    fillT.ctx.putImageData(fill, 0, 0);
    lineT.ctx.putImageData(line, 0, 0);
  }

  coronalImage() {
    const [nx, ny, nz] = this.dims;
    const y = this.coronalY;
    const id = this.cor.ctx.createImageData(nx, nz);
    const ov = this.corOvl.ctx.createImageData(nx, nz);
    const px = new Uint32Array(id.data.buffer);
    const op = new Uint32Array(ov.data.buffer);
    const les = this.masks.lesions;
    const sh = this.show;
    for (let r = 0; r < nz; r++) {
      const k = nz - 1 - r; // the head at the top
      const base = k * nx * ny + y * nx;
      for (let x = 0; x < nx; x++) {
        const g = this.lut[this.vol[base + x] + 32768];
        px[r * nx + x] = 0xff000000 | (g << 16) | (g << 8) | g;
        if (les) {
          const v = les[base + x];
          if ((v === 1 && sh.ggo) || (v === 2 && sh.cons)) op[r * nx + x] = LESION[v];
        }
      }
    }
    this.cor.ctx.putImageData(id, 0, 0);
    this.corOvl.ctx.putImageData(ov, 0, 0);
    this.coronalDirty = false;
  }

  draw() {
    const c = this.axial;
    const ctx = c.getContext('2d');
    ctx.fillStyle = '#000';
    ctx.fillRect(0, 0, c.width, c.height);
    if (!this.vol) return;
    const [nx, ny, nz] = this.dims;
    const { ox, oy, px, py } = this.origin();
    // only a new slice or window makes new pixels; hovering redraws
    const ik = `${this.k}|${this.ww}|${this.wl}`;
    if (ik !== this.imgKey) { this.sliceImage(this.img, this.k); this.imgKey = ik; }
    const sh = this.show;
    const ok = `${this.k}|${this.rev}|${sh.lungs}${sh.lobes}${sh.ggo}${sh.cons}${sh.r1}${sh.r2}${this.sideBySide}`;
    if (ok !== this.ovlKey) { this.sliceOverlay(this.k, this.ovl, this.lines); this.ovlKey = ok; }
    ctx.imageSmoothingEnabled = this.zoom < 2;
    ctx.drawImage(this.img.canvas, ox, oy, nx * px, ny * py);
    ctx.imageSmoothingEnabled = false;
    ctx.globalAlpha = this.opacity;
    ctx.drawImage(this.ovl.canvas, ox, oy, nx * px, ny * py);
    ctx.globalAlpha = 1;
    ctx.drawImage(this.lines.canvas, ox, oy, nx * px, ny * py);
    // the coronal plane's row, thin, when not labelling
    if (!this.labelling) {
      ctx.strokeStyle = 'rgba(120, 200, 255, 0.5)';
      ctx.setLineDash([4, 4]);
      ctx.beginPath();
      const yy = oy + (this.coronalY + 0.5) * py;
      ctx.moveTo(ox, yy);
      ctx.lineTo(ox + nx * px, yy);
      ctx.stroke();
      ctx.setLineDash([]);
    }
    // the brush, where it would paint
    if (this.labelling && this.mouse && this.tool !== 'fill') {
      ctx.strokeStyle = this.tool === 'eraser' ? '#fff' : this.cls === 1 ? '#ffd600' : '#ff3b3b';
      ctx.lineWidth = 1.5;
      ctx.beginPath();
      ctx.ellipse(this.mouse.x, this.mouse.y, (this.radius + 0.5) * px, (this.radius + 0.5) * py, 0, 0, 2 * Math.PI);
      ctx.stroke();
    }
    this.drawCoronal(nx, nz);
    if (this.sideBySide && this.side) this.drawSide();
  }

  drawCoronal(nx, nz) {
    const c = this.coronal;
    if (!c) return;
    if (this.coronalDirty) this.coronalImage();
    const [sx, , sz] = this.spacing;
    const ctx = c.getContext('2d');
    // aspect from the spacing: width nx*sx mm, height nz*sz mm
    const s = Math.min(c.width / (nx * sx), c.height / (nz * sz));
    const w = nx * sx * s;
    const hgt = nz * sz * s;
    const ox = (c.width - w) / 2;
    const oy = (c.height - hgt) / 2;
    this.corGeom = { ox, oy, w, hgt };
    ctx.fillStyle = '#000';
    ctx.fillRect(0, 0, c.width, c.height);
    ctx.imageSmoothingEnabled = true;
    ctx.drawImage(this.cor.canvas, ox, oy, w, hgt);
    ctx.imageSmoothingEnabled = false;
    ctx.globalAlpha = this.opacity;
    ctx.drawImage(this.corOvl.canvas, ox, oy, w, hgt);
    ctx.globalAlpha = 1;
    const y = oy + ((nz - 1 - this.k) + 0.5) * (hgt / nz);
    ctx.strokeStyle = '#4fc3ff';
    ctx.lineWidth = 1;
    ctx.beginPath();
    ctx.moveTo(ox, y);
    ctx.lineTo(ox + w, y);
    ctx.stroke();
  }

  // adjudication side by side: the same slice with reader 2's mask
  drawSide() {
    const c = this.side;
    const [nx, ny] = this.dims;
    const ctx = c.getContext('2d');
    const s = Math.min(c.width / (nx * this.spacing[0]), c.height / (ny * this.spacing[1]));
    const w = nx * this.spacing[0] * s;
    const hgt = ny * this.spacing[1] * s;
    const ox = (c.width - w) / 2;
    const oy = (c.height - hgt) / 2;
    ctx.fillStyle = '#000';
    ctx.fillRect(0, 0, c.width, c.height);
    this.sliceImage(this.sideImg, this.k);
    ctx.drawImage(this.sideImg.canvas, ox, oy, w, hgt);
    if (this.masks.r2) {
      const save = this.show.r1;
      this.show.r1 = false;
      this.sliceOverlay(this.k, this.sideOvl, this.sideLines, { lesions: this.masks.r2, readers: false });
      this.show.r1 = save;
      ctx.imageSmoothingEnabled = false;
      ctx.globalAlpha = this.opacity;
      ctx.drawImage(this.sideOvl.canvas, ox, oy, w, hgt);
      ctx.globalAlpha = 1;
      ctx.drawImage(this.sideLines.canvas, ox, oy, w, hgt);
      ctx.globalAlpha = 1;
    }
  }

  // ---- labelling ------------------------------------------------------------
  pushUndo() {
    const [nx, ny] = this.dims;
    const off = this.k * nx * ny;
    this.undo.push({ k: this.k, data: this.masks.lesions.slice(off, off + nx * ny) });
    if (this.undo.length > UNDO_MAX) this.undo.shift();
  }

  undoLast() {
    const u = this.undo.pop();
    if (!u) return false;
    const [nx, ny] = this.dims;
    this.masks.lesions.set(u.data, u.k * nx * ny);
    this.rev++;
    this.k = u.k;
    this.emit('slice', this.k);
    this.coronalDirty = true;
    this.emit('edit', this.undo.length);
    this.render();
    return true;
  }

  paintDisc(cx, cy, value) {
    const [nx, ny] = this.dims;
    const m = this.masks.lesions;
    const off = this.k * nx * ny;
    const r = this.radius;
    const r2 = (r + 0.5) * (r + 0.5);
    for (let y = Math.max(0, cy - r); y <= Math.min(ny - 1, cy + r); y++) {
      for (let x = Math.max(0, cx - r); x <= Math.min(nx - 1, cx + r); x++) {
        const dx = x - cx;
        const dy = y - cy;
        if (dx * dx + dy * dy <= r2) m[off + y * nx + x] = value;
      }
    }
    this.rev++;
  }

  // a stroke segment: discs along the line, closer than the radius
  paintLine(a, b, value) {
    const d = Math.hypot(b.x - a.x, b.y - a.y);
    const steps = Math.max(1, Math.ceil(d / Math.max(1, this.radius / 2)));
    for (let i = 0; i <= steps; i++) {
      const f = i / steps;
      this.paintDisc(Math.round(a.x + (b.x - a.x) * f), Math.round(a.y + (b.y - a.y) * f), value);
    }
  }

  // Flood fill on this slice, 4-connected, from (sx, sy): voxels whose HU
  // lies in [huMin, huMax] ('hu'), or that carry the seed's label
  // ('region'), become the class.  Answers the voxels changed.
  fill(sx, sy) {
    const [nx, ny] = this.dims;
    const m = this.masks.lesions;
    const off = this.k * nx * ny;
    const seedLabel = m[off + sy * nx + sx];
    const lo = Math.min(this.huMin, this.huMax);
    const hi = Math.max(this.huMin, this.huMax);
    const vol = this.vol;
    const byHu = this.fillMode === 'hu';
    const ok = byHu
      ? (i) => { const v = vol[off + i]; return v >= lo && v <= hi && m[off + i] !== this.cls; }
      : (i) => m[off + i] === seedLabel;
    if (!byHu && seedLabel === this.cls) return 0;
    const seen = new Uint8Array(nx * ny);
    const stack = new Int32Array(nx * ny);
    let sp = 0;
    let n = 0;
    const s0 = sy * nx + sx;
    if (!ok(s0)) return 0;
    stack[sp++] = s0;
    seen[s0] = 1;
    while (sp) {
      const i = stack[--sp];
      m[off + i] = this.cls;
      n++;
      this.rev++;
      const x = i % nx;
      const nb = [x > 0 ? i - 1 : -1, x < nx - 1 ? i + 1 : -1, i >= nx ? i - nx : -1, i + nx < nx * ny ? i + nx : -1];
      for (const j of nb) {
        if (j >= 0 && !seen[j] && ok(j)) {
          seen[j] = 1;
          stack[sp++] = j;
        }
      }
    }
    return n;
  }

  // ---- events -------------------------------------------------------------
  canvasPoint(ev) {
    const r = this.axial.getBoundingClientRect();
    return {
      x: ((ev.clientX - r.left) * this.axial.width) / r.width,
      y: ((ev.clientY - r.top) * this.axial.height) / r.height,
    };
  }

  bind() {
    const c = this.axial;
    c.addEventListener('wheel', (ev) => {
      if (!this.vol) return;
      ev.preventDefault();
      if (ev.ctrlKey || ev.metaKey) {
        const p = this.canvasPoint(ev);
        this.zoomBy(ev.deltaY < 0 ? 1.15 : 1 / 1.15, p.x, p.y);
      } else if (ev.deltaY) {
        // wheel down: the next image down the body (towards the feet)
        this.setSlice(this.k + (ev.deltaY > 0 ? -1 : 1));
      }
    }, { passive: false });

    c.addEventListener('keydown', (ev) => {
      if (!this.vol) return;
      const nz = this.dims[2];
      const keys = {
        ArrowUp: () => this.setSlice(this.k + 1),
        ArrowRight: () => this.setSlice(this.k + 1),
        ArrowDown: () => this.setSlice(this.k - 1),
        ArrowLeft: () => this.setSlice(this.k - 1),
        PageUp: () => this.setSlice(this.k + 10),
        PageDown: () => this.setSlice(this.k - 10),
        Home: () => this.setSlice(nz - 1),
        End: () => this.setSlice(0),
        '+': () => this.zoomBy(1.25),
        '=': () => this.zoomBy(1.25),
        '-': () => this.zoomBy(0.8),
        0: () => this.fit(),
      };
      if ((ev.ctrlKey || ev.metaKey) && ev.key === 'z') {
        ev.preventDefault();
        this.undoLast();
        return;
      }
      const f = keys[ev.key];
      if (f && !ev.ctrlKey && !ev.altKey && !ev.metaKey) {
        ev.preventDefault();
        f();
      }
    });

    c.addEventListener('pointerdown', (ev) => {
      if (!this.vol) return;
      c.focus();
      const p = this.canvasPoint(ev);
      const v = this.toVoxel(p.x, p.y);
      if (ev.button === 1 || (ev.button === 0 && this.panTool)) {
        ev.preventDefault();
        this.drag = { mode: 'pan', x: p.x, y: p.y, px: this.panX, py: this.panY };
      } else if (ev.button === 0 && this.labelling && this.masks.lesions) {
        ev.preventDefault();
        if (!this.inside(v.x, v.y)) return;
        this.pushUndo();
        if (this.tool === 'fill') {
          if (this.fill(v.x, v.y)) { this.coronalDirty = true; this.emit('edit', this.undo.length); } else this.undo.pop();
          this.render();
          return;
        }
        const value = this.tool === 'eraser' ? 0 : this.cls;
        this.drag = { mode: 'paint', last: v, value };
        this.paintDisc(v.x, v.y, value);
        this.render();
      } else if (ev.button === 0 && this.inside(v.x, v.y)) {
        this.coronalY = v.y; // the coronal plane through the clicked row
        this.coronalDirty = true;
        this.render();
      } else {
        return;
      }
      c.setPointerCapture(ev.pointerId);
    });

    c.addEventListener('pointermove', (ev) => {
      if (!this.vol) return;
      const p = this.canvasPoint(ev);
      this.mouse = p;
      const v = this.toVoxel(p.x, p.y);
      if (this.drag && this.drag.mode === 'pan') {
        this.panX = this.drag.px + (p.x - this.drag.x);
        this.panY = this.drag.py + (p.y - this.drag.y);
      } else if (this.drag && this.drag.mode === 'paint') {
        const [nx, ny] = this.dims;
        const cl = { x: Math.max(0, Math.min(nx - 1, v.x)), y: Math.max(0, Math.min(ny - 1, v.y)) };
        this.paintLine(this.drag.last, cl, this.drag.value);
        this.drag.last = cl;
      }
      if (this.inside(v.x, v.y)) this.emit('hover', v.x, v.y, this.k, this.hu(v.x, v.y));
      this.render();
    });

    const end = (ev) => {
      if (this.drag && this.drag.mode === 'paint') {
        this.coronalDirty = true;
        this.emit('edit', this.undo.length);
      }
      this.drag = null;
      if (ev && c.hasPointerCapture && c.hasPointerCapture(ev.pointerId)) c.releasePointerCapture(ev.pointerId);
      this.render();
    };
    c.addEventListener('pointerup', end);
    c.addEventListener('pointercancel', end);
    c.addEventListener('pointerleave', () => { if (!this.drag) { this.mouse = null; this.render(); } });
    c.addEventListener('auxclick', (ev) => ev.preventDefault());
    c.addEventListener('contextmenu', (ev) => { if (this.labelling) ev.preventDefault(); });

    // the coronal view: click or drag to choose the axial slice
    const pick = (ev) => {
      if (!this.vol || !this.corGeom) return;
      const r = this.coronal.getBoundingClientRect();
      const y = ((ev.clientY - r.top) * this.coronal.height) / r.height;
      const { oy, hgt } = this.corGeom;
      const nz = this.dims[2];
      this.setSlice(nz - 1 - Math.floor(((y - oy) / hgt) * nz));
    };
    if (this.coronal) {
      this.coronal.addEventListener('pointerdown', (ev) => {
        if (ev.button !== 0) return;
        this.coronal.setPointerCapture(ev.pointerId);
        pick(ev);
      });
      this.coronal.addEventListener('pointermove', (ev) => { if (ev.buttons & 1) pick(ev); });
    }

    // canvases follow their boxes' size (sharp on high-DPI screens)
    const ro = new ResizeObserver(() => this.resize());
    ro.observe(this.axial);
    if (this.coronal) ro.observe(this.coronal);
    if (this.side) ro.observe(this.side);
  }

  resize() {
    const dpr = window.devicePixelRatio || 1;
    for (const c of [this.axial, this.coronal, this.side]) {
      if (!c) continue;
      const r = c.getBoundingClientRect();
      if (!r.width || !r.height) continue;
      const w = Math.round(r.width * dpr);
      const hgt = Math.round(r.height * dpr);
      if (c.width !== w || c.height !== hgt) {
        c.width = w;
        c.height = hgt;
      }
    }
    this.render();
  }
}

// A canvas of nx x ny pixels to draw into before scaling (OffscreenCanvas
// where the browser has it).
function OffscreenOrCanvas(w, hgt) {
  const canvas = typeof OffscreenCanvas !== 'undefined' ? new OffscreenCanvas(w, hgt) : Object.assign(document.createElement('canvas'), { width: w, height: hgt });
  return { canvas, ctx: canvas.getContext('2d') };
}
