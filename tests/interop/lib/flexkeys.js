'use strict';
// pulsar-flex 1.1.1 has no API for message keys: neither Producer.sendMessage
// nor Producer.sendBatch lets the caller set MessageMetadata.partition_key /
// SingleMessageMetadata.partition_key. To exercise keys end to end anyway,
// this module wraps the two metadata builders in pulsar-flex's `commands`
// module (looked up by property at call time from
// src/producer/services/sendMessage.js and sendBatch.js) so a key can be
// attached. Everything else on the wire is still produced by pulsar-flex.
//
//   single sends: setNextKey(k) immediately before producer.sendMessage();
//                 the metadata is built synchronously inside that call.
//   batches:      put `key` on each message object passed to sendBatch();
//                 pulsar-flex hands that object to singleMessageMetadata().

let installed = false;
let nextKey = null;

function install() {
  if (installed) return;
  const commands = require('pulsar-flex/src/commands');
  const origMeta = commands.messageMetadata;
  const origSingle = commands.singleMessageMetadata;
  if (typeof origMeta !== 'function' || typeof origSingle !== 'function') {
    throw new Error('pulsar-flex internals changed: commands.messageMetadata missing');
  }
  commands.messageMetadata = (args) => {
    const md = origMeta(args);
    if (nextKey !== null) md.setPartitionKey(nextKey);
    nextKey = null;
    return md;
  };
  commands.singleMessageMetadata = (message) => {
    const md = origSingle(message);
    if (message && message.key !== undefined && message.key !== null) {
      md.setPartitionKey(String(message.key));
    }
    return md;
  };
  installed = true;
}

function setNextKey(k) {
  nextKey = k === undefined ? null : k;
}

module.exports = { install, setNextKey };
