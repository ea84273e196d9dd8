import type { Command } from 'commander';
import type { Runner } from '../program.js';

export function registerPool(_program: Command, _run: Runner): void {}
