/**
 * OpenTelemetry: a write to a channel's model or a notify() made in an active span stores its
 * traceparent in the notification's context, and the callback runs in a consumer span that is
 * that span's child (one trace), linked to it; a batch's span is linked to each message; a
 * failing callback's span says so. Real spans (the SDK's in-memory exporter), real commits.
 */
import { expect } from 'chai';
import { type Span, SpanKind, SpanStatusCode, context, trace } from '@opentelemetry/api';
import { AsyncLocalStorageContextManager } from '@opentelemetry/context-async-hooks';
import { BasicTracerProvider, InMemorySpanExporter, type ReadableSpan, SimpleSpanProcessor } from '@opentelemetry/sdk-trace-base';
import { QueryTypes } from 'sequelize';
import { channel, NonRetryableError } from '../lib';
import { parseTraceparent } from '../lib/ops/tracing';
import { eventually } from '../dev/eventually';
import { exampleAppPerTest } from './support/example-app-per-test';

describe('tracing (OpenTelemetry)', function () {
  this.timeout(30_000);
  const test = exampleAppPerTest();
  const exporter = new InMemorySpanExporter();
  const provider = new BasicTracerProvider({ spanProcessors: [new SimpleSpanProcessor(exporter)] });
  const contextManager = new AsyncLocalStorageContextManager();
  const tracer = () => trace.getTracer('test');

  before(() => {
    context.setGlobalContextManager(contextManager.enable());
    trace.setGlobalTracerProvider(provider);
  });
  after(async () => {
    trace.disable();
    context.disable();
    await provider.shutdown();
  });
  beforeEach(() => exporter.reset());

  const inSpan = <R>(name: string, work: (span: Span) => Promise<R>) => tracer().startActiveSpan(name, async (span) => {
    try {
      return await work(span);
    } finally {
      span.end();
    }
  });
  const processSpans = (name: string) => exporter.getFinishedSpans().filter((span: ReadableSpan) => span.name === name);

  it("stores the active span's traceparent with a model's write, and runs the callback in its child span", async () => {
    const { app } = test;
    let callbackSpan: string | undefined;
    app.sequelize.pgpubsub.on(app.Author, 'author_created', () => { callbackSpan = trace.getActiveSpan()?.spanContext().spanId; });
    // Stored now, processed by a listener started later: the trace goes through the table.
    const producer = await inSpan('create author', async (span) => {
      await app.Author.create({ name: 'traced, autocommit' });
      await app.sequelize.transaction(async (transaction) => {
        await app.Author.create({ name: 'traced, in a transaction' }, { transaction });
      });
      return span.spanContext();
    });
    await app.Author.create({ name: 'not traced' });
    const stored = await app.sequelize.query<{ name: string; traceparent: string | null }>(
      "SELECT payload -> 'new' ->> 'name' AS name, payload -> 'context' ->> 'traceparent' AS traceparent FROM pgpubsub.notification ORDER BY id",
      { type: QueryTypes.SELECT },
    );
    const expected = `00-${producer.traceId}-${producer.spanId}-01`;
    expect(stored).to.deep.equal([
      { name: 'traced, autocommit', traceparent: expected },
      { name: 'traced, in a transaction', traceparent: expected },
      { name: 'not traced', traceparent: null },
    ]);

    await test.listen();
    await eventually(() => processSpans('author_created process').length === 3, 'three process spans');
    const spans = processSpans('author_created process');
    const children = spans.filter((span) => span.spanContext().traceId === producer.traceId);
    expect(children).to.have.length(2);
    for (const span of children) {
      expect(span.parentSpanContext?.spanId).to.equal(producer.spanId);
      expect(span.kind).to.equal(SpanKind.CONSUMER);
      expect(span.links.map((link) => link.context.spanId)).to.deep.equal([producer.spanId]);
      expect(span.attributes).to.include({ 'messaging.system': 'pgpubsub', 'messaging.destination.name': 'author_created', 'pgpubsub.attempt': 1 });
      expect(span.attributes['messaging.message.id']).to.match(/^\d+$/);
    }
    // The untraced write's span starts a trace of its own; the callback ran inside its span.
    expect(spans.filter((span) => span.spanContext().traceId !== producer.traceId)[0].links).to.deep.equal([]);
    expect(spans.map((span) => span.spanContext().spanId)).to.include(callbackSpan);
  });

  it("carries notify()'s span to its callback, links a batch's span to each message, and marks a failure", async () => {
    const { app } = test;
    const Mail = channel<{ to: string }>('traced_mail', { retry: { maxAttempts: 1 } });
    const Bulk = channel<{ n: number }>('traced_bulk');
    app.sequelize.pgpubsub.register(Mail, Bulk);
    app.sequelize.pgpubsub.on(Mail, ({ payload }) => { if (payload.to === 'nobody') throw new NonRetryableError('no such mailbox'); });
    app.sequelize.pgpubsub.onBatch(Bulk, () => undefined);
    const sent = await inSpan('send', async (span) => {
      await app.sequelize.pgpubsub.notify(Mail, { to: 'ann' });
      await app.sequelize.pgpubsub.notify(Mail, { to: 'nobody' });
      await app.sequelize.pgpubsub.notify(Bulk, { n: 1 });
      await app.sequelize.pgpubsub.notify(Bulk, { n: 2 });
      return span.spanContext();
    });
    await test.listen();
    await eventually(() => processSpans('traced_mail process').length >= 2 && processSpans('traced_bulk process').length >= 1, () => `the spans: ${exporter.getFinishedSpans().map((s) => s.name).join(', ')}`);
    const mails = processSpans('traced_mail process');
    expect(mails.every((span) => span.spanContext().traceId === sent.traceId && span.parentSpanContext?.spanId === sent.spanId)).to.equal(true);
    // 'ann' may run twice: the batch is redone, one message at a time, after 'nobody' throws.
    expect(mails.filter((span) => span.status.code === SpanStatusCode.ERROR)).to.have.length(1);
    expect(mails.filter((span) => span.status.code === SpanStatusCode.UNSET).length).to.be.at.least(1);
    expect(mails.find((span) => span.status.code === SpanStatusCode.ERROR)!.status.message).to.equal('no such mailbox');
    const [batch] = processSpans('traced_bulk process');
    expect(batch.attributes['messaging.batch.message_count']).to.equal(2);
    expect(batch.links.map((link) => link.context.spanId)).to.deep.equal([sent.spanId, sent.spanId]);
  });

  it('reads only well-formed traceparents', () => {
    expect(parseTraceparent('00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01')).to.include({ traceId: '0af7651916cd43dd8448eb211c80319c', spanId: 'b7ad6b7169203331', traceFlags: 1, isRemote: true });
    for (const bad of ['', 'nope', '01-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01', `00-${'0'.repeat(32)}-b7ad6b7169203331-01`, 7, null]) {
      expect(parseTraceparent(bad), String(bad)).to.equal(null);
    }
  });
});
