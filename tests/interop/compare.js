#!/usr/bin/env node
'use strict';
// Compare what a producer reported sending with what flex_consume.js received.
//
//   node compare.js --sent produce.jsonl --received consume.jsonl [--label L]
//
// The producer log holds {"event":"sent",...} lines (flex_produce.js, or any
// producer CLI following the same format); the consumer log holds
// {"event":"message"|"unexpected",...} lines. Checks, message by message in
// order: count, payload bytes, key, properties; then that the message id the
// broker delivered equals the one its SEND_RECEIPT reported (ledgerId,
// entryId, and the position inside a batch entry), that no id is delivered
// twice, that ids only grow, and that producer name / sequence ids in the
// delivered metadata are consistent with the producer's view.
// Exit 0 if everything matches, 1 otherwise (details on stderr).

const fs = require('fs');
const c = require('./lib/common');

const args = c.parseArgs(
  process.argv.slice(2),
  {
    sent: { type: 'string', required: true },
    received: { type: 'string', required: true },
    label: { type: 'string', default: 'compare' },
    'max-report': { type: 'int', default: 10 },
  },
  'usage: compare.js --sent FILE --received FILE [--label L]\n'
);

function readLines(file) {
  const out = [];
  const text = fs.readFileSync(file, 'utf8');
  text.split('\n').forEach((line, i) => {
    if (line.trim() === '') return;
    try {
      out.push(JSON.parse(line));
    } catch (e) {
      problems.push(`${file}:${i + 1}: not JSON: ${line.slice(0, 120)}`);
    }
  });
  return out;
}

const problems = [];
const sentLines = readLines(args.sent);
const recvLines = readLines(args.received);
const created = sentLines.find((l) => l.event === 'created');
const sent = sentLines.filter((l) => l.event === 'sent').sort((a, b) => a.index - b.index);
const recv = recvLines.filter((l) => l.event === 'message');
const extra = recvLines.filter((l) => l.event === 'unexpected');

const same = (a, b) => JSON.stringify(canon(a)) === JSON.stringify(canon(b));
function canon(v) {
  if (v === undefined || v === '') return null;
  if (v && typeof v === 'object' && !Array.isArray(v)) {
    const o = {};
    for (const k of Object.keys(v).sort()) o[k] = canon(v[k]);
    return o;
  }
  return v;
}

if (sent.length === 0) problems.push('producer reported no sent messages');
if (recv.length !== sent.length) {
  problems.push(`count: sent ${sent.length}, received ${recv.length}`);
}
if (extra.length) problems.push(`${extra.length} unexpected extra message(s) delivered`);

const seenIds = new Set();
let lastId = null;
const n = Math.min(sent.length, recv.length);
for (let k = 0; k < n; k++) {
  const s = sent[k];
  const r = recv[k];
  const where = `message ${k}`;
  if (s.payloadBase64 !== r.payloadBase64) {
    problems.push(
      `${where}: payload differs: sent ${JSON.stringify(s.payload)} (${s.payloadBase64}), ` +
        `received ${JSON.stringify(r.payload)} (${r.payloadBase64})`
    );
  }
  if (!same(s.key, r.key)) {
    problems.push(`${where}: key differs: sent ${JSON.stringify(s.key)}, received ${JSON.stringify(r.key)}`);
  }
  if (!same(s.properties || {}, r.properties || {})) {
    problems.push(
      `${where}: properties differ: sent ${JSON.stringify(s.properties)}, ` +
        `received ${JSON.stringify(r.properties)}`
    );
  }
  const rid = r.msgId || {};
  const rpos = r.batch ? r.batch.pos : -1;
  const idKey = `${rid.ledgerId}:${rid.entryId}:${rid.partition}:${rpos}:${rid.batchIndex}`;
  if (seenIds.has(idKey)) problems.push(`${where}: message id ${idKey} delivered twice`);
  seenIds.add(idKey);
  if (lastId && (rid.ledgerId < lastId.ledgerId ||
      (rid.ledgerId === lastId.ledgerId && rid.entryId < lastId.entryId))) {
    problems.push(`${where}: delivered id ${rid.ledgerId}:${rid.entryId} is below the previous one`);
  }
  lastId = rid;
  if (s.msgId) {
    if (s.msgId.ledgerId !== rid.ledgerId || s.msgId.entryId !== rid.entryId) {
      problems.push(
        `${where}: SEND_RECEIPT said ${s.msgId.ledgerId}:${s.msgId.entryId}, ` +
          `MESSAGE carried ${rid.ledgerId}:${rid.entryId}`
      );
    }
    const spos = s.batch ? s.batch.pos : s.msgId.batchIndex;
    const rposOrIdx = r.batch ? r.batch.pos : rid.batchIndex;
    if (spos !== undefined && spos !== null && spos >= 0 && spos !== rposOrIdx) {
      problems.push(`${where}: position in batch: sent ${spos}, received ${rposOrIdx}`);
    }
    const sentBatched = !!s.batch || (s.msgId.batchIndex !== undefined && s.msgId.batchIndex >= 0);
    if (!sentBatched && r.batch && r.batch.size > 1) {
      problems.push(`${where}: sent as a single message, delivered inside a batch of ${r.batch.size}`);
    }
  }
  if (created && created.producerName && r.producerName !== created.producerName) {
    problems.push(
      `${where}: metadata producer_name ${JSON.stringify(r.producerName)}, ` +
        `producer was created as ${JSON.stringify(created.producerName)}`
    );
  }
  // Entry-level sequence id: comparable for single messages, and for batches
  // when the producer also reports the entry's (flex_produce.js --batch).
  if ((!r.batch || s.batch) && s.sequenceId !== undefined && r.sequenceId !== undefined &&
      s.sequenceId !== r.sequenceId) {
    problems.push(`${where}: metadata sequence_id ${r.sequenceId}, producer used ${s.sequenceId}`);
  }
}

if (problems.length) {
  process.stderr.write(`${args.label}: MISMATCH (${problems.length} problem(s))\n`);
  for (const p of problems.slice(0, args['max-report'])) process.stderr.write(`  - ${p}\n`);
  if (problems.length > args['max-report']) {
    process.stderr.write(`  ... ${problems.length - args['max-report']} more\n`);
  }
  process.exit(1);
}
process.stderr.write(
  `${args.label}: OK: ${recv.length} message(s) match in order ` +
    `(payload, key, properties, receipt id = delivered id)\n`
);
