#!/usr/bin/env node
'use strict';
// A checking TCP proxy for the Pulsar binary protocol.
//
//   node wiretap.js --listen PORT --target HOST:PORT --log FILE
//
// Clients connect to 127.0.0.1:PORT; every connection is relayed to the
// target broker frame by frame. Each frame, in both directions, is decoded
// with pulsar-flex's generated protobuf code (google-protobuf) and checked
// with crc-full -- code independent of upulsar -- and logged as one JSON
// line. LOOKUP_RESPONSE.brokerServiceUrl is rewritten to the tap's own
// address so the data connection that follows the lookup is tapped as well;
// all other frames are relayed byte for byte.
//
// Checks (a violation is listed in the frame's "problems" and counted):
//   - frame sizes consistent; BaseCommand decodes; the sub-message named by
//     `type` is present and no other one is
//   - broker->client types that pulsar-flex 1.1.1 can dispatch (<= 40)
//   - fields a response needs (request_id, producer_name, message_id, ...)
//   - payload frames (SEND, MESSAGE): magic 0x0e01 + CRC32C over
//     metadata-size..end correct; broker entry metadata (0x0e02) only to a
//     client that advertised it; MessageMetadata decodes with producer_name,
//     sequence_id, publish_time; a batch splits exactly into
//     num_messages_in_batch SingleMessageMetadata records; SEND num_messages
//     matches the batch size; compression is NONE toward pulsar-flex
//   - every request with a request_id, and every SEND, is answered once, and
//     no answer refers to an id that was never asked for
// On SIGTERM/SIGINT: a summary line on stderr; exit 1 if any problem was
// seen, 0 otherwise.

const net = require('net');
const fs = require('fs');
const c = require('./lib/common');

const PROG = 'wiretap';
const args = c.parseArgs(
  process.argv.slice(2),
  {
    listen: { type: 'int', required: true },
    target: { type: 'string', required: true },
    log: { type: 'string', default: null },
    'max-frame': { type: 'int', default: 64 * 1024 * 1024 },
  },
  'usage: wiretap.js --listen PORT --target HOST:PORT [--log FILE]\n'
);
c.installCrashHandlers(PROG);

let pb;
let CRC;
try {
  pb = require('pulsar-flex/src/commands/protocol/pulsar/pulsar_pb');
  CRC = require('crc-full').CRC;
} catch (e) {
  c.fatal(`cannot load pulsar-flex / crc-full (${e.message}); set NODE_PATH`);
}
const crc32c = new CRC('CRC32_C', 32, 0x1edc6f41, 0xffffffff, 0xffffffff, true, true);
const T = pb.BaseCommand.Type;
const TYPE_NAME = Object.fromEntries(Object.entries(T).map(([k, v]) => [v, k]));
const FLEX_MAX_TYPE = 40; // pulsar-flex maps type N to the (N-1)-th field: fields 1..40 are contiguous
const [targetHost, targetPort] = (() => {
  const i = args.target.lastIndexOf(':');
  return [args.target.slice(0, i), parseInt(args.target.slice(i + 1), 10)];
})();

const logStream = args.log ? fs.createWriteStream(args.log) : null;
let frames = { c2s: 0, s2c: 0 };
let problemCount = 0;
let connSeq = 0;

function log(obj) {
  if (logStream) logStream.write(JSON.stringify(obj, bigintSafe) + '\n');
}
function bigintSafe(k, v) {
  if (typeof v === 'bigint') return v.toString();
  if (v instanceof Uint8Array) return Buffer.from(v).toString('base64');
  return v;
}

// Fields a broker->client command must carry (proto "required" ones plus
// what pulsar-flex reads). Paths are toObject() names.
const NEEDS = {
  CONNECTED: ['serverVersion'],
  LOOKUP_RESPONSE: ['requestId'],
  PRODUCER_SUCCESS: ['requestId', 'producerName'],
  SEND_RECEIPT: ['producerId', 'sequenceId', 'messageId.ledgerid', 'messageId.entryid'],
  SEND_ERROR: ['producerId', 'sequenceId', 'error', 'message'],
  SUCCESS: ['requestId'],
  ERROR: ['requestId', 'error', 'message'],
  MESSAGE: ['consumerId', 'messageId.ledgerid', 'messageId.entryid'],
  ACK_RESPONSE: ['consumerId', 'requestId'],
  CLOSE_PRODUCER: ['producerId', 'requestId'],
  CLOSE_CONSUMER: ['consumerId', 'requestId'],
  PARTITIONED_METADATA_RESPONSE: ['requestId'],
};
// Client requests answered by request_id, and the answers allowed.
const ANSWERS = {
  LOOKUP: ['LOOKUP_RESPONSE', 'ERROR'],
  PARTITIONED_METADATA: ['PARTITIONED_METADATA_RESPONSE', 'ERROR'],
  PRODUCER: ['PRODUCER_SUCCESS', 'ERROR'],
  SUBSCRIBE: ['SUCCESS', 'ERROR'],
  CLOSE_PRODUCER: ['SUCCESS', 'ERROR'],
  CLOSE_CONSUMER: ['SUCCESS', 'ERROR'],
  UNSUBSCRIBE: ['SUCCESS', 'ERROR'],
  ACK: ['ACK_RESPONSE', 'ERROR', 'SUCCESS'],
  GET_LAST_MESSAGE_ID: ['GET_LAST_MESSAGE_ID_RESPONSE', 'ERROR'],
};

// Raw protobuf scan: [[fieldNumber, wireType, valueOrBytes], ...]. Used to
// log which fields are really on the wire (toObject() also shows defaults).
function scan(buf) {
  const out = [];
  let p = 0;
  const varint = () => {
    let v = 0n;
    let shift = 0n;
    for (;;) {
      if (p >= buf.length) throw new Error('truncated varint');
      const b = buf[p++];
      v |= BigInt(b & 0x7f) << shift;
      if (!(b & 0x80)) return v;
      shift += 7n;
    }
  };
  while (p < buf.length) {
    const key = Number(varint());
    const fno = key >>> 3;
    const wt = key & 7;
    if (wt === 0) out.push([fno, wt, varint()]);
    else if (wt === 2) {
      const n = Number(varint());
      out.push([fno, wt, buf.subarray(p, p + n)]);
      p += n;
    } else if (wt === 1) { out.push([fno, wt, buf.subarray(p, p + 8)]); p += 8; }
    else if (wt === 5) { out.push([fno, wt, buf.subarray(p, p + 4)]); p += 4; }
    else throw new Error(`wire type ${wt}`);
  }
  return out;
}

// "1=0 2=7 4=[12]": field numbers present in the sub-command, varint values
// (as signed 64-bit) or [length] of length-delimited fields.
function wireFields(cmdBytes, type) {
  try {
    const sub = scan(cmdBytes).find(([f, wt]) => f === type && wt === 2);
    if (!sub) return null;
    return scan(sub[2])
      .map(([f, wt, v]) => (wt === 0 ? `${f}=${BigInt.asIntN(64, v)}` : `${f}=[${v.length}]`))
      .join(' ');
  } catch (e) {
    return `unparsable: ${e.message}`;
  }
}

function get(obj, pathStr) {
  return pathStr.split('.').reduce((o, k) => (o === undefined || o === null ? undefined : o[k]), obj);
}

// Decode and check one complete frame (including its 4-byte size prefix).
function inspect(dir, frame, st) {
  const problems = [];
  const rec = { dir, conn: st.id, size: frame.length };
  const total = frame.readUInt32BE(0);
  const cmdSize = frame.readUInt32BE(4);
  if (cmdSize === 0 || 4 + cmdSize > total) {
    problems.push(`command size ${cmdSize} does not fit total size ${total}`);
    return finish(rec, problems);
  }
  let base;
  try {
    base = pb.BaseCommand.deserializeBinary(frame.subarray(8, 8 + cmdSize));
  } catch (e) {
    problems.push(`BaseCommand does not decode: ${e.message}`);
    return finish(rec, problems);
  }
  const type = base.getType();
  const name = TYPE_NAME[type] || `UNKNOWN_${type}`;
  rec.type = name;
  const entries = Object.entries(base.toObject());
  const set = entries.filter(([k, v]) => k !== 'type' && v !== undefined && v !== null);
  const own = entries[type - 1];
  const cmd = own && own[0] !== 'type' ? own[1] : undefined;
  rec.cmd = cmd;
  rec.wire = wireFields(frame.subarray(8, 8 + cmdSize), type);
  if (!TYPE_NAME[type]) problems.push(`type ${type} unknown to the Pulsar protocol revision pulsar-flex uses`);
  if (dir === 's2c' && type > FLEX_MAX_TYPE) {
    problems.push(`type ${name} (${type}) cannot be dispatched by pulsar-flex 1.1.1 (throws in its data handler)`);
  }
  if (cmd === undefined) problems.push(`type ${name} but its sub-message (field ${type}) is absent`);
  if (set.length > 1) problems.push(`several sub-messages set: ${set.map(([k]) => k).join(', ')}`);
  if (dir === 's2c' && cmd && NEEDS[name]) {
    for (const f of NEEDS[name]) if (get(cmd, f) === undefined) problems.push(`${name} lacks ${f}`);
    if (name === 'LOOKUP_RESPONSE' && cmd.response !== 2 /* Failed */) {
      if (!cmd.brokerserviceurl) problems.push('LOOKUP_RESPONSE without brokerServiceUrl (pulsar-flex needs it)');
      else if (!/^pulsar:\/\/[^/:]+:\d+$/.test(cmd.brokerserviceurl)) {
        problems.push(`brokerServiceUrl '${cmd.brokerserviceurl}' is not pulsar://host:port (pulsar-flex splits on ':')`);
      }
    }
  }

  if (name === 'SEND_RECEIPT' && cmd && cmd.messageId &&
      (cmd.messageId.ledgerid === -1 || cmd.messageId.ledgerid >= 2 ** 63)) {
    rec.note = 'receipt id -1:-1: the broker dropped this SEND as a duplicate';
  }

  // ----- request / response bookkeeping
  if (cmd) track(dir, name, cmd, st, problems);

  // ----- payload
  const rest = frame.subarray(8 + cmdSize);
  if (rest.length > 0 || name === 'SEND' || name === 'MESSAGE') {
    if (name !== 'SEND' && name !== 'MESSAGE') {
      problems.push(`${rest.length} payload byte(s) after a ${name} command`);
    } else {
      inspectPayload(dir, name, cmd || {}, rest, st, rec, problems);
    }
  }
  if (name === 'CONNECT' && cmd) {
    st.protocolVersion = cmd.protocolVersion;
    st.brokerEntryMetadataOk = !!(cmd.featureFlags && cmd.featureFlags.supportsBrokerEntryMetadata);
  }
  return finish(rec, problems);
}

function inspectPayload(dir, name, cmd, rest, st, rec, problems) {
  let off = 0;
  if (rest.length >= 2 && rest.readUInt16BE(0) === 0x0e02) {
    if (rest.length < 6) return problems.push('truncated broker entry metadata');
    const n = rest.readUInt32BE(2);
    rec.brokerEntryMetadata = true;
    if (dir === 's2c' && !st.brokerEntryMetadataOk) {
      problems.push('broker entry metadata (0x0e02) sent to a client that did not advertise supports_broker_entry_metadata (pulsar-flex misparses it)');
    }
    off = 6 + n;
  }
  if (rest.length - off >= 6 && rest.readUInt16BE(off) === 0x0e01) {
    const stored = rest.readUInt32BE(off + 2);
    const computed = crc32c.compute(rest.subarray(off + 6)) >>> 0;
    rec.crc = stored === computed ? 'ok' : 'bad';
    if (stored !== computed) {
      problems.push(`CRC32C mismatch: frame says 0x${stored.toString(16)}, computed 0x${computed.toString(16)}`);
    }
    off += 6;
  } else {
    rec.crc = 'absent';
    problems.push(
      dir === 's2c'
        ? 'MESSAGE without magic 0x0e01 + CRC32C: pulsar-flex assumes it is present and misparses the frame'
        : 'SEND without magic 0x0e01 + CRC32C'
    );
  }
  if (rest.length - off < 4) return problems.push('payload frame too short for the metadata size');
  const mdSize = rest.readUInt32BE(off);
  if (off + 4 + mdSize > rest.length) return problems.push(`metadata size ${mdSize} exceeds the frame`);
  let md;
  try {
    md = pb.MessageMetadata.deserializeBinary(rest.subarray(off + 4, off + 4 + mdSize));
  } catch (e) {
    return problems.push(`MessageMetadata does not decode: ${e.message}`);
  }
  const mdo = md.toObject();
  rec.metadata = {
    producerName: mdo.producerName,
    sequenceId: mdo.sequenceId,
    publishTime: mdo.publishTime,
    partitionKey: mdo.partitionKey,
    properties: mdo.propertiesList.length,
    compression: mdo.compression,
    numMessagesInBatch: md.hasNumMessagesInBatch() ? mdo.numMessagesInBatch : undefined,
  };
  for (const f of ['producerName', 'sequenceId', 'publishTime']) {
    if (mdo[f] === undefined) problems.push(`MessageMetadata lacks required ${f}`);
  }
  if (dir === 's2c' && mdo.compression !== 0) {
    problems.push(`compressed MESSAGE (compression=${mdo.compression}): pulsar-flex cannot decompress`);
  }
  const payload = rest.subarray(off + 4 + mdSize);
  rec.payloadBytes = payload.length;
  let count = 1;
  if (md.hasNumMessagesInBatch()) {
    count = mdo.numMessagesInBatch;
    const sizes = [];
    let p = 0;
    for (let i = 0; i < count; i++) {
      if (payload.length - p < 4) {
        problems.push(`batch: record ${i} of ${count} missing (payload ends at ${p})`);
        break;
      }
      const sz = payload.readUInt32BE(p);
      if (p + 4 + sz > payload.length) {
        problems.push(`batch: SingleMessageMetadata ${i} size ${sz} exceeds the payload`);
        break;
      }
      let smd;
      try {
        smd = pb.SingleMessageMetadata.deserializeBinary(payload.subarray(p + 4, p + 4 + sz)).toObject();
      } catch (e) {
        problems.push(`batch: SingleMessageMetadata ${i} does not decode: ${e.message}`);
        break;
      }
      p += 4 + sz;
      if (smd.payloadSize === undefined) {
        problems.push(`batch: SingleMessageMetadata ${i} lacks payload_size`);
        break;
      }
      if (p + smd.payloadSize > payload.length) {
        problems.push(`batch: message ${i} payload_size ${smd.payloadSize} exceeds the payload`);
        break;
      }
      p += smd.payloadSize;
      sizes.push(smd.payloadSize);
    }
    if (sizes.length === count && p !== payload.length) {
      problems.push(`batch: ${payload.length - p} trailing byte(s) after ${count} messages`);
    }
    rec.batchSizes = sizes;
  }
  if (name === 'SEND') {
    const nm = cmd.numMessages === undefined ? 1 : cmd.numMessages;
    if (nm !== count) problems.push(`SEND num_messages ${nm} but the payload holds ${count} message(s)`);
  }
  return null;
}

function track(dir, name, cmd, st, problems) {
  if (dir === 'c2s') {
    if (ANSWERS[name] && cmd.requestId !== undefined) {
      if (st.pending.has(cmd.requestId)) problems.push(`request_id ${cmd.requestId} reused while pending`);
      st.pending.set(cmd.requestId, name);
    }
    if (name === 'SEND') st.sends.set(`${cmd.producerId}:${cmd.sequenceId}`, true);
    return;
  }
  if (name === 'SEND_RECEIPT' || name === 'SEND_ERROR') {
    const k = `${cmd.producerId}:${cmd.sequenceId}`;
    if (!st.sends.delete(k)) problems.push(`${name} for producer:sequence ${k} that was not sent (or answered twice)`);
    return;
  }
  if (['CONNECTED', 'PONG', 'PING', 'MESSAGE', 'CLOSE_PRODUCER', 'CLOSE_CONSUMER',
       'ACTIVE_CONSUMER_CHANGE', 'REACHED_END_OF_TOPIC'].includes(name)) return;
  if (cmd.requestId === undefined) return;
  const req = st.pending.get(cmd.requestId);
  if (req === undefined) {
    problems.push(`${name} answers request_id ${cmd.requestId}, which is not pending`);
    return;
  }
  st.pending.delete(cmd.requestId);
  if (!ANSWERS[req].includes(name)) problems.push(`${req} (request_id ${cmd.requestId}) answered with ${name}`);
}

function finish(rec, problems) {
  if (problems.length) {
    rec.problems = problems;
    problemCount += problems.length;
  }
  log(rec);
  return rec;
}

// Splits a byte stream into frames; calls onFrame(frameBuffer) for each.
function framer(onFrame, onBad) {
  let buf = Buffer.alloc(0);
  return (chunk) => {
    buf = buf.length ? Buffer.concat([buf, chunk]) : chunk;
    while (buf.length >= 4) {
      const total = buf.readUInt32BE(0);
      if (total < 4 || total > args['max-frame']) {
        onBad(`frame size ${total} out of range`);
        buf = Buffer.alloc(0);
        return;
      }
      if (buf.length < 4 + total) return;
      const f = buf.subarray(0, 4 + total);
      buf = buf.subarray(4 + total);
      onFrame(f);
    }
  };
}

function rewriteLookup(frame, st) {
  const cmdSize = frame.readUInt32BE(4);
  const base = pb.BaseCommand.deserializeBinary(frame.subarray(8, 8 + cmdSize));
  const r = base.getLookuptopicresponse();
  if (!r || !r.getBrokerserviceurl()) return frame;
  const orig = r.getBrokerserviceurl();
  r.setBrokerserviceurl(`pulsar://127.0.0.1:${args.listen}`);
  const body = Buffer.from(base.serializeBinary());
  const out = Buffer.alloc(8 + body.length);
  out.writeUInt32BE(4 + body.length, 0);
  out.writeUInt32BE(body.length, 4);
  body.copy(out, 8);
  log({ dir: 's2c', conn: st.id, note: `LOOKUP_RESPONSE brokerServiceUrl ${orig} rewritten to the tap` });
  return out;
}

const conns = new Set();
const server = net.createServer((client) => {
  const st = { id: ++connSeq, pending: new Map(), sends: new Map(), brokerEntryMetadataOk: false };
  const upstream = net.connect(targetPort, targetHost);
  conns.add(st);
  log({ conn: st.id, note: 'connection opened' });
  const bad = (dir) => (msg) => {
    problemCount++;
    log({ dir, conn: st.id, problems: [msg] });
    client.destroy();
    upstream.destroy();
  };
  client.on(
    'data',
    framer((f) => {
      frames.c2s++;
      inspect('c2s', f, st);
      upstream.write(f);
    }, bad('c2s'))
  );
  upstream.on(
    'data',
    framer((f) => {
      frames.s2c++;
      const rec = inspect('s2c', f, st);
      client.write(rec.type === 'LOOKUP_RESPONSE' ? rewriteLookup(f, st) : f);
    }, bad('s2c'))
  );
  const close = () => {
    client.destroy();
    upstream.destroy();
    if (conns.delete(st)) {
      log({ conn: st.id, note: 'connection closed', unanswered: [...st.pending], unreceipted: [...st.sends.keys()] });
      st.closed = true;
    }
  };
  client.on('end', () => upstream.end());
  upstream.on('end', () => client.end());
  client.on('close', close);
  upstream.on('close', close);
  client.on('error', () => {});
  upstream.on('error', (e) => log({ conn: st.id, note: `upstream error ${e.message}` }));
  allConns.push(st);
});
const allConns = [];

server.listen(args.listen, '127.0.0.1', () => {
  c.note(PROG, `listening on 127.0.0.1:${args.listen}, relaying to ${args.target}`);
});

function shutdown() {
  server.close();
  // Requests still unanswered when the run ends are problems; requests on a
  // connection the client itself closed first are reported the same way
  // (pulsar-flex waits for every answer before it closes).
  for (const st of allConns) {
    for (const [rid, req] of st.pending) {
      problemCount++;
      log({ conn: st.id, problems: [`${req} request_id ${rid} never answered`] });
    }
    for (const k of st.sends.keys()) {
      problemCount++;
      log({ conn: st.id, problems: [`SEND producer:sequence ${k} never answered`] });
    }
  }
  const summary = `wiretap: ${frames.c2s + frames.s2c} frames (${frames.c2s} client->broker, ` +
    `${frames.s2c} broker->client) on ${connSeq} connection(s), ${problemCount} problem(s)`;
  const done = () => {
    process.stderr.write(summary + '\n');
    process.exit(problemCount ? 1 : 0);
  };
  if (logStream) logStream.end(done);
  else done();
}
process.on('SIGTERM', shutdown);
process.on('SIGINT', shutdown);
