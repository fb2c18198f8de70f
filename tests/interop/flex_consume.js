#!/usr/bin/env node
'use strict';
// Subscribe with pulsar-flex, then receive --count messages and print one JSON
// line per message.
//
//   node flex_consume.js --url pulsar://127.0.0.1:6650 \
//        --topic persistent://public/default/t --count 10 [--ready-file F]
//
// pulsar-flex always subscribes at the LATEST position (it never puts
// initial_position into SUBSCRIBE), so start this first and start producing
// only after the "ready" line (or the --ready-file) appears.
//
// stdout (JSON lines):
//   {"event":"ready","subscription":...}
//   {"event":"message","n":k,"payload":utf8,"payloadBase64":...,"key":...,
//    "orderingKey":...,"properties":{...},"msgId":{ledgerId,entryId,partition,batchIndex},
//    "batch":{"pos":p,"size":s}|null,"producerName":...,"sequenceId":...,
//    "publishTime":...,"redeliveryCount":...}
//   {"event":"unexpected",...}      a message beyond --count (during --linger-ms)
//   {"event":"done","received":N,"acked":A}
// Exit status: 0 ok, 1 failure (incl. unanswered ACKs, extra messages),
// 3 timeout, 64 usage. The reason is on stderr.
//
// Batches: pulsar-flex hands every message of a batch entry over with the
// entry's MessageIdData (the broker's batch_index, normally unset = -1);
// "batch.pos" is the message's position inside the entry, derived here.

const fs = require('fs');
const c = require('./lib/common');

const PROG = 'flex_consume';
const USAGE = `usage: ${PROG}.js --url pulsar://HOST:PORT --topic TOPIC [options]
  --count N            messages to receive (default 10)
  --subscription S     subscription name (default flex-interop-<pid>)
  --sub-type T         Exclusive|Shared|Failover|Key_Shared (default Exclusive)
  --consumer-name S    consumer name (default flex-consumer-<pid>)
  --ack MODE           individual|cumulative|none (default individual)
  --ack-timeout-ms MS  how long to wait for each ACK_RESPONSE (default 5000)
  --receive-queue N    pulsar-flex receiveQueueSize = FLOW permits (default 1000)
  --linger-ms MS       after N messages, keep listening MS for extra ones (default 0)
  --ready-file F       create F once subscribed and FLOW is sent
  --no-close           do not send CLOSE_CONSUMER at the end
  --allow-reconnect    tolerate the broker closing the connection (default: fail)
  --nack-first         negatively acknowledge the first delivery (pulsar-flex
                       sends REDELIVER_UNACKNOWLEDGED_MESSAGES and, on Exclusive/
                       Failover, drops its local queue); it is printed as
                       {"event":"nacked"} and not counted
  --timeout-ms MS      bound on the whole run (default 30000)
  --log-level L        pulsar-flex log level: nothing|error|warn|info|debug|trace
`;

const args = c.parseArgs(
  process.argv.slice(2),
  {
    url: { type: 'string', required: true },
    topic: { type: 'string', required: true },
    count: { type: 'int', default: 10 },
    subscription: { type: 'string', default: `flex-interop-${process.pid}` },
    'sub-type': { type: 'string', default: 'Exclusive' },
    'consumer-name': { type: 'string', default: `flex-consumer-${process.pid}` },
    ack: { type: 'string', default: 'individual' },
    'ack-timeout-ms': { type: 'int', default: 5000 },
    'receive-queue': { type: 'int', default: 1000 },
    'linger-ms': { type: 'int', default: 0 },
    'ready-file': { type: 'string', default: null },
    'no-close': { type: 'bool', default: false },
    'allow-reconnect': { type: 'bool', default: false },
    'nack-first': { type: 'bool', default: false },
    'timeout-ms': { type: 'int', default: 30000 },
    'log-level': { type: 'string', default: 'error' },
  },
  USAGE
);
c.installCrashHandlers(PROG);
if (!['individual', 'cumulative', 'none'].includes(args.ack)) {
  c.fatal(`bad --ack '${args.ack}'`, 64);
}

let flex;
try {
  flex = require('pulsar-flex');
} catch (e) {
  c.fatal(`cannot load pulsar-flex (${e.message}); run 'npm ci' in tests/interop or set NODE_PATH`);
}

let phase = 'starting';
let received = 0;
c.armTimeout(args['timeout-ms'], () => `while ${phase} (received ${received} of ${args.count})`);

async function main() {
  const Consumer = flex.Consumer;
  const consumer = new Consumer({
    topic: args.topic,
    discoveryServers: [c.discoveryServer(args.url)],
    subscription: args.subscription,
    subType: c.enumValue(Consumer.SUB_TYPES, args['sub-type'], 'subscription type'),
    consumerName: args['consumer-name'],
    receiveQueueSize: args['receive-queue'],
    logLevel: c.flexLogLevel(flex, args['log-level']),
    logCreator: c.flexLogCreator(PROG),
  });

  // The entry-level view of each MESSAGE frame, as pulsar-flex decoded it.
  // pulsar-flex passes the same `command` object for every message of one
  // entry, which is what ties a batch member to its entry here.
  const entries = new WeakMap();
  const events = consumer._client.getResponseEvents();
  events.on('message', ({ command, metadata, messages }) => {
    entries.set(command, {
      metadata,
      size: messages.length,
      batch: messages.length > 0 && !!messages[0].singleMessageMetadata,
    });
  });
  events.on('closeConsumer', () =>
    c.note(PROG, 'broker sent CLOSE_CONSUMER (pulsar-flex will resubscribe)')
  );

  const ackType =
    args.ack === 'cumulative' ? Consumer.ACK_TYPES.CUMULATIVE : Consumer.ACK_TYPES.INDIVIDUAL;
  const ackFailures = [];
  const pendingAcks = [];
  let acked = 0;
  let lastCommand = null;
  let pos = 0;
  let finishing = false;
  let unexpected = 0;
  let resolveAll;
  const allReceived = new Promise((r) => (resolveAll = r));

  let nacked = false;
  const onMessage = async ({ message, metadata, command, redeliveryCount, properties, ack }) => {
    pos = command === lastCommand ? pos + 1 : 0;
    lastCommand = command;
    const nackNow = args['nack-first'] && !nacked;
    const entry = entries.get(command) || { metadata: {}, size: 1, batch: false };
    const line = {
      event: nackNow ? 'nacked' : finishing ? 'unexpected' : 'message',
      n: finishing ? args.count + unexpected : received,
      payload: message.toString('utf8'),
      payloadBase64: message.toString('base64'),
      key: metadata.partitionKey === undefined ? null : metadata.partitionKey,
      orderingKey: metadata.orderingKey || null,
      properties,
      msgId: c.msgId(command.messageId),
      batch: entry.batch
        ? { pos, size: entry.size, sequenceId: metadata.sequenceId === undefined ? null : metadata.sequenceId }
        : null,
      producerName: entry.metadata.producerName,
      sequenceId: entry.metadata.sequenceId,
      publishTime: entry.metadata.publishTime,
      redeliveryCount,
    };
    if (entry.metadata.compression) line.compression = entry.metadata.compression;
    c.emit(line);
    if (nackNow) {
      nacked = true;
      // Resolves at once: pulsar-flex expects no answer to REDELIVER_UNACKNOWLEDGED_MESSAGES.
      await ack({ type: Consumer.ACK_TYPES.NEGATIVE });
      lastCommand = null;
      return;
    }
    if (finishing) {
      unexpected++;
      return;
    }
    received++;
    phase = 'waiting for messages';
    if (args.ack !== 'none') {
      // Not awaited: an unanswered ACK must not hold back later messages.
      const n = received - 1;
      pendingAcks.push(
        c
          .within(
            args['ack-timeout-ms'],
            ack({ type: ackType }),
            `no ACK_RESPONSE within ${args['ack-timeout-ms']} ms`
          )
          .then(
            () => acked++,
            (e) => ackFailures.push({ n, msgId: line.msgId, error: e.message || String(e) })
          )
      );
    }
    if (received === args.count) resolveAll();
  };

  phase = 'subscribing (CONNECT, LOOKUP, CONNECT, SUBSCRIBE unanswered?)';
  await consumer.subscribe();
  // pulsar-flex silently reconnects and resubscribes when its socket closes;
  // an unexpected close is a failure here unless --allow-reconnect.
  let lost = 0;
  consumer._client.getCnx().addCleanUpListener(() => {
    if (finishing) return;
    lost++;
    c.note(PROG, 'the broker connection closed while consuming');
    if (!args['allow-reconnect']) c.fatal('connection to the broker lost while consuming');
  });
  phase = 'starting to consume (FLOW)';
  await consumer.run({ onMessage, autoAck: false });
  phase = 'waiting for messages';
  c.emit({ event: 'ready', subscription: args.subscription, topic: args.topic });
  if (args['ready-file']) fs.writeFileSync(args['ready-file'], `${process.pid}\n`);

  if (args.count > 0) await allReceived;
  if (args['linger-ms'] > 0) {
    finishing = true;
    phase = 'lingering for extra messages';
    await new Promise((r) => setTimeout(r, args['linger-ms']));
  }
  finishing = true;
  phase = 'waiting for ACK_RESPONSEs';
  await Promise.all(pendingAcks);

  if (!args['no-close']) {
    phase = 'closing the consumer (CLOSE_CONSUMER)';
    try {
      await c.within(5000, consumer.unsubscribe(), 'no SUCCESS for CLOSE_CONSUMER within 5000 ms');
    } catch (e) {
      c.fatal(`close failed: ${e.message || JSON.stringify(e)}`);
    }
  }
  c.emit({ event: 'done', received, acked, ackFailures: ackFailures.length, unexpected, lost });
  if (ackFailures.length > 0) {
    ackFailures.sort((a, b) => a.n - b.n);
    const f = ackFailures[0];
    c.fatal(
      `${ackFailures.length} ACK(s) not confirmed; first: message ${f.n} ` +
        `${JSON.stringify(f.msgId)}: ${f.error}`
    );
  }
  if (unexpected > 0) c.fatal(`${unexpected} message(s) beyond the expected ${args.count}`);
  c.exitOk();
}

main().catch((e) => {
  c.fatal(`${e && e.name ? e.name + ': ' : ''}${e && e.message ? e.message : JSON.stringify(e)}`);
});
