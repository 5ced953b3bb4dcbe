import { expect } from 'chai';
import { consoleLogger } from '../lib';

describe('consoleLogger', () => {
  const capture = (format: 'pretty' | 'json') => {
    const lines: string[] = [];
    const logger = consoleLogger({ level: 'info', format, base: { worker: 2 }, stream: { write: (text: string) => lines.push(text) } });
    return { logger, lines };
  };

  it('writes JSON lines with time, level, msg, pid, the base fields and the event for programs', () => {
    const { logger, lines } = capture('json');
    logger.info('batch', { event: 'batch', processed: 3 });
    logger.debug('not written', { event: 'below-level' });
    expect(lines).to.have.length(1);
    const entry = JSON.parse(lines[0]);
    expect(entry).to.include({ level: 'info', msg: 'batch', pid: process.pid, worker: 2, event: 'batch', processed: 3 });
    expect(new Date(entry.time).toString()).to.not.equal('Invalid Date');
  });

  it('leaves the event out of pretty lines, where the message says it to people', () => {
    const { logger, lines } = capture('pretty');
    logger.warn('reconnect failed', { event: 'reconnect-failed', attempt: 2 });
    logger.info('listening', { event: 'listening' });
    expect(lines[0]).to.match(/^\d\d:\d\d:\d\d\.\d{3} WARN  \[pid \d+ worker 2\] reconnect failed \{"attempt":2\}\n$/);
    expect(lines[1]).to.match(/\] listening\n$/);
  });
});
