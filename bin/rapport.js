#!/usr/bin/env node
// `rapport [api|worker|whatsapp-web|all]` runs Rapport; `rapport <command>` runs an operator command
// (see `rapport help`). Needs `npm run build` first (npm start does it).
require('../dist/main.js').main();
