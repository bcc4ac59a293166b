// Features: what each feature map of a network responds to across a dataset (Zeiler &
// Fergus's Figure 2), from the atlases `python -m training atlas` builds. Pick a network and a
// layer for a grid of every map's strongest projection; open a map for its 9 + 9; open an
// entry's image in Visualise at that layer and map.

import { imageUrl } from "./api.js";
import { $, el, PanelRequest, shortName } from "./ui.js";

const GRID_AT_ONCE = 4; // map requests in flight: the grid fills in order without a flood

export class FeaturesPanel {
  constructor(page) {
    this.page = page;
    this.atlases = [];
    this.started = false;
    this.network = $("#feat-network");
    this.layer = $("#feat-layer");
    this.list = new PanelRequest(page.messages, { source: "atlas", target: $("#feat-grid") });
    this.grid = []; // one request at a time for each of GRID_AT_ONCE queues
    this.detail = new PanelRequest(page.messages, {
      source: "feature map",
      target: $("#feat-detail"),
    });
    this.network.addEventListener("change", () => this.#networkChanged());
    this.layer.addEventListener("change", () => this.#loadGrid());
  }

  setModels() {
    this.started = false; // models loaded or changed: the atlases may have too
    if (!$("#panel-features").hidden) this.shown();
  }

  shown() {
    if (this.started) return;
    this.started = true;
    this.list.run((signal) => this.page.api.atlases(signal), {
      retry: () => {
        this.started = false;
        this.shown();
      },
      shown: (atlases) => this.#setAtlases(atlases),
    });
  }

  #setAtlases(atlases) {
    this.atlases = atlases.filter((a) => a.served);
    const chosen = this.network.value;
    this.network.replaceChildren(
      ...atlases.map((a) =>
        el(
          "option",
          { value: a.network, disabled: !a.served },
          a.served ? `${a.network} (${describe(a.dataset)})` : `${a.network}: not served`,
        ),
      ),
    );
    const stale = atlases.filter((a) => !a.served);
    $("#feat-network-note").textContent = stale.map((a) => `${a.network}: ${a.reason}`).join(" ");
    $("#feat-empty").hidden = this.atlases.length > 0;
    const keep = this.atlases.find((a) => a.network === chosen) ?? this.atlases[0];
    if (keep) this.network.value = keep.network;
    this.#networkChanged();
  }

  #atlas() {
    return this.atlases.find((a) => a.network === this.network.value) ?? null;
  }

  #networkChanged() {
    const atlas = this.#atlas();
    const layers = atlas?.layers ?? [];
    this.layer.replaceChildren(
      ...layers.map((l) =>
        el(
          "option",
          { value: l.layer, title: l.name },
          `${shortName(l.name)} · ${l.feature_maps} maps`,
        ),
      ),
    );
    if (layers.length) this.layer.value = String(layers[Math.floor(layers.length / 2)].layer);
    this.#loadGrid();
  }

  /** A button per feature map with its strongest projection, loaded a few at a time. */
  async #loadGrid() {
    const atlas = this.#atlas();
    $("#feat-detail").hidden = true;
    const layer = atlas?.layers.find((l) => String(l.layer) === this.layer.value);
    for (const queue of this.grid) queue.cancel();
    if (!atlas || !layer) {
      $("#feat-grid").replaceChildren();
      return;
    }
    const cells = [...Array(layer.feature_maps).keys()].map((channel) =>
      this.#cell(atlas, layer, channel),
    );
    $("#feat-grid").replaceChildren(...cells.map((cell) => cell.button));
    $("#feat-grid-title").textContent =
      `Layer ${shortName(layer.name)}: each feature map's strongest activation across ` +
      `${describe(atlas.dataset)}`;
    const queue = [...cells];
    this.grid = [...Array(GRID_AT_ONCE)].map(() => new PanelRequest(this.page.messages));
    const next = async (requests) => {
      for (let cell = queue.shift(); cell; cell = queue.shift()) {
        const params = [atlas.network, layer.layer, cell.channel, { top: 1 }];
        const current = await requests.run((signal) => this.page.api.atlas(...params, signal), {
          target: cell.button,
          shown: (answer) => {
            cell.img.src = imageUrl(answer.entries[0].projection_png);
            cell.img.hidden = false;
          },
          failed: (err) => cell.button.setAttribute("title", err.detail ?? "failed"),
        });
        if (!current) return;
      }
    };
    await Promise.all(this.grid.map((requests) => next(requests)));
  }

  #cell(atlas, layer, channel) {
    const img = el("img", { alt: "", hidden: true });
    const button = el(
      "button",
      { type: "button", "aria-label": `Feature map ${channel}`, "data-channel": channel },
      img,
      el("span", { class: "name", "aria-hidden": "true" }, String(channel)),
    );
    button.addEventListener("click", () => this.#open(atlas, layer, channel, button));
    return { button, img, channel };
  }

  /** Figure 2 for one map: its projections beside its patches, and each entry on its own. */
  #open(atlas, layer, channel, button) {
    for (const other of document.querySelectorAll("#feat-grid button")) {
      other.setAttribute("aria-pressed", String(other === button));
    }
    const detail = $("#feat-detail");
    detail.hidden = false;
    this.detail.run(
      (signal) => this.page.api.atlas(atlas.network, layer.layer, channel, {}, signal),
      {
        retry: () => this.#open(atlas, layer, channel, button),
        shown: (answer) => this.#showDetail(atlas, layer, channel, answer),
      },
    );
  }

  #showDetail(atlas, layer, channel, answer) {
    $("#feat-detail-title").textContent =
      `Feature map ${channel} of layer ${shortName(layer.name)}`;
    const entries = answer.entries.map((entry, rank) =>
      el(
        "li",
        {},
        el("img", {
          src: imageUrl(entry.projection_png),
          alt: `Projection of activation ${rank + 1}`,
        }),
        el("img", { src: imageUrl(entry.patch_png), alt: `Its patch of item ${entry.index}` }),
        el(
          "span",
          { class: "note" },
          `#${rank + 1} item ${entry.index} · ${entry.value.toPrecision(4)}`,
        ),
        this.#visualiseButton(atlas, layer, channel, entry, rank),
      ),
    );
    $("#feat-entries").replaceChildren(...entries);
    $("#feat-detail-hint").textContent =
      `The ${answer.entries.length} items whose strongest activation in this map is highest, ` +
      "strongest first: the deconvnet projection of that one activation inside its receptive " +
      "field, beside the part of the image it sees.";
    $("#feat-detail").focus();
  }

  #visualiseButton(atlas, layer, channel, entry, rank) {
    const button = el("button", { type: "button" }, "Open in Visualise");
    button.setAttribute("aria-label", `Open in Visualise: item ${entry.index}, #${rank + 1}`);
    button.addEventListener("click", () => {
      // decoded here: the page's Content-Security-Policy lets fetch reach the service alone
      const bytes = Uint8Array.from(atob(entry.image_png), (c) => c.charCodeAt(0));
      const blob = new Blob([bytes], { type: "image/png" });
      this.page.open("visualise", blob, { network: atlas.network, layer: layer.layer, channel });
    });
    return button;
  }
}

function describe(dataset) {
  if (!dataset) return "no data";
  if (!dataset.split) return `${dataset.count} images of ${dataset.name}`; // a folder
  return `${dataset.count} ${dataset.name} ${dataset.split} items`;
}
