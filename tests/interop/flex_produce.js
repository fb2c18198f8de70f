#!/usr/bin/env node
'use strict';
// Produce messages with pulsar-flex and print one JSON line per message.
//
//   node flex_produce.js --url pulsar://127.0.0.1:6650 \
//        --topic persistent://public/default/t --count 10 \
//        [--prefix msg-] [--key 'k-%d'] [--prop 'idx=%d']... [--batch B]
//
// stdout (JSON lines):
//   {"event":"created","producerName":...,"lastSequenceId":...}
//   {"event":"sent","index":i,"payload":...,"payloadBase64":...,"key":...,
//    "properties":{...},"sequenceId":s,"msgId":{ledgerId,entryId,partition,batchIndex},
//    "batch":{"pos":p,"size":s}|null}
//   {"event":"done","sent":N}
// Exit status: 0 ok, 1 failure, 3 timeout, 64 usage. The reason is on stderr.
//
// pulsar-flex's Producer.sendMessage()/sendBatch() resolve to `true` and drop
// the SEND_RECEIPT; the message id is taken from the receipt itself, read off
// the client's response event emitter. With --batch B, B messages go in one
// SEND (pulsar-flex batch format); the receipt carries one id for the entry
// and "batch.pos" is the message's position inside it.

const c = require('./lib/common');

const PROG = 'flex_produce';
const USAGE = `usage: ${PROG}.js --url pulsar://HOST:PORT --topic TOPIC [options]
  --count N          messages to send (default 10)
  --prefix S         payload of message i is S + i (default "msg-")
  --key T            message key; %d is replaced by i (needs lib/flexkeys.js,
                     pulsar-flex itself has no key API)
  --prop K=V         message property, repeatable; %d in V is replaced by i
  --batch B          send in batches of B messages (default 0: one SEND each)
  --access-mode M    Shared|Exclusive|WaitForExclusive (default Shared)
  --timeout-ms MS    bound on the whole run (default 30000)
  --no-close         do not send CLOSE_PRODUCER at the end
  --log-level L      pulsar-flex log level: nothing|error|warn|info|debug|trace
`;

const args = c.parseArgs(
  process.argv.slice(2),
  {
    url: { type: 'string', required: true },
    topic: { type: 'string', required: true },
    count: { type: 'int', default: 10 },
    prefix: { type: 'string', default: 'msg-' },
    key: { type: 'string', default: null },
    prop: { type: 'list' },
    batch: { type: 'int', default: 0 },
    'access-mode': { type: 'string', default: 'Shared' },
    'timeout-ms': { type: 'int', default: 30000 },
    'no-close': { type: 'bool', default: false },
    'log-level': { type: 'string', default: 'error' },
  },
  USAGE
);
c.installCrashHandlers(PROG);

let flex;
try {
  flex = require('pulsar-flex');
} catch (e) {
  c.fatal(`cannot load pulsar-flex (${e.message}); run 'npm ci' in tests/interop or set NODE_PATH`);
}
const flexkeys = require('./lib/flexkeys');
flexkeys.install();

let phase = 'starting';
c.armTimeout(args['timeout-ms'], () => `while ${phase}`);

async function main() {
  const producer = new flex.Producer({
    topic: args.topic,
    discoveryServers: [c.discoveryServer(args.url)],
    producerAccessMode: c.enumValue(flex.Producer.ACCESS_MODES, args['access-mode'], 'access mode'),
    logLevel: c.flexLogLevel(flex, args['log-level']),
    logCreator: c.flexLogCreator(PROG),
  });

  // SEND_RECEIPT / SEND_ERROR as the broker sent them, keyed by sequence id.
  const receipts = new Map();
  const sendErrors = new Map();
  const events = producer._client.getResponseEvents();
  events.on('sendReceipt', ({ command }) => receipts.set(command.sequenceId, command));
  events.on('sendError', ({ command }) => sendErrors.set(command.sequenceId, command));
  events.on('closeProducer', () =>
    c.note(PROG, 'broker sent CLOSE_PRODUCER (pulsar-flex will reconnect)')
  );

  phase = 'creating the producer (CONNECT, LOOKUP, CONNECT, PRODUCER unanswered?)';
  await producer.create();
  // pulsar-flex silently reconnects and re-creates the producer when its
  // socket closes; an unexpected close is a failure here.
  let closing = false;
  producer._client.getCnx().addCleanUpListener(() => {
    if (!closing) c.fatal('connection to the broker lost while producing');
  });
  c.emit({
    event: 'created',
    producerName: producer._producerName,
    // pulsar-flex stores last_sequence_id + 1 and pre-increments per send
    lastSequenceId: producer._sequenceId - 1,
  });

  // With onlyErrors, only report a SEND_ERROR (used on the failure path).
  const receiptFor = (seq, onlyErrors = false) => {
    if (sendErrors.has(seq)) {
      const e = sendErrors.get(seq);
      const errs = require('pulsar-flex/src/commands/protocol/pulsar/pulsar_pb').ServerError;
      c.fatal(`broker answered sequence ${seq} with SEND_ERROR error=${c.enumName(errs, e.error)} message=${e.message}`);
    }
    if (onlyErrors) return null;
    const r = receipts.get(seq);
    if (!r) c.fatal(`no SEND_RECEIPT recorded for sequence ${seq}`);
    if (!r.messageId) c.fatal(`SEND_RECEIPT for sequence ${seq} has no message_id`);
    // ledger = entry = -1 (uint64 max) is how a broker with de-duplication
    // answers a SEND it considers a duplicate: nothing was stored.
    // pulsar-flex ignores the id and reports success.
    const l = r.messageId.ledgerid;
    if (l === -1 || l >= 2 ** 63) {
      c.fatal(
        `SEND_RECEIPT for sequence ${seq} has message id -1:-1, i.e. the broker ` +
          `dropped the SEND as a duplicate (highest_sequence_id in receipt: ${r.highestSequenceId})`
      );
    }
    return r;
  };

  const message = (i) => ({
    payload: args.prefix + i,
    key: c.fill(args.key, i),
    properties: c.propsFor(args.prop, i),
  });

  const report = (i, m, seq, id, batch = null) =>
    c.emit({
      event: 'sent',
      index: i,
      payload: m.payload,
      payloadBase64: Buffer.from(m.payload).toString('base64'),
      key: m.key,
      properties: m.properties,
      sequenceId: seq,
      msgId: id,
      batch,
    });

  if (args.batch > 0) {
    for (let first = 0; first < args.count; first += args.batch) {
      const batch = [];
      for (let i = first; i < Math.min(first + args.batch, args.count); i++) batch.push(message(i));
      phase = `waiting for SEND_RECEIPT of the batch starting at message ${first}`;
      try {
        await producer.sendBatch({ messages: batch });
      } catch (e) {
        receiptFor(producer._sequenceId, true);
        c.fatal(`sendBatch failed at message ${first}: ${e.name || ''} ${JSON.stringify(e)} ${e.message || ''}`);
      }
      const seq = producer._sequenceId;
      const r = receiptFor(seq);
      batch.forEach((m, k) =>
        report(first + k, m, seq, c.msgId(r.messageId), { pos: k, size: batch.length })
      );
    }
  } else {
    for (let i = 0; i < args.count; i++) {
      const m = message(i);
      phase = `waiting for SEND_RECEIPT of message ${i}`;
      flexkeys.setNextKey(m.key);
      const sent = producer.sendMessage({ payload: m.payload, properties: m.properties });
      flexkeys.setNextKey(null);
      try {
        await sent;
      } catch (e) {
        receiptFor(producer._sequenceId, true);
        c.fatal(`sendMessage failed at message ${i}: ${e.name || ''} ${JSON.stringify(e)} ${e.message || ''}`);
      }
      const seq = producer._sequenceId;
      report(i, m, seq, c.msgId(receiptFor(seq).messageId));
    }
  }

  closing = true;
  if (!args['no-close']) {
    phase = 'closing the producer';
    try {
      await c.within(5000, producer.close(), 'no SUCCESS for CLOSE_PRODUCER within 5000 ms');
    } catch (e) {
      c.fatal(`close failed: ${e.message || JSON.stringify(e)}`);
    }
  }
  c.emit({ event: 'done', sent: args.count });
  c.exitOk();
}

main().catch((e) => {
  c.fatal(`${e && e.name ? e.name + ': ' : ''}${e && e.message ? e.message : JSON.stringify(e)}`);
});
