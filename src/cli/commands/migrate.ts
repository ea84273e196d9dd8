import type { Command } from 'commander';
import type { Runner } from '../program.js';

export function registerMigrate(_program: Command, _run: Runner): void {}
