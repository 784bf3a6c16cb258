/**
 * The security suite's scoreboard: hostile cases tried, clean refusals,
 * crashes (a server that stopped serving) and bytes lost (a transfer that
 * ended cleanly but short). Each test file keeps one and prints it as a test
 * diagnostic and a console line, so a run ends with the table the issue asks for.
 * With AMBIT_TALLY_DIR set (scripts/test.mjs sets it), print() also appends
 * the tally to <dir>/tally.jsonl, which the runner sums into one table.
 */
import { appendFileSync } from 'node:fs';
import { join } from 'node:path';

export interface TallyRecord {
  readonly suite: string;
  readonly tried: number;
  readonly refused: number;
  readonly crashes: number;
  readonly bytesLost: number;
}

export class Tally {
  tried = 0;
  refused = 0;
  crashes = 0;
  bytesLost = 0;
  readonly #notes: string[] = [];

  constructor(readonly suite: string) {}

  /** Records one hostile case; `refused` is false when the input was (correctly) served instead. */
  case(name: string, outcome: { refused: boolean; crashed?: boolean; bytesLost?: number }): void {
    this.tried++;
    if (outcome.refused) this.refused++;
    if (outcome.crashed) this.crashes++;
    this.bytesLost += outcome.bytesLost ?? 0;
    this.#notes.push(`${name}: ${outcome.crashed ? 'CRASH' : outcome.refused ? 'refused' : 'served'}`);
  }

  line(): string {
    return `security tally [${this.suite}]: cases tried ${this.tried}, refusals ${this.refused}, crashes ${this.crashes}, bytes lost ${this.bytesLost}`;
  }

  notes(): readonly string[] {
    return this.#notes;
  }

  print(): void {
    console.log(this.line());
    const dir = process.env['AMBIT_TALLY_DIR'];
    if (dir) {
      const rec: TallyRecord = { suite: this.suite, tried: this.tried, refused: this.refused, crashes: this.crashes, bytesLost: this.bytesLost };
      appendFileSync(join(dir, 'tally.jsonl'), JSON.stringify(rec) + '\n');
    }
  }
}
