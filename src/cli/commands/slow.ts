import type { Command } from 'commander';
import type { Runner } from '../program.js';

export function registerSlow(_program: Command, _run: Runner): void {}
