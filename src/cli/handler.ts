/**
 * The shape of a command handler, below both program.ts (which wraps handlers into commander
 * actions) and commands/ (which write them), so neither imports the other's module for its types.
 */
import type { CommandContext } from './context.js';

/**
 * A command's work: options -> one core call -> one render. It returns nothing: a failure, a
 * failed check included, is a thrown DbopsError that program.ts turns into an exit code.
 */
export type Handler<O> = (ctx: CommandContext, opts: O, args: string[]) => Promise<void>;

/** Wraps a handler into a commander action; provided to each command group's register(). */
export type Runner = <O>(handler: Handler<O>) => (...actionArgs: unknown[]) => Promise<void>;
