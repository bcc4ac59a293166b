// Visualise: an image, a network and a layer in; the projection, the kept activations and a
// projection per layer out.

import { imageUrl } from "./api.js";
import {
  $, busy, DIGIT_SAMPLES, debounce, el, Latest, SCENE_SAMPLE, sampleButtons, unavailableNote,
} from "./ui.js";

const KINDS = { classifier: "trained here on MNIST", network: "ImageNet" };

/** "3: MaxPool2d(kernel_size=2, ...)" -> "3: MaxPool2d"; a convolution keeps its channels. */
function shortName(name) {
  const conv = name.match(/^(\d+: \w+)\((\d+), (\d+)/);
  return conv ? `${conv[1]} ${conv[2]}→${conv[3]}` : name.replace(/\(.*$/s, "");
}

export class VisualisePanel {
  constructor(page) {
    this.page = page;
    this.networks = [];
    this.image = null; // the File or Blob being studied
    this.started = false;
    this.main = new Latest();
    this.strip = new Latest();
    this.stripKey = null;
    this.select = $("#vis-network");
    this.layer = $("#vis-layer");
    this.k = $("#vis-k");
    this.channel = $("#vis-channel");
    sampleButtons($("#vis-samples"), [...DIGIT_SAMPLES.slice(0, 4), SCENE_SAMPLE], (file) =>
      this.useImage(file));
    $("#vis-file").addEventListener("change", (event) => {
      if (event.target.files.length) this.useImage(event.target.files[0]);
    });
    this.#dropTarget($("#vis-drop"));
    const later = debounce(() => this.update(), 250);
    this.select.addEventListener("change", () => this.#networkChanged());
    this.layer.addEventListener("change", () => this.update());
    this.k.addEventListener("input", () => {
      $("#vis-k-out").value = this.k.value;
      later();
    });
    this.channel.addEventListener("input", later);
    $("#vis-form").addEventListener("submit", (event) => {
      event.preventDefault();
      this.update();
    });
  }

  setModels(models) {
    this.networks = models.filter((m) => m.endpoints.includes("visualise"));
    const chosen = this.select.value;
    this.select.replaceChildren(...this.networks.map((m) => el("option", {
      value: m.name, disabled: !m.available,
    }, m.available ? `${m.name} (${KINDS[m.kind] ?? m.kind})` : `${m.name}: unavailable`)));
    unavailableNote($("#vis-network-note"), this.networks);
    const usable = this.networks.filter((m) => m.available);
    const preferred = usable.find((m) => m.name === chosen) ?? usable.find((m) => m.kind === "classifier")
      ?? usable[0];
    if (preferred) this.select.value = preferred.name;
    this.#fillLayers(true);
  }

  shown() {
    const network = this.#network();
    if (this.started || !network) return;
    this.started = true; // start from a sample that suits the network
    const sample = network.kind === "network" ? SCENE_SAMPLE : DIGIT_SAMPLES[3];
    fetch(sample.src).then((r) => r.blob()).then((blob) => this.useImage(blob));
  }

  useImage(file) {
    this.image = file;
    const img = $("#vis-input");
    if (img.src) URL.revokeObjectURL(img.src);
    img.onerror = () => { img.hidden = true; }; // undecodable: the API's message says why
    img.onload = () => { img.hidden = false; };
    img.src = URL.createObjectURL(file);
    this.stripKey = null;
    this.update();
  }

  /** Asks for the projection of the chosen layer, then the strip of every layer. */
  async update() {
    const network = this.#network();
    if (!this.image || !network) return;
    const params = this.#params();
    const { signal, current } = this.main.start();
    const frame = $("#vis-projection-frame");
    try {
      const answer = await busy(frame, this.page.api.visualise(this.image, params, signal));
      if (!current()) return;
      this.page.messages.ok("visualise");
      this.#showProjection(answer, network);
      this.#loadStrip(network, params);
    } catch (err) {
      if (!current()) return;
      this.#clear();
      this.page.messages.error("visualise", err, () => this.update());
    }
  }

  #params() {
    const channel = this.channel.value.trim();
    return {
      network: this.select.value,
      layer: Number(this.layer.value),
      k: Number(this.k.value),
      channel: channel === "" ? null : Number(channel),
    };
  }

  #network() {
    return this.networks.find((m) => m.name === this.select.value && m.available) ?? null;
  }

  #networkChanged() {
    this.#fillLayers(false);
    $("#vis-input-frame").dataset.fit = this.#network()?.kind === "network" ? "cover" : "fill";
    this.stripKey = null;
    this.update();
  }

  #fillLayers(keep) {
    const layers = this.#network()?.layers ?? [];
    const previous = Number(this.layer.value);
    this.layer.replaceChildren(...layers.map((name, i) =>
      el("option", { value: i + 1, title: name }, shortName(name))));
    const middle = Math.ceil(layers.length / 2);
    this.layer.value = String(keep && previous >= 1 && previous <= layers.length ? previous : middle);
    $("#vis-input-frame").dataset.fit = this.#network()?.kind === "network" ? "cover" : "fill";
  }

  #showProjection(answer, network) {
    const img = $("#vis-projection");
    img.src = imageUrl(answer.image_png);
    img.hidden = false;
    const map = answer.channel === null ? "every feature map" : `feature map ${answer.channel}`;
    const what = `Projection of the top ${answer.k} activations of ${map} in layer`;
    img.alt = `${what} ${answer.layer_name} of ${network.name}`;
    $("#vis-caption").textContent = `${what} ${shortName(answer.layer_name)}`;
    $("#vis-caption").title = answer.layer_name;
    const [, h, w] = answer.activation_shape;
    const rows = answer.activations.map((a, i) => {
      const row = el("tr", {},
        el("td", {}, String(i + 1)), el("td", {}, String(a.channel)), el("td", {}, String(a.y)),
        el("td", {}, String(a.x)), el("td", {}, a.value.toPrecision(4)));
      const on = () => this.#mark({ left: (a.x + 0.5) / w, top: (a.y + 0.5) / h, w, h });
      row.addEventListener("mouseenter", on);
      row.addEventListener("focus", on);
      row.addEventListener("mouseleave", () => this.#mark(null));
      row.addEventListener("blur", () => this.#mark(null));
      return row;
    });
    rows.forEach((row, i) => {
      row.tabIndex = i === 0 ? 0 : -1; // one tab stop; the arrow keys move between rows
      row.addEventListener("keydown", (event) => {
        const next = { ArrowDown: rows[i + 1], ArrowUp: rows[i - 1] }[event.key];
        if (!next) return;
        event.preventDefault();
        row.tabIndex = -1;
        next.tabIndex = 0;
        next.focus();
      });
    });
    $("#vis-activations tbody").replaceChildren(...rows);
    this.#markStrip();
  }

  /** A box of one activation's size at its place, on the input and on the projection. */
  #mark(spot) {
    for (const frame of [$("#vis-input-frame"), $("#vis-projection-frame")]) {
      frame.querySelector(".marker")?.remove();
      if (!spot) continue;
      frame.append(el("div", { class: "marker", "aria-hidden": "true", style:
        `left:${spot.left * 100}%;top:${spot.top * 100}%;` +
        `width:${100 / spot.w}%;height:${100 / spot.h}%` }));
    }
  }

  #clear() {
    $("#vis-projection").hidden = true;
    $("#vis-caption").textContent = "Projection";
    $("#vis-activations tbody").replaceChildren();
    this.strip.start();
    this.stripKey = null;
    $("#vis-strip").replaceChildren();
  }

  /** One projection per layer, one request at a time so the chosen layer is never kept
   *  waiting behind them; started again only when the image, network or k change. */
  async #loadStrip(network, params) {
    const key = `${network.name}/${params.k}`;
    if (this.stripKey === key) return;
    this.stripKey = key;
    const { signal, current } = this.strip.start();
    const items = network.layers.map((name, i) => this.#stripItem(name, i + 1));
    $("#vis-strip").replaceChildren(...items.map((item) => item.li));
    this.#markStrip();
    for (const item of items) {
      const layerParams = { ...params, layer: item.layer, channel: null };
      try {
        const answer = await busy(item.li, this.page.api.visualise(this.image, layerParams, signal));
        if (!current()) return;
        item.img.src = imageUrl(answer.image_png);
        item.img.hidden = false;
      } catch (err) {
        if (!current()) return;
        item.li.classList.add("failed");
        item.note.textContent = err.detail ?? "failed";
      }
    }
  }

  #stripItem(name, layer) {
    const img = el("img", { alt: "", hidden: true });
    const note = el("span", { class: "note" });
    const button = el("button", { type: "button", "data-layer": layer }, el("span", { class: "thumb" }, img),
      el("span", { class: "name" }, shortName(name)), note);
    button.title = name;
    button.addEventListener("click", () => {
      this.layer.value = String(layer);
      this.update();
    });
    return { li: el("li", {}, button), img, note, layer };
  }

  #markStrip() {
    for (const button of document.querySelectorAll("#vis-strip button")) {
      button.setAttribute("aria-current", String(button.dataset.layer === this.layer.value));
    }
  }

  #dropTarget(target) {
    target.addEventListener("dragover", (event) => {
      event.preventDefault();
      target.classList.add("dragging");
    });
    target.addEventListener("dragleave", () => target.classList.remove("dragging"));
    target.addEventListener("drop", (event) => {
      event.preventDefault();
      target.classList.remove("dragging");
      const file = event.dataTransfer.files[0];
      if (file) this.useImage(file);
    });
  }
}
