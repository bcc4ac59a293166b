// Visualise: an image, a network, a layer and a method in; the projection, the kept
// activations, and either a projection per layer or the three methods side by side, out.

import { imageUrl } from "./api.js";
import {
  $,
  DIGIT_SAMPLES,
  debounce,
  el,
  fillModelSelect,
  PanelRequest,
  SCENE_SAMPLE,
  sampleButtons,
  schemaValue,
  shortName,
} from "./ui.js";

const KINDS = { classifier: "trained here on MNIST", network: "ImageNet" };
/** Names for people of the methods that the contract lists for /visualise's `method`. */
const METHODS = {
  deconvnet: "Deconvnet",
  guided_backprop: "Guided backpropagation",
  saliency: "Saliency (gradient)",
};
const methodName = (method) => METHODS[method] ?? method;

export class VisualisePanel {
  constructor(page) {
    this.page = page;
    this.networks = [];
    this.image = null; // the File or Blob being studied
    this.started = false;
    this.main = new PanelRequest(page.messages, {
      source: "visualise",
      target: $("#vis-projection-frame"),
    });
    this.strip = new PanelRequest(page.messages); // a failed thumbnail says so itself
    this.stripKey = null;
    this.methods = []; // /visualise's `method` values; none when the service has no such field
    this.select = $("#vis-network");
    this.method = $("#vis-method");
    this.compare = $("#vis-compare");
    this.layer = $("#vis-layer");
    this.k = $("#vis-k");
    this.channel = $("#vis-channel");
    sampleButtons($("#vis-samples"), [...DIGIT_SAMPLES.slice(0, 4), SCENE_SAMPLE], (file) =>
      this.useImage(file),
    );
    $("#vis-file").addEventListener("change", (event) => {
      if (event.target.files.length) this.useImage(event.target.files[0]);
    });
    this.#dropTarget($("#vis-drop"));
    const later = debounce(() => this.update(), 250);
    this.select.addEventListener("change", () => this.#networkChanged());
    this.layer.addEventListener("change", () => this.update());
    this.method.addEventListener("change", () => this.update());
    this.compare.addEventListener("change", () => {
      this.stripKey = null;
      this.#stripTitle();
      this.update();
    });
    this.kMoved = false; // until the user moves it, k is the contract's default
    this.k.addEventListener("input", () => {
      this.kMoved = true;
      $("#vis-k-out").value = this.k.value;
      later();
    });
    this.channel.addEventListener("input", later);
    $("#vis-form").addEventListener("submit", (event) => {
      event.preventDefault();
      this.update();
    });
  }

  setModels(models, contract) {
    this.networks = models.filter((m) => m.endpoints.includes("visualise"));
    fillModelSelect(
      this.select,
      $("#vis-network-note"),
      this.networks,
      (m) => `${m.name} (${KINDS[m.kind] ?? m.kind})`,
      (m) => m.kind === "classifier",
    );
    const form =
      contract?.paths?.["/visualise"]?.post?.requestBody?.content?.["multipart/form-data"]?.schema;
    this.#fillMethods(form?.properties?.method);
    this.#fillK(form?.properties?.k);
    this.#fillLayers(true);
  }

  /** k from the contract: its default, until the user moves the slider. */
  #fillK(field) {
    const fallback = schemaValue(field, "default");
    if (!this.kMoved && fallback != null) this.k.value = String(fallback);
    $("#vis-k-out").value = this.k.value;
  }

  /** The method choice from the contract: its values for `method` and its default. */
  #fillMethods(field) {
    this.methods = field ? (schemaValue(field, "enum") ?? []) : [];
    const chosen = this.method.value;
    const shown = this.methods.length ? this.methods : ["deconvnet"];
    this.method.replaceChildren(
      ...shown.map((method) => el("option", { value: method }, methodName(method))),
    );
    const preferred = shown.includes(chosen) ? chosen : schemaValue(field, "default");
    this.method.value = shown.includes(preferred) ? preferred : shown[0];
    this.method.disabled = this.methods.length < 2;
    this.compare.disabled = this.methods.length < 2;
    if (this.compare.disabled) this.compare.checked = false;
    this.#stripTitle();
  }

  #stripTitle() {
    const compare = this.compare.checked;
    $("#vis-strip-title").textContent = compare ? "Every method at this layer" : "Every layer";
    $("#vis-strip-hint").textContent = compare
      ? "The chosen layer, image, k and feature map projected by each method, side by side; " +
        "choose one to study it above."
      : "The same image, k and method at each layer, from the first to the last; choose one " +
        "to study it above.";
  }

  shown() {
    const network = this.#network();
    if (this.started || !network) return;
    this.started = true; // start from a sample that suits the network
    const sample = network.kind === "network" ? SCENE_SAMPLE : DIGIT_SAMPLES[3];
    fetch(sample.src)
      .then((r) => r.blob())
      .then((blob) => this.useImage(blob));
  }

  /** Study `image` at one feature map: the atlas's way in (its entries' items). */
  open(image, { network, layer, channel }) {
    this.started = true; // no sample in place of the image
    this.select.value = network;
    this.#networkChanged(false);
    this.layer.value = String(layer);
    this.channel.value = String(channel);
    this.k.value = "1";
    $("#vis-k-out").value = "1";
    this.useImage(image);
  }

  useImage(file) {
    this.image = file;
    const img = $("#vis-input");
    if (img.src) URL.revokeObjectURL(img.src);
    // undecodable: the API's message says why
    img.onerror = () => {
      img.hidden = true;
    };
    img.onload = () => {
      img.hidden = false;
    };
    img.src = URL.createObjectURL(file);
    this.stripKey = null;
    this.update();
  }

  /** Asks for the projection of the chosen layer, then the strip. */
  async update() {
    const network = this.#network();
    if (!this.image || !network) return;
    const params = this.#params();
    await this.main.run((signal) => this.page.api.visualise(this.image, params, signal), {
      retry: () => this.update(),
      shown: (answer) => {
        this.#showProjection(answer, network, params);
        this.#loadStrip(network, params);
      },
      failed: () => this.#clear(),
    });
  }

  #params() {
    const channel = this.channel.value.trim();
    return {
      network: this.select.value,
      layer: Number(this.layer.value),
      k: Number(this.k.value),
      channel: channel === "" ? null : Number(channel),
      // sent only to a service whose contract has the field (else it answers 422)
      method: this.methods.length ? this.method.value : null,
    };
  }

  #network() {
    return this.networks.find((m) => m.name === this.select.value && m.available) ?? null;
  }

  #networkChanged(update = true) {
    this.#fillLayers(false);
    $("#vis-input-frame").dataset.fit = this.#network()?.kind === "network" ? "cover" : "fill";
    this.stripKey = null;
    if (update) this.update();
  }

  #fillLayers(keep) {
    const layers = this.#network()?.layers ?? [];
    const previous = Number(this.layer.value);
    this.layer.replaceChildren(
      ...layers.map((name, i) => el("option", { value: i + 1, title: name }, shortName(name))),
    );
    const middle = Math.ceil(layers.length / 2);
    this.layer.value = String(
      keep && previous >= 1 && previous <= layers.length ? previous : middle,
    );
    $("#vis-input-frame").dataset.fit = this.#network()?.kind === "network" ? "cover" : "fill";
  }

  #showProjection(answer, network, params) {
    const img = $("#vis-projection");
    img.src = imageUrl(answer.image_png);
    img.hidden = false;
    const map = answer.channel === null ? "every feature map" : `feature map ${answer.channel}`;
    const method = methodName(answer.method ?? params.method ?? "deconvnet");
    const what = `${method} projection of the top ${answer.k} activations of ${map} in layer`;
    img.alt = `${what} ${answer.layer_name} of ${network.name}`;
    $("#vis-caption").textContent = `${what} ${shortName(answer.layer_name)}`;
    $("#vis-caption").title = answer.layer_name;
    const [, h, w] = answer.activation_shape;
    const rows = answer.activations.map((a, i) => {
      const row = el(
        "tr",
        {},
        el("td", {}, String(i + 1)),
        el("td", {}, String(a.channel)),
        el("td", {}, String(a.y)),
        el("td", {}, String(a.x)),
        el("td", {}, a.value.toPrecision(4)),
      );
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
      frame.append(
        el("div", {
          class: "marker",
          "aria-hidden": "true",
          style:
            `left:${spot.left * 100}%;top:${spot.top * 100}%;` +
            `width:${100 / spot.w}%;height:${100 / spot.h}%`,
        }),
      );
    }
  }

  #clear() {
    $("#vis-projection").hidden = true;
    $("#vis-caption").textContent = "Projection";
    $("#vis-activations tbody").replaceChildren();
    this.strip.cancel();
    this.stripKey = null;
    $("#vis-strip").replaceChildren();
  }

  /** A projection per layer, or per method at the chosen layer, one request at a time so the
   *  chosen projection is never kept waiting behind them; started again only when what they
   *  show changes. */
  async #loadStrip(network, params) {
    const compare = this.compare.checked;
    const { layer, k, channel, method } = params;
    const key = compare
      ? `methods/${network.name}/${layer}/${k}/${channel}`
      : `layers/${network.name}/${k}/${method}`;
    if (this.stripKey === key) return;
    this.stripKey = key;
    const items = compare
      ? this.methods.map((each) =>
          this.#stripItem(methodName(each), { ...params, method: each }, { method: each }),
        )
      : network.layers.map((name, i) =>
          this.#stripItem(
            shortName(name),
            { ...params, layer: i + 1, channel: null },
            {
              layer: i + 1,
              title: name,
            },
          ),
        );
    $("#vis-strip").replaceChildren(...items.map((item) => item.li));
    this.#markStrip();
    for (const item of items) {
      const current = await this.strip.run(
        (signal) => this.page.api.visualise(this.image, item.params, signal),
        {
          target: item.li,
          shown: (answer) => {
            item.img.src = imageUrl(answer.image_png);
            item.img.hidden = false;
          },
          failed: (err) => {
            item.li.classList.add("failed");
            item.note.textContent = err.detail ?? "failed";
          },
        },
      );
      if (!current) return; // a newer strip replaced this one
    }
  }

  /** One thumbnail of the strip: choosing it studies its layer (or method) above. */
  #stripItem(label, params, { layer = null, method = null, title = label }) {
    const img = el("img", { alt: "", hidden: true });
    const note = el("span", { class: "note" });
    const button = el(
      "button",
      { type: "button", "data-layer": layer, "data-method": method },
      el("span", { class: "thumb" }, img),
      el("span", { class: "name" }, label),
      note,
    );
    button.title = title;
    button.addEventListener("click", () => {
      if (layer !== null) this.layer.value = String(layer);
      if (method !== null) this.method.value = method;
      this.update();
    });
    return { li: el("li", {}, button), img, note, params };
  }

  #markStrip() {
    for (const button of document.querySelectorAll("#vis-strip button")) {
      const { layer, method } = button.dataset;
      const current = layer ? layer === this.layer.value : method === this.method.value;
      button.setAttribute("aria-current", String(current));
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
