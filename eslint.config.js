// ESLint for the page's build-free modules (service/api/static/*.js), run by `make lint`.
// The linters are installed (npm, pinned in the Makefile) into .cache/jslint, not into a
// node_modules here, so this file resolves its own imports from there.
import { createRequire } from "node:module";

const require = createRequire(new URL(".cache/jslint/", import.meta.url));
const js = require("@eslint/js");
const globals = require("globals");

export default [
  js.configs.recommended,
  {
    files: ["service/api/static/**/*.js"],
    languageOptions: {
      ecmaVersion: 2024,
      sourceType: "module",
      globals: globals.browser,
    },
    linterOptions: { reportUnusedDisableDirectives: "error" },
  },
];
