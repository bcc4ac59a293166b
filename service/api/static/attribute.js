// Attribute: an image, a network and a class in; the network's five likeliest classes and four
// maps of why it scores the class as it does, side by side, out.

import { imageUrl } from "./api.js";
import {
  $,
  DIGIT_SAMPLES,
  el,
  fillModelSelect,
  PanelRequest,
  SCENE_SAMPLE,
  sampleButtons,
} from "./ui.js";

const KINDS = { classifier: "trained here on MNIST", network: "ImageNet" };
/** The four methods, named for people, with what each map shows. */
const METHODS = {
  gradcam: ["Grad-CAM", "a layer's feature maps weighted by how much they raise the score"],
  guided_gradcam: ["Guided Grad-CAM", "guided backpropagation, kept where Grad-CAM points"],
  integrated_gradients: ["Integrated gradients", "the gradient summed from a black image"],
  occlusion: ["Occlusion", "how far the score falls when a square hides the pixel"],
};

export class AttributePanel {
  constructor(page) {
    this.page = page;
    this.networks = [];
    this.image = null;
    this.started = false;
    this.select = $("#att-network");
    this.target = $("#att-target");
    this.cards = new Map(); // method -> { img, caption, request }
    this.top = new PanelRequest(page.messages, { source: "attribute", target: $("#att-top") });
    sampleButtons($("#att-samples"), [...DIGIT_SAMPLES.slice(0, 4), SCENE_SAMPLE], (file) =>
      this.useImage(file),
    );
    $("#att-file").addEventListener("change", (event) => {
      if (event.target.files.length) this.useImage(event.target.files[0]);
    });
    this.select.addEventListener("change", () => {
      this.#fillTargets();
      this.update();
    });
    this.target.addEventListener("change", () => this.update());
    $("#att-form").addEventListener("submit", (event) => {
      event.preventDefault();
      this.update();
    });
    $("#att-maps").replaceChildren(...Object.keys(METHODS).map((method) => this.#card(method)));
  }

  setModels(models) {
    this.networks = models.filter((m) => m.endpoints.includes("attribute"));
    fillModelSelect(
      this.select,
      $("#att-network-note"),
      this.networks,
      (m) => `${m.name} (${KINDS[m.kind] ?? m.kind})`,
      (m) => m.kind === "classifier",
    );
    this.#fillTargets();
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

  useImage(file) {
    this.image = file;
    const img = $("#att-input");
    if (img.src) URL.revokeObjectURL(img.src);
    img.onerror = () => {
      img.hidden = true;
    };
    img.onload = () => {
      img.hidden = false;
    };
    img.src = URL.createObjectURL(file);
    this.update();
  }

  /** The four maps, each its own request; the first to answer fills in the five likeliest. */
  update() {
    const network = this.#network();
    if (!this.image || !network) return;
    const target = this.target.value === "" ? null : Number(this.target.value);
    const fit = network.kind === "network" ? "cover" : "fill";
    $("#att-input-frame").dataset.fit = fit;
    let ranked = false;
    for (const [method, card] of this.cards) {
      card.frame.dataset.fit = fit;
      const params = { network: network.name, method, target };
      card.request.run((signal) => this.page.api.attribute(this.image, params, signal), {
        retry: () => this.update(),
        shown: (answer) => {
          this.#showMap(card, method, answer, network);
          if (!ranked) this.#showTop(answer);
          ranked = true;
        },
        failed: () => {
          card.img.hidden = true;
        },
      });
    }
  }

  #network() {
    return this.networks.find((m) => m.name === this.select.value && m.available) ?? null;
  }

  #fillTargets() {
    const classes = this.#network()?.attribution?.classes ?? 0;
    const chosen = this.target.value;
    const options = [el("option", { value: "" }, "the predicted class")];
    for (let i = 0; i < classes; i++) options.push(el("option", { value: i }, `class ${i}`));
    this.target.replaceChildren(...options);
    this.target.value = Number(chosen) < classes ? chosen : "";
  }

  #card(method) {
    const [name, what] = METHODS[method];
    const img = el("img", { alt: "", hidden: true });
    const frame = el("div", { class: "frame busy-target" }, img);
    const caption = el("figcaption", {}, what);
    const request = new PanelRequest(this.page.messages, {
      source: `attribute-${method}`,
      target: frame,
    });
    this.cards.set(method, { img, frame, caption, request });
    return el(
      "li",
      { class: "card", "data-method": method },
      el("h3", {}, name),
      el("figure", {}, frame, caption),
    );
  }

  #showMap(card, method, answer, network) {
    const [name, what] = METHODS[method];
    card.img.src = imageUrl(answer.image_png);
    card.img.hidden = false;
    card.img.alt = `${name} of ${network.name}'s score for class ${answer.target} over the input`;
    card.caption.textContent = `${what}; class ${answer.target}`;
  }

  /** The five likeliest classes, each a button that explains that class instead. */
  #showTop(answer) {
    const items = answer.top.map((ranked) => {
      const percent = (100 * ranked.probability).toFixed(1);
      const button = el(
        "button",
        { type: "button", "aria-pressed": String(ranked.index === answer.target) },
        `class ${ranked.index}: ${percent}%`,
      );
      button.addEventListener("click", () => {
        this.target.value = String(ranked.index);
        this.update();
      });
      return el("li", {}, button);
    });
    $("#att-top").replaceChildren(...items);
  }
}
