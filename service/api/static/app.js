// The page: tabs, the list of models, the API's contract (/openapi.json, for the bounds and
// choices it states), and the panels, which share one `page` object.

import { UnconvApi } from "./api.js";
import { AttributePanel } from "./attribute.js";
import { FeaturesPanel } from "./features.js";
import { GeneratePanel } from "./generate.js";
import { ReconstructPanel } from "./reconstruct.js";
import { $, Messages, PanelRequest } from "./ui.js";
import { VisualisePanel } from "./visualise.js";

const PANELS = {
  visualise: VisualisePanel,
  attribute: AttributePanel,
  reconstruct: ReconstructPanel,
  generate: GeneratePanel,
  features: FeaturesPanel,
};

function main() {
  const api = new UnconvApi();
  const page = { api, messages: new Messages(api), models: null, contract: null, panels: {} };
  const tabs = [...document.querySelectorAll('[role="tab"]')];
  const show = (tab, focus = false) => {
    for (const other of tabs) {
      const selected = other === tab;
      other.setAttribute("aria-selected", String(selected));
      other.tabIndex = selected ? 0 : -1;
      $(`#${other.getAttribute("aria-controls")}`).hidden = !selected;
    }
    if (focus) tab.focus();
    const name = tab.id.replace("tab-", "");
    if (location.hash !== `#${name}`) history.replaceState(null, "", `#${name}`);
    page.panels[name]?.shown();
  };
  for (const tab of tabs) {
    tab.addEventListener("click", () => show(tab));
    tab.addEventListener("keydown", (event) => {
      const moves = { ArrowRight: 1, ArrowLeft: -1, Home: -tabs.length, End: tabs.length };
      if (!(event.key in moves)) return;
      event.preventDefault();
      const index = tabs.indexOf(tab) + moves[event.key];
      show(tabs[Math.max(0, Math.min(tabs.length - 1, index))], true);
    });
  }
  // another panel's way into one: `open("visualise", image, params)` (Features does)
  page.open = (name, ...args) => {
    page.panels[name].open(...args); // before showing it, so that it starts from the image
    show(
      tabs.find((tab) => tab.id === `tab-${name}`),
      true,
    );
  };
  for (const [name, Panel] of Object.entries(PANELS)) page.panels[name] = new Panel(page);
  const models = new PanelRequest(page.messages, { source: "models", target: $("#main") });
  const loadModels = () =>
    models.run(
      (signal) => Promise.all([api.models(signal), api.request("openapi.json", { signal })]),
      {
        retry: loadModels,
        shown: ([list, contract]) => {
          page.models = list;
          page.contract = contract;
          for (const panel of Object.values(page.panels)) panel.setModels(list, contract);
          show(tabs.find((tab) => tab.getAttribute("aria-selected") === "true"));
        },
      },
    );
  const initial = tabs.find((tab) => `#${tab.id.replace("tab-", "")}` === location.hash);
  show(initial ?? tabs[0]);
  loadModels();
}

main();
