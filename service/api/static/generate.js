// Generate: a seeded grid of VAE samples, sliders over one sample's first latent dimensions,
// and a walk between two samples (the API's `interpolate`) that can play as an animation.

import { imageUrl } from "./api.js";
import { $, debounce, el, fillModelSelect, PanelRequest, schemaValue, throttle } from "./ui.js";

const SLIDERS = 8; // latent dimensions given a slider
const FRAME_MS = 120;

export class GeneratePanel {
  constructor(page) {
    this.page = page;
    this.vaes = [];
    this.samples = []; // [{ image_png, z }] of the grid
    this.selected = 0;
    this.edited = null; // the selected sample's z, as the sliders moved it
    this.frames = []; // the walk's images
    this.started = false;
    this.player = null;
    this.minLogVar = null; // the smallest latent log-variance the API takes (its contract)
    const messages = page.messages;
    this.grid = new PanelRequest(messages, { source: "generate", target: $("#gen-grid") });
    this.edit = new PanelRequest(messages, { source: "edit", target: $("#gen-edited-frame") });
    this.walkRequest = new PanelRequest(messages, { source: "walk", target: $("#gen-strip") });
    this.select = $("#gen-model");
    const later = debounce(() => this.generate(), 250);
    this.select.addEventListener("change", () => {
      this.#labels();
      this.#temperature();
      this.generate();
    });
    $("#gen-temperature").addEventListener("input", () => {
      $("#gen-temperature-out").value = Number($("#gen-temperature").value).toFixed(2);
      later();
    });
    $("#gen-label").addEventListener("change", () => this.generate());
    $("#gen-seed").addEventListener("input", later);
    $("#gen-n").addEventListener("input", () => {
      $("#gen-n-out").value = $("#gen-n").value;
      later();
    });
    $("#gen-reseed").addEventListener("click", () => {
      $("#gen-seed").value = String(Math.floor(Math.random() * 2 ** 31));
      this.generate();
    });
    $("#gen-form").addEventListener("submit", (event) => {
      event.preventDefault();
      this.generate();
    });
    this.decodeSoon = throttle(() => this.#decode(), 100);
    $("#gen-reset").addEventListener("click", () => this.#choose(this.selected));
    const walkLater = debounce(() => this.walk(), 250);
    for (const id of ["#gen-from", "#gen-to"]) $(id).addEventListener("change", () => this.walk());
    $("#gen-steps").addEventListener("input", walkLater);
    $("#gen-play").addEventListener("click", () => this.#togglePlay());
  }

  setModels(models, contract) {
    this.vaes = models.filter((m) => m.endpoints.includes("generate"));
    const logVar = contract?.components?.schemas?.GenerateRequest?.properties?.log_var;
    this.minLogVar = schemaValue(logVar, "minimum") ?? null;
    const temperature = contract?.components?.schemas?.GenerateRequest?.properties?.temperature;
    $("#gen-temperature").max = String(schemaValue(temperature, "maximum") ?? 2);
    fillModelSelect(
      this.select,
      $("#gen-model-note"),
      this.vaes,
      (m) => `${m.name} (${m.latent_size} latent dimensions)`,
    );
    this.#labels();
    this.#temperature();
  }

  shown() {
    if (this.started || !this.#model()) return;
    this.started = true;
    this.generate();
  }

  #model() {
    return this.vaes.find((m) => m.name === this.select.value && m.available) ?? null;
  }

  /** A "digit" choice for models whose /models entry lists labels (a labelled prior). */
  #labels() {
    const labels = this.#model()?.labels ?? [];
    const select = $("#gen-label");
    select.replaceChildren(
      el("option", { value: "" }, "any"),
      ...labels.map((label, i) => el("option", { value: i }, label)),
    );
    $("#gen-label-row").hidden = labels.length === 0;
  }

  /** The temperature slider starts at the chosen model's own (`temperature` in /models). */
  #temperature() {
    const value = this.#model()?.temperature ?? 1;
    $("#gen-temperature").value = String(value);
    $("#gen-temperature-out").value = value.toFixed(2);
  }

  async generate() {
    const model = this.#model();
    if (!model) return;
    const seed = Number.parseInt($("#gen-seed").value, 10);
    const body = { model: model.name, n: Number($("#gen-n").value) };
    if (Number.isInteger(seed)) body.seed = seed;
    const label = $("#gen-label").value;
    if (label !== "") body.label = Number(label);
    body.temperature = Number($("#gen-temperature").value);
    await this.grid.run((signal) => this.page.api.generate(body, signal), {
      retry: () => this.generate(),
      shown: (answer) => {
        if (!Number.isInteger(seed)) $("#gen-seed").value = String(answer.seed);
        this.samples = answer.images;
        $("#gen-grid").replaceChildren(
          ...this.samples.map((sample, i) => {
            const button = el(
              "button",
              { type: "button", "aria-pressed": "false", "aria-label": `Sample ${i + 1}` },
              el("img", { src: imageUrl(sample.image_png), alt: "" }),
            );
            button.addEventListener("click", () => this.#choose(i));
            return button;
          }),
        );
        this.#walkChoices();
        this.#choose(Math.min(this.selected, this.samples.length - 1));
        this.walk();
      },
    });
  }

  #choose(index) {
    this.selected = index;
    const sample = this.samples[index];
    if (!sample) return;
    this.edit.cancel(); // an edit of the previous sample still on its way is stale
    for (const [i, button] of [...$("#gen-grid").children].entries()) {
      button.setAttribute("aria-pressed", String(i === index));
    }
    $("#gen-edit-title").textContent = `Edit sample ${index + 1}`;
    this.edited = [...sample.z];
    this.#show($("#gen-edited"), sample.image_png, `Sample ${index + 1}`);
    const sliders = this.edited.slice(0, SLIDERS).map((value, d) => {
      const id = `gen-z${d}`;
      const output = el("output", { for: id }, value.toFixed(2));
      const input = el("input", {
        id,
        type: "range",
        min: -4,
        max: 4,
        step: 0.01,
        value: value.toFixed(2),
      });
      input.addEventListener("input", () => {
        this.edited[d] = Number(input.value);
        output.value = Number(input.value).toFixed(2);
        this.decodeSoon();
      });
      return el("div", { class: "slider" }, el("label", { for: id }, `z${d + 1}`), input, output);
    });
    $("#gen-sliders").replaceChildren(...sliders);
  }

  /** Decodes the edited code exactly: the smallest log-variance the API takes (read from its
   *  contract) adds no visible noise. */
  async #decode() {
    const model = this.#model();
    if (!model || !this.edited || this.minLogVar === null) return;
    const body = {
      model: model.name,
      n: 1,
      seed: 0,
      mean: [this.edited],
      log_var: [this.edited.map(() => this.minLogVar)],
    };
    await this.edit.run((signal) => this.page.api.generate(body, signal), {
      retry: () => this.#decode(),
      shown: (answer) =>
        this.#show(
          $("#gen-edited"),
          answer.images[0].image_png,
          `Sample ${this.selected + 1} with its first latent dimensions moved`,
        ),
    });
  }

  #walkChoices() {
    const options = () => this.samples.map((_, i) => el("option", { value: i }, String(i + 1)));
    for (const [id, fallback] of [
      ["#gen-from", 0],
      ["#gen-to", 1],
    ]) {
      const select = $(id);
      const previous = select.value === "" ? fallback : Number(select.value);
      select.replaceChildren(...options());
      select.value = String(Math.min(previous, this.samples.length - 1));
    }
  }

  async walk() {
    const model = this.#model();
    const [from, to] = [this.samples[$("#gen-from").value], this.samples[$("#gen-to").value]];
    if (!model || !from || !to) return;
    const steps = Math.max(2, Math.min(32, Number.parseInt($("#gen-steps").value, 10) || 10));
    const body = { model: model.name, interpolate: { start: from.z, end: to.z, steps } };
    await this.walkRequest.run((signal) => this.page.api.generate(body, signal), {
      retry: () => this.walk(),
      shown: (answer) => {
        this.frames = answer.images.map((image) => image.image_png);
        $("#gen-strip").replaceChildren(
          ...this.frames.map((png, i) =>
            el("li", {}, el("img", { src: imageUrl(png), alt: `Step ${i + 1} of ${steps}` })),
          ),
        );
        this.#frame(0);
      },
    });
  }

  #frame(index) {
    this.frameIndex = index;
    this.#show($("#gen-frame"), this.frames[index], `Step ${index + 1} of the walk`);
    for (const [i, item] of [...$("#gen-strip").children].entries()) {
      item.classList.toggle("current", i === index);
    }
  }

  /** Plays the walk forth and back until paused. */
  #togglePlay() {
    const button = $("#gen-play");
    if (this.player) {
      clearInterval(this.player);
      this.player = null;
      button.textContent = "Play";
      return;
    }
    let direction = 1;
    this.player = setInterval(() => {
      if (this.frames.length < 2) return;
      let next = this.frameIndex + direction;
      if (next < 0 || next >= this.frames.length) {
        direction = -direction;
        next = this.frameIndex + direction;
      }
      this.#frame(next);
    }, FRAME_MS);
    button.textContent = "Pause";
  }

  #show(img, png, alt) {
    img.src = imageUrl(png);
    img.alt = alt;
    img.hidden = false;
  }
}
