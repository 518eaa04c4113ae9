#!/usr/bin/env -S node --max-semi-space-size=2
// Runs the compiled CLI (npm run build); during development use `npx tsx src/cli.ts`.
import '../dist/cli.js';
