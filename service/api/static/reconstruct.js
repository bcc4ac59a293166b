// Reconstruct: a drawing canvas (mouse, touch or pen) or an upload, reconstructed by every
// auto-encoder and VAE while you draw; a VAE's latent mean as a bar chart.

import { imageUrl } from "./api.js";
import { $, DIGIT_SAMPLES, el, PanelRequest, sampleButtons, throttle } from "./ui.js";

const STROKE = 24; // pixels of the 280-pixel canvas: about MNIST's pen once fitted to 20 x 20
const SVG = "http://www.w3.org/2000/svg";

export class ReconstructPanel {
  constructor(page) {
    this.page = page;
    this.models = [];
    this.cards = new Map(); // model name -> { frame, img, chart, model, request }
    this.canvas = $("#rec-canvas");
    this.ctx = this.canvas.getContext("2d", { willReadFrequently: true });
    this.seen = $("#rec-seen");
    this.send = throttle(() => this.#reconstructDrawing(), 200);
    this.#clearCanvas();
    this.#pointer();
    $("#rec-clear").addEventListener("click", () => {
      this.#clearCanvas();
      this.#reconstructDrawing();
    });
    $("#rec-file").addEventListener("change", (event) => {
      if (event.target.files.length) this.#upload(event.target.files[0]);
      event.target.value = ""; // choosing the same file again reloads it
    });
    sampleButtons($("#rec-samples"), DIGIT_SAMPLES, (file) => this.#drawSample(file));
  }

  setModels(models) {
    this.models = models.filter((m) => m.endpoints.includes("reconstruct"));
    this.cards.clear();
    $("#rec-results").replaceChildren(...this.models.map((model) => this.#card(model)));
  }

  shown() {}

  #card(model) {
    const kind = model.kind === "vae" ? "VAE" : "auto-encoder";
    const img = el("img", { alt: "", hidden: true });
    const frame = el("div", { class: "frame digit busy-target" }, img);
    const chart = el("figure", { class: "latent", hidden: true });
    const body = model.available
      ? [frame, chart]
      : [el("p", { class: "hint" }, `Unavailable: ${model.reason}`)];
    const request = new PanelRequest(this.page.messages, { source: "reconstruct", target: frame });
    this.cards.set(model.name, { frame, img, chart, model, request });
    return el(
      "li",
      { class: "card", "data-model": model.name },
      el("h3", {}, model.name, " ", el("span", { class: "kind" }, kind)),
      ...body,
    );
  }

  #pointer() {
    const canvas = this.canvas;
    let last = null;
    const point = (event) => {
      const box = canvas.getBoundingClientRect();
      return [
        ((event.clientX - box.left) * canvas.width) / box.width,
        ((event.clientY - box.top) * canvas.height) / box.height,
      ];
    };
    canvas.addEventListener("pointerdown", (event) => {
      event.preventDefault();
      canvas.setPointerCapture(event.pointerId);
      last = point(event);
      this.#line(last, last);
      this.send();
    });
    canvas.addEventListener("pointermove", (event) => {
      if (!last) return;
      for (const each of event.getCoalescedEvents?.() ?? [event]) {
        const next = point(each);
        this.#line(last, next);
        last = next;
      }
      this.send();
    });
    const end = () => {
      if (!last) return;
      last = null;
      this.send();
    };
    canvas.addEventListener("pointerup", end);
    canvas.addEventListener("pointercancel", end);
  }

  #line(from, to) {
    const ctx = this.ctx;
    ctx.strokeStyle = "#fff";
    ctx.lineWidth = STROKE;
    ctx.lineCap = "round";
    ctx.lineJoin = "round";
    ctx.beginPath();
    ctx.moveTo(...from);
    ctx.lineTo(...to);
    ctx.stroke();
  }

  #clearCanvas() {
    this.ctx.fillStyle = "#000";
    this.ctx.fillRect(0, 0, this.canvas.width, this.canvas.height);
  }

  /** The strokes fitted into 20 x 20 pixels, centred in 28 x 28 (how MNIST was made), as PNG;
   *  null for a blank canvas. */
  async #fitted() {
    const { width, height } = this.canvas;
    const pixels = this.ctx.getImageData(0, 0, width, height).data;
    let [left, top, right, bottom] = [width, height, -1, -1];
    for (let y = 0; y < height; y++) {
      for (let x = 0; x < width; x++) {
        if (pixels[(y * width + x) * 4] > 16) {
          left = Math.min(left, x);
          right = Math.max(right, x);
          top = Math.min(top, y);
          bottom = Math.max(bottom, y);
        }
      }
    }
    const seen = this.seen.getContext("2d");
    seen.fillStyle = "#000";
    seen.fillRect(0, 0, 28, 28);
    if (right < 0) return null;
    const [w, h] = [right - left + 1, bottom - top + 1];
    const scale = 20 / Math.max(w, h);
    seen.imageSmoothingQuality = "high";
    seen.drawImage(
      this.canvas,
      left,
      top,
      w,
      h,
      14 - (w * scale) / 2,
      14 - (h * scale) / 2,
      w * scale,
      h * scale,
    );
    return new Promise((resolve) => this.seen.toBlob(resolve, "image/png"));
  }

  async #reconstructDrawing() {
    const blob = await this.#fitted();
    if (!blob) return this.#clearResults();
    this.#reconstruct(new File([blob], "drawing.png", { type: "image/png" }));
  }

  /** Draws an image the browser can decode on the canvas; sends the file itself either way, so
   *  that what the browser cannot decode gets the API's explanation. */
  #upload(file) {
    const url = URL.createObjectURL(file);
    const img = new Image();
    img.onload = () => {
      this.#clearCanvas();
      this.ctx.drawImage(img, 0, 0, this.canvas.width, this.canvas.height);
      this.seen.getContext("2d").drawImage(img, 0, 0, 28, 28);
      URL.revokeObjectURL(url);
    };
    img.onerror = () => URL.revokeObjectURL(url);
    img.src = url;
    this.#reconstruct(file);
  }

  #drawSample(file) {
    const url = URL.createObjectURL(file);
    const img = new Image();
    img.onload = () => {
      this.#clearCanvas();
      this.ctx.imageSmoothingQuality = "high";
      this.ctx.drawImage(img, 0, 0, this.canvas.width, this.canvas.height);
      URL.revokeObjectURL(url);
      this.#reconstructDrawing();
    };
    img.src = url;
  }

  #reconstruct(file) {
    for (const card of this.cards.values()) {
      if (card.model.available) this.#one(card, file);
    }
  }

  async #one(card, file) {
    const name = card.model.name;
    await card.request.run((signal) => this.page.api.reconstruct(file, { model: name }, signal), {
      retry: () => this.#one(card, file),
      shown: (answer) => {
        const [image] = answer.images;
        card.img.src = imageUrl(image.image_png);
        card.img.alt = `Reconstruction by ${name}`;
        card.img.hidden = false;
        if (image.mean) this.#chart(card.chart, image.mean);
      },
      failed: () => {
        card.img.hidden = true;
        card.chart.hidden = true;
      },
    });
  }

  #clearResults() {
    for (const card of this.cards.values()) {
      card.request.cancel(); // drops answers still on their way
      card.img.hidden = true;
      card.chart.hidden = true;
    }
  }

  /** Bars of the latent mean, up for positive and down for negative, clipped at |3|. */
  #chart(figure, mean) {
    const [barWidth, half] = [10, 40];
    const svg = document.createElementNS(SVG, "svg");
    svg.setAttribute("viewBox", `0 0 ${mean.length * barWidth} ${2 * half}`);
    svg.setAttribute("preserveAspectRatio", "none");
    svg.setAttribute("role", "img");
    svg.setAttribute("aria-label", `Latent mean: ${mean.map((v) => v.toFixed(2)).join(", ")}`);
    mean.forEach((value, i) => {
      const height = (Math.min(Math.abs(value), 3) / 3) * half;
      const bar = document.createElementNS(SVG, "rect");
      bar.setAttribute("x", i * barWidth + 1);
      bar.setAttribute("width", barWidth - 2);
      bar.setAttribute("y", value >= 0 ? half - height : half);
      bar.setAttribute("height", Math.max(height, 0.5));
      bar.setAttribute("class", value >= 0 ? "up" : "down");
      svg.append(bar);
    });
    const axis = document.createElementNS(SVG, "line");
    for (const [k, v] of Object.entries({
      x1: 0,
      x2: mean.length * barWidth,
      y1: half,
      y2: half,
    })) {
      axis.setAttribute(k, v);
    }
    axis.setAttribute("class", "axis");
    svg.append(axis);
    figure.replaceChildren(
      svg,
      el("figcaption", {}, `Latent mean, ${mean.length} dimensions (bars clipped at ±3)`),
    );
    figure.hidden = false;
  }
}
