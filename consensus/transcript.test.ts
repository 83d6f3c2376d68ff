// Runs every transcript in testdata/ (see test/transcript.ts for the format and the commands).
// A mismatch fails with a diff of the whole file. PCR_REWRITE=1 writes the actual outputs back
// into the files instead, so that a change of behaviour shows up as a diff in review.

import { readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';
import { parseCommandLine, parseTranscript, runTranscript } from '../test/consensus/transcript.ts';

const dir = fileURLToPath(new URL('./testdata/', import.meta.url));
const files = readdirSync(dir)
  .filter((f) => f.endsWith('.txt'))
  .sort();
const rewrite = process.env.PCR_REWRITE === '1';

describe('transcripts (testdata/*.txt)', () => {
  it('has transcripts to run', () => {
    expect(files.length).toBeGreaterThan(0);
  });

  for (const file of files) {
    it(file, () => {
      const path = `${dir}${file}`;
      const text = readFileSync(path, 'utf8');
      const { rewritten, mismatches } = runTranscript(text, `testdata/${file}`);
      if (rewrite) {
        if (rewritten !== text) writeFileSync(path, rewritten);
        return;
      }
      const first = mismatches[0];
      const where =
        first === undefined
          ? ''
          : `${mismatches.length} block(s) differ, first at testdata/${file}:${first.line} (${first.cmd}); ` +
            'if the new output is right, accept it with PCR_REWRITE=1 and review the diff';
      expect(rewritten, where).toBe(text);
    });
  }
});

describe('transcript format', () => {
  it('keeps comments and input lines, and replaces only the expected outputs', () => {
    const text = [
      '# a comment',
      'add-nodes 1',
      '----',
      'stale output',
      '',
      '# another',
      'raft-state',
      'an input line',
      '----',
      '',
    ].join('\n');
    const { rewritten, mismatches } = runTranscript(text);
    expect(mismatches.map((m) => m.line)).toEqual([2, 7]);
    expect(rewritten).toBe(
      [
        '# a comment',
        'add-nodes 1',
        '----',
        '1: Voters:[1] Learners:[]',
        'PreVote:true CheckQuorum:true Election:10 Heartbeat:1',
        '',
        '# another',
        'raft-state',
        'an input line',
        '----',
        '1: StateFollower (Voter) Term:0 Lead:0',
        '',
      ].join('\n'),
    );
    expect(runTranscript(rewritten).mismatches).toEqual([]);
  });

  it('reads an output between doubled separators, blank lines included', () => {
    const t = parseTranscript(
      'heal\n----\n----\nline one\n\nline three\n----\n----\n\nheal\n----\nok\n',
    );
    expect(t.blocks.map((b) => b.expected)).toEqual(['line one\n\nline three', 'ok']);
  });

  it('parses arguments: positional, key=value, key=(list), "quoted"', () => {
    const { cmd, args } = parseCommandLine('add-nodes 3 voters=(1, 2,3) learners=() x="a b"', 'l');
    expect(cmd).toBe('add-nodes');
    expect(args).toEqual([
      { key: '3', vals: [] },
      { key: 'voters', vals: ['1', '2', '3'] },
      { key: 'learners', vals: [] },
      { key: 'x', vals: ['a b'] },
    ]);
  });

  it('names the file and line of a block that cannot run', () => {
    expect(() => runTranscript('add-nodes 1\n----\nok\n\nfrobnicate\n----\nok\n', 't.txt')).toThrow(
      /t\.txt:5: frobnicate: .*unknown command/,
    );
    expect(() => runTranscript('heal\nno separator\n', 't.txt')).toThrow(/t\.txt:1/);
  });

  it('prints the RaftError of a refused request as output', () => {
    const { rewritten } = runTranscript('add-nodes 3\n----\n\npropose 1 x\n----\n');
    expect(rewritten).toContain('error NO_LEADER');
  });
});
